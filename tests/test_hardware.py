"""Tests of the analog substrate (ssm_aimc.hardware): device statistics, noise terms, the
analog matrix product and its injection into the model.

Statistical checks compare sample moments of >= 1e5 draws against closed forms written out
here from docs/design.md §2 (never by calling the device's own helper). With n draws the standard
error of a sample mean is std / sqrt(n) and that of a sample std is std / sqrt(2 n), so at
n = 2e5 a 2 % tolerance is about 9 (mean, relative to the std) or 13 (std) standard errors:
tight enough to catch a wrong formula, loose enough never to fail by chance.
"""

import dataclasses
import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_aimc import errors, models
from ssm_aimc.hardware import analog, devices, noise

N_DRAWS = 200_000
REL_TOL = 0.02

# docs/design.md §2 constants, written out independently of devices.py.
PCM_G_MAX = 25.0
PCM_T0 = 20.0
PCM_T_READ = 250e-9
RRAM_G_MAX = 100.0

TINY = models.ModelConfig(d_model=8, n_layers=1, d_state=4, dropout=0.0)


def _key(i: int) -> jax.Array:
  return jax.random.PRNGKey(i)


def _stats(x) -> tuple[float, float]:
  """Sample mean and std in float64."""
  x = np.asarray(x, np.float64)
  return float(x.mean()), float(x.std())


def _assert_rel(actual: float, expected: float, rel: float = REL_TOL):
  assert abs(actual - expected) <= rel * abs(expected), (actual, expected)


# ----------------------------------------------------------------------------------------
# Closed forms of docs/design.md §2.


def _pcm_prog_std(g_hat: float) -> float:
  """Programming std (uS) = 0.26348 + 1.9650 g_hat - 1.1731 g_hat^2."""
  return 0.26348 + 1.9650 * g_hat - 1.1731 * g_hat**2


def _pcm_nu(g_hat: float) -> tuple[float, float]:
  """Drift exponent (mean, std) before the clip at 0."""
  log_g = math.log(g_hat)
  mean = min(max(-0.0155 * log_g + 0.0244, 0.049), 0.1)
  std = min(max(-0.0125 * log_g - 0.0059, 0.008), 0.045)
  return mean, std


def _pcm_read_std(g_hat: float, g_t: float, t: float) -> float:
  """Read std = G(t) Q_s sqrt(ln((t + t_read) / (2 t_read))), Q_s = min(0.0088/g_hat^0.65, 0.2)."""
  q_s = min(0.0088 / g_hat**0.65, 0.2)
  return g_t * q_s * math.sqrt(math.log((t + PCM_T_READ) / (2 * PCM_T_READ)))


# ----------------------------------------------------------------------------------------
# Jitted samplers (the device is static: a frozen, hashable dataclass).


@functools.partial(jax.jit, static_argnames=("device", "n"))
def _program(key, g, device, scale=1.0, n=N_DRAWS):
  return noise.program_conductances(key, jnp.full((n,), g, jnp.float32), device, scale)


@functools.partial(jax.jit, static_argnames=("device", "n"))
def _read(key, g_target, g_t, t, device, n=N_DRAWS):
  """n reads of a device: g_t + read_noise_std eps, the Gaussian the analog layer samples."""
  g_target, g_t = jnp.full((n,), g_target, jnp.float32), jnp.full((n,), g_t, jnp.float32)
  return g_t + noise.read_noise_std(g_target, g_t, t, device) * jax.random.normal(key, (n,))


@functools.partial(jax.jit, static_argnames=("device", "n"))
def _nu(key, g, device, n=N_DRAWS):
  return noise.drift_exponents(key, jnp.full((n,), g, jnp.float32), device)


# ----------------------------------------------------------------------------------------
# Programming and read noise against the presets' closed forms.


@pytest.mark.parametrize("g_hat", [0.1, 0.5, 1.0])
def test_pcm_programming_noise_matches_polynomial(g_hat):
  """mean = g, std = 0.26348 + 1.9650 g_hat - 1.1731 g_hat^2 (g >= 5.6 std: no clip at 0)."""
  g = g_hat * PCM_G_MAX
  std_ref = _pcm_prog_std(g_hat)
  mean, std = _stats(_program(_key(0), g, devices.PCM_LIKE))
  assert abs(mean - g) <= REL_TOL * std_ref
  _assert_rel(std, std_ref)
  _, half_std = _stats(_program(_key(1), g, devices.PCM_LIKE, 0.5))
  _assert_rel(half_std, 0.5 * std_ref)


@pytest.mark.parametrize("device", [devices.PCM_LIKE, devices.RRAM_TAOX], ids=lambda d: d.name)
def test_zero_programming_scale_returns_the_target_exactly(device):
  g = jax.random.uniform(_key(2), (1000,), minval=device.g_min_us, maxval=device.g_max_us)
  out = noise.program_conductances(_key(3), g, device, scale=jnp.float32(0.0))
  np.testing.assert_array_equal(np.asarray(out), np.asarray(g))


