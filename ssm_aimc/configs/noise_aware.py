r"""Noise-aware training: fine-tune a float model with fresh PCM-like device noise every step.

  python launch.py --config=configs/default.py --workdir=runs/float
  python launch.py --config=configs/noise_aware.py --workdir=runs/noise_aware \
      --config.init_checkpoint=runs/float

Every training step programs a new simulated chip (programming noise, drift at
t_inference with global compensation, one read-noise draw per forward pass;
ssm_aimc.hardware),
with the noise ramped in linearly over the first epochs: training from scratch under full
noise fails (the noise swamps the small initial weights), fine-tuning a trained model
does not. After training the best checkpoint is evaluated on `hardware.eval_seeds` chips
(analog_accuracy_mean/std in results.json). Measured numbers: README "Analog noise".
"""

from ssm_aimc.configs import default


def apply_noise_aware(config):
  """Turns on noise-aware training with the PCM-like preset on a config (in place)."""
  config.hardware.enabled = True
  config.hardware.train = True
  config.hardware.device = "pcm_like"
  config.hardware.prog_noise_scale = 1.0
  config.hardware.read_noise_scale = 1.0
  config.hardware.ramp_epochs = 2.0
  # One read-noise draw per forward pass while training: 1.9x cheaper steps than a draw at
  # every product (BENCHMARKS.md); evaluation still draws at every product.
  config.hardware.read_noise_draw = "forward"
  config.optimizer.learning_rate = 2e-3
  config.optimizer.warmup_epochs = 0.5
  return config


def get_config(variant: str = ""):
  config = apply_noise_aware(default.get_config(variant))
  config.num_epochs = 10 if not variant else config.num_epochs
  return config
