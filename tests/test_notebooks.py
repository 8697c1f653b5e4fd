"""Every notebook runs top to bottom, headless, and shows at least one plot.

The notebooks are split over two test files (this one and test_notebook_deploy.py) so
that the two pytest workers (`--dist=loadfile`) run them side by side."""

import glob
import os

import nbclient
import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
# Run by tests/test_notebook_deploy.py.
DEPLOY_NOTEBOOKS = ("03_deploy_to_crossbar.ipynb",)


def execute_notebook(path: str) -> None:
  """Runs the notebook at `path`; fails on any cell error or when it shows no plot."""
  nb = nbformat.read(path, as_version=4)
  assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), (
    "commit notebooks with outputs cleared"
  )
  client = nbclient.NotebookClient(
    nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": ROOT}}
  )
  client.execute()  # Raises CellExecutionError, naming the cell, on any error.
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
  assert set(DEPLOY_NOTEBOOKS) <= names


@pytest.mark.parametrize(
  "path",
  [p for p in NOTEBOOKS if os.path.basename(p) not in DEPLOY_NOTEBOOKS],
  ids=os.path.basename,
)
def test_notebook_runs_and_plots(path):
  execute_notebook(path)
