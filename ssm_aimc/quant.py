"""Pure quantization maths for quantization-aware training (docs/design.md §1, "QAT").

This module owns:
  * `fake_quant`: the signed symmetric uniform fake quantizer (binary, ternary, k-bit, off)
    with a straight-through / LSQ backward pass, written as one `jax.custom_vjp`;
  * scale rules: per-tensor and per-output-channel absmax, the LSQ initial step and its
    gradient scaling;
  * `quantize_a_bar`: quantizers for the complex recurrent coefficient that keep every mode
    strictly inside the unit circle by construction;
  * the QS4D authors' scheme beside ours: `qs4d_quant` (per-tensor absmax, q + 1 levels,
    identity backward, one `jax.custom_vjp`) and `qs4d_continuous`, their quantization of
    the continuous-time A and step, kept stable;
  * integer export (`to_integer_codes` / `from_integer_codes`);
  * the quantization specs (`TensorQuant`, `QuantSpec`) as pytree dataclasses.

Bit widths are always ordinary traced float32 arrays, never Python statics or
`nondiff_argnums`: one compiled program serves every bit width, so a sweep can `jax.vmap`
over a grid of them. The encoding of the "ssm_aimc" scheme is
  bits == 1  -> binary  sign(x) * s (sign(0) = +1),
  bits == 2  -> ternary {-s, 0, s},
  2 < bits < 16 -> q_max = 2^(bits-1) - 1 levels each side of zero,
  bits >= 16 -> off: the float path, bit for bit (values and gradients).
Under the "qs4d" scheme bits < 16 means q = 2^bits states, 2^bits + 1 levels (bits == 1 is
ternary), and bits >= 16 is off in the same way (`is_off` decides for both).
Cases are selected with `jnp.where`, so all of them live in the same program.

No flax, optax or ml_collections here: only jax, numpy and the standard library.
"""

import dataclasses
import enum

import jax
import jax.numpy as jnp
import numpy as np

from ssm_aimc import errors

# Bit widths at or above this threshold mean "quantization off" (the float path).
OFF_THRESHOLD = 16.0
# The value used for "off" in specs. 32 rather than 16 so that cost accounting, which
# multiplies weight counts by bits, charges an unquantized tensor at float32 width.
OFF_BITS = 32.0
# Largest bit width `validate_bits` accepts.
MAX_BITS = 64

# Smallest decay step of the polar a_bar grid: every quantized radius is at most
# exp(-2^-20) ~= 1 - 9.5e-7, i.e. 16 float32 ulps below one. A smaller floor would let
# exp(-d) round to exactly 1.0 in float32 (ulp just below 1 is 6e-8), and the margin also
# covers the few ulps of error in r*cos, r*sin and the modulus.
_DECAY_STEP_MIN = 2.0**-20
# |a_bar| below this is treated as this: the log and angle gradients carry 1/|a| factors,
# and a mode this fast is zero after one step anyway.
_RADIUS_MIN = 1e-12


class ScaleMode(enum.Enum):
  """How a tensor's quantization scale is obtained.

  TENSOR: one absmax scale for the whole tensor (a constant for the STE).
  CHANNEL: one absmax scale per output channel (a constant for the STE).
  LSQ: a learned step size (Esser et al. 2020), trained through `fake_quant`'s scale
    gradient; initialise it with `lsq_init_scale` and wrap it in `lsq_grad_scale`.
  """

  TENSOR = "tensor"
  CHANNEL = "channel"
  LSQ = "lsq"


# ----------------------------------------------------------------------------------------
# The fake quantizer.


def _grid(bits):
  """Decodes a (traced) bit width into (binary, off, q_max) arrays, all float32-based."""
  bits = jnp.asarray(bits, jnp.float32)
  # bits <= 1 all mean binary: an invalid 0 or negative width that slipped past
  # `validate_bits` then stays finite instead of producing a NaN grid.
  binary = bits <= 1
  off = bits >= OFF_THRESHOLD
  # XLA's exp2 is exp(x ln 2), off by ulps even at integers (seen at bits = 4 in a fused
  # backward pass); the grid must be exact, so round. Widths are whole numbers
  # (`validate_bits`), and below 2^24 the rounding recovers 2^(bits-1) exactly.
  q_max = jnp.round(jnp.exp2(bits - 1)) - 1
  return binary, off, q_max


def _codes(x, bits, scale):
  """Integer-valued float codes and the scaled input.

  Args:
    x: real array, any shape.
    bits: bit width, broadcastable against x.
    scale: step size, broadcastable against x.

  Returns:
    (codes, v), both of the broadcast shape: codes in [-q_max, q_max] (binary: +-1),
    v = x / scale (with scale == 0 read as 1, so no NaN; the caller multiplies the codes
    by the true scale, giving 0).
  """
  binary, _, q_max = _grid(bits)
  scale = jnp.asarray(scale)
  safe_scale = jnp.where(scale == 0, jnp.ones_like(scale), scale)
  v = x / safe_scale
  # jnp.round rounds half to even, which is odd-symmetric, so the grid is symmetric.
  multi = jnp.clip(jnp.round(v), -q_max, q_max)
  sign = jnp.where(x >= 0, 1.0, -1.0).astype(v.dtype)
  return jnp.where(binary, sign, multi), v


