"""Any Flax linen model on simulated analog hardware: `on_analog_hardware`, a context manager
that runs every `nn.Dense`, `nn.DenseGeneral`, `nn.Einsum` and `nn.Conv` of a user's own
model on a simulated crossbar, with no change to the model's code.

    spec = analog.AnalogSpec.make(devices.PCM_LIKE, dac_bits=8, adc_bits=8)
    with on_analog_hardware(spec, weight_bits=8):
      logits = model.apply(params, x, rngs={"program": k_chip, "read": k_read})

Inside the context, each product of those layers goes through the same operations as the
project's own layers (`layers.QDense`), injected by flax's method interception
(`nn.intercept_methods`):
  weights   fake-quantized to `weight_bits` with a per-output-channel absmax step
            (`quant.fake_quant`: straight-through gradient), when `weight_bits` is given;
  devices   mapped onto differential conductance pairs per output column (or per tensor,
            `spec.mapping`) and programmed with the device's noise, stuck-at faults and
            drift (`analog.program`: the same function `analog.analog_matmul` calls);
  DAC       the inputs quantized to `spec.dac_bits` over [-r, r] (clipped), see below;
  read      fresh read noise at every product, output noise, the ADC (`analog.read_product`).
The bias (if any) is added digitally after the ADC, as in `layers.QDense`.

The DAC range r. A project layer holds a calibrated parameter `input_range`; a user's layer
has none, so r is chosen per call: `input_range=None` (default) takes the absmax of the
layer's input over the whole call, under stop_gradient (nothing clips; an example's
quantization step then depends on its batch-mates, as in dynamic-range activation
quantization), and a number fixes r for every layer (inputs beyond it are clipped: use it
when the inputs are normalised and a batch-independent answer matters). r also sets the
full-scale output r max|w| of each column, the unit of `spec.output_noise` and of the ADC
range (`spec.adc_bound`).

PRNG: as for the project's layers, `apply` takes rngs={"program": k1, "read": k2}
(`layers.PROGRAM_RNG`, `layers.READ_RNG`; a clear ConfigError when either is missing).
Each layer folds its own path into both keys (flax `make_rng`), so one "program" key is
one chip for the whole model: reuse it across batches to evaluate that chip, and give a
fresh one every step (e.g. jax.random.fold_in(key, step)) for noise-aware training, which
works through the context (gradients flow through the straight-through quantizers and the
noisy product). A layer called twice in one `apply` is programmed twice (two chips' worth
of noise), because `make_rng` gives a new key at every call. `init` is not simulated:
parameters are created by the layers' own code (the output of an `init` inside the
context is the digital one).

With the ideal device (`devices.IDEAL`), no DAC, ADC or output noise and `weight_bits=None`,
every product is the layer's own `lax.dot_general` / `lax.conv_general_dilated` / einsum,
so the model's output equals the plain model's bit for bit (tests/test_analog_context.py).

Not supported, and refused with NotImplementedError rather than run digitally:
`nn.ConvLocal` (unshared kernels), `nn.ConvTranspose`, a layer that already injects its
own `dot_general` / `conv_general_dilated`, and an Einsum whose kernel has an ellipsis.
Any other module (Embed, the norms, attention's softmax, user maths) runs as it is:
analog tiles do matrix products, nothing else. A layer of a user's model that computes a
product without one of these modules (e.g. `x @ self.param(...)`) is not seen either.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from ssm_aimc import errors, layers, quant
from ssm_aimc.hardware import analog as analog_lib

# The layers a tile runs, and the ones that are refused rather than run digitally.
SUPPORTED = (nn.Dense, nn.DenseGeneral, nn.Einsum, nn.Conv)
UNSUPPORTED = (nn.ConvLocal, nn.ConvTranspose)


@dataclasses.dataclass(frozen=True)
class Tile:
  """How one layer's product sits on a crossbar.

  Attributes:
    product: (x, w) -> y, the layer's own linear map (used for the signal and, on squared
      operands, for the read-noise variance).
    contract_axes: the kernel axes summed over (the rows of a column).
    out_shape: maps max|w| per column (the kernel shape with 1 on contract_axes) to a
      shape that broadcasts against y.
  """

  product: Callable[[jax.Array, jax.Array], jax.Array]
  contract_axes: tuple[int, ...]
  out_shape: Callable[[jax.Array], jax.Array]


def tile_product(
  key_program: jax.Array,
  key_read: jax.Array,
  x: jax.Array,
  w: jax.Array,
  tile: Tile,
  spec: analog_lib.AnalogSpec,
  weight_bits=None,
  input_range=None,
) -> jax.Array:
  """One layer's product on a simulated tile: weight quantizer, DAC, programming, reads, ADC.

  The generalisation of `analog.analog_matmul` (x @ w) to any product that is linear in
  x and in w (dot_general, convolution, einsum): each output sums x_i w_ij over the
  kernel's `contract_axes`, so a read with per-device noise sigma_ij has output variance
  product(x^2, sigma^2), exactly as for a matrix.

  Args:
    key_program, key_read: keys of the programming (the chip) and of this product's reads.
    x: the layer's input; w: its kernel.
    tile: the layer's product and layout (`Tile`).
    spec: the analog spec.
    weight_bits: None, or the width of the per-output-channel absmax weight quantizer.
    input_range: None (the absmax of x under stop_gradient) or the fixed DAC range r.

  Returns:
    the product's output.
  """
  if weight_bits is not None:
    # quant.absmax_scale per output channel, over the kernel's summed axes (several for a
    # convolution): max|w| / q_max, and mean|w| for binary (its XNOR-Net optimum).
    abs_w = jnp.abs(w)
    absmax = jnp.max(abs_w, axis=tile.contract_axes, keepdims=True)
    mean_abs = jnp.mean(abs_w, axis=tile.contract_axes, keepdims=True)
    binary = weight_bits == 1
    scale = jnp.where(binary, mean_abs, absmax / quant.q_max(weight_bits))
    scale = jax.lax.stop_gradient(scale)
    w = quant.fake_quant(w, weight_bits, scale)
  if input_range is None:
    x_range = jax.lax.stop_gradient(jnp.max(jnp.abs(x)))
  else:
    x_range = jnp.asarray(input_range, x.dtype)
  x_range = jnp.where(x_range > 0, x_range, 1.0)
  if spec.dac:
    x = quant.fake_quant(x, spec.dac_bits, x_range / quant.q_max(spec.dac_bits))
  reduce_axes = tile.contract_axes if spec.mapping == "column" else tuple(range(w.ndim))
  prog = analog_lib.program(key_program, w, spec, reduce_axes)
  w = w + prog.delta
  k_read, k_out = jax.random.split(key_read)
  read_std = prog.read_std
  if read_std is not None and spec.read_noise_draw == "forward":
    w = w + spec.read_noise_scale * read_std * jax.random.normal(k_read, w.shape, w.dtype)
    read_std = None  # Drawn once on the weights, as analog_matmul does.
  full_scale = x_range * tile.out_shape(prog.w_max)
  adc_range = spec.adc_bound * full_scale
  return analog_lib.read_product(
    x, w, read_std, (k_read, k_out), spec, full_scale, adc_range, product=tile.product
  )


def _dot_general_tile(lhs_ndim: int, dimension_numbers, precision, preferred) -> Tile:
  """The tile of `lax.dot_general(lhs, kernel, dimension_numbers)` (Dense, DenseGeneral).

  Output axes: batch, then the free lhs axes, then the free kernel axes (features)."""
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
  n_lhs_free = lhs_ndim - len(lhs_contract) - len(lhs_batch)

  def product(x, w):
    return lax.dot_general(
      x, w, dimension_numbers, precision=precision, preferred_element_type=preferred
    )

  def out_shape(w_max):
    kept = jnp.squeeze(w_max, axis=tuple(rhs_contract))
    # Kept kernel axes: the batch axes (leading in flax's kernels) then the features.
    n_batch = len(rhs_batch)
    return kept.reshape(kept.shape[:n_batch] + (1,) * n_lhs_free + kept.shape[n_batch:])

  return Tile(product, tuple(rhs_contract), out_shape)


def _conv_tile(kernel_ndim: int, conv: Callable, dimension_numbers, **conv_kwargs) -> Tile:
  """The tile of a convolution: every kernel axis but the output-feature one is summed."""
  dn = lax.conv_dimension_numbers((1,) * kernel_ndim, (1,) * kernel_ndim, dimension_numbers)
  out_feature_axis = dn.rhs_spec[0]
  y_feature_axis = dn.out_spec[1]

  def product(x, w):
    return conv(x, w, dimension_numbers=dimension_numbers, **conv_kwargs)

  def out_shape(w_max):
    shape = [1] * kernel_ndim
    shape[y_feature_axis] = w_max.shape[out_feature_axis]
    return w_max.reshape(shape)

  contract = tuple(a for a in range(kernel_ndim) if a != out_feature_axis)
  return Tile(product, contract, out_shape)


def _einsum_tile(einsum_str: str, y_ndim: int, precision, preferred) -> Tile:
  """The tile of jnp.einsum(einsum_str, x, kernel): kernel letters absent from the output
  are summed; max|w| of the other letters is laid out in the output's order."""
  inputs, out = einsum_str.split("->")
  _, kernel = inputs.split(",")
  if "..." in kernel:
    raise NotImplementedError(
      f"on_analog_hardware: an Einsum kernel with an ellipsis ({einsum_str!r}) is not "
      "supported; spell out the kernel's axes."
    )
  contract = tuple(i for i, c in enumerate(kernel) if c not in out)
  kept = "".join(c for c in kernel if c in out)
  n_ellipsis = y_ndim - len(out.replace("...", ""))

  def product(x, w):
    return jnp.einsum(einsum_str, x, w, precision=precision, preferred_element_type=preferred)

  def out_shape(w_max):
    kept_max = jnp.squeeze(w_max, axis=contract)
    in_out_order = "".join(c for c in out.replace("...", "") if c in kept)
    kept_max = jnp.einsum(f"{kept}->{in_out_order}", kept_max)
    sizes = dict(zip(in_out_order, kept_max.shape, strict=True))
    shape = []
    for c in out.replace("...", "."):
      shape.extend([1] * n_ellipsis if c == "." else [sizes.get(c, 1)])
    return kept_max.reshape(shape)

  return Tile(product, contract, out_shape)


