r"""Structured pruning of a QAT W4A8 model: prune, fine-tune with masks and 4-bit weights.

  python launch.py --config=configs/qat_w4a8.py --workdir=runs/w4a8 \
      --config.init_checkpoint=runs/float
  python launch.py --config=configs/prune_w4a8.py --workdir=runs/w4a8_prune50 \
      --config.init_checkpoint=runs/w4a8 --config.prune.ratio=0.5

configs/prune_float.py's recipe on the quantized model; scores are computed on the
quantized a_bar, b_bar and c. The smaller model's cost report combines both savings.
Measured numbers: README "Structured pruning" (bench/prune_table.py).
"""

from ssm_aimc.configs import prune_float, qat_w4a8


def get_config(variant: str = ""):
  config = prune_float.apply_pruning(qat_w4a8.get_config(variant))
  config.num_epochs = 5 if not variant else config.num_epochs
  return config
