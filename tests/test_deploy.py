"""--mode=deploy end to end: a trained checkpoint on simulated chips, the files it writes,
the numbers in them against the library, and clean failures."""

import hashlib
import json
import logging as py_logging
import os

import jax.numpy as jnp
import pytest
from absl import logging as absl_logging

from ssm_aimc import deploy, errors, experiment, models, train
from ssm_aimc.hardware import crossbar, energy
from tests.test_train import SMOKE, launch, tiny_config


def _deploy_config(**overrides):
  return tiny_config(
    **{
      "deploy.seeds": 2,
      "deploy.seeds_per_call": 2,
      "deploy.devices": ("pcm_like",),
      "deploy.drift_times": (86400.0,),
      "eval_batch_size": 400,
      **overrides,
    }
  )


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("deploy"))
  config = _deploy_config()
  train.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "results.json"), "rb") as f:
    before = hashlib.sha256(f.read()).hexdigest()
  returned = deploy.deploy(config, workdir)
  return config, workdir, before, returned


def test_deploy_writes_results_report_and_plot(deployed):
  config, workdir, before, returned = deployed
  out = os.path.join(workdir, "deploy")
  with open(os.path.join(out, "results.json")) as f:
    results = json.load(f)
  # docs/design.md §3 keys, and every device of deploy.devices.
  for key in ("task", "test_accuracy", "params", "memory_bits", "fp32_memory_bits"):
    assert key in results
  assert results["noise_seeds"] == 2
  assert set(results["chips"]) == {"pcm_like"}
  assert results["analog_accuracy_mean"] == results["chips"]["pcm_like"]["analog_accuracy_mean"]
  assert set(results["energy_per_inference_j"]) == {"aimc", "digital_fp32", "digital_int8"}
  assert [r["t_inference"] for r in results["drift"]] == [86400.0]
  assert 0 <= results["analog_accuracy_mean"] <= 1
  assert returned["tiles"] == results["tiles"]
  with open(os.path.join(out, "deploy_report.md")) as f:
    report = f.read()
  assert "| chip, pcm_like (2 chips) |" in report and "FP32 digital / chip energy" in report
  with open(os.path.join(out, deploy.PLOT), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.path.exists(os.path.join(out, "export", "manifest.json"))
  # Training's results.json is untouched.
  with open(os.path.join(workdir, "results.json"), "rb") as f:
    assert hashlib.sha256(f.read()).hexdigest() == before


def test_deploy_prints_each_table_once(deployed, capsys, caplog):
  """Deploying again (a re-evaluation): the mapping and energy tables on stdout once, and
  not in the log as well (absl at INFO, as under the launcher)."""
  config, workdir, _, _ = deployed
  verbosity = absl_logging.get_verbosity()
  absl_logging.set_verbosity(absl_logging.INFO)
  try:
    with caplog.at_level(py_logging.INFO):
      deploy.deploy(config, workdir)
  finally:
    absl_logging.set_verbosity(verbosity)
  printed = capsys.readouterr().out
  logged = "\n".join(r.getMessage() for r in caplog.records)
  assert "Chip pcm_like" in logged  # The log was captured.
  for title in ("Mapping", "Energy per inference"):
    assert printed.count(title) == 1 and title not in logged, title


def test_deploy_numbers_match_the_library(deployed):
  """Tiles and energy in results.json are those of crossbar.map_model and energy.aimc_energy
  on the checkpoint's records (recomputed here), and the software accuracy is training's."""
  config, workdir, _, _ = deployed
  with open(os.path.join(workdir, "deploy", "results.json")) as f:
    results = json.load(f)
  with open(os.path.join(workdir, "results.json")) as f:
    trained = json.load(f)
  assert results["test_accuracy"] == pytest.approx(trained["test_accuracy"], abs=1e-9)
  run = train.load_for_inference(config, workdir)
  setup = run.setup
  x = jnp.zeros((1, setup.dataset.seq_len, setup.dataset.d_input))
  records = models.deployed_tensors(setup.model, run.params, run.pop.specs, x)
  mapping = crossbar.map_model(records, crossbar.TileConfig(), "mean", "digital")
  assert results["tiles"] == mapping.tiles
  assert results["tiles_lower_bound"] == mapping.tiles_lower_bound
  assert results["mvm_cycles_per_step"] == mapping.cycles_per_step
  assert results["mapping"]["totals"]["mapping"] == results["chip"]["mapping"] == "diagonal"
  # deploy.mapping=packed reaches the mapping and the energy of the report.
  packed_exp = experiment.override(train.as_experiment(config), {"deploy.mapping": "packed"})
  packed, energies = deploy.energy_report(packed_exp, records, setup.dataset.seq_len)
  expected = crossbar.map_model(records, crossbar.TileConfig(), "mean", "digital", "packed")
  assert (packed.mapping, packed.tiles) == ("packed", expected.tiles)
  assert energies["aimc"]["mvm_cycles"] == pytest.approx(
    energy.aimc_energy(expected, setup.dataset.seq_len, 8, 8)["mvm_cycles"]
  )
  aimc = energy.aimc_energy(mapping, setup.dataset.seq_len, 8, 8)
  assert results["energy_per_inference_j"]["aimc"] == pytest.approx(aimc["total_j"])


def test_a_batch_norm_checkpoint_deploys_with_its_statistics(tmp_path):
  """A BatchNorm model without residual: the best state's running statistics reach the
  export (its software accuracy is training's) and the ideal chip, converters at 16 bits,
  scores that accuracy."""
  config = _deploy_config(
    **{
      "model.norm": "batch",
      "model.residual": False,
      "deploy.devices": ("ideal",),
      "deploy.dac_bits": 16,
      "deploy.adc_bits": 16,
      "deploy.drift_times": (),
    }
  )
  trained = train.train_and_evaluate(config, str(tmp_path))
  deploy.deploy(config, str(tmp_path))
  with open(tmp_path / "deploy" / "results.json") as f:
    results = json.load(f)
  assert results["test_accuracy"] == pytest.approx(trained["test_accuracy"], abs=1e-9)
  assert results["analog_accuracy_mean"] == pytest.approx(results["test_accuracy"], abs=1e-9)


@pytest.mark.parametrize(
  "overrides, match",
  [
    ({"hardware.adc_bits": 6}, "deploy.adc_bits"),
    ({"deploy.seeds": 0}, "deploy.seeds"),
    ({"deploy.dac_bits": 0}, "bits"),
    ({"deploy.drift_times": (-1.0,)}, "drift_times"),
    ({"deploy.folder": "../x"}, "folder"),
    ({"deploy.devices": ("no_such_device",)}, "no_such_device"),
  ],
)
def test_bad_deploy_config_raises_config_error(tmp_path, overrides, match):
  with pytest.raises(errors.ConfigError, match=match):
    deploy.deploy(_deploy_config(**overrides), str(tmp_path))


def test_launch_deploy_without_checkpoint_fails_cleanly(tmp_path):
  out = launch(*SMOKE, f"--workdir={tmp_path}", "--mode=deploy")
  assert out.returncode == 1
  assert "No checkpoint" in out.stderr
  assert not os.path.exists(os.path.join(tmp_path, "deploy", "results.json"))
