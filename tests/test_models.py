"""Tests of the Flax shells: registry shapes, gradients of the layer, parameter layout."""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util as jtu

from ssm_aimc import blocks, errors, layers, models, quant, ssm

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


def test_backbone_options_are_checked():
  for field, value in (("norm", "group"), ("activation", "gelu"), ("a_init", "lin_half")):
    with pytest.raises(errors.ConfigError, match=f"Unknown model.{field} '{value}'; valid"):
      models.ModelConfig(**{field: value})
  with pytest.raises(errors.ConfigError, match="model.residual must be True or False"):
    models.ModelConfig(residual="no")


def test_lin_quarter_layer_holds_pi_over_4_n_in_every_channel():
  model = models.get_model("s4d", dataclasses.replace(TINY, a_init="lin_quarter", d_state=6), 3)
  params = model.init(jax.random.PRNGKey(0), jnp.ones((1, 5, 1)))["params"]
  expected = np.broadcast_to(np.pi / 4 * np.arange(3), (4, 3))
  np.testing.assert_allclose(params["block_1"]["s4d"]["im_a"], expected, rtol=1e-7)


def test_batch_norm_model_runs_on_its_statistics_and_deploys_them_folded():
  """A BatchNorm model's statistics live in "batch_stats" (none in a LayerNorm model);
  inference, calibration and the deployed tensors all read them."""
  assert set(_model_and_params(init=True)[1]) == {"params"}
  model, variables, x = _model_and_params(init=True, norm="batch", dropout=0.0)
  assert set(variables) == {"params", "batch_stats"}
  stats = jax.tree.map(lambda v: v + 0.5, variables["batch_stats"])  # mean 0.5, var 1.5
  params = variables["params"]
  y = model.apply(models.variables(params, stats), x)
  assert not np.allclose(y, model.apply(variables, x), atol=1e-4)
  spec = quant.QuantSpec.uniform(8, 8)
  records = models.deployed_tensors(model, params, spec, x[:1], stats)
  norm = params["block_0"]["norm"]
  gain, shift = blocks.fold_batch_norm(0.5, 1.5, norm["scale"], norm["bias"])
  np.testing.assert_allclose(records["block_0/norm/scale"]["values"], gain, rtol=1e-2)
  np.testing.assert_allclose(records["block_0/norm/bias"]["values"], shift, atol=1e-2)
  ranges = lambda s: models.calibrate(model, params, spec, x, s)["block_0"]["s4d"]["input_range"]
  assert float(ranges(stats)) != float(ranges(variables["batch_stats"]))


def test_odd_state_size_is_rejected():
  with pytest.raises(ValueError, match="even"):
    layers.S4D(d_state=5).init(jax.random.PRNGKey(0), jnp.ones((1, 3, 2)))


# ---------------------------------------------------------------------------------------
# Quantization injected into the one set of layers.
# ---------------------------------------------------------------------------------------


def _model_and_params(name="s4d", init=False, **overrides):
  """(model, params, x); with init=True its variables (params and batch_stats) instead."""
  cfg = models.ModelConfig(**{**TINY.__dict__, **overrides})
  model = models.get_model(name, cfg, n_classes=5)
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 11, 2))
  variables = model.init(jax.random.PRNGKey(1), x, mutable=["params", "batch_stats"])
  return model, variables if init else variables["params"], x


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


# ---------------------------------------------------------------------------------------
# The QS4D authors' scheme, injected into the same layers.
# ---------------------------------------------------------------------------------------

QS4D_WIDTHS = (16, 24, 32)


@pytest.mark.parametrize("name", sorted(models.MODELS))
@pytest.mark.parametrize("method", ["auto", "sequential"])
def test_qs4d_with_every_width_off_is_the_float_model_bit_for_bit(name, method):
  model, params, x = _model_and_params(name, method=method)
  y_float = model.apply({"params": params}, x)
  for bits in QS4D_WIDTHS:
    spec = quant.QuantSpec.qs4d(bits, bits, bits)
    y_off = model.apply({"params": params}, x, spec=spec)
    np.testing.assert_array_equal(np.asarray(y_float), np.asarray(y_off))
    # Gradients to rounding: where the state group has a rounding point (the state on the
    # sequential path, the kernel on the convolution paths, "auto" on a CPU) the backward
    # pass of its cond (`layers.S4D`) is another program.
    grads = [
      jax.grad(lambda p, s=s: jnp.sum(model.apply({"params": p}, x, spec=s) ** 2))(params)
      for s in (None, spec)
    ]
    if layers.state_quantizer("qs4d", method, x.shape[1], bits):
      chex.assert_trees_all_close(*grads, rtol=1e-6, atol=1e-7)
    else:
      chex.assert_trees_all_equal(*grads)


def _cross_entropy(model, params, x, y, spec):
  logits = model.apply({"params": params}, x, spec=spec)
  return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


