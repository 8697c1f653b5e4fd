"""The analog spec and the two analog operations the layers inject: a noisy matrix product
(`analog_matmul`) and noisy recurrence coefficients (`analog_ssm`).

A weight matrix is stored on a differential pair of devices per weight:
  G+ = g_min + s relu(w),  G- = g_min + s relu(-w),  s = f (g_max - g_min) / max|w|,
with max|w| taken per tensor or per output column (`mapping`) and f = `g_max_fraction`
(1: the largest weight at g_max; below 1 a margin under g_max). The devices then go through
`ssm_aimc.hardware.noise` (levels, programming, stuck-at, drift, compensation) and the
effective weight is read back as w + ((G+ - G-)_device - (G+ - G-)_ideal) / s. Levels come
from the weight bits by construction: a weight quantized per output channel to b bits
(absmax step, `quant`) and mapped per column lands exactly on q_max + 1 = 2^(b-1)
conductances per device; `levels` adds the device's own grid on top (e.g. RRAM's 2048).
Writing the effective weight as a perturbation of w makes the ideal device (no term active)
return w itself, bit for bit, so the analog path of the ideal device with the periphery off
is the digital model exactly.

`analog_matmul` adds the periphery of one crossbar tile around the product:
  DAC     inputs quantized to `dac_bits` over the layer's input range [-r, r] (clipped);
  read    every device is read with fresh noise at every product; for a product x @ W this
          is exactly Gaussian output noise of variance sum_i x_i^2 sigma_ij^2, which is
          what is sampled (one extra product instead of a noisy copy of W per example);
          `read_noise_draw="forward"` instead draws one noisy read of W per forward pass
          (a weight-sized draw: cheaper, but shared by the batch and the time steps);
  output  additive Gaussian noise, `output_noise` x the full-scale output r max|w|;
  ADC     outputs quantized to `adc_bits` over [-bound, bound] x r max|w| (clipped).
Roundings use the straight-through estimator of `ssm_aimc.quant`.

The recurrence coefficients (a_bar, b_bar, c, d of a diagonal SSM) are mapped as real
(Re, Im) pairs, per tensor or per channel. Read noise on them is drawn once per forward
pass (per batch), not per time step: the convolution and scan paths need time-invariant
coefficients; the step-mode chip simulator is where per-step reads belong. `recurrence`
says how a_bar is held: "residual" stores a_bar - 1 (the identity part of the update is an
exact skip path, so noise scales with |a_bar - 1|, which is small for slow modes), "direct"
stores a_bar itself (noise relative to |a_bar| ~ 1, compounding over every step), "digital"
keeps a_bar exact.

All numbers in the spec are traced leaves (one compiled program for every noise scale,
vmappable); the device, mapping and which terms exist are static structure.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from ssm_aimc import errors, quant
from ssm_aimc.hardware import devices as devices_lib
from ssm_aimc.hardware import noise

MAPPINGS = ("tensor", "column")
RECURRENCES = ("residual", "direct", "digital")
# When read noise is drawn: at every product (exact, one extra product and an output-sized
# draw) or once per forward pass on the weights (cheap: weight-sized draw, shared by the
# batch and the time steps). BENCHMARKS.md "Analog simulation cost" has the price of each.
READ_NOISE_DRAWS = ("product", "forward")
# What the relative noise of `a_noise` (the QS4D authors' weight noise) perturbs: the
# continuous-time A of every S4D layer (theirs), a_bar (this project's parameterisation),
# the read-outs C, or every weight (A, C and the dense kernels).
A_NOISE_TARGETS = ("a", "a_bar", "c", "weights")
# The fold_in of a read key that draws the relative noise (`AnalogSpec.a_noise`): a stream
# of its own, so the device's draws are the same with and without it.
_RELATIVE_STREAM = 1000
# Floor of a variance under a square root: keeps the gradient finite for an all-zero input.
_VAR_FLOOR = 1e-30


def _static(default=None):
  return dataclasses.field(default=default, metadata=dict(static=True))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class AnalogSpec:
  """How the analog substrate perturbs a model. Build it with `AnalogSpec.make`.

  Traced leaves (float32 scalars):
    prog_noise_scale: multiplies the device's programming-noise std (1 = the preset).
    read_noise_scale: multiplies the device's read-noise std.
    t_inference: seconds since programming at which the model is used (drift, read noise).
    stuck_min, stuck_max: fractions of devices stuck at g_min / g_max.
    levels: conductance levels per device, 0 for the device's own (`level_count`).
    dac_bits, adc_bits: periphery widths (>= 16: off, as in `quant.fake_quant`).
    adc_bound: ADC range in units of the full-scale output r max|w|.
    output_noise: additive output noise std in the same units.
    a_noise: relative weight noise (the QS4D authors' protocol): std = a_noise x the range
      (max - min) of the perturbed tensor over the layer, real and imaginary parts apart,
      a fresh draw at every forward pass (`noise.relative_noise`). Independent of the
      device: on the ideal device it is the only perturbation.

  Static structure:
    device: the device preset.
    mapping: "tensor" or "column": where g_max maps (largest |w| per tensor or column).
    recurrence: "residual", "direct" or "digital" (see the module docstring).
    read_noise_draw: "product" (fresh read noise at every product, exact) or "forward"
      (one draw on the weights per forward pass; what noise-aware training uses for speed).
    drift: drift is asked for; it happens where the device drifts (`has_drift`).
    quantize_levels: conductances are rounded onto a grid of levels where there is one:
      `levels` when `explicit_levels`, else the device's own (`has_levels`).
    explicit_levels: `levels` holds a level count of its own (not the device's).
    drift_compensation, stuck, dac, adc, output: which terms exist.
    a_noise_on: what `a_noise` perturbs (A_NOISE_TARGETS); relative: whether it exists.
    g_max_fraction: the largest |w| maps to g_min + g_max_fraction x (g_max - g_min), in
      (0, 1] (1: at g_max). A margin below g_max changes only the conductances (hence the
      device noise relative to the weights); the converters' ranges follow the weights.
      Static (a design choice of the mapping, not a noise level): at 1 the program is the
      one without the knob, bit for bit.
  What depends on the device is derived from it when used (`has_drift`, `has_levels`,
  `level_count`), so `dataclasses.replace(spec, device=...)` gives that device's spec.
  """

  prog_noise_scale: jax.Array
  read_noise_scale: jax.Array
  t_inference: jax.Array
  stuck_min: jax.Array
  stuck_max: jax.Array
  levels: jax.Array
  dac_bits: jax.Array
  adc_bits: jax.Array
  adc_bound: jax.Array
  output_noise: jax.Array
  a_noise: jax.Array
  device: devices_lib.Device = _static(devices_lib.IDEAL)
  mapping: str = _static("column")
  recurrence: str = _static("digital")
  read_noise_draw: str = _static("product")
  drift: bool = _static(True)
  drift_compensation: bool = _static(True)
  stuck: bool = _static(False)
  quantize_levels: bool = _static(True)
  explicit_levels: bool = _static(False)
  dac: bool = _static(False)
  adc: bool = _static(False)
  output: bool = _static(False)
  a_noise_on: str = _static("a")
  relative: bool = _static(False)
  g_max_fraction: float = _static(1.0)

  @classmethod
  def make(
    cls,
    device: devices_lib.Device = devices_lib.PCM_LIKE,
    *,
    prog_noise_scale: float = 1.0,
    read_noise_scale: float = 1.0,
    t_inference: float = 3600.0,
    drift: bool = True,
    drift_compensation: bool = True,
    stuck_min: float = 0.0,
    stuck_max: float = 0.0,
    levels: int | None = None,
    dac_bits: int | None = None,
    adc_bits: int | None = None,
    adc_bound: float = 12.0,
    output_noise: float = 0.0,
    mapping: str = "column",
    recurrence: str = "digital",
    read_noise_draw: str = "product",
    a_noise: float = 0.0,
    a_noise_on: str = "a",
    g_max_fraction: float = 1.0,
  ) -> AnalogSpec:
    """Validates concrete settings and builds a spec (ConfigError on bad input).

    `levels=None` (or 0) takes the device's own levels (None there: continuous); `dac_bits`
    or `adc_bits` None (or 0) leaves that converter out.
    """
    for name, value in (
      ("prog_noise_scale", prog_noise_scale),
      ("read_noise_scale", read_noise_scale),
      ("output_noise", output_noise),
      ("a_noise", a_noise),
    ):
      if not (math.isfinite(value) and value >= 0):
        raise errors.ConfigError(f"{name} must be a finite number >= 0, got {value}.")
    if not (math.isfinite(t_inference) and t_inference >= 0):
      raise errors.ConfigError(f"t_inference must be >= 0 seconds, got {t_inference}.")
    fixed = devices_lib.fixed_time(device)
    if fixed is not None and t_inference != fixed:
      raise errors.ConfigError(
        f"Device {device.name!r} holds its statistics at {fixed:g} s after programming "
        f"(they do not move with time), but t_inference is {t_inference:g} s: set "
        f"hardware.t_inference={fixed:g}, or pick a preset of the time you want "
        f"(devices.DEVICES)."
      )
    if not (0 <= stuck_min <= 1 and 0 <= stuck_max <= 1 and stuck_min + stuck_max <= 1):
      raise errors.ConfigError(
        "stuck_min and stuck_max (stuck-at fractions) must be in [0, 1] with a sum <= 1, "
        f"got {stuck_min}, {stuck_max}."
      )
    if not adc_bound > 0:
      raise errors.ConfigError(f"adc_bound must be > 0, got {adc_bound}.")
    if not 0 < g_max_fraction <= 1:
      raise errors.ConfigError(
        f"g_max_fraction (where the largest weight maps, as a fraction of g_max) must be in "
        f"(0, 1], got {g_max_fraction}."
      )
    if mapping not in MAPPINGS:
      raise errors.ConfigError(f"Unknown mapping {mapping!r}; valid: {MAPPINGS}.")
    if recurrence not in RECURRENCES:
      raise errors.ConfigError(f"Unknown recurrence {recurrence!r}; valid: {RECURRENCES}.")
    if read_noise_draw not in READ_NOISE_DRAWS:
      raise errors.ConfigError(
        f"Unknown read_noise_draw {read_noise_draw!r}; valid: {READ_NOISE_DRAWS}."
      )
    if a_noise_on not in A_NOISE_TARGETS:
      raise errors.ConfigError(f"Unknown a_noise_on {a_noise_on!r}; valid: {A_NOISE_TARGETS}.")
    explicit_levels = levels not in (None, 0)
    if explicit_levels and (int(levels) != levels or levels < 2):
      raise errors.ConfigError(f"levels must be an integer >= 2, got {levels}.")
    f32 = lambda v: jnp.asarray(v, jnp.float32)
    return cls(
      prog_noise_scale=f32(prog_noise_scale),
      read_noise_scale=f32(read_noise_scale),
      t_inference=f32(t_inference),
      stuck_min=f32(stuck_min),
      stuck_max=f32(stuck_max),
      levels=f32(levels if explicit_levels else 0),
      dac_bits=f32(quant.bits_or_off(dac_bits)),
      adc_bits=f32(quant.bits_or_off(adc_bits)),
      adc_bound=f32(adc_bound),
      output_noise=f32(output_noise),
      a_noise=f32(a_noise),
      device=device,
      mapping=mapping,
      recurrence=recurrence,
      read_noise_draw=read_noise_draw,
      stuck=bool(stuck_min > 0 or stuck_max > 0),
      drift=bool(drift),
      drift_compensation=bool(drift_compensation),
      quantize_levels=True,
      explicit_levels=explicit_levels,
      dac=dac_bits not in (None, 0),
      adc=adc_bits not in (None, 0),
      output=output_noise > 0,
      a_noise_on=a_noise_on,
      relative=a_noise > 0,
      g_max_fraction=float(g_max_fraction),
    )

  @property
  def has_drift(self) -> bool:
    """Drift is asked for and the device drifts (static)."""
    return self.drift and self.device.has_drift

  @property
  def has_levels(self) -> bool:
    """Conductances are rounded onto a grid of levels (static): `levels` when explicit,
    else the device's own when it has one."""
    return self.quantize_levels and (self.explicit_levels or self.device.levels is not None)

  def level_count(self) -> jax.Array:
    """The (traced) number of levels of that grid; 0 where there is none."""
    # A select on the leaf, not the device's Python number, keeps the count a traced value
    # of one compiled program (a constant would be folded into the level step).
    return jnp.where(self.levels > 0, self.levels, jnp.float32(self.device.levels or 0))

  def scaled(self, factor) -> AnalogSpec:
    """The same spec with programming, read and relative noise multiplied by `factor`
    (traced ok): the noise ramp of noise-aware training."""
    return dataclasses.replace(
      self,
      prog_noise_scale=self.prog_noise_scale * factor,
      read_noise_scale=self.read_noise_scale * factor,
      a_noise=self.a_noise * factor,
    )

  def with_a_noise(self, sigma) -> AnalogSpec:
    """The same spec with relative noise `sigma` (traced ok; the term exists whatever its
    value, so one compiled program serves a sweep that starts at 0)."""
    return dataclasses.replace(self, a_noise=jnp.asarray(sigma, jnp.float32), relative=True)

  def perturbs(self, target: str) -> bool:
    """Relative noise lands on `target` ("a", "a_bar", "c" or "dense") (static)."""
    if not self.relative:
      return False
    on = self.a_noise_on
    return on == target or (on == "weights" and target in ("a", "c", "dense"))

  def converters_only(self) -> AnalogSpec:
    """The same periphery (DAC, ADC, output noise, mapping) on the ideal device: no device
    noise, drift, stuck-at faults or conductance levels."""
    return dataclasses.replace(
      self, device=devices_lib.IDEAL, drift=False, stuck=False, quantize_levels=False
    )

  def summary(self) -> dict:
    """JSON-ready description (concrete specs only): the terms in effect on this device."""
    out = {"device": devices_lib.describe(self.device)}
    effective = {
      "levels": float(self.level_count()) if self.has_levels else 0.0,
      "drift": self.has_drift,
      "quantize_levels": self.has_levels,
    }
    for f in dataclasses.fields(self):
      if f.name in effective:
        out[f.name] = effective[f.name]
      elif f.name not in ("device", "explicit_levels"):
        value = getattr(self, f.name)
        out[f.name] = value if f.metadata.get("static") else float(value)
    return out


@dataclasses.dataclass(frozen=True)
class Programmed:
  """A weight tensor after programming: w_eff = w + delta and the read std per weight.

  Attributes:
    delta: perturbation of the weights (weight units), frozen at programming time.
    read_std: std of one read of the weight (weight units) at read_noise_scale 1; None
      when the device has no read noise.
    w_max: the weight that maps to g_max (scalar or per column, keepdims shape).
  """

  delta: jax.Array
  read_std: jax.Array | None
  w_max: jax.Array


def program(key: jax.Array, w: jax.Array, spec: AnalogSpec, reduce_axes) -> Programmed:
  """Maps real weights onto differential conductance pairs and programs them.

  Args:
    key: PRNG key of this tensor's programming (the same key gives the same chip).
    w: real weights, any shape.
    spec: the analog spec.
    reduce_axes: axes over which max|w| is taken (all axes for per-tensor mapping).

  Returns:
    `Programmed` (delta and read_std have w's shape).
  """
  device = spec.device
  w_max = jax.lax.stop_gradient(jnp.max(jnp.abs(w), axis=reduce_axes, keepdims=True))
  w_max = jnp.where(w_max > 0, w_max, 1.0)
  span = device.g_max_us - device.g_min_us
  if spec.g_max_fraction != 1.0:  # Static: the default's program is the one without it.
    span = spec.g_max_fraction * span
  s = span / w_max
  # The differential pair as one stacked array (2, *w.shape): one random draw per term.
  ideal = device.g_min_us + s * jax.nn.relu(jnp.stack([w, -w]))
  k_prog, k_stuck, k_drift = jax.random.split(key, 3)
  target = ideal
  if spec.has_levels:
    target = noise.quantize_levels(ideal, spec.level_count(), device)
  g = noise.program_conductances(k_prog, target, device, spec.prog_noise_scale)
  if spec.stuck:
    g = noise.stuck_at(k_stuck, g, spec.stuck_min, spec.stuck_max, device)
  if spec.has_drift:
    g_programmed = g
    g = noise.drift(g, noise.drift_exponents(k_drift, target, device), spec.t_inference, device)
    if spec.drift_compensation:
      g = noise.drift_compensation(g_programmed, g) * g
  delta = ((g[0] - g[1]) - (ideal[0] - ideal[1])) / s
  read_std = None
  if device.has_read_noise:
    # Unit read noise (scale 1); callers multiply by read_noise_scale after the square root,
    # so a scale of 0 adds exactly nothing.
    std = noise.read_noise_std(target, g, spec.t_inference, device)
    read_std = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(std), axis=0), _VAR_FLOOR)) / s
  return Programmed(delta=delta, read_std=read_std, w_max=w_max)


