"""Pure S4D maths: initialisation, discretisation, the linear recurrence and its kernel.

Everything here acts on arrays for ONE unbatched sequence (batch with `jax.vmap`) and knows
nothing about flax. Notation follows S4D (Gu et al. 2022, "On the Parameterization and
Initialization of Diagonal State Space Models"):

  continuous   x'(t) = a x(t) + b u(t),   y = 2 Re(c . x) + d u,   Re a < 0
  discrete     x_k = a_bar x_{k-1} + b_bar u_k,   y_k = 2 Re(c . x_k) + d u_k

per channel h = 1..H with n = N/2 complex modes (the conjugate half is implied by the factor
2 Re, so the real state size is N). Shapes below use H channels, n modes, L steps.

Four ways to evaluate the same map u -> y, which must agree (tests/test_ssm.py):
  "associative"  jax.lax.associative_scan over the states (parallel in L; the GPU path),
  "sequential"   jax.lax.scan over the states (the path a chip or a stream follows),
  "fft"          the convolution kernel K_l = 2 Re(sum_n c_n b_bar_n a_bar_n^l) applied as a
                 causal FFT convolution (contracts with c before touching L, so it never
                 materialises the L x H x n states: the fastest path on CPU for long L),
  "toeplitz"     the same kernel applied as a dense lower-triangular (L, L) matrix per
                 channel: O(L^2) work but plain matrix products, faster than the FFT on CPU
                 for short sequences,
  `step`         one step at a time, for streaming. (The step-mode chip, `ssm_aimc.chip`,
                 runs the same recurrence on (Re, Im) pairs of real numbers, which rounds
                 differently from a complex product, so it keeps its own formula.)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

METHODS = ("associative", "sequential", "fft", "toeplitz")
DISCRETIZATIONS = ("zoh", "bilinear")
A_INITS = ("lin", "inv", "lin_quarter", "real")


# ---------------------------------------------------------------------------------------
# Initialisation (returns the *stored* real parameters).
# ---------------------------------------------------------------------------------------


def init_log_step(
  key: jax.Array, shape: tuple[int, ...], step_min: float = 1e-3, step_max: float = 1e-1
) -> jax.Array:
  """log(step) drawn log-uniformly in [log step_min, log step_max]."""
  u = jax.random.uniform(key, shape, jnp.float32)
  return u * (math.log(step_max) - math.log(step_min)) + math.log(step_min)


def init_a(n_modes: int, kind: str = "lin") -> tuple[jax.Array, jax.Array]:
  """S4D initialisation of the diagonal state matrix for one channel.

  Args:
    n_modes: n, the number of complex modes (real state size N = 2n).
    kind: "lin" (S4D-Lin, a_k = -1/2 + i pi k), "inv" (S4D-Inv,
      a_k = -1/2 + i N/pi (N/(2k+1) - 1)) or "lin_quarter" (S4D-Lin at a quarter of the
      frequencies, a_k = -1/2 + i pi/4 k: the QS4D authors' initialisation) or "real"
      (S4D-Real, a_k = -(k + 1): decay only, no rotation; the layer keeps Im a at 0).

  Returns:
    (log_neg_re_a, im_a), each of shape (n,): the stored parameters, decoded by `decode_a`
    so that Re a < 0 holds for every value the optimiser can reach.
  """
  k = jnp.arange(n_modes, dtype=jnp.float32)
  log_neg_re_a = jnp.full((n_modes,), math.log(0.5), jnp.float32)
  if kind == "lin":
    im_a = math.pi * k
  elif kind == "lin_quarter":
    im_a = math.pi / 4 * k
  elif kind == "inv":
    state_size = 2 * n_modes
    im_a = state_size / math.pi * (state_size / (2 * k + 1) - 1)
  elif kind == "real":
    log_neg_re_a, im_a = jnp.log(k + 1), jnp.zeros_like(k)
  else:
    raise ValueError(f"Unknown S4D init {kind!r}; valid: {A_INITS}.")
  return log_neg_re_a, im_a


def decode_a(log_neg_re_a: jax.Array, im_a: jax.Array) -> jax.Array:
  """Stored (log(-Re a), Im a) -> complex a with Re a < 0 (any shape)."""
  return -jnp.exp(log_neg_re_a) + 1j * im_a


def complex_from_pair(pair: jax.Array) -> jax.Array:
  """(..., 2) real pair -> complex (...)."""
  return pair[..., 0] + 1j * pair[..., 1]


# ---------------------------------------------------------------------------------------
# Discretisation.
# ---------------------------------------------------------------------------------------


def discretize(
  a: jax.Array, b: jax.Array, step: jax.Array, method: str = "zoh"
) -> tuple[jax.Array, jax.Array]:
  """Continuous (a, b) and step -> (a_bar, b_bar); all arrays broadcast together.

  zoh:       a_bar = exp(step a),  b_bar = (a_bar - 1) / a * b   (exact for held inputs)
  bilinear:  a_bar = (1 + step a / 2) / (1 - step a / 2),  b_bar = step b / (1 - step a / 2)
  """
  if method == "zoh":
    a_bar = jnp.exp(step * a)
    return a_bar, (a_bar - 1.0) / a * b
  if method == "bilinear":
    denom = 1.0 - 0.5 * step * a
    return (1.0 + 0.5 * step * a) / denom, step * b / denom
  raise ValueError(f"Unknown discretization {method!r}; valid: {DISCRETIZATIONS}.")


# ---------------------------------------------------------------------------------------
# The recurrence x_k = a_bar_k x_{k-1} + bu_k.
# ---------------------------------------------------------------------------------------


def _accumulation_dtype(*xs: jax.Array) -> jnp.dtype:
  """complex64 if anything is complex, else float32 (never accumulate in lower precision)."""
  if any(jnp.iscomplexobj(x) for x in xs):
    return jnp.result_type(jnp.complex64, *xs)
  return jnp.result_type(jnp.float32, *xs)


def _combine(left, right):
  """Associative operator of the linear recurrence: (a1, b1) o (a2, b2) = (a2 a1, a2 b1 + b2)."""
  a1, b1 = left
  a2, b2 = right
  return a2 * a1, a2 * b1 + b2


def linear_recurrence(
  a_bar: jax.Array,
  bu: jax.Array,
  method: str = "associative",
  reverse: bool = False,
  state_fn: Callable[[jax.Array], jax.Array] | None = None,
) -> jax.Array:
  """States x_1..x_L of x_k = a_bar_k * x_{k-1} + bu_k with x_0 = 0.

  Args:
    a_bar: (P,) time-invariant or (L, P) time-varying coefficients (real or complex).
    bu: (L, P) inputs already multiplied by b_bar.
    method: "associative" (jax.lax.associative_scan) or "sequential" (jax.lax.scan).
    reverse: run the recurrence from the last step to the first.
    state_fn: optional map (P,) -> (P,) applied to every new state before it is stored
      and fed back (e.g. a quantizer of the state, as in `step`); sequential only, as
      the parallel scan has no per-step state to round.

  Returns:
    (L, P) states, in float32 / complex64 (or wider if the inputs are wider).
  """
  dtype = _accumulation_dtype(a_bar, bu)
  bu = bu.astype(dtype)
  a_bar = jnp.broadcast_to(a_bar.astype(dtype), bu.shape)
  if state_fn is not None and method != "sequential":
    raise ValueError(f"A state_fn needs the sequential recurrence, not {method!r}.")
  if method == "associative":
    _, x = jax.lax.associative_scan(_combine, (a_bar, bu), reverse=reverse)
    return x
  if method == "sequential":

    def body(x, inputs):
      a_k, bu_k = inputs
      x = a_k * x + bu_k
      if state_fn is not None:
        x = state_fn(x)
      return x, x

    _, x = jax.lax.scan(body, jnp.zeros(bu.shape[1:], dtype), (a_bar, bu), reverse=reverse)
    return x
  raise ValueError(f"Unknown recurrence method {method!r}; valid: associative, sequential.")


# ---------------------------------------------------------------------------------------
# Convolution view.
# ---------------------------------------------------------------------------------------


def ssm_kernel(a_bar: jax.Array, b_bar: jax.Array, c: jax.Array, length: int) -> jax.Array:
  """Convolution kernel K_l = 2 Re(sum_n c_n b_bar_n a_bar_n^l), l = 0..L-1.

  Args:
    a_bar, b_bar, c: (H, n) complex.
    length: L.

  Returns:
    (L, H) float32 kernel.
  """
  dtype = _accumulation_dtype(a_bar, b_bar, c)
  a_bar, cb = a_bar.astype(dtype), (c * b_bar).astype(dtype)
  # a_bar^l through exp(l log a_bar): one fused op, no cumulative-product error build-up.
  steps = jnp.arange(length, dtype=jnp.finfo(dtype).dtype)[:, None, None]
  powers = jnp.exp(jnp.log(a_bar)[None] * steps)
  return 2.0 * jnp.einsum("hn,lhn->lh", cb, powers).real


def causal_conv(u: jax.Array, kernel: jax.Array) -> jax.Array:
  """y_k = sum_{j<=k} kernel_j u_{k-j} per channel, by FFT (zero-padded to avoid wrap-around).

  Args:
    u: (L, H) real.
    kernel: (L, H) real.

  Returns:
    (L, H) float32 (float64 if an input is float64).
  """
  length = u.shape[0]
  n_fft = 2 * length
  dtype = _accumulation_dtype(u, kernel)
  u_f = jnp.fft.rfft(u.astype(dtype), n=n_fft, axis=0)
  k_f = jnp.fft.rfft(kernel.astype(dtype), n=n_fft, axis=0)
  return jnp.fft.irfft(u_f * k_f, n=n_fft, axis=0)[:length]


def causal_conv_toeplitz(u: jax.Array, kernel: jax.Array) -> jax.Array:
  """`causal_conv` as a product with the lower-triangular Toeplitz matrix T[l, j] = K[l - j].

  O(L^2 H) work and memory for the (L, L, H) matrix, which does not depend on u (under vmap
  over a batch it is built once); used for short sequences.
  """
  length = u.shape[0]
  dtype = _accumulation_dtype(u, kernel)
  lag = jnp.arange(length)[:, None] - jnp.arange(length)[None, :]
  toeplitz = jnp.where((lag >= 0)[:, :, None], kernel.astype(dtype)[jnp.maximum(lag, 0)], 0.0)
  return jnp.einsum("ljh,jh->lh", toeplitz, u.astype(dtype))


# ---------------------------------------------------------------------------------------
# The full S4D map for one sequence, and one streaming step.
# ---------------------------------------------------------------------------------------


def select_method(length: int, platform: str | None = None) -> str:
  """The fastest evaluation path for a platform, from the timings in BENCHMARKS.md.

  CPU: the FFT convolution wins at every measured length (L = 64 and 784, both model
  sizes), because it contracts with c before touching L while both scans materialise the
  (L, H, n) complex states. GPU/TPU: the associative scan is expected to win (parallel in
  L); this is not yet measured here and BENCHMARKS.md says so.
  """
  del length  # The CPU ranking did not change with L over the measured range.
  platform = platform or jax.default_backend()
  return "fft" if platform == "cpu" else "associative"


def _apply_causal(
  a_bar: jax.Array,
  b_bar: jax.Array,
  c: jax.Array,
  u: jax.Array,
  method: str,
  state_fn: Callable[[jax.Array], jax.Array] | None,
  kernel_fn: Callable[[jax.Array], jax.Array] | None = None,
) -> jax.Array:
  """2 Re(c . x_k) for the causal recurrence driven by u (L, H); without the d u term."""
  length, channels = u.shape
  if state_fn is not None and method != "sequential":
    raise ValueError(f"A state_fn needs method 'sequential', not {method!r}.")
  if kernel_fn is not None and method not in ("fft", "toeplitz"):
    raise ValueError(f"A kernel_fn needs a convolution method (fft, toeplitz), not {method!r}.")
  if method in ("fft", "toeplitz"):
    kernel = ssm_kernel(a_bar, b_bar, c, length)
    kernel = kernel if kernel_fn is None else kernel_fn(kernel)
    return (causal_conv if method == "fft" else causal_conv_toeplitz)(u, kernel)
  if method in ("associative", "sequential"):
    n_modes = a_bar.shape[-1]
    u = u.astype(_accumulation_dtype(u))
    bu = (b_bar[None] * u[:, :, None]).reshape(length, channels * n_modes)
    x = linear_recurrence(a_bar.reshape(-1), bu, method, state_fn=state_fn)
    x = x.reshape(length, channels, n_modes)
    return 2.0 * jnp.einsum("hn,lhn->lh", c.astype(x.dtype), x).real
  raise ValueError(f"Unknown SSM method {method!r}; valid: {METHODS + ('auto',)}.")


def apply_ssm(
  a_bar: jax.Array,
  b_bar: jax.Array,
  c: jax.Array,
  d: jax.Array,
  u: jax.Array,
  method: str = "auto",
  c_reverse: jax.Array | None = None,
  state_fn: Callable[[jax.Array], jax.Array] | None = None,
  kernel_fn: Callable[[jax.Array], jax.Array] | None = None,
) -> jax.Array:
  """The discrete S4D map u -> y for one sequence.

  Args:
    a_bar, b_bar, c: (H, n) complex.
    d: (H,) real skip connection.
    u: (L, H) real input.
    method: one of METHODS, or "auto" (`select_method`).
    c_reverse: (H, n) complex read-out of a second, anti-causal pass over the reversed
      sequence (bidirectional S4D, which shares a_bar and b_bar between directions); None for
      a causal layer.
    state_fn: optional map applied to each direction's new state (H n,) at every step
      (`linear_recurrence`); needs method "sequential".
    kernel_fn: optional map applied to each direction's convolution kernel (L, H) (e.g. a
      quantizer of it, the rounding point the convolution paths have); needs method "fft"
      or "toeplitz".

  Returns:
    (L, H) float32 output.
  """
  if method == "auto":
    method = select_method(u.shape[0])
  y = _apply_causal(a_bar, b_bar, c, u, method, state_fn, kernel_fn)
  if c_reverse is not None:
    y = y + _apply_causal(a_bar, b_bar, c_reverse, u[::-1], method, state_fn, kernel_fn)[::-1]
  return y + d * u


def init_state(channels: int, n_modes: int) -> jax.Array:
  """Zero state x_0 of shape (H, n), complex64."""
  return jnp.zeros((channels, n_modes), jnp.complex64)


def step(
  state: jax.Array,
  u_k: jax.Array,
  a_bar: jax.Array,
  b_bar: jax.Array,
  c: jax.Array,
  d: jax.Array,
  state_fn: Callable[[jax.Array], jax.Array] | None = None,
) -> tuple[jax.Array, jax.Array]:
  """One streaming step of a causal S4D layer.

  Args:
    state: (H, n) complex x_{k-1}.
    u_k: (H,) real input at step k.
    a_bar, b_bar, c: (H, n) complex; d: (H,) real.
    state_fn: optional map applied to the new state before it is stored and read out
      (e.g. a quantizer of the state, as a chip's ADC/DAC loop rounds it).

  Returns:
    (x_k (H, n), y_k (H,)).
  """
  state = a_bar * state + b_bar * u_k[:, None]
  if state_fn is not None:
    state = state_fn(state)
  y_k = 2.0 * jnp.sum(c * state, axis=-1).real + d * u_k
  return state, y_k
