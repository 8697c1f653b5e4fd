"""Tests of structured pruning: H2 scores against summed impulse responses, keep-mask rules,
schedules, masked fine-tuning and the masked model == the compacted model."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssm_aimc import blocks, errors, models, prune, quant, ssm


def decode(s4d_params: dict, discretization: str = "zoh") -> dict:
  """(a_bar, b_bar, c[, c_reverse]) of one S4D layer, as layers.S4D.discrete_params does."""
  a = ssm.decode_a(s4d_params["log_neg_re_a"], s4d_params["im_a"])
  b = ssm.complex_from_pair(s4d_params["b"]) if "b" in s4d_params else jnp.ones_like(a)
  step = jnp.exp(s4d_params["log_step"])[:, None]
  a_bar, b_bar = ssm.discretize(a, b, step, discretization)
  out = {"a_bar": a_bar, "b_bar": b_bar, "c": ssm.complex_from_pair(s4d_params["c"])}
  if "c_reverse" in s4d_params:
    out["c_reverse"] = ssm.complex_from_pair(s4d_params["c_reverse"])
  return out


def h2_scores(s4d_params: dict) -> jax.Array:
  p = decode(s4d_params)
  return prune.mode_scores_h2(p["a_bar"], p["b_bar"], p["c"], p.get("c_reverse"))


def model_scores(params: dict) -> dict[str, jax.Array]:
  """{layer path: (H, n) H2 scores} of every S4D layer of a params tree."""
  return {
    path: h2_scores(functools.reduce(dict.__getitem__, path.split("/"), params))
    for path in prune.s4d_paths(params)
  }


def h2_masks(params: dict, ratio: float, scope: str = "channel") -> dict[str, jax.Array]:
  return {path: prune.keep_mask(s, ratio, scope) for path, s in model_scores(params).items()}


# ---------------------------------------------------------------------------------------
# Scores.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "a_bar, b_bar, c",
  [
    (0.5 + 0.3j, 0.2 - 0.1j, 1.5 + 0.5j),
    (-0.9j, 1.0, -0.3 + 2.0j),
    (0.999 * np.exp(0.7j), 0.05 + 0.02j, 0.8 - 1.1j),  # |a_bar| = 0.999
    (0.999, 0.001, 3.0),
  ],
)
def test_h2_score_of_one_mode_is_its_impulse_response_energy(a_bar, b_bar, c):
  closed_form = abs(c * b_bar) ** 2 / (1.0 - abs(a_bar) ** 2)
  # 0.998^40000 ~ 1e-35: the truncated tail is far below float64 resolution.
  k = np.arange(40_000)
  energy = np.sum(np.abs(c * b_bar * a_bar**k) ** 2)
  with jax.enable_x64(True):
    score = prune.mode_scores_h2(*(jnp.asarray([[z]], jnp.complex128) for z in (a_bar, b_bar, c)))
    assert score.dtype == jnp.float64
  np.testing.assert_allclose(score[0, 0], closed_form, rtol=1e-12)
  np.testing.assert_allclose(score[0, 0], energy, rtol=1e-10)


def test_h2_score_of_a_layer_matches_per_mode_kernels_and_bidirectional_adds_c_reverse():
  """Per mode: sum_l |c b a^l|^2 from ssm.ssm_kernel, using 2 Re(-i z) = 2 Im z."""
  channels, n_modes, length = 3, 4, 6000
  with jax.enable_x64(True):
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    log_neg_re_a, im_a = (jnp.tile(x, (channels, 1)) for x in ssm.init_a(n_modes, "lin"))
    a = ssm.decode_a(log_neg_re_a.astype(jnp.float64), im_a.astype(jnp.float64))
    # Steps >= 0.01: |a_bar|^2 <= exp(-0.01), so 0.99^6000 ~ 1e-26 leaves no tail.
    step = jnp.linspace(0.01, 0.5, channels)[:, None]
    b = jax.random.normal(keys[0], (channels, n_modes)) + 1j * jax.random.normal(
      keys[1], (channels, n_modes)
    )
    c = jax.random.normal(keys[2], (channels, n_modes)) + 1j * jax.random.normal(
      keys[3], (channels, n_modes)
    )
    a_bar, b_bar = ssm.discretize(a, b, step)

    # Every mode as its own one-mode channel: ssm_kernel gives 2 Re(z_l) and 2 Im(z_l).
    def one_mode_energy(c):
      flat = [x.reshape(-1, 1) for x in (a_bar, b_bar, c)]
      re = ssm.ssm_kernel(*flat, length)
      im = ssm.ssm_kernel(flat[0], flat[1], -1j * flat[2], length)
      return (jnp.sum(re**2 + im**2, axis=0) / 4.0).reshape(channels, n_modes)

    energy = one_mode_energy(c)
    scores = prune.mode_scores_h2(a_bar, b_bar, c)
    np.testing.assert_allclose(scores, energy, rtol=1e-9)
    c_rev = jnp.conj(c)[:, ::-1] * 0.5
    np.testing.assert_allclose(
      prune.mode_scores_h2(a_bar, b_bar, c, c_rev), energy + one_mode_energy(c_rev), rtol=1e-9
    )


def test_h2_floor_keeps_unit_circle_modes_finite_and_largest():
  a_bar = jnp.array([[1.0 + 0j, 0.9, 1.0001]], jnp.complex64)
  scores = prune.mode_scores_h2(a_bar, jnp.ones_like(a_bar), jnp.ones_like(a_bar))
  assert jnp.all(jnp.isfinite(scores)) and scores[0, 0] == 1.0 / prune.H2_FLOOR
  assert scores[0, 0] > scores[0, 1]


def test_magnitude_score():
  b_bar = jnp.array([[3.0 + 4.0j, 1.0]])
  c = jnp.array([[1.0j, -2.0]])
  np.testing.assert_allclose(prune.mode_scores_magnitude(b_bar, c), [[5.0, 2.0]])


# ---------------------------------------------------------------------------------------
# Selection.
# ---------------------------------------------------------------------------------------


def reference_top(scores: np.ndarray, n_keep: int) -> np.ndarray:
  """Plain top-n_keep over the flattened array, ties to the lower index (pure Python)."""
  order = sorted(range(scores.size), key=lambda i: (-scores.reshape(-1)[i], i))
  keep = np.zeros(scores.size, bool)
  keep[order[:n_keep]] = True
  return keep.reshape(scores.shape)


@pytest.mark.parametrize("scope", prune.SCOPES)
def test_ratio_zero_keeps_everything(scope):
  scores = jax.random.uniform(jax.random.PRNGKey(0), (5, 6))
  assert jnp.all(prune.keep_mask(scores, 0.0, scope))


@pytest.mark.parametrize("ratio, k", [(0.25, 6), (0.5, 4), (0.6, 3), (0.9, 1), (0.99, 1)])
def test_channel_scope_keeps_k_per_channel_the_highest(ratio, k):
  scores = jax.random.uniform(jax.random.PRNGKey(1), (4, 8))
  mask = prune.keep_mask(scores, ratio, "channel")
  assert mask.shape == (4, 8) and mask.dtype == jnp.bool_
  np.testing.assert_array_equal(jnp.sum(mask, axis=1), [k] * 4)
  for h in range(4):
    np.testing.assert_array_equal(mask[h], reference_top(np.asarray(scores[h]), k))


def test_layer_scope_keeps_the_global_top():
  scores = np.asarray(jax.random.uniform(jax.random.PRNGKey(2), (4, 8)))
  mask = prune.keep_mask(jnp.asarray(scores), 0.5, "layer")
  # Random scores: every channel's best is in the top 16, so the floor does not bind.
  np.testing.assert_array_equal(mask, reference_top(scores, 16))


def test_layer_scope_keeps_one_mode_in_a_weak_channel():
  scores = np.array([[9.0, 8.0, 7.0], [6.0, 5.0, 4.0], [0.1, 0.3, 0.2]])
  mask = prune.keep_mask(jnp.asarray(scores), 0.5, "layer")  # keep 9 - round(4.5) = 5
  np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0], [0, 1, 0]])
  mask = prune.keep_mask(jnp.asarray(scores), 0.9, "layer")  # 1 < 3 channels: one each
  np.testing.assert_array_equal(mask, [[1, 0, 0], [1, 0, 0], [0, 1, 0]])


def test_ties_are_broken_towards_the_lower_index():
  scores = jnp.array([[1.0, 2.0, 2.0, 2.0], [0.0, -0.0, 0.0, 0.0]])
  np.testing.assert_array_equal(
    prune.keep_mask(scores, 0.5, "channel"), [[0, 1, 1, 0], [1, 1, 0, 0]]
  )
  np.testing.assert_array_equal(prune.keep_mask(scores, 0.5, "layer"), [[0, 1, 1, 1], [1, 0, 0, 0]])


@pytest.mark.parametrize("ratio, scope", [(1.0, "channel"), (-0.1, "layer"), (0.5, "row")])
def test_keep_mask_rejects_bad_config(ratio, scope):
  with pytest.raises(errors.ConfigError):
    prune.keep_mask(jnp.ones((2, 3)), ratio, scope)


def test_global_masks_keep_the_fraction_and_one_mode_per_channel():
  keys = jax.random.split(jax.random.PRNGKey(3), 2)
  scores = {
    "block_0/s4d": jax.random.uniform(keys[0], (4, 8)),
    # A layer of weak modes: a global threshold prunes it hardest, but not to nothing.
    "block_1/s4d": 1e-3 * jax.random.uniform(keys[1], (3, 4)),
  }
  masks = prune.global_keep_masks(scores, 0.6)
  assert set(masks) == set(scores)
  assert all(jnp.all(jnp.sum(m, axis=1) >= 1) for m in masks.values())
  assert int(jnp.sum(masks["block_1/s4d"])) == 3  # exactly the floor
  total = 32 + 12
  assert sum(int(jnp.sum(m)) for m in masks.values()) == total - round(0.6 * total)
  np.testing.assert_allclose(prune.pruned_fraction(masks), round(0.6 * total) / total)
  with pytest.raises(errors.ConfigError):
    prune.global_keep_masks(scores, 1.0)


def test_ratio_schedules():
  total = 1000
  assert all(prune.ratio_at(s, total, 0.75, "oneshot") == 0.75 for s in (0, 10, 999))
  ratios = [prune.ratio_at(s, total, 0.75, "gradual", 0.1, 0.6) for s in range(total + 1)]
  assert ratios[0] == 0.0 and ratios[100] == 0.0 and ratios[101] > 0.0
  assert np.all(np.diff(ratios) >= 0.0)
  assert ratios[600] == 0.75 and all(r == 0.75 for r in ratios[600:])
  # Cubic: half way through the ramp, 1 - 1/8 of the final ratio is already pruned.
  np.testing.assert_allclose(ratios[350], 0.75 * 7 / 8)
  for bad in (
    dict(schedule="linear"),
    dict(final_ratio=1.0),
    dict(start_fraction=0.5, end_fraction=0.5),
  ):
    kwargs = dict(step=0, total_steps=total, final_ratio=0.5, schedule="gradual") | bad
    with pytest.raises(errors.ConfigError):
      prune.ratio_at(**kwargs)


# ---------------------------------------------------------------------------------------
# Masks on parameter trees, fine-tuning and compaction.
# ---------------------------------------------------------------------------------------


@functools.cache
def tiny_model(name: str, d_state: int):
  cfg = models.ModelConfig(d_model=8, n_layers=2, d_state=d_state, dropout=0.0)
  return models.get_model(name, cfg, 3)


def init_params(name: str) -> dict:
  """Params of the d_state=8 model, with b and a perturbed so modes differ per channel."""
  model = tiny_model(name, 8)
  params = model.init(jax.random.PRNGKey(0), jnp.ones((1, 16, 2)))["params"]
  keys = iter(jax.random.split(jax.random.PRNGKey(1), 8))
  for i in range(2):
    s4d = params[f"block_{i}"]["s4d"]
    s4d["b"] = s4d["b"] + 0.5 * jax.random.normal(next(keys), s4d["b"].shape)
    s4d["log_neg_re_a"] = s4d["log_neg_re_a"] + jax.random.normal(next(keys), (8, 4))
  return params


def test_model_masks_layout():
  params = init_params("s4d_bidirectional")
  mode_mask = jnp.array([[True, False, True, False]] * 8)
  masks = prune.model_masks(params, {"block_1/s4d": mode_mask})
  assert jax.tree_util.tree_structure(masks) == jax.tree_util.tree_structure(params)
  assert all(m.dtype == jnp.float32 for m in jax.tree_util.tree_leaves(masks))
  s4d = masks["block_1"]["s4d"]
  for name in ("log_neg_re_a", "im_a"):
    np.testing.assert_array_equal(s4d[name], mode_mask)
  for name in ("b", "c", "c_reverse"):
    np.testing.assert_array_equal(s4d[name], np.repeat(np.asarray(mode_mask)[..., None], 2, -1))
  for name in ("log_step", "d", "input_range"):
    assert jnp.all(s4d[name] == 1.0)
  assert all(jnp.all(m == 1.0) for m in jax.tree_util.tree_leaves(masks["block_0"]))
  masked = prune.apply_masks(params, masks)
  np.testing.assert_array_equal(masked["block_1"]["s4d"]["im_a"], params["block_1"]["s4d"]["im_a"])
  assert jnp.all(masked["block_1"]["s4d"]["c_reverse"][:, 1] == 0.0)
  with pytest.raises(errors.ConfigError, match="block_0/s4d"):
    prune.model_masks(params, {"block_2/s4d": mode_mask})


def test_ratio_zero_compacts_to_the_same_arrays():
  params = init_params("s4d")
  compact, new_ns = prune.compact_model(params, h2_masks(params, 0.0))
  assert new_ns == {"block_0/s4d": 4, "block_1/s4d": 4}
  chex.assert_trees_all_equal(compact, params)


def logits(name: str, d_state: int, params: dict) -> jax.Array:
  x = jax.random.normal(jax.random.PRNGKey(5), (2, 16, 2))
  return tiny_model(name, d_state).apply({"params": params}, x)


@pytest.mark.parametrize("name", ["s4d", "s4d_bidirectional"])
def test_masked_model_equals_compacted_model_channel_scope(name):
  params = init_params(name)
  assert prune.s4d_paths(params) == ["block_0/s4d", "block_1/s4d"]
  mode_masks = h2_masks(params, 0.5)
  masked = prune.apply_masks(params, prune.model_masks(params, mode_masks))
  compact, new_ns = prune.compact_model(params, mode_masks)
  assert new_ns == {"block_0/s4d": 2, "block_1/s4d": 2}
  assert compact["block_0"]["s4d"]["c"].shape == (8, 2, 2)
  # The masked model really lost modes: it differs from the unpruned one.
  assert not np.allclose(logits(name, 8, masked), logits(name, 8, params), atol=1e-3)
  np.testing.assert_allclose(logits(name, 8, masked), logits(name, 4, compact), atol=1e-5)


def test_masked_model_equals_padded_compact_model_layer_scope():
  params = init_params("s4d")
  mode_masks = h2_masks(params, 0.6, "layer")
  counts = np.concatenate([np.sum(m, axis=1) for m in mode_masks.values()])
  assert counts.min() < counts.max()  # Varying counts: the padded path is exercised.
  masked = prune.apply_masks(params, prune.model_masks(params, mode_masks))
  compact, new_ns = prune.compact_model(params, mode_masks, common_n=True)
  n = int(counts.max())
  assert new_ns == {"block_0/s4d": n, "block_1/s4d": n}
  s4d = compact["block_0"]["s4d"]
  pad = np.arange(n)[None, :] >= np.sum(mode_masks["block_0/s4d"], axis=1)[:, None]
  assert np.all(np.asarray(s4d["c"])[pad] == 0.0) and np.all(np.asarray(s4d["b"])[pad] == 0.0)
  np.testing.assert_allclose(logits("s4d", 8, masked), logits("s4d", 2 * n, compact), atol=1e-5)
  # Without common_n each layer gets its own largest count.
  _, own_ns = prune.compact_model(params, mode_masks)
  assert own_ns == {p: int(np.sum(m, axis=1).max()) for p, m in mode_masks.items()}


def test_pruned_entries_stay_fixed_through_adamw():
  params = init_params("s4d")
  mode_masks = h2_masks(params, 0.5)
  masks = prune.model_masks(params, mode_masks)
  params = prune.apply_masks(params, masks)
  start = params
  # A random quadratic loss whose gradient moves every entry, pruned ones included.
  leaves, treedef = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
  targets = treedef.unflatten(
    [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
  )

  def loss(p):
    sq = jax.tree_util.tree_map(lambda x, t: jnp.sum((x - t) ** 2), p, targets)
    return sum(jax.tree_util.tree_leaves(sq))

  tx = optax.adamw(1e-2, weight_decay=0.1)
  opt_state = tx.init(params)

  @jax.jit
  def train_step(params, opt_state, masks):
    updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
    return optax.apply_updates(params, prune.mask_updates(updates, masks)), opt_state

  for _ in range(5):
    params, opt_state = train_step(params, opt_state, masks)
  for path in mode_masks:
    block = path.split("/")[0]
    keep = np.asarray(mode_masks[path])
    new, old = params[block]["s4d"], start[block]["s4d"]
    for name in ("b", "c"):
      assert np.all(np.asarray(new[name])[~keep] == 0.0)
    for name in ("log_neg_re_a", "im_a", "b", "c"):
      np.testing.assert_array_equal(np.asarray(new[name])[~keep], np.asarray(old[name])[~keep])
      assert np.all(np.asarray(new[name])[keep] != np.asarray(old[name])[keep])
  assert not np.allclose(params["decoder"]["kernel"], start["decoder"]["kernel"])


# ---------------------------------------------------------------------------------------
# Channels.
# ---------------------------------------------------------------------------------------

KEEP = np.array([True, False, True, True, False, True])  # H = 6 -> 4.


def channel_model(norm="layer", activation="glu", bidirectional=False, prenorm=True, h=6):
  cfg = models.ModelConfig(
    d_model=h,
    n_layers=2,
    d_state=4,
    dropout=0.0,
    norm=norm,
    activation=activation,
    prenorm=prenorm,
  )
  return models.S4DClassifier(cfg, 3, bidirectional=bidirectional)


def channel_variables(model) -> tuple[dict, dict]:
  """(params, batch_stats) of `model` at random values (running statistics too), so that
  every channel differs from every other."""
  variables = model.init(jax.random.PRNGKey(0), jnp.ones((1, 7, 2)))
  leaves, treedef = jax.tree_util.tree_flatten(variables["params"])
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  params = treedef.unflatten(
    [x + 0.3 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
  )
  stats = jax.tree_util.tree_map(
    lambda x: x + jax.random.uniform(jax.random.PRNGKey(2), x.shape),
    variables.get("batch_stats", {}),
  )
  return params, stats


CHANNEL_CASES = [
  ("layer", "glu", False, True),
  ("layer", "relu", True, True),
  ("batch", "glu", True, True),
  ("batch", "relu", False, True),
  ("layer", "glu", False, False),
  ("batch", "glu", False, False),
]


@pytest.mark.parametrize("norm, activation, bidirectional, prenorm", CHANNEL_CASES)
def test_channel_masked_model_equals_the_smaller_model(norm, activation, bidirectional, prenorm):
  model = channel_model(norm, activation, bidirectional, prenorm)
  params, stats = channel_variables(model)
  masked_model = model.clone(channels=tuple(bool(k) for k in KEEP))
  small_model = channel_model(norm, activation, bidirectional, prenorm, h=int(KEEP.sum()))
  small_params = prune.compact_channels(params, KEEP)
  small_stats = prune.compact_channels(stats, KEEP)
  x = jax.random.normal(jax.random.PRNGKey(3), (4, 9, 2))
  full = model.apply(models.variables(params, stats), x)
  masked = masked_model.apply(models.variables(params, stats), x)
  small = small_model.apply(models.variables(small_params, small_stats), x)
  assert not np.allclose(masked, full, atol=1e-2)  # Pruning did change the model.
  np.testing.assert_allclose(masked, small, rtol=1e-5, atol=1e-6)
  # In training mode too (BatchNorm on the batch's statistics, which it then records).
  masked, new = masked_model.apply(
    models.variables(params, stats), x, train=True, mutable=["batch_stats"]
  )
  small, small_new = small_model.apply(
    models.variables(small_params, small_stats), x, train=True, mutable=["batch_stats"]
  )
  np.testing.assert_allclose(masked, small, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(
    prune.compact_channels(new.get("batch_stats", {}), KEEP),
    small_new.get("batch_stats", {}),
    rtol=1e-5,
    atol=1e-6,
  )


def test_masked_layer_norm_ignores_the_pruned_channels():
  """A LayerNorm that zeroes a channel is not the smaller LayerNorm: the mask's statistics
  are those over the kept channels, whatever the pruned ones hold."""
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 6))
  scale, bias = jnp.arange(1.0, 7.0), jnp.linspace(-1.0, 1.0, 6)
  keep = jnp.asarray(KEEP, jnp.float32)
  out = blocks.layer_norm(x, scale, bias, channels=keep)
  small = blocks.layer_norm(x[:, KEEP], scale[KEEP], bias[KEEP])
  np.testing.assert_allclose(out[:, KEEP], small, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(out[:, ~KEEP], 0.0)
  zeroed = blocks.layer_norm(x * keep, scale, bias)[:, KEEP]
  assert not np.allclose(zeroed, small, atol=1e-2)
  # Every channel kept: the plain LayerNorm's numbers.
  np.testing.assert_allclose(
    blocks.layer_norm(x, scale, bias, channels=jnp.ones(6)),
    blocks.layer_norm(x, scale, bias),
    rtol=1e-6,
    atol=1e-6,
  )


@pytest.mark.parametrize("mode", ["channel", "tensor"])
def test_channel_masked_params_keep_quantization_grids(mode):
  """Quantized: with the pruned channels' entries zeroed and their A copied from a kept
  channel (`apply_channel_masks`, `fill_pruned_modes`), every absmax grid is the smaller
  model's, so the outputs are equal; without, the grids differ."""
  spec = quant.QuantSpec.uniform(4, 8, a_bar_bits=4, mode=mode)
  model = channel_model("layer", "glu", bidirectional=True)
  params, _ = channel_variables(model)
  masks = prune.channel_param_masks(params, KEEP)
  masked_params = prune.fill_pruned_modes(prune.apply_channel_masks(params, masks), masks)
  masked_model = model.clone(channels=tuple(bool(k) for k in KEEP))
  small_model = channel_model("layer", "glu", bidirectional=True, h=4)
  x = jax.random.normal(jax.random.PRNGKey(3), (4, 9, 2))
  small = small_model.apply({"params": prune.compact_channels(params, KEEP)}, x, spec=spec)
  masked = masked_model.apply({"params": masked_params}, x, spec=spec)
  np.testing.assert_allclose(masked, small, rtol=1e-5, atol=1e-6)
  unmasked = masked_model.apply({"params": params}, x, spec=spec)
  assert not np.allclose(unmasked, small, atol=1e-3)
  # The pruned channels' A and log_step are those of the first kept channel (0).
  s4d = masked_params["block_1"]["s4d"]
  for name in ("log_neg_re_a", "im_a", "log_step"):
    np.testing.assert_array_equal(s4d[name][~KEEP], np.stack([s4d[name][0]] * 2))
  np.testing.assert_array_equal(s4d["c"][~KEEP], 0.0)


