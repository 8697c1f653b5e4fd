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

Whole channels h (the residual stream's, shared by the encoder, every block and the
decoder) go the same way: `channel_scores` -> `channel_keep_mask` -> `channel_param_masks`,
`apply_channel_masks` and `fill_pruned_modes` for fine-tuning the channel-masked model
(models.S4DClassifier with `channels`) -> `compact_channels`, a model with a smaller H.

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


def nonzero_modes(params_tree) -> dict[str, jax.Array]:
  """{S4D layer path: (H, n) bool}: the modes whose read-out c (or c_reverse) is not exactly
  zero. Pruned modes are held at zero through fine-tuning (`apply_masks`,
  `mask_updates`), so this recovers a run's keep masks from its params (a resumed run)."""
  tree = _to_dict(params_tree)
  out = {}
  for path in s4d_paths(tree):
    node = tree
    for key in path.split("/"):
      node = node[key]
    alive = jnp.any(jnp.asarray(node["c"]) != 0, axis=-1)
    if "c_reverse" in node:
      alive = alive | jnp.any(jnp.asarray(node["c_reverse"]) != 0, axis=-1)
    out[path] = alive
  return out


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

  A channel with no kept mode at all (a pruned channel, `channel_param_masks`) takes the
  log_neg_re_a, im_a and log_step of the first channel that keeps a mode, so its a_bar
  values are again kept ones. Mode masks keep a mode in every channel, so for them this
  second fill selects every value as it is.

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
      live = jnp.any(keep, axis=1)  # Channels that keep a mode.
      source = jnp.argmax(live)  # The first of them.
      for name in MODE_PARAMS:
        value = params[name]
        value = jnp.where(keep, value, jnp.take_along_axis(value, first, axis=1))
        out[name] = jnp.where(live[:, None], value, value[source][None])
      if "log_step" in params:
        out["log_step"] = jnp.where(live, params["log_step"], params["log_step"][source])
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


# ---------------------------------------------------------------------------------------
# Channels: whole channels h of the residual stream (H), across the model.
# ---------------------------------------------------------------------------------------

# Leaves of a classifier's trees (params or batch_stats) with one entry per channel along
# axis 0 (norm vectors and running statistics, the S4D layer's per-channel parameters).
CHANNEL_LEAVES = {
  "norm": ("scale", "bias", "mean", "var"),
  "s4d": ("log_step", "log_neg_re_a", "im_a", "b", "c", "c_reverse", "d"),
}
# Leaves a channel mask leaves at their value: zeroing A or log_step would make a pruned
# channel a different live SSM (`fill_pruned_modes` copies a kept channel's there
# instead), and a zero LSQ step or clip range would divide by zero. Their masks only
# freeze them.
CHANNEL_UNMASKED = ("log_neg_re_a", "im_a", "log_step", "kernel_scale", "input_range")


def _dense_axes(module: str, name: str, shape: tuple, n_channels: int) -> dict[int, np.ndarray]:
  """{axis: channel of each index} of a Dense leaf (encoder, glu_dense, decoder).

  The encoder writes channels (kernel columns, bias, the per-output LSQ step); the decoder
  reads them (kernel rows); glu_dense reads them (kernel rows) and writes k H outputs, k
  the width of the block's activation: ReLU's output j is channel j, GLU's is split into
  a value half and a gate half, so outputs h and H + h both belong to channel h.
  """
  channels = np.arange(n_channels)
  if name == "input_range":
    return {}
  if module == "decoder":
    return {0: channels} if name == "kernel" else {}
  width = shape[-1] // n_channels if module == "glu_dense" else 1
  if width not in (1, 2) or shape[-1] != width * n_channels:
    raise errors.ConfigError(
      f"{module}/{name} has shape {shape}: its outputs are not 1 or 2 x H={n_channels}."
    )
  outputs = np.tile(channels, width)
  axes = {len(shape) - 1: outputs}
  if name == "kernel" and module == "glu_dense":
    axes[0] = channels
  return axes


