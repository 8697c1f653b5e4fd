"""End-to-end tests of training: loss falls, checkpoints are exact, resume is exact, and bad
input fails cleanly through launch.py."""

import json
import os
import re
import shutil
import subprocess
import sys

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import default
from ssm_aimc import data, errors, experiment, optim, runner, steps, train
from ssm_aimc import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**overrides):
  config = default.get_config("smoke")
  config.model.d_model = 16
  config.model.n_layers = 1
  config.model.d_state = 4
  config.batch_size = 32
  config.optimizer.learning_rate = 5e-2
  config.num_epochs = 1
  config.progress_bar = False
  config.log_every_steps = 5
  config.optimizer.warmup_epochs = 0.1
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config


def counted_train_step():
  """(jitted steps.train_step, the list it appends to at every trace)."""
  traces = []

  def counted(*args):
    traces.append(1)
    return steps.train_step(*args)

  return jax.jit(counted), traces


def launch(*args, timeout=240):
  return subprocess.run(
    [sys.executable, os.path.join(ROOT, "launch.py"), *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def _single(config):
  return runner.single(experiment.from_config(config))


def _latest_params(workdir):
  manager = workdir_lib.checkpoint_manager(os.path.join(workdir, workdir_lib.CHECKPOINT_DIR), 100)
  step = manager.latest_step()
  item = manager.restore(step, args=ocp.args.StandardRestore())
  return step, item


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """(workdir, results) of tiny_config() trained for one epoch, shared by the tests that
  only read it (or copy it first): one training instead of one per test."""
  workdir = tmp_path_factory.mktemp("trained")
  return workdir, train.train_and_evaluate(tiny_config(), str(workdir))


def test_one_epoch_lowers_the_loss(trained):
  tmp_path, results = trained
  pop = _single(tiny_config())
  before = {k: v[0] for k, v in pop.evaluate(pop.state.params, pop.setup.dataset.val).items()}
  with open(tmp_path / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f]
  epoch_record = [r for r in records if "val_loss" in r][-1]
  assert epoch_record["val_loss"] < before["loss"] - 0.1
  for key in (
    "task",
    "test_accuracy",
    "params",
    "memory_bits",
    "fp32_memory_bits",
    "compression_vs_fp32",
    "macs_per_step",
    "wall_time_s",
  ):
    assert key in results
  assert results["memory_bits"] == 32 * results["nonzero_params"]
  assert results["compression_vs_fp32"] == pytest.approx(1.0, abs=0.01)
  with open(tmp_path / "results.json") as f:
    assert json.load(f)["test_accuracy"] == results["test_accuracy"]
  with open(tmp_path / "config.json") as f:
    assert json.load(f)["model"]["d_model"] == 16


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
  pop = _single(tiny_config())
  state = pop.state
  key = jax.random.PRNGKey(0)
  for x, y in list(data.batches(pop.setup.dataset.train, 32, seed=0, epoch=0))[:3]:
    state, _ = jax.jit(steps.train_step)(state, x, y, key, None)
  manager = workdir_lib.checkpoint_manager(str(tmp_path / "ckpt"), 2)
  workdir_lib.save(manager, state)
  fresh = _single(tiny_config(seed=123)).state  # Different values, same structure.
  restored = workdir_lib.restore_state(manager, int(state.step), fresh)
  assert int(restored.step) == int(state.step) == 3
  for a, b in zip(
    jax.tree_util.tree_leaves((state.params, state.opt_state)),
    jax.tree_util.tree_leaves((restored.params, restored.opt_state)),
    strict=True,
  ):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_resume_after_a_stop_matches_an_uninterrupted_run(tmp_path):
  config = tiny_config(num_epochs=3, keep_checkpoints=10)
  config.model.dropout = 0.1  # Exercise the dropout key schedule too.
  full = str(tmp_path / "full")
  train.train_and_evaluate(config, full)
  end_step, end_item = _latest_params(full)

  # Simulate a stop right after the first checkpoint: keep only epoch 1's checkpoint.
  stopped = str(tmp_path / "stopped")
  shutil.copytree(full, stopped)
  ckpt_dir = os.path.join(stopped, workdir_lib.CHECKPOINT_DIR)
  steps = sorted(int(s) for s in os.listdir(ckpt_dir) if s.isdigit())
  assert len(steps) == 3
  for s in steps[1:]:
    shutil.rmtree(os.path.join(ckpt_dir, str(s)))
  shutil.rmtree(os.path.join(stopped, workdir_lib.BEST_DIR))
  train.train_and_evaluate(config, stopped)
  resumed_step, resumed_item = _latest_params(stopped)

  assert resumed_step == end_step
  for a, b in zip(
    jax.tree_util.tree_leaves(end_item), jax.tree_util.tree_leaves(resumed_item), strict=True
  ):
    np.testing.assert_array_equal(a, b)


def test_batch_norm_statistics_round_trip_and_resume_exactly(tmp_path):
  """A BatchNorm model's running statistics are saved with its params and restored bit for
  bit; a run stopped after its first checkpoint and resumed ends with the uninterrupted
  run's params and statistics, and --mode=evaluate reads the best ones back. A model
  without BatchNorm saves what it always did."""
  assert "batch_stats" not in workdir_lib.checkpoint_item(_single(tiny_config()).state)
  config = tiny_config(num_epochs=2, keep_checkpoints=10, **{"model.norm": "batch"})
  pop = _single(config)
  state, initial = pop.state, pop.state.batch_stats
  for x, y in list(data.batches(pop.setup.dataset.train, 32, seed=0, epoch=0))[:3]:
    state, _ = jax.jit(steps.train_step)(state, x, y, jax.random.PRNGKey(0), None)
  assert not np.allclose(state.batch_stats["block_0"]["norm"]["var"], 1.0)  # Trained.
  manager = workdir_lib.checkpoint_manager(str(tmp_path / "ckpt"), 2)
  workdir_lib.save(manager, state)
  fresh = _single(tiny_config(seed=123, **{"model.norm": "batch"})).state
  restored = workdir_lib.restore_state(manager, int(state.step), fresh)
  chex.assert_trees_all_equal(restored.batch_stats, state.batch_stats)
  chex.assert_trees_all_equal(
    (restored.params, restored.opt_state), (state.params, state.opt_state)
  )
  chex.assert_trees_all_equal(fresh.batch_stats, initial)  # Restoring made a new state.

  full, stopped = str(tmp_path / "full"), str(tmp_path / "stopped")
  train.train_and_evaluate(config, full)
  end_step, end_item = _latest_params(full)
  shutil.copytree(full, stopped)
  ckpt_dir = os.path.join(stopped, workdir_lib.CHECKPOINT_DIR)
  last = max(int(s) for s in os.listdir(ckpt_dir) if s.isdigit())
  shutil.rmtree(os.path.join(ckpt_dir, str(last)))
  shutil.rmtree(os.path.join(stopped, workdir_lib.BEST_DIR))
  resumed = train.train_and_evaluate(config, stopped)
  resumed_step, resumed_item = _latest_params(stopped)
  assert resumed_step == end_step and "batch_stats" in resumed_item
  chex.assert_trees_all_equal(resumed_item, end_item)
  evaluated = train.evaluate(config, stopped)
  assert evaluated["test_accuracy"] == resumed["test_accuracy"]


def test_evaluate_mode_reads_the_best_checkpoint(trained, tmp_path):
  workdir, results = trained
  evaluated = train.evaluate(tiny_config(), str(workdir))
  assert evaluated["test_accuracy"] == pytest.approx(results["test_accuracy"])
  assert os.path.exists(workdir / "results_evaluate.json")
  with pytest.raises(errors.CheckpointError, match="No checkpoint"):
    train.evaluate(tiny_config(), str(tmp_path / "empty"))


def snapshot(directory) -> dict:
  """{relative path: bytes} of every file under `directory`."""
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, directory)] = f.read()
  return out


