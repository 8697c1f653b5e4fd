"""Pruning a model's S4D state modes or whole channels: scores from the deployed tensors,
keep masks, and the physically smaller model.

The pure maths (scores, masks, schedules, compaction) is in `ssm_aimc.prune`; this module
connects it to a Flax model. Scores are computed on the tensors as the model deploys them
(`models.deployed_tensors`), so a quantized model is pruned by its quantized a_bar, b_bar
and c. `PruneConfig` is the typed form of `config.prune`; the training loop (`train.py`)
applies the masks and calls `compact` (modes) or `compact_channels` (channels) at the end.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from ssm_aimc import errors, models, prune, quant

SCORES = ("h2", "magnitude")
SCOPES = prune.SCOPES + ("global",)
UNITS = ("mode", "channel")


@dataclasses.dataclass(frozen=True)
class PruneConfig:
  """Structured pruning of state modes or channels during a fine-tune.

  Attributes:
    enabled: prune (otherwise the model is trained as is).
    ratio: fraction of the units (state modes, or channels) removed, in [0, 1).
    score: "h2" (the mode's share of the H2 norm) or "magnitude" (|c| |b_bar|); for
      channels, the S4D term of `prune.channel_scores` (the modes' scores summed).
    scope: for modes: "channel" (every channel keeps the same number of modes: the
      exported model is exactly one with a smaller d_state), "layer" (top modes of each
      layer) or "global" (one threshold over all layers); the last two export with every
      channel padded to the largest kept count. Channels are always chosen over the whole
      model (they are the residual stream's), so unit "channel" does not read it.
    schedule: "oneshot" (prune once, before fine-tuning) or "gradual" (cubic schedule,
      masks recomputed at every epoch start).
    end_fraction: for "gradual", the fraction of training at which the ratio is reached.
    unit: "mode" (S4D state modes; the export has a smaller d_state) or "channel" (whole
      channels of the residual stream, from the encoder through every block to the
      decoder; the export has a smaller d_model).
  """

  enabled: bool = False
  ratio: float = 0.5
  score: str = "h2"
  scope: str = "channel"
  schedule: str = "oneshot"
  end_fraction: float = 0.5
  unit: str = "mode"

  def __post_init__(self):
    if not 0.0 <= self.ratio < 1.0:
      raise errors.ConfigError(f"prune.ratio must be in [0, 1), got {self.ratio}.")
    if self.score not in SCORES:
      raise errors.ConfigError(f"Unknown prune.score {self.score!r}; valid: {SCORES}.")
    if self.scope not in SCOPES:
      raise errors.ConfigError(f"Unknown prune.scope {self.scope!r}; valid: {SCOPES}.")
    if self.schedule not in prune.SCHEDULES:
      raise errors.ConfigError(
        f"Unknown prune.schedule {self.schedule!r}; valid: {prune.SCHEDULES}."
      )
    if not 0.0 < self.end_fraction <= 1.0:
      raise errors.ConfigError(f"prune.end_fraction must be in (0, 1], got {self.end_fraction}.")
    if self.unit not in UNITS:
      raise errors.ConfigError(f"Unknown prune.unit {self.unit!r}; valid: {UNITS}.")

  def ratio_at(self, step: int, total_steps: int) -> float:
    return prune.ratio_at(
      step, total_steps, self.ratio, self.schedule, end_fraction=self.end_fraction
    )


def layer_scores(
  model, params, spec: quant.QuantSpec | None, x: jax.Array, score: str = "h2", batch_stats=None
) -> dict[str, jax.Array]:
  """{S4D layer path: (H, n) mode scores} of the model as deployed under `spec`."""
  records = models.deployed_tensors(model, params, spec, x, batch_stats)
  out = {}
  for path in prune.s4d_paths(params):
    value = lambda name, path=path: (
      records[f"{path}/{name}"]["values"] if f"{path}/{name}" in records else None
    )
    if score == "h2":
      out[path] = prune.mode_scores_h2(
        value("a_bar"), value("b_bar"), value("c"), value("c_reverse")
      )
    else:
      out[path] = prune.mode_scores_magnitude(value("b_bar"), value("c"))
  return out


def keep_masks(scores: dict[str, jax.Array], ratio: float, scope: str) -> dict[str, jax.Array]:
  """{layer path: (H, n) bool keep mask} for a pruning ratio and scope."""
  if scope == "global":
    return prune.global_keep_masks(scores, ratio)
  return {path: prune.keep_mask(s, ratio, scope) for path, s in scores.items()}


def masks_at(
  cfg: PruneConfig, model, params, spec, x: jax.Array, ratio: float, batch_stats=None
) -> tuple[dict[str, jax.Array], dict]:
  """(mode keep masks, parameter-mask tree) of `params` (and BatchNorm `batch_stats`) at
  `ratio`."""
  scores = layer_scores(model, params, spec, x, cfg.score, batch_stats)
  modes = keep_masks(scores, ratio, cfg.scope)
  return modes, prune.model_masks(params, modes)


def compact(params, mode_masks: dict[str, jax.Array]) -> tuple[dict, int]:
  """The physically smaller parameter tree and its d_state (2 x the kept modes per channel;
  every layer padded to the largest count, since ModelConfig has one d_state)."""
  tree, new_ns = prune.compact_model(params, mode_masks, common_n=True)
  n_modes = max(new_ns.values())
  return tree, 2 * n_modes


def kept_modes(mode_masks: dict[str, jax.Array]) -> int:
  return int(sum(np.asarray(m).sum() for m in mode_masks.values()))


def channel_masks_at(
  cfg: PruneConfig, model, params, spec, x: jax.Array, ratio: float, batch_stats=None
) -> tuple[np.ndarray, dict]:
  """((H,) bool channel keep mask, parameter-mask tree) of `params` (and BatchNorm
  `batch_stats`) at `ratio`: `prune.channel_scores` with each S4D layer's mode scores
  (`cfg.score`) as its term, the top channels kept (`prune.channel_keep_mask`)."""
  s4d = layer_scores(model, params, spec, x, cfg.score, batch_stats)
  keep = prune.channel_keep_mask(prune.channel_scores(params, s4d), ratio)
  return keep, prune.channel_param_masks(params, keep)


def masked_model(model, keep):
  """`model` (a models.S4DClassifier) run with only the channels of the (H,) bool `keep`
  (`channels`); `model` itself when every channel is kept, so that a ratio of 0 is the
  unpruned model's program."""
  keep = np.asarray(keep, bool)
  return model if keep.all() else model.clone(channels=tuple(bool(k) for k in keep))


def compact_channels(params, batch_stats, keep) -> tuple[dict, dict, int]:
  """(params, batch_stats, d_model) of the model with only the kept channels (`keep`, (H,)
  bool): the physically smaller model that computes what `masked_model` computes."""
  small = prune.compact_channels(params, keep)
  stats = prune.compact_channels(batch_stats or {}, keep)
  return small, stats, int(np.sum(keep))
