"""The deployment notebook runs headless and plots (see test_notebooks.py)."""

import os

import pytest

from tests.test_notebooks import DEPLOY_NOTEBOOKS, ROOT, execute_notebook


@pytest.mark.parametrize("name", DEPLOY_NOTEBOOKS)
def test_deploy_notebook_runs_and_plots(name):
  execute_notebook(os.path.join(ROOT, "notebooks", name))