def _matmul(x: jax.Array, w: jax.Array) -> jax.Array:
  """(..., in) @ (in, out) as one 2-D product (see layers.matmul for why)."""
  lead = x.shape[:-1]
  return (x.reshape(-1, x.shape[-1]) @ w).reshape(*lead, w.shape[-1])


def read_product(
  x: jax.Array,
  w: jax.Array,
  read_std: jax.Array | None,
  keys: tuple[jax.Array, jax.Array],
  spec: AnalogSpec,
  full_scale: jax.Array,
  adc_range: jax.Array,
  product: Callable[[jax.Array, jax.Array], jax.Array] = _matmul,
  normal: Callable[..., jax.Array] = jax.random.normal,
) -> jax.Array:
  """One analog read of programmed weights: product(x, w), read noise, output noise, ADC.

  Read noise: every device is read with fresh noise at this product, which for y = x @ W is
  exactly Gaussian output noise of variance sum_i x_i^2 sigma_ij^2 (one extra product
  instead of a noisy copy of W per example).

  Args:
    x: the (DAC-converted) inputs; w: the programmed weights (ideal + perturbation).
    read_std: std of one read of each weight at read_noise_scale 1 (w's shape), or None
      for no per-product read noise.
    keys: (key of the read noise, key of the output noise).
    spec: the analog spec (read_noise_scale, output noise and ADC settings).
    full_scale: the full-scale output, broadcastable against the output: the output
      noise std is `spec.output_noise` times it.
    adc_range: the ADC digitises [-adc_range, adc_range] (broadcastable, clipped).
    product: the matrix product (x, w) -> y; default (..., in) @ (in, out).
    normal: the Gaussian source, called as normal(key, shape, dtype).

  Returns:
    y, the product's shape.
  """
  k_read, k_out = keys
  y = product(x, w)
  if read_std is not None:
    std = jnp.sqrt(jnp.maximum(product(jnp.square(x), jnp.square(read_std)), _VAR_FLOOR))
    y = y + spec.read_noise_scale * std * normal(k_read, y.shape, y.dtype)
  if spec.output:
    y = y + spec.output_noise * full_scale * normal(k_out, y.shape, y.dtype)
  if spec.adc:
    y = quant.fake_quant(y, spec.adc_bits, adc_range / quant.q_max(spec.adc_bits))
  return y


