"""Runs launch.py the way a user would, for the table scripts in bench/ (not a benchmark)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(args: list[str]) -> float:
  """`python launch.py ARGS --config.progress_bar=False` from the repository root; prints the
  command, raises RuntimeError with the end of stderr on failure, returns the wall time (s)."""
  cmd = [sys.executable, "launch.py", *args, "--config.progress_bar=False"]
  print("$ python " + " ".join(cmd[1:]), flush=True)
  start = time.time()
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
  if out.returncode != 0:
    raise RuntimeError(f"Run failed ({out.returncode}):\n{out.stderr[-3000:]}")
  wall = time.time() - start
  print(f"  {wall:.1f} s", flush=True)
  return wall
