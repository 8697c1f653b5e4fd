"""Tests of the Flax shells: registry shapes, gradients of the layer, parameter layout."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util as jtu

from ssm_aimc import errors, layers, models, quant, ssm

TINY = models.ModelConfig(d_model=4, n_layers=2, d_state=4, dropout=0.1)


@pytest.mark.parametrize("name", sorted(models.MODELS))
@pytest.mark.parametrize("pooling", models.POOLINGS)
def test_every_registry_entry_has_the_right_output_shape(name, pooling):
  cfg = models.ModelConfig(**{**TINY.__dict__, "pooling": pooling})
  model = models.get_model(name, cfg, n_classes=5)
  x = jnp.ones((3, 11, 2))
  variables = model.init(jax.random.PRNGKey(0), x)
  chex.assert_shape(model.apply(variables, x), (3, 5))
  out = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
  chex.assert_shape(out, (3, 5))
  chex.assert_tree_all_finite(out)


def test_unknown_model_lists_valid_names():
  with pytest.raises(errors.ConfigError, match="s4d_bidirectional"):
    models.get_model("transformer", TINY, 10)


def test_parameters_are_real_and_named_after_the_paper():
  model = models.get_model("s4d", TINY, 3)
  params = model.init(jax.random.PRNGKey(0), jnp.ones((1, 5, 1)))["params"]
  s4d = params["block_0"]["s4d"]
  assert set(s4d) == {"log_step", "log_neg_re_a", "im_a", "b", "c", "d", "input_range"}
  assert s4d["c"].shape == (4, 2, 2) and s4d["log_neg_re_a"].shape == (4, 2)
  assert all(not jnp.iscomplexobj(x) for x in jax.tree_util.tree_leaves(params))


@pytest.mark.parametrize("method", ssm.METHODS)
def test_layer_methods_agree(method):
  u = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 3))
  ref = layers.S4D(d_state=6, method="sequential")
  variables = ref.init(jax.random.PRNGKey(1), u)
  np.testing.assert_allclose(
    layers.S4D(d_state=6, method=method).apply(variables, u),
    ref.apply(variables, u),
    rtol=2e-4,
    atol=2e-4,
  )


def test_layer_is_causal():
  """Changing the input at step k leaves outputs before k unchanged (not so bidirectional)."""
  u = jax.random.normal(jax.random.PRNGKey(0), (1, 10, 3))
  u2 = u.at[:, 6].add(1.0)
  layer = layers.S4D(d_state=4)
  variables = layer.init(jax.random.PRNGKey(1), u)
  y, y2 = layer.apply(variables, u), layer.apply(variables, u2)
  np.testing.assert_allclose(y[:, :6], y2[:, :6], atol=1e-6)
  assert not np.allclose(y[:, 6:], y2[:, 6:])
  bidir = layers.S4D(d_state=4, bidirectional=True)
  variables = bidir.init(jax.random.PRNGKey(1), u)
  assert not np.allclose(bidir.apply(variables, u)[:, :6], bidir.apply(variables, u2)[:, :6])


def test_layer_gradients_float64():
  """Gradient of the S4D layer w.r.t. every parameter, against finite differences."""
  with jax.enable_x64(True):
    layer = layers.S4D(d_state=4, method="fft")
    u = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 3), jnp.float64)
    params = layer.init(jax.random.PRNGKey(1), u)["params"]
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), params)

    def f(params):
      return jnp.sum(jnp.sin(layer.apply({"params": params}, u)))

    jtu.check_grads(f, (params,), order=1, modes=("rev",), atol=1e-5, rtol=1e-5)


def test_layer_matches_pure_function():
  layer = layers.S4D(d_state=4, discretization="bilinear")
  u = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 3))
  params = layer.init(jax.random.PRNGKey(1), u)["params"]
  a = ssm.decode_a(params["log_neg_re_a"], params["im_a"])
  a_bar, b_bar = ssm.discretize(
    a, ssm.complex_from_pair(params["b"]), jnp.exp(params["log_step"])[:, None], "bilinear"
  )
  apply = functools.partial(
    ssm.apply_ssm,
    a_bar,
    b_bar,
    ssm.complex_from_pair(params["c"]),
    params["d"],
    method="sequential",
  )
  np.testing.assert_allclose(
    layer.apply({"params": params}, u), jax.vmap(apply)(u), rtol=2e-4, atol=2e-4
  )


def test_odd_state_size_is_rejected():
  with pytest.raises(ValueError, match="even"):
    layers.S4D(d_state=5).init(jax.random.PRNGKey(0), jnp.ones((1, 3, 2)))


# ---------------------------------------------------------------------------------------
# Quantization injected into the one set of layers.
# ---------------------------------------------------------------------------------------


def _model_and_params(name="s4d", **overrides):
  cfg = models.ModelConfig(**{**TINY.__dict__, **overrides})
  model = models.get_model(name, cfg, n_classes=5)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 11, 2))
  return model, model.init(jax.random.PRNGKey(1), x)["params"], x


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_group_off_is_the_float_model_bit_for_bit(name):
  """Eager, as the ops run one by one (jit may fuse the two programs differently)."""
  model, params, x = _model_and_params(name)
  y_float = model.apply({"params": params}, x)
  y_off = model.apply({"params": params}, x, spec=quant.QuantSpec.off())
  np.testing.assert_array_equal(np.asarray(y_float), np.asarray(y_off))
  # Under jit the programs differ only by selects that return their float operand.
  y_float_jit = jax.jit(lambda p: model.apply({"params": p}, x))(params)
  y_off_jit = jax.jit(lambda p, s: model.apply({"params": p}, x, spec=s))(
    params, quant.QuantSpec.off()
  )
  np.testing.assert_allclose(y_off_jit, y_float_jit, rtol=1e-5, atol=1e-6)


def test_quantized_forward_changes_outputs_and_stays_finite():
  model, params, x = _model_and_params()
  spec = quant.QuantSpec.uniform(2, 8, a_bar_bits=4)
  params = models.calibrate(model, params, spec, x)
  y = model.apply({"params": params}, x, spec=spec)
  assert jnp.all(jnp.isfinite(y))
  assert not np.allclose(y, model.apply({"params": params}, x))


def test_calibration_sets_ranges_from_data():
  model, params, x = _model_and_params()
  spec = quant.QuantSpec.uniform(4, 8, mode=quant.ScaleMode.LSQ)
  calibrated = models.calibrate(model, params, spec, 10.0 * x)
  r = float(calibrated["encoder"]["input_range"])
  np.testing.assert_allclose(r, np.percentile(np.abs(10.0 * np.asarray(x)), 99.99), rtol=1e-5)
  kernel = np.asarray(params["encoder"]["kernel"])
  np.testing.assert_allclose(
    calibrated["encoder"]["kernel_scale"],
    2 * np.abs(kernel).mean(0, keepdims=True) / np.sqrt(7),
    rtol=1e-5,
  )
  # Only quantizer parameters change.
  for path in ("encoder/kernel", "block_0/s4d/c", "decoder/bias"):
    a, b = params, calibrated
    for k in path.split("/"):
      a, b = a[k], b[k]
    np.testing.assert_array_equal(a, b)


def test_quantized_weights_lie_on_their_grid():
  model, params, x = _model_and_params()
  spec = quant.QuantSpec.uniform(2, 8, a_bar_bits=6)
  records = models.deployed_tensors(model, params, spec, x[:1])
  glu = np.asarray(records["block_0/glu_dense/kernel"]["values"])
  assert len(np.unique(glu)) <= 3  # Ternary.
  a_bar = np.asarray(records["block_0/s4d/a_bar"]["values"])
  assert np.all(np.abs(a_bar) < 1.0)
  assert float(records["block_0/s4d/a_bar"]["bits"]) == 6.0
  assert float(records["encoder/bias"]["bits"]) == 8.0


def test_one_compiled_forward_serves_every_bit_width():
  model, params, x = _model_and_params()
  traces = []

  @jax.jit
  def forward(params, spec):
    traces.append(1)
    return model.apply({"params": params}, x, spec=spec)

  outs = [forward(params, quant.QuantSpec.uniform(b, 8)) for b in (2, 3, 4, 8)]
  assert len(traces) == 1
  assert not np.allclose(outs[0], outs[-1])


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_deployed_inventory_matches_the_closed_forms(name):
  from ssm_aimc import cost

  model, params, x = _model_and_params(name)
  records = models.deployed_tensors(model, params, None, x[:1])
  arch = dict(
    d_input=2,
    d_model=TINY.d_model,
    n_layers=TINY.n_layers,
    d_state=TINY.d_state,
    n_classes=5,
    bidirectional=name == "s4d_bidirectional",
  )
  report = cost.deployed_report(
    records, params=0, seq_len=11, reference=dict(cost.REFERENCE, d_input=2, n_classes=5)
  )
  assert report.deployed_params == cost.deployed_count(**arch)
  macs_step, _ = cost.macs(seq_len=11, **arch)
  assert report.macs_per_step == pytest.approx(macs_step)
  assert report.memory_bits == 32 * report.nonzero_params
  assert report.bitops_reduction_vs_fp32 == pytest.approx(1.0)