def _sum_to_shape(t, shape):
  """Sums a broadcast cotangent back to an operand's shape (leading and size-1 axes)."""
  shape = tuple(shape)
  lead = t.ndim - len(shape)
  axes = tuple(range(lead)) + tuple(
    lead + i for i, n in enumerate(shape) if n == 1 and t.shape[lead + i] != 1
  )
  if axes:
    t = jnp.sum(t, axis=axes, keepdims=True)
  return t.reshape(shape)


@jax.custom_vjp
def fake_quant(x, bits, scale):
  """Signed symmetric uniform fake quantization with an STE / LSQ backward pass.

  Forward: Q(x) = scale * clip(round(x / scale), -q_max, q_max), q_max = 2^(bits-1) - 1;
  bits == 2 gives ternary {-s, 0, s}; bits == 1 gives binary sign(x) * s with sign(0) = +1
  (so zero maps to +s, never to a third level); bits >= 16 returns x itself, bit for bit.
  scale == 0 (e.g. the absmax scale of an all-zero tensor) gives 0 without NaN.

  Faked gradients, and why: round() has zero derivative almost everywhere, which would stop
  all learning, so the backward pass pretends it is the identity (straight-through
  estimator) where the quantizer is not clipping:
    d/dx = 1 where |x / scale| <= q_max (binary: |x| <= scale, the "hardtanh" STE of
      BinaryConnect / XNOR-Net), else 0. Where scale == 0 the mask is all ones, so a
      zero-initialised tensor still receives gradient and can leave zero.
    d/dscale = the LSQ form (Esser et al. 2020): round(x/s) - x/s strictly inside the range,
      sign(x/s) * q_max where |x/s| >= q_max (the true derivative of the clipped branch;
      at scale == 0 this is the one-sided limit sign(x) * q_max); binary: sign(x).
      Summed over the axes that `scale` was broadcast along. The LSQ gradient scaling
      factor is not applied here: wrap a learned scale in `lsq_grad_scale`.
    d/dbits = 0 (bit widths are swept, not learned).
  With bits >= 16 the gradient is exactly the incoming cotangent for x and 0 for scale.

  Args:
    x: real array (float32 or narrower), any shape.
    bits: bit width, a traced or concrete scalar (or array broadcastable against x).
    scale: step size s > 0, broadcastable against x: a scalar per tensor, e.g. shape
      (1, out) per output channel of an (in, out) matrix.

  Returns:
    Array of the broadcast shape of (x, bits, scale) (normally x.shape) and x's dtype.
  """
  _, off, _ = _grid(bits)
  codes, _ = _codes(x, bits, scale)
  return jnp.where(off, x, (codes * scale).astype(x.dtype))


def fake_quant_fwd(x, bits, scale):
  return fake_quant(x, bits, scale), (x, bits, jnp.asarray(scale))


def fake_quant_bwd(res, g):
  x, bits, scale = res
  binary, off, q_max = _grid(bits)
  codes, v = _codes(x, bits, scale)
  zero_scale = scale == 0
  # Clip range in units of the scale: q_max, or 1 for binary.
  limit = jnp.where(binary, 1.0, q_max)
  pass_mask = (jnp.abs(v) <= limit) | zero_scale
  dx = jnp.where(off, g, jnp.where(pass_mask, g, jnp.zeros_like(g)))
  # LSQ uses the strict interior for the step gradient: on the boundary the clipped branch
  # is the one the forward pass takes, so its derivative (+-q_max) is the true one.
  interior = jnp.abs(v) < q_max
  ds_multi = jnp.where(zero_scale, jnp.sign(x) * q_max, jnp.where(interior, codes - v, codes))
  ds = jnp.where(off, 0.0, jnp.where(binary, codes, ds_multi))
  dx = _sum_to_shape(dx, x.shape).astype(x.dtype)
  dscale = _sum_to_shape(g * ds, scale.shape).astype(scale.dtype)
  # None is JAX's symbolic zero cotangent; it also suits integer-typed bit widths.
  return dx, None, dscale


fake_quant.defvjp(fake_quant_fwd, fake_quant_bwd)


def fake_quant_complex(z, bits, scale):
  """`fake_quant` applied to the real and imaginary parts of z with one shared scale.

  Args:
    z: complex array, any shape (e.g. b_bar).
    bits: bit width (traced).
    scale: real step size, broadcastable against z.

  Returns:
    complex array of z's shape; with bits >= 16 it is z exactly.
  """
  return jax.lax.complex(fake_quant(z.real, bits, scale), fake_quant(z.imag, bits, scale))


@jax.custom_vjp
def scale_gradient(x, factor):
  """Identity in the forward pass; multiplies the gradient by `factor` in the backward.

  Faked gradient, and why: d/dx is `factor` instead of 1, to rescale a parameter's update
  (LSQ's step-size gradient scaling) without changing its value by even one ulp, which the
  `x * g + stop_gradient(x - x * g)` formulation cannot promise. d/dfactor = 0.

  Args:
    x: array, any shape.
    factor: scalar or array broadcastable against x (not enlarging it).

  Returns:
    x, unchanged.
  """
  del factor
  return x


def scale_gradient_fwd(x, factor):
  return x, jnp.asarray(factor)


def scale_gradient_bwd(factor, g):
  return _sum_to_shape(g * factor, g.shape).astype(g.dtype), None


scale_gradient.defvjp(scale_gradient_fwd, scale_gradient_bwd)


