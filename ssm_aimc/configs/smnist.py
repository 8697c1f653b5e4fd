r"""Sequential MNIST (L=784) at the S4D reference size (4 layers, H=128, N=64), for a GPU.

Needs the MNIST IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz],
t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) in --config.data.data_dir:

  python launch.py --config=configs/smnist.py --workdir=runs/smnist \
      --config.data.data_dir=/path/to/mnist
  python launch.py --config=configs/smnist.py:permuted ...   # psMNIST

Not yet run in this project (no GPU was available); the README will carry the measured
accuracy once it has been.
"""

from ssm_aimc.configs import default


def get_config(variant: str = ""):
  config = default.get_config()
  config.data.task = "smnist"
  config.data.val_fraction = 0.1
  config.model.d_model = 128
  config.model.n_layers = 4
  config.model.d_state = 64
  config.model.dropout = 0.1
  config.optimizer.learning_rate = 1e-2
  config.optimizer.weight_decay = 0.01
  config.batch_size = 64
  config.eval_batch_size = 512
  config.num_epochs = 50
  config.log_every_steps = 100
  if variant == "permuted":
    config.data.task = "psmnist"
  elif variant:
    raise ValueError(f"Unknown variant {variant!r} of configs/smnist.py; valid: permuted.")
  return config