def _channel_axes(path: tuple[str, ...], shape: tuple, n_channels: int) -> dict[int, np.ndarray]:
  """{axis: channel of each index along it} of one leaf of a classifier's params or
  batch_stats tree ({} for a leaf without channels); ConfigError for a leaf this
  function does not know, so that no H-indexed leaf is ever skipped in silence."""
  where = "/".join(path)
  top_level = len(path) == 2 and path[0] in ("encoder", "decoder")
  in_block = len(path) == 3 and path[0].startswith("block_") and path[0][6:].isdigit()
  known = top_level or (in_block and path[1] in ("norm", "s4d", "glu_dense"))
  module, name = path[-2:] if len(path) >= 2 else ("", "")
  dense = name in ("kernel", "bias", "kernel_scale", "input_range")
  if known and module in ("encoder", "decoder", "glu_dense") and dense:
    axes = _dense_axes(module, name, shape, n_channels)
  elif known and name in CHANNEL_LEAVES.get(module, ()):
    axes = {0: np.arange(n_channels)}
  elif known and module == "s4d" and name == "input_range":
    axes = {}
  else:
    raise errors.ConfigError(
      f"Channel pruning does not know the leaf {where!r} (shape {shape}); it knows the "
      "encoder, decoder and block_<i>/{norm, s4d, glu_dense} of models.S4DClassifier."
    )
  for axis, index in axes.items():
    if shape[axis] != index.size:
      raise errors.ConfigError(
        f"{where} has shape {shape}; axis {axis} should have {index.size} entries for "
        f"H={n_channels} channels."
      )
  return axes


def _map_channels(fn, tree, n_channels: int):
  """fn(path, leaf, {axis: channel index}) at every leaf of a nested-dict tree."""

  def visit(node, path):
    if isinstance(node, Mapping):
      return {key: visit(value, path + (str(key),)) for key, value in node.items()}
    return fn(path, node, _channel_axes(path, tuple(np.shape(node)), n_channels))

  return visit(tree, ())


def _check_keep(keep, n_channels: int | None = None) -> np.ndarray:
  """keep as a concrete (H,) bool array with at least one True, else ConfigError."""
  keep = np.asarray(keep, bool)
  if keep.ndim != 1 or (n_channels is not None and keep.shape[0] != n_channels):
    raise errors.ConfigError(f"A channel keep mask must have shape (H,), got {keep.shape}.")
  if not keep.any():
    raise errors.ConfigError("A channel keep mask must keep at least one channel.")
  return keep


def channel_count(params_tree) -> int:
  """H of a classifier's params tree: the width of its encoder's bias."""
  try:
    return int(np.shape(params_tree["encoder"]["bias"])[0])
  except (KeyError, TypeError, IndexError) as e:
    raise errors.ConfigError("Channel pruning needs a tree with an encoder bias (H,).") from e


def channel_scores(params_tree, s4d_scores: dict[str, jax.Array] | None = None) -> jax.Array:
  """How much each channel h of the residual stream carries: an (H,) score.

  The sum, over the matrices that write or read the channel, of the channel's share of
  the matrix's energy: the squared L2 norm of its entries divided by the mean over
  channels (so a matrix's scale does not matter, and a channel of average weight scores
  1 per matrix). The matrices: the encoder's kernel column, every block's glu_dense
  kernel row (what the block reads) and its output columns (GLU: value and gate), the
  decoder's kernel row; and, with `s4d_scores`, each S4D layer's energy of the channel,
  its mode scores summed over modes (e.g. `mode_scores_h2`, the channel's squared H2
  norm). A channel whose entries are all zero (pruned before) scores 0.

  Args:
    params_tree: a classifier's params tree (nested dicts; see `compact_channels`).
    s4d_scores: None, or {S4D layer path: (H, n) mode scores}.

  Returns:
    (H,) float32 scores, higher = more important.
  """
  tree = _to_dict(params_tree)
  n_channels = channel_count(tree)
  energies = []

  def collect(path, leaf, axes):
    if path[-1] != "kernel" or not axes:
      return leaf
    for axis, index in axes.items():
      squares = jnp.sum(jnp.square(jnp.asarray(leaf, jnp.float32)), axis=1 - axis)
      energies.append(jax.ops.segment_sum(squares, jnp.asarray(index), n_channels))
    return leaf

  _map_channels(collect, tree, n_channels)
  for path, scores in (s4d_scores or {}).items():
    if jnp.shape(scores)[0] != n_channels:
      raise errors.ConfigError(
        f"S4D scores of {path} have shape {jnp.shape(scores)}; the model has H={n_channels}."
      )
    energies.append(jnp.sum(jnp.asarray(scores, jnp.float32), axis=1))
  total = jnp.zeros((n_channels,), jnp.float32)
  for energy in energies:
    mean = jnp.mean(energy)
    total = total + jnp.where(mean > 0, energy / jnp.where(mean > 0, mean, 1.0), 0.0)
  return total