@jax.custom_vjp
def straight_through(x, x_q):
  """Returns x_q's value with the identity gradient to x and none to x_q.

  Faked gradient, and why: a quantizer's rounding has zero derivative almost everywhere, so
  the straight-through estimator pretends it is the identity. Used where the grid is not
  the symmetric one of `fake_quant` (the unsigned decay grid of `quantize_a_bar`). Unlike
  `x + stop_gradient(x_q - x)` the value is x_q exactly, not up to one rounding.

  Args:
    x: array, any shape.
    x_q: its quantized value, same shape and dtype.

  Returns:
    x_q.
  """
  del x
  return x_q


def straight_through_fwd(x, x_q):
  del x
  return x_q, None


def straight_through_bwd(_, g):
  return g, None


straight_through.defvjp(straight_through_fwd, straight_through_bwd)


# ----------------------------------------------------------------------------------------
# Scales.


def _reduce_axes(ndim, axis):
  """Axes to reduce for a per-channel statistic: all but `axis` (None: per tensor)."""
  if axis is None:
    return None
  if not -ndim <= axis < ndim:
    raise errors.ConfigError(
      f"channel axis {axis} is out of range for a tensor with {ndim} dimensions"
    )
  axis %= ndim
  return tuple(i for i in range(ndim) if i != axis)


def absmax_scale(x, bits, axis=None):
  """Absmax step size, a constant for the STE (returned under stop_gradient).

  s = max|x| / q_max, so the largest magnitude lands exactly on the top level. For binary
  (bits == 1) it is mean|x| instead, the XNOR-Net choice: it minimises ||x - s sign(x)||^2.
  An all-zero tensor gives s = 0, which `fake_quant` handles.

  Args:
    x: real array, any shape.
    bits: bit width (traced scalar).
    axis: None for one scale per tensor; otherwise the output-channel axis: the statistic
      is taken over every other axis, with keepdims so it broadcasts against x.

  Returns:
    scale of shape () (per tensor) or x.shape with 1 everywhere except `axis`.
  """
  binary, _, q_max = _grid(bits)
  axes = _reduce_axes(jnp.ndim(x), axis)
  keep = axis is not None
  abs_x = jnp.abs(x)
  absmax = jnp.max(abs_x, axis=axes, keepdims=keep)
  mean_abs = jnp.mean(abs_x, axis=axes, keepdims=keep)
  # max(q_max, 1) only keeps the unselected binary branch finite.
  scale = jnp.where(binary, mean_abs, absmax / jnp.maximum(q_max, 1.0))
  return jax.lax.stop_gradient(scale)


def lsq_init_scale(x, bits, axis=None):
  """Initial LSQ step size, as in the LSQ paper: s0 = 2 mean|x| / sqrt(q_max).

  For binary, mean|x| (the XNOR-Net optimum, see `absmax_scale`). This is an initialiser
  for a learned parameter, so it is returned as a plain value.

  Args:
    x: real array, the tensor the step will quantize (e.g. a weight matrix).
    bits: bit width.
    axis: None per tensor, or the output-channel axis (keepdims, as in `absmax_scale`).

  Returns:
    scale of shape () or broadcastable against x.
  """
  binary, _, q_max = _grid(bits)
  axes = _reduce_axes(jnp.ndim(x), axis)
  mean_abs = jnp.mean(jnp.abs(x), axis=axes, keepdims=axis is not None)
  return jnp.where(binary, mean_abs, 2.0 * mean_abs / jnp.sqrt(jnp.maximum(q_max, 1.0)))


def lsq_grad_scale(scale, numel, bits):
  """Wraps a learned step size so its gradient is scaled by g = 1 / sqrt(numel * q_max).

  LSQ (Esser et al. 2020, §2.2) scales the step-size gradient so that its update is
  commensurate with the weight updates. The value is `scale` exactly; only the gradient is
  rescaled (see `scale_gradient`). For binary q_max is read as 1.

  Args:
    scale: learned step size, any shape.
    numel: number of elements the step quantizes (per channel: elements per channel).
    bits: bit width (traced).

  Returns:
    scale, unchanged in value.
  """
  _, _, q_max = _grid(bits)
  g = jax.lax.rsqrt(jnp.asarray(numel, jnp.float32) * jnp.maximum(q_max, 1.0))
  return scale_gradient(scale, g)


def weight_scale(w, spec, lsq_scale=None, channel_axis=-1):
  """The step size of weight tensor w under its `TensorQuant` (quantize with `fake_quant`).

  Args:
    w: real weights, e.g. (in, out).
    spec: a `TensorQuant` (its bits may be traced).
    lsq_scale: the learned step size, required when spec.mode is LSQ (shape () or
      broadcastable against w); ignored otherwise.
    channel_axis: output-channel axis for ScaleMode.CHANNEL.

  Returns:
    the absmax step (per tensor, or keepdims per channel), or the LSQ step wrapped in
    `lsq_grad_scale`.
  """
  if spec.mode is ScaleMode.TENSOR:
    return absmax_scale(w, spec.bits)
  if spec.mode is ScaleMode.CHANNEL:
    return absmax_scale(w, spec.bits, axis=channel_axis)
  if spec.mode is ScaleMode.LSQ:
    if lsq_scale is None:
      raise errors.ConfigError("ScaleMode.LSQ needs a learned scale; got lsq_scale=None")
    numel = np.size(w) // max(int(np.size(lsq_scale)), 1)
    return lsq_grad_scale(lsq_scale, numel, spec.bits)
  raise errors.ConfigError(f"unknown scale mode {spec.mode!r}; valid: {list(ScaleMode)}")


# ----------------------------------------------------------------------------------------
# Stable quantization of the recurrent coefficient a_bar.