@pytest.mark.parametrize("g", [20.0, 60.0])
def test_rram_programming_and_read_noise(g):
  """Programming std = 1 % of g_max = 1 uS at any target; read std = 0.5 % of G."""
  mean, std = _stats(_program(_key(4), g, devices.RRAM_TAOX))
  assert abs(mean - g) <= REL_TOL * 0.01 * RRAM_G_MAX
  _assert_rel(std, 0.01 * RRAM_G_MAX)
  mean, std = _stats(_read(_key(5), g, g, 3600.0, devices.RRAM_TAOX))
  assert abs(mean - g) <= REL_TOL * 0.005 * g
  _assert_rel(std, 0.005 * g)


# ----------------------------------------------------------------------------------------
# Drift.


def _drift_grid() -> jax.Array:
  """Times from 0 to 1e7 s, dense around t0 = 20 s."""
  return jnp.concatenate([jnp.asarray([0.0, 1.0, 10.0, 19.99, 20.0]), jnp.logspace(1.31, 7, 40)])


def _drifting_devices(n: int = 4096) -> tuple[jax.Array, jax.Array]:
  """(g_prog, nu >= 0) for n PCM devices, a quarter of them with nu = 0."""
  g = jax.random.uniform(_key(6), (n,), minval=0.0, maxval=PCM_G_MAX)
  nu = noise.drift_exponents(_key(7), g, devices.PCM_LIKE)
  return g, nu.at[: n // 4].set(0.0)


def test_drift_is_monotone_and_matches_the_power_law():
  """G(t) = G_prog for t <= t0, else G_prog (t / t0)^-nu; non-increasing in t."""
  g, nu = _drifting_devices()
  assert np.all(np.asarray(nu) >= 0)
  ts = _drift_grid()
  out = np.asarray(jax.vmap(lambda t: noise.drift(g, nu, t, devices.PCM_LIKE))(ts))
  assert np.all(np.diff(out, axis=0) <= 0)
  before = np.asarray(ts) <= PCM_T0
  np.testing.assert_array_equal(out[before], np.broadcast_to(np.asarray(g), out[before].shape))
  t64 = np.asarray(ts, np.float64)[:, None]
  ref = np.asarray(g, np.float64) * np.maximum(t64 / PCM_T0, 1.0) ** -np.asarray(nu, np.float64)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("g_hat", [0.3, 1.0])
def test_drift_exponent_statistics(g_hat):
  """nu ~ N(clip(-0.0155 ln g_hat + 0.0244, .049, .1), clip(-0.0125 ln g_hat - .0059, .008,
  .045)); at these g_hat the mean is > 5 std from 0, so the clip at 0 is negligible."""
  mean_ref, std_ref = _pcm_nu(g_hat)
  assert mean_ref > 5 * std_ref
  mean, std = _stats(_nu(_key(8), g_hat * PCM_G_MAX, devices.PCM_LIKE))
  _assert_rel(mean, mean_ref)
  _assert_rel(std, std_ref)


def test_drift_compensation_restores_the_mean():
  """alpha = sum G_prog / sum G(t), so alpha mean(G(t)) = mean(G_prog)."""
  g, nu = _drifting_devices()
  g_t = noise.drift(g, nu, 86400.0, devices.PCM_LIKE)
  alpha = float(noise.drift_compensation(g, g_t))
  assert alpha > 1.0
  _assert_rel(alpha * np.asarray(g_t, np.float64).mean(), np.asarray(g, np.float64).mean(), 1e-5)
  assert float(noise.drift_compensation(g, g)) == pytest.approx(1.0, rel=1e-6)
  assert float(noise.drift_compensation(jnp.zeros(3), jnp.zeros(3))) == 1.0


def test_device_without_drift_does_not_drift():
  g = jnp.linspace(1.0, 100.0, 7)
  np.testing.assert_array_equal(
    noise.drift(g, jnp.full_like(g, 0.1), 1e6, devices.RRAM_TAOX), np.asarray(g)
  )
  np.testing.assert_array_equal(noise.drift_exponents(_key(0), g, devices.RRAM_TAOX), 0.0)


# ----------------------------------------------------------------------------------------
# PCM read noise.


@pytest.mark.parametrize("g_hat", [0.4, 0.002])
def test_pcm_read_noise_grows_with_time_and_matches_closed_form(g_hat):
  """std = G(t) Q_s sqrt(ln((t + t_read)/(2 t_read))); g_hat = 0.002 hits Q_s's cap of 0.2."""
  g = g_hat * PCM_G_MAX
  stds = []
  for i, t in enumerate([60.0, 3600.0, 86400.0]):
    g_t = g * (t / PCM_T0) ** -0.05  # any drifted value: the formula scales with G(t)
    mean, std = _stats(_read(_key(10 + i), g, g_t, t, devices.PCM_LIKE))
    std_ref = _pcm_read_std(g_hat, g_t, t)
    assert abs(mean - g_t) <= REL_TOL * std_ref
    _assert_rel(std, std_ref)
    stds.append(std / g_t)
  assert stds[0] < stds[1] < stds[2]


def test_pcm_read_noise_scale_zero_is_no_read_noise():
  g = jnp.full((100,), 10.0)
  std = noise.read_noise_std(g, g * 0.9, 3600.0, devices.PCM_LIKE, jnp.float32(0.0))
  np.testing.assert_array_equal(np.asarray(std), np.zeros(100))


# ----------------------------------------------------------------------------------------
# Stuck-at faults and conductance levels.


def test_stuck_at_fractions_and_untouched_devices():
  """Counts at g_min / g_max within 5 binomial sigmas of n p (2^21 devices: 5 sigma is
  1.0 % of the count at p = 0.05 and 1.7 % at p = 0.02); the rest are unchanged and keep
  their gradient, the stuck ones have none."""
  n, p_min, p_max = 2**21, 0.05, 0.02
  device = devices.RRAM_TAOX
  g = jax.random.uniform(_key(20), (n,), minval=device.g_min_us + 1, maxval=device.g_max_us - 1)
  f = jax.jit(lambda g: noise.stuck_at(_key(21), g, p_min, p_max, device))
  out, grad = np.asarray(f(g)), np.asarray(jax.jit(jax.grad(lambda g: jnp.sum(f(g))))(g))
  at_min, at_max = out == device.g_min_us, out == device.g_max_us
  for count, p in ((at_min.sum(), p_min), (at_max.sum(), p_max)):
    assert abs(count - n * p) <= 5 * math.sqrt(n * p * (1 - p)), (count, n * p)
  free = ~(at_min | at_max)
  np.testing.assert_array_equal(out[free], np.asarray(g)[free])
  np.testing.assert_array_equal(grad, free.astype(np.float32))


@pytest.mark.parametrize("levels", [2, 5, 2048])
def test_quantize_levels_on_grid_with_identity_gradient(levels):
  """Outputs are g_min + k (g_max - g_min)/(levels - 1), k in 0..levels-1, the nearest level
  to clip(g); the backward pass is the identity (STE), also for a traced level count."""
  device = devices.RRAM_TAOX
  g_min, g_max = device.g_min_us, device.g_max_us
  step = (g_max - g_min) / (levels - 1)
  g = jax.random.uniform(_key(22), (5000,), minval=-10.0, maxval=120.0)
  q = np.asarray(jax.jit(noise.quantize_levels, static_argnums=2)(g, levels, device), np.float64)
  k = (q - g_min) / step
  np.testing.assert_allclose(k, np.round(k), atol=1e-3)
  assert k.min() > -1e-3 and k.max() < levels - 1 + 1e-3
  assert np.all(np.abs(q - np.clip(np.asarray(g), g_min, g_max)) <= step / 2 * (1 + 1e-4) + 1e-4)
  cotangent = jax.random.normal(_key(23), g.shape)
  _, vjp = jax.vjp(lambda g, lv: noise.quantize_levels(g, lv, device), g, jnp.float32(levels))
  np.testing.assert_array_equal(np.asarray(vjp(cotangent)[0]), np.asarray(cotangent))


# ----------------------------------------------------------------------------------------
# PRNG keys: the same key gives the same chip and the same reads.


def test_program_conductances_same_key_same_devices():
  g = jnp.full((1000,), 10.0)
  a = noise.program_conductances(_key(30), g, devices.PCM_LIKE)
  b = noise.program_conductances(_key(30), g, devices.PCM_LIKE)
  c = noise.program_conductances(_key(31), g, devices.PCM_LIKE)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert np.all(np.asarray(a) != np.asarray(c))


def _tiny_model():
  model = models.get_model("s4d", TINY, 3)
  x = jax.random.normal(_key(40), (2, 12, 2))
  return model, model.init(_key(41), x)["params"], x


# One noisy PCM spec for every model-level test: an analog model takes ~10 s to compile on a
# 2-core CPU (mostly the PRNG), so the tests share one compiled forward + backward pass.
MODEL_SPEC = analog.AnalogSpec.make(
  devices.PCM_LIKE,
  recurrence="residual",
  dac_bits=8,
  adc_bits=8,
  output_noise=0.02,
  stuck_min=0.01,
)
LABELS = jnp.asarray([0, 2])


@functools.partial(jax.jit, static_argnums=0)
def _logits_and_grads(model, params, x, spec, k_program, k_read):
  """(logits, d cross-entropy / d params) of the analog model."""

  def loss(params):
    logits = model.apply(
      {"params": params}, x, analog=spec, rngs={"program": k_program, "read": k_read}
    )
    log_p = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_p, LABELS[:, None], axis=1)), logits

  (_, logits), grads = jax.value_and_grad(loss, has_aux=True)(params)
  return logits, grads


