"""Greedy pruning as the QS4D authors ran it: candidates tried at zero one at a time, in
score order, each kept at zero while the accuracy stays within a tolerance of the unpruned
model's (docs/design.md §1, "Greedy pruning").

Three kinds of candidate (`KINDS`), each pruned in its own pass from the unpruned model:

  linear        one entry of a block's mixing layer (the GLU dense kernel, (H, 2H));
  unstructured  one mode n of one channel h of an S4D layer: c[h, n] (and c_reverse[h, n])
                set to zero, which removes that mode's contribution exactly;
  structured    one mode index n of an S4D layer in every channel at once: the column
                c[:, n], which shrinks the layer's state by one mode (`prune.compact_s4d`
                exports the smaller layer).

The pass goes layer by layer (the model's order), and within a layer from the lowest score
to the highest (`order`); a candidate is kept at zero if the accuracy with it and every
earlier kept candidate at zero is at least `threshold`. That is a sequential decision, but
it is evaluated in batches without changing a single decision (`greedy`): while candidates
are being kept, a batch tries the chain "first one, first two, ..." (each prefix at zero),
exact up to its first failure; while they are being rejected the mask does not change, so
a batch tries each candidate alone on the current mask, exact up to its first success.
Every batch is one call of a vmapped program over masks (`accuracy_fn`).

Pure JAX on nested-dict parameter trees; the model comes in as its apply function.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ssm_aimc import errors, prune

KINDS = ("linear", "unstructured", "structured")
# The mixing layer of a block, as models.S4DBlock names it.
MIXING = "glu_dense"


@dataclasses.dataclass(frozen=True)
class UnitGroup:
  """The candidates of one kind in one layer: an array of `shape` units, unit i of the
  flattened array at global index `start + i` of the model's keep vector.

  Attributes:
    kind: one of KINDS.
    layer: the layer's path in the params tree ('/'-joined, e.g. "block_0/s4d").
    shape: the units' array shape ((H, 2H) linear, (H, n) unstructured, (n,) structured).
    start: the first unit's index in the model's keep vector.
    leaves: the '/'-joined paths of the parameters a unit zeroes.
  """

  kind: str
  layer: str
  shape: tuple[int, ...]
  start: int
  leaves: tuple[str, ...]

  @property
  def size(self) -> int:
    return int(np.prod(self.shape))

  def expand(self, mask: jax.Array) -> jax.Array:
    """A (shape) keep mask broadcast onto the leaves' shape."""
    if self.kind == "linear":
      return mask  # (H, 2H), the kernel's own shape.
    if self.kind == "unstructured":
      return mask[..., None]  # (H, n) -> (H, n, 2): Re and Im of c[h, n].
    return mask[None, :, None]  # (n,) -> (1, n, 1): mode n of every channel.


def _node(tree: Mapping, path: str):
  for key in path.split("/"):
    tree = tree[key]
  return tree


def _mixing_paths(params: Mapping) -> list[str]:
  """Paths of the blocks' mixing layers ("block_i/glu_dense"), in the model's order."""
  return [f"{name}/{MIXING}" for name in params if MIXING in params[name]]


def unit_groups(params: Mapping, kinds: tuple[str, ...] = KINDS) -> tuple[UnitGroup, ...]:
  """The candidate groups of `kinds` over a whole params tree: kind by kind, layer by layer,
  one keep vector for all of them (each kind's pass leaves the others' units at 1).

  Raises:
    ConfigError: an unknown kind, or a model with no candidate of a kind (a ReLU model
      has no GLU mixing layer).
  """
  groups, start = [], 0
  for kind in kinds:
    if kind not in KINDS:
      raise errors.ConfigError(f"Unknown greedy pruning kind {kind!r}; valid: {KINDS}.")
    layers = _mixing_paths(params) if kind == "linear" else prune.s4d_paths(params)
    if not layers:
      what = "mixing (glu_dense) layer" if kind == "linear" else "S4D layer"
      raise errors.ConfigError(
        f"Greedy pruning of kind {kind!r} needs a {what}; the model has none."
      )
    for layer in layers:
      node = _node(params, layer)
      if kind == "linear":
        shape, leaves = tuple(np.shape(node["kernel"])), (f"{layer}/kernel",)
      else:
        h, n = np.shape(node["log_neg_re_a"])
        shape = (h, n) if kind == "unstructured" else (n,)
        names = [name for name in prune.PAIR_PARAMS if name != "b" and name in node]
        leaves = tuple(f"{layer}/{name}" for name in names)
      groups.append(UnitGroup(kind, layer, shape, start, leaves))
      start += groups[-1].size
  return tuple(groups)