def _channel_max(x, axis):
  """max over the whole tensor (axis None) or over all axes but `axis`, keepdims."""
  axes = _reduce_axes(jnp.ndim(x), axis)
  return jnp.max(x, axis=axes, keepdims=axis is not None)


def _polar_grid(a_bar, bits, axis):
  """Decay, angle and their grids for the polar a_bar quantizer (see `quantize_a_bar`).

  Returns (decay, theta, step, n_levels, angle_scale): decay = -log|a| and theta = arg(a)
  of a_bar's shape, the decay step and level count, and the angle's absmax step.
  """
  radius = jnp.abs(a_bar)
  # Replace (near-)zero a_bar by a tiny positive real before log and angle: their
  # gradients have 1/|a| factors.
  tiny = radius < _RADIUS_MIN
  a_safe = jnp.where(tiny, jnp.complex64(_RADIUS_MIN), a_bar)
  r_safe = jnp.abs(a_safe)
  # Decay d = -log|a| > 0 on the unsigned grid k * step, k = 1 .. 2^bits - 1. Level 0
  # (|a| = 1) is left out, and step >= 2^-20, so exp(-d_q) < 1 strictly whatever the input
  # (inputs with |a| >= 1 map to level 1).
  decay = -jnp.log(r_safe)
  n_levels = jnp.maximum(jnp.round(jnp.exp2(jnp.asarray(bits, jnp.float32))) - 1, 1.0)
  # The grid's top is capped at bits * ln 2 (radius 2^-bits): otherwise one dead mode
  # (|a| ~ 0, d ~ 28) would stretch the step and round every slow mode to a fast one.
  # Modes faster than the cap land on the top level, i.e. radius ~2^-bits.
  d_cap = jnp.maximum(jnp.asarray(bits, jnp.float32), 1.0) * jnp.log(2.0)
  d_max = jnp.minimum(jax.lax.stop_gradient(_channel_max(decay, axis)), d_cap)
  step = jnp.maximum(d_max / n_levels, _DECAY_STEP_MIN)
  # Angle in [-pi, pi] on the signed symmetric grid, absmax scale (per tensor / channel).
  # Normalise by a constant 1/|a| (no complex division, no |a|^2 in the chain rule: both
  # underflow in float32 for |a| below ~1e-19 and would turn the gradient into NaN).
  unit = a_safe * jax.lax.stop_gradient(1.0 / r_safe)
  theta = jnp.arctan2(unit.imag, unit.real)
  return decay, theta, step, n_levels, absmax_scale(theta, bits, axis)


def _polar_value(decay_q, theta_q):
  """exp(-decay_q) * exp(i theta_q), the one formula both the quantizer and export use."""
  radius_q = jnp.exp(-decay_q)
  return jax.lax.complex(radius_q * jnp.cos(theta_q), radius_q * jnp.sin(theta_q))


def _a_bar_polar(a_bar, bits, axis):
  """Polar a_bar quantizer; see `quantize_a_bar`."""
  decay, theta, step, n_levels, angle_scale = _polar_grid(a_bar, bits, axis)
  level = jnp.clip(jnp.round(jax.lax.stop_gradient(decay) / step), 1.0, n_levels)
  decay_q = straight_through(decay, level * step)
  return _polar_value(decay_q, fake_quant(theta, bits, angle_scale))


def polar_codes(a_bar, bits, axis=None):
  """Integer codes of the polar a_bar quantizer, for export.

  Returns:
    (levels, angle_codes, step, angle_scale): int32 decay levels in 1 .. 2^bits - 1 and
    int32 angle codes in [-q_max, q_max] of a_bar's shape, and their float32 steps (per
    tensor, or keepdims per channel `axis`). `a_bar_from_polar_codes` inverts this to
    exactly `quantize_a_bar(a_bar, bits, "polar", axis)` (same ops, same order).
  """
  a_bar = jnp.asarray(a_bar).astype(jnp.complex64)
  decay, theta, step, n_levels, angle_scale = _polar_grid(a_bar, bits, axis)
  level = jnp.clip(jnp.round(decay / step), 1.0, n_levels)
  return level.astype(jnp.int32), to_integer_codes(theta, bits, angle_scale), step, angle_scale


def a_bar_from_polar_codes(levels, angle_codes, step, angle_scale):
  """Complex a_bar from `polar_codes` output (complex64)."""
  decay_q = levels.astype(jnp.float32) * step
  return _polar_value(decay_q, from_integer_codes(angle_codes, angle_scale))


def _a_bar_cartesian(a_bar, bits, axis):
  """Cartesian a_bar quantizer; see `quantize_a_bar`."""
  re, im = jnp.real(a_bar), jnp.imag(a_bar)
  # One scale for Re and Im, so the grid is square and the rotation part is not distorted.
  scale = jnp.maximum(absmax_scale(re, bits, axis), absmax_scale(im, bits, axis))
  a_q = jax.lax.complex(fake_quant(re, bits, scale), fake_quant(im, bits, scale))
  bits = jnp.asarray(bits, jnp.float32)
  r_max = 1.0 - jnp.exp2(-jnp.maximum(bits, 1.0))
  pull = jax.lax.stop_gradient(jnp.abs(a_q)) >= r_max
  # Double where: |.| has a NaN gradient at 0, so only differentiate it where pulled.
  a_pulled = jnp.where(pull, a_q, jnp.complex64(1.0))
  factor = jnp.where(pull, r_max / jnp.abs(a_pulled), 1.0)
  return a_q * factor