def _logits(spec, k_program, k_read) -> np.ndarray:
  model, params, x = _tiny_model()
  return np.asarray(_logits_and_grads(model, params, x, spec, _key(k_program), _key(k_read))[0])


def _continuous(spec: analog.AnalogSpec, **zeros) -> analog.AnalogSpec:
  """`spec` with its ADC switched off through the traced bit width (32: off) and the named
  fields set to traced zeros; the compiled program is shared. (An 8-bit ADC rounds many of
  the tiny model's logits to the same level, which would hide a changed key.)"""
  return dataclasses.replace(
    spec, adc_bits=jnp.float32(32.0), **{k: jnp.float32(v) for k, v in zeros.items()}
  )


def test_analog_model_keys():
  """Same (program, read) keys -> identical logits; another program key -> other logits."""
  spec = _continuous(MODEL_SPEC)
  a, b, c = _logits(spec, 1, 2), _logits(spec, 1, 2), _logits(spec, 3, 2)
  np.testing.assert_array_equal(a, b)
  assert np.all(a != c)


def test_analog_model_without_rngs_is_a_config_error():
  model, params, x = _tiny_model()
  with pytest.raises(errors.ConfigError, match="program"):
    model.apply({"params": params}, x, analog=analog.AnalogSpec.make(devices.IDEAL))


