r"""Claim 1 as the QS4D authors measured it: bits per tensor group to reach float, PTQ
against QAT, and the cost of the minimal models in ACE, kB and ADC complexity.

  python launch.py --config=configs/claims/c1_qs4d.py --workdir=runs/claims/c1_qs4d \
      --mode=claim

Their scheme (quant.scheme = "qs4d": per-tensor absmax, b bits = 2^b states, so 1 bit is
ternary) on the float model of configs/default.py (60 epochs; shared with the other claims
in `make reproduce`). For each of the authors' groups (all, A, C, state, activations,
mixing, en-/decoder, dt) that group alone is quantized: post-training at 1-12 bits (the
float checkpoint evaluated), and by QAT at 1, 2, 3, 4, 6 and 8 bits (2 fine-tuning epochs
from float each, at the fine-tune learning rate 2e-3 of configs/qat_w8a8.py); a width
reaches float within 0.5 point of test accuracy. Then every group at its fewest PTQ bits
(evaluated) and at its fewest QAT bits (fine-tuned for 20 epochs, as our QAT models), and
the three models in the paper's metrics (ssm_aimc.cost: ace, model_size_kb, adc_complexity).
Judged by `ssm_aimc.claims.c1_qs4d`: supported if the QAT-minimal model has >= 100x less
ACE than float within 1 point (the authors' HD model: about 130x), partly at >= 10x.

`:mnist5k` (the long-sequence case, L = 784; `make reproduce VARIANT=:mnist5k`): the same
on the 5,000 real MNIST digits with the 2-layer H=32, N=16 model of `common.base`, QAT at
1, 2, 4 and 8 bits for 1 epoch each, the QAT-minimal model for 5.

Differences from the authors' setup, all stated in CLAIMS.md: digits (L = 64) instead of
sCIFAR / Pathfinder / HD, this project's backbone (LayerNorm, residual, learned B kept
float, as b_bar is not one of their groups), 2 QAT epochs instead of a full training.
"""

from ssm_aimc.configs.claims import common


def get_config(variant: str = ""):
  config = common.base(variant, "c1_qs4d.py")
  smoke, long = variant == "smoke", variant == "mnist5k"
  return common.add_claim(
    config,
    variant,
    "c1_qs4d",
    ("float",),
    baseline="float",
    groups=("all", "A", "state")
    if smoke
    else ("all", "A", "C", "state", "activations", "mixing", "en-/decoder", "dt"),
    ptq_bits=(2, 8) if smoke else tuple(range(1, 13)),
    qat_bits=(2,) if smoke else (1, 2, 4, 8) if long else (1, 2, 3, 4, 6, 8),
    qat_epochs=1 if smoke or long else 2,
    qat_learning_rate=2e-3,  # A fine-tune's peak learning rate (configs/qat_w8a8.py).
    minimal_epochs=1 if smoke else 5 if long else 20,  # The QAT-minimal model's fine-tune.
    reach_points=0.5,  # A width "reaches" float within this many points of test accuracy.
    max_loss_points=1.0,  # The QAT-minimal model's loss still "small".
    target_reduction=100.0,  # "Two orders of magnitude" of computational complexity (ACE).
  )
