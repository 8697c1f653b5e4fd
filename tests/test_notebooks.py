"""Every notebook runs top to bottom, headless, as a user runs it: in a kernel of the venv
where only the built wheel is installed (the `wheel_env` fixture, tests/wheel_env.py), from
a folder outside the clone; and it shows at least one plot.

The notebooks are split over two test files (this one and test_notebook_deploy.py) so
that the two pytest workers (`--dist=loadfile`, whole files) run them side by side."""

import glob
import os
import subprocess
import sys
import time

import jupyter_client
import jupyter_client.kernelspec
import nbclient
import nbformat
import pytest

from tests import wheel_env as wheel_env_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
# Run by tests/test_notebook_deploy.py; the others here. The two files take about as long
# (notebooks/README.md has each notebook's time).
DEPLOY_NOTEBOOKS = ("03_deploy_to_crossbar.ipynb", "04_any_flax_model.ipynb")
# Run first (after the install cell): where the kernel's ssm_aimc comes from.
PROBE = "import os, sys\nimport ssm_aimc\nprint(sys.executable, ssm_aimc.__file__, os.getcwd())"


def execute_notebook(path: str, wheel_env: wheel_env_lib.WheelEnv, cwd: str) -> None:
  """Runs the notebook at `path` in the kernel of `wheel_env`'s venv (its kernelspec, the
  venv's environment: no PYTHONPATH) with `cwd` as the working directory; fails unless
  the kernel imports the wheel's ssm_aimc, on any cell error, or when it shows no plot."""
  nb = nbformat.read(path, as_version=4)
  assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), (
    "commit notebooks with outputs cleared"
  )
  probe = nbformat.v4.new_code_cell(PROBE)
  nb.cells.insert(2, probe)
  specs = jupyter_client.kernelspec.KernelSpecManager(kernel_dirs=[wheel_env.kernels])
  km = jupyter_client.AsyncKernelManager(
    kernel_name=wheel_env_lib.KERNEL_NAME, kernel_spec_manager=specs
  )
  client = nbclient.NotebookClient(nb, km=km, timeout=600, resources={"metadata": {"path": cwd}})
  start = time.time()
  # Raises CellExecutionError, naming the cell. cleanup_kc: the kernel is shut down at the
  # end (nbclient keeps a kernel of a KernelManager it was handed alive until exit).
  client.execute(cleanup_kc=True, env=wheel_env.env())
  print(f"{os.path.basename(path)}: {time.time() - start:.0f} s")
  executable, package, kernel_cwd = probe.outputs[0]["text"].split()
  venv = os.path.dirname(wheel_env.bin)
  assert executable.startswith(venv), executable
  assert package.startswith(venv) and not package.startswith(ROOT), package
  assert os.path.realpath(kernel_cwd) == os.path.realpath(cwd)
  images = [
    output
    for cell in nb.cells
    if cell.cell_type == "code"
    for output in cell.outputs
    if "image/png" in output.get("data", {})
  ]
  assert images, "a notebook should show its results as plots"


def test_there_are_notebooks_and_each_has_a_test():
  assert NOTEBOOKS
  names = {os.path.basename(p) for p in NOTEBOOKS}
  assert set(DEPLOY_NOTEBOOKS) < names  # Both files run some.


@pytest.mark.parametrize(
  "path",
  [p for p in NOTEBOOKS if os.path.basename(p) not in DEPLOY_NOTEBOOKS],
  ids=os.path.basename,
)
def test_notebook_runs_and_plots(path, wheel_env, tmp_path):
  execute_notebook(path, wheel_env, str(tmp_path))


def _install_cell(path: str) -> str:
  return nbformat.read(path, as_version=4).cells[1].source


def test_each_notebook_opens_with_the_same_install_cell():
  cells = {_install_cell(p) for p in NOTEBOOKS}
  assert len(cells) == 1
  (cell,) = cells
  assert 'SSM_AIMC_SOURCE = os.environ.get("SSM_AIMC_SOURCE", "")' in cell


def test_install_cell_without_the_package_asks_for_ssm_aimc_source(tmp_path):
  """Where ssm_aimc cannot be imported (-I -S: no site-packages, no PYTHONPATH) and
  SSM_AIMC_SOURCE is unset, the cell stops with the instructions and installs nothing."""
  env = {k: v for k, v in os.environ.items() if k != "SSM_AIMC_SOURCE"}
  out = subprocess.run(
    [sys.executable, "-I", "-S", "-c", _install_cell(NOTEBOOKS[0])],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
  )
  assert out.returncode == 1
  assert "RuntimeError: ssm_aimc is not installed: set SSM_AIMC_SOURCE" in out.stderr


def test_install_cell_does_nothing_where_the_package_is_importable(monkeypatch):
  def no_install(*args, **kwargs):
    raise AssertionError(f"the cell ran {args}")

  monkeypatch.setattr(subprocess, "check_call", no_install)
  monkeypatch.delenv("SSM_AIMC_SOURCE", raising=False)
  exec(_install_cell(NOTEBOOKS[0]), {})