# ----------------------------------------------------------------------------------------
# Read keys at model level.


def test_read_key_changes_outputs_only_with_read_noise():
  """Fixed chip (program key), new read key: new logits with PCM read and output noise;
  identical logits with read_noise_scale = 0 and output_noise = 0 (traced zeros, so the
  compiled program is shared; the DAC and the stuck devices are deterministic)."""
  noisy = _continuous(MODEL_SPEC)
  assert float(noisy.read_noise_scale) > 0 and noisy.device.has_read_noise
  assert np.all(_logits(noisy, 1, 2) != _logits(noisy, 1, 3))
  quiet = _continuous(MODEL_SPEC, read_noise_scale=0.0, output_noise=0.0)
  np.testing.assert_array_equal(_logits(quiet, 1, 2), _logits(quiet, 1, 3))
  assert np.all(_logits(quiet, 1, 2) != _logits(quiet, 4, 2))


# ----------------------------------------------------------------------------------------
# Gradients.


def _matmul_inputs():
  x = jax.random.normal(_key(50), (3, 5, 6))
  w = jax.random.normal(_key(51), (6, 4)) * 0.5
  return x, w


def test_analog_matmul_gradients_are_finite():
  x, w = _matmul_inputs()
  spec = analog.AnalogSpec.make(
    devices.PCM_LIKE, dac_bits=8, adc_bits=8, output_noise=0.02, stuck_min=0.01
  )
  loss = lambda x, w: jnp.sum(jnp.square(analog.analog_matmul(_key(1), _key(2), x, w, 3.0, spec)))
  gx, gw = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)
  chex.assert_tree_all_finite((gx, gw))
  assert np.any(np.asarray(gw) != 0)


def test_analog_model_gradients_are_finite():
  model, params, x = _tiny_model()
  _, grads = _logits_and_grads(model, params, x, MODEL_SPEC, _key(1), _key(2))
  chex.assert_tree_all_finite(grads)
  assert any(np.any(np.asarray(g) != 0) for g in jax.tree_util.tree_leaves(grads))


@pytest.mark.parametrize("device", [devices.PCM_LIKE, devices.RRAM_TAOX], ids=lambda d: d.name)
def test_zero_noise_gradient_is_the_noiseless_one(device):
  """With programming and read noise scaled by a traced 0 and no drift, d/dw of the analog
  product is d/dw of x @ w (the forward still carries "+ 0 * eps")."""
  x, w = _matmul_inputs()
  spec = analog.AnalogSpec.make(device, drift=False)
  cotangent = jax.random.normal(_key(52), (3, 5, 4))

  @jax.jit
  def grad_w(scale):
    return jax.grad(
      lambda w: jnp.sum(
        cotangent * analog.analog_matmul(_key(1), _key(2), x, w, 3.0, spec.scaled(scale))
      )
    )(w)

  expected = jax.grad(lambda w: jnp.sum(cotangent * (x @ w)))(w)
  np.testing.assert_allclose(np.asarray(grad_w(0.0)), np.asarray(expected), rtol=1e-5, atol=1e-5)
  assert not np.allclose(np.asarray(grad_w(1.0)), np.asarray(expected), rtol=1e-3, atol=1e-3)


