"""Tests of the classifier's pure pieces (ssm_aimc.blocks) against written-out formulas, and
that the Flax model and the exported forward pass are built from them."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_aimc import blocks, errors, layers, models


def test_layer_norm_is_the_formula():
  x = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
  scale, bias = np.linspace(0.5, 2.0, 5, dtype=np.float32), np.arange(5, dtype=np.float32)
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  expected = (x - mean) / np.sqrt(var + blocks.LAYER_NORM_EPSILON) * scale + bias
  np.testing.assert_allclose(blocks.layer_norm(x, scale, bias), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prenorm", [True, False])
def test_residual_block_order_of_operations(prenorm):
  """Callables that record their calls: norm, S4D, GELU, dropout, dense, GLU, dropout and
  the residual add in that order (post-norm: the norm on the sum)."""
  calls = []

  def named(name, fn):
    def apply(v):
      calls.append(name)
      return fn(v)

    return apply

  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3)), jnp.float32)
  norm = named("norm", lambda v: 2.0 * v)
  s4d = named("s4d", lambda v: v + 1.0)
  dense = named("dense", lambda v: jnp.concatenate([v, -v], -1))
  dropout = named("dropout", lambda v: 0.5 * v)
  y = blocks.residual_block(x, norm, s4d, dense, prenorm, dropout)
  z = (2.0 * x if prenorm else x) + 1.0
  z = 0.5 * jax.nn.gelu(z)
  z = 0.5 * (z * jax.nn.sigmoid(-z))
  expected = x + z if prenorm else 2.0 * (x + z)
  np.testing.assert_allclose(y, expected, rtol=1e-6)
  order = ["s4d", "dropout", "dense", "dropout"]
  assert calls == (["norm", *order] if prenorm else [*order, "norm"])
  calls.clear()
  blocks.residual_block(x, norm, s4d, dense, prenorm)  # No dropout: never called.
  assert "dropout" not in calls


def test_pooling_and_the_classifier_skeleton():
  h = jnp.arange(2 * 3 * 4, dtype=jnp.float32).reshape(2, 3, 4)
  np.testing.assert_array_equal(blocks.pool(h, "mean"), h.mean(1))
  np.testing.assert_array_equal(blocks.pool(h, "last"), h[:, -1])
  with pytest.raises(errors.ConfigError, match="pooling"):
    blocks.pool(h, "max")
  logits = blocks.classifier(
    h, lambda v: v + 1.0, [lambda v: 2.0 * v, lambda v: v - 3.0], "last", lambda v: v[:, :2]
  )
  np.testing.assert_array_equal(logits, (2.0 * (h[:, -1] + 1.0) - 3.0)[:, :2])


def test_the_flax_block_keeps_its_module_names_and_dropout_streams():
  """Parameters named norm / s4d / glu_dense; the two dropouts draw different masks (their
  own module names, Dropout_0 and Dropout_1, fold into the stream) and the same masks for
  the same key."""
  block = layers.S4DBlock(ssm=lambda name: layers.S4D(d_state=4, name=name), dropout=0.5)
  x = jax.random.normal(jax.random.PRNGKey(3), (2, 6, 4))
  params = block.init(jax.random.PRNGKey(0), x)["params"]
  assert set(params) == {"norm", "s4d", "glu_dense"}
  apply = lambda key: block.apply({"params": params}, x, train=True, rngs={"dropout": key})
  chex.assert_trees_all_equal(apply(jax.random.PRNGKey(1)), apply(jax.random.PRNGKey(1)))
  assert not np.allclose(apply(jax.random.PRNGKey(1)), apply(jax.random.PRNGKey(2)))
  _, state = block.apply(
    {"params": params},
    x,
    train=True,
    rngs={"dropout": jax.random.PRNGKey(1)},
    capture_intermediates=True,
    mutable=["intermediates"],
  )
  assert {"Dropout_0", "Dropout_1"} <= set(state["intermediates"])


def test_model_config_s4d_fields_are_s4d_attributes():
  fields = set(models.ModelConfig.__dataclass_fields__)
  assert set(models.S4D_FIELDS) <= fields
  assert set(models.S4D_FIELDS) <= set(layers.S4D.__dataclass_fields__)