@pytest.mark.parametrize("method", ["auto", "sequential"])
def test_qs4d_trains_a_step_with_finite_gradients(method):
  model, params, x = _model_and_params(method=method)
  y = jnp.array([0, 3, 1])
  spec = quant.QuantSpec.qs4d(3, 4, a_bits=2)  # 8-state weights, 16-state inputs, 4-state A.
  loss, grads = jax.value_and_grad(_cross_entropy, argnums=1)(model, params, x, y, spec)
  chex.assert_tree_all_finite(grads)
  # The straight-through estimator reaches every parameter the scheme quantizes.
  s4d = grads["block_0"]["s4d"]
  for name in ("log_neg_re_a", "im_a", "log_step", "c", "b", "d"):
    assert float(jnp.abs(s4d[name]).max()) > 0, name
  for path in ("encoder", "decoder"):
    assert float(jnp.abs(grads[path]["kernel"]).max()) > 0
  stepped = jax.tree.map(lambda p, g: p - 0.01 * g, params, grads)
  assert float(_cross_entropy(model, stepped, x, y, spec)) < float(loss)


def test_qs4d_one_compiled_forward_vmaps_over_stacked_widths():
  model, params, x = _model_and_params(method="sequential")
  specs = [quant.QuantSpec.qs4d(b, b + 2, a_bits=b) for b in (1, 2, 4)]
  specs.append(quant.QuantSpec.off(scheme="qs4d"))
  stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *specs)
  traces = []

  def forward(spec):
    traces.append(1)
    return model.apply({"params": params}, x, spec=spec)

  outs = jax.jit(jax.vmap(forward))(stacked)
  assert len(traces) == 1
  for i, spec in enumerate(specs):
    np.testing.assert_allclose(outs[i], model.apply({"params": params}, x, spec=spec), atol=1e-5)
  assert not np.allclose(outs[0], outs[-1])


def test_qs4d_state_group_rounds_the_state_or_the_kernel():
  """The state group rounds the recurrent state on the sequential path, the convolution
  kernel on the fft / toeplitz paths (the authors' rounding point), nothing on the
  associative scan; the two convolution paths round the same kernel."""
  fine = quant.QuantSpec.qs4d(32, 32, 32)
  coarse = dataclasses.replace(fine, state=quant.TensorQuant.make(2))
  outputs = {}
  for method, changes in (
    ("sequential", True),
    ("fft", True),
    ("toeplitz", True),
    ("associative", False),
  ):
    model, params, x = _model_and_params(method=method)
    y_fine = model.apply({"params": params}, x, spec=fine)
    outputs[method] = y_coarse = model.apply({"params": params}, x, spec=coarse)
    assert np.allclose(y_fine, y_coarse) != changes, method
  np.testing.assert_allclose(outputs["fft"], outputs["toeplitz"], atol=1e-5)
  assert not np.allclose(outputs["fft"], outputs["sequential"])
  # The kernel on its grid: 2-bit state group -> 4 states, 5 levels of one step per layer.
  a_bar = 0.9 * jnp.exp(0.3j * jnp.arange(4.0)).reshape(2, 2)
  kernel = ssm.ssm_kernel(a_bar, jnp.ones((2, 2), jnp.complex64), a_bar + 0.5, 6)
  hooks = layers.state_quantizer("qs4d", "fft", 6, jnp.float32(2))
  assert len(np.unique(np.asarray(hooks["kernel_fn"](kernel)))) <= 5
  assert layers.state_quantizer("ssm_aimc", "fft", 6, 2) == {}
  assert set(layers.state_quantizer("qs4d", "auto", 6, 2)) == {"kernel_fn"}  # fft on a CPU.


@pytest.mark.parametrize("train_b", [True, False])
def test_qs4d_deployed_records(train_b):
  model, params, x = _model_and_params(train_b=train_b)
  spec = quant.QuantSpec.qs4d(2, 8, a_bits=3)
  records = models.deployed_tensors(model, params, spec, x[:1])
  c = records["block_0/s4d/c"]
  # C on its grid: 5 levels (q = 4) of one step over Re and Im, and codes that export it.
  pair = np.stack([np.real(c["values"]), np.imag(c["values"])], -1)
  np.testing.assert_array_equal(pair, np.asarray(c["codes"]) * np.asarray(c["scale"]))
  assert np.abs(np.asarray(c["codes"])).max() == 2 and float(c["bits"]) == 2.0
  kernel = records["block_0/glu_dense/kernel"]
  assert len(np.unique(kernel["values"])) <= 5
  # a_bar is held at A's width, as is b_bar when b is fixed; d, biases and norms are float.
  assert float(records["block_0/s4d/a_bar"]["bits"]) == 3.0
  assert float(records["block_0/s4d/b_bar"]["bits"]) == (32.0 if train_b else 3.0)
  for path in ("block_0/s4d/d", "encoder/bias", "block_0/norm/scale"):
    assert float(records[path]["bits"]) == 32.0, path
  assert np.all(np.abs(records["block_0/s4d/a_bar"]["values"]) < 1.0)