def of_kind(groups, kind: str) -> list[UnitGroup]:
  return [g for g in groups if g.kind == kind]


def n_units(groups) -> int:
  return groups[-1].start + groups[-1].size


def _to_dict(tree):
  if isinstance(tree, Mapping):
    return {key: _to_dict(value) for key, value in tree.items()}
  return tree


def masked_params(params: Mapping, groups: list[UnitGroup], keep: jax.Array) -> dict:
  """`params` with every unit whose `keep` entry is 0 set to zero (jittable, vmappable over
  keep).

  Args:
    params: nested dict of parameters.
    groups: `unit_groups` of the tree.
    keep: (n_units,) bool or 0/1: the model's keep vector.
  """
  out = _to_dict(params)
  for g in groups:
    mask = g.expand(jnp.reshape(keep[g.start : g.start + g.size], g.shape))
    for path in g.leaves:
      *parents, name = path.split("/")
      node = _node(out, "/".join(parents))
      node[name] = node[name] * mask.astype(node[name].dtype)
  return out


def unit_scores(params: Mapping, groups, mode_scores: Mapping | None = None) -> np.ndarray:
  """(n_units,) scores, higher = more important: |w| for a linear entry; for modes the
  per-mode scores `mode_scores` ({S4D layer path: (H, n)}, e.g. `pruning.layer_scores`'
  H2 energies), summed over the channels for the structured kind."""
  out = np.zeros(n_units(groups), np.float64)
  for g in groups:
    if g.kind == "linear":
      score = np.abs(np.asarray(_node(params, g.layer)["kernel"], np.float64))
    else:
      if mode_scores is None or g.layer not in mode_scores:
        raise errors.ConfigError(f"No mode scores for the S4D layer {g.layer!r}.")
      score = np.asarray(mode_scores[g.layer], np.float64)
      if g.kind == "structured":
        score = score.sum(axis=0)
    out[g.start : g.start + g.size] = score.reshape(-1)
  return out


def order(groups, scores: np.ndarray) -> np.ndarray:
  """The candidates' order of trial: group by group (layer by layer), each group's lowest
  score first (ties: the lower index first)."""
  parts = []
  for g in groups:
    local = np.asarray(scores[g.start : g.start + g.size])
    parts.append(g.start + np.argsort(local, kind="stable"))
  return np.concatenate(parts)


@dataclasses.dataclass(frozen=True)
class GreedyResult:
  """What a greedy pass decided.

  Attributes:
    keep: (n_units,) bool, False = kept at zero (pruned).
    accuracy: the accuracy of the final mask (the last accepted evaluation; the baseline
      when nothing was pruned).
    evaluations: masks evaluated (batches x batch size, padding included).
    batches: calls of the evaluation program.
    seconds: wall time of the pass.
  """

  keep: np.ndarray
  accuracy: float
  evaluations: int
  batches: int
  seconds: float


def _leading(flags: np.ndarray, value: bool) -> int:
  """How many leading entries of `flags` equal `value`."""
  other = np.flatnonzero(flags != value)
  return int(other[0]) if other.size else len(flags)


