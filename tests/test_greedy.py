"""Greedy pruning (ssm_aimc.greedy): the batched pass against a plain one-at-a-time loop,
the split evaluation against the whole model's forward, and planted answers on a tiny
model."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_aimc import errors, experiment, greedy, runner
from ssm_aimc.configs import default


def _reference(evaluate_one, candidates, n, threshold):
  """The greedy pass as the authors describe it: one candidate at a time."""
  keep = np.ones(n, bool)
  for unit in candidates:
    trial = keep.copy()
    trial[unit] = False
    if evaluate_one(trial) >= threshold:
      keep = trial
  return keep


def _synthetic(n, seed):
  """An accuracy that loses a cost per pruned unit, plus a penalty for pruned pairs (so
  decisions depend on the earlier ones)."""
  rng = np.random.default_rng(seed)
  cost = rng.choice([0.0, 0.001, 0.004, 0.02], size=n, p=[0.4, 0.3, 0.2, 0.1])
  pair = rng.random((n, n)) < 0.05

  def one(keep):
    gone = ~np.asarray(keep, bool)
    return 0.9 - cost[gone].sum() - 0.003 * (pair[np.ix_(gone, gone)].sum() // 2)

  return one


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_greedy_decides_as_one_at_a_time(seed):
  n = 40
  one = _synthetic(n, seed)
  candidates = np.random.default_rng(seed + 10).permutation(n)
  expected = _reference(one, candidates, n, 0.88)
  assert 0 < expected.sum() < n  # Both decisions occur.
  calls = []

  def evaluate(masks):
    calls.append(len(masks))
    return np.array([one(m > 0.5) for m in masks])

  for max_batch in (1, 2, 8, 32):
    calls.clear()
    result = greedy.greedy(evaluate, candidates, n, 0.88, 0.9, max_batch)
    np.testing.assert_array_equal(result.keep, expected)
    assert result.accuracy == pytest.approx(one(expected))
    assert result.batches == len(calls) and result.evaluations == sum(calls)
    assert max(calls) <= max_batch
  # One at a time is one evaluation per candidate.
  assert greedy.greedy(evaluate, candidates, n, 0.88, 0.9, 1).evaluations == n


def test_greedy_refuses_a_bad_batch_and_repeated_candidates():
  with pytest.raises(errors.ConfigError, match="power of two"):
    greedy.greedy(lambda m: np.ones(len(m)), np.arange(3), 3, 0.5, 1.0, max_batch=3)
  with pytest.raises(ValueError, match="only once"):
    greedy.greedy(lambda m: np.ones(len(m)), np.array([0, 0]), 3, 0.5, 1.0)


def _model(**model):
  config = default.get_config("smoke")
  for key, value in model.items():
    config.model[key] = value
  exp = experiment.from_config(config)
  setup = runner.build(exp)
  params = runner.init_params(setup, 0)
  return setup, jax.tree_util.tree_map(np.asarray, params)


def test_unit_groups_cover_the_three_kinds_in_one_keep_vector():
  setup, params = _model()
  groups = greedy.unit_groups(params)
  h, n = params["block_0"]["s4d"]["log_neg_re_a"].shape
  shapes = {(g.kind, g.layer): g.shape for g in groups}
  assert shapes[("linear", "block_1/glu_dense")] == (h, 2 * h)
  assert shapes[("unstructured", "block_0/s4d")] == (h, n)
  assert shapes[("structured", "block_1/s4d")] == (n,)
  assert greedy.n_units(groups) == 2 * (2 * h * h + h * n + n)
  starts = [g.start for g in groups]
  assert starts == sorted(starts) and starts[0] == 0
  # Zeroing one structured unit zeroes that mode's c in every channel, nothing else.
  keep = np.ones(greedy.n_units(groups), np.float32)
  column = next(g for g in groups if g.kind == "structured" and g.layer == "block_0/s4d")
  keep[column.start + 1] = 0.0
  masked = greedy.masked_params(params, groups, jnp.asarray(keep))
  c = np.asarray(masked["block_0"]["s4d"]["c"])
  assert np.all(c[:, 1] == 0) and np.all(
    c[:, [0, 2, 3]] == params["block_0"]["s4d"]["c"][:, [0, 2, 3]]
  )
  np.testing.assert_array_equal(masked["block_0"]["s4d"]["b"], params["block_0"]["s4d"]["b"])


def test_unit_groups_refuse_what_the_model_lacks():
  with pytest.raises(errors.ConfigError, match="Unknown greedy pruning kind"):
    greedy.unit_groups({}, ("channels",))
  with pytest.raises(errors.ConfigError, match="glu_dense"):
    greedy.unit_groups({"encoder": {"kernel": np.ones((1, 4))}}, ("linear",))
  with pytest.raises(errors.ConfigError, match="S4D layer"):
    greedy.unit_groups({"encoder": {"kernel": np.ones((1, 4))}}, ("structured",))
  _, params = _model(activation="relu")  # Its mixing layer is (H, H): no gate half.
  (group, *_) = greedy.unit_groups(params, ("linear",))
  assert group.shape == params["block_0"]["glu_dense"]["kernel"].shape


def test_split_and_vmapped_evaluation_equal_the_whole_models_forward():
  setup, params = _model()
  groups = greedy.unit_groups(params)
  n = greedy.n_units(groups)
  x, y = setup.dataset.val.x[:40], setup.dataset.val.y[:40]
  rng = np.random.default_rng(0)
  masks = (rng.random((4, n)) > 0.3).astype(np.float32)

  def direct(mask):  # The plain path: masked params through the whole model.
    variables = {"params": greedy.masked_params(params, groups, jnp.asarray(mask))}
    logits = setup.model.apply(variables, jnp.asarray(x), train=False)
    return float(np.mean(np.argmax(logits, -1) == y))

  evaluator = greedy.Evaluator(setup.model, params, groups, x, y, 16, None, None, train=False)
  expected = [direct(m) for m in masks]
  np.testing.assert_allclose(evaluator.accuracies(masks), expected)  # vmapped, 3 batches
  np.testing.assert_allclose([evaluator.accuracies(m[None])[0] for m in masks], expected)
  # Split at block 1: the earlier units come from the stream's keep.
  late = masks.copy()
  early = [g for g in groups if greedy.block_index(g.layer) == 0]
  for g in early:
    late[:, g.start : g.start + g.size] = masks[0, g.start : g.start + g.size]
  streams = evaluator.streams(masks[0], 1)
  np.testing.assert_allclose(evaluator.accuracies(late, streams, 1), [direct(m) for m in late])


def _planted():
  """A tiny model whose labels are its own predictions, with zero-contribution units
  planted in every kind and one critical mode that carries the prediction."""
  setup, params = _model()
  s4d = params["block_0"]["s4d"]
  s4d["c"] = s4d["c"].copy()
  s4d["c"][:, 2] = 0.0  # A whole mode contributing nothing (structured and unstructured).
  s4d["c"][3, 0] = 0.0  # One mode of one channel.
  s4d["c"] *= 0.01
  s4d["c"][5, 1] = [30.0, -20.0]  # The critical mode.
  glu = params["block_1"]["glu_dense"]
  glu["kernel"] = glu["kernel"].copy()
  glu["kernel"][4, :3] = 0.0
  x = setup.dataset.train.x[:64]
  logits = setup.model.apply({"params": params}, jnp.asarray(x), train=False)
  return setup, params, x, np.asarray(jnp.argmax(logits, -1))


def test_greedy_prunes_planted_zeros_and_keeps_the_critical_mode():
  setup, params, x, y = _planted()
  groups = greedy.unit_groups(params)
  evaluator = greedy.Evaluator(setup.model, params, groups, x, y, 64, None, None, train=False)
  scores = greedy.unit_scores(
    params,
    groups,
    {
      p: np.abs(params[p.split("/")[0]]["s4d"]["c"][..., 0]) + 1e-3
      for p in ("block_0/s4d", "block_1/s4d")
    },
  )
  tolerance = 0.02
  find = lambda kind, layer: next(g for g in groups if g.kind == kind and g.layer == layer)
  un, st = find("unstructured", "block_0/s4d"), find("structured", "block_0/s4d")
  # Precondition: without the critical mode the prediction is lost.
  keep = np.ones(greedy.n_units(groups), np.float32)
  keep[un.start + 5 * un.shape[1] + 1] = 0.0
  assert evaluator.accuracies(keep[None])[0] < 1.0 - 5 * tolerance

  results = {k: greedy.prune_model(evaluator, k, scores, tolerance, 4) for k in greedy.KINDS}
  unstructured = results["unstructured"].keep[un.start : un.start + un.size].reshape(un.shape)
  assert not unstructured[:, 2].any() and not unstructured[3, 0]  # Planted zeros pruned.
  assert unstructured[5, 1]  # The critical mode kept.
  structured = results["structured"].keep[st.start : st.start + st.size]
  assert not structured[2] and structured[1]
  lin = find("linear", "block_1/glu_dense")
  linear = results["linear"].keep[lin.start : lin.start + lin.size].reshape(lin.shape)
  assert not linear[4, :3].any()
  for kind, result in results.items():
    assert result.baseline == 1.0 and result.accuracy >= 1.0 - tolerance, kind
    others = np.concatenate(
      [result.keep[g.start : g.start + g.size] for g in groups if g.kind != kind]
    )
    assert others.all()  # A pass touches its own kind only.
    shares = result.shares()
    assert 0 < shares["total"] < 1 and set(shares) == {"total", *(g.layer for g in result.groups)}
  # Same decisions one at a time.
  alone = greedy.prune_model(evaluator, "unstructured", scores, tolerance, 1)
  np.testing.assert_array_equal(alone.keep, results["unstructured"].keep)


def test_block_index_names_the_block():
  assert greedy.block_index("block_12/s4d") == 12
  with pytest.raises(errors.ConfigError, match="block_"):
    greedy.block_index("encoder")


def test_unit_group_is_hashable_so_programs_are_shared():
  setup, params = _model()
  a, b = greedy.unit_groups(params), greedy.unit_groups(params)
  assert a == b and hash(a) == hash(b)
  assert dataclasses.is_dataclass(a[0])
