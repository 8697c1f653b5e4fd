"""The Python API (ssm_aimc.api): in memory, a run gives the numbers of the same run in a
workdir bit for bit (the same code path with the writing left out, on one machine) and
writes nothing; with a workdir, it is the launch.py mode; bad input is a ConfigError."""

import json
import os
import struct
import sys

import jax
import numpy as np
import pytest

import ssm_aimc
from configs import sweep_bits
from ssm_aimc import api, errors, experiment, figures, train
from ssm_aimc import workdir as workdir_lib
from tests.test_deploy import _deploy_config
from tests.test_train import tiny_config


def _without_times(records):
  return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in records]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """(config, in-memory FitResult, workdir FitResult, workdir, the folder the in-memory run
  was started in): the tiny config trained once each way; the workdir run logs to
  TensorBoard (which changes no number: workdir.NOT_TRAINING_KEYS)."""
  config = _deploy_config()
  cwd, here = os.getcwd(), str(tmp_path_factory.mktemp("cwd"))
  os.chdir(here)
  try:
    memory = ssm_aimc.fit(config)
  finally:
    os.chdir(cwd)
  workdir = str(tmp_path_factory.mktemp("fit"))
  on_disk = ssm_aimc.fit(config, workdir, overrides={"log_tensorboard": True})
  return config, memory, on_disk, workdir, here


def test_fit_in_memory_is_the_workdir_run_bit_for_bit_and_writes_nothing(runs):
  config, memory, on_disk, workdir, here = runs
  assert os.listdir(here) == []
  assert memory.workdir is None and on_disk.workdir == workdir
  assert isinstance(memory, ssm_aimc.FitResult)
  assert 0.0 <= memory.test_accuracy <= 1.0
  assert memory.test_accuracy == on_disk.test_accuracy
  jax.tree.map(np.testing.assert_array_equal, memory.params, on_disk.params)
  assert _without_times(memory.history) == _without_times(on_disk.history)
  different = {"wall_time_s"}
  assert {k: v for k, v in memory.results.items() if k not in different} == {
    k: v for k, v in on_disk.results.items() if k not in different
  }
  assert memory.report == on_disk.report
  assert memory.results["params"] == memory.report.params
  # One record per logged step and per epoch (one).
  epochs = [r for r in memory.history if "epoch" in r]
  assert len(epochs) == 1 and epochs[0]["val_accuracy"] <= 1.0
  steps = memory.results["final_step"]
  assert len(memory.history) == 1 + steps // memory.experiment.log_every_steps
  assert memory.experiment == experiment.from_config(config)


def test_fit_in_a_workdir_is_launch_mode_train(runs):
  _, _, on_disk, workdir, _ = runs
  # results.json and metrics.jsonl hold what fit returned.
  assert workdir_lib.read_json(os.path.join(workdir, workdir_lib.RESULTS)) == json.loads(
    workdir_lib.to_json(on_disk.results)
  )
  assert workdir_lib.read_metrics(workdir) == list(on_disk.history)
  assert os.path.isdir(os.path.join(workdir, workdir_lib.BEST_DIR))
  assert workdir_lib.stored_config(workdir) == experiment.to_dict(on_disk.experiment)


