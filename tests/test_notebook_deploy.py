"""The notebooks of DEPLOY_NOTEBOOKS (the chip deployment and any Flax model on analog
tiles) run from the wheel's venv and plot (see test_notebooks.py)."""

import os

import pytest

from tests.test_notebooks import DEPLOY_NOTEBOOKS, ROOT, execute_notebook


@pytest.mark.parametrize("name", DEPLOY_NOTEBOOKS)
def test_notebook_runs_and_plots(name, wheel_env, tmp_path):
  execute_notebook(os.path.join(ROOT, "notebooks", name), wheel_env, str(tmp_path))
