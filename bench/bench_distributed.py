r"""Wall time of one tiny sweep run by 1 process and by 2 local processes (jax.distributed
over JAX's CPU collectives), side by side.

  .venv/bin/python bench/bench_distributed.py --repeats=2 --out=runs/bench_distributed

The sweep is configs/sweep_bits.py:smoke with `OVERRIDES` (4 weight widths of a small
digits model, strategy "separate"). Timed, each repeat, from a fresh launch to the exit
of its last process (imports, the distributed runtime's start and every compile
included, as a user would see it):
  1 process     `python -m ssm_aimc --mode=sweep` alone;
  2 processes   the same command twice, --coordinator_address=127.0.0.1:<free port>
                --num_processes=2 --process_id=0 / 1, started together.
Both write sweep.csv in a workdir of their own; the script checks the two files agree
(same rows; accuracies within 0.03, the population test's tolerance for quantized
members) and prints `uptime` before and after, the walls of every repeat and their
medians as a markdown table (also OUT/table.md; raw numbers in OUT/times.json).
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time

from absl import app, flags

_REPEATS = flags.DEFINE_integer("repeats", 2, "Repeats of every measurement (median reported).")
_OUT = flags.DEFINE_string("out", "runs/bench_distributed", "Output folder.")
_TIMEOUT = flags.DEFINE_integer("timeout", 900, "Seconds one launch may take.")
_EPOCHS = flags.DEFINE_integer(
  "num_epochs", 2, "Epochs of every member (more: training, not compiles, dominates)."
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "configs/sweep_bits.py:smoke"
OVERRIDES = {
  "model.d_model": 16,
  "model.n_layers": 1,
  "model.d_state": 4,
  "num_epochs": 2,
  "batch_size": 64,
  "progress_bar": False,
  "sweep.weight_bits": (8, 4, 3, 2),
  "sweep.seeds": (),
  "sweep.strategy": "separate",
  "sweep.plots": False,
}
ACCURACIES = ("test_accuracy", "val_accuracy", "test_loss", "train_loss")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _command(workdir: str, *flags_: str) -> list[str]:
  args = [f"--config.{k}={v}" for k, v in {**OVERRIDES, "num_epochs": _EPOCHS.value}.items()]
  launch = [sys.executable, "-m", "ssm_aimc", f"--config={CONFIG}", "--mode=sweep"]
  return [*launch, *args, f"--workdir={workdir}", *flags_]


def run(workdir: str, processes: int) -> float:
  """One sweep by `processes` local processes in a fresh `workdir`; its wall time (s)."""
  shutil.rmtree(workdir, ignore_errors=True)
  os.makedirs(workdir)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  if processes == 1:
    commands = [_command(workdir)]
  else:
    address = f"--coordinator_address=127.0.0.1:{_free_port()}"
    commands = [
      _command(workdir, address, f"--num_processes={processes}", f"--process_id={i}")
      for i in range(processes)
    ]
  for c in commands:
    print("$ python " + shlex.join(c[1:]), flush=True)
  logs = [open(os.path.join(workdir, f"launch{i}.log"), "w") for i in range(processes)]
  start = time.time()
  launched = [
    subprocess.Popen(c, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    for c, log in zip(commands, logs, strict=True)
  ]
  try:
    codes = [p.wait(timeout=_TIMEOUT.value) for p in launched]
  finally:
    for p in launched:
      if p.poll() is None:
        p.kill()
        p.wait()
    for log in logs:
      log.close()
  wall = time.time() - start
  if any(codes):
    raise RuntimeError(f"A process failed ({codes}); see {workdir}/launch*.log.")
  print(f"  {processes} process(es): {wall:.1f} s", flush=True)
  return wall


def _rows(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "sweep.csv"), newline="") as f:
    return list(csv.DictReader(f))


def check_same(one: str, two: str) -> float:
  """The largest accuracy or loss difference between the two sweep.csv files (the other
  columns must be equal)."""
  worst = 0.0
  a_rows, b_rows = _rows(one), _rows(two)
  if len(a_rows) != len(b_rows):
    raise RuntimeError(f"{len(a_rows)} rows with 1 process, {len(b_rows)} with 2.")
  for a, b in zip(a_rows, b_rows, strict=True):
    for key in a:
      if key in ACCURACIES:
        worst = max(worst, abs(float(a[key]) - float(b[key])))
      elif a[key] != b[key]:
        raise RuntimeError(f"Column {key} differs: {a[key]} vs {b[key]}.")
  if worst > 0.03:
    raise RuntimeError(f"Accuracies differ by {worst}.")
  return worst


def main(argv) -> None:
  del argv
  out = os.path.abspath(_OUT.value)
  os.makedirs(out, exist_ok=True)
  uptime = lambda: subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
  before = uptime()
  print(f"uptime before: {before}", flush=True)
  times = {1: [], 2: []}
  worst = 0.0
  for r in range(_REPEATS.value):
    for processes in (1, 2):  # Interleaved: both see the same load.
      times[processes].append(run(os.path.join(out, f"p{processes}_r{r}"), processes))
    worst = max(worst, check_same(os.path.join(out, f"p1_r{r}"), os.path.join(out, f"p2_r{r}")))
  after = uptime()
  print(f"uptime after: {after}", flush=True)
  one, two = statistics.median(times[1]), statistics.median(times[2])
  table = "\n".join(
    [
      "| processes | wall time (s) | x vs 1 process |",
      "|---|---|---|",
      f"| 1 | {one:.1f} ({', '.join(f'{t:.1f}' for t in times[1])}) | 1.0 |",
      f"| 2 (local, gloo) | {two:.1f} ({', '.join(f'{t:.1f}' for t in times[2])}) | "
      f"{one / two:.2f} |",
    ]
  )
  print(f"\n{table}\n\nlargest accuracy/loss difference between the two: {worst:.2g}")
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(table + "\n")
  with open(os.path.join(out, "times.json"), "w") as f:
    json.dump({"times": times, "uptime_before": before, "uptime_after": after}, f, indent=2)


if __name__ == "__main__":
  app.run(main)