def channel_keep_mask(scores: jax.Array, ratio: float) -> np.ndarray:
  """(H,) bool mask of the channels to keep: the H - round(ratio H) highest scores (at
  least 1); equal scores keep the lower index. Host-side (the count fixes the model)."""
  ratio = _check_ratio(ratio)
  scores = np.asarray(scores)
  if scores.ndim != 1:
    raise ValueError(f"Channel scores must have shape (H,), got {scores.shape}.")
  n_channels = scores.shape[0]
  k = max(n_channels - round(ratio * n_channels), 1)
  order = np.argsort(0.0 - scores, kind="stable")
  keep = np.zeros((n_channels,), bool)
  keep[order[:k]] = True
  return keep


def channel_param_masks(tree, keep) -> dict:
  """float32 0/1 masks of a classifier's params (or batch_stats) tree from an (H,) channel
  keep mask: 0 at every entry that belongs to a pruned channel (`compact_channels` says
  which), 1 elsewhere. For `mask_updates` (a pruned channel never moves) and
  `apply_channel_masks`; `fill_pruned_modes` reads a pruned channel from the all-zero
  rows of its log_neg_re_a mask.

  Returns:
    a nested dict of the tree's structure.
  """
  tree = _to_dict(tree)
  keep = _check_keep(keep, channel_count(tree) if "encoder" in tree else None)

  def one(path, leaf, axes):
    mask = np.ones(np.shape(leaf), np.float32)
    for axis, index in axes.items():
      shape = [1] * mask.ndim
      shape[axis] = index.size
      mask = mask * keep[index].astype(np.float32).reshape(shape)
    return jnp.asarray(mask)

  return _map_channels(one, tree, keep.shape[0])


def apply_channel_masks(params_tree, masks_tree):
  """Parameters with every entry of a pruned channel set to zero (`channel_param_masks`),
  except CHANNEL_UNMASKED's (follow with `fill_pruned_modes`). The channel-masked model
  (models.S4DClassifier with `channels`) computes the same with or without this; the
  zeros keep a pruned channel out of the scales of quantized tensors (largest |value| of
  a tensor) and out of later channel scores. Jittable.
  """

  def one(path, param, mask):
    if _leaf_name(path) in CHANNEL_UNMASKED:
      return param
    return param * mask.astype(param.dtype)

  return jax.tree_util.tree_map_with_path(one, _to_dict(params_tree), _to_dict(masks_tree))


def compact_channels(tree, keep) -> dict:
  """A classifier's params (or BatchNorm batch_stats) tree with only its kept channels.

  Gathers, in their original order, the kept channels of every leaf indexed by H: the
  encoder's kernel columns, bias and LSQ step; every block's norm scale and bias (and
  running mean and var), its S4D log_step, d, log_neg_re_a, im_a (H, n), b, c, c_reverse
  (H, n, 2), its glu_dense kernel rows and the output columns, bias and step of each half
  of its outputs (GLU's value and gate, or ReLU's one); the decoder's kernel rows. The
  result is the params of the same classifier with d_model = the kept count, which
  computes what the channel-masked model (models.S4DClassifier with `channels`)
  computes. A leaf this function does not know raises ConfigError rather than being
  left at the old H. Host-side (the output shapes depend on the mask).

  Args:
    tree: nested dicts keyed as the Flax tree of models.S4DClassifier ({} stays {}).
    keep: (H,) bool, True = keep (at least one).

  Returns:
    the compact tree (plain nested dicts of jax arrays).
  """
  tree = _to_dict(tree)
  keep = _check_keep(keep, channel_count(tree) if "encoder" in tree else None)

  def one(path, leaf, axes):
    value = jnp.asarray(leaf)
    for axis, index in axes.items():
      value = jnp.take(value, np.flatnonzero(keep[index]), axis=axis)
    return value

  return _map_channels(one, tree, keep.shape[0])
