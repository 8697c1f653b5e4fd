"""Thin Flax linen shells over the pure maths: quantizable Dense, LayerNorm and BatchNorm, the
S4D layer and the residual block.

Parameters are stored as real arrays (complex numbers as trailing real pairs) and decoded
once per call into the complex (a_bar, b_bar, c) that `ssm_aimc.ssm` consumes. All layers
take a batch (B, L, H) and vmap the pure single-sequence functions over B; a kernel or
discretisation that does not depend on the input is computed once, not per example.

Quantization is injected, not forked: every layer takes an optional `quant.QuantSpec`
(`spec`) at call time. `spec=None` is the float path with no quantization op at all;
a spec with every group off gives the same numbers bit for bit. Bit widths inside a spec
are traced arrays, so one compiled program serves (and vmaps over) every bit width. The
spec's static `scheme` picks the quantizers and where they act (`quant.SCHEME_GROUPS`):
"ssm_aimc" quantizes the discretised SSM tensors; "qs4d" (the QS4D authors') the
continuous-time A, log_step and C before discretisation, every activation with its own
absmax step, and the state at every step of the sequential path.

A model with BatchNorm (`QBatchNorm`) also has the collection "batch_stats" (its running
averages, updated when training makes it mutable). Two more collections are written only
when the caller makes them mutable (otherwise the ops are traced away):
  "calibration"  per-quantizer statistics used to initialise activation ranges and LSQ
                 steps (`models.calibrate`),
  "deployed"     every tensor as it would be stored on hardware (quantized values, bit
                 width, MACs per step), read by `cost.deployed_report` and the exporter.

Quantizer parameters (`input_range`, `kernel_scale`) exist in every model, also a float
one, so float checkpoints, QAT checkpoints and resumes all share one parameter tree.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssm_aimc import blocks, errors, quant, ssm
from ssm_aimc.hardware import analog as analog_lib

# Initial clip range of an activation quantizer, before calibration (inputs are normalised).
DEFAULT_INPUT_RANGE = 4.0
# Percentile of |activation| that calibration takes as the clip range (robust to outliers).
CALIBRATION_PERCENTILE = 99.99
# The collection of BatchNorm running statistics (flax's name), mutable in training.
BATCH_STATS = "batch_stats"
# The specs injected into every layer's call; None is the float (digital) path.
Quant = quant.QuantSpec | None
Analog = analog_lib.AnalogSpec | None


def _complex_normal_init(std: float = 1.0):
  """Initialiser for a (..., 2) real pair holding a complex normal of total variance std^2."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.normal(key, shape, dtype) * (std / math.sqrt(2.0))

  return init


def _bits(tq: quant.TensorQuant | None) -> jax.Array:
  """Storage width of a group: its bits when quantized, 32 when off or absent."""
  return quant.storage_bits(quant.OFF_BITS if tq is None else tq.bits)


def _deploy(
  module: nn.Module, name: str, values, tq, macs_per_element: float, scales: int = 1, **extra
):
  """Records a stored tensor in the "deployed" collection (no-op unless it is mutable).

  `scales` is how many FP32 step sizes the tensor needs when quantized (0 when float).
  A matrix product's record also says how many outputs per use an ADC converts
  (`conversions`) and at what width (`adc_bits`), for `cost.deployed_report`.
  """
  n_scales = 0.0 if tq is None else jnp.where(quant.is_off(tq.bits), 0.0, float(scales))
  record = {
    "values": values,
    "bits": _bits(tq),
    "macs_per_element": macs_per_element,
    "scales": n_scales,
  }
  record.update(extra)
  module.sow("deployed", name, record)


def _qs4d(spec: Quant) -> bool:
  """Whether `spec` is of the QS4D authors' scheme (`quant.SCHEME_GROUPS`)."""
  return spec is not None and spec.scheme == "qs4d"


