r"""Claim 1: QAT cuts memory bits, bit-operations and energy by up to 100x at small loss.

  python launch.py --config=configs/claims/c1_cost.py --workdir=runs/claims/c1 --mode=claim
  python launch.py --config=configs/claims/c1_cost.py:paper --workdir=runs/claims_paper/c1 \
      --mode=claim --config.data.data_dir=/path/to/mnist     # sMNIST, reference size, GPU

Trains the float model (60 epochs) and QAT fine-tunes from it: W8A8, W4A8 (20 epochs),
ternary weights with a 4-bit a_bar (30 epochs), and the W4A8 and ternary models with 75 %
of their state modes pruned (5 epochs). Reports, for each, test accuracy, memory bits and
bit-operations per step against the FP32 float model, and energy per inference on the
simulated chip (config.deploy: 64x64 tiles, 8-bit converters) against the float model on
an FP32 digital processor. Judged on memory bits and bit-operations
(`ssm_aimc.claims.c1_cost`).

Measured verdict, numbers and runtime on this project's CPU: CLAIMS.md (`make reproduce`).
"""

from ssm_aimc.configs.claims import common


def get_config(variant: str = ""):
  config = common.base(variant, "c1_cost.py")
  names = (
    "float",
    "qat_w8a8",
    "qat_w4a8",
    "qat_w4a8_prune75",
    "qat_ternary",
    "qat_ternary_prune75",
  )
  return common.add_claim(
    config,
    variant,
    "c1",
    names,
    baseline="float",
    max_loss_points=1.0,  # Accuracy loss (points) against the float model still "small".
    target_reduction=100.0,  # "Two orders of magnitude".
  )
