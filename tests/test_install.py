"""The package as a user installs it: a wheel of this checkout in a fresh venv outside the
clone (the `wheel_env` fixture, tests/wheel_env.py), used from another directory."""

import json
import os

from tests import wheel_env as wheel_env_lib

TINY = [
  "--config.num_epochs=1",
  "--config.model.n_layers=1",
  "--config.model.d_model=8",
  "--config.progress_bar=False",
]


def test_console_script_trains_a_packaged_config_from_another_directory(wheel_env, tmp_path):
  print(f"wheel_env set-up: {wheel_env.setup_s:.0f} s (0: reused)")
  workdir = tmp_path / "run"
  out = wheel_env.run(
    ["ssm-aimc", "--config=default:smoke", f"--workdir={workdir}", *TINY], cwd=str(tmp_path)
  )
  assert out.returncode == 0, out.stderr[-3000:]
  results = json.loads((workdir / "results.json").read_text())
  assert results["task"] == "digits" and results["epochs"] == 1
  assert (workdir / "config.json").exists()
  assert out.stdout.startswith("ssm-aimc train: task digits, model s4d")


def test_the_installed_package_fits_a_packaged_config_in_memory(wheel_env, tmp_path):
  code = (
    "import ssm_aimc, ssm_aimc.configs as c\n"
    "from ssm_aimc.configs import default\n"
    "from ssm_aimc.configs.claims import c1_cost\n"
    "assert c1_cost.get_config('smoke').claim.name == 'c1'\n"
    "result = ssm_aimc.fit(default.get_config('smoke'), overrides={\n"
    "  'num_epochs': 1, 'model.n_layers': 1, 'model.d_model': 8, 'progress_bar': False})\n"
    "assert result.results['epochs'] == 1 and result.workdir is None\n"
    "print(ssm_aimc.__file__)\n"
    "print(c.path('claims/c1_cost.py'))\n"
    "print(result.test_accuracy)\n"
  )
  out = wheel_env.run(["python", "-c", code], cwd=str(tmp_path))
  assert out.returncode == 0, out.stderr[-3000:]
  package, claim, accuracy = out.stdout.split()[-3:]
  assert 0.1 < float(accuracy) <= 1.0  # Ten classes: one epoch learns something.
  assert os.listdir(tmp_path) == []  # In memory: nothing written where it ran.
  venv = os.path.dirname(wheel_env.bin)
  # The installed copy, not the clone's sources.
  assert package.startswith(venv) and not package.startswith(wheel_env_lib.ROOT)
  assert claim.startswith(os.path.dirname(package)) and os.path.isfile(claim)


def test_unknown_config_name_is_one_error_listing_the_packaged_configs(wheel_env, tmp_path):
  out = wheel_env.run(
    ["python", "-m", "ssm_aimc", "--config=defualt:smoke", f"--workdir={tmp_path / 'w'}"],
    cwd=str(tmp_path),
  )
  assert out.returncode == 1
  (line,) = [line for line in out.stderr.splitlines() if "defualt" in line]
  assert line.startswith("error: No config file 'defualt'") and "claims/c1_cost" in line
  assert "Traceback" not in out.stderr and not (tmp_path / "w").exists()