def quantize_input(module: nn.Module, x: jax.Array, spec: Quant) -> tuple[jax.Array, jax.Array]:
  """Fake-quantizes the input x (B, ...) of a matrix product (the DAC of an analog tile).

  ssm_aimc scheme: the clip range r is the parameter `input_range` (scale r / q_max),
  learned by LSQ when the spec's mode is LSQ, otherwise held at its calibrated value
  (`models.calibrate`). qs4d scheme: `quant.qs4d_quant`'s absmax step of each example
  (B index) on its own; the authors take one over the whole batch, which makes an
  example's output depend on its batch-mates. Returns (x quantized, r); r is also the range
  of the analog DAC.
  """
  x_range = module.param("input_range", nn.initializers.constant(DEFAULT_INPUT_RANGE), ())
  module.sow("calibration", "input_range", jnp.percentile(jnp.abs(x), CALIBRATION_PERCENTILE))
  if spec is None:
    return x, x_range
  tq = spec.activations
  if _qs4d(spec):
    module.sow("input_quant", "input", {"bits": tq.bits})
    return qs4d_activations(x, tq.bits), x_range
  scale = jnp.abs(x_range) / quant.q_max(tq.bits)
  module.sow("input_quant", "input", {"bits": tq.bits, "scale": scale})
  if tq.mode is quant.ScaleMode.LSQ:
    scale = quant.lsq_grad_scale(scale, x.size // max(x.shape[0], 1), tq.bits)
  else:
    scale = jax.lax.stop_gradient(scale)
  return quant.fake_quant(x, tq.bits, scale), x_range


# PRNG streams of the analog substrate: "program" draws the chip (reuse its key across
# batches for one frozen chip, fold in the step for noise-aware training), "read" the noise
# of every forward pass.
PROGRAM_RNG, READ_RNG = "program", "read"


def analog_keys(module: nn.Module) -> tuple[jax.Array, jax.Array]:
  """(programming key, read key) of this layer; a clear error when apply got no rngs."""
  for name in (PROGRAM_RNG, READ_RNG):
    if not module.has_rng(name):
      raise errors.ConfigError(
        f"An analog spec needs PRNG keys: call apply(..., rngs={{'{PROGRAM_RNG}': k1, "
        f"'{READ_RNG}': k2}}) (missing {name!r})."
      )
  return module.make_rng(PROGRAM_RNG), module.make_rng(READ_RNG)


def matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """(..., in) @ (in, out) as one 2-D matrix product.

  XLA:CPU runs the backward pass of a 3-D (B, L, in) @ (in, out) product (a contraction
  over two batch axes for the kernel gradient) 2-3x slower than the same product on the
  flattened (B L, in) matrix; measured in BENCHMARKS.md ("Dense layout").
  """
  lead = x.shape[:-1]
  return (x.reshape(-1, x.shape[-1]) @ kernel).reshape(*lead, kernel.shape[-1])


def qs4d_activations(x: jax.Array, bits: jax.Array) -> jax.Array:
  """The qs4d scheme's activation quantizer on x (B, ...): `quant.qs4d_fake_quant` with
  one absmax step per example (see `quantize_input`)."""
  return jax.vmap(lambda v: quant.qs4d_fake_quant(v, bits))(x)


def state_quantizer(scheme: str | None, method: str, length: int, bits) -> dict:
  """The qs4d scheme's state group as hooks of `ssm.apply_ssm` ({} for another scheme or
  the float model): on the sequential path the recurrent state itself (Re and Im, one absmax
  step per example and step, `state_fn`); on the convolution paths, as the QS4D authors'
  code does on its FFT path, the kernel K (one absmax step over the layer's (L, H) kernel,
  at the same number of states, `kernel_fn`); the associative scan has no rounding point.
  `method` "auto" is resolved for sequences of `length`."""
  method = ssm.select_method(length) if method == "auto" else method
  if scheme != "qs4d":
    return {}
  if method == "sequential":
    return {"state_fn": lambda x: quant.qs4d_fake_quant_complex(x, bits)}
  if method in ("fft", "toeplitz"):
    return {"kernel_fn": lambda k: quant.qs4d_fake_quant(k, bits)}
  return {}


def _codes(x: jax.Array, tq: quant.TensorQuant, scale: jax.Array) -> dict:
  """Integer codes and step of a quantized tensor, for the "deployed" records (export)."""
  return {"codes": quant.to_integer_codes(x, tq.bits, scale), "scale": scale}


def _qs4d_weight(w: jax.Array, tq: quant.TensorQuant) -> tuple[jax.Array, dict]:
  """A weight tensor under the qs4d scheme: (quantized w, its codes and step for export)."""
  codes, step = quant.qs4d_codes(w, quant.qs4d_states(tq.bits))
  return quant.qs4d_fake_quant(w, tq.bits), {"codes": codes.astype(jnp.int32), "scale": step}


def quantize_small(x: jax.Array, tq: quant.TensorQuant | None) -> tuple[jax.Array, dict]:
  """Per-tensor absmax fake quantization of a bias or norm vector, and its codes.

  Returns (x unchanged, {}) when tq is None.
  """
  if tq is None:
    return x, {}
  scale = quant.absmax_scale(x, tq.bits)
  return quant.fake_quant(x, tq.bits, scale), _codes(x, tq, scale)


def _ssm_codes(p: dict, spec: quant.QuantSpec) -> dict:
  """Integer codes and steps of the quantized SSM tensors (same grids as quantize_ssm).

  Complex tensors store codes of (Re, Im) as a trailing axis of 2. The polar a_bar stores
  decay levels and angle codes with their two steps; a cartesian a_bar stores (Re, Im)
  codes before the pull-back onto r_max, so it has no exact integer form and is exported
  by value only.
  """
  out = {}
  if spec.a_bar_param == "polar":
    levels, angle_codes, step, angle_scale = quant.polar_codes(
      p["a_bar"], spec.a_bar.bits, quant.ssm_axis(spec.a_bar)
    )
    out["a_bar"] = {
      "levels": levels,
      "angle_codes": angle_codes,
      "step": step,
      "angle_scale": angle_scale,
    }
  for name, group in (("b_bar", "b_bar"), ("c", "c"), ("c_reverse", "c")):
    if name in p:
      tq = getattr(spec, group)
      scale = quant.complex_absmax_scale(p[name], tq.bits, quant.ssm_axis(tq))
      pair = jnp.stack([p[name].real, p[name].imag], axis=-1)
      out[name] = _codes(pair, tq, scale[..., None] if scale.ndim else scale)
  out["d"] = _codes(p["d"], spec.d, quant.absmax_scale(p["d"], spec.d.bits))
  return out


class QDense(nn.Module):
  """Dense layer x @ kernel + bias with optional weight, bias and input quantization.

  Attributes:
    features: output width.
    group: name of the QuantSpec group of the kernel ("encoder", "glu", "decoder").
    per_sequence: the layer runs once per sequence (decoder), not once per step; only
      affects the MAC count.

  Parameters: kernel (in, out), bias (out,), and the quantizer parameters kernel_scale
  (1, out) (LSQ step per output channel) and input_range () (activation clip range).
  """

  features: int
  group: str
  per_sequence: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, spec: Quant = None, analog: Analog = None) -> jax.Array:
    """x: (..., in) -> (..., features); `analog` runs the product on a simulated tile."""
    tq = getattr(spec, self.group) if spec is not None else None
    x, x_range = quantize_input(self, x, spec)
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    kernel_scale = self.param("kernel_scale", nn.initializers.ones, (1, self.features))
    codes = {}
    if _qs4d(spec):
      kernel, codes = _qs4d_weight(kernel, tq)
    elif tq is not None:
      self.sow("calibration", "kernel_scale", quant.lsq_init_scale(kernel, tq.bits, axis=-1))
      scale = quant.weight_scale(kernel, tq, lsq_scale=kernel_scale, channel_axis=-1)
      codes = _codes(kernel, tq, scale)
      kernel = quant.fake_quant(kernel, tq.bits, scale)
    bias, bias_codes = quantize_small(bias, spec.bias if spec is not None else None)
    act_bits = _bits(spec.activations if spec is not None else None)
    per_channel = tq is not None and tq.mode is not quant.ScaleMode.TENSOR
    _deploy(
      self,
      "kernel",
      kernel,
      tq,
      1.0,
      scales=self.features if per_channel else 1,
      per_sequence=self.per_sequence,
      act_bits=act_bits,
      conversions=self.features,
      adc_bits=act_bits,
      **codes,
    )
    _deploy(self, "bias", bias, spec.bias if spec is not None else None, 0.0, **bias_codes)
    if analog is not None:
      key_program, key_read = analog_keys(self)
      return analog_lib.analog_matmul(key_program, key_read, x, kernel, x_range, analog) + bias
    return matmul(x, kernel) + bias