def test_a_workdir_resumes_only_its_own_config(trained, tmp_path):
  """A relaunch with another config is refused before anything is written or deleted
  (same shapes: another task; other shapes: another width; one error line through
  launch.py); evaluation refuses another model; a longer num_epochs resumes."""
  workdir = str(tmp_path / "w")
  shutil.copytree(trained[0], workdir)
  first = trained[1]
  before = snapshot(workdir)
  assert any(p.startswith("checkpoints") for p in before) and "config.json" in before

  with pytest.raises(errors.ConfigError, match="data.task: 'digits' there, 'mnist1d' now"):
    train.train_and_evaluate(tiny_config(**{"data.task": "mnist1d"}), workdir)
  assert snapshot(workdir) == before
  widths = ["--config.model.n_layers=1", "--config.model.d_state=4", "--config.batch_size=32"]
  out = launch(*SMOKE, *widths, f"--workdir={workdir}", "--config.model.d_model=32")
  (line,) = error_lines(out)
  assert "model.d_model: 16 there, 32 now" in line and "optimizer.learning_rate" in line
  assert snapshot(workdir) == before
  with pytest.raises(errors.ConfigError, match="model.d_state: 4 there, 8 now"):
    train.evaluate(tiny_config(**{"model.d_state": 8}), workdir)
  assert snapshot(workdir) == before

  resumed = train.train_and_evaluate(tiny_config(num_epochs=2), workdir)
  assert resumed["final_step"] == 2 * first["final_step"]
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    epochs = [r["step"] for r in map(json.loads, f) if "val_loss" in r]
  assert epochs == [first["final_step"], resumed["final_step"]]  # Resumed, not restarted.
  assert workdir_lib.read_json(os.path.join(workdir, "config.json"))["num_epochs"] == 2


