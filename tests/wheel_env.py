"""A wheel of this checkout installed in a fresh virtual environment outside the clone.

`get()` builds the wheel (`pip wheel --no-deps` on a copy of the package sources, so a
stale build/ folder of the clone cannot leak into it), creates a venv and installs the
wheel there with `pip install <wheel> ipykernel` (its dependencies from the package
registry, or pip's cache where `make test` has just installed the same ones; ipykernel so
that the notebooks' tests run their kernels in it), then registers that kernel in the venv
(`python -m ipykernel install --prefix <venv> --name ssm-aimc-wheel`: the kernelspec
`WheelEnv.kernels` holds). It happens once per content of the package sources and of
these extra requirements: the venv lives in the temporary directory under a name keyed by
their hash, and later sessions with the same sources reuse it. A file lock
(a blocking flock) makes concurrent pytest-xdist workers wait for the one that builds.
A failing build or install raises with pip's output: nothing is skipped.

Environments of other sources left unused for a day are removed when a new one is made.
The conftest's `wheel_env` fixture hands out the `WheelEnv`; tests run commands in it
with `WheelEnv.run` (the clone kept off the import path).
"""

from __future__ import annotations

import dataclasses
import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the wheel is made from; a change to any of them makes a new environment.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "NOTICE", "ssm_aimc")
PREFIX = "ssm-aimc-wheel-env-"
UNUSED_S = 24 * 3600  # Environments of other sources unused this long are removed.
PIP_TIMEOUT_S = 1200
# Installed next to the wheel: what a Jupyter kernel in the venv needs beyond the wheel's
# own dependencies (matplotlib, scikit-learn, ...), as the test extra pins it.
KERNEL_REQUIREMENTS = ("ipykernel>=7.4",)
KERNEL_NAME = "ssm-aimc-wheel"  # The venv's kernelspec (tests/test_notebooks.py).


@dataclasses.dataclass(frozen=True)
class WheelEnv:
  """An installed wheel: `root` (the cache folder), `wheel` (its path), `bin` (the venv's
  scripts: python, pip, ssm-aimc) and `setup_s` (seconds its creation took, when made)."""

  root: str
  wheel: str
  bin: str
  setup_s: float

  @property
  def python(self) -> str:
    return os.path.join(self.bin, "python")

  @property
  def kernels(self) -> str:
    """The folder of the venv's kernelspecs, KERNEL_NAME among them (a kernel_dirs entry of
    jupyter_client's KernelSpecManager)."""
    return os.path.join(os.path.dirname(self.bin), "share", "jupyter", "kernels")

  def env(self) -> dict:
    """The environment of a command in the venv: its scripts first on PATH, and neither
    PYTHONPATH nor another venv, so the clone's sources cannot be imported."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = self.bin + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = os.path.dirname(self.bin)
    return env

  def run(self, args: list[str], cwd: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`args` (args[0] a script of the venv: "python", "ssm-aimc", ...) run in `cwd`."""
    command = [os.path.join(self.bin, args[0]), *args[1:]]
    return subprocess.run(
      command, cwd=cwd, env=self.env(), capture_output=True, text=True, timeout=timeout
    )


def _files() -> list[str]:
  """The source files the wheel is built from, relative to ROOT, sorted."""
  found = []
  for source in SOURCES:
    path = os.path.join(ROOT, source)
    if os.path.isfile(path):
      found.append(source)
    for folder, dirs, files in os.walk(path):
      dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.endswith(".egg-info"))
      found += [os.path.relpath(os.path.join(folder, f), ROOT) for f in files]
  return sorted(f for f in found if not f.endswith((".pyc", ".pyo")))


def source_hash() -> str:
  """A hash of the names and contents of the package's source files, and of what else the
  venv gets (KERNEL_REQUIREMENTS, KERNEL_NAME)."""
  digest = hashlib.sha256()
  digest.update(json.dumps([KERNEL_REQUIREMENTS, KERNEL_NAME]).encode() + b"\0")
  for name in _files():
    digest.update(name.encode() + b"\0")
    with open(os.path.join(ROOT, name), "rb") as f:
      digest.update(f.read() + b"\0")
  return digest.hexdigest()[:16]


def _check(out: subprocess.CompletedProcess, what: str) -> None:
  if out.returncode != 0:
    raise RuntimeError(
      f"{what} failed (exit {out.returncode}):\n{out.stdout[-6000:]}\n{out.stderr[-6000:]}"
    )


def _pip(python: str, *args: str, cwd: str) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
  return subprocess.run(
    [python, "-m", "pip", *args],
    cwd=cwd,
    env=env,
    capture_output=True,
    text=True,
    timeout=PIP_TIMEOUT_S,
  )


def _make(root: str) -> WheelEnv:
  """Builds the wheel and the venv in `root` (an empty folder)."""
  start = time.time()
  src = os.path.join(root, "src")
  os.makedirs(src)
  for name in _files():
    os.makedirs(os.path.dirname(os.path.join(src, name)), exist_ok=True)
    shutil.copy2(os.path.join(ROOT, name), os.path.join(src, name))
  dist = os.path.join(root, "dist")
  _check(_pip(sys.executable, "wheel", src, "--no-deps", "-w", dist, cwd=root), "pip wheel")
  (wheel,) = glob.glob(os.path.join(dist, "*.whl"))
  venv = os.path.join(root, "venv")
  out = subprocess.run(
    [sys.executable, "-m", "venv", venv], capture_output=True, text=True, timeout=300
  )
  _check(out, "python -m venv")
  python = os.path.join(venv, "bin", "python")
  install = ("install", wheel, *KERNEL_REQUIREMENTS)
  _check(_pip(python, *install, cwd=root), f"pip {' '.join(install)}")
  kernel = [python, "-m", "ipykernel", "install", "--prefix", venv, "--name", KERNEL_NAME]
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  out = subprocess.run(kernel, cwd=root, env=env, capture_output=True, text=True, timeout=300)
  _check(out, " ".join(kernel[1:]))
  shutil.rmtree(src)
  env = WheelEnv(root, wheel, os.path.dirname(python), time.time() - start)
  with open(os.path.join(root, "ready.json"), "w") as f:
    json.dump(dataclasses.asdict(env), f)
  return env


def _remove_unused(keep: str) -> None:
  """Removes the environments of other sources whose last use is older than UNUSED_S (and
  that no process holds: each is removed under its own lock, taken without waiting)."""
  for root in glob.glob(os.path.join(tempfile.gettempdir(), PREFIX + "*")):
    used = os.path.join(root, "used")
    if root == keep or root.endswith(".lock") or not os.path.exists(used):
      continue
    if time.time() - os.path.getmtime(used) < UNUSED_S:
      continue
    with open(root + ".lock", "a") as lock:
      try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError:
        continue
      shutil.rmtree(root, ignore_errors=True)


def get() -> WheelEnv:
  """The WheelEnv of the current sources, made (once, under a lock) when missing."""
  root = os.path.join(tempfile.gettempdir(), PREFIX + source_hash())
  with open(root + ".lock", "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # Waits while another process builds it.
    ready = os.path.join(root, "ready.json")
    if os.path.exists(ready):
      with open(ready) as f:
        env = WheelEnv(**{**json.load(f), "setup_s": 0.0})
    else:
      shutil.rmtree(root, ignore_errors=True)  # A half-made one (a killed build).
      os.makedirs(root)
      env = _make(root)
      _remove_unused(keep=root)
    with open(os.path.join(root, "used"), "w") as f:
      f.write(str(time.time()))
  return env