@contextlib.contextmanager
def _swapped(module: nn.Module, name: str, value) -> Iterator[None]:
  """Sets a field of a bound (frozen) module for the duration of one call. The module is
  the per-apply clone flax bound to this call's scope, not the user's object."""
  old = getattr(module, name)
  object.__setattr__(module, name, value)
  try:
    yield
  finally:
    object.__setattr__(module, name, old)


def _refuse_injected(module: nn.Module, *fields: str) -> None:
  for f in fields:
    if getattr(module, f, None) is not None:
      raise NotImplementedError(
        f"on_analog_hardware: {type(module).__name__} {module.name!r} already sets {f}; "
        "a layer with its own injected product cannot also run on the simulated tile."
      )


def _einsum_call(module: nn.Einsum, run_tile, inputs, einsum_str=None):
  """`nn.Einsum.__call__` (flax 0.12) with the product on the tile: the same parameters,
  shapes and bias, in the same order."""
  einsum_str = nn.merge_param("einsum_str", module.einsum_str, einsum_str).replace(" ", "")
  if "->" not in einsum_str or einsum_str.count(",") != 1:
    raise ValueError(f"Einsum needs an explicit two-operand equation, got {einsum_str!r}.")
  kernel = module.param("kernel", module.kernel_init, module.shape, module.param_dtype)
  bias = None
  if module.use_bias:
    bias_shape, broadcast_shape = module._get_bias_shape(einsum_str, inputs, kernel)
    bias = module.param("bias", module.bias_init, bias_shape, module.param_dtype)
  inputs, kernel, bias = module.promote_dtype(inputs, kernel, bias, dtype=module.dtype)
  y_ndim = jax.eval_shape(lambda a, b: jnp.einsum(einsum_str, a, b), inputs, kernel).ndim
  tile = _einsum_tile(einsum_str, y_ndim, module.precision, module.preferred_element_type)
  y = run_tile(inputs, kernel, tile)
  if bias is not None:
    y += jnp.reshape(bias, broadcast_shape)
  return y


