"""The command line (ssm_aimc.cli, through the clone's launch.py): a short header instead
of the config, no bar text when stderr is not a terminal, each error once."""

import os
import subprocess
import sys

from ssm_aimc import cli, configs
from tests.test_train import ROOT, launch

TINY = [
  "--config=configs/default.py:smoke",
  "--config.model.n_layers=1",
  "--config.model.d_model=8",
  "--config.num_epochs=1",
]


def test_a_launch_prints_a_short_header_no_config_and_no_bar_text(tmp_path):
  """stderr is a pipe here (as in a logged `make demo`): progress comes as log lines, never
  as carriage-return bar text (the config's progress_bar is on)."""
  out = launch(*TINY, f"--workdir={tmp_path}")
  assert out.returncode == 0, out.stderr[-3000:]
  header = out.stdout.splitlines()[:2]
  assert header[0] == (
    f"ssm-aimc train: task digits, model s4d (1 layer, H=8, N=8), workdir {tmp_path} "
    f"(config: {tmp_path / 'config.json'})"
  )
  assert header[1].startswith("JAX ") and "cpu device" in header[1]
  assert (tmp_path / "config.json").exists()  # Saved, not printed:
  assert "checkpoint_every_epochs" not in out.stdout + out.stderr
  assert "\r" not in out.stdout + out.stderr
  assert len(out.stderr.splitlines()) < 15, out.stderr  # The config dump alone was ~150.
  assert "train results" in out.stdout


def test_an_input_error_is_printed_once(tmp_path):
  out = launch(*TINY, f"--workdir={tmp_path / 'w'}", "--config.optimizer.b1=1.5")
  assert out.returncode == 1
  message = "optimizer.b1 must be in [0, 1), got 1.5"
  assert (out.stdout + out.stderr).count(message) == 1, out.stderr
  assert f"error: {message}" in out.stderr and "Traceback" not in out.stderr


def test_a_config_file_that_fails_to_load_is_one_line(tmp_path):
  out = launch("--config=configs/default.py:bogus", f"--workdir={tmp_path / 'w'}")
  assert out.returncode == 1
  (line,) = [line for line in out.stderr.splitlines() if "bogus" in line]
  assert line == (
    "error: --config=configs/default.py:bogus: ValueError: Unknown variant 'bogus' of "
    "configs/default.py; valid: smoke."
  )
  assert "Traceback" not in out.stderr and not (tmp_path / "w").exists()


def test_python_m_ssm_aimc_reads_packaged_configs_from_another_directory(tmp_path):
  """`--config=default:...` from a folder without a file of that name is the packaged
  default (its own variant check answers); a name that is no config lists them."""
  env = {**os.environ, "PYTHONPATH": ROOT}

  def run(config):
    command = [sys.executable, "-m", "ssm_aimc", f"--config={config}", "--workdir=w"]
    out = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    return [line for line in out.stderr.splitlines() if line.startswith("error:")]

  assert run("default:bogus") == [
    "error: --config=default:bogus: ValueError: Unknown variant 'bogus' of "
    "configs/default.py; valid: smoke."
  ]
  (line,) = run("claims/nope")
  assert line.startswith("error: No config file 'claims/nope' and no packaged config")
  assert "claims/c1_cost, " in line and ", default, " in line
  assert not (tmp_path / "w").exists()


def test_config_values_are_resolved_in_both_flag_forms(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  default, c1 = configs.path("default"), configs.path("claims/c1_cost")
  argv = ["prog", "--config=default:smoke", "--config", "claims/c1_cost", "--workdir=w"]
  assert cli._resolve_config(argv) == [
    "prog",
    f"--config={default}:smoke",
    "--config",
    c1,
    "--workdir=w",
  ]
  (tmp_path / "c").write_text("")  # A one-letter file name (inside "--config=") wins.
  assert cli._resolve_config(["prog", "--config=c"]) == ["prog", "--config=c"]


def test_bad_process_flags_are_one_line_before_any_process_waits(tmp_path):
  out = launch(*TINY, f"--workdir={tmp_path / 'w'}", "--num_processes=2", "--process_id=0")
  assert out.returncode == 1
  assert "error: --mode=train runs in one process; only --mode=sweep" in out.stderr
  assert "Traceback" not in out.stderr and not (tmp_path / "w").exists()