def _stored_norm_vectors(module: nn.Module, scale: jax.Array, bias: jax.Array, spec: Quant):
  """A norm's two stored vectors (H,), quantized as the group "bias" says and recorded as
  deployed tensors "scale" and "bias"; returns them as the norm computes with them."""
  tq = spec.bias if spec is not None else None
  (scale, scale_codes), (bias, bias_codes) = quantize_small(scale, tq), quantize_small(bias, tq)
  _deploy(module, "scale", scale, tq, 0.0, **scale_codes)
  _deploy(module, "bias", bias, tq, 0.0, **bias_codes)
  return scale, bias


class QLayerNorm(nn.Module):
  """LayerNorm over the last axis whose scale and offset can be quantized (group "bias").

  Called as every norm of `NORMS` is, with `train` (which a LayerNorm does not use) and
  `channels`, the (H,) 0/1 keep mask of a channel-pruned model (statistics over the kept
  channels only, `blocks.layer_norm`) or None."""

  epsilon: float = blocks.LAYER_NORM_EPSILON

  @nn.compact
  def __call__(
    self, x: jax.Array, spec: Quant = None, train: bool = False, channels: jax.Array | None = None
  ) -> jax.Array:
    del train  # The same in training and inference.
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],))
    bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],))
    scale, bias = _stored_norm_vectors(self, scale, bias, spec)
    return blocks.layer_norm(x, scale, bias, self.epsilon, channels)