@pytest.mark.parametrize("activation", ["glu", "relu"])
def test_compact_channels_shapes(activation):
  model = channel_model("batch", activation, bidirectional=True)
  params, stats = channel_variables(model)
  small = prune.compact_channels(params, KEEP)
  small_model = channel_model("batch", activation, bidirectional=True, h=4)
  expected = small_model.init(jax.random.PRNGKey(0), jnp.ones((1, 7, 2)))
  shapes = lambda tree: jax.tree_util.tree_map(jnp.shape, tree)
  assert shapes(small) == shapes(expected["params"])
  assert shapes(prune.compact_channels(stats, KEEP)) == shapes(expected["batch_stats"])
  # GLU keeps the matching value and gate columns; the decoder keeps its rows.
  kept = np.flatnonzero(KEEP)
  columns = np.concatenate([kept, kept + 6]) if activation == "glu" else kept
  glu = params["block_0"]["glu_dense"]
  np.testing.assert_array_equal(
    small["block_0"]["glu_dense"]["kernel"], glu["kernel"][kept][:, columns]
  )
  np.testing.assert_array_equal(small["block_0"]["glu_dense"]["bias"], glu["bias"][columns])
  np.testing.assert_array_equal(small["decoder"]["kernel"], params["decoder"]["kernel"][kept])
  np.testing.assert_array_equal(small["decoder"]["bias"], params["decoder"]["bias"])
  np.testing.assert_array_equal(
    small["block_1"]["s4d"]["c_reverse"], params["block_1"]["s4d"]["c_reverse"][kept]
  )