def analog_matmul(
  key_program: jax.Array,
  key_read: jax.Array,
  x: jax.Array,
  w: jax.Array,
  x_range: jax.Array,
  spec: AnalogSpec,
) -> jax.Array:
  """x (..., in) @ w (in, out) on a simulated crossbar tile with its DAC and ADC.

  Args:
    key_program: key of the programming (frozen chip: reuse it across batches).
    key_read: key of this product's reads (fresh per forward pass).
    x: inputs; x_range: their DAC range r (scalar, e.g. the layer's calibrated input range).
    w: weights (in, out).
    spec: the analog spec.

  Returns:
    (..., out).
  """
  x_range = jax.lax.stop_gradient(jnp.abs(x_range))
  if spec.perturbs("dense"):
    w = noise.relative_noise(jax.random.fold_in(key_read, _RELATIVE_STREAM), w, spec.a_noise)
  if spec.dac:
    x = quant.fake_quant(x, spec.dac_bits, x_range / quant.q_max(spec.dac_bits))
  reduce_axes = 0 if spec.mapping == "column" else (0, 1)
  prog = program(key_program, w, spec, reduce_axes)
  w = w + prog.delta
  k_read, k_out = jax.random.split(key_read)
  read_std = prog.read_std
  if read_std is not None and spec.read_noise_draw == "forward":
    w = w + spec.read_noise_scale * read_std * jax.random.normal(k_read, w.shape, w.dtype)
    read_std = None  # Drawn once on the weights, not again at the product.
  full_scale = x_range * prog.w_max[0]
  adc_range = spec.adc_bound * full_scale
  return read_product(x, w, read_std, (k_read, k_out), spec, full_scale, adc_range)


