"""Evaluation on simulated chips and noise-aware training, end to end: vmapped chips equal
chips one at a time, a chip is frozen across batches, one compiled step serves every noise
scale, results and plots are written, bad hardware settings fail cleanly."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_aimc import data, errors, experiment, layers, noise_eval, progress, runner, train
from ssm_aimc.hardware import analog, devices
from tests.test_train import SMOKE, counted_train_step, launch, tiny_config


def _hardware_config(**overrides):
  return tiny_config(**{"hardware.enabled": True, "hardware.eval_seeds": 3, **overrides})


@pytest.fixture(scope="module")
def built():
  pop = runner.single(experiment.from_config(_hardware_config()))
  return pop, pop.state.params


def _small_test_split(pop, n=64):
  test = pop.setup.dataset.test
  return data.Split(x=test.x[:n], y=test.y[:n])


def test_vmapped_chips_equal_chips_one_at_a_time(built):
  exp, params = built
  spec = analog.AnalogSpec.make(devices.PCM_LIKE, prog_noise_scale=4.0)
  test = _small_test_split(exp)
  accuracies = functools.partial(noise_eval.chip_accuracies, exp.chip_eval_fn, params, test, 32)
  together, alone = accuracies(spec, 3, seeds_per_call=3), accuracies(spec, 3, seeds_per_call=1)
  np.testing.assert_allclose(together, alone)
  # Independent path: chip 1 by hand, with the documented keys.
  keys_program, keys_read = noise_eval.chip_keys(0, 3)
  apply = jax.jit(
    lambda x, kp, kr: exp.setup.model.apply(
      {"params": params}, x, analog=spec, rngs={layers.PROGRAM_RNG: kp, layers.READ_RNG: kr}
    )
  )
  correct = 0
  for index, (x, y, mask) in enumerate(data.padded_batches(test, 32)):
    logits = apply(x, keys_program[1], jax.random.fold_in(keys_read[1], index))
    correct += float(jnp.sum((jnp.argmax(logits, -1) == y) * mask))
  assert together[1] == pytest.approx(correct / len(test), abs=1e-9)
  summary = noise_eval.summary(together)
  assert summary["analog_accuracies"] == list(together)
  assert summary["analog_accuracy_mean"] == pytest.approx(np.mean(alone))
  assert summary["analog_accuracy_std"] == pytest.approx(np.std(alone))


def test_a_chip_is_frozen_across_batches(built):
  """Without read noise a chip's predictions do not depend on how the split is batched:
  the programming error is drawn once per chip, not per batch."""
  exp, params = built
  spec = analog.AnalogSpec.make(devices.PCM_LIKE, prog_noise_scale=4.0, read_noise_scale=0.0)
  test = _small_test_split(exp)
  # Two and four batches of the 64 samples (batch 32: the program the test above compiled).
  big = noise_eval.chip_accuracies(exp.chip_eval_fn, params, test, 32, spec, 3)
  small = noise_eval.chip_accuracies(exp.chip_eval_fn, params, test, 16, spec, 3)
  np.testing.assert_allclose(big, small, atol=1e-9)
  # ... and different chips differ somewhere (the noise is real).
  keys_program, _ = noise_eval.chip_keys(0, 2)
  apply = jax.jit(
    lambda k: exp.setup.model.apply(
      {"params": params}, test.x, analog=spec, rngs={"program": k, "read": jax.random.PRNGKey(0)}
    )
  )
  out = [apply(k) for k in keys_program]
  assert not np.allclose(out[0], out[1])


def test_train_step_compiles_once_for_every_noise_scale(built):
  exp, _ = built
  step, traces = counted_train_step()
  x, y = next(data.batches(exp.setup.dataset.train, 32, seed=0, epoch=0))
  state = exp.state
  for factor in (0.0, 0.5, 1.0):
    state, metrics = step(state, x, y, jax.random.PRNGKey(0), None, exp.analogs.scaled(factor))
    assert np.isfinite(float(metrics["loss"]))
  assert len(traces) == 1


def test_noise_aware_training_then_evaluation_on_another_device(tmp_path, monkeypatch):
  config = _hardware_config(
    **{"hardware.train": True, "hardware.ramp_epochs": 0.5, "hardware.eval_seeds": 2}
  )
  results = train.train_and_evaluate(config, str(tmp_path))
  for key in ("analog_accuracy_mean", "analog_accuracy_std", "noise_seeds", "test_accuracy"):
    assert key in results
  assert results["noise_seeds"] == 2 and len(results["analog_accuracies"]) == 2
  assert results["analog_accuracy_mean"] == pytest.approx(np.mean(results["analog_accuracies"]))
  assert results["hardware"]["device"]["name"] == "pcm_like"
  with open(tmp_path / "results.json") as f:
    on_disk = json.load(f)
  # Evaluate the same checkpoint on the RRAM preset with a noise sweep.
  config.hardware.device = "rram_taox"
  config.hardware.prog_noise_scales = (0.0, 2.0)
  bars = []
  monkeypatch.setattr(
    progress, "bar", lambda *a, **k: bars.append(progress.Bar(*a, **k)) or bars[-1]
  )
  out = train.evaluate(config, str(tmp_path))
  # One progress display for the chip evaluations, advanced through the noise sweep too.
  (bar,) = [b for b in bars if b.desc == "rram_taox chips"]
  assert bar.n == bar.total and bar.total % 3 == 0 and bar.total >= 3
  assert [r["prog_noise_scale"] for r in out["noise_sweep"]] == [0.0, 2.0]
  assert all(r["noise_seeds"] == 2 for r in out["noise_sweep"])
  assert out["hardware"]["device"]["name"] == "rram_taox"
  with open(out["noise_plot"], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with open(tmp_path / "results.json") as f:
    assert json.load(f) == on_disk  # training's results are never overwritten


def test_a_batch_norm_model_on_ideal_chips_scores_its_digital_accuracy(tmp_path):
  """The simulated chips run a BatchNorm model on its trained running statistics (digital
  periphery): on the ideal device every chip scores the digital test accuracy."""
  config = _hardware_config(
    **{"model.norm": "batch", "hardware.device": "ideal", "hardware.eval_seeds": 2}
  )
  results = train.train_and_evaluate(config, str(tmp_path))
  # (Up to a prediction flipped by the rounding of the analog product's other order.)
  np.testing.assert_allclose(results["analog_accuracies"], results["test_accuracy"], atol=0.01)


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"hardware.prog_noise_scale": -1.0}, "prog_noise_scale must be"),
    ({"hardware.read_noise_scale": -0.5}, "read_noise_scale must be"),
    ({"hardware.t_inference": -1.0}, "t_inference must be >= 0"),
    (
      {"hardware.stuck_min": 0.8, "hardware.stuck_max": 0.5},
      "stuck_min and stuck_max \\(stuck-at fractions\\)",
    ),
    ({"hardware.device": "flash"}, "Unknown device"),
    ({"hardware.mapping": "row"}, "Unknown mapping"),
    ({"hardware.eval_seeds": 0}, "eval_seeds must be"),
    ({"hardware.prog_noise_scales": (1.0, -2.0)}, "prog_noise_scales must be"),
    ({"hardware.enabled": False, "hardware.train": True}, "needs hardware.enabled"),
  ],
)
def test_bad_hardware_settings_are_config_errors(overrides, message):
  with pytest.raises(errors.ConfigError, match=message):
    experiment.from_config(_hardware_config(**overrides))


def test_launch_bad_hardware_fails_cleanly(tmp_path):
  out = launch(
    *SMOKE,
    f"--workdir={tmp_path}",
    "--config.hardware.enabled=True",
    "--config.hardware.prog_noise_scale=-1",
  )
  assert out.returncode == 1
  assert "prog_noise_scale must be" in out.stderr and "Traceback" not in out.stderr
  assert not os.path.exists(tmp_path / "checkpoints")
  missing = tmp_path / "no_such_device.csv"
  out = launch(
    *SMOKE,
    f"--workdir={tmp_path}",
    "--config.hardware.enabled=True",
    f"--config.hardware.device_csv={missing}",
  )
  assert out.returncode == 1 and str(missing) in out.stderr
  assert os.listdir(tmp_path) == []  # No empty checkpoints/ or best/ left behind.


def test_vmap_over_noise_scales_equals_separate_calls(built):
  exp, params = built
  spec = analog.AnalogSpec.make(devices.PCM_LIKE)
  x = exp.setup.dataset.test.x[:8]
  rngs = {"program": jax.random.PRNGKey(1), "read": jax.random.PRNGKey(2)}
  apply = jax.jit(
    lambda s: exp.setup.model.apply({"params": params}, x, analog=spec.scaled(s), rngs=rngs)
  )
  scales = jnp.asarray([0.0, 1.0, 3.0])
  together = jax.jit(jax.vmap(apply))(scales)
  for i, s in enumerate(scales):
    np.testing.assert_allclose(together[i], apply(s), rtol=1e-5, atol=1e-5)
  assert not np.allclose(together[0], together[2])