def _interceptor(spec: analog_lib.AnalogSpec, weight_bits, input_range):
  """The method interceptor that puts each supported layer's product on a tile."""

  def intercept(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    if isinstance(module, UNSUPPORTED):
      raise NotImplementedError(
        f"on_analog_hardware: {type(module).__name__} {module.name!r} is not supported "
        f"(supported: {', '.join(c.__name__ for c in SUPPORTED)}); it is refused rather "
        "than run digitally."
      )
    if not isinstance(module, SUPPORTED) or module.is_initializing():
      return next_fun(*args, **kwargs)
    key_program, key_read = layers.analog_keys(module)

    def run_tile(x, w, tile):
      return tile_product(key_program, key_read, x, w, tile, spec, weight_bits, input_range)

    if isinstance(module, nn.Einsum):
      return _einsum_call(module, run_tile, *args, **kwargs)
    if isinstance(module, nn.Conv):
      _refuse_injected(module, "conv_general_dilated", "conv_general_dilated_cls")

      def conv(lhs, rhs, window_strides, padding, **kw):
        dn = kw.pop("dimension_numbers")
        kw.update(window_strides=window_strides, padding=padding)
        tile = _conv_tile(rhs.ndim, lax.conv_general_dilated, dn, **kw)
        return run_tile(lhs, rhs, tile)

      with _swapped(module, "conv_general_dilated", conv):
        return next_fun(*args, **kwargs)
    _refuse_injected(module, "dot_general", "dot_general_cls")

    def dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
      tile = _dot_general_tile(lhs.ndim, dimension_numbers, precision, preferred_element_type)
      return run_tile(lhs, rhs, tile)

    with _swapped(module, "dot_general", dot_general):
      return next_fun(*args, **kwargs)

  return intercept


@contextlib.contextmanager
def on_analog_hardware(
  spec: analog_lib.AnalogSpec,
  *,
  weight_bits: int | None = None,
  input_range: float | None = None,
) -> Iterator[None]:
  """Runs every Dense, DenseGeneral, Einsum and Conv of any linen model applied inside the
  context on simulated analog tiles (see the module docstring).

  Args:
    spec: the analog substrate (`analog.AnalogSpec.make`): device, noise scales, drift,
      DAC / ADC widths, mapping.
    weight_bits: None (float weights) or the width of a per-output-channel absmax weight
      quantizer with a straight-through gradient (`quant.validate_bits` rules).
    input_range: None (each layer's DAC range is its input's absmax in that call, under
      stop_gradient) or a fixed range r > 0 for every layer.

  Yields:
    nothing; `model.apply(..., rngs={"program": k1, "read": k2})` inside the block runs on
    the simulated hardware.
  """
  if not isinstance(spec, analog_lib.AnalogSpec):
    raise errors.ConfigError(
      f"on_analog_hardware needs an analog.AnalogSpec (AnalogSpec.make), got {type(spec)}."
    )
  if weight_bits is not None:
    weight_bits = jnp.asarray(quant.validate_bits(weight_bits), jnp.float32)
  if input_range is not None and not input_range > 0:
    raise errors.ConfigError(f"input_range must be None or > 0, got {input_range}.")
  with nn.intercept_methods(_interceptor(spec, weight_bits, input_range)):
    yield