_A_BAR_METHODS = {
  "polar": _a_bar_polar,
  "cartesian": _a_bar_cartesian,
}


def _check_a_bar_method(method):
  if method not in _A_BAR_METHODS:
    raise errors.ConfigError(
      f"unknown a_bar parameterisation {method!r}; valid: {sorted(_A_BAR_METHODS)}"
    )


def quantize_a_bar(a_bar, bits, method="polar", axis=None):
  """Quantizes the complex recurrent coefficient with |a_bar_q| < 1 by construction.

  For every bits >= 1 and every finite input (even |a_bar| >= 1) each quantized mode lies
  strictly inside the unit circle, so the quantized recurrence cannot blow up. Gradients
  flow to a_bar by straight-through estimation. bits >= 16 returns a_bar exactly.

  Parameterisations (`method`):
    "polar": decay d = -log|a_bar| and angle theta = arg(a_bar), each with `bits` bits.
      d goes on the unsigned grid k * step, k = 1 .. 2^bits - 1 (round, then clip to that
      range), step = min(max(d), bits ln 2) / (2^bits - 1) per tensor or per channel,
      floored at 2^-20 (the cap bits ln 2, radius 2^-bits, keeps a dead mode from
      stretching the grid; faster modes land on the top level);
      the lowest level is strictly positive, so |a_q| = exp(-d_q) < 1. theta goes on the
      signed symmetric grid of `fake_quant` with an absmax scale. Log-radius spacing keeps
      precision near |a| = 1, where the slow (long-memory) modes live. Caveat: the step is
      set by the fastest mode below the cap, so a wide spread of decays costs the slow
      modes precision; per-channel grids (axis) help. STE: d(d_q)/dd = 1 everywhere (no
      clip mask: a slow mode held at level 1 must be able to move back), d(theta_q)/dtheta
      as in fake_quant. Zero or tiny |a_bar| (< 1e-12) is read as 1e-12 so gradients stay finite.
    "cartesian": Re and Im with `fake_quant` sharing one absmax scale (per tensor or per
      channel), then any result with modulus >= r_max = 1 - 2^-bits is rescaled onto the
      circle of radius r_max. This matches how a crossbar stores a mode (the real 2x2 block
      [[Re, -Im], [Im, Re]]), but the pull-back caps memory: |a| <= 0.996 at 8 bits.
  A complex a_bar costs 2 * bits in both.

  Args:
    a_bar: complex array, any shape (e.g. (P,) or (H, N/2)); computed in complex64.
    bits: bit width (traced scalar).
    method: "polar" or "cartesian" (a static string).
    axis: None for per-tensor grids, or the channel axis for per-channel grids.

  Returns:
    complex64 array of a_bar's shape.
  """
  _check_a_bar_method(method)
  a_bar = jnp.asarray(a_bar).astype(jnp.complex64)
  a_q = _A_BAR_METHODS[method](a_bar, bits, axis)
  _, off, _ = _grid(bits)
  return jnp.where(off, a_bar, a_q)


def complex_absmax_scale(z, bits, axis=None):
  """Absmax step shared by Re and Im of complex z (per tensor, or per channel `axis`)."""
  return jnp.maximum(absmax_scale(z.real, bits, axis), absmax_scale(z.imag, bits, axis))


def ssm_axis(tq):
  """Scale axis of an (H, n) SSM tensor: None per tensor, 0 (channel h) otherwise."""
  return None if tq.mode is ScaleMode.TENSOR else 0


def quantize_ssm(p, spec):
  """Fake-quantizes the discrete S4D parameters of one layer as `spec` says.

  Args:
    p: dict with complex a_bar, b_bar, c (H, n), real d (H,) and optionally complex
      c_reverse (H, n), as produced by `layers.S4D.discrete_params`.
    spec: a QuantSpec; its a_bar, b_bar, c, d groups are used.

  Returns:
    a dict of the same keys and shapes. a_bar goes through `quantize_a_bar` (stable by
    construction); b_bar, c and c_reverse share one absmax step between Re and Im, per
    tensor (TENSOR) or per channel h (CHANNEL, and LSQ, which has no learned step for
    these complex tensors); d uses a per-tensor absmax step.
  """

  def complex_q(z, tq):
    return fake_quant_complex(z, tq.bits, complex_absmax_scale(z, tq.bits, ssm_axis(tq)))

  axis = ssm_axis

  out = {
    "a_bar": quantize_a_bar(p["a_bar"], spec.a_bar.bits, spec.a_bar_param, axis(spec.a_bar)),
    "b_bar": complex_q(p["b_bar"], spec.b_bar),
    "c": complex_q(p["c"], spec.c),
    "d": fake_quant(p["d"], spec.d.bits, absmax_scale(p["d"], spec.d.bits)),
  }
  if "c_reverse" in p:
    out["c_reverse"] = complex_q(p["c_reverse"], spec.c)
  return out


# ----------------------------------------------------------------------------------------
# The QS4D scheme (`SCHEME_GROUPS`): the quantizer of Siegel et al. (arXiv 2507.06079) on
# the parameters they quantize, beside this project's own scheme (the functions above).


def qs4d_states(bits):
  """The QS4D authors' number of quantization states q = 2^bits, for a traced width.

  bits = 1 gives q = 2, ternary; bits = 4 gives q = 16, their "4 bit" (17 levels, -8..8).
  Rounded, as in `_grid`: XLA's exp2 can miss an integer by ulps.
  """
  return jnp.round(jnp.exp2(jnp.asarray(bits, jnp.float32)))


