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

from ssm_aimc import errors, greedy, models, prune, quant

SCORES = ("h2", "magnitude")
SCOPES = prune.SCOPES + ("global",)
UNITS = ("mode", "channel")
METHODS = ("score", "greedy")
# The greedy kinds a training run prunes: state modes, which the export removes.
GREEDY_KINDS = ("structured", "unstructured")


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
    method: "score" (remove `ratio` of the units, lowest scores first) or "greedy" (the
      QS4D authors' protocol, `ssm_aimc.greedy`: every mode tried at zero, lowest score
      first, layer by layer, kept at zero while the validation accuracy stays within
      `tolerance_points` of the unpruned model's; `ratio` is not read). Greedy prunes modes,
      once, before fine-tuning (unit "mode", schedule "oneshot").
    greedy_kind: "structured" (a mode index of a layer in every channel: the export has a
      smaller d_state) or "unstructured" (one mode of one channel; the export pads every
      channel to the largest kept count).
    tolerance_points: for "greedy", the validation accuracy (points) pruning may cost.
  """

  enabled: bool = False
  ratio: float = 0.5
  score: str = "h2"
  scope: str = "channel"
  schedule: str = "oneshot"
  end_fraction: float = 0.5
  unit: str = "mode"
  method: str = "score"
  greedy_kind: str = "structured"
  tolerance_points: float = 1.0

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
    if self.method not in METHODS:
      raise errors.ConfigError(f"Unknown prune.method {self.method!r}; valid: {METHODS}.")
    if self.greedy_kind not in GREEDY_KINDS:
      raise errors.ConfigError(
        f"Unknown prune.greedy_kind {self.greedy_kind!r}; valid: {GREEDY_KINDS}."
      )
    if not self.tolerance_points >= 0.0:
      raise errors.ConfigError(f"prune.tolerance_points must be >= 0, got {self.tolerance_points}.")
    if self.method == "greedy" and (self.unit != "mode" or self.schedule != "oneshot"):
      raise errors.ConfigError(
        "prune.method='greedy' prunes state modes once before fine-tuning: it needs "
        f"prune.unit='mode' and prune.schedule='oneshot' (got {self.unit!r}, {self.schedule!r})."
      )

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


def greedy_units(
  model, params, spec, kinds: tuple[str, ...], example, score: str = "h2", batch_stats=None
) -> tuple[tuple, np.ndarray]:
  """(the `greedy.unit_groups` of `kinds`, their `greedy.unit_scores`): what a greedy pass
  over a model starts from; mode scores (`score`) on the deployed tensors under `spec`."""
  groups = greedy.unit_groups(params, kinds)
  mode_scores = layer_scores(model, params, spec, example, score, batch_stats)
  return groups, greedy.unit_scores(params, groups, mode_scores)


def greedy_evaluator(
  model, params, groups, split, batch_size: int, spec, batch_stats=None
) -> greedy.Evaluator:
  """The `greedy.Evaluator` of a model (and its BatchNorm statistics) on `split`."""
  extra = {"batch_stats": batch_stats} if batch_stats else None
  return greedy.Evaluator(
    model, params, groups, split.x, split.y, batch_size, spec, extra, train=False
  )


def greedy_masks(
  cfg: PruneConfig, model, params, spec, split, batch_size: int, example, batch_stats=None
) -> tuple[dict[str, jax.Array], dict]:
  """(mode keep masks, what the pass did) of the greedy pass of `cfg.greedy_kind` over
  `params`, judged on `split` (the validation split) in batches of `batch_size` examples;
  mode scores (`cfg.score`) on the deployed tensors under `spec`."""
  kinds = (cfg.greedy_kind,)
  groups, scores = greedy_units(model, params, spec, kinds, example, cfg.score, batch_stats)
  evaluator = greedy_evaluator(model, params, groups, split, batch_size, spec, batch_stats)
  result = greedy.prune_model(evaluator, cfg.greedy_kind, scores, cfg.tolerance_points / 100, 1)
  info = {
    "kind": cfg.greedy_kind,
    "val_accuracy_before": result.baseline,
    "val_accuracy_after": result.accuracy,
    "evaluations": result.evaluations,
    "seconds": result.seconds,
  }
  return result.mode_masks(params), info
