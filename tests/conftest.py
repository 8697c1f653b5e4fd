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
run. At level 0 the rest of the compile is mostly XLA's MLIR fusion emitters (one pipeline
per fusion, 355 fusions in the tiny PCM train step), so the CPU backend's older elemental
emitters are used instead (`xla_cpu_use_fusion_emitters=false`): the tiny model's train
step compiles 2.2x (digital) and 1.3-1.5x (PCM, RRAM) faster with them at level 0, and runs
at a similar speed (BENCHMARKS.md "The test suite's compile settings"). The HLO, and so what is
computed, is the same; other machine code can round differently only where one emitter
fuses a multiply and an add that the other does not (1e-9 on the train step's outputs),
far inside every tolerance here. A user's own XLA_FLAGS setting of either flag is kept.
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
for _flag in ("xla_backend_optimization_level=0", "xla_cpu_use_fusion_emitters=false"):
  if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --" + _flag).strip()


def pytest_sessionfinish(session, exitstatus):
  """The process that made the cache directory removes it when the session ends."""
  del session, exitstatus
  if _OWN_CACHE is not None:
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)


# The files that take longest, in wall seconds of each run alone (`pytest tests/<file>`,
# 2026-12-08 02:25-03:17 UTC on the 2-core machine under a load average of 8-12 from other
# jobs: about 3x an idle machine's times, compare them with each other only; the files not
# named here in one `pytest` run of them all, summed from `--durations=0`), first in this
# order (BENCHMARKS.md "The test suite's compile settings"). `make test` runs
# `--dist=loadfile --no-loadscope-reorder`: whole files go to the workers in this order,
# each worker taking the next file when two or fewer of its tests are left. With xdist's
# default reordering (files with most tests first) the notebook files, with one or two
# tests each, went last and ran alone for minutes while the other worker idled; with this
# list stale, test_sweep.py (the longest file after the notebooks') started near the end.
# The notebook file goes first: its worker builds the wheel's venv (about 90 s on a fresh
# clone, idle) that test_notebook_deploy.py and test_install.py, later, need too; the
# other worker meanwhile starts on files that do not wait for it. The rest (each under
# about 25 s here) keep their alphabetical order, after these.
LONGEST_FIRST = (
  "test_notebooks.py",  # 184 s (01 104 s, 02 79 s) + 180 s building the wheel's venv
  "test_sweep.py",  # 336 s
  "test_prune.py",  # 236 s
  "test_train.py",  # 224 s
  "test_pruning.py",  # 243 s (before its base trainings were shared: about 215 s after)
  "test_export.py",  # 186 s
  "test_noise_eval.py",  # 170 s
  "test_models.py",  # 156 s
  "test_chip.py",  # 125 s
  "test_a_noise.py",  # 124 s
  "test_notebook_deploy.py",  # 122 s (03 101 s, 04 21 s)
  "test_quant.py",  # 107 s
  "test_deploy.py",  # 104 s
  "test_hardware.py",  # 103 s
  "test_recurrence_recipes.py",  # 99 s
  "test_cli.py",  # 92 s
  "test_recovery.py",  # 92 s
  "test_install.py",  # not measured here: 31 s idle with the venv made (README), about 90
  "test_configs.py",  # 76 s
  "test_analog_context.py",  # 70 s
  "test_api.py",  # 60 s
  "test_ssm.py",  # 46 s
  "test_imssa_chip.py",  # 46 s
  "test_greedy.py",  # 39 s
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