def test_per_parameter_rules_label_the_ssm_parameters():
  pop = _single(tiny_config())
  labels = optim.param_labels(
    pop.state.params, experiment.from_config(tiny_config()).optimizer.rules
  )
  s4d = labels["block_0"]["s4d"]
  assert s4d["log_step"] == s4d["log_neg_re_a"] == s4d["im_a"] == "rule_0"
  assert s4d["c"] == "default" and labels["encoder"]["kernel"] == "default"
  assert labels["encoder"]["input_range"] == labels["encoder"]["kernel_scale"] == "rule_1"


def test_frozen_rule_keeps_parameters_fixed(tmp_path):
  config = tiny_config()
  config.optimizer.rules = ((r"s4d/", 0.0, 0.0),)
  pop = _single(config)
  state = pop.state
  before = jax.tree_util.tree_map(np.array, state.params["block_0"]["s4d"])
  encoder_before = np.array(state.params["encoder"]["kernel"])
  for x, y in list(data.batches(pop.setup.dataset.train, 32, seed=0, epoch=0))[:2]:
    state, _ = jax.jit(steps.train_step)(state, x, y, jax.random.PRNGKey(0), None)  # lr 0.
  after = state.params["block_0"]["s4d"]
  for k in before:
    np.testing.assert_array_equal(before[k], after[k])
  assert not np.array_equal(encoder_before, np.asarray(state.params["encoder"]["kernel"]))


def test_bad_values_raise_config_errors():
  with pytest.raises(errors.ConfigError, match="d_state"):
    experiment.from_config(tiny_config(**{"model.d_state": 5}))
  with pytest.raises(errors.ConfigError, match="valid"):
    experiment.from_config(tiny_config(**{"model.method": "magic"}))
  with pytest.raises(errors.ConfigError, match="batch_size"):
    _single(tiny_config(batch_size=100000))


SMOKE = [
  "--config=configs/default.py:smoke",
  "--config.progress_bar=False",
  "--config.model.n_layers=1",
  "--config.model.d_model=8",
]


