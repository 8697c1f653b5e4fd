r"""QAT fine-tune to 4-bit weights and 8-bit activations (a_bar 8 bits), from a float model.

  python launch.py --config=configs/default.py --workdir=runs/float
  python launch.py --config=configs/qat_w4a8.py --workdir=runs/w4a8 \
      --config.init_checkpoint=runs/float

Per-channel weight steps, calibrated activation ranges, polar a_bar. Measured on digits,
seeds 0-2: 97.96 +- 0.64 % (float 98.33), about 100 s of fine-tuning per run on the 2-core
CPU; the full tables (digits and mnist1d, PTQ alongside) are in the README, produced by
`python bench/qat_table.py`.
"""

from configs import default


def get_config(variant: str = ""):
  config = default.get_config(variant)
  config.quant.enabled = True
  config.quant.weight_bits = 4
  config.quant.act_bits = 8
  config.quant.a_bar_bits = 8
  config.quant.mode = "channel"
  config.num_epochs = 20 if not variant else config.num_epochs
  config.optimizer.learning_rate = 2e-3
  config.optimizer.warmup_epochs = 0.5
  return config
