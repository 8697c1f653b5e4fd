r"""QAT to 4-bit weights / 8-bit activations and noise-aware training together, from float.

  python launch.py --config=configs/default.py --workdir=runs/float
  python launch.py --config=configs/noise_aware_w4a8.py --workdir=runs/noise_aware_w4a8 \
      --config.init_checkpoint=runs/float

The recipe of configs/qat_w4a8.py with the device noise of configs/noise_aware.py switched
on during training. Measured numbers: README "Analog noise".
"""

from ssm_aimc.configs import noise_aware, qat_w4a8


def get_config(variant: str = ""):
  return noise_aware.apply_noise_aware(qat_w4a8.get_config(variant))