class QBatchNorm(nn.Module):
  """BatchNorm over every axis but the last (batch and time), as flax's `nn.BatchNorm`, and
  computed as a chip's periphery holds it: folded into a per-channel gain and shift
  (`blocks.fold_batch_norm`), which are what is quantized (group "bias") and deployed.

  Training (`train=True`) normalises with the batch's statistics and moves the running
  averages towards them (the caller makes "batch_stats" mutable, as `steps.train_step`
  does); inference uses the running averages. Parameters scale, bias (H,); "batch_stats":
  mean, var (H,). `channels` (a channel-pruned model's keep mask) is accepted as every
  norm's is and not needed: each channel is normalised on its own, and the block zeroes
  the pruned channels' outputs.
  """

  momentum: float = blocks.BATCH_NORM_MOMENTUM
  epsilon: float = blocks.BATCH_NORM_EPSILON

  @nn.compact
  def __call__(
    self, x: jax.Array, spec: Quant = None, train: bool = False, channels: jax.Array | None = None
  ) -> jax.Array:
    del channels  # Per-channel statistics: a pruned channel does not enter a kept one's.
    shape = (x.shape[-1],)
    scale = self.param("scale", nn.initializers.ones, shape)
    bias = self.param("bias", nn.initializers.zeros, shape)
    running_mean = self.variable(BATCH_STATS, "mean", jnp.zeros, shape, jnp.float32)
    running_var = self.variable(BATCH_STATS, "var", jnp.ones, shape, jnp.float32)
    if train:
      mean, var = blocks.batch_moments(x)
      if not self.is_initializing():
        for running, value in ((running_mean, mean), (running_var, var)):
          running.value = self.momentum * running.value + (1.0 - self.momentum) * value
    else:
      mean, var = running_mean.value, running_var.value
    gain, shift = blocks.fold_batch_norm(mean, var, scale, bias, self.epsilon)
    gain, shift = _stored_norm_vectors(self, gain, shift, spec)
    return blocks.channel_affine(x, gain, shift)


# The block norms of `blocks.NORMS`; each stores "scale" and "bias" as deployed tensors.
NORMS = {"layer": QLayerNorm, "batch": QBatchNorm}


