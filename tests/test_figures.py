"""figures.save writes every figure as PNG and PDF, whole or not at all; the training
curves plot what a run's metrics records hold."""

import os

import pytest
from matplotlib.figure import Figure

from ssm_aimc import errors, figures


def _figure():
  fig = Figure(figsize=(2, 2))
  fig.subplots().plot([0, 1], [1, 0])
  return fig


def test_save_writes_png_and_pdf_and_no_temporary_file(tmp_path):
  path = str(tmp_path / "plot.png")
  assert figures.save(_figure(), path) == path
  assert figures.pdf_path(path) == str(tmp_path / "plot.pdf")
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  with open(figures.pdf_path(path), "rb") as f:
    assert f.read(5) == b"%PDF-"
  assert sorted(os.listdir(tmp_path)) == ["plot.pdf", "plot.png"]


def test_a_failing_save_is_a_workdir_error_naming_the_file(tmp_path):
  path = str(tmp_path / "missing" / "plot.png")
  with pytest.raises(errors.WorkdirError, match="plot.png"):
    figures.save(_figure(), path)


def test_training_curves_plot_the_step_and_epoch_records(tmp_path):
  records = [
    {"step": 5, "train_loss": 2.0, "train_accuracy": 0.2},
    {"step": 10, "train_loss": 1.5, "train_accuracy": 0.4},
    {
      "step": 10,
      "epoch": 1,
      "train_loss": 1.7,
      "train_accuracy": 0.3,
      "val_loss": 1.6,
      "val_accuracy": 0.35,
      "wall_time_s": 1.0,
    },
  ]
  assert figures._series(records, "train_loss", per_epoch=False) == ([5, 10], [2.0, 1.5])
  assert figures._series(records, "val_accuracy", per_epoch=True) == ([10], [0.35])
  path = figures.plot_training_curves(records, str(tmp_path / "c.png"), title="t")
  assert os.path.getsize(path) > 0 and os.path.getsize(figures.pdf_path(path)) > 0


def test_the_curves_of_a_sweep_have_a_run_per_member():
  records = [
    {"step": 5, "run": "member 1/2", "train_loss": 2.0},
    {"step": 10, "run": "member 1/2", "epoch": 1, "val_accuracy": 0.5},
    {"step": 10, "run": "chunk 1/1", "epoch": 1, "val_accuracy": [0.25, 0.75]},
  ]
  runs = figures._runs(records)
  assert list(runs) == ["member 1/2", "chunk 1/1[0]", "chunk 1/1[1]"]
  assert runs["chunk 1/1[1]"][0]["val_accuracy"] == 0.75
  assert figures._series(runs["member 1/2"], "train_loss", per_epoch=False) == ([5], [2.0])


def test_sweep_curves_are_written(tmp_path):
  records = [{"step": 10, "run": "m", "epoch": 1, "val_accuracy": [0.25, 0.75]}]
  path = figures.plot_training_curves(records, str(tmp_path / "c.png"))
  assert os.path.getsize(path) > 0 and os.path.getsize(figures.pdf_path(path)) > 0
