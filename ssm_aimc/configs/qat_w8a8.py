r"""QAT fine-tune to 8-bit weights and 8-bit activations (a_bar 8 bits), from a float model.

  python launch.py --config=configs/default.py --workdir=runs/float
  python launch.py --config=configs/qat_w8a8.py --workdir=runs/w8a8 \
      --config.init_checkpoint=runs/float

Per-channel weight steps, calibrated activation ranges, polar a_bar. Measured on digits,
seeds 0-2: 98.43 +- 0.58 % (float 98.33), about 100 s of fine-tuning per run on the 2-core
CPU; the full tables (digits and mnist1d, PTQ alongside) are in the README, produced by
`python bench/qat_table.py`.
"""

from ssm_aimc.configs import default


def apply_qat(config, weight_bits: int = 8, a_bar_bits: int = 8):
  """Turns a config into a QAT fine-tune (in place): per-channel steps, 8-bit activations,
  `weight_bits` weights, `a_bar_bits` a_bar, a 5x lower learning rate than from scratch."""
  config.quant.enabled = True
  config.quant.weight_bits = weight_bits
  config.quant.act_bits = 8
  config.quant.a_bar_bits = a_bar_bits
  config.quant.mode = "channel"
  config.optimizer.learning_rate = 2e-3
  config.optimizer.warmup_epochs = 0.5
  return config


def get_config(variant: str = ""):
  config = apply_qat(default.get_config(variant))
  config.num_epochs = 20 if not variant else config.num_epochs
  return config