class S4D(nn.Module):
  """Diagonal state-space layer (S4D), H independent channels of n = d_state/2 complex modes.

  Attributes:
    d_state: N, the real state size per channel (n = N/2 complex modes). Must be even.
    a_init: `ssm.A_INITS`: "lin" (S4D-Lin), "inv" (S4D-Inv), "lin_quarter" or "real"
      (S4D-Real: a decay-only recurrence, Im a held at 0 whatever the im_a parameter; its
      gradient is 0, so it stays at its initial 0) initialisation of a (not `init`, which
      would shadow flax.linen.Module.init).
    discretization: "zoh" or "bilinear".
    method: evaluation path of `ssm.apply_ssm` ("auto", "fft", "associative",
      "sequential"); all give the same numbers, except that only "sequential" has a state
      to quantize (the qs4d scheme's state group).
    bidirectional: add an anti-causal pass with its own read-out c_reverse.
    step_min, step_max: range of the log-uniform initial step size.
    train_b: learn b (initialised to 1); otherwise b stays 1.

  Parameters (names kept from the paper, decoded once per call):
    log_step (H,), log_neg_re_a (H, n), im_a (H, n), b (H, n, 2), c (H, n, 2), d (H,),
    c_reverse (H, n, 2) when bidirectional, and input_range () for the input quantizer.
  """

  d_state: int = 64
  a_init: str = "lin"
  discretization: str = "zoh"
  method: str = "auto"
  bidirectional: bool = False
  step_min: float = 1e-3
  step_max: float = 1e-1
  train_b: bool = True

  def discrete_params(
    self, channels: int, spec: Quant = None, perturb_a: Callable | None = None
  ) -> tuple[dict, dict]:
    """Declares/reads the parameters and discretises them.

    Under the qs4d scheme A, log_step and C (and c_reverse) are quantized first
    (`quant.qs4d_continuous`, `quant.qs4d_quant`); otherwise nothing is quantized here.
    `perturb_a` maps the (quantized) continuous-time A before discretisation (the relative
    noise of `AnalogSpec.a_noise`).

    Returns:
      (p, codes): p holds complex a_bar, b_bar, c (H, n), real d (H,) and, when
      bidirectional, c_reverse (H, n); codes the export codes of what was quantized here,
      {name: {"codes", "scale"}} (empty unless qs4d).
    """
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
    if self.a_init == "real":
      im_a = jnp.zeros_like(im_a)  # Decay only: no mode rotates, in training or export.
    b_ones = lambda key, shape: jnp.stack([jnp.ones(shape[:-1]), jnp.zeros(shape[:-1])], -1)
    if self.train_b:
      b_pair = self.param("b", b_ones, (channels, n_modes, 2))
    else:
      b_pair = b_ones(None, (channels, n_modes, 2))
    readouts = {"c": self.param("c", _complex_normal_init(), (channels, n_modes, 2))}
    d = self.param("d", nn.initializers.normal(1.0), (channels,))
    if self.bidirectional:
      readouts["c_reverse"] = self.param(
        "c_reverse", _complex_normal_init(), (channels, n_modes, 2)
      )

    codes = {}
    if _qs4d(spec):
      a, step = quant.qs4d_continuous(log_neg_re_a, im_a, log_step, spec.a.bits, spec.log_dt.bits)
      for name, pair in readouts.items():
        readouts[name], codes[name] = _qs4d_weight(pair, spec.c)
    else:
      a, step = ssm.decode_a(log_neg_re_a, im_a), jnp.exp(log_step)
    if perturb_a is not None:
      a = perturb_a(a)
    a_bar, b_bar = ssm.discretize(
      a, ssm.complex_from_pair(b_pair), step[:, None], self.discretization
    )
    out = {"a_bar": a_bar, "b_bar": b_bar, "d": d}
    out.update({name: ssm.complex_from_pair(pair) for name, pair in readouts.items()})
    return out, codes

  @nn.compact
  def __call__(self, u: jax.Array, spec: Quant = None, analog: Analog = None) -> jax.Array:
    """u: (B, L, H) -> y: (B, L, H); `analog` perturbs the coefficients as a chip holds them."""
    u, _ = quantize_input(self, u, spec)
    perturb_a = None
    if analog is not None:
      key_program, key_read = analog_keys(self)
      perturb_a = functools.partial(analog_lib.perturb_a, key_read, spec=analog)
    p, codes = self.discrete_params(u.shape[-1], spec, perturb_a)
    # The group whose width each tensor is stored at. Under qs4d a_bar = exp(step A_q) is
    # held at A's width, and so is b_bar = (a_bar - 1) / A_q when b is fixed at 1 (the
    # authors' S4D); a learned b, and d, stay float.
    group = {"a_bar": "a_bar", "b_bar": "b_bar"}
    hooks = {}
    if _qs4d(spec):
      group = {"a_bar": "a", "b_bar": "b_bar" if self.train_b else "a"}
      hooks = state_quantizer(spec.scheme, self.method, u.shape[1], spec.state.bits)
    elif spec is not None:
      codes = _ssm_codes(p, spec)
      p = quant.quantize_ssm(p, spec)
    directions = 2.0 if self.bidirectional else 1.0
    get = lambda g: getattr(spec, g) if spec is not None else None
    act_bits = _bits(get("activations"))
    channels = u.shape[-1]
    n_scales = lambda g: (
      1 if spec is None or getattr(spec, g).mode is quant.ScaleMode.TENSOR else channels
    )
    # MACs per stored real number and step: a complex a_bar x is 4 real MACs (2 per stored
    # real), b_bar u is 2 (1 per real), Re(c x) is 2 (1 per real), d u is 1; the reverse
    # pass of a bidirectional layer runs its own recurrence.
    # The polar a_bar grid has two steps (decay, angle) per tensor or channel, as qs4d's A
    # has (Re, Im). ADC conversions per step: the new state, Re and Im of every mode in
    # every direction, at the state's width (a_bar's record); y, one per channel, for each
    # read-out (c's and c_reverse's).
    _deploy(
      self,
      "a_bar",
      p["a_bar"],
      get(group["a_bar"]),
      2.0 * directions,
      2 * n_scales(group["a_bar"]),
      act_bits=act_bits,
      conversions=directions * 2 * p["a_bar"].size,
      adc_bits=_bits(get("state")),
      **codes.get("a_bar", {}),
    )
    _deploy(
      self,
      "b_bar",
      p["b_bar"],
      get(group["b_bar"]),
      directions,
      n_scales(group["b_bar"]),
      act_bits=act_bits,
      **codes.get("b_bar", {}),
    )
    readout = dict(act_bits=act_bits, conversions=channels, adc_bits=act_bits)
    _deploy(self, "c", p["c"], get("c"), 1.0, n_scales("c"), **readout, **codes.get("c", {}))
    _deploy(self, "d", p["d"], get("d"), 1.0, act_bits=act_bits, **codes.get("d", {}))
    if "c_reverse" in p:
      _deploy(
        self,
        "c_reverse",
        p["c_reverse"],
        get("c"),
        1.0,
        n_scales("c"),
        **readout,
        **codes.get("c_reverse", {}),
      )

    if analog is not None:
      p = analog_lib.analog_ssm(key_program, key_read, p, analog)

    def run(hooks):
      one_sequence = lambda u_seq: ssm.apply_ssm(
        p["a_bar"], p["b_bar"], p["c"], p["d"], u_seq, self.method, p.get("c_reverse"), **hooks
      )
      return jax.vmap(one_sequence)(u).astype(u.dtype)

    if not hooks:
      return run({})
    # A cond, not a where in every step: with the state off, the float program runs as is
    # (even an identity select in the scan body changes how XLA fuses and rounds it).
    return jax.lax.cond(quant.is_off(spec.state.bits), lambda: run({}), lambda: run(hooks))