def qs4d_codes(x, states):
  """Integer-valued float codes and step of `qs4d_quant` on the whole tensor x.

  step = max|x| / (q/2), the inverse of the authors' scale s = (q/2) / max|x|, and
  codes = clip(round(x / step), -q/2, q/2): q + 1 levels, the largest magnitude on the top
  one. An all-zero x has step 0 and codes 0 (no NaN).

  Args:
    x: real array, any shape (one tensor: the statistic is over all of it).
    states: q, the number of quantization states (traced; an even number, 2^bits here).

  Returns:
    (codes of x's shape, step of shape ()), both float32 for float32 x.
  """
  half = 0.5 * jnp.asarray(states, jnp.float32)
  step = jnp.max(jnp.abs(x)) / half
  safe_step = jnp.where(step == 0, jnp.ones_like(step), step)
  return jnp.clip(jnp.round(x / safe_step), -half, half), step


@jax.custom_vjp
def qs4d_quant(x, states):
  """The QS4D authors' fake quantizer: per-tensor absmax, q + 1 levels, straight-through.

  Forward: step * clip(round(x / step), -q/2, q/2) with step = max|x| / (q/2) over the whole
  tensor (`qs4d_codes`); q = 2 is ternary {-1, 0, 1} * max|x|. Unlike `fake_quant` there is
  no "off" value of q: callers pick the float path with `is_off` (`qs4d_fake_quant`).

  Faked gradient, and why: round() has zero derivative almost everywhere, so the backward
  pass is the identity, d/dx = 1 everywhere, as the authors trained (BitNet's STE). There
  is no clip mask: with an absmax step nothing lies outside the grid. The step is a
  statistic of x and gets no gradient; d/dstates = 0 (widths are swept, not learned).

  Args:
    x: real array, any shape.
    states: q, the number of quantization states, a traced or concrete scalar.

  Returns:
    array of x's shape and dtype.
  """
  codes, step = qs4d_codes(x, states)
  return (codes * step).astype(x.dtype)


def qs4d_quant_fwd(x, states):
  return qs4d_quant(x, states), None


def qs4d_quant_bwd(_, g):
  return g, None


qs4d_quant.defvjp(qs4d_quant_fwd, qs4d_quant_bwd)


def qs4d_fake_quant(x, bits):
  """`qs4d_quant` with q = 2^bits states, or x itself (bit for bit, values and gradients)
  where `is_off(bits)`. x: real array, any shape; bits: traced width."""
  return jnp.where(is_off(bits), x, qs4d_quant(x, qs4d_states(bits)))


def qs4d_fake_quant_complex(z, bits):
  """`qs4d_fake_quant` of a complex array as real pairs: one step over Re and Im together,
  as the authors quantize C (its (..., 2) real view). z: complex array, any shape."""
  pair = qs4d_fake_quant(jnp.stack([z.real, z.imag], axis=-1), bits)
  return jax.lax.complex(pair[..., 0], pair[..., 1])


def qs4d_continuous(log_neg_re_a, im_a, log_step, a_bits, log_dt_bits):
  """The continuous-time A and step of one S4D layer, quantized as the QS4D authors do.

  Re A = -exp(log_neg_re_a) and Im A each get their own `qs4d_quant` grid, one step over
  the whole (H, n) layer, with a_bits; log_step gets one with log_dt_bits and is then
  exponentiated. Discretise the result as usual (`ssm.discretize`); a_bar itself is not
  quantized. A width >= 16 leaves its part float: with both off this is
  (`ssm.decode_a`, exp(log_step)) bit for bit.

  Stability: a quantized real part of 0 would be a mode that never decays, |a_bar| = 1. The
  authors' grid has that level (every |Re A| below half a step rounds to it, and with
  q = 2 that is all but the largest), so here Re A's grid is its negative half without
  zero: codes -q/2 .. -1, i.e. Re A_q <= -step (q = 2 puts every real part at -max|Re A|).
  Re A < 0 holds for every parameter value, so this only moves the modes that would
  otherwise stop decaying. And because float32's exp(x) rounds to 1 for |x| < 6e-8, the
  decay step * |Re A_q| is also floored at 2^-20 (the floor of `quantize_a_bar`'s polar
  grid), so that |a_bar| = exp(step Re A_q) <= 1 - 9.5e-7 under ZOH, 16 float32 ulps inside
  the unit circle, for every reachable quantized A and every step > 0 (a step that
  underflows to 0, log_step < -104, has a_bar = 1 in the float model too). The floor only
  touches modes with a memory of over 10^6 steps. The guarantee is ZOH's (the authors'
  discretisation and this project's default): under bilinear, a floored mode with
  |step Im A| above about 10 can still round to |a_bar| = 1 in float32.

  STE: identity to Re A, Im A and log_step, the zero exclusion and the floor included.

  Args:
    log_neg_re_a, im_a: (H, n) stored parameters (`ssm.decode_a`).
    log_step: (H,) stored log step sizes.
    a_bits, log_dt_bits: traced widths of A (both parts) and of log_step.

  Returns:
    (a complex64 (H, n), step (H,)).
  """
  step = jnp.exp(qs4d_fake_quant(log_step, log_dt_bits))
  re_a = -jnp.exp(log_neg_re_a)
  codes, re_step = qs4d_codes(re_a, qs4d_states(a_bits))
  # `tiny` keeps a step that underflowed to 0 from making the floor -inf (0 * inf = NaN).
  floor = -_DECAY_STEP_MIN / jnp.maximum(step, jnp.finfo(jnp.float32).tiny)[..., None]
  re_q = jnp.minimum(jnp.minimum(codes, -1.0) * re_step, floor)
  re_a = jnp.where(is_off(a_bits), re_a, straight_through(re_a, re_q))
  return re_a + 1j * qs4d_fake_quant(im_a, a_bits), step


