"""The S4D classifier's maths as pure functions: the norms (LayerNorm; BatchNorm as its
statistics and its folded per-channel scale and shift), the block, pooling and
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

import functools
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from ssm_aimc import errors

Fn = Callable[[jax.Array], jax.Array]

POOLINGS = ("mean", "last")
NORMS = ("layer", "batch")
LAYER_NORM_EPSILON = 1e-6
BATCH_NORM_EPSILON = 1e-5  # flax's and PyTorch's default.
# Share of a running average kept at every training step (flax's convention; PyTorch's
# momentum 0.1, the default of the QS4D authors' nn.BatchNorm1d, is 1 - 0.9).
BATCH_NORM_MOMENTUM = 0.9
# The block's output activation on its dense layer's output, and that layer's width in
# units of H: GLU gates one half of 2H with the other, ReLU keeps H.
ACTIVATIONS = {"glu": (functools.partial(jax.nn.glu, axis=-1), 2), "relu": (jax.nn.relu, 1)}
# Block options of an export's "arch" that exports written before them lack: their value then.
BLOCK_DEFAULTS = {"norm": "layer", "residual": True, "activation": "glu"}


def layer_norm(
  x: jax.Array,
  scale: jax.Array,
  bias: jax.Array,
  epsilon: float = LAYER_NORM_EPSILON,
  channels: jax.Array | None = None,
) -> jax.Array:
  """LayerNorm over the last axis: (x - mean) / sqrt(var + epsilon) * scale + bias.

  x (..., H); scale, bias (H,). `channels` (H,) 0/1, the kept channels of a channel-pruned
  model (`mask_channels`): mean and variance are taken over the kept channels only and the
  pruned ones output 0, so the kept outputs are those of the LayerNorm of a model that has
  only the kept channels. None (every channel) is the plain LayerNorm, computed as always.
  """
  if channels is None:
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + epsilon) * scale + bias
  count = jnp.sum(channels)
  mean = jnp.sum(x * channels, axis=-1, keepdims=True) / count
  var = jnp.sum(jnp.square(x - mean) * channels, axis=-1, keepdims=True) / count
  return ((x - mean) * jax.lax.rsqrt(var + epsilon) * scale + bias) * channels


def mask_channels(x: jax.Array, channels: jax.Array | None) -> jax.Array:
  """x (..., H) with the pruned channels of a channel-pruned model set to 0: x * channels
  for a (H,) 0/1 keep mask; x itself (not a copy times one) when `channels` is None."""
  return x if channels is None else x * channels


def batch_moments(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Mean and (biased) variance of x (..., H) over every axis but the last: (H,), (H,)."""
  axes = tuple(range(x.ndim - 1))
  mean = jnp.mean(x, axis=axes)
  return mean, jnp.mean(jnp.square(x - mean), axis=axes)


def fold_batch_norm(
  mean: jax.Array,
  var: jax.Array,
  scale: jax.Array,
  bias: jax.Array,
  epsilon: float = BATCH_NORM_EPSILON,
) -> tuple[jax.Array, jax.Array]:
  """BatchNorm (x - mean) / sqrt(var + epsilon) * scale + bias as the per-channel affine map
  x * gain + shift (`channel_affine`): returns (gain, shift), each (H,) like its inputs."""
  gain = scale * jax.lax.rsqrt(var + epsilon)
  return gain, bias - mean * gain


def channel_affine(x: jax.Array, gain: jax.Array, shift: jax.Array) -> jax.Array:
  """x (..., H) * gain + shift, per channel: a BatchNorm folded by `fold_batch_norm`."""
  return x * gain + shift


def stored_norm(kind: str, scale: jax.Array, bias: jax.Array) -> Fn:
  """A block's norm at inference from its two stored vectors (H,): "layer" the LayerNorm of
  (scale, bias), "batch" the folded BatchNorm x * scale + bias."""
  if kind == "batch":
    return functools.partial(channel_affine, gain=scale, shift=bias)
  return functools.partial(layer_norm, scale=scale, bias=bias)