def test_a_training_workdir_holds_its_curves_as_png_and_pdf(runs):
  workdir = runs[3]
  png = os.path.join(workdir, figures.CURVES)
  with open(png, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with open(figures.pdf_path(png), "rb") as f:
    assert f.read(5) == b"%PDF-"


def _tensorboard_scalars(logdir: str) -> dict:
  """{tag: [(step, value)]} of the event files in `logdir`, read record by record (the
  TFRecord framing: length, its CRC, the serialized Event, its CRC)."""
  from tensorboardX.proto import event_pb2  # noqa: PLC0415

  out = {}
  for name in sorted(os.listdir(logdir)):
    with open(os.path.join(logdir, name), "rb") as f:
      data = f.read()
    at = 0
    while at < len(data):
      (length,) = struct.unpack("<Q", data[at : at + 8])
      event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
      at += 12 + length + 4
      for value in event.summary.value:
        out.setdefault(value.tag, []).append((event.step, value.simple_value))
  return out


def test_tensorboard_events_hold_the_metrics_records(runs):
  _, _, on_disk, workdir, _ = runs
  logdir = os.path.join(workdir, workdir_lib.TENSORBOARD_DIR)
  assert any(n.startswith("events.out.tfevents") for n in os.listdir(logdir))
  scalars = _tensorboard_scalars(logdir)
  for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch"):
    expected = [(r["step"], r[key]) for r in on_disk.history if key in r]
    got = scalars[key]
    assert [s for s, _ in got] == [s for s, _ in expected], key
    np.testing.assert_allclose([v for _, v in got], [v for _, v in expected], rtol=1e-6)


def test_tensorboard_needs_a_workdir_and_the_extra(tmp_path, monkeypatch):
  config = tiny_config(log_tensorboard=True)
  with pytest.raises(errors.ConfigError, match="needs a workdir"):
    ssm_aimc.fit(config)
  monkeypatch.setitem(sys.modules, "tensorboardX", None)  # As if not installed.
  with pytest.raises(errors.ConfigError, match=r"pip install 'ssm-aimc\[tensorboard\]'"):
    ssm_aimc.fit(config, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")  # Refused before anything was written.


def test_unknown_keys_and_bad_input_are_config_errors():
  with pytest.raises(errors.ConfigError, match="did you mean 'model.d_model'"):
    ssm_aimc.fit(tiny_config(), overrides={"model.d_modle": 8})
  tree = experiment.to_dict(experiment.from_config(tiny_config()))
  tree["optimizer"]["learning_rat"] = 1e-3
  with pytest.raises(errors.ConfigError, match="did you mean 'optimizer.learning_rate'"):
    ssm_aimc.fit(tree)
  with pytest.raises(errors.ConfigError, match="num_epochs must be an integer >= 1"):
    ssm_aimc.fit(experiment.Experiment(), overrides={"num_epochs": 0})
  with pytest.raises(errors.ConfigError, match="ConfigDict, a nested dict"):
    ssm_aimc.fit("configs/default.py")
  with pytest.raises(errors.ConfigError, match="not neither"):
    ssm_aimc.evaluate(tiny_config())
  with pytest.raises(errors.ConfigError, match="has no `sweep` section"):
    ssm_aimc.sweep(tiny_config())


def test_the_api_names_are_lazy_and_the_submodules_stay_modules():
  assert ssm_aimc.fit is api.fit and ssm_aimc.evaluate is api.evaluate
  assert ssm_aimc.FitResult is api.FitResult
  from ssm_aimc import deploy, sweep  # noqa: PLC0415

  # The modules themselves, callable as the API's functions.
  assert callable(deploy) and hasattr(deploy, "energy_report")
  assert callable(sweep) and hasattr(sweep, "expand")
  assert ssm_aimc.deploy is deploy and ssm_aimc.sweep is sweep
  with pytest.raises(AttributeError, match="no attribute 'fitt'"):
    _ = ssm_aimc.fitt


def test_import_ssm_aimc_imports_no_jax():
  import subprocess  # noqa: PLC0415

  code = "import sys, ssm_aimc; print('jax' in sys.modules, ssm_aimc.__version__)"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.split()[0] == "False"


def test_evaluate_in_memory_is_evaluate_of_the_workdir(runs):
  config, memory, _, workdir, _ = runs
  in_memory = ssm_aimc.evaluate(trained=memory)
  assert in_memory["test_accuracy"] == memory.test_accuracy
  assert in_memory["checkpoint_step"] == memory.results["checkpoint_step"]
  ptq = {"quant.enabled": True, "quant.weight_bits": 4, "quant.act_bits": 8}
  quantized = ssm_aimc.evaluate(trained=memory, overrides=ptq)
  assert quantized["post_training_quantization"]
  assert 0.0 <= quantized["test_accuracy"] <= 1.0
  assert quantized["memory_bits"] < in_memory["memory_bits"]
  from_workdir = ssm_aimc.evaluate(config, workdir, overrides=ptq)
  assert from_workdir["test_accuracy"] == quantized["test_accuracy"]
  assert os.path.exists(os.path.join(workdir, "results_evaluate.json"))
  # Without a config, the workdir's own config.json.
  assert ssm_aimc.evaluate(workdir=workdir)["test_accuracy"] == memory.test_accuracy
  with pytest.raises(errors.ConfigError, match="model.d_model: 16 there, 32 now"):
    ssm_aimc.evaluate(trained=memory, overrides={"model.d_model": 32})
  with pytest.raises(errors.ConfigError, match="not both"):
    ssm_aimc.evaluate(config, workdir, trained=memory)


def test_deploy_in_memory_is_deploy_of_the_workdir(runs, tmp_path, monkeypatch):
  config, memory, _, workdir, _ = runs
  monkeypatch.chdir(tmp_path)
  in_memory = ssm_aimc.deploy(trained=memory)
  assert os.listdir(tmp_path) == []
  from_workdir = ssm_aimc.deploy(config, workdir)
  assert os.path.exists(os.path.join(workdir, "deploy", "results.json"))
  assert list(in_memory["chips"]) == ["pcm_like"]
  assert 0.0 <= in_memory["analog_accuracy_mean"] <= 1.0
  for key in ("test_accuracy", "converters_only_accuracy", "analog_accuracy_mean", "tiles"):
    assert in_memory[key] == from_workdir[key], key
  assert in_memory["energy_per_inference_j"] == from_workdir["energy_per_inference_j"]


def test_sweep_in_memory_returns_its_rows_and_writes_nothing(tmp_path, monkeypatch):
  config = sweep_bits.get_config("smoke")
  config.model.update(d_model=8, n_layers=1, d_state=4)
  config.update(num_epochs=1, batch_size=128, eval_batch_size=128, progress_bar=False)
  config.hardware.enabled = False
  config.quant.update(act_bits=32, a_bar_bits=32)
  config.sweep.update(strategy="separate", weight_bits=(32, 4), seeds=(), noise_scales=())
  monkeypatch.chdir(tmp_path)
  summary = ssm_aimc.sweep(config)
  assert os.listdir(tmp_path) == []
  assert summary["csv"] is None and "plots" not in summary
  rows = summary["rows"]
  assert [r["weight_bits"] for r in rows] == [32, 4]
  assert all(0.0 <= r["test_accuracy"] <= 1.0 for r in rows)
  assert rows[1]["memory_bits"] < rows[0]["memory_bits"]
  assert summary["best_test_accuracy"] == max(r["test_accuracy"] for r in rows)


def test_fit_prunes_in_memory(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  result = ssm_aimc.fit(tiny_config(), overrides={"prune.enabled": True, "prune.ratio": 0.5})
  assert os.listdir(tmp_path) == []
  prune = result.results["prune"]
  assert result.results["pruned_dir"] is None
  assert prune["d_state_after"] < prune["d_state_before"]
  # The cost report is the smaller model's, whose params fit()'s pruned_params holds.
  assert (
    result.report.params
    < train.runner.cost_report(
      train.runner.build(result.experiment), result.params, None, result.batch_stats
    ).params
  )
  assert result.pruned_params is not None