def test_keeping_every_channel_returns_the_same_tree():
  model = channel_model("batch", "glu")
  params, stats = channel_variables(model)
  keep = np.ones(6, bool)
  chex.assert_trees_all_equal(prune.compact_channels(params, keep), params)
  chex.assert_trees_all_equal(prune.compact_channels(stats, keep), stats)
  masks = prune.channel_param_masks(params, keep)
  assert all(bool(jnp.all(m == 1.0)) for m in jax.tree_util.tree_leaves(masks))
  chex.assert_trees_all_equal(
    prune.fill_pruned_modes(prune.apply_channel_masks(params, masks), masks), params
  )


def test_channel_param_masks_zero_exactly_the_pruned_channels():
  params, _ = channel_variables(channel_model("layer", "glu"))
  masks = prune.channel_param_masks(params, KEEP)
  assert jax.tree_util.tree_structure(masks) == jax.tree_util.tree_structure(params)
  pruned = np.flatnonzero(~KEEP)
  glu = np.asarray(masks["block_0"]["glu_dense"]["kernel"])
  assert np.all(glu[pruned] == 0.0) and np.all(glu[:, pruned] == 0.0)
  assert np.all(glu[:, pruned + 6] == 0.0)
  assert glu.sum() == 4 * 8  # 4 kept rows x (4 value + 4 gate) kept columns.
  np.testing.assert_array_equal(masks["encoder"]["kernel"], np.broadcast_to(KEEP, (2, 6)))
  np.testing.assert_array_equal(masks["block_1"]["s4d"]["b"][..., 0], np.stack([KEEP] * 2, 1))
  assert float(masks["decoder"]["bias"].min()) == 1.0
  assert float(masks["block_0"]["s4d"]["input_range"]) == 1.0