def _perturb_real(key_program, key_read, w, spec: AnalogSpec, per_channel: bool, offset=0.0):
  """w + programming perturbation + one read of every device, for a real tensor whose
  first axis is the channel; `offset` is subtracted before mapping (residual a_bar)."""
  reduce_axes = tuple(range(1, w.ndim)) if per_channel else tuple(range(w.ndim))
  if per_channel and w.ndim == 1:
    reduce_axes = (0,)  # d (H,): one scalar per channel leaves nothing to normalise by.
  prog = program(key_program, w - offset, spec, reduce_axes)
  w = w + prog.delta
  if prog.read_std is not None:
    w = w + spec.read_noise_scale * prog.read_std * jax.random.normal(key_read, w.shape, w.dtype)
  return w


def perturb_a(key_read, a: jax.Array, spec: AnalogSpec) -> jax.Array:
  """The continuous-time A (complex (H, n)) of one S4D layer with the spec's relative noise
  when it lands on A (`AnalogSpec.perturbs`), else `a` itself; discretise the result."""
  if not spec.perturbs("a"):
    return a
  return noise.relative_noise(jax.random.fold_in(key_read, _RELATIVE_STREAM), a, spec.a_noise)


# The recurrence coefficients that `AnalogSpec.perturbs` names (A itself is perturbed in
# `ssm_aimc.layers.S4D`, before discretisation).
_RELATIVE_TARGET = {"a_bar": "a_bar", "c": "c", "c_reverse": "c"}


