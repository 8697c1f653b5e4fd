"""Statistics of the device presets that copy IBM aihwkit's inference noise models
(ssm_aimc/hardware/devices.py): many programmings at a few targets, whose empirical mean
and std must match the preset's own formulas AND numbers computed by hand from aihwkit's
published constants (src/aihwkit/inference/noise/pcm.py and reram.py, github.com/IBM/aihwkit
commit 4545f11b), written below as literals: an independent reference.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_aimc import errors, experiment
from ssm_aimc.configs import default
from ssm_aimc.hardware import analog, devices, noise

N = 40_000
# Tolerances of an empirical mean / std of N Gaussians: 5 standard errors.
MEAN_SE, STD_SE = 5.0 / math.sqrt(N), 5.0 / math.sqrt(2 * N)


def _program(device, g, seed=0):
  g_target = jnp.full((N,), g, jnp.float32)
  out = noise.program_conductances(jax.random.key(seed), g_target, device)
  return float(jnp.mean(out)), float(jnp.std(out))


def _check(device, g, mean_ref, std_ref, seed=0):
  mean, std = _program(device, g, seed)
  assert abs(mean - mean_ref) <= MEAN_SE * std_ref, (g, mean, mean_ref)
  assert abs(std - std_ref) <= STD_SE * std_ref, (g, std, std_ref)


# --- ReRamWan2022NoiseModel --------------------------------------------------------------
# sigma_t(g_hat) = c0 + c1 g_hat + c2 g_hat^2 + c3 g_hat^3 + c4 g_hat^4 (uS), g_max = 25 uS,
# from aihwkit's coeff_dic (t = 1 s: 0.348, 16.030, -43.853, 45.393, -16.815; 1 day: 0.701,
# 22.086, -50.773, 47.095, -16.458; 2 days: 0.782, 20.274, -43.507, 37.062, -11.934),
# evaluated by hand, e.g. 1 s at 0.7: 0.348 + 11.221 - 21.48797 + 15.569799 - 4.0372815.
WAN2022_BY_HAND = {
  "reram_wan2022": {0.4: 2.218208, 0.7: 1.613548, 1.0: 1.103},
  "reram_wan2022_1d": {0.7: 3.484449, 1.0: 2.651},
  "reram_wan2022_2d": {0.7: 3.502283, 1.0: 2.677},
}


@pytest.mark.parametrize(
  "name,g_hat",
  [(name, g) for name, table in WAN2022_BY_HAND.items() for g in table],
)
def test_wan2022_programming_statistics(name, g_hat):
  device = devices.get_device(name)
  g = g_hat * device.g_max_us
  by_hand = WAN2022_BY_HAND[name][g_hat]
  formula = float(device.prog_noise_std_us(jnp.float32(g)))
  assert formula == pytest.approx(by_hand, rel=1e-5)
  # Targets >= 4 std above 0: the clip at 0 (aihwkit's too) does not bias the moments.
  _check(device, g, g, by_hand)


def test_wan2022_has_no_drift_or_read_term_and_names_its_times():
  device = devices.RERAM_WAN2022
  assert device.g_max_us == 25.0  # aihwkit's SinglePairConductanceConverter default.
  assert not device.has_drift and not device.has_read_noise
  assert [devices.get_device(n).t_inference_s for n in WAN2022_BY_HAND] == [
    1.0,
    86400.0,
    172800.0,
  ]
  with pytest.raises(errors.ConfigError, match="fitted times"):
    devices.ReRamWan2022Device(t_inference_s=3600.0)


# --- ReRamCMONoiseModel ------------------------------------------------------------------
# Defaults: g in [9, 88.199997] uS, acceptance range 0.2 % -> programming std
# 0.00081107 + 0.00106879 G; at t = 3600 s the relaxation mean is -0.08900206 ln t
# = -0.72881020 uS and its std 0.04201137 ln t + 0.41183342 = 0.75585147 uS; the read std
# 0.0277316483 log10(G) sqrt(ln((t + 1e-6) / 2e-6)). By hand at G = 20, 50, 80 uS:
CMO_SHIFT = -0.72881020
CMO_BY_HAND = {  # G: (total frozen std sqrt(prog^2 + relax^2), read std), uS
  20.0: (0.75617703, 0.16655798),
  50.0: (0.75779586, 0.21750230),
  80.0: (0.76076382, 0.24363375),
}


@pytest.mark.parametrize("g", sorted(CMO_BY_HAND))
def test_cmo_programming_relaxation_and_read_statistics(g):
  device = devices.RERAM_CMO
  std_ref, read_ref = CMO_BY_HAND[g]
  assert float(device.programmed_mean_us(jnp.float32(g))) == pytest.approx(g + CMO_SHIFT)
  assert float(device.prog_noise_std_us(jnp.float32(g))) == pytest.approx(std_ref, rel=1e-5)
  _check(device, g, g + CMO_SHIFT, std_ref)
  read = float(device.read_noise_std_us(jnp.float32(g), jnp.float32(g), jnp.float32(0.0)))
  assert read == pytest.approx(read_ref, rel=1e-5)
  # One read of N devices all at G: empirical std = the read std.
  g_t = jnp.full((N,), g, jnp.float32)
  std = noise.read_noise_std(g_t, g_t, 3600.0, device)
  reads = g_t + std * jax.random.normal(jax.random.key(7), (N,))
  assert float(jnp.std(reads)) == pytest.approx(read_ref, rel=STD_SE)


def test_cmo_acceptance_range_and_range_defaults():
  device = devices.RERAM_CMO
  assert (device.g_min_us, device.g_max_us) == (9.0, 88.199997)
  wide = devices.ReRamCMODevice(acceptance_range_pct=2.0, t_inference_s=1.0)
  # t = 1 s: no relaxation shift, relaxation std 0.41183342; 2 % range at 50 uS:
  # 0.0112185391 + 0.01129027418 * 50 = 0.5757322481; total sqrt(0.57573^2 + 0.41183^2).
  _check(wide, 50.0, 50.0, 0.70786608)
  with pytest.raises(errors.ConfigError):
    devices.ReRamCMODevice(acceptance_range_pct=1.0)


# --- PCMLikeNoiseModel (registry name "pcm_like") -----------------------------------------
# g_max 25 uS, programming std 0.26348 + 1.9650 g_hat - 1.1731 g_hat^2; at g_hat = 0.5:
# 0.26348 + 0.98250 - 0.293275 = 0.952705 uS. Drift nu at g_hat = 0.5: mean clip(0.0155 ln 2
# + 0.0244, 0.049, 0.1) = 0.049, std clip(0.0125 ln 2 - 0.0059, 0.008, 0.045) = 0.008.
# Read std at t = 3600 s, G = 12.5: 12.5 * 0.0088 * 0.5^-0.65 * sqrt(ln(3600 / 500e-9)).
def test_pcm_like_programming_drift_and_read_statistics():
  device = devices.get_device("pcm_like")
  assert devices.AIHWKIT_NOISE_MODELS["pcm_like"] == "PCMLikeNoiseModel"
  _check(device, 12.5, 12.5, 0.952705)
  nu = noise.drift_exponents(jax.random.key(3), jnp.full((N,), 12.5), device)
  assert float(jnp.mean(nu)) == pytest.approx(0.049, abs=MEAN_SE * 0.008)
  assert float(jnp.std(nu)) == pytest.approx(0.008, rel=STD_SE)
  read = device.read_noise_std_us(jnp.float32(12.5), jnp.float32(12.5), jnp.float32(3600.0))
  assert float(read) == pytest.approx(12.5 * 0.0088 * 0.5**-0.65 * 4.764173, rel=1e-5)


@pytest.mark.parametrize("name", ["reram_wan2022", "reram_wan2022_1d", "reram_cmo"])
def test_presets_are_registered_and_run_in_a_spec(name):
  device = devices.get_device(name)
  assert devices.AIHWKIT_NOISE_MODELS[name].startswith("ReRam")
  at = devices.fixed_time(device)  # The preset's own time: another one is refused.
  assert experiment.HardwareConfig(enabled=True, device=name, t_inference=at).spec.device is device
  spec = analog.AnalogSpec.make(device, t_inference=at)
  w = jax.random.normal(jax.random.key(0), (8, 4))
  y = analog.analog_matmul(
    jax.random.key(1), jax.random.key(2), jnp.ones((3, 8)), w, jnp.float32(1.0), spec
  )
  assert np.all(np.isfinite(y)) and not np.allclose(y, jnp.ones((3, 8)) @ w)


@pytest.mark.parametrize("name", ["reram_wan2022", "reram_wan2022_1d", "reram_cmo"])
def test_a_frozen_time_preset_refuses_another_t_inference(name):
  device = devices.DEVICES[name]
  at = devices.fixed_time(device)
  assert analog.AnalogSpec.make(device, t_inference=at).t_inference == at
  with pytest.raises(errors.ConfigError, match=rf"{name}.*t_inference={at:g}"):
    analog.AnalogSpec.make(device, t_inference=at + 1.0)
  assert devices.fixed_time(devices.PCM_LIKE) is None


def test_drift_times_refused_when_the_first_chip_device_does_not_drift():
  config = default.get_config("smoke")
  config.hardware.t_inference = 1.0
  config.deploy.devices = ("reram_wan2022", "pcm_like")
  config.deploy.drift_times = (60.0,)
  with pytest.raises(errors.ConfigError, match="drift_times.*reram_wan2022.*frozen at 1 s"):
    experiment.from_config(config).chip_specs()
  config.deploy.drift_times = ()
  # The other device is evaluated at the same t_inference: pcm_like drifts, 1 s is valid.
  assert set(experiment.from_config(config).chip_specs()) == {"reram_wan2022", "pcm_like"}
