"""Session set-up shared by every test process.

XLA compiles dominate this suite's time on a CPU, and many programs recur: every
`launch.py` subprocess, notebook kernel and pytest worker compiles the same small models
again. One persistent compilation cache per test session (a fresh temporary directory,
inherited by subprocesses and notebook kernels through the environment) lets a program
compiled once be loaded by the others. Results do not depend on it: a cache hit loads the
executable the same compilation would have produced.

The programs are also compiled with XLA's CPU backend at optimisation level 0: the LLVM
passes are most of the compile time of the analog models (`pytest tests/test_noise_eval.py`
alone: 104 s at the default level, 50 s at 0, on 2 cores), while these tiny shapes barely
run. The HLO, and so what is computed, is the same; unoptimised machine code can round
differently only where LLVM would have fused a multiply and an add, far inside every
tolerance here. A user's own XLA_FLAGS setting of the level is kept. (The notebooks, which
train for real, took as long at level 0 as at the default: 84 / 66 / 48 s against 89 / 66 /
47 s in two runs of the suite.)
"""

import os
import shutil
import tempfile

import pytest

# Before JAX is imported anywhere in this process; children inherit the environment.
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  # xdist workers inherit the controller's environment, so they share one directory.
  _OWN_CACHE = tempfile.mkdtemp(prefix="ssm-aimc-jax-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
  ).strip()


def pytest_sessionfinish(session, exitstatus):
  """The process that made the cache directory removes it when the session ends."""
  del session, exitstatus
  if _OWN_CACHE is not None:
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)


# The files that take longest (seconds of `--durations=0` on the 2-core CI machine,
# 2026-12-07), the two notebook files first so that each worker starts with one.
# `make test` runs `--dist=loadfile --no-loadscope-reorder`: whole files go to the workers
# in collection order. With xdist's default reordering (files with most tests first) the
# notebook files, with one or two tests each, went last and ran alone for minutes while
# the other worker idled; started first, the short files fill in around them.
# The notebook files (kernels from the wheel's venv) measured with -n 0 on a loaded 2-core
# machine, the venv reused (2026-12-07, three and two runs).
LONGEST_FIRST = (
  "test_notebooks.py",  # 234-313 s (01 96-135 s, 02 138-177 s)
  "test_notebook_deploy.py",  # 200-207 s (03 168-170 s, 04 32-37 s)
  "test_models.py",  # 184 s
  "test_install.py",  # 103-113 s cold, 75-91 s of it making the wheel's venv (31 s reused)
  "test_train.py",  # 139 s
  "test_noise_eval.py",  # 127 s
)


def pytest_collection_modifyitems(session, config, items):
  """Runs the files of LONGEST_FIRST first, in that order (the rest keep theirs)."""
  del session, config
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def wheel_env():
  """This checkout built as a wheel and installed in a fresh venv outside the clone, with
  ipykernel and its kernelspec for the notebooks' kernels (tests/wheel_env.py: made once
  per content of the package sources, shared by test_install.py, the notebook files and
  the xdist workers under a file lock, reused by later sessions); a failed build or
  install is an error with pip's output. `wheel_env.run(["ssm-aimc", ...], cwd=...)` runs
  a command in it with the clone off the import path."""
  from tests import wheel_env as wheel_env_lib  # noqa: PLC0415

  return wheel_env_lib.get()