def analog_ssm(key_program, key_read, p: dict, spec: AnalogSpec) -> dict:
  """The recurrence coefficients as the analog arrays hold them.

  Args:
    key_program, key_read: keys of the programming and of this forward pass's reads.
    p: {"a_bar", "b_bar", "c" (complex (H, n)), "d" (H,), optional "c_reverse"}.
    spec: the analog spec (`recurrence` decides how a_bar is held; `a_noise` adds relative
      noise to a_bar or C when `a_noise_on` names them, on a digital a_bar too).

  Returns:
    the same dict with perturbed coefficients.
  """
  per_channel = spec.mapping == "column"
  out = dict(p)
  for i, name in enumerate(("a_bar", "b_bar", "c", "c_reverse", "d")):
    if name not in p:
      continue
    kp, kr = jax.random.fold_in(key_program, i), jax.random.fold_in(key_read, i)
    value = p[name]
    if spec.perturbs(_RELATIVE_TARGET.get(name, "")):
      # The relative noise comes first (it models the stored value, whatever holds it).
      value = noise.relative_noise(jax.random.fold_in(kr, _RELATIVE_STREAM), value, spec.a_noise)
      out[name] = value
    if name == "a_bar" and spec.recurrence == "digital":
      continue
    if jnp.iscomplexobj(value):
      pair = jnp.stack([value.real, value.imag], axis=-1)
      offset = (
        jnp.asarray([1.0, 0.0], pair.dtype)
        if (name == "a_bar" and spec.recurrence == "residual")
        else 0.0
      )
      pair = _perturb_real(kp, kr, pair, spec, per_channel, offset)
      out[name] = jax.lax.complex(pair[..., 0], pair[..., 1])
    else:
      out[name] = _perturb_real(kp, kr, value, spec, per_channel)
  return out
