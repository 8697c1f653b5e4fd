"""Tests of the Flax shells: registry shapes, gradients of the layer, parameter layout."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import test_util as jtu

from ssm_aimc import errors, layers, models, ssm

TINY = models.ModelConfig(d_model=4, n_layers=2, d_state=4, dropout=0.1)


@pytest.mark.parametrize("name", sorted(models.MODELS))
@pytest.mark.parametrize("pooling", models.POOLINGS)
def test_every_registry_entry_has_the_right_output_shape(name, pooling):
  cfg = models.ModelConfig(**{**TINY.__dict__, "pooling": pooling})
  model = models.get_model(name, cfg, n_classes=5)
  x = jnp.ones((3, 11, 2))
  variables = model.init(jax.random.PRNGKey(0), x)
  assert model.apply(variables, x).shape == (3, 5)
  out = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
  assert out.shape == (3, 5) and jnp.all(jnp.isfinite(out))


def test_unknown_model_lists_valid_names():
  with pytest.raises(errors.ConfigError, match="s4d_bidirectional"):
    models.get_model("transformer", TINY, 10)


def test_parameters_are_real_and_named_after_the_paper():
  model = models.get_model("s4d", TINY, 3)
  params = model.init(jax.random.PRNGKey(0), jnp.ones((1, 5, 1)))["params"]
  s4d = params["block_0"]["s4d"]
  assert set(s4d) == {"log_step", "log_neg_re_a", "im_a", "b", "c", "d"}
  assert s4d["c"].shape == (4, 2, 2) and s4d["log_neg_re_a"].shape == (4, 2)
  assert all(not jnp.iscomplexobj(x) for x in jax.tree_util.tree_leaves(params))


@pytest.mark.parametrize("method", ["fft", "associative", "sequential"])
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