def error_lines(out) -> list[str]:
  """The `error:` lines of a launch's stderr, after asserting it failed cleanly: exit
  status 1, no traceback, and no absl E-line repeating the error."""
  assert out.returncode == 1, out.stderr[-2000:]
  assert "Traceback" not in out.stderr
  assert not re.search(r"^E\d{4} ", out.stderr, re.MULTILINE), out.stderr[-2000:]
  return [line for line in out.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
  "flag, message",
  [
    ("--config.quant.weight_bit=4", "'quant.weight_bit'; did you mean 'quant.weight_bits'?"),
    ("--config.foo=1", "Unknown config key 'foo'; valid: ['batch_size', "),
    ("--config.model.d_model=abc", "--config.model.d_model=abc: invalid literal for int()"),
  ],
)
def test_launch_bad_config_flag_is_one_line(tmp_path, flag, message):
  """An unknown key or a value of the wrong type: one line, before anything is written."""
  out = launch(*SMOKE, f"--workdir={tmp_path / 'w'}", flag)
  (line,) = error_lines(out)
  assert message in line
  assert not os.path.exists(tmp_path / "w")


def test_launch_missing_data_file_names_the_file(tmp_path):
  out = launch(
    *SMOKE,
    f"--workdir={tmp_path / 'w'}",
    "--config.data.task=smnist",
    f"--config.data.data_dir={tmp_path}",
  )
  assert out.returncode == 1
  assert "train-images-idx3-ubyte" in out.stderr
  assert "Traceback" not in out.stderr


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(trained, tmp_path, monkeypatch):
  """A resumed run (one more epoch) whose loss turns NaN stops with NonFiniteLossError
  naming the last good checkpoint, which stays as it was, as does results.json."""
  workdir = tmp_path / "w"
  shutil.copytree(trained[0], workdir)
  with open(workdir / "results.json") as f:
    results_before = f.read()
  step_before, item_before = _latest_params(str(workdir))

  clean = data.batches
  poisoned = lambda *a, **k: ((x * np.nan, y) for x, y in clean(*a, **k))
  monkeypatch.setattr(data, "batches", poisoned)
  with pytest.raises(errors.NonFiniteLossError, match=f"Non-finite .*step {step_before}"):
    train.train_and_evaluate(tiny_config(num_epochs=2), str(workdir))
  step_after, item_after = _latest_params(str(workdir))
  assert step_after == step_before
  for a, b in zip(
    jax.tree_util.tree_leaves(item_before), jax.tree_util.tree_leaves(item_after), strict=True
  ):
    np.testing.assert_array_equal(a, b)
  with open(workdir / "results.json") as f:
    assert f.read() == results_before


def test_a_second_launch_into_a_busy_workdir_fails_at_once(tmp_path):
  """While this process holds the workdir, a launch into it fails with one line naming
  the holder and writes nothing; a workdir that is a file is refused too."""
  workdir = tmp_path / "w"
  with workdir_lib.lock(str(workdir)):
    held = snapshot(workdir)
    out = launch(*SMOKE, f"--workdir={workdir}")
    (line,) = error_lines(out)
    assert f"held by pid {os.getpid()} " in line and "another launch" in line
    assert snapshot(workdir) == held
  assert snapshot(workdir) == {}  # Released.
  (tmp_path / "file").write_text("")
  with pytest.raises(errors.WorkdirError, match="is not a folder"):
    train.train_and_evaluate(tiny_config(), str(tmp_path / "file"))


def test_launch_evaluate_without_checkpoint_fails_cleanly(tmp_path):
  out = launch(*SMOKE, f"--workdir={tmp_path}", "--mode=evaluate")
  assert out.returncode == 1
  assert "No checkpoint" in out.stderr


