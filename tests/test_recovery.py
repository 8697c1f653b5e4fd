"""A run killed between its writes, or resumed over corrupt files, ends as an uninterrupted
run does: the best state survives a crash between the best and last saves, an unreadable
latest checkpoint is moved aside and the one before it resumed, half-written checkpoint
folders are removed, metrics.jsonl holds every step once, and a write that fails (a full
disk, a read-only filesystem) is one error that leaves the earlier files intact."""

import errno
import json
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from ssm_aimc import errors, train
from ssm_aimc import workdir as workdir_lib
from tests.test_train import _latest_params, snapshot, tiny_config

EPOCHS = 3


def config():
  return tiny_config(num_epochs=EPOCHS, keep_checkpoints=10)


def records(workdir) -> list[dict]:
  """metrics.jsonl without its wall times (which differ between runs)."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items() if k != "wall_time_s"} for line in f]


def best_item(workdir):
  manager = workdir_lib.checkpoint_manager(os.path.join(workdir, workdir_lib.BEST_DIR), 1)
  step = manager.latest_step()
  return step, manager.restore(step)


def assert_same_run(workdir, reference):
  """Same results, same last and best checkpoints (bit for bit), same metrics records."""
  for key in ("test_accuracy", "val_accuracy", "checkpoint_step", "final_step"):
    a = workdir_lib.read_json(os.path.join(workdir, "results.json"))[key]
    assert a == workdir_lib.read_json(os.path.join(reference, "results.json"))[key], key
  for load in (_latest_params, best_item):
    (step_a, item_a), (step_b, item_b) = load(workdir), load(reference)
    assert step_a == step_b
    for a, b in zip(jax.tree.leaves(item_a), jax.tree.leaves(item_b), strict=True):
      np.testing.assert_array_equal(a, b)
  assert records(workdir) == records(reference)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  train.train_and_evaluate(config(), workdir)
  return workdir


class Killed(BaseException):
  """Stands for a SIGKILL: nothing in the run catches it."""


def test_a_crash_between_the_best_and_last_saves_loses_nothing(
  uninterrupted, tmp_path, monkeypatch
):
  """Killed after an epoch's best state is saved and before its last state is: the relaunch
  redoes that epoch from the checkpoint before and ends as the uninterrupted run, best/ and
  metrics.jsonl included."""
  val = [r["val_accuracy"] for r in records(uninterrupted) if "val_accuracy" in r]
  # The last epoch that set a new best (after the first, so there is a checkpoint before).
  crash_epoch = max(e for e in range(1, EPOCHS) if val[e] > max(val[:e]))
  saved_best = []
  original_new_best, original_after_epoch = (
    train._Checkpoints.new_best,
    train._Checkpoints.after_epoch,
  )

  def new_best(self, state, val_accuracy):
    original_new_best(self, state, val_accuracy)
    saved_best.append(int(state.step))

  def after_epoch(self, epoch, state):
    if epoch == crash_epoch:
      raise Killed
    original_after_epoch(self, epoch, state)

  workdir = str(tmp_path / "w")
  monkeypatch.setattr(train._Checkpoints, "new_best", new_best)
  monkeypatch.setattr(train._Checkpoints, "after_epoch", after_epoch)
  with pytest.raises(Killed):
    train.train_and_evaluate(config(), workdir)
  monkeypatch.undo()
  assert best_item(workdir)[0] == saved_best[-1] > _latest_params(workdir)[0]

  train.train_and_evaluate(config(), workdir)
  assert_same_run(workdir, uninterrupted)


def corrupt(checkpoint: str) -> None:
  for root, _, files in os.walk(checkpoint):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"not a checkpoint")


def test_a_corrupt_latest_checkpoint_resumes_from_the_one_before(uninterrupted, tmp_path):
  """Checkpoints of epochs 1 and 2 on disk, the second corrupt, and half-written folders
  left by a crash: the relaunch moves the corrupt one to unreadable/, removes the partial
  ones, resumes from epoch 1 and ends as the uninterrupted run."""
  workdir = str(tmp_path / "w")
  shutil.copytree(uninterrupted, workdir)
  os.remove(os.path.join(workdir, "results.json"))
  ckpt_dir = os.path.join(workdir, workdir_lib.CHECKPOINT_DIR)
  steps = sorted(int(s) for s in os.listdir(ckpt_dir) if s.isdigit())
  assert len(steps) == EPOCHS
  shutil.rmtree(os.path.join(ckpt_dir, str(steps[2])))
  corrupt(os.path.join(ckpt_dir, str(steps[1])))
  partial = [
    os.path.join(ckpt_dir, f"{steps[2]}{workdir_lib.PARTIAL_CHECKPOINT}-1700000000"),
    os.path.join(workdir, workdir_lib.BEST_DIR, f"{steps[2]}{workdir_lib.PARTIAL_CHECKPOINT}"),
  ]
  for path in partial:
    os.makedirs(path)
    with open(os.path.join(path, "half"), "w") as f:
      f.write("x")

  train.train_and_evaluate(config(), workdir)
  assert not any(os.path.exists(p) for p in partial)
  assert os.listdir(os.path.join(workdir, workdir_lib.UNREADABLE_DIR)) == [str(steps[1])]
  assert_same_run(workdir, uninterrupted)


@pytest.mark.parametrize(
  "folder, match",
  [
    (workdir_lib.CHECKPOINT_DIR, "No readable checkpoint is left"),
    (workdir_lib.BEST_DIR, "Could not read the checkpoints in .*best"),
  ],
)
def test_unreadable_checkpoints_are_one_error_not_a_fresh_start(
  uninterrupted, tmp_path, folder, match
):
  """Every last checkpoint corrupt (each moved to unreadable/ in turn), or the best one."""
  workdir = str(tmp_path / "w")
  shutil.copytree(uninterrupted, workdir)
  corrupt(os.path.join(workdir, folder))
  with pytest.raises(errors.CheckpointError, match=match):
    train.train_and_evaluate(tiny_config(num_epochs=EPOCHS + 1, keep_checkpoints=10), workdir)
  if folder == workdir_lib.CHECKPOINT_DIR:
    assert len(os.listdir(os.path.join(workdir, workdir_lib.UNREADABLE_DIR))) == EPOCHS


def test_truncate_metrics_keeps_the_steps_up_to_the_resumed_one(tmp_path):
  path = tmp_path / "metrics.jsonl"
  lines = [json.dumps({"step": s, "train_loss": 1.0}) for s in (5, 10, 15, 20)]
  path.write_text("\n".join(lines) + '\n{"step": 2')  # The last line cut off by a kill.
  assert workdir_lib.truncate_metrics(str(tmp_path), 10) == 3
  assert path.read_text() == "\n".join(lines[:2]) + "\n"
  assert workdir_lib.truncate_metrics(str(tmp_path), 10) == 0


def test_a_full_disk_is_one_error_and_the_relaunch_ends_as_an_uninterrupted_run(
  uninterrupted, tmp_path, monkeypatch
):
  """The third checkpoint write fails as on a full disk: a WorkdirError (one line through
  launch.py) that names the folder; the earlier checkpoints are intact, and a relaunch
  (the disk freed) ends as the uninterrupted run."""
  calls = []
  original = ocp.CheckpointManager.save

  def save(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
      raise OSError(errno.ENOSPC, "No space left on device")
    return original(self, *args, **kwargs)

  workdir = str(tmp_path / "w")
  monkeypatch.setattr(ocp.CheckpointManager, "save", save)
  with pytest.raises(errors.WorkdirError, match="No space left on device; the checkpoints"):
    train.train_and_evaluate(config(), workdir)
  monkeypatch.undo()
  train.train_and_evaluate(config(), workdir)
  assert_same_run(workdir, uninterrupted)


def test_a_read_only_filesystem_is_one_error_naming_the_file(tmp_path, monkeypatch):
  def read_only(path, mode="r", *args, **kwargs):
    if "r" not in mode:
      raise OSError(errno.EROFS, "Read-only file system", path)
    return open(path, mode, *args, **kwargs)

  monkeypatch.setattr(workdir_lib, "open", read_only, raising=False)
  writer = workdir_lib.MetricsWriter(str(tmp_path))
  with pytest.raises(errors.WorkdirError, match="metrics.jsonl: Read-only file system"):
    writer.write(1, train_loss=0.5)
  with pytest.raises(errors.WorkdirError, match="results.json: Read-only file system"):
    workdir_lib.write_json(str(tmp_path / "results.json"), {"a": 1})
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("mode", ["train", "evaluate"])
def test_a_truncated_config_json_is_one_error_and_nothing_changes(uninterrupted, tmp_path, mode):
  workdir = str(tmp_path / "w")
  shutil.copytree(uninterrupted, workdir)
  path = os.path.join(workdir, "config.json")
  with open(path) as f:
    text = f.read()
  with open(path, "w") as f:
    f.write(text[: len(text) // 2])
  before = snapshot(workdir)
  run = train.train_and_evaluate if mode == "train" else train.evaluate
  with pytest.raises(errors.ConfigError, match="config.json this version cannot read"):
    run(config(), workdir)
  assert snapshot(workdir) == before