def test_channel_scores_and_keep_mask():
  params, _ = channel_variables(channel_model("layer", "glu"))
  scores = prune.channel_scores(params)
  assert scores.shape == (6,) and bool(jnp.all(scores > 0))
  # Six terms (encoder; each block's glu_dense rows and columns; decoder), 1 on average each.
  np.testing.assert_allclose(jnp.mean(scores), 6.0, rtol=1e-5)
  # Zeroing channel 2's entries gives it score 0 and prunes it first.
  masks = prune.channel_param_masks(params, np.arange(6) != 2)
  zeroed = prune.apply_channel_masks(params, masks)
  s4d = {p: jnp.abs(zeroed[p.split("/")[0]]["s4d"]["c"][..., 0]) for p in prune.s4d_paths(zeroed)}
  scores = prune.channel_scores(zeroed, s4d)
  assert float(scores[2]) == 0.0 and bool(jnp.all(scores[np.arange(6) != 2] > 0))
  keep = prune.channel_keep_mask(scores, 1 / 6)
  np.testing.assert_array_equal(keep, np.arange(6) != 2)
  # A strong channel is kept; counts round, with at least one channel kept.
  scores = jnp.array([1.0, 5.0, 1.0, 1.0, 0.5, 2.0])
  np.testing.assert_array_equal(prune.channel_keep_mask(scores, 0.5), [1, 1, 0, 0, 0, 1])
  np.testing.assert_array_equal(prune.channel_keep_mask(scores, 0.99), [0, 1, 0, 0, 0, 0])
  assert prune.channel_keep_mask(scores, 0.0).all()
  np.testing.assert_array_equal(prune.channel_keep_mask(jnp.ones(4), 0.5), [1, 1, 0, 0])


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_channel_keep_mask_rejects_bad_ratios(ratio):
  with pytest.raises(errors.ConfigError, match="ratio"):
    prune.channel_keep_mask(jnp.ones(4), ratio)


def test_channel_functions_refuse_what_they_do_not_know():
  params, _ = channel_variables(channel_model("layer", "glu"))
  extra = {**params, "block_0": {**params["block_0"], "adapter": {"kernel": jnp.ones((6, 6))}}}
  for fn in (prune.compact_channels, prune.channel_param_masks):
    with pytest.raises(errors.ConfigError, match="block_0/adapter/kernel"):
      fn(extra, KEEP)
  odd = {**params, "block_1": {**params["block_1"], "norm": {"scale": jnp.ones(5)}}}
  with pytest.raises(errors.ConfigError, match="block_1/norm/scale"):
    prune.compact_channels(odd, KEEP)
  with pytest.raises(errors.ConfigError, match="shape"):
    prune.compact_channels(params, KEEP[:5])
  with pytest.raises(errors.ConfigError, match="at least one"):
    prune.compact_channels(params, np.zeros(6, bool))
  with pytest.raises(errors.ConfigError, match="keep flags"):
    channel_model().clone(channels=(True,) * 5).init(jax.random.PRNGKey(0), jnp.ones((1, 7, 2)))
