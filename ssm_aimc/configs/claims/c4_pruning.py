r"""Claim 4: QAT enables structured pruning.

  python launch.py --config=configs/claims/c4_pruning.py --workdir=runs/claims/c4 --mode=claim
  python launch.py --config=configs/claims/c4_pruning.py:paper \
      --workdir=runs/claims_paper/c4 --mode=claim --config.data.data_dir=/path/to/mnist

The float model and its QAT W4A8 fine-tune, each pruned (H2 scores, the same modes removed
from every channel) at 50, 75 and 90 % of the state modes and fine-tuned 5 epochs with
masks; the physically smaller exported model is scored. Judged by
`ssm_aimc.claims.c4_pruning`.

Measured verdict, numbers and runtime on this project's CPU: CLAIMS.md (`make reproduce`).
"""

from ssm_aimc.configs.claims import common


def get_config(variant: str = ""):
  config = common.base(variant, "c4_pruning.py")
  names = (
    "float",
    "qat_w4a8",
    *(f"{m}_prune{p}" for m in ("float", "qat_w4a8") for p in (50, 75, 90)),
  )
  return common.add_claim(
    config,
    variant,
    "c4",
    names,
    # label -> (unpruned model, name prefix of its pruned models).
    families={"float": ("float", "float_prune"), "qat_w4a8": ("qat_w4a8", "qat_w4a8_prune")},
    reference="float",
    quantized="qat_w4a8",
    max_loss_points=1.0,  # Loss against the unpruned model still counted as kept.
    min_ratio=0.5,  # Fraction of modes the quantized model must lose within that loss.
  )