class S4DBlock(nn.Module):
  """Pre-norm residual block: x + dropout(GLU(Dense(dropout(GELU(S4D(norm(x))))))).

  Attributes:
    ssm: constructor of the sequence layer, called with `name=` (e.g. a
      `functools.partial(S4D, d_state=...)`), so every block owns its own parameters.
    dropout: dropout rate after the activation and after the output activation.
    prenorm: normalise before the SSM (True) or after the residual (False).
    norm: constructor of the norm (a value of `NORMS`), called with `name="norm"`.
    residual: add the skip connection (False: the QS4D authors' block, its branch alone).
    activation: the output activation, "glu" or "relu" (`blocks.ACTIVATIONS`); the dense
      layer before it keeps the name glu_dense and the quantization group "glu" for both.
  """

  ssm: Callable[..., nn.Module]
  dropout: float = 0.0
  prenorm: bool = True
  norm: Callable[..., nn.Module] = QLayerNorm
  residual: bool = True
  activation: str = "glu"

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    train: bool = False,
    spec: Quant = None,
    analog: Analog = None,
    channels: jax.Array | None = None,
  ) -> jax.Array:
    """x: (B, L, H) -> (B, L, H). The norm, GELU and output activation are digital periphery.

    `channels`: None, or the (H,) 0/1 keep mask of a channel-pruned model
    (`blocks.residual_block`)."""
    width = blocks.ACTIVATIONS[self.activation][1] * x.shape[-1]
    # Modules are made where they are first called, in the order of the block's maths, so
    # the two dropouts are Dropout_0 (after the GELU) and Dropout_1 (after the activation).
    return blocks.residual_block(
      x,
      norm=lambda v: self.norm(name="norm")(v, spec, train, channels),
      sequence_layer=lambda z: self.ssm(name="s4d")(z, spec, analog),
      glu_dense=lambda z: QDense(width, group="glu", name="glu_dense")(z, spec, analog),
      prenorm=self.prenorm,
      dropout=lambda z: nn.Dropout(self.dropout, deterministic=not train)(z),
      residual=self.residual,
      activation=self.activation,
      channels=channels,
    )