# ----------------------------------------------------------------------------------------
# Integer export.


def to_integer_codes(x, bits, scale):
  """The integer codes behind `fake_quant`: clip(round(x / scale), -q_max, q_max).

  Binary codes are +-1 (0 -> +1). Valid for 1 <= bits <= 15 (the codes fit int16, stored
  as int32); for bits >= 16 (off) there are no codes and the result is meaningless.
  `from_integer_codes(to_integer_codes(x, b, s), s) == fake_quant(x, b, s)` exactly for
  float32 x and scale.

  Args:
    x: real array, any shape.
    bits: bit width.
    scale: step size, broadcastable against x.

  Returns:
    int32 array of the broadcast shape.
  """
  codes, _ = _codes(x, bits, scale)
  return codes.astype(jnp.int32)


def from_integer_codes(codes, scale):
  """Dequantizes integer codes: codes * scale (float32, the broadcast shape)."""
  scale = jnp.asarray(scale)
  return codes.astype(jnp.result_type(scale.dtype, jnp.float32)) * scale


# ----------------------------------------------------------------------------------------
# Bit-width checks and specs.


def validate_bits(bits):
  """Checks concrete bit widths from a config; raises ConfigError when invalid.

  Valid: whole numbers 1..64 (1 binary, 2 ternary, >= 16 off). Called by config code on
  Python / numpy values, never inside traced functions.

  Args:
    bits: Python number, numpy array or concrete jax array (every element is checked).

  Returns:
    the bits as a float32 numpy array (0-d for a scalar).
  """
  invalid = errors.ConfigError(
    f"bits must be whole numbers from 1 to {MAX_BITS} (1 = binary, 2 = ternary, "
    f">= {int(OFF_THRESHOLD)} = quantization off); got {bits!r}"
  )
  if isinstance(bits, bool | str | bytes):
    raise invalid
  try:
    arr = np.asarray(bits)
  except (TypeError, ValueError) as e:
    raise invalid from e
  if arr.dtype == bool or not (
    np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
  ):
    raise invalid
  arr = arr.astype(np.float64)
  bad = ~np.isfinite(arr) | (arr < 1) | (arr > MAX_BITS)
  bad |= np.where(np.isfinite(arr), arr != np.round(arr), True)
  if np.any(bad):
    raise invalid
  return arr.astype(np.float32)


def q_max(bits):
  """Largest integer code 2^(bits-1) - 1 for a (traced) bit width; 1 for binary."""
  binary, _, qm = _grid(bits)
  return jnp.where(binary, 1.0, qm)


def is_off(bits):
  """Traced predicate: True where bits >= 16 (quantization off). The one place that decides
  what "off" is; the helpers below and every caller go through it."""
  return jnp.asarray(bits) >= OFF_THRESHOLD


def storage_bits(bits):
  """Traced storage width of a tensor quantized to `bits`: bits, or OFF_BITS (a float32
  value's 32) where quantization is off."""
  return jnp.where(is_off(bits), OFF_BITS, bits)


def describe_bits(bits) -> int | str:
  """A concrete bit width for reports and logs: the whole number of bits, or "off"."""
  return "off" if bool(is_off(bits)) else int(bits)


def bits_or_off(bits) -> np.ndarray:
  """A concrete width where None or 0 means "none" (an absent converter): OFF_BITS then,
  else `validate_bits(bits)` (ConfigError when invalid)."""
  if bits is None or (np.ndim(bits) == 0 and bits == 0):
    return np.asarray(OFF_BITS, np.float32)
  return validate_bits(bits)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TensorQuant:
  """How one tensor group is quantized.

  Attributes:
    bits: float32 array leaf (traced, so specs can be stacked and vmapped); >= 16 = off.
    mode: ScaleMode, static structure (how the scale is obtained).
  """

  bits: jax.Array
  mode: ScaleMode = dataclasses.field(default=ScaleMode.TENSOR, metadata=dict(static=True))

  @classmethod
  def make(cls, bits, mode=ScaleMode.TENSOR):
    """Builds a spec from a concrete bit width, validating it (ConfigError if invalid)."""
    return cls(bits=jnp.asarray(validate_bits(bits), jnp.float32), mode=ScaleMode(mode))

  @classmethod
  def off(cls):
    """The float path (bits = 32)."""
    return cls(bits=jnp.asarray(OFF_BITS, jnp.float32), mode=ScaleMode.TENSOR)