# ----------------------------------------------------------------------------------------
# The ideal device is the digital model.


@pytest.mark.parametrize("recurrence", analog.RECURRENCES)
def test_ideal_device_equals_digital_bit_for_bit(recurrence):
  model, params, x = _tiny_model()
  spec = analog.AnalogSpec.make(devices.IDEAL, recurrence=recurrence)
  digital = model.apply({"params": params}, x)
  out = model.apply({"params": params}, x, analog=spec, rngs={"program": _key(1), "read": _key(2)})
  np.testing.assert_array_equal(np.asarray(out), np.asarray(digital))


@pytest.mark.parametrize("mapping", analog.MAPPINGS)
def test_ideal_analog_matmul_is_x_at_w(mapping):
  x, w = _matmul_inputs()
  spec = analog.AnalogSpec.make(devices.IDEAL, mapping=mapping)
  out = analog.analog_matmul(_key(1), _key(2), x, w, 3.0, spec)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(x @ w))


# ----------------------------------------------------------------------------------------
# Column vs tensor mapping.


def test_column_mapping_protects_small_columns():
  """Programming noise only (PCM, no read noise, no drift): a column 100x smaller than the
  largest gets the full conductance range with per-column mapping, so its relative weight
  error is much smaller than with per-tensor mapping; the largest column is unaffected."""
  w = jax.random.normal(_key(60), (16, 2)) * jnp.asarray([1.0, 0.01])
  eye = jnp.eye(16)

  def rel_errors(mapping):
    spec = analog.AnalogSpec.make(
      devices.PCM_LIKE, read_noise_scale=0.0, drift=False, mapping=mapping
    )
    keys = jax.random.split(_key(61), 512)
    w_eff = jax.jit(jax.vmap(lambda k: analog.analog_matmul(k, _key(62), eye, w, 1.0, spec)))(keys)
    err = jnp.sqrt(jnp.mean(jnp.square(w_eff - w), axis=(0, 1)))
    return np.asarray(err / jnp.sqrt(jnp.mean(jnp.square(w), axis=0)))

  column, tensor = rel_errors("column"), rel_errors("tensor")
  assert column[1] < 0.1 * tensor[1], (column, tensor)
  np.testing.assert_allclose(column[0], tensor[0], rtol=1e-3)


def test_g_max_fraction_scales_constant_programming_noise_by_its_inverse():
  """A device whose programming std is a fixed share of g_max (0.02 x 15 uS = 0.3 uS), on a
  range of 10 uS above g_min = 5 uS (no clipping at 0): the largest weight at a fraction f
  of the range gives a weight error of std sqrt(2) x 0.3 / (10 f) x max|w|, closed form."""
  device = devices.ConstantNoiseDevice(
    name="c", g_min_us=5.0, g_max_us=15.0, prog_noise_of_gmax=0.02
  )
  w = jax.random.normal(_key(63), (64, 3))
  w_max = jnp.max(jnp.abs(w), axis=0, keepdims=True)
  keys = jax.random.split(_key(64), 256)

  def delta_std(fraction):
    spec = analog.AnalogSpec.make(device, drift=False, g_max_fraction=fraction)
    deltas = jax.vmap(lambda k: analog.program(k, w, spec, (0,)).delta)(keys)
    return np.asarray(jnp.std(deltas, axis=0) / w_max)  # (64, 3), per weight

  for fraction in (1.0, 0.5, 0.25):
    # Each weight is a differential pair: two independent draws, sqrt(2) x one device.
    expected = math.sqrt(2) * 0.03 / fraction
    np.testing.assert_allclose(np.mean(delta_std(fraction)), expected, rtol=0.03)


def test_g_max_margin_raises_pcm_weight_error():
  """PCM's programming std has a floor at G = 0 and grows sub-linearly with G, so a margin
  below g_max (the largest weight at 0.5 g_max) raises the relative weight error."""
  w = jax.random.normal(_key(66), (32, 4))
  keys = jax.random.split(_key(67), 256)

  def rel_error(fraction):
    spec = analog.AnalogSpec.make(
      devices.PCM_LIKE, read_noise_scale=0.0, drift=False, g_max_fraction=fraction
    )
    deltas = jax.vmap(lambda k: analog.program(k, w, spec, (0,)).delta)(keys)
    return float(jnp.sqrt(jnp.mean(jnp.square(deltas))) / jnp.sqrt(jnp.mean(jnp.square(w))))

  assert rel_error(0.5) > 1.3 * rel_error(1.0)


# ----------------------------------------------------------------------------------------
# DAC and ADC.


