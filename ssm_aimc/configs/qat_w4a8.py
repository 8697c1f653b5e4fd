r"""QAT fine-tune to 4-bit weights and 8-bit activations (a_bar 8 bits), from a float model.

  python launch.py --config=configs/default.py --workdir=runs/float
  python launch.py --config=configs/qat_w4a8.py --workdir=runs/w4a8 \
      --config.init_checkpoint=runs/float

The W8A8 recipe of configs/qat_w8a8.py with 4-bit weights. Measured on digits, seeds 0-2:
97.96 +- 0.64 % (float 98.33 %), memory 6.5x below FP32, about 100 s of fine-tuning per run
on the 2-core CPU; with per-tensor steps (--config.quant.mode=tensor) 98.24 +- 0.42 % at
9.3x. Full tables (digits and mnist1d, PTQ alongside) in the README, produced by
`python bench/qat_table.py`.
"""

from ssm_aimc.configs import qat_w8a8


def get_config(variant: str = ""):
  config = qat_w8a8.get_config(variant)
  config.quant.weight_bits = 4
  return config