# Tensor groups with their own bit width (docs/design.md §1), in QuantSpec field order.
GROUPS = (
  "encoder", "a_bar", "b_bar", "c", "d", "glu", "decoder", "bias", "activations", "state", "a",
  "log_dt",
)  # fmt: skip
# Quantization schemes, and the groups each one quantizes; every other group is off under
# it (`QuantSpec.uniform`, `QuantSpec.qs4d`). "ssm_aimc": this project's grids
# (`fake_quant`) on the discretised tensors, a_bar through `quantize_a_bar`. "qs4d": the
# QS4D authors' absmax quantizer (`qs4d_quant`) on the continuous-time A, log_step and C
# before discretisation (`qs4d_continuous`); b_bar, d, biases and norms stay float, as
# theirs do.
SCHEME_GROUPS = {
  "ssm_aimc": (
    "encoder", "a_bar", "b_bar", "c", "d", "glu", "decoder", "bias", "activations", "state"
  ),
  "qs4d": ("encoder", "a", "log_dt", "c", "glu", "decoder", "activations", "state"),
}  # fmt: skip
SCHEMES = tuple(SCHEME_GROUPS)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QuantSpec:
  """Quantization of a whole model: one TensorQuant per tensor group.

  Bit widths are leaves and everything else static, so specs stacked along a leading axis
  (`jax.tree.map(lambda *b: jnp.stack(b), *specs)`) can be `jax.vmap`-ed.

  Attributes:
    encoder: input encoder weights.
    a_bar: the recurrent coefficient (quantized with `quantize_a_bar`; the mode's CHANNEL
      means per-channel grids, anything else per tensor).
    b_bar: the discretised input matrix.
    c: the output matrix C.
    d: the skip term D.
    glu: the GLU dense layer.
    decoder: the output decoder weights.
    bias: biases of the dense layers and the LayerNorm scale and offset (the digital
      periphery's own constants; few, so cheap to keep at activation precision).
    activations: activations between blocks.
    state: the recurrent state (sequential / hardware path only; the parallel scan has
      no per-step rounding point).
    a: the continuous-time A, Re and Im on grids of their own (qs4d scheme only).
    log_dt: the log step size, quantized before it is exponentiated (qs4d scheme only).
    a_bar_param: static name of the stable a_bar parameterisation ("polar", "cartesian").
    scheme: static name of the scheme (`SCHEME_GROUPS`): which quantizers the layers apply,
      and where; the groups it does not quantize are off.
  """

  encoder: TensorQuant
  a_bar: TensorQuant
  b_bar: TensorQuant
  c: TensorQuant
  d: TensorQuant
  glu: TensorQuant
  decoder: TensorQuant
  bias: TensorQuant
  activations: TensorQuant
  state: TensorQuant
  a: TensorQuant
  log_dt: TensorQuant
  a_bar_param: str = dataclasses.field(default="polar", metadata=dict(static=True))
  scheme: str = dataclasses.field(default="ssm_aimc", metadata=dict(static=True))

  @classmethod
  def off(cls, a_bar_param="polar", scheme="ssm_aimc"):
    """Every group off: the float path exactly (under either scheme)."""
    _check_a_bar_method(a_bar_param)
    if scheme not in SCHEMES:
      raise errors.ConfigError(f"unknown quantization scheme {scheme!r}; valid: {SCHEMES}")
    return cls(**{g: TensorQuant.off() for g in GROUPS}, a_bar_param=a_bar_param, scheme=scheme)

  @classmethod
  def uniform(
    cls,
    weight_bits,
    act_bits,
    a_bar_bits=8,
    mode=ScaleMode.TENSOR,
    *,
    state_bits=None,
    a_bar_param="polar",
  ):
    """One width for all weights, one for activations, a_bar at `a_bar_bits`.

    Weights (encoder, b_bar, c, d, glu, decoder) use `mode`. a_bar uses per-channel grids
    when mode is CHANNEL, otherwise per tensor (it has no learned step). Activations use
    LSQ when mode is LSQ, otherwise a calibrated per-tensor scale (TENSOR). Biases and
    norm parameters, and the state, default to act_bits with a per-tensor scale. All
    widths are validated (ConfigError).
    """
    mode = ScaleMode(mode)
    _check_a_bar_method(a_bar_param)
    weight = TensorQuant.make(weight_bits, mode)
    a_bar_mode = ScaleMode.CHANNEL if mode is ScaleMode.CHANNEL else ScaleMode.TENSOR
    act_mode = ScaleMode.LSQ if mode is ScaleMode.LSQ else ScaleMode.TENSOR
    state_bits = act_bits if state_bits is None else state_bits
    return cls(
      encoder=weight,
      a_bar=TensorQuant.make(a_bar_bits, a_bar_mode),
      b_bar=weight,
      c=weight,
      d=weight,
      glu=weight,
      decoder=weight,
      bias=TensorQuant.make(act_bits, ScaleMode.TENSOR),
      activations=TensorQuant.make(act_bits, act_mode),
      state=TensorQuant.make(state_bits, ScaleMode.TENSOR),
      a=TensorQuant.off(),
      log_dt=TensorQuant.off(),
      a_bar_param=a_bar_param,
    )

  @classmethod
  def qs4d(cls, weight_bits, act_bits, a_bits=8, *, state_bits=None):
    """The QS4D authors' scheme: every width b means q = 2^b states of `qs4d_quant`.

    A (Re and Im) at a_bits; log_step, C, the GLU dense layer, encoder and decoder at
    weight_bits; activations and the state (default) at act_bits; every scale per tensor.
    The groups the scheme does not quantize (a_bar, b_bar, d, bias) are off. All widths
    are validated (ConfigError).
    """
    state_bits = act_bits if state_bits is None else state_bits
    weights = ("encoder", "log_dt", "c", "glu", "decoder")
    widths = {**dict.fromkeys(weights, weight_bits), "a": a_bits, "activations": act_bits}
    widths["state"] = state_bits
    return cls(
      **{g: TensorQuant.make(widths[g]) if g in widths else TensorQuant.off() for g in GROUPS},
      scheme="qs4d",
    )
