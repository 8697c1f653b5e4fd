r"""QAT fine-tune to ternary weights {-s, 0, s} (2 bits), 8-bit activations, from a float model.

  python launch.py --config=configs/default.py --workdir=runs/float
  python launch.py --config=configs/qat_ternary.py --workdir=runs/ternary \
      --config.init_checkpoint=runs/float

Every weight group is ternary except a_bar, the recurrent coefficient, which keeps
`a_bar_bits` (the group the QS4D and Q-S5 papers found sensitive; its 2-bit polar grid has
only three decay levels). Biases and norm parameters (a few hundred numbers) stay at 8 bits.
Measured results are in the README table "Quantization-aware training", produced by
`python bench/qat_table.py`.
"""

from configs import default


def get_config(variant: str = ""):
  config = default.get_config(variant)
  config.quant.enabled = True
  config.quant.weight_bits = 2
  config.quant.act_bits = 8
  config.quant.a_bar_bits = 8
  config.quant.mode = "lsq"
  config.num_epochs = 30 if not variant else config.num_epochs
  config.optimizer.learning_rate = 2e-3
  config.optimizer.warmup_epochs = 0.5
  return config
