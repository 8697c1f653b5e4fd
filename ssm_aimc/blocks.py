"""The S4D classifier's maths as pure functions: LayerNorm, the residual block, pooling and
encoder -> blocks -> pooling -> decoder.

Three programs compute this classifier: the Flax model (`layers.S4DBlock`,
`models.S4DClassifier`), the exported forward pass (`export.forward`) and the step-mode
chip (`chip`, one time step at a time). They differ in where the weights come from and in
how a matrix product or the sequence layer runs (a quantized Dense, a product with exported
tensors, an array read on the chip), so those arrive here as callables; the order of the
operations around them is written once, here, so the three cannot drift apart.

Pure JAX; no flax (`jax.nn.gelu` and `jax.nn.glu` are what `flax.linen` re-exports).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from ssm_aimc import errors

Fn = Callable[[jax.Array], jax.Array]

POOLINGS = ("mean", "last")
LAYER_NORM_EPSILON = 1e-6


def layer_norm(
  x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float = LAYER_NORM_EPSILON
) -> jax.Array:
  """LayerNorm over the last axis: (x - mean) / sqrt(var + epsilon) * scale + bias.

  x (..., H); scale, bias (H,).
  """
  mean = jnp.mean(x, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + epsilon) * scale + bias


def residual_block(
  x: jax.Array,
  norm: Fn,
  sequence_layer: Fn,
  glu_dense: Fn,
  prenorm: bool,
  dropout: Fn | None = None,
) -> jax.Array:
  """One residual S4D block: x + dropout(GLU(glu_dense(dropout(GELU(S4D(norm(x))))))).

  With prenorm=False the norm moves from the SSM's input to the block's output:
  norm(x + ...(S4D(x))). The norm, GELU and GLU gate are digital periphery on a chip.

  Args:
    x: (..., H) the residual stream (a whole sequence (B, L, H) or one step (B, H)).
    norm: the block's LayerNorm.
    sequence_layer: the S4D layer, (..., H) -> (..., H).
    glu_dense: the dense layer before the GLU, (..., H) -> (..., 2H).
    prenorm: where the norm sits (see above).
    dropout: applied after the GELU and after the GLU (called twice, in that order), or
      None for none.

  Returns:
    (..., H).
  """
  z = norm(x) if prenorm else x
  z = jax.nn.gelu(sequence_layer(z))
  if dropout is not None:
    z = dropout(z)
  z = jax.nn.glu(glu_dense(z), axis=-1)
  if dropout is not None:
    z = dropout(z)
  x = x + z
  return x if prenorm else norm(x)


def check_pooling(pooling: str) -> str:
  """`pooling` if it is one of POOLINGS, else ConfigError."""
  if pooling not in POOLINGS:
    raise errors.ConfigError(f"Unknown pooling {pooling!r}; valid: {POOLINGS}.")
  return pooling


def pool(h: jax.Array, pooling: str) -> jax.Array:
  """(B, L, H) -> (B, H): the mean over time ("mean") or the last step ("last")."""
  return jnp.mean(h, axis=1) if check_pooling(pooling) == "mean" else h[:, -1]


def classifier(
  x: jax.Array, encoder: Fn, blocks: Sequence[Fn], pooling: str, decoder: Fn
) -> jax.Array:
  """encoder -> blocks -> pooling -> decoder: x (B, L, d_input) -> logits (B, n_classes)."""
  h = encoder(x)
  for block in blocks:
    h = block(h)
  return decoder(pool(h, pooling))
