"""Tests of the classifier's pure pieces (ssm_aimc.blocks) against written-out formulas, and
that the Flax model and the exported forward pass are built from them."""

import chex
import flax.linen as nn
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


def test_folded_batch_norm_is_the_formula():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(3, 7, 5)).astype(np.float32)
  mean, var = rng.normal(size=5).astype(np.float32), rng.uniform(0.5, 2, 5).astype(np.float32)
  scale, bias = rng.normal(size=5).astype(np.float32), rng.normal(size=5).astype(np.float32)
  expected = (x - mean) / np.sqrt(var + blocks.BATCH_NORM_EPSILON) * scale + bias
  gain, shift = blocks.fold_batch_norm(mean, var, scale, bias)
  np.testing.assert_allclose(blocks.channel_affine(x, gain, shift), expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(blocks.stored_norm("batch", gain, shift)(x), x * gain + shift)
  np.testing.assert_array_equal(
    blocks.stored_norm("layer", scale, bias)(x), blocks.layer_norm(x, scale, bias)
  )
  moments = blocks.batch_moments(x)
  np.testing.assert_allclose(moments[0], x.mean((0, 1)), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(moments[1], x.var((0, 1)), rtol=1e-5, atol=1e-6)


def test_batch_norm_trains_and_infers_as_flax_batch_norm():
  """Training: the batch's statistics normalise, the running averages move towards them
  (momentum 0.9); inference: the running averages normalise, each example on its own."""
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(4, 6, 3)) * 2.0 + 1.0, jnp.float32)
  variables = {
    "params": {"scale": jnp.asarray([0.5, 1.0, 2.0]), "bias": jnp.asarray([0.1, -0.2, 0.3])},
    "batch_stats": {"mean": jnp.asarray([0.2, -0.1, 0.0]), "var": jnp.asarray([1.5, 0.8, 1.0])},
  }
  ours, reference = layers.QBatchNorm(), nn.BatchNorm(momentum=0.9, epsilon=1e-5)
  init = ours.init(jax.random.PRNGKey(0), x, mutable=["params", "batch_stats"])
  init_ref = reference.init(jax.random.PRNGKey(0), x, use_running_average=True)
  chex.assert_trees_all_equal(init, init_ref)  # Ones and zeros, named as flax names them.
  y, updated = ours.apply(variables, x, train=True, mutable=["batch_stats"])
  y_ref, updated_ref = reference.apply(
    variables, x, use_running_average=False, mutable=["batch_stats"]
  )
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  chex.assert_trees_all_close(updated, updated_ref, rtol=1e-6, atol=1e-6)
  mean = 0.9 * variables["batch_stats"]["mean"] + 0.1 * x.mean((0, 1))
  np.testing.assert_allclose(updated["batch_stats"]["mean"], mean, rtol=1e-6)
  trained = {**variables, **updated}
  y_eval = ours.apply(trained, x)
  np.testing.assert_allclose(
    y_eval, reference.apply(trained, x, use_running_average=True), rtol=1e-5, atol=1e-5
  )
  np.testing.assert_array_equal(ours.apply(trained, x[:1]), y_eval[:1])
  assert not np.allclose(y_eval, y, atol=1e-3)  # Running averages, not the batch's.


@pytest.mark.parametrize("prenorm", [True, False])
@pytest.mark.parametrize("residual, activation", [(False, "glu"), (True, "relu"), (False, "relu")])
def test_block_without_residual_or_with_relu(prenorm, residual, activation):
  """Without the residual the block is its branch alone; ReLU replaces the GLU gate on a
  dense layer of width H."""
  x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 3)), jnp.float32)
  width = 2 if activation == "glu" else 1
  dense = lambda v: jnp.concatenate([v, -v], -1)[..., : width * 3] - 0.1
  options = dict(prenorm=prenorm, residual=residual, activation=activation)
  y = blocks.residual_block(x, lambda v: 2.0 * v, lambda v: v + 1.0, dense, **options)
  z = jax.nn.gelu((2.0 * x if prenorm else x) + 1.0)
  z = jax.nn.glu(dense(z), axis=-1) if activation == "glu" else jax.nn.relu(dense(z))
  z = x + z if residual else z
  np.testing.assert_allclose(y, z if prenorm else 2.0 * z, rtol=1e-6)


def test_the_flax_block_without_residual_and_with_relu():
  ssm = lambda name: layers.S4D(d_state=4, name=name)
  x = jax.random.normal(jax.random.PRNGKey(3), (2, 6, 4))
  block = layers.S4DBlock(ssm=ssm)
  params = block.init(jax.random.PRNGKey(0), x)["params"]
  branch = layers.S4DBlock(ssm=ssm, residual=False).apply({"params": params}, x)
  np.testing.assert_allclose(branch, block.apply({"params": params}, x) - x, atol=1e-6)
  relu = layers.S4DBlock(ssm=ssm, residual=False, activation="relu")
  relu_params = relu.init(jax.random.PRNGKey(0), x)["params"]
  assert relu_params["glu_dense"]["kernel"].shape == (4, 4)
  y = relu.apply({"params": relu_params}, x)
  assert (y >= 0).all() and (y == 0).any() and (y > 0).any()