def greedy(
  evaluate: Callable[[np.ndarray], np.ndarray],
  candidates: np.ndarray,
  n: int,
  threshold: float,
  baseline: float,
  max_batch: int = 16,
) -> GreedyResult:
  """The greedy pass over `candidates` (unit indices in trial order) of an n-unit keep vector.

  Candidate k is pruned if evaluate(keep with it and every earlier pruned unit at zero) >=
  threshold. Batched exactly (module docstring): each call evaluates a fixed-size batch of
  masks (padding repeats the last), so `evaluate` compiles once per batch size; the batch
  size adapts to the length of the last run of equal decisions (powers of two up to
  `max_batch`), so long runs cost few calls and alternating decisions waste little.
  `max_batch=1` is the plain one-at-a-time pass.

  Args:
    evaluate: (B, n) 0/1 float32 masks -> (B,) accuracies.
    candidates: unit indices in the order they are tried (each at most once).
    n: units in the keep vector.
    threshold: the lowest accuracy still accepted.
    baseline: the accuracy of the unpruned model (reported when nothing is pruned).
    max_batch: the largest batch (a power of two).
  """
  if max_batch < 1 or max_batch & (max_batch - 1):
    raise errors.ConfigError(f"max_batch must be a power of two >= 1, got {max_batch}.")
  candidates = np.asarray(candidates, np.int64)
  if len(np.unique(candidates)) != len(candidates):
    raise ValueError("Every candidate may be tried only once.")
  start_time = time.time()
  keep = np.ones(n, bool)
  accuracy, i, batches, evaluations = float(baseline), 0, 0, 0
  chain, run = True, 1  # Start by chaining: the lowest scores are the likeliest to go.
  while i < len(candidates):
    size = 1
    while size < min(2 * run, max_batch):
      size *= 2
    chunk = candidates[i : i + size]
    masks = np.repeat(keep[None].astype(np.float32), size, axis=0)
    for j, unit in enumerate(chunk):
      if chain:
        masks[j:, unit] = 0.0  # Prefix j: chunk[0..j] at zero.
      else:
        masks[j, unit] = 0.0  # Alone on the current mask.
    if len(chunk) < size:
      masks[len(chunk) :] = masks[len(chunk) - 1]
    acc = np.asarray(evaluate(masks))[: len(chunk)]
    ok = acc >= threshold
    batches, evaluations = batches + 1, evaluations + size
    if chain:
      kept = _leading(ok, True)
      keep[chunk[:kept]] = False
      if kept:
        accuracy = float(acc[kept - 1])
      decided = min(kept + 1, len(chunk))  # The first failure is decided (rejected) too.
      if kept < len(chunk):
        chain, run = False, 1
      else:
        run += kept
    else:
      rejected = _leading(ok, False)
      if rejected < len(chunk):
        keep[chunk[rejected]] = False
        accuracy = float(acc[rejected])
        chain, run = True, 1
      else:
        run += rejected
      decided = min(rejected + 1, len(chunk))
    i += decided
  return GreedyResult(keep, accuracy, evaluations, batches, time.time() - start_time)


def block_index(layer: str) -> int:
  """The block a layer path belongs to: "block_3/s4d" -> 3."""
  head = layer.split("/")[0]
  if not head.startswith("block_") or not head[6:].isdigit():
    raise errors.ConfigError(f"Layer {layer!r} is not inside a block_<i>.")
  return int(head[6:])


@functools.lru_cache(maxsize=16)
def _programs(model, groups: tuple, apply_kwargs: tuple):
  """The jitted programs of `Evaluator` for one model structure and unit layout, shared by
  every Evaluator of equal ones (a seed or bit width is traced, not compiled in)."""
  kwargs = dict(apply_kwargs)

  def variables(params, extra, keep):
    return {"params": masked_params(params, groups, keep), **extra}

  @functools.partial(jax.jit, static_argnames="stop")
  def stream(params, extra, spec, keep, xb, stop):
    return model.apply(variables(params, extra, keep), xb, spec=spec, stop=stop, **kwargs)

  @functools.partial(jax.jit, static_argnames="start")
  def correct(params, extra, spec, masks, hb, yb, valid, start):
    def one(keep):
      logits = model.apply(variables(params, extra, keep), hb, spec=spec, start=start, **kwargs)
      return jnp.sum((jnp.argmax(logits, -1) == yb) * valid)

    return jax.vmap(one)(masks)

  return stream, correct


class Evaluator:
  """Accuracies of many masked variants of one model on fixed examples.

  The examples go through in padded batches of `batch_size`; every call of the program is
  vmapped over a batch of masks. The model is split at a block (its apply takes `start` /
  `stop`, `models.S4DClassifier`): the stream entering the block whose units are being
  pruned is computed once, and only that block onward runs for every mask.

  Args:
    model: the model (hashable, with apply(variables, x, spec=, start=, stop=, **kwargs)).
    params: the unpruned model's params.
    groups: `unit_groups` of params.
    x, y: the examples ((N, L, d) inputs, (N,) labels), e.g. the validation split.
    batch_size: examples per call.
    spec: the model's quantization spec (traced; None: float).
    extra_variables: other collections of the model's variables (e.g. "batch_stats").
    apply_kwargs: passed on, static (e.g. train=False).
  """

  def __init__(
    self,
    model,
    params: Mapping,
    groups,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    spec=None,
    extra_variables: Mapping | None = None,
    **apply_kwargs,
  ):
    self.params, self.groups, self.n, self.spec = params, tuple(groups), len(y), spec
    self.extra = dict(extra_variables or {})
    size = min(batch_size, self.n)
    pad = (-self.n) % size
    self._size = size
    self._x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    self._y = np.concatenate([y, np.zeros((pad,), y.dtype)])
    self._valid = np.concatenate([np.ones(self.n, np.float32), np.zeros(pad, np.float32)])
    self._stream, self._correct = _programs(model, self.groups, tuple(sorted(apply_kwargs.items())))

  def _batches(self):
    for s in range(0, len(self._y), self._size):
      yield slice(s, s + self._size)

  def streams(self, keep: np.ndarray, block: int) -> list:
    """The stream entering `block` for every batch of examples, under `keep`."""
    keep = jnp.asarray(keep, jnp.float32)
    if block == 0:
      return [self._x[b] for b in self._batches()]
    return [
      self._stream(self.params, self.extra, self.spec, keep, self._x[b], block)
      for b in self._batches()
    ]

  def accuracies(self, masks: np.ndarray, streams: list | None = None, block: int = 0):
    """(B, n_units) 0/1 masks -> (B,) accuracies; `streams` from `streams(keep, block)`
    (the earlier blocks' units of every mask must equal that keep's)."""
    streams = self.streams(np.ones(masks.shape[1]), 0) if streams is None else streams
    masks = jnp.asarray(masks, jnp.float32)
    total = 0
    for h, b in zip(streams, self._batches(), strict=True):
      total = total + self._correct(
        self.params, self.extra, self.spec, masks, h, self._y[b], self._valid[b], block
      )
    return np.asarray(total, np.float64) / self.n


