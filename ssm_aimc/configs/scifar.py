r"""Sequential CIFAR-10 (L=1024, 3 input channels) at the S4D reference size, for a GPU.

S4D's own example reports about 89 % with 4 layers, H=128, N=64 (docs/design.md §1). Needs the
CIFAR-10 python batches (data_batch_1..5, test_batch) in --config.data.data_dir or its
cifar-10-batches-py/ subfolder:

  python launch.py --config=configs/scifar.py --workdir=runs/scifar \
      --config.data.data_dir=/path/to/cifar

Not yet run in this project (no GPU was available).
"""

from ssm_aimc.configs import default


def get_config(variant: str = ""):
  config = default.get_config()
  config.data.task = "scifar"
  config.model.d_model = 128
  config.model.n_layers = 4
  config.model.d_state = 64
  config.model.dropout = 0.1
  config.model.prenorm = False
  config.optimizer.learning_rate = 1e-2
  config.optimizer.weight_decay = 0.05
  config.batch_size = 50
  config.eval_batch_size = 500
  config.num_epochs = 100
  config.log_every_steps = 100
  if variant:
    raise ValueError(f"Unknown variant {variant!r} of configs/scifar.py; valid: none.")
  return config
