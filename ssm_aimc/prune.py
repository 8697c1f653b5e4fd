"""Structured pruning of S4D state modes: scores, keep masks, schedules, masking, compaction.

Pure functions on arrays and nested-dict parameter trees (no flax, no optax); docs/design.md §1,
"Structured pruning". A unit of pruning is one complex mode n of one channel h (a conjugate
pair, i.e. 2 real states), or a whole channel. The workflow:

  1. score:    `mode_scores_h2` from the decoded (a_bar, b_bar, c) of each S4D layer;
  2. select:   `keep_mask` (per layer, scope "channel" or "layer") or `global_keep_masks`
               (one threshold over all layers), at a ratio from `ratio_at` (one-shot or the
               gradual cubic schedule of Zhu & Gupta 2017);
  3. fine-tune with masks: `model_masks` -> `apply_masks` on the parameters (zeroes the
               pruned b and c, which removes a mode's contribution exactly) and
               `mask_updates` on the optimiser's updates (pruned entries never change);
  4. export:   `compact_s4d` / `compact_model` gather the kept modes into a physically
               smaller layer (smaller N) with the same outputs.

Trees are nested dicts keyed like the Flax params tree ({"block_0": {"s4d": {...}}}); layer
paths are '/'-joined ("block_0/s4d"). Keep masks are boolean (H, n); parameter masks are
float32 0/1 arrays of each parameter's shape.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ssm_aimc import errors

SCOPES = ("channel", "layer")
SCHEDULES = ("oneshot", "gradual")
# Floor on 1 - |a_bar|^2 in the H2 score: a mode at (or, by rounding, past) the unit circle
# has an unbounded energy; the floor caps its score at |c b_bar|^2 / H2_FLOOR, finite and
# still the largest, instead of inf/NaN (float32 resolves 1 - |a|^2 to about 1e-7).
H2_FLOOR = 1e-6
# S4D parameters with one entry per mode: (H, n) reals and (H, n, 2) complex pairs.
MODE_PARAMS = ("log_neg_re_a", "im_a")
PAIR_PARAMS = ("b", "c", "c_reverse")
# The parameters whose masked value (zero) is used in the forward pass: a zero b or c
# removes the mode exactly, whereas a zero log_neg_re_a or im_a would be a different,
# still active mode (Re a = -1), so those two are only frozen (masked updates).
MASKED_IN_FORWARD = ("b", "c", "c_reverse")


# ---------------------------------------------------------------------------------------
# Scores.
# ---------------------------------------------------------------------------------------


def mode_scores_h2(
  a_bar: jax.Array, b_bar: jax.Array, c: jax.Array, c_reverse: jax.Array | None = None
) -> jax.Array:
  """Each mode's share of the SSM's squared H2 norm, |c_n b_bar_n|^2 / (1 - |a_bar_n|^2).

  This is the energy sum_{k>=0} |c_n b_bar_n a_bar_n^k|^2 of the mode's (complex) impulse
  response, summed in closed form as a geometric series. A bidirectional layer's reverse
  pass shares a_bar and b_bar and reads out with c_reverse, so its energy adds
  |c_reverse_n b_bar_n|^2 / (1 - |a_bar_n|^2): |c|^2 + |c_reverse|^2 replaces |c|^2.
  1 - |a_bar|^2 is floored at H2_FLOOR, so a mode on or past the unit circle scores large
  and finite.

  Args:
    a_bar, b_bar, c: (H, n) complex discrete parameters.
    c_reverse: (H, n) complex read-out of the reverse pass, or None.

  Returns:
    (H, n) real scores (float32 for complex64 inputs).
  """
  c_energy = jnp.abs(c) ** 2
  if c_reverse is not None:
    c_energy = c_energy + jnp.abs(c_reverse) ** 2
  decay = jnp.maximum(1.0 - jnp.abs(a_bar) ** 2, H2_FLOOR)
  return c_energy * jnp.abs(b_bar) ** 2 / decay


def mode_scores_magnitude(b_bar: jax.Array, c: jax.Array) -> jax.Array:
  """Baseline score |c_n| |b_bar_n| (ignores how long the mode rings): (H, n) -> (H, n)."""
  return jnp.abs(c) * jnp.abs(b_bar)


# ---------------------------------------------------------------------------------------
# Selection.
# ---------------------------------------------------------------------------------------


def _check_ratio(ratio: float) -> float:
  """ratio as a float in [0, 1), else ConfigError (pruning everything is no model)."""
  ratio = float(ratio)
  if not 0.0 <= ratio < 1.0:
    raise errors.ConfigError(f"Pruning ratio must be in [0, 1), got {ratio}.")
  return ratio


def _descending(scores: jax.Array) -> jax.Array:
  """Sort key for "highest first": 0 - scores, which also maps -0.0 and 0.0 to one value."""
  return 0.0 - scores


def _top_with_floor(scores: list[jax.Array], ratio: float) -> list[jax.Array]:
  """Keep masks of the top modes over several (H_i, n_i) arrays, at least one per channel.

  Keeps max(total - round(ratio total), channels) modes: first the best mode of every
  channel (lowest index among equals), then the highest of the rest; equal scores go to
  the lower index in the row-major concatenation of the arrays.
  """
  flat = jnp.concatenate([s.reshape(-1) for s in scores])
  is_best = jnp.concatenate(
    [
      (jnp.arange(s.shape[1])[None, :] == jnp.argmax(s, axis=1)[:, None]).reshape(-1)
      for s in scores
    ]
  )
  total = flat.shape[0]
  channels = sum(s.shape[0] for s in scores)
  n_keep = max(total - round(ratio * total), channels)
  # lexsort: primary key last; stable, so remaining ties keep the lower index first.
  order = jnp.lexsort((_descending(flat), jnp.logical_not(is_best)))
  keep = jnp.zeros((total,), bool).at[order[:n_keep]].set(True)
  masks, start = [], 0
  for s in scores:
    masks.append(keep[start : start + s.size].reshape(s.shape))
    start += s.size
  return masks


def keep_mask(scores: jax.Array, ratio: float, scope: str = "channel") -> jax.Array:
  """Boolean mask of the modes to keep: the highest scores, a fraction `ratio` pruned.

  Args:
    scores: (H, n) per-mode scores (higher = more important).
    ratio: fraction of modes to prune, in [0, 1); 0 keeps every mode.
    scope: "channel": every channel keeps the same k = n - round(ratio n) modes (at least
      1), so the pruned layer is exactly a layer with n = k modes; "layer": the top
      H n - round(ratio H n) modes over the whole layer, with at least one per channel
      (when H exceeds that count, exactly one per channel is kept).
      Equal scores are broken deterministically: the lower index is kept.

  Returns:
    (H, n) bool mask, True = keep.
  """
  ratio = _check_ratio(ratio)
  if scope not in SCOPES:
    raise errors.ConfigError(f"Unknown pruning scope {scope!r}; valid: {SCOPES}.")
  if scores.ndim != 2:
    raise ValueError(f"Scores must have shape (H, n), got {scores.shape}.")
  if scope == "layer":
    return _top_with_floor([scores], ratio)[0]
  n_modes = scores.shape[1]
  k = max(n_modes - round(ratio * n_modes), 1)
  order = jnp.argsort(_descending(scores), axis=1, stable=True)
  rank = jnp.argsort(order, axis=1)  # Inverse permutation: the rank of every mode.
  return rank < k


def global_keep_masks(scores_by_layer: dict[str, jax.Array], ratio: float) -> dict[str, jax.Array]:
  """Keep masks under one threshold over the modes of all layers.

  Keeps the top (total - round(ratio total)) modes of the union, with at least one mode per
  channel of every layer (see `keep_mask`'s scope "layer" for the tie and floor rules).
  Scores are compared across layers as they are, so they must share a unit (H2 scores are
  energies of each layer's output; LayerNorm before every block keeps inputs comparable).

  Args:
    scores_by_layer: {layer path: (H_i, n_i) scores}.
    ratio: fraction of all modes to prune, in [0, 1).

  Returns:
    {layer path: (H_i, n_i) bool mask}, same keys.
  """
  ratio = _check_ratio(ratio)
  names = list(scores_by_layer)
  masks = _top_with_floor([scores_by_layer[name] for name in names], ratio)
  return dict(zip(names, masks, strict=True))


def ratio_at(
  step: int,
  total_steps: int,
  final_ratio: float,
  schedule: str,
  start_fraction: float = 0.0,
  end_fraction: float = 0.5,
) -> float:
  """Pruning ratio to apply at a training step (Python numbers, called between steps).

  "oneshot": final_ratio from step 0. "gradual": the cubic schedule of Zhu & Gupta (2017,
  "To prune, or not to prune"), ratio = final (1 - (1 - p)^3) with progress
  p = clip((step / total_steps - start_fraction) / (end_fraction - start_fraction), 0, 1):
  0 until start_fraction of training, final_ratio from end_fraction on, pruning fast early
  (while the network can still recover) and slowly near the end.
  """
  final_ratio = _check_ratio(final_ratio)
  if total_steps <= 0:
    raise errors.ConfigError(f"total_steps must be positive, got {total_steps}.")
  if schedule == "oneshot":
    return final_ratio
  if schedule != "gradual":
    raise errors.ConfigError(f"Unknown pruning schedule {schedule!r}; valid: {SCHEDULES}.")
  if not 0.0 <= start_fraction < end_fraction <= 1.0:
    raise errors.ConfigError(
      f"Need 0 <= start_fraction < end_fraction <= 1, got {start_fraction}, {end_fraction}."
    )
  progress = (step / total_steps - start_fraction) / (end_fraction - start_fraction)
  progress = min(max(progress, 0.0), 1.0)
  return final_ratio * (1.0 - (1.0 - progress) ** 3)


def pruned_fraction(mode_masks: dict[str, jax.Array]) -> float:
  """Fraction of modes removed over all layers of {path: (H_i, n_i) bool keep mask}."""
  kept = sum(int(jnp.sum(mask)) for mask in mode_masks.values())
  total = sum(math.prod(mask.shape) for mask in mode_masks.values())
  return 1.0 - kept / total if total else 0.0


# ---------------------------------------------------------------------------------------
# Parameter masks for fine-tuning.
# ---------------------------------------------------------------------------------------


def _to_dict(tree):
  """Nested Mappings (dict, FrozenDict) -> nested plain dicts; leaves unchanged."""
  if isinstance(tree, Mapping):
    return {key: _to_dict(value) for key, value in tree.items()}
  return tree


def _leaf_name(path) -> str:
  """Last key of a jax.tree_util key path (the parameter's own name)."""
  entry = path[-1]
  return str(getattr(entry, "key", getattr(entry, "name", entry)))


def s4d_param_masks(s4d_params: dict, mode_mask: jax.Array) -> dict:
  """float32 0/1 masks for one S4D layer's parameters, from its (H, n) mode keep mask.

  log_neg_re_a, im_a (H, n) get the mode mask; b, c, c_reverse (H, n, 2) get it broadcast
  over the trailing (Re, Im) pair; every other parameter (log_step, d, input_range) gets
  ones. The masks of log_neg_re_a and im_a are for the optimiser only (`mask_updates`
  freezes the pruned modes' poles); the forward pass must not multiply them, because a
  zero there is not "no mode" but a = -1 (see MASKED_IN_FORWARD and `apply_masks`).

  Args:
    s4d_params: {name: array} of one S4D layer, as in the Flax params tree.
    mode_mask: (H, n) bool, True = keep.

  Returns:
    {name: float32 array of that parameter's shape}.
  """
  mask = jnp.asarray(mode_mask, jnp.float32)
  expected = jnp.shape(s4d_params["log_neg_re_a"])
  if mask.shape != expected:
    raise ValueError(f"Mode mask has shape {mask.shape}, the layer has (H, n) = {expected}.")
  out = {}
  for name, value in s4d_params.items():
    shape = jnp.shape(value)
    if name in MODE_PARAMS:
      out[name] = mask
    elif name in PAIR_PARAMS:
      out[name] = jnp.broadcast_to(mask[..., None], shape)
    else:
      out[name] = jnp.ones(shape, jnp.float32)
  return out


def s4d_paths(params_tree) -> list[str]:
  """'/'-joined paths of every S4D layer (a dict holding "log_neg_re_a") in a params tree."""
  paths = []

  def visit(tree, prefix):
    if "log_neg_re_a" in tree:
      paths.append("/".join(prefix))
      return
    for key, value in tree.items():
      if isinstance(value, Mapping):
        visit(value, prefix + [key])

  visit(params_tree, [])
  return paths


def _subtree(tree: dict, path: str) -> tuple[dict, str]:
  """(parent dict, last key) of a '/'-joined path; ConfigError naming the valid layers."""
  keys = path.split("/")
  node = tree
  for key in keys[:-1]:
    node = node.get(key) if isinstance(node, Mapping) else None
    if node is None:
      break
  if not isinstance(node, Mapping) or not isinstance(node.get(keys[-1]), Mapping):
    raise errors.ConfigError(f"No S4D layer at {path!r}; layers in this model: {s4d_paths(tree)}.")
  return node, keys[-1]


def model_masks(params_tree, mode_masks: dict[str, jax.Array]) -> dict:
  """float32 0/1 masks for a whole model's params tree.

  Args:
    params_tree: nested dict of parameters (the Flax "params" collection).
    mode_masks: {layer path ('/'-joined, e.g. "block_0/s4d"): (H, n) bool keep mask}.

  Returns:
    a nested dict of the same structure: `s4d_param_masks` at the listed layers, ones of
    each parameter's shape everywhere else.
  """
  masks = jax.tree_util.tree_map(
    lambda x: jnp.ones(jnp.shape(x), jnp.float32), _to_dict(params_tree)
  )
  for path, mode_mask in mode_masks.items():
    parent, key = _subtree(masks, path)
    parent[key] = s4d_param_masks(parent[key], mode_mask)
  return masks


def apply_masks(params_tree, masks_tree):
  """Parameters as the forward pass must see them: b, c, c_reverse multiplied by their masks.

  Only leaves named in MASKED_IN_FORWARD change (a zero b or c removes a mode exactly);
  log_neg_re_a and im_a are left as they are (their masks only freeze them, see
  `mask_updates`). Call it on the parameters once whenever the masks change (so the stored
  values are the pruned ones and later scores see zeros), and inside the loss if the
  gradients of pruned entries should read zero too. Jittable.

  Args:
    params_tree, masks_tree: nested dicts of the same structure (`model_masks`).

  Returns:
    the masked params tree (plain nested dicts).
  """

  def one(path, param, mask):
    if _leaf_name(path) in MASKED_IN_FORWARD:
      return param * mask.astype(param.dtype)
    return param

  return jax.tree_util.tree_map_with_path(one, _to_dict(params_tree), _to_dict(masks_tree))


def fill_pruned_modes(params_tree, masks_tree):
  """Pruned modes' log_neg_re_a and im_a set to those of their channel's first kept mode.

  A pruned mode contributes nothing (its b and c are zero), but its a_bar still enters the
  statistics of a quantized a_bar grid (the largest decay or angle of a channel or tensor).
  Keeping every pruned mode a copy of a kept one makes the masked model's set of a_bar
  values per channel exactly the kept set, so its quantization grid, and hence its
  outputs, equal those of the compact export (`compact_s4d` pads with the same copies).
  Call it whenever the masks change and after every optimizer step (the kept mode moves).
  Jittable.

  Args:
    params_tree, masks_tree: nested dicts of the same structure (`model_masks`).

  Returns:
    the params tree (plain nested dicts) with the pruned modes' A parameters filled.
  """

  def visit(params, masks):
    if not isinstance(params, Mapping):
      return params
    out = {key: visit(value, masks[key]) for key, value in params.items()}
    if all(name in params for name in MODE_PARAMS):
      keep = masks[MODE_PARAMS[0]] > 0
      first = jnp.argmax(keep, axis=1)[:, None]  # First kept mode of every channel.
      for name in MODE_PARAMS:
        value = params[name]
        out[name] = jnp.where(keep, value, jnp.take_along_axis(value, first, axis=1))
    return out

  return visit(_to_dict(params_tree), _to_dict(masks_tree))


def mask_updates(updates_tree, masks_tree):
  """Optimiser updates with every leaf multiplied by its mask, so pruned entries never move.

  Apply to the output of the optimiser's `update` (after momentum and weight decay, which
  would otherwise move pruned entries), before adding the updates to the parameters.
  Jittable; the masks can be an ordinary (traced) argument of the train step.
  """
  return jax.tree_util.tree_map(
    lambda update, mask: update * mask.astype(update.dtype),
    _to_dict(updates_tree),
    _to_dict(masks_tree),
  )


# ---------------------------------------------------------------------------------------
# Export: a physically smaller layer.
# ---------------------------------------------------------------------------------------


def compact_s4d(s4d_params: dict, mode_mask, n_modes: int | None = None) -> tuple[dict, int]:
  """One S4D layer with only its kept modes: same outputs, smaller n.

  Each channel's kept modes are gathered in their original order into the first slots. A
  mask with the same count k in every channel (scope "channel") gives arrays of shape
  (H, k) / (H, k, 2) and nothing else. With varying counts every channel is padded to the
  largest count (or to `n_modes`) with filler modes whose b and c are 0 and whose
  log_neg_re_a, im_a copy a kept mode of the channel: stable, and contributing exactly
  nothing to the output. Host-side (not jittable): the output shape depends on the mask.

  Args:
    s4d_params: {name: array} of one S4D layer.
    mode_mask: (H, n) bool keep mask (concrete).
    n_modes: pad every channel to this many modes (at least the largest kept count), e.g.
      to give every layer of a model one common n; None = the largest kept count.

  Returns:
    (new parameter dict, new n). Parameters other than the per-mode ones are unchanged.
  """
  mask = np.asarray(mode_mask, bool)
  expected = tuple(np.shape(s4d_params["log_neg_re_a"]))
  if mask.shape != expected:
    raise ValueError(f"Mode mask has shape {mask.shape}, the layer has (H, n) = {expected}.")
  counts = mask.sum(axis=1)
  new_n = max(int(counts.max()), 1)
  if n_modes is not None:
    if n_modes < new_n:
      raise errors.ConfigError(f"n_modes={n_modes} is below the kept count {new_n}.")
    new_n = n_modes
  channels = mask.shape[0]
  index = np.zeros((channels, new_n), np.int32)
  valid = np.zeros((channels, new_n), bool)
  for h in range(channels):
    kept = np.flatnonzero(mask[h])
    # Filler slots repeat the channel's first kept mode (mode 0 if the channel kept none).
    filler = kept[0] if kept.size else 0
    index[h] = np.concatenate([kept, np.full(new_n - kept.size, filler)])
    valid[h, : kept.size] = True
  rows = np.arange(channels)[:, None]
  out = dict(s4d_params)
  for name, value in s4d_params.items():
    if name in MODE_PARAMS:
      out[name] = jnp.asarray(value)[rows, index]
    elif name in PAIR_PARAMS:
      gathered = jnp.asarray(value)[rows, index]
      out[name] = gathered * jnp.asarray(valid[..., None], gathered.dtype)
  return out, new_n


def compact_model(
  params_tree, mode_masks: dict[str, jax.Array], common_n: bool = False
) -> tuple[dict, dict[str, int]]:
  """`compact_s4d` at every listed layer of a model's params tree.

  Args:
    params_tree: nested dict of parameters.
    mode_masks: {layer path: (H, n) bool keep mask}.
    common_n: pad every listed layer to the largest new n among them, so one architecture
      setting (models.ModelConfig has a single d_state) builds the whole compact model.
      Layers not listed keep their n.

  Returns:
    (new params tree (plain nested dicts), {layer path: new n}); the new d_state is 2 n.
  """
  n_modes = None
  if common_n and mode_masks:
    n_modes = max(max(int(np.asarray(m, bool).sum(axis=1).max()), 1) for m in mode_masks.values())
  tree = _to_dict(params_tree)
  new_ns = {}
  for path, mode_mask in mode_masks.items():
    parent, key = _subtree(tree, path)
    parent[key], new_ns[path] = compact_s4d(parent[key], mode_mask, n_modes)
  return tree, new_ns
