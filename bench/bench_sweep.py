r"""Wall time of a sweep of 8 bit-width configs: one program (vmap, lax.map, separate) vs 8
separate launches, side by side in one run.

  .venv/bin/python bench/bench_sweep.py --repeats=3 --out=runs/bench_sweep

The 8 configs are configs/sweep_bits.py with `OVERRIDES` (a small digits model) and
weight_bits = 1..8. Timed, each repeat, every one from a fresh process (imports and
compiles included, as a user would see it):
  vmap / map / separate   `sweep.run_sweep` with that strategy (one process each);
  8 launches              `python launch.py --mode=train` once per config, each its own
                          process and compile (bench/launcher.py), the times summed.
The in-process training time of run_sweep (training loop and its compiles, without
evaluation and plots) is reported next to the wall time. Medians over repeats; a markdown
table goes to stdout and OUT/table.md (raw numbers in OUT/times.json).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import launcher  # bench/launcher.py, next to this script
from absl import app, flags

_REPEATS = flags.DEFINE_integer("repeats", 3, "Repeats of every measurement (median reported).")
_OUT = flags.DEFINE_string("out", "runs/bench_sweep", "Output folder.")
_CHILD = flags.DEFINE_string("child", "", "Internal: run one sweep with this strategy.")
_WORKDIR = flags.DEFINE_string("workdir", "", "Internal: the child's workdir.")
_SKIP_LAUNCHES = flags.DEFINE_bool("skip_launches", False, "Time only the in-program sweeps.")

CONFIG = "configs/sweep_bits.py"
WEIGHT_BITS = (1, 2, 3, 4, 5, 6, 7, 8)
OVERRIDES = {
  "model.d_model": 16,
  "model.n_layers": 2,
  "model.d_state": 8,
  "num_epochs": 2,
  "batch_size": 64,
  "progress_bar": False,
}
STRATEGIES = ("vmap", "map", "separate")


def _config(strategy: str):
  from configs import sweep_bits  # noqa: PLC0415

  config = sweep_bits.get_config()
  for path, value in OVERRIDES.items():
    *parents, leaf = path.split(".")
    section = config
    for p in parents:
      section = section[p]
    section[leaf] = value
  config.sweep.weight_bits = WEIGHT_BITS
  config.sweep.seeds = ()
  config.sweep.strategy = strategy
  config.sweep.plots = False
  return config


def run_child(strategy: str, workdir: str) -> None:
  """One sweep in this process; prints its summary times as the last line (JSON)."""
  from ssm_aimc import sweep  # noqa: PLC0415

  start = time.time()
  summary = sweep.run_sweep(_config(strategy), workdir)
  print(
    json.dumps(
      {
        "train_time_s": summary["train_time_s"],
        "run_sweep_s": time.time() - start,
        "accuracy": [r["test_accuracy"] for r in summary["rows"]],
      }
    )
  )


def time_strategy(strategy: str, workdir: str) -> dict:
  cmd = [
    sys.executable,
    os.path.abspath(__file__),
    f"--child={strategy}",
    f"--workdir={workdir}",
  ]
  print("$ python " + " ".join(cmd[1:]), flush=True)
  env = dict(os.environ, PYTHONPATH=launcher.ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  start = time.time()
  out = subprocess.run(cmd, cwd=launcher.ROOT, env=env, capture_output=True, text=True)
  wall = time.time() - start
  if out.returncode != 0:
    raise RuntimeError(f"{strategy} failed:\n{out.stderr[-3000:]}")
  return {"wall_s": wall, **json.loads(out.stdout.strip().splitlines()[-1])}


def time_launches(workdir: str) -> dict:
  """8 separate `launch.py --mode=train` runs; returns the summed and per-launch walls."""
  walls = []
  for bits in WEIGHT_BITS:
    args = [
      f"--config={CONFIG}",
      f"--workdir={os.path.join(workdir, f'w{bits}')}",
      "--mode=train",
      f"--config.quant.weight_bits={bits}",
      *(f"--config.{k}={v}" for k, v in OVERRIDES.items() if k != "progress_bar"),
    ]
    walls.append(launcher.launch(args))
  return {"wall_s": sum(walls), "per_launch_s": walls}


def _uptime() -> str:
  try:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
  except OSError:
    return "uptime unavailable"


def main(_):
  if _CHILD.value:
    run_child(_CHILD.value, _WORKDIR.value)
    return
  import jax  # noqa: PLC0415

  out = os.path.abspath(_OUT.value)
  os.makedirs(out, exist_ok=True)
  load_before = _uptime()
  times: dict[str, list[dict]] = {name: [] for name in (*STRATEGIES, "launches")}
  start = time.time()
  for r in range(_REPEATS.value):
    for strategy in STRATEGIES:
      times[strategy].append(time_strategy(strategy, os.path.join(out, f"r{r}", strategy)))
      print(f"  {strategy}: {times[strategy][-1]['wall_s']:.1f} s wall", flush=True)
    if not _SKIP_LAUNCHES.value:
      times["launches"].append(time_launches(os.path.join(out, f"r{r}", "launches")))
      print(f"  8 launches: {times['launches'][-1]['wall_s']:.1f} s wall", flush=True)
  load_after = _uptime()
  n = len(WEIGHT_BITS)
  lines = [
    f"Sweep of {n} weight bit widths {WEIGHT_BITS} on digits, configs/sweep_bits.py with "
    f"{OVERRIDES}; platform {jax.default_backend()}, {jax.device_count()} device(s); "
    f"median of {_REPEATS.value} repeat(s).",
    f"Load before: `{load_before}`; after: `{load_after}`.",
    "",
    "| how | wall time (s) | per config (s) | training in-process (s) | x vs 8 launches |",
    "|---|---|---|---|---|",
  ]
  launches = (
    statistics.median([t["wall_s"] for t in times["launches"]]) if times["launches"] else None
  )
  for name in (*STRATEGIES, "launches"):
    if not times[name]:
      continue
    wall = statistics.median([t["wall_s"] for t in times[name]])
    train_s = (
      f"{statistics.median([t['train_time_s'] for t in times[name]]):.1f}"
      if name != "launches"
      else "-"
    )
    speedup = f"{launches / wall:.2f}" if launches else "-"
    label = f"one program, strategy={name}" if name != "launches" else f"{n} separate launches"
    lines.append(f"| {label} | {wall:.1f} | {wall / n:.2f} | {train_s} | {speedup} |")
  text = "\n".join(lines)
  print(text)
  print(f"(bench total {time.time() - start:.0f} s)")
  with open(os.path.join(out, "table.md"), "w") as f:
    f.write(text + "\n")
  with open(os.path.join(out, "times.json"), "w") as f:
    json.dump(times, f, indent=1)


if __name__ == "__main__":
  app.run(main)
