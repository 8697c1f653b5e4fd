"""Tests for ssm_aimc.quant: grids, STE masks, LSQ gradients, stability of a_bar, specs,
and the QS4D authors' scheme."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_aimc import errors, quant, ssm

BITS_ON = list(range(1, 9))
# Powers of two as scales: x / scale is then exact in numpy and in XLA alike (XLA's CPU
# division can differ from IEEE by an ulp, which would move points on the clip boundary).
SCALE = np.float32(0.25)


def _x(seed=0, shape=(4, 6), spread=2.0):
  """Tiny float32 input spanning the clip range, with exact grid points and zero."""
  x = np.random.default_rng(seed).uniform(-spread, spread, shape).astype(np.float32)
  x.flat[0] = 0.0
  x.flat[1] = 2 * SCALE
  x.flat[2] = -3 * SCALE
  return jnp.asarray(x)


def _q_max(bits):
  return 2.0 ** (bits - 1) - 1


def _bits_of(x):
  return np.asarray(x, np.float32).view(np.uint32)


# ----------------------------------------------------------------------------------------
# Forward values.


@pytest.mark.parametrize("bits", BITS_ON)
def test_values_on_grid_and_in_range(bits):
  x = _x()
  y = np.asarray(quant.fake_quant(x, bits, SCALE))
  codes = y / SCALE
  np.testing.assert_allclose(codes, np.round(codes), atol=1e-5)
  if bits == 1:
    np.testing.assert_array_equal(np.abs(y), SCALE)
  else:
    assert np.all(np.abs(y) <= _q_max(bits) * SCALE * (1 + 1e-6))
  # An independent numpy reference (np.round also rounds half to even).
  if bits > 1:
    q_max = np.float32(_q_max(bits))
    ref = np.clip(np.round(np.asarray(x) / SCALE), -q_max, q_max) * SCALE
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("bits", BITS_ON)
def test_idempotent(bits):
  y = quant.fake_quant(_x(), bits, SCALE)
  np.testing.assert_array_equal(quant.fake_quant(y, bits, SCALE), y)


def test_ternary_and_binary_levels():
  x = _x(spread=5.0)
  ternary = set(np.unique(np.asarray(quant.fake_quant(x, 2, SCALE))).tolist())
  assert ternary == {-SCALE, 0.0, SCALE}
  binary = set(np.unique(np.asarray(quant.fake_quant(x, 1, SCALE))).tolist())
  assert binary == {-SCALE, SCALE}
  # sign(0) is +1 for binary.
  assert float(quant.fake_quant(jnp.zeros(()), 1, SCALE)) == SCALE


@pytest.mark.parametrize("bits", [16, 24, 32, 64])
def test_off_is_float_path_bit_for_bit(bits):
  x = np.array([0.1234567, -0.0, 1e-30, -3e20, 7.0, np.pi], np.float32)
  y = quant.fake_quant(jnp.asarray(x), jnp.float32(bits), SCALE)
  np.testing.assert_array_equal(_bits_of(y), _bits_of(x))
  grads = jax.grad(lambda x, s: jnp.sum(quant.fake_quant(x, bits, s)), argnums=(0, 1))
  gx, gs = grads(jnp.asarray(x), SCALE)
  np.testing.assert_array_equal(np.asarray(gx), np.ones_like(x))
  assert float(gs) == 0.0


def test_zero_scale_gives_zero_and_no_nan():
  x = jnp.zeros((3, 2))
  for bits in BITS_ON:
    scale = quant.absmax_scale(x, bits)
    assert float(scale) == 0.0
    y, (gx, gs) = jax.value_and_grad(
      lambda x, s, b=bits: jnp.sum(quant.fake_quant(x, b, s) * 2.0), argnums=(0, 1)
    )(x, scale)
    assert float(y) == 0.0
    # The STE still passes the gradient so a zero-initialised tensor can leave zero.
    np.testing.assert_array_equal(np.asarray(gx), 2.0)
    assert np.isfinite(float(gs))


# ----------------------------------------------------------------------------------------
# Backward: STE mask and LSQ step gradient.


def _expected_mask(x, bits, scale):
  v = np.asarray(x) / np.asarray(scale)
  limit = 1.0 if bits == 1 else _q_max(bits)
  return (np.abs(v) <= limit).astype(np.float32)


@pytest.mark.parametrize("bits", BITS_ON)
@pytest.mark.parametrize("per_channel", [False, True])
def test_ste_gradient_equals_explicit_mask(bits, per_channel):
  x = _x(spread=4.0)
  # Put points exactly on the clip boundary, where the mask is 1.
  limit = 1.0 if bits == 1 else _q_max(bits)
  x = x.at[1, 0].set(limit * SCALE).at[1, 1].set(-limit * SCALE)
  scale = jnp.full((1, 6), SCALE).at[0, 3].set(0.5) if per_channel else jnp.float32(SCALE)
  w = jnp.asarray(np.random.default_rng(1).normal(size=x.shape).astype(np.float32))
  gx = jax.grad(lambda x: jnp.sum(quant.fake_quant(x, bits, scale) * w))(x)
  np.testing.assert_array_equal(np.asarray(gx), np.asarray(w) * _expected_mask(x, bits, scale))


def _lsq_scale_grad_numpy(x, w, bits, scale):
  """The LSQ step gradient, written independently in numpy (float64)."""
  x = np.asarray(x, np.float64)
  s = np.asarray(scale, np.float64)
  w = np.asarray(w, np.float64)
  v = x / s
  if bits == 1:
    per_elem = np.where(x >= 0, 1.0, -1.0)
  else:
    q_max = _q_max(bits)
    per_elem = np.where(v <= -q_max, -q_max, np.where(v >= q_max, q_max, np.round(v) - v))
  grad = w * per_elem
  if s.ndim == 0:
    return grad.sum()
  return grad.sum(axis=0, keepdims=True)


@pytest.mark.parametrize("bits", BITS_ON)
@pytest.mark.parametrize("per_channel", [False, True])
def test_lsq_scale_gradient_matches_closed_form(bits, per_channel):
  x = _x(spread=4.0)
  scale = jnp.full((1, 6), SCALE).at[0, 2].set(0.125) if per_channel else jnp.float32(SCALE)
  w = jnp.asarray(np.random.default_rng(2).normal(size=x.shape).astype(np.float32))
  gs, gb = jax.grad(lambda s, b: jnp.sum(quant.fake_quant(x, b, s) * w), argnums=(0, 1))(
    scale, jnp.float32(bits)
  )
  assert gs.shape == scale.shape
  np.testing.assert_allclose(gs, _lsq_scale_grad_numpy(x, w, bits, scale), rtol=1e-5, atol=1e-5)
  assert float(gb) == 0.0


def test_lsq_grad_scale_preserves_value_and_scales_gradient():
  scale = jnp.float32(0.123456789)
  for bits in [2, 4, 8]:
    wrapped = quant.lsq_grad_scale(scale, 100, bits)
    np.testing.assert_array_equal(_bits_of(wrapped), _bits_of(scale))
    g = jax.grad(lambda s, b=bits: 3.0 * quant.lsq_grad_scale(s, 100, b))(scale)
    np.testing.assert_allclose(g, 3.0 / np.sqrt(100 * _q_max(bits)), rtol=1e-6)


def test_straight_through_value_and_gradient():
  x = jnp.array([0.3, -1.7])
  x_q = jnp.array([0.25, -1.75])
  np.testing.assert_array_equal(quant.straight_through(x, x_q), x_q)
  np.testing.assert_array_equal(
    jax.grad(lambda x: jnp.sum(quant.straight_through(x, x_q) * x_q))(x), x_q
  )


# ----------------------------------------------------------------------------------------
# One program for every bit width.


def test_jit_vmap_over_bits_compiles_once_and_matches_loop():
  traces = []

  def f(x, bits, scale):
    traces.append(1)  # Runs once per trace, never at execution.
    return quant.fake_quant(x, bits, scale)

  x = _x(spread=3.0)
  batched = jax.jit(jax.vmap(f, in_axes=(None, 0, None)))
  bits_grid = jnp.arange(1, 9, dtype=jnp.float32)
  y = batched(x, bits_grid, SCALE)
  y_other = batched(x, bits_grid + 8, SCALE)  # Other values, same shapes: no retrace.
  assert len(traces) == 1
  assert batched._cache_size() == 1
  for i, bits in enumerate(range(1, 9)):
    np.testing.assert_array_equal(y[i], quant.fake_quant(x, bits, SCALE))
  np.testing.assert_array_equal(y_other[-1], x)  # bits 16: off.


def test_vmapped_gradient_over_bits_matches_loop():
  x = _x(spread=3.0)
  grad_fn = jax.grad(lambda x, b: jnp.sum(quant.fake_quant(x, b, quant.absmax_scale(x, b))))
  bits_grid = jnp.array([1.0, 2.0, 4.0, 16.0])
  grads = jax.jit(jax.vmap(grad_fn, in_axes=(None, 0)))(x, bits_grid)
  for i, bits in enumerate(bits_grid):
    np.testing.assert_array_equal(grads[i], grad_fn(x, bits))


# ----------------------------------------------------------------------------------------
# Scales.


def test_absmax_scale_per_tensor_and_per_channel():
  x = _x()
  absx = np.abs(np.asarray(x))
  assert quant.absmax_scale(x, 4).shape == ()
  np.testing.assert_allclose(quant.absmax_scale(x, 4), absx.max() / 7, rtol=1e-6)
  per_channel = quant.absmax_scale(x, 8, axis=-1)
  assert per_channel.shape == (1, 6)
  np.testing.assert_allclose(per_channel, absx.max(axis=0, keepdims=True) / 127, rtol=1e-6)
  np.testing.assert_allclose(
    quant.absmax_scale(x, 1, axis=0), absx.mean(1, keepdims=True), rtol=1e-6
  )
  # The largest magnitude lands on the top level, so nothing clips.
  y = quant.fake_quant(x, 4, quant.absmax_scale(x, 4, axis=1))
  np.testing.assert_allclose(np.abs(np.asarray(y)).max(axis=0), absx.max(axis=0), rtol=1e-6)
  # A constant for the STE.
  assert float(jax.grad(lambda x: jnp.sum(quant.absmax_scale(x, 4)))(x).sum()) == 0.0
  with pytest.raises(errors.ConfigError, match="axis"):
    quant.absmax_scale(x, 4, axis=2)


def test_lsq_init_scale():
  x = _x()
  absx = np.abs(np.asarray(x))
  np.testing.assert_allclose(quant.lsq_init_scale(x, 4), 2 * absx.mean() / np.sqrt(7), rtol=1e-6)
  np.testing.assert_allclose(quant.lsq_init_scale(x, 1), absx.mean(), rtol=1e-6)


# ----------------------------------------------------------------------------------------
# The recurrent coefficient.


def _a_bar_samples():
  """Random modes plus the hard cases: |a| at 1 - 1e-6, 1, above 1, tiny and zero."""
  rng = np.random.default_rng(3)
  radius = np.concatenate(
    [rng.uniform(0.0, 1.0, 24), 1 - rng.uniform(0, 1e-3, 8), [1 - 1e-6] * 4, [1.0, 1.2]]
  )
  theta = rng.uniform(-np.pi, np.pi, radius.shape)
  theta[-4:] = [0.0, np.pi, -np.pi / 2, 1e-4]
  a = radius * np.exp(1j * theta)
  a = np.concatenate([a, [1e-20, 1e-38j, 0.0, -3e-9]])
  return jnp.asarray(a, jnp.complex64)


@pytest.mark.parametrize("method", ["polar", "cartesian"])
def test_quantized_a_bar_is_strictly_stable(method):
  a = _a_bar_samples()
  assert np.abs(np.asarray(a)).max() >= 1.0  # The cases include unstable inputs too.
  for bits in BITS_ON:
    a_q = np.asarray(quant.quantize_a_bar(a, bits, method))
    assert a_q.dtype == np.complex64
    assert np.abs(a_q).max() < 1.0, (bits, np.abs(a_q).max())
    # The modulus also stays below one in double precision.
    assert np.abs(a_q.astype(np.complex128)).max() < 1.0
  # Per-channel grids and a vmapped bit width obey the same bound.
  grid = a[:36].reshape(6, 6)
  assert float(jnp.abs(quant.quantize_a_bar(grid, 4, method, axis=0)).max()) < 1.0
  batched = jax.vmap(quant.quantize_a_bar, in_axes=(None, 0, None))
  assert float(jnp.abs(batched(a, jnp.arange(1.0, 9.0), method)).max()) < 1.0


@pytest.mark.parametrize("method", ["polar", "cartesian"])
def test_quantized_a_bar_off_exact_and_gradients_finite(method):
  a = _a_bar_samples()
  np.testing.assert_array_equal(quant.quantize_a_bar(a, 16, method), a)
  loss = lambda a, b: jnp.sum(jnp.abs(quant.quantize_a_bar(a, b, method)) ** 2)
  for bits in [2, 4, 8, 16]:
    g = np.asarray(jax.grad(loss)(a, jnp.float32(bits)))
    assert np.all(np.isfinite(g)), bits
    assert np.abs(g).max() > 0  # The STE lets the gradient reach a_bar.
  # Off: the gradient is exactly that of the float path.
  g_off = jax.grad(lambda a: jnp.sum(jnp.real(quant.quantize_a_bar(a, 32, method))))(a)
  np.testing.assert_array_equal(g_off, jnp.ones_like(a))


def test_quantized_a_bar_is_close_for_s4d_modes():
  # S4D-Lin modes, log step in [1e-3, 1e-1]: 8-bit grids must track them closely.
  rng = np.random.default_rng(4)
  step = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), 8))
  a = jnp.asarray(np.exp(step * (-0.5 + 1j * np.pi * np.arange(8))), jnp.complex64)
  for method in ("polar", "cartesian"):
    err = np.abs(np.asarray(quant.quantize_a_bar(a, 8, method)) - np.asarray(a)).max()
    assert err < 0.02, (method, err)


def test_unknown_a_bar_method_lists_valid_names():
  with pytest.raises(errors.ConfigError, match="cartesian"):
    quant.quantize_a_bar(jnp.ones(2, jnp.complex64) * 0.5, 8, "spherical")


def test_fake_quant_complex():
  z = jnp.asarray([0.31 - 0.62j, -0.05 + 0.9j], jnp.complex64)
  z_q = quant.fake_quant_complex(z, 4, 0.1)
  np.testing.assert_array_equal(z_q.real, quant.fake_quant(z.real, 4, 0.1))
  np.testing.assert_array_equal(z_q.imag, quant.fake_quant(z.imag, 4, 0.1))
  np.testing.assert_array_equal(quant.fake_quant_complex(z, 16, 0.1), z)


# ----------------------------------------------------------------------------------------
# Integer export.


@pytest.mark.parametrize("bits", BITS_ON)
def test_integer_codes_round_trip(bits):
  x = _x(spread=4.0)
  for scale in (jnp.float32(SCALE), quant.absmax_scale(x, bits, axis=-1)):
    codes = quant.to_integer_codes(x, bits, scale)
    assert codes.dtype == jnp.int32
    if bits == 1:
      assert set(np.unique(np.asarray(codes)).tolist()) <= {-1, 1}
    else:
      assert np.abs(np.asarray(codes)).max() <= _q_max(bits)
    np.testing.assert_array_equal(
      quant.from_integer_codes(codes, scale), quant.fake_quant(x, bits, scale)
    )


# ----------------------------------------------------------------------------------------
# Bit-width checks and specs.


@pytest.mark.parametrize("bad", [0, -3, 2.5, float("nan"), float("inf"), 65, True, "8"])
def test_validate_bits_rejects(bad):
  with pytest.raises(errors.ConfigError, match=r"bits must be whole numbers from 1 to 64"):
    quant.validate_bits(bad)


def test_validate_bits_accepts():
  for good in (1, 2, 8, 16.0, 32, 64, np.int64(4), np.array([2, 4, 8])):
    np.testing.assert_array_equal(quant.validate_bits(good), np.asarray(good, np.float32))
  with pytest.raises(errors.ConfigError):
    quant.validate_bits(np.array([2, 0]))


def test_is_off():
  np.testing.assert_array_equal(
    quant.is_off(jnp.array([1.0, 8.0, 15.0, 16.0, 32.0])), [False, False, False, True, True]
  )


def test_off_helpers_decide_off_at_the_threshold():
  bits = jnp.array([1.0, 8.0, 15.0, 16.0, 24.0, 32.0])
  np.testing.assert_array_equal(quant.storage_bits(bits), [1.0, 8.0, 15.0, 32.0, 32.0, 32.0])
  # Traced: one program for every width.
  np.testing.assert_array_equal(jax.jit(quant.storage_bits)(jnp.float32(16.0)), 32.0)
  described = [quant.describe_bits(b) for b in (1, 8.0, np.float32(15), 16, 32.0)]
  assert described == [1, 8, 15, "off", "off"]
  assert quant.bits_or_off(None) == quant.OFF_BITS and quant.bits_or_off(0) == quant.OFF_BITS
  assert quant.bits_or_off(8) == 8.0
  with pytest.raises(errors.ConfigError, match="bits"):
    quant.bits_or_off(0.5)


def test_quant_spec_constructors():
  off = quant.QuantSpec.off()
  assert all(bool(quant.is_off(getattr(off, g).bits)) for g in quant.GROUPS)
  spec = quant.QuantSpec.uniform(4, 6, mode=quant.ScaleMode.LSQ, a_bar_param="cartesian")
  for group in quant.GROUPS:
    quant.validate_bits(getattr(spec, group).bits)
  assert float(spec.glu.bits) == 4 and float(spec.a_bar.bits) == 8
  assert float(spec.activations.bits) == 6 and float(spec.state.bits) == 6
  assert spec.glu.mode is quant.ScaleMode.LSQ and spec.a_bar.mode is quant.ScaleMode.TENSOR
  assert spec.a_bar_param == "cartesian"
  # Numbers are leaves, structure is static.
  assert len(jax.tree_util.tree_leaves(spec)) == len(quant.GROUPS)
  with pytest.raises(errors.ConfigError, match="bits"):
    quant.QuantSpec.uniform(0, 8)
  with pytest.raises(errors.ConfigError, match="polar"):
    quant.QuantSpec.uniform(4, 8, a_bar_param="spherical")


def test_stacked_quant_spec_vmaps():
  specs = [quant.QuantSpec.uniform(b, 8, a_bar_bits=b) for b in (2, 4, 8)]
  specs.append(quant.QuantSpec.off())
  stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *specs)
  assert stacked.glu.bits.shape == (4,)
  w = _x()
  a = _a_bar_samples()[:8]

  def fn(spec):
    return (
      quant.fake_quant(w, spec.glu.bits, quant.weight_scale(w, spec.glu)),
      quant.quantize_a_bar(a, spec.a_bar.bits, spec.a_bar_param),
    )

  w_q, a_q = jax.jit(jax.vmap(fn))(stacked)
  assert w_q.shape == (4, *w.shape) and a_q.shape == (4, 8)
  for i, spec in enumerate(specs):
    np.testing.assert_array_equal(w_q[i], fn(spec)[0])
    # exp / cos / sin may differ by an ulp between a fused jit program and eager ops.
    np.testing.assert_allclose(a_q[i], fn(spec)[1], rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(w_q[-1], w)  # The off spec is the float path.
  np.testing.assert_array_equal(a_q[-1], a)


def test_weight_scale_modes():
  w = _x()
  bits = jnp.float32(4)
  channel = quant.TensorQuant(bits, quant.ScaleMode.CHANNEL)
  np.testing.assert_array_equal(
    quant.weight_scale(w, channel), quant.absmax_scale(w, bits, axis=-1)
  )
  lsq = quant.TensorQuant(bits, quant.ScaleMode.LSQ)
  s0 = quant.lsq_init_scale(w, bits)
  np.testing.assert_array_equal(quant.weight_scale(w, lsq, lsq_scale=s0), s0)
  # The learned step gets the LSQ gradient times g = 1 / sqrt(numel * q_max).
  wrapped = lambda s: quant.fake_quant(w, bits, quant.weight_scale(w, lsq, lsq_scale=s))
  g_wrapped = jax.grad(lambda s: jnp.sum(wrapped(s)))(s0)
  g_raw = jax.grad(lambda s: jnp.sum(quant.fake_quant(w, bits, s)))(s0)
  np.testing.assert_allclose(g_wrapped, g_raw / np.sqrt(w.size * 7), rtol=1e-6)
  with pytest.raises(errors.ConfigError, match="lsq_scale"):
    quant.weight_scale(w, lsq)


# ----------------------------------------------------------------------------------------
# The QS4D authors' scheme.


def _qs4d_numpy(x, states):
  """The authors' formula, written independently: s = (q/2) / max|x|,
  x_q = clip(round(x s), -q/2, q/2) / s, in float64."""
  x = np.asarray(x, np.float64)
  s = (states / 2) / np.abs(x).max()
  return np.clip(np.round(x * s), -states / 2, states / 2) / s


def test_qs4d_grid_on_hand_made_values():
  x = jnp.array([-1.0, -0.5, -0.3, 0.0, 0.2, 0.26, 1.0])
  # q = 4: step 0.5, five levels.
  np.testing.assert_array_equal(quant.qs4d_quant(x, 4.0), [-1.0, -0.5, -0.5, 0.0, 0.0, 0.5, 1.0])
  # q = 2 is ternary {-1, 0, 1} * max|x|: everything below half the maximum goes to 0.
  np.testing.assert_array_equal(quant.qs4d_quant(x, 2.0), [-1.0, 0, 0, 0, 0, 0, 1.0])
  np.testing.assert_array_equal(quant.qs4d_quant(0.25 * x, 2.0), [-0.25, 0, 0, 0, 0, 0, 0.25])
  # Widths: b bits are q = 2^b states, so 1 bit is ternary and 4 bits have 17 levels.
  np.testing.assert_array_equal(quant.qs4d_states(jnp.arange(1.0, 6.0)), [2, 4, 8, 16, 32])
  np.testing.assert_array_equal(quant.qs4d_fake_quant(x, 1), quant.qs4d_quant(x, 2.0))
  codes, step = quant.qs4d_codes(_x(spread=3.0), 16.0)
  assert float(step) == pytest.approx(np.abs(np.asarray(_x(spread=3.0))).max() / 8)
  assert codes.min() >= -8 and codes.max() <= 8 and np.abs(np.asarray(codes)).max() == 8


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_qs4d_matches_the_formula_per_tensor(bits):
  x = np.random.default_rng(5).normal(size=(5, 7)).astype(np.float32)
  x[2, 3] = 6.0  # One outlier sets the step of the whole tensor (per tensor, not channel).
  states = 2.0**bits
  y = np.asarray(quant.qs4d_fake_quant(jnp.asarray(x), bits))
  np.testing.assert_allclose(y, _qs4d_numpy(x, states), rtol=1e-6, atol=1e-7)
  levels = np.unique(np.round(y / (6.0 / (states / 2))))
  assert levels.min() >= -states / 2 and levels.max() == states / 2
  assert len(np.unique(y)) <= states + 1


def test_qs4d_ste_is_the_identity():
  x = _x(spread=4.0)
  w = jnp.asarray(np.random.default_rng(1).normal(size=x.shape).astype(np.float32))
  for states in (2.0, 4.0, 16.0, 256.0):
    # Every element, the extremes on the clip boundary included, gets the gradient as is.
    gx = jax.grad(lambda x, q=states: jnp.sum(quant.qs4d_quant(x, q) * w))(x)
    np.testing.assert_array_equal(gx, w)
  gq = jax.grad(lambda q: jnp.sum(quant.qs4d_quant(x, q)))(4.0)
  assert float(gq) == 0.0


@pytest.mark.parametrize("bits", [16, 24, 32, 64])
def test_qs4d_off_is_float_path_bit_for_bit(bits):
  x = np.array([0.1234567, -0.0, 1e-30, -3e20, 7.0, np.pi], np.float32)
  y = quant.qs4d_fake_quant(jnp.asarray(x), jnp.float32(bits))
  np.testing.assert_array_equal(_bits_of(y), _bits_of(x))
  gx = jax.grad(lambda x: jnp.sum(quant.qs4d_fake_quant(x, bits) * 3.0))(jnp.asarray(x))
  np.testing.assert_array_equal(gx, 3.0)
  z = jnp.asarray(x[:3] + 1j * x[3:], jnp.complex64)
  np.testing.assert_array_equal(quant.qs4d_fake_quant_complex(z, bits), z)


def test_qs4d_zero_tensor_and_complex_pairs():
  zeros = jnp.zeros((3, 2))
  y, gx = jax.value_and_grad(lambda x: jnp.sum(quant.qs4d_fake_quant(x, 2) * 2.0))(zeros)
  assert float(y) == 0.0
  np.testing.assert_array_equal(gx, 2.0)
  # Complex values share one step over Re and Im, as the authors' C (its real view).
  z = jnp.array([0.8 - 0.1j, -0.3 + 0.35j], jnp.complex64)
  z_q = quant.qs4d_fake_quant_complex(z, 2)  # q = 4, step 0.4.
  np.testing.assert_allclose(z_q, [0.8 - 0.0j, -0.4 + 0.4j], rtol=1e-6)


def test_qs4d_traced_states_jit_vmap_match_a_loop_and_compile_once():
  traces = []

  def f(x, bits):
    traces.append(1)
    return quant.qs4d_fake_quant(x, bits)

  x = _x(spread=3.0)
  batched = jax.jit(jax.vmap(f, in_axes=(None, 0)))
  bits_grid = jnp.arange(1, 9, dtype=jnp.float32)
  y = batched(x, bits_grid)
  y_other = batched(x, bits_grid + 8)  # Other values, same shapes: no retrace.
  # One trace for both calls: jit compiles per trace, so the second call reused the first
  # program (a public check; jit's private cache size once read 0 here, a flaky test).
  assert len(traces) == 1
  for i, bits in enumerate(range(1, 9)):
    np.testing.assert_array_equal(y[i], quant.qs4d_quant(x, 2.0**bits))
  np.testing.assert_array_equal(y_other[-1], x)  # bits 16: off.
  grad_fn = jax.grad(lambda x, b: jnp.sum(quant.qs4d_fake_quant(x, b) ** 2))
  grads = jax.jit(jax.vmap(grad_fn, in_axes=(None, 0)))(x, bits_grid)
  for i, bits in enumerate(bits_grid):
    np.testing.assert_array_equal(grads[i], grad_fn(x, bits))


def _s4d_parameter_draws(rng, n_draws, shape=(3, 5)):
  """Random stored S4D parameters, typical and extreme: decays spread over many decades
  (most real parts then round to the authors' zero level), steps down to 1e-9 and up to
  10, imaginary parts up to 300 (an S4D-Inv spread)."""
  for _ in range(n_draws):
    spread = rng.uniform(0, 30)
    log_neg_re_a = rng.uniform(-spread, 3.0, shape)
    im_a = rng.uniform(-300, 300, shape) * rng.uniform(0, 1)
    log_step = rng.uniform(np.log(1e-9), np.log(10.0), shape[:1])
    yield (jnp.asarray(v, jnp.float32) for v in (log_neg_re_a, im_a, log_step))


def test_qs4d_quantized_a_bar_is_strictly_inside_the_unit_circle():
  rng = np.random.default_rng(6)
  zero_level_hits = 0
  for log_neg_re_a, im_a, log_step in _s4d_parameter_draws(rng, 200):
    a_bits, dt_bits = rng.integers(1, 16, size=2)
    a, step = quant.qs4d_continuous(log_neg_re_a, im_a, log_step, a_bits, dt_bits)
    a_bar, _ = ssm.discretize(a, jnp.ones_like(a), step[:, None], "zoh")
    a_bar = np.asarray(a_bar)
    assert a_bar.dtype == np.complex64
    assert np.abs(a_bar).max() < 1.0, (a_bits, dt_bits, np.abs(a_bar).max())
    assert np.abs(a_bar.astype(np.complex128)).max() < 1.0
    assert np.all(np.asarray(a.real) < 0)
    # The draws reach the case the guard exists for: the authors' grid rounds Re A to 0.
    re_authors = _qs4d_numpy(-np.exp(np.asarray(log_neg_re_a, np.float64)), 2.0**a_bits)
    zero_level_hits += int(np.any(re_authors == 0))
  assert zero_level_hits > 20
  # A vmapped width obeys the same bound.
  log_neg_re_a, im_a, log_step = next(_s4d_parameter_draws(np.random.default_rng(7), 1))
  batched = jax.vmap(quant.qs4d_continuous, in_axes=(None, None, None, 0, 0))
  bits = jnp.arange(1.0, 16.0)
  a, step = batched(log_neg_re_a, im_a, log_step, bits, bits)
  assert float(jnp.abs(jnp.exp(step[..., None] * a)).max()) < 1.0


def test_qs4d_continuous_off_is_the_float_path_and_ste_reaches_every_parameter():
  log_neg_re_a, im_a, log_step = next(_s4d_parameter_draws(np.random.default_rng(8), 1))
  a, step = quant.qs4d_continuous(log_neg_re_a, im_a, log_step, 16, 32)
  np.testing.assert_array_equal(a, ssm.decode_a(log_neg_re_a, im_a))
  np.testing.assert_array_equal(step, jnp.exp(log_step))

  def loss(params, bits):
    a, step = quant.qs4d_continuous(*params, bits, bits)
    return jnp.sum(a.real) + jnp.sum(a.imag) + jnp.sum(step)

  params = (log_neg_re_a, im_a, log_step)
  for bits in (1.0, 4.0, 16.0):
    g_re, g_im, g_step = jax.grad(loss)(params, bits)
    # Straight-through: the float path's gradient.
    np.testing.assert_allclose(g_re, -np.exp(np.asarray(log_neg_re_a)), rtol=1e-6)
    np.testing.assert_array_equal(g_im, 1.0)
    # d exp(log_step_q) / d log_step = exp(log_step_q) through the identity STE.
    np.testing.assert_allclose(g_step, jnp.exp(quant.qs4d_fake_quant(log_step, bits)), rtol=1e-6)


def test_qs4d_spec_constructor():
  spec = quant.QuantSpec.qs4d(4, 6, a_bits=3)
  assert spec.scheme == "qs4d"
  assert set(quant.SCHEME_GROUPS["qs4d"]) | set(quant.SCHEME_GROUPS["ssm_aimc"]) == set(
    quant.GROUPS
  )
  widths = {g: float(getattr(spec, g).bits) for g in quant.GROUPS}
  assert widths == {
    **{g: quant.OFF_BITS for g in ("a_bar", "b_bar", "d", "bias")},
    **{g: 4.0 for g in ("encoder", "log_dt", "c", "glu", "decoder")},
    "a": 3.0,
    "activations": 6.0,
    "state": 6.0,
  }
  # The ssm_aimc constructors leave the qs4d-only groups off.
  uniform = quant.QuantSpec.uniform(4, 8)
  assert uniform.scheme == "ssm_aimc" and bool(quant.is_off(uniform.a.bits))
  assert quant.QuantSpec.off(scheme="qs4d").scheme == "qs4d"
  with pytest.raises(errors.ConfigError, match="ssm_aimc"):
    quant.QuantSpec.off(scheme="bitnet")
