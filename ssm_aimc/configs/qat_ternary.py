r"""QAT fine-tune to ternary weights {-s, 0, s} (2 bits), 8-bit activations, from a float model.

  python launch.py --config=configs/default.py --workdir=runs/float
  python launch.py --config=configs/qat_ternary.py --workdir=runs/ternary \
      --config.init_checkpoint=runs/float

Every weight group is ternary with per-output-channel steps, except a_bar, the recurrent
coefficient (the group Q-S5 found sensitive), which keeps 4 bits on per-channel polar grids
(log-radius and angle): at 4 bits that grid lost 13 points post-training where the
cartesian one lost 55 (BENCHMARKS.md, "a_bar parameterisation"), and 4 bits is what brings
the memory to 16x below FP32. Biases and norm parameters (about 1,100 numbers) stay at
8 bits. On digits, seed 0, exploratory runs gave 97.2 % at a_bar 4 bits (16.6x), 97.8 % at
6 bits (14.4x), 98.1 % at 8 bits (12.9x), float 98.3 %; per-tensor ternary steps failed
(38 %: an absmax step zeroes most weights).
Measured on digits, seeds 0-2: 96.67 +- 0.56 % (float 98.33 %), memory 16.6x below FP32 and
65x below the FP32 S4D reference size, about 120 s of fine-tuning per run on the 2-core CPU;
full tables in the README, produced by `python bench/qat_table.py`.
"""

from ssm_aimc.configs import qat_w8a8


def get_config(variant: str = ""):
  config = qat_w8a8.get_config(variant)  # Per-channel steps, 8-bit activations, lr 2e-3.
  config.quant.weight_bits = 2
  config.quant.a_bar_bits = 4
  config.num_epochs = 30 if not variant else config.num_epochs
  return config