@dataclasses.dataclass(frozen=True)
class ModelResult:
  """A greedy pass over a whole model.

  Attributes:
    kind: the candidates' kind.
    groups: the `unit_groups` of that kind.
    keep: (n_units,) bool over every group of the evaluator, False = pruned.
    baseline: the unpruned model's accuracy on the judging examples.
    accuracy: the pruned model's accuracy on them.
    evaluations, batches, seconds: summed over the layers' passes.
  """

  kind: str
  groups: list
  keep: np.ndarray
  baseline: float
  accuracy: float
  evaluations: int
  batches: int
  seconds: float

  def mode_masks(self, params: Mapping) -> dict[str, jax.Array]:
    """{S4D layer path: (H, n) bool mode keep mask} of a pass over modes (`prune`'s masks:
    a structured unit keeps or removes its mode in every channel)."""
    if self.kind == "linear":
      raise errors.ConfigError("A pass over mixing-layer entries has no mode masks.")
    out = {}
    for g in self.groups:
      keep = self.keep[g.start : g.start + g.size].reshape(g.shape)
      shape = np.shape(_node(params, g.layer)["log_neg_re_a"])
      out[g.layer] = jnp.asarray(np.broadcast_to(keep, shape))
    return out

  def shares(self) -> dict:
    """{"total": share of all the kind's units pruned, layer path: that layer's share}."""
    mine = [self.keep[g.start : g.start + g.size] for g in self.groups]
    out = {"total": float(1.0 - np.concatenate(mine).mean())}
    for g, keep in zip(self.groups, mine, strict=True):
      out[g.layer] = float(1.0 - keep.mean())
    return out


def prune_model(
  evaluator: Evaluator,
  kind: str,
  scores: np.ndarray,
  tolerance: float,
  max_batch: int = 16,
) -> ModelResult:
  """The greedy pass of `kind` over the model of `evaluator`, layer by layer.

  A layer's candidates are tried lowest score first with every earlier layer's decisions
  in place; a candidate stays at zero if the accuracy remains >= baseline - tolerance, the
  baseline being the unpruned model's accuracy (so the whole model ends within the
  tolerance of it).

  Args:
    evaluator: the model and the judging examples (the validation split).
    kind: one of KINDS (among the evaluator's groups); the other kinds' units stay at 1.
    scores: (n_units,) `unit_scores`.
    tolerance: the accuracy loss allowed (a fraction: 0.01 is one point).
    max_batch: `greedy`'s largest batch of masks.
  """
  groups = of_kind(evaluator.groups, kind)
  n = n_units(evaluator.groups)
  keep = np.ones(n, bool)
  baseline = float(evaluator.accuracies(np.ones((1, n), np.float32))[0])
  accuracy, evaluations, batches, start_time = baseline, 0, 0, time.time()
  trial = order(groups, scores)
  for g in groups:
    block = block_index(g.layer)
    streams = evaluator.streams(keep, block)
    mine = (trial >= g.start) & (trial < g.start + g.size)

    def evaluate(local, g=g, streams=streams, block=block):
      masks = np.repeat(keep[None].astype(np.float32), len(local), axis=0)
      masks[:, g.start : g.start + g.size] = local
      return evaluator.accuracies(masks, streams, block)

    result = greedy(
      evaluate, trial[mine] - g.start, g.size, baseline - tolerance, accuracy, max_batch
    )
    keep[g.start : g.start + g.size] = result.keep
    accuracy, evaluations = result.accuracy, evaluations + result.evaluations
    batches += result.batches
  return ModelResult(
    kind, groups, keep, baseline, accuracy, evaluations, batches, time.time() - start_time
  )
