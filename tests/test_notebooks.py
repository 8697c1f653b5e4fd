"""Every notebook runs top to bottom, headless, as a user runs it: in a kernel of the venv
where only the built wheel is installed (the `wheel_env` fixture, tests/wheel_env.py), from
a folder outside the clone; and it shows at least one plot.

Each notebook keeps the sizes of its run (epochs, chips, ...) in one cell tagged
`parameters` (papermill's convention). The tests insert a cell after it with the smaller
sizes of TEST_SIZES: every cell and every API call runs, on less training and fewer chips
(a run checks that the notebook works, not its numbers; those come from a run at the
committed sizes). A name of TEST_SIZES missing from the parameters cell fails the test, so
the smaller sizes cannot silently stop applying.

The notebooks are split over two test files (this one and test_notebook_deploy.py) so
that the two pytest workers (`--dist=loadfile`, whole files) run them side by side."""

import ast
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
# The sizes the tests run each notebook at (assigned after its `parameters` cell).
TEST_SIZES = {
  "01_quickstart.ipynb": {"EPOCHS": 1, "CHIPS": 2},
  "02_bits_and_noise.ipynb": {"EPOCHS": 1, "CHIPS": 2},
  "03_deploy_to_crossbar.ipynb": {"EPOCHS": 1, "CHIPS": 2, "DRIFT_TIMES": (1.0, 86400.0)},
  "04_any_flax_model.ipynb": {"STEPS": 40, "CHIPS": 2},
}
# Run first (after the install cell): where the kernel's ssm_aimc comes from.
PROBE = "import os, sys\nimport ssm_aimc\nprint(sys.executable, ssm_aimc.__file__, os.getcwd())"


def parameters_cell(nb) -> int:
  """The index of the notebook's one code cell tagged `parameters`."""
  found = [
    i
    for i, cell in enumerate(nb.cells)
    if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", [])
  ]
  assert len(found) == 1, f"one cell tagged 'parameters' expected, found {len(found)}"
  return found[0]


def assigned_names(source: str) -> set[str]:
  """The names a cell assigns at its top level."""
  return {
    target.id
    for node in ast.parse(source).body
    if isinstance(node, ast.Assign)
    for target in node.targets
    if isinstance(target, ast.Name)
  }


def execute_notebook(path: str, wheel_env: wheel_env_lib.WheelEnv, cwd: str) -> None:
  """Runs the notebook at `path` in the kernel of `wheel_env`'s venv (its kernelspec, the
  venv's environment: no PYTHONPATH) with `cwd` as the working directory, at its
  TEST_SIZES; fails unless the kernel imports the wheel's ssm_aimc, on any cell error, or
  when it shows no plot."""
  nb = nbformat.read(path, as_version=4)
  assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), (
    "commit notebooks with outputs cleared"
  )
  sizes = TEST_SIZES[os.path.basename(path)]
  at = parameters_cell(nb)
  assert set(sizes) <= assigned_names(nb.cells[at].source), (
    "TEST_SIZES names a size the notebook lacks"
  )
  nb.cells.insert(
    at + 1, nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in sizes.items()))
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
  assert set(TEST_SIZES) == names  # Each has its test sizes.


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_each_notebook_keeps_its_sizes_in_one_parameters_cell(path):
  """The committed sizes are the larger ones, and the cells use them (no leftover literal)."""
  nb = nbformat.read(path, as_version=4)
  source = nb.cells[parameters_cell(nb)].source
  committed = {}
  exec(source, {}, committed)  # noqa: S102 - the notebook's own constants
  for name, small in TEST_SIZES[os.path.basename(path)].items():
    assert name in committed
    big = committed[name]
    assert (len(big) > len(small)) if isinstance(big, tuple) else (big > small), name
    used = [
      c for c in nb.cells if c.cell_type == "code" and name in c.source and c.source != source
    ]
    assert used, f"{name} is set but no cell uses it"


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
