"""The metrics writer: metrics.jsonl, the records kept in memory, nothing written without a
workdir, and TensorBoard scalars of every number (tests/test_api.py reads a run's events)."""

import json
import os

import numpy as np
import pytest

from ssm_aimc import errors
from ssm_aimc import workdir as workdir_lib
from tests.test_api import _tensorboard_scalars


def test_without_a_workdir_the_records_are_kept_and_nothing_written(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  writer = workdir_lib.MetricsWriter(None)
  writer.write(5, train_loss=np.float32(0.5), train_accuracy=np.asarray(0.25))
  writer.close()
  assert writer.records == [{"step": 5, "train_loss": 0.5, "train_accuracy": 0.25}]
  assert os.listdir(tmp_path) == []


def test_metrics_jsonl_holds_the_records(tmp_path):
  writer = workdir_lib.MetricsWriter(str(tmp_path))
  writer.write(1, train_loss=1.0)
  writer.write(2, epoch=1, val_accuracy=0.5)
  with open(tmp_path / workdir_lib.METRICS) as f:
    assert [json.loads(line) for line in f] == writer.records
  assert workdir_lib.read_metrics(str(tmp_path)) == writer.records
  assert not os.path.exists(tmp_path / workdir_lib.TENSORBOARD_DIR)


def test_scalars_tag_runs_and_population_members():
  record = {"step": 3, "run": "member 1/2", "train_loss": [1.0, 2.0], "diverged": True, "x": 4}
  assert workdir_lib.scalars(record) == [
    ("member_1_of_2/train_loss/0", 1.0),
    ("member_1_of_2/train_loss/1", 2.0),
    ("member_1_of_2/x", 4.0),
  ]


def test_tensorboard_events_hold_every_number(tmp_path):
  writer = workdir_lib.MetricsWriter(str(tmp_path), tensorboard=True)
  writer.write(5, train_loss=0.75)
  writer.write(10, epoch=1, train_loss=0.5, val_accuracy=0.625)
  writer.close()
  scalars = _tensorboard_scalars(str(tmp_path / workdir_lib.TENSORBOARD_DIR))
  assert scalars == {
    "train_loss": [(5, 0.75), (10, 0.5)],
    "epoch": [(10, 1.0)],
    "val_accuracy": [(10, 0.625)],
  }


def test_tensorboard_needs_a_workdir():
  with pytest.raises(errors.ConfigError, match="needs a workdir"):
    workdir_lib.MetricsWriter(None, tensorboard=True)


def test_cached_json_reuses_a_key_only_when_it_matches(tmp_path):
  path = str(tmp_path / "kept.json")
  calls = []

  def compute():
    calls.append(1)
    return {"value": 3}

  assert workdir_lib.cached_json(path, {"a": 1}, compute)["value"] == 3
  assert workdir_lib.cached_json(path, {"a": 1}, compute)["value"] == 3 and len(calls) == 1
  # A key another version wrote without a field that now has a default: refused, unless
  # `normalise` reads it as this version would write it; the file is never overwritten.
  with open(path) as f:
    before = f.read()
  with pytest.raises(errors.ConfigError, match="another config"):
    workdir_lib.cached_json(path, {"a": 1, "b": 0}, compute)
  with_default = lambda stored: {"b": 0, **stored}
  kept = workdir_lib.cached_json(path, {"a": 1, "b": 0}, compute, normalise=with_default)
  assert kept["value"] == 3 and len(calls) == 1
  with pytest.raises(errors.ConfigError, match="another config"):
    workdir_lib.cached_json(path, {"a": 2, "b": 0}, compute, normalise=with_default)
  with open(path) as f:
    assert f.read() == before
