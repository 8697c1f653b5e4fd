"""Tests of the per-mode gain trim of a recurrence held on the arrays (chip.recurrence_gain),
against numpy's eigenvalues and a hand-built perturbed chip."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_aimc import chip, errors, experiment, export, layers, quant, ssm
from ssm_aimc.configs import default
from ssm_aimc.hardware import analog, devices
from tests import test_export

IDEAL = analog.AnalogSpec.make(devices.IDEAL, drift=False)


def _modes(seed=0, channels=3, n=4):
  """Random stable a_bar (H, n) and b_bar, and state ranges r (H, n)."""
  rng = np.random.default_rng(seed)
  radius = rng.uniform(0.9, 0.999, (channels, n))
  angle = rng.uniform(-1.0, 1.0, (channels, n))
  a_bar = jnp.asarray(radius * np.exp(1j * angle), jnp.complex64)
  b_bar = jnp.asarray(rng.normal(size=(channels, n)) + 1j * rng.normal(size=(channels, n)))
  r_state = jnp.asarray(rng.uniform(0.5, 3.0, (channels, n)), jnp.float32)
  return a_bar, b_bar.astype(jnp.complex64), r_state


def _array(a_bar, b_bar, r_state, recurrence, delta=None):
  """A programmed recurrence array as `ideal_arrays` folds the ranges (u range 1), plus an
  optional perturbation `delta` of its weights."""
  w = chip.recurrence_weights(a_bar, b_bar, recurrence)
  scale = jnp.stack([r_state, r_state, jnp.ones_like(r_state)], -1)[..., None]
  w = w * scale
  if delta is not None:
    w = w + delta
  return chip.ProgrammedArray(w=w, read_std=None, w_max=jnp.abs(w).max(-2))


def test_spectral_radius_matches_numpy_eigenvalues():
  """Closed form against np.linalg.eigvals, for real and complex eigenvalue pairs."""
  t = np.random.default_rng(1).normal(size=(200, 2, 2)).astype(np.float32)
  expected = np.abs(np.linalg.eigvals(t)).max(-1)
  np.testing.assert_allclose(chip.spectral_radius_2x2(jnp.asarray(t)), expected, rtol=1e-5)


@pytest.mark.parametrize("recurrence", ["direct", "residual"])
def test_ideal_array_measures_the_trained_transition_and_gain_one(recurrence):
  """An unperturbed array realises [[Re a, -Im a], [Im a, Re a]] (ranges divided out), whose
  radius is |a_bar|: every gain is 1."""
  a_bar, b_bar, r_state = _modes()
  array = _array(a_bar, b_bar, r_state, recurrence)
  t = chip.measured_transitions(jax.random.PRNGKey(0), array, r_state, recurrence, IDEAL)
  expected = np.stack(
    [np.stack([a_bar.real, -a_bar.imag], -1), np.stack([a_bar.imag, a_bar.real], -1)], -2
  )
  np.testing.assert_allclose(t, expected, atol=1e-6)
  np.testing.assert_allclose(chip.recurrence_gains(a_bar, t), 1.0, atol=1e-5)


@pytest.mark.parametrize("recurrence", ["direct", "residual"])
def test_gain_restores_the_trained_decay_of_a_perturbed_array(recurrence):
  """With the weights perturbed (some modes pushed past |lambda| = 1), gain x transition has
  exactly the trained radius |a_bar|, by numpy's eigenvalues of the hand-built matrix."""
  a_bar, b_bar, r_state = _modes(seed=2)
  delta = 0.2 * jax.random.normal(jax.random.PRNGKey(3), (*a_bar.shape, 3, 2))
  array = _array(a_bar, b_bar, r_state, recurrence, delta)
  t = chip.measured_transitions(jax.random.PRNGKey(0), array, r_state, recurrence, IDEAL)
  gains = chip.recurrence_gains(a_bar, t)
  # Independent reference: the transition rebuilt from the perturbed weights by hand.
  w = np.asarray(array.w)[..., :2, :] / np.asarray(r_state)[..., None, None]
  t_ref = np.swapaxes(w, -1, -2) + (np.eye(2) if recurrence == "residual" else 0.0)
  assert (np.abs(np.linalg.eigvals(t_ref)).max(-1) > 1).any()  # The test bites.
  radius = np.abs(np.linalg.eigvals(np.asarray(gains)[..., None, None] * t_ref)).max(-1)
  np.testing.assert_allclose(radius, np.abs(a_bar), rtol=1e-4)


def test_measurement_reads_average_read_noise_down():
  """k reads leave read noise of std / sqrt(k) on the measured weights; 0 reads none."""
  a_bar, b_bar, r_state = _modes(channels=64, n=16)
  array = _array(a_bar, b_bar, r_state, "direct")
  array = dataclasses.replace(array, read_std=jnp.full(array.w.shape, 0.1))
  exact = chip.measured_transitions(jax.random.PRNGKey(0), array, r_state, "direct", IDEAL, 0)
  ideal_t = chip.measured_transitions(
    jax.random.PRNGKey(0), dataclasses.replace(array, read_std=None), r_state, "direct", IDEAL
  )
  np.testing.assert_array_equal(exact, ideal_t)
  noisy = chip.measured_transitions(jax.random.PRNGKey(0), array, r_state, "direct", IDEAL, 4)
  err = (np.asarray(noisy) - np.asarray(exact)) * np.asarray(r_state)[..., None, None]
  np.testing.assert_allclose(err.std(), 0.1 / 2, rtol=0.05)