def test_a_run_compiles_its_training_step_once(trained, tmp_path):
  """The state enters its first step placed like the step's outputs (committed to the
  device), so every later step reuses the first one's executable: a Python-int step
  counter once made the second step compile the whole program again."""
  # A fine-tune from a checkpoint (the demo's second stage) starts from restored arrays:
  # those of the module's tiny_config() run (only read).
  runner._SINGLE_STEP.clear_cache()
  config = tiny_config(init_checkpoint=str(trained[0]))
  results = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert results["final_step"] > 2
  assert runner._SINGLE_STEP._cache_size() == 1


def test_validation_and_test_share_one_evaluation_program():
  """Both splits go through one padded batch shape: one compile of the evaluation step per
  run, and the padding changes no count."""
  pop = _single(tiny_config())
  val, test = pop.setup.dataset.val, pop.setup.dataset.test
  assert len(val) < pop.members[0].eval_batch_size and len(val) != len(test)
  results = {
    name: pop.evaluate(pop.state.params, split) for name, split in (("val", val), ("test", test))
  }
  assert pop._eval._cache_size() == 1
  for name, split in (("val", val), ("test", test)):
    logits = pop.setup.model.apply({"params": pop.state.params}, split.x, train=False)
    expected = np.mean(np.argmax(np.asarray(logits), -1) == split.y)
    assert results[name]["accuracy"][0] == pytest.approx(expected, abs=1e-12)


def test_qat_run_reports_quantized_cost_and_compiles_once_per_structure(tmp_path):
  config = tiny_config()
  config.quant.enabled = True
  config.quant.weight_bits = 2
  config.quant.a_bar_bits = 4
  results = train.train_and_evaluate(config, str(tmp_path))
  assert results["quant"]["glu"] == 2 and results["quant"]["a_bar"] == 4
  assert results["compression_vs_fp32"] > 5
  assert results["memory_bits"] < results["fp32_memory_bits"] / 5
  assert os.path.exists(os.path.join(results["export_dir"], "manifest.json"))
  # The same compiled step serves another bit width: trace once, run with two specs.
  pop = _single(config)
  spec8 = experiment.from_config(
    tiny_config(**{"quant.enabled": True, "quant.weight_bits": 8})
  ).quant.spec
  step, traces = counted_train_step()
  x, y = next(data.batches(pop.setup.dataset.train, 32, seed=0, epoch=0))
  state, m2 = step(pop.state, x, y, jax.random.PRNGKey(0), pop.specs)
  state, m8 = step(state, x, y, jax.random.PRNGKey(0), spec8)
  assert len(traces) == 1
  assert np.isfinite(float(m2["loss"])) and np.isfinite(float(m8["loss"]))


def test_ptq_evaluate_of_a_float_checkpoint(trained):
  workdir, results = trained
  config = tiny_config()
  config.quant.enabled = True
  config.quant.weight_bits = 8
  ptq = train.evaluate(config, str(workdir))
  assert ptq["post_training_quantization"] is True
  assert ptq["memory_bits"] < results["memory_bits"] / 3
  assert abs(ptq["test_accuracy"] - results["test_accuracy"]) < 0.1


def test_bad_bit_widths_are_config_errors():
  for bits in (0, -3):  # 2.5 is already refused by the ConfigDict (an int field).
    with pytest.raises(errors.ConfigError, match="bits"):
      experiment.from_config(tiny_config(**{"quant.enabled": True, "quant.weight_bits": bits}))
  with pytest.raises(errors.ConfigError, match="quant.mode"):
    experiment.from_config(tiny_config(**{"quant.enabled": True, "quant.mode": "fancy"}))


def test_launch_impossible_bit_width_fails_cleanly(tmp_path):
  out = launch(
    *SMOKE, f"--workdir={tmp_path}", "--config.quant.enabled=True", "--config.quant.weight_bits=0"
  )
  (line,) = error_lines(out)  # Printed once: not also as an absl E-line.
  assert "bits must be whole numbers" in line
  assert not os.path.exists(tmp_path / "checkpoints")