def block_options(arch: Mapping) -> tuple[str, dict]:
  """(norm kind, `residual_block`'s prenorm, residual and activation) of the blocks of an
  architecture dict (an export's "arch"); an export written before an option existed
  gets its old value (BLOCK_DEFAULTS)."""
  options = {k: arch.get(k, v) for k, v in BLOCK_DEFAULTS.items()}
  return options.pop("norm"), {"prenorm": arch["prenorm"], **options}


def residual_block(
  x: jax.Array,
  norm: Fn,
  sequence_layer: Fn,
  glu_dense: Fn,
  prenorm: bool,
  dropout: Fn | None = None,
  residual: bool = True,
  activation: str = "glu",
  channels: jax.Array | None = None,
) -> jax.Array:
  """One S4D block: x + dropout(GLU(glu_dense(dropout(GELU(S4D(norm(x))))))).

  With prenorm=False the norm moves from the SSM's input to the block's output:
  norm(x + ...(S4D(x))); with residual=False the block drops its skip connection (the
  QS4D authors' backbone) and returns its branch alone. The norm, GELU and the output
  activation are digital periphery on a chip.

  Args:
    x: (..., H) the residual stream (a whole sequence (B, L, H) or one step (B, H)).
    norm: the block's norm.
    sequence_layer: the S4D layer, (..., H) -> (..., H).
    glu_dense: the block's output dense layer, (..., H) -> (..., k H) with k the width of
      `activation` in ACTIVATIONS (GLU: 2; ReLU: 1).
    prenorm: where the norm sits (see above).
    dropout: applied after the GELU and after the output activation (called twice, in that
      order), or None for none.
    residual: add the block's input to its branch.
    activation: "glu" or "relu" (ACTIVATIONS), on glu_dense's output.
    channels: None, or the (H,) 0/1 keep mask of a channel-pruned model: the SSM's input,
      glu_dense's input and the block's output are zero on the pruned channels
      (`mask_channels`), so what the kept channels compute is that of the block with only
      the kept channels, whatever the pruned channels' parameters hold (the norm, which
      mixes channels, is given the mask by the caller).

  Returns:
    (..., H).
  """
  z = mask_channels(norm(x) if prenorm else x, channels)
  z = jax.nn.gelu(sequence_layer(z))
  if dropout is not None:
    z = dropout(z)
  z = ACTIVATIONS[activation][0](glu_dense(mask_channels(z, channels)))
  if dropout is not None:
    z = dropout(z)
  x = x + z if residual else z
  return mask_channels(x if prenorm else norm(x), channels)


def check_pooling(pooling: str) -> str:
  """`pooling` if it is one of POOLINGS, else ConfigError."""
  if pooling not in POOLINGS:
    raise errors.ConfigError(f"Unknown pooling {pooling!r}; valid: {POOLINGS}.")
  return pooling


def pool(h: jax.Array, pooling: str) -> jax.Array:
  """(B, L, H) -> (B, H): the mean over time ("mean") or the last step ("last")."""
  return jnp.mean(h, axis=1) if check_pooling(pooling) == "mean" else h[:, -1]


def classifier(
  x: jax.Array,
  encoder: Fn,
  blocks: Sequence[Fn],
  pooling: str,
  decoder: Fn,
  start: int = 0,
  stop: int | None = None,
) -> jax.Array:
  """encoder -> blocks -> pooling -> decoder: x (B, L, d_input) -> logits (B, n_classes).

  A segment of it with `start` / `stop`: blocks[start:stop] only; x is the (B, L, H) stream
  entering block `start` when start > 0 (no encoder), and with `stop` set the stream
  leaving block stop - 1 is returned (no pooling, no decoder). Splitting the model at a
  block lets many variants of its later blocks share one pass through the earlier ones.
  """
  h = encoder(x) if start == 0 else x
  for block in blocks[start:stop]:
    h = block(h)
  return h if stop is not None else decoder(pool(h, pooling))