def test_ideal_chip_with_gain_trim_equals_the_untrimmed_chip(tmp_path):
  """On the ideal device every gain is 1: the trimmed step program gives the same logits."""
  model, variables, x, arch = test_export.build_variables("s4d", None, batch=4)
  export.export_model(model, variables["params"], None, x[:1], str(tmp_path), arch, None)
  manifest, tensors = export.load_export(str(tmp_path))
  keys = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
  out = {}
  for gain in ("off", "decay"):
    config = chip.ChipConfig(recurrence_gain=gain)
    ranges = chip.calibrate(manifest, tensors, x, "residual", config)
    out[gain] = chip.run(manifest, tensors, ranges, x, *keys, IDEAL, config, "residual")
  np.testing.assert_allclose(out["decay"], out["off"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
  "kwargs", [dict(recurrence_gain="eigen"), dict(gain_reads=-1), dict(gain_reads=1.5)]
)
def test_bad_gain_settings_raise_config_error(kwargs):
  with pytest.raises(errors.ConfigError):
    chip.ChipConfig(**kwargs)


def test_gain_trim_of_a_digital_recurrence_raises_config_error():
  a_bar, b_bar, r_state = _modes()
  with pytest.raises(errors.ConfigError, match="recurrence"):
    chip.measured_transitions(
      jax.random.PRNGKey(0), _array(a_bar, b_bar, r_state, "direct"), r_state, "digital", IDEAL
    )
  config = default.get_config("smoke")
  config.deploy.recurrence_gain = "decay"
  with pytest.raises(errors.ConfigError, match="recurrence_gain"):
    experiment.from_config(config).chip_specs()
  config.deploy.recurrence_gain = "sometimes"
  with pytest.raises(errors.ConfigError, match="recurrence_gain"):
    experiment.from_config(config)


def test_qs4d_export_with_float_activations_runs_on_the_chip(tmp_path):
  """The QS4D authors' low-bit A with every activation and the state float: the export has
  no per-sequence grid, so the ideal chip (recurrence on the arrays) computes it exactly;
  with 8-bit activations it is still refused."""
  spec = quant.QuantSpec.qs4d(32, 32, a_bits=4)
  model, variables, x, arch = test_export.build_variables("s4d", spec, batch=4)
  export.export_model(model, variables["params"], spec, x[:1], str(tmp_path), arch, None)
  manifest, tensors = export.load_export(str(tmp_path))
  reference = export.forward(manifest, tensors, x)
  config = chip.ChipConfig()
  ranges = chip.calibrate(manifest, tensors, x, "direct", config)
  keys = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
  logits = chip.run(manifest, tensors, ranges, x, *keys, IDEAL, config, "direct")
  np.testing.assert_allclose(logits, reference, rtol=1e-5, atol=1e-5)
  manifest["input_quantizers"] = {k: {"bits": 8.0} for k in manifest["input_quantizers"]}
  with pytest.raises(errors.ConfigError, match="qs4d"):
    chip.calibrate(manifest, tensors, x, "direct", config)


def test_trim_measured_at_another_time_is_that_time_of_the_same_chip(tmp_path):
  """On drifting PCM: a trim measured at t_inference (gain_time_s = t) is the trim
  re-measured at use (gain_time_s < 0), bit for bit; one measured at another time differs."""
  model, variables, x, arch = test_export.build_variables("s4d", None, batch=4)
  export.export_model(model, variables["params"], None, x[:1], str(tmp_path), arch, None)
  manifest, tensors = export.load_export(str(tmp_path))
  spec = analog.AnalogSpec.make(devices.PCM_LIKE, t_inference=3600.0)
  ranges = chip.calibrate(manifest, tensors, x, "residual")
  keys = jax.random.PRNGKey(1), jax.random.PRNGKey(2)

  def logits(gain_time_s):
    config = chip.ChipConfig(recurrence_gain="decay", gain_time_s=gain_time_s)
    return np.asarray(chip.run(manifest, tensors, ranges, x, *keys, spec, config, "residual"))

  now = logits(-1.0)
  np.testing.assert_array_equal(logits(3600.0), now)
  assert np.abs(logits(20.0) - now).max() > 1e-6


def test_bad_gain_time_raises_config_error():
  with pytest.raises(errors.ConfigError, match="gain_time_s"):
    chip.ChipConfig(gain_time_s=float("nan"))


def test_real_init_is_a_decay_only_recurrence_that_training_keeps_real():
  """a_init="real" (S4D-Real, a_n = -(n + 1), Im a = 0): the layer ignores the value of
  im_a (the output with im_a set to anything equals the output at 0), so the gradient of
  any loss with respect to it is exactly 0 and training keeps the recurrence real."""
  log_neg_re_a, im_a = ssm.init_a(4, "real")
  np.testing.assert_allclose(np.exp(log_neg_re_a), [1.0, 2.0, 3.0, 4.0], rtol=1e-6)
  assert np.all(np.asarray(im_a) == 0)
  layer = layers.S4D(d_state=8, a_init="real")
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 3))
  params = layer.init(jax.random.PRNGKey(1), x)
  rotated = jax.tree.map(lambda v: v, params)
  rotated["params"]["im_a"] = jnp.full_like(params["params"]["im_a"], 2.0)
  np.testing.assert_array_equal(np.asarray(layer.apply(rotated, x)), layer.apply(params, x))
  lin = layers.S4D(d_state=8, a_init="lin")  # Where im_a is used, it changes the output.
  assert not np.allclose(lin.apply(rotated, x), lin.apply(params, x))
  loss = lambda a: jnp.sum(jnp.square(layer.apply({**params, "params": a}, x)))
  grads = jax.grad(loss)(params["params"])
  assert np.all(np.asarray(grads["im_a"]) == 0)
  assert np.any(np.asarray(grads["log_neg_re_a"]) != 0)
