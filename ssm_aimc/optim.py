"""The optimizer: AdamW with warm-up + cosine decay, global-norm clipping and per-parameter
rules given as data (regex on the parameter path -> learning-rate multiplier, weight decay).

Pure optax; `OptimConfig` is the typed `config.optimizer` section.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

import flax.traverse_util
import optax

from ssm_aimc import errors


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """AdamW with warm-up + cosine decay, global-norm clipping and per-parameter rules.

  Attributes:
    learning_rate: peak learning rate (> 0).
    weight_decay: decoupled weight decay of parameters no rule matches.
    warmup_epochs: linear warm-up length, in epochs (may be fractional).
    end_lr_fraction: final learning rate as a fraction of the peak.
    grad_clip: global-norm gradient clipping threshold (0 disables).
    b1, b2: Adam moment decay rates.
    rules: (regex, lr_multiplier, weight_decay) triples matched in order against the
      '/'-joined parameter path; the first match wins. lr_multiplier 0 freezes.
  """

  learning_rate: float = 1e-2
  weight_decay: float = 0.01
  warmup_epochs: float = 1.0
  end_lr_fraction: float = 0.0
  grad_clip: float = 1.0
  b1: float = 0.9
  b2: float = 0.999
  rules: tuple[tuple[str, float, float], ...] = (
    (r"s4d/(log_step|log_neg_re_a|im_a)$", 0.1, 0.0),
    (r"(input_range|kernel_scale)$", 1.0, 0.0),
  )

  def __post_init__(self):
    if not self.learning_rate > 0:
      raise errors.ConfigError(
        f"optimizer.learning_rate must be positive, got {self.learning_rate}."
      )
    for name in ("weight_decay", "warmup_epochs", "end_lr_fraction", "grad_clip"):
      if not getattr(self, name) >= 0:
        raise errors.ConfigError(f"optimizer.{name} must be >= 0, got {getattr(self, name)}.")
    for name in ("b1", "b2"):
      if not 0.0 <= getattr(self, name) < 1.0:
        raise errors.ConfigError(f"optimizer.{name} must be in [0, 1), got {getattr(self, name)}.")
    for rule in self.rules:
      if not (
        isinstance(rule, tuple)
        and len(rule) == 3
        and isinstance(rule[0], str)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in rule[1:])
        and all(math.isfinite(v) and v >= 0 for v in rule[1:])
      ):
        raise errors.ConfigError(
          "optimizer.rules must be (regex, learning-rate multiplier >= 0, weight decay >= 0) "
          f"triples, got {rule!r}."
        )
    rules = tuple((str(r[0]), float(r[1]), float(r[2])) for r in self.rules)
    for pattern, _, _ in rules:
      try:
        re.compile(pattern)
      except re.error as e:
        raise errors.ConfigError(f"optimizer.rules: bad regex {pattern!r}: {e}") from e
    object.__setattr__(self, "rules", rules)


def param_labels(params, rules: tuple[tuple[str, float, float], ...]):
  """Tree of labels: index of the first rule whose regex matches the path, or 'default'."""
  flat = flax.traverse_util.flatten_dict(params, sep="/")
  labels = {}
  for path in flat:
    labels[path] = "default"
    for i, (pattern, _, _) in enumerate(rules):
      if re.search(pattern, path):
        labels[path] = f"rule_{i}"
        break
  return flax.traverse_util.unflatten_dict(labels, sep="/")


@functools.lru_cache(maxsize=64)
def make_optimizer(cfg: OptimConfig, steps_per_epoch: int, total_steps: int):
  """AdamW per rule group behind one global-norm clip; returns (tx, base schedule).

  Cached: runs of the same optimizer share one transformation object, so a jitted step
  (which holds it as static structure of the TrainState) compiles once for all of them.
  """
  warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
  schedule = optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=cfg.learning_rate,
    warmup_steps=min(warmup, max(total_steps - 1, 0)),
    decay_steps=max(total_steps, 1),
    end_value=cfg.learning_rate * cfg.end_lr_fraction,
  )

  def adamw(lr_multiplier: float, weight_decay: float):
    if lr_multiplier == 0.0:
      return optax.set_to_zero()
    return optax.adamw(
      lambda count: lr_multiplier * schedule(count), cfg.b1, cfg.b2, weight_decay=weight_decay
    )

  transforms = {"default": adamw(1.0, cfg.weight_decay)}
  for i, (_, lr_multiplier, weight_decay) in enumerate(cfg.rules):
    transforms[f"rule_{i}"] = adamw(lr_multiplier, weight_decay)
  tx = optax.multi_transform(transforms, functools.partial(param_labels, rules=cfg.rules))
  # Same state structure with or without clipping, so a run can resume with either.
  clip = optax.clip_by_global_norm(cfg.grad_clip) if cfg.grad_clip > 0 else optax.identity()
  return optax.chain(clip, tx), schedule


def _scale_by_learning_rate(learning_rate):
  return optax.scale(learning_rate)


@functools.lru_cache(maxsize=16)
def injected_optimizer(cfg: OptimConfig, steps_per_epoch: int, total_steps: int):
  """`make_optimizer` at peak learning rate 1, then an injected `scale(learning_rate)`.

  For a population whose members differ in learning rate: the rate lives in the optimizer
  state (`optax.inject_hyperparams`), so the members' states stack and one compiled step
  serves every rate; set it with `optax.tree_utils.tree_set(opt_state, learning_rate=lr)`.
  AdamW's update (weight decay included) is linear in the learning rate and the schedule
  linear in its peak, so this is each member's own optimizer up to float rounding.
  """
  base, _ = make_optimizer(
    dataclasses.replace(cfg, learning_rate=1.0), steps_per_epoch, total_steps
  )
  return optax.chain(base, optax.inject_hyperparams(_scale_by_learning_rate)(learning_rate=1.0))
