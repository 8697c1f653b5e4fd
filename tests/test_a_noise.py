"""The relative weight noise of `AnalogSpec.a_noise` (the QS4D authors' protocol) inside the
model: where it lands, that it is drawn afresh at every forward pass, and that a zero level
is the digital model bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_aimc import data, errors, experiment, models, noise_eval
from ssm_aimc.configs import default
from ssm_aimc.hardware import analog, devices, noise

TINY = models.ModelConfig(d_model=8, n_layers=1, d_state=4, dropout=0.0)


def _key(i: int) -> jax.Array:
  return jax.random.PRNGKey(i)


@pytest.fixture(scope="module")
def tiny():
  model = models.get_model("s4d", TINY, 3)
  x = jax.random.normal(_key(40), (2, 12, 2))
  return model, model.init(_key(41), x)["params"], x


@jax.jit
def _apply(params, x, spec, k_read):
  model = models.get_model("s4d", TINY, 3)
  return model.apply({"params": params}, x, analog=spec, rngs={"program": _key(1), "read": k_read})


def _spec(target: str, sigma) -> analog.AnalogSpec:
  return analog.AnalogSpec.make(devices.IDEAL, a_noise_on=target).with_a_noise(sigma)


@pytest.mark.parametrize("target", analog.A_NOISE_TARGETS)
def test_zero_relative_noise_is_the_digital_model_bit_for_bit(tiny, target):
  model, params, x = tiny
  digital = model.apply({"params": params}, x)
  out = _apply(params, x, _spec(target, 0.0), _key(2))
  np.testing.assert_array_equal(np.asarray(out), np.asarray(digital))


@pytest.mark.parametrize("target", analog.A_NOISE_TARGETS)
def test_relative_noise_is_a_fresh_draw_of_every_forward_pass(tiny, target):
  model, params, x = tiny
  digital = np.asarray(model.apply({"params": params}, x))
  spec = _spec(target, 0.05)
  a, b, c = (np.asarray(_apply(params, x, spec, _key(k))) for k in (2, 2, 3))
  np.testing.assert_array_equal(a, b)  # Same read key, same draw.
  assert np.all(a != c)  # Another forward pass, another draw.
  assert np.all(a != digital)
  # A small level is a small perturbation.
  small = np.asarray(_apply(params, x, _spec(target, 1e-5), _key(2)))
  np.testing.assert_allclose(small, digital, atol=1e-3)


def test_relative_noise_on_a_perturbs_the_continuous_time_a_only():
  """`perturb_a` is `noise.relative_noise` on its own stream of the read key when the spec
  names A (or every weight), and the identity otherwise."""
  a = jax.lax.complex(-jnp.linspace(0.1, 2.0, 6), jnp.linspace(0.0, 9.0, 6)).reshape(2, 3)
  key = _key(7)
  for target in analog.A_NOISE_TARGETS:
    out = analog.perturb_a(key, a, _spec(target, 0.01))
    if target in ("a", "weights"):
      expected = noise.relative_noise(jax.random.fold_in(key, 1000), a, 0.01)
      np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    else:
      np.testing.assert_array_equal(np.asarray(out), np.asarray(a))
  assert analog.perturb_a(key, a, analog.AnalogSpec.make(devices.IDEAL)) is a


def test_relative_noise_leaves_the_device_draws_unchanged(tiny):
  """A device's programming and read draws are the same with and without relative noise on
  C (its own fold_in stream): at a zero level the PCM-like model is unchanged."""
  _, params, x = tiny
  pcm = analog.AnalogSpec.make(devices.PCM_LIKE)
  with_term = pcm.with_a_noise(0.0)
  np.testing.assert_array_equal(
    np.asarray(_apply(params, x, pcm, _key(5))), np.asarray(_apply(params, x, with_term, _key(5)))
  )


def test_gradients_are_finite_under_relative_noise(tiny):
  _, params, x = tiny
  spec = _spec("weights", 0.02)

  def loss(p):
    return jnp.sum(_apply(p, x, spec, _key(9)) ** 2)

  grads = jax.grad(loss)(params)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_a_noise_config_reaches_the_spec_and_deploy_refuses_it():
  config = default.get_config()
  config.hardware.enabled = True
  config.hardware.device = "ideal"
  config.hardware.a_noise = 0.01
  config.hardware.a_noise_on = "a_bar"
  exp = experiment.from_config(config)
  spec = exp.hardware.spec
  assert spec.relative and spec.a_noise_on == "a_bar"
  assert float(spec.a_noise) == pytest.approx(0.01)
  assert not exp.hardware.spec_on(devices.IDEAL).perturbs("a")
  with pytest.raises(errors.ConfigError, match="a_noise"):
    exp.chip_specs()
  assert float(spec.scaled(0.5).a_noise) == pytest.approx(0.005)


def test_noise_levels_vmapped_in_one_program_equal_one_level_at_a_time(tiny):
  """`noise_eval.at_noise_levels` (levels vmapped) == `chip_accuracies` level by level;
  level 0 is the digital accuracy on every seed."""
  model, params, _ = tiny
  x = np.asarray(jax.random.normal(_key(50), (20, 12, 2)))
  digital_logits = model.apply({"params": params}, x)
  y = np.asarray(jnp.argmax(digital_logits, -1)).astype(np.int32)  # Digital: 100 %.
  split = data.Split(x, y)
  base = analog.AnalogSpec.make(devices.IDEAL, a_noise_on="weights")
  levels = [0.0, 0.05, 0.3]
  got = noise_eval.at_noise_levels(model.apply, None, params, split, 8, base, levels, 3, 0, 2)
  assert got.shape == (3, 3)
  np.testing.assert_array_equal(got[0], np.ones(3))
  eval_fn = noise_eval.make_eval_fn(model.apply, None)
  for i, level in enumerate(levels):
    one = noise_eval.chip_accuracies(eval_fn, params, split, 8, base.with_a_noise(level), 3, 0, 2)
    np.testing.assert_allclose(got[i], one, atol=1e-12)
  assert got[2].mean() < 1.0  # 30 % of every range moves some decisions.