def test_dac_quantizes_and_clips_inputs():
  """Ideal device, 4-bit DAC over [-r, r]: x -> (r/7) clip(round(7 x / r), -7, 7)."""
  x, w = _matmul_inputs()
  r = 1.2
  assert np.any(np.abs(np.asarray(x)) > r)
  spec = analog.AnalogSpec.make(devices.IDEAL, dac_bits=4)
  out = analog.analog_matmul(_key(1), _key(2), x, w, r, spec)
  step = r / 7
  x_q = step * np.clip(np.round(np.asarray(x, np.float64) / step), -7, 7)
  np.testing.assert_allclose(np.asarray(out), x_q @ np.asarray(w, np.float64), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mapping", analog.MAPPINGS)
def test_adc_output_on_grid_and_clipped(mapping):
  """Ideal device, 5-bit ADC with bound b: outputs are multiples of b r max|w| / 15 (max per
  column for column mapping) and clipped at b r max|w|."""
  x, w = _matmul_inputs()
  r, bound, q = 3.0, 0.5, 15
  spec = analog.AnalogSpec.make(devices.IDEAL, adc_bits=5, adc_bound=bound, mapping=mapping)
  out = np.asarray(analog.analog_matmul(_key(1), _key(2), x, w, r, spec), np.float64)
  w64 = np.asarray(w, np.float64)
  w_max = np.abs(w64).max(axis=0) if mapping == "column" else np.abs(w64).max()
  limit = bound * r * w_max
  step = limit / q
  codes = out / step
  np.testing.assert_allclose(codes, np.round(codes), atol=1e-3)
  assert np.all(np.abs(out) <= limit * (1 + 1e-6))
  exact = np.asarray(x, np.float64) @ w64
  clipped = np.abs(exact) > limit
  assert clipped.any() and (~clipped).any()
  ref = step * np.clip(np.round(exact / step), -q, q)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------
# The spec's device-dependent terms.

_PERIPHERY = dict(dac_bits=6, adc_bits=7, adc_bound=4.0, output_noise=0.05, mapping="tensor")


def _product(spec: analog.AnalogSpec) -> np.ndarray:
  """One small analog product, jitted with the spec traced (as the evaluators run it)."""
  x, w = _matmul_inputs()
  fn = jax.jit(lambda s: analog.analog_matmul(_key(60), _key(61), x, w, 2.0, s))
  return np.asarray(fn(spec))


@pytest.mark.parametrize(
  "device, other",
  [(devices.PCM_LIKE, devices.IDEAL), (devices.RRAM_TAOX, devices.PCM_LIKE)],
  ids=["pcm-to-ideal", "rram-to-pcm"],
)
def test_replacing_the_device_gives_that_devices_spec(device, other):
  """Drift and conductance levels follow the device: a spec whose device is replaced gives
  the numbers (and the summary) of a spec made for the other device."""
  spec = analog.AnalogSpec.make(device, stuck_min=0.01, t_inference=86400.0, **_PERIPHERY)
  made = analog.AnalogSpec.make(other, stuck_min=0.01, t_inference=86400.0, **_PERIPHERY)
  replaced = dataclasses.replace(spec, device=other)
  assert (replaced.has_drift, replaced.has_levels) == (made.has_drift, made.has_levels)
  np.testing.assert_array_equal(_product(replaced), _product(made))
  assert replaced.summary() == made.summary()
  assert not np.array_equal(_product(spec), _product(made))


def test_device_levels_are_a_traced_count():
  """The device's own levels (levels=None) and the same count asked for explicitly are the
  same grid, bit for bit, in one compiled program."""
  rram = analog.AnalogSpec.make(devices.RRAM_TAOX, **_PERIPHERY)
  explicit = analog.AnalogSpec.make(devices.RRAM_TAOX, levels=2048, **_PERIPHERY)
  assert rram.has_levels and float(rram.level_count()) == 2048.0
  np.testing.assert_array_equal(_product(rram), _product(explicit))
  # An explicit count stays when the device changes; the device's own goes with it.
  assert dataclasses.replace(explicit, device=devices.PCM_LIKE).has_levels
  assert not dataclasses.replace(rram, device=devices.PCM_LIKE).has_levels
  coarse = analog.AnalogSpec.make(devices.PCM_LIKE, levels=4, **_PERIPHERY)
  assert float(coarse.level_count()) == 4.0
  assert not np.array_equal(_product(coarse), _product(analog.AnalogSpec.make(**_PERIPHERY)))


def test_converters_only_is_the_periphery_on_the_ideal_device():
  """converters_only is deploy's spec of the converters alone (the ideal device with drift,
  stuck-at faults and levels switched off) and the ideal device made with the same
  periphery, bit for bit."""
  spec = analog.AnalogSpec.make(
    devices.RRAM_TAOX, stuck_min=0.02, stuck_max=0.01, t_inference=86400.0, **_PERIPHERY
  )
  only = spec.converters_only()
  by_hand = dataclasses.replace(
    spec, device=devices.IDEAL, drift=False, stuck=False, quantize_levels=False
  )
  ideal = analog.AnalogSpec.make(devices.IDEAL, drift=False, **_PERIPHERY)
  np.testing.assert_array_equal(_product(only), _product(by_hand))
  np.testing.assert_array_equal(_product(only), _product(ideal))
  summary = only.summary()
  assert summary["device"]["name"] == "ideal" and summary["dac"] and summary["adc"]
  assert not (summary["drift"] or summary["stuck"] or summary["quantize_levels"])
  assert summary["levels"] == 0.0


# ----------------------------------------------------------------------------------------
# Errors.


@pytest.mark.parametrize(
  "kwargs",
  [
    dict(prog_noise_scale=-1.0),
    dict(read_noise_scale=-0.1),
    dict(t_inference=-1.0),
    dict(stuck_min=0.6, stuck_max=0.5),
    dict(mapping="row"),
    dict(recurrence="analog"),
    dict(g_max_fraction=0.0),
    dict(g_max_fraction=1.2),
  ],
  ids=lambda kw: ",".join(kw),
)
def test_analog_spec_rejects_bad_settings(kwargs):
  with pytest.raises(errors.ConfigError):
    analog.AnalogSpec.make(devices.PCM_LIKE, **kwargs)


def test_device_rejects_bad_ranges_and_tables():
  with pytest.raises(errors.ConfigError):
    devices.ConstantNoiseDevice(name="x", g_min_us=10, g_max_us=5)
  with pytest.raises(errors.ConfigError):
    devices.MeasuredDevice(name="unsorted", table=((10.0, 10.0, 1.0), (5.0, 5.0, 1.0)))
  with pytest.raises(errors.ConfigError):
    devices.MeasuredDevice(name="one_row", table=((10.0, 10.0, 1.0),))


def test_measured_device_csv_errors(tmp_path):
  with pytest.raises(errors.DataError):
    devices.MeasuredDevice.from_csv(str(tmp_path / "missing.csv"))
  bad_header = tmp_path / "bad_header.csv"
  bad_header.write_text("target,mean,std\n0,0,0.1\n10,10,0.5\n")
  with pytest.raises(errors.ConfigError):
    devices.MeasuredDevice.from_csv(str(bad_header))
  not_numbers = tmp_path / "not_numbers.csv"
  not_numbers.write_text("target_us,mean_us,std_us\n0,0,0.1\n10,ten,0.5\n")
  with pytest.raises(errors.ConfigError):
    devices.MeasuredDevice.from_csv(str(not_numbers))


@pytest.mark.parametrize(
  "rows, message",
  [
    (
      "0,0.5,0.1\n10,-3,0.5\n20,19,1.5",
      "row 2 (target_us=10, mean_us=-3, std_us=0.5) has a mean conductance <= 0",
    ),
    (
      "0,0,0.1\n10,11,0.5\n20,19,1.5",
      "row 1 (target_us=0, mean_us=0, std_us=0.1) has a mean conductance <= 0",
    ),
    (
      "0,0.5,0.1\n10,11,0.5\n20,21,1.5",
      "row 3 (target_us=20, mean_us=21, std_us=1.5) has a mean conductance above the "
      "device's g_max (20 uS)",
    ),
    (
      "0,0.5,0.1\n20,19,1.5\n10,11,0.5",
      "row 3 (target_us=10, mean_us=11, std_us=0.5) has a target not above",
    ),
    (
      "0,0.5,0.1\n10,11,0.5\n10,12,0.5\n20,19,1.5",
      "row 3 (target_us=10, mean_us=12, std_us=0.5) has a target not above",
    ),
    (
      "0,0.5,0.1\n10,11,-0.5\n20,19,1.5",
      "row 2 (target_us=10, mean_us=11, std_us=-0.5) has a negative",
    ),
  ],
  ids=["negative_mean", "zero_mean", "mean_above_g_max", "unsorted", "duplicate", "negative_std"],
)
def test_measured_device_refuses_impossible_rows_naming_file_and_row(tmp_path, rows, message):
  path = tmp_path / "chip.csv"
  path.write_text(f"target_us,mean_us,std_us\n{rows}\n")
  with pytest.raises(errors.ConfigError) as e:
    devices.MeasuredDevice.from_csv(str(path))
  assert str(e.value).startswith(f"Device table {path}: ") and message in str(e.value)


# ----------------------------------------------------------------------------------------
# Measured device table.


def test_measured_device_interpolates_mean_and_std(tmp_path):
  """At a target between two rows, mean and std are the linear interpolations of the rows'
  measured mean and std."""
  rows = [(0.0, 0.5, 0.1), (10.0, 11.0, 0.5), (20.0, 19.0, 1.5)]
  path = tmp_path / "chip.csv"
  path.write_text("target_us,mean_us,std_us\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
  device = devices.MeasuredDevice.from_csv(str(path))
  assert (device.name, device.g_min_us, device.g_max_us) == ("chip", 0.0, 20.0)
  target = 12.5
  (t0, m0, s0), (t1, m1, s1) = rows[1], rows[2]
  frac = (target - t0) / (t1 - t0)
  mean_ref, std_ref = m0 + frac * (m1 - m0), s0 + frac * (s1 - s0)
  mean, std = _stats(_program(_key(70), target, device))
  assert abs(mean - mean_ref) <= REL_TOL * std_ref
  _assert_rel(std, std_ref)


def test_zero_read_noise_scale_adds_exactly_nothing():
  """read_noise_scale 0 leaves outputs and coefficients untouched by the read key, even
  where they are exactly zero (the variance floor must not leak noise)."""
  spec = analog.AnalogSpec.make(
    devices.PCM_LIKE, read_noise_scale=0.0, prog_noise_scale=0.0, drift=False
  )
  x = jnp.zeros((2, 3)).at[0].set(1.0)
  w = jnp.asarray([[1.0, -0.5], [0.25, 0.0], [0.3, 2.0]])
  outs = [analog.analog_matmul(_key(0), _key(k), x, w, 1.0, spec) for k in (1, 2)]
  np.testing.assert_array_equal(outs[0], outs[1])
  np.testing.assert_array_equal(outs[0][1], np.zeros(2))
  p = {
    "a_bar": jnp.asarray([[0.9 + 0.1j]]),
    "b_bar": jnp.asarray([[1.0 + 0j]]),
    "c": jnp.asarray([[0.5 - 0.5j]]),
    "d": jnp.asarray([0.0]),
  }
  ssm = [analog.analog_ssm(_key(0), _key(k), p, spec) for k in (1, 2)]
  for name in p:
    np.testing.assert_array_equal(ssm[0][name], ssm[1][name])
  assert float(ssm[0]["d"][0]) == 0.0


def _ranged(key, n):
  """Real (n,) in [-2, 3] and complex (n,) with real part in [0, 1], imaginary in [-8, 8]."""
  k1, k2, k3 = jax.random.split(key, 3)
  real = jax.random.uniform(k1, (n,), minval=-2.0, maxval=3.0)
  comp = jax.lax.complex(
    jax.random.uniform(k2, (n,)), jax.random.uniform(k3, (n,), minval=-8.0, maxval=8.0)
  )
  return real, comp


def test_relative_noise_std_is_sigma_times_the_range_of_each_part():
  real, comp = _ranged(jax.random.PRNGKey(0), 100_000)
  sigma = 0.02
  out = noise.relative_noise(jax.random.PRNGKey(1), real, sigma)
  spread = float(real.max() - real.min())
  assert float(jnp.std(out - real)) == pytest.approx(sigma * spread, rel=0.02)
  out = noise.relative_noise(jax.random.PRNGKey(2), comp, sigma)
  assert out.dtype == comp.dtype
  for part in (jnp.real, jnp.imag):
    spread = float(part(comp).max() - part(comp).min())
    assert float(jnp.std(part(out) - part(comp))) == pytest.approx(sigma * spread, rel=0.02)
  # Separate draws for the two parts.
  assert abs(float(jnp.corrcoef(jnp.real(out - comp), jnp.imag(out - comp))[0, 1])) < 0.02


def test_relative_noise_at_zero_is_the_input_bit_for_bit():
  real, comp = _ranged(jax.random.PRNGKey(3), 64)
  for x in (real, comp):
    np.testing.assert_array_equal(noise.relative_noise(jax.random.PRNGKey(4), x, 0.0), x)


def test_relative_noise_vmapped_over_sigma_equals_a_loop_and_has_finite_gradients():
  _, comp = _ranged(jax.random.PRNGKey(5), 32)
  sigmas = jnp.array([0.0, 0.005, 0.01, 0.05])
  key = jax.random.PRNGKey(6)
  batched = jax.jit(jax.vmap(noise.relative_noise, in_axes=(None, None, 0)))(key, comp, sigmas)
  for i, s in enumerate(sigmas):
    np.testing.assert_allclose(batched[i], noise.relative_noise(key, comp, s), rtol=1e-6)
  real = jnp.real(comp)
  loss = lambda x: jnp.sum(noise.relative_noise(key, x, 0.05) ** 2)
  grad = jax.grad(loss)(real)
  assert bool(jnp.all(jnp.isfinite(grad)))
  # The range is held constant: d out / d x is the identity.
  np.testing.assert_allclose(grad, 2 * noise.relative_noise(key, real, 0.05), rtol=1e-6)
