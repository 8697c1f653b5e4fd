"""Thin Flax linen shells over the pure S4D maths: the S4D layer and the residual block.

Parameters are stored as real arrays (complex numbers as trailing real pairs) and decoded
once per call into the complex (a_bar, b_bar, c) that `ssm_aimc.ssm` consumes. All layers
take a batch (B, L, H) and vmap the pure single-sequence functions over B; a kernel or
discretisation that does not depend on the input is computed once, not per example.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssm_aimc import ssm


def _complex_normal_init(std: float = 1.0):
  """Initialiser for a (..., 2) real pair holding a complex normal of total variance std^2."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.normal(key, shape, dtype) * (std / math.sqrt(2.0))

  return init


class S4D(nn.Module):
  """Diagonal state-space layer (S4D), H independent channels of n = d_state/2 complex modes.

  Attributes:
    d_state: N, the real state size per channel (n = N/2 complex modes). Must be even.
    a_init: "lin" (S4D-Lin) or "inv" (S4D-Inv) initialisation of a (not `init`, which
      would shadow flax.linen.Module.init).
    discretization: "zoh" or "bilinear".
    method: evaluation path of `ssm.apply_ssm` ("auto", "fft", "associative",
      "sequential"); all give the same numbers.
    bidirectional: add an anti-causal pass with its own read-out c_reverse.
    step_min, step_max: range of the log-uniform initial step size.
    train_b: learn b (initialised to 1); otherwise b stays 1.

  Parameters (names kept from the paper, decoded once per call):
    log_step (H,), log_neg_re_a (H, n), im_a (H, n), b (H, n, 2), c (H, n, 2), d (H,),
    and c_reverse (H, n, 2) when bidirectional.
  """

  d_state: int = 64
  a_init: str = "lin"
  discretization: str = "zoh"
  method: str = "auto"
  bidirectional: bool = False
  step_min: float = 1e-3
  step_max: float = 1e-1
  train_b: bool = True

  def discrete_params(self, channels: int) -> dict[str, jax.Array]:
    """Declares/reads the parameters; returns complex a_bar, b_bar, c (H, n), real d (H,)."""
    if self.d_state % 2:
      raise ValueError(f"d_state must be even (N/2 complex modes), got {self.d_state}.")
    n_modes = self.d_state // 2
    log_step = self.param(
      "log_step",
      lambda key, shape: ssm.init_log_step(key, shape, self.step_min, self.step_max),
      (channels,),
    )

    def a_init(index):
      return lambda key, shape: jnp.tile(ssm.init_a(n_modes, self.a_init)[index], (shape[0], 1))

    log_neg_re_a = self.param("log_neg_re_a", a_init(0), (channels, n_modes))
    im_a = self.param("im_a", a_init(1), (channels, n_modes))
    b_ones = lambda key, shape: jnp.stack([jnp.ones(shape[:-1]), jnp.zeros(shape[:-1])], -1)
    if self.train_b:
      b_pair = self.param("b", b_ones, (channels, n_modes, 2))
    else:
      b_pair = b_ones(None, (channels, n_modes, 2))
    c_pair = self.param("c", _complex_normal_init(), (channels, n_modes, 2))
    d = self.param("d", nn.initializers.normal(1.0), (channels,))

    a = ssm.decode_a(log_neg_re_a, im_a)
    a_bar, b_bar = ssm.discretize(
      a, ssm.complex_from_pair(b_pair), jnp.exp(log_step)[:, None], self.discretization
    )
    out = {"a_bar": a_bar, "b_bar": b_bar, "c": ssm.complex_from_pair(c_pair), "d": d}
    if self.bidirectional:
      c_rev = self.param("c_reverse", _complex_normal_init(), (channels, n_modes, 2))
      out["c_reverse"] = ssm.complex_from_pair(c_rev)
    return out

  @nn.compact
  def __call__(self, u: jax.Array) -> jax.Array:
    """u: (B, L, H) -> y: (B, L, H)."""
    p = self.discrete_params(u.shape[-1])

    def one_sequence(u_seq):
      return ssm.apply_ssm(
        p["a_bar"], p["b_bar"], p["c"], p["d"], u_seq, self.method, p.get("c_reverse")
      )

    return jax.vmap(one_sequence)(u).astype(u.dtype)


class S4DBlock(nn.Module):
  """Pre-norm residual block: x + dropout(GLU(Dense(dropout(GELU(S4D(norm(x))))))).

  Attributes:
    ssm: constructor of the sequence layer, called with `name=` (e.g. a
      `functools.partial(S4D, d_state=...)`), so every block owns its own parameters.
    dropout: dropout rate after the activation and after the GLU.
    prenorm: normalise before the SSM (True) or after the residual (False).
  """

  ssm: Callable[..., nn.Module]
  dropout: float = 0.0
  prenorm: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: (B, L, H) -> (B, L, H)."""
    channels = x.shape[-1]
    z = nn.LayerNorm(name="norm")(x) if self.prenorm else x
    z = self.ssm(name="s4d")(z)
    z = nn.gelu(z)
    z = nn.Dropout(self.dropout, deterministic=not train)(z)
    z = nn.Dense(2 * channels, name="glu_dense")(z)
    z = nn.glu(z, axis=-1)
    z = nn.Dropout(self.dropout, deterministic=not train)(z)
    x = x + z
    if not self.prenorm:
      x = nn.LayerNorm(name="norm")(x)
    return x
