r"""Structured pruning of state modes: prune a trained float model and fine-tune with masks.

  python launch.py --config=configs/default.py --workdir=runs/float
  python launch.py --config=configs/prune_float.py --workdir=runs/prune50 \
      --config.init_checkpoint=runs/float --config.prune.ratio=0.5

Scores each mode by its share of the layer's H2 norm (|c b_bar|^2 / (1 - |a_bar|^2)),
removes `prune.ratio` of the modes of every channel at once, fine-tunes 5 epochs with the
pruned entries held at zero, and writes the physically smaller model (d_state reduced) to
runs/prune50/pruned, a workdir of its own (`--mode=evaluate --workdir=runs/prune50/pruned
--config.model.d_state=<d_state_after>` evaluates it). results.json reports accuracy before
pruning, right after it and after fine-tuning, and the cost of the smaller model. Measured
numbers: README "Structured pruning" (bench/prune_table.py).
"""

from ssm_aimc.configs import default


def apply_pruning(config):
  """Turns on one-shot H2 pruning with a short fine-tune (in place)."""
  config.prune.enabled = True
  config.prune.ratio = 0.5
  config.prune.score = "h2"
  config.prune.scope = "channel"
  config.prune.schedule = "oneshot"
  config.optimizer.learning_rate = 2e-3
  config.optimizer.warmup_epochs = 0.5
  return config


def get_config(variant: str = ""):
  config = apply_pruning(default.get_config(variant))
  config.num_epochs = 5 if not variant else config.num_epochs
  return config
