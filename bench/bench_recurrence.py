r"""Time per training step of the S4D classifier for each recurrence method (BENCHMARKS.md).

  .venv/bin/python bench/bench_recurrence.py                # full run (~10-20 min, 2-core CPU)
  .venv/bin/python bench/bench_recurrence.py --quick        # tiny sizes, seconds (smoke test)
  .venv/bin/python bench/bench_recurrence.py --json_out=/tmp/bench.json

One "training step" is the real `steps.train_step` of the float model (spec=None: forward,
backward, clipped AdamW update with the config's per-parameter rules), jitted once with the
state donated, on random inputs of the task's shape (B, L, 1) with 10 classes; no dataset
is loaded because only shapes matter for time. Per (model size, L, batch, method): the first
call compiles, `--warmup` more steps are untimed, then the median and minimum of `--repeats`
steps are reported, each step bracketed by `jax.block_until_ready`. A step slower than
`--max_seconds` ends that case early and the table reports how many samples it got.

The sizes are those of configs/default.py (H=64, N=32), the S4D reference model (H=128,
N=64), and the sizes of the S5 peer measurements (H=64 or 128 with S5's P=64 matched by
S4D's N=64; the S5 times are quoted from that earlier run, not measured here).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
from absl import app, flags
from ml_collections import config_flags

from ssm_aimc import experiment, models, optim, ssm, steps

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "default.py")

_CONFIG = config_flags.DEFINE_config_file(
  "config", _DEFAULT_CONFIG, "Base config (model and optimizer fields other than the sizes)."
)
_QUICK = flags.DEFINE_bool("quick", False, "Tiny sizes, to smoke-test the script in seconds.")
_METHODS = flags.DEFINE_list("methods", list(ssm.METHODS), "Recurrence methods to time.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after the compiling first call.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed steps per case (median and min reported).")
_MAX_SECONDS = flags.DEFINE_float(
  "max_seconds", 20.0, "A step slower than this ends its case early with the samples so far."
)
_JSON_OUT = flags.DEFINE_string("json_out", "", "Optional path for the raw results as JSON.")

N_LAYERS = 4
D_INPUT = 1
N_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Case:
  """One measured shape: H channels, N real state size, L steps, B sequences per batch."""

  d_model: int
  d_state: int
  seq_len: int
  batch: int

  def label(self) -> str:
    return f"H={self.d_model}, N={self.d_state}, L={self.seq_len}, B={self.batch}"


# Row groups of the report, by --groups name; a case in two groups is measured once.
GROUPS: dict[str, tuple[str, tuple[Case, ...]]] = {
  "default": (
    "Default model (configs/default.py: 4 layers, H=64, N=32)",
    (Case(64, 32, 64, 64), Case(64, 32, 784, 32)),
  ),
  "reference": (
    "S4D reference size (4 layers, H=128, N=64)",
    (Case(128, 64, 64, 64), Case(128, 64, 784, 32)),
  ),
  "s5": (
    "Matched to the S5 peer measurements (4 layers, S4D N=64 vs S5 P=64)",
    (Case(64, 64, 64, 64), Case(64, 64, 784, 32), Case(128, 64, 784, 32)),
  ),
}

_GROUPS = flags.DEFINE_list("groups", list(GROUPS), "Row groups to run (ignored with --quick).")
QUICK_GROUPS = (("Quick smoke sizes (4 layers, H=16, N=8)", (Case(16, 8, 32, 4),)),)

# S5 (H, P=64, 4 layers) ms per training step, measured earlier on this same 2-core CPU by
# another engineer with nothing else running; keyed by the matching S4D case.
S5_MS = {
  Case(64, 64, 64, 64): 53.0,
  Case(64, 64, 784, 32): 356.0,
  Case(128, 64, 784, 32): 629.0,
}


def uptime() -> str:
  """`uptime` output (falls back to os.getloadavg where the command is missing)."""
  try:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def load_avg() -> str:
  return "/".join(f"{x:.2f}" for x in os.getloadavg())


def time_case(config, case: Case, method: str) -> dict:
  """Compiles and times `steps.train_step` for one case and method; returns a result dict."""
  exp = experiment.from_config(config)
  model_cfg = dataclasses.replace(
    exp.model,
    d_model=case.d_model,
    d_state=case.d_state,
    n_layers=N_LAYERS,
    method=method,
  )
  model = models.get_model(config.model_name, model_cfg, N_CLASSES)
  # The schedule's length only changes the learning-rate value, never the work per step.
  tx, _ = optim.make_optimizer(exp.optimizer, steps_per_epoch=100, total_steps=10_000)
  key_params, key_x, key_y, key_step = jax.random.split(jax.random.PRNGKey(0), 4)
  x = jax.random.normal(key_x, (case.batch, case.seq_len, D_INPUT), jnp.float32)
  y = jax.random.randint(key_y, (case.batch,), 0, N_CLASSES)
  params = jax.jit(lambda k: model.init(k, x[:1])["params"])(key_params)
  state = steps.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
  # spec=None: the float model (no quantization ops), the path whose recurrence is timed.
  step_fn = jax.jit(functools.partial(steps.train_step, spec=None), donate_argnums=0)

  load_before = load_avg()
  start = time.perf_counter()
  state, metrics = step_fn(state, x, y, key_step)
  jax.block_until_ready((state, metrics))
  first_s = time.perf_counter() - start

  # At least one step after compilation always runs, so every case reports a step time.
  warmup_s, timed_s, stopped_early = [], [], False
  for i in range(_WARMUP.value + _REPEATS.value):
    if stopped_early:
      break
    start = time.perf_counter()
    state, metrics = step_fn(state, x, y, key_step)
    jax.block_until_ready((state, metrics))
    elapsed = time.perf_counter() - start
    (warmup_s if i < _WARMUP.value else timed_s).append(elapsed)
    stopped_early = elapsed > _MAX_SECONDS.value
  # A case cut short before any timed step reports its warm-up steps instead (flagged).
  samples = timed_s or warmup_s
  loss = float(metrics["loss"])
  del state, metrics
  return {
    "case": dataclasses.asdict(case),
    "method": method,
    "first_call_s": first_s,
    "samples_ms": [1e3 * s for s in samples],
    "median_ms": 1e3 * statistics.median(samples) if samples else float("nan"),
    "min_ms": 1e3 * min(samples) if samples else float("nan"),
    "n": len(samples),
    "from_warmup": not timed_s,
    "stopped_early": stopped_early,
    "loss": loss,
    "load_before": load_before,
    "load_after": load_avg(),
  }


def format_group(title: str, cases, results: dict, methods) -> str:
  """Markdown table of one group: rows per (case, method), ratio to the case's fastest."""
  lines = [
    f"### {title}",
    "",
    "| config | method | median ms | min ms | n | x fastest | auto picks | load avg (1/5/15) |",
    "|---|---|---:|---:|---:|---:|---|---|",
  ]
  for case in cases:
    rows = [results[(case, m)] for m in methods]
    fastest = min(r["median_ms"] for r in rows)
    pick = ssm.select_method(case.seq_len, jax.default_backend())
    for r in rows:
      note = " (warm-up only)" if r["from_warmup"] else ""
      note += " (cut short)" if r["stopped_early"] else ""
      lines.append(
        f"| {case.label()} | {r['method']}{note} | {r['median_ms']:.1f} | {r['min_ms']:.1f} "
        f"| {r['n']} | {r['median_ms'] / fastest:.2f} | {'yes' if r['method'] == pick else ''} "
        f"| {r['load_before']} |"
      )
  return "\n".join(lines)


def format_picks(groups, results: dict, methods) -> str:
  lines = [
    "### `ssm.select_method` vs the measured fastest",
    "",
    "| config | select_method | measured fastest | auto is fastest | auto / fastest |",
    "|---|---|---|---|---:|",
  ]
  seen = set()
  for _, cases in groups:
    for case in cases:
      if case in seen:
        continue
      seen.add(case)
      rows = {m: results[(case, m)]["median_ms"] for m in methods}
      fastest = min(rows, key=rows.get)
      pick = ssm.select_method(case.seq_len, jax.default_backend())
      ratio = f"{rows[pick] / rows[fastest]:.2f}" if pick in rows else "not measured"
      lines.append(
        f"| {case.label()} | {pick} | {fastest} | {'yes' if pick == fastest else 'NO'} | {ratio} |"
      )
  return "\n".join(lines)


def format_s5(results: dict, methods) -> str:
  lines = [
    "### Against S5 (H, P=64, 4 layers; S5 times quoted, not measured here)",
    "",
    "| config | our best method | our median ms | S5 ms | ours / S5 |",
    "|---|---|---:|---:|---:|",
  ]
  for case, s5_ms in S5_MS.items():
    rows = {m: results[(case, m)]["median_ms"] for m in methods if (case, m) in results}
    if not rows:
      continue
    best = min(rows, key=rows.get)
    lines.append(
      f"| {case.label()} | {best} | {rows[best]:.1f} | {s5_ms:.0f} | {rows[best] / s5_ms:.2f} |"
    )
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  methods = tuple(_METHODS.value)
  for m in methods:
    if m not in ssm.METHODS:
      raise app.UsageError(f"Unknown method {m!r}; valid: {ssm.METHODS}.")
  unknown = set(_GROUPS.value) - set(GROUPS)
  if unknown:
    raise app.UsageError(f"Unknown groups {sorted(unknown)}; valid: {list(GROUPS)}.")
  groups = QUICK_GROUPS if _QUICK.value else tuple(GROUPS[g] for g in _GROUPS.value)
  config = _CONFIG.value

  header = [
    "## Environment",
    "",
    f"- command: `{' '.join([os.path.relpath(sys.executable)] + sys.argv)}`",
    f"- uptime at start: `{uptime()}`",
    f"- jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}",
    f"- host: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    f"- per case: 1 compiling call, {_WARMUP.value} warm-up, {_REPEATS.value} timed steps "
    f"(max {_MAX_SECONDS.value:.0f} s per step)",
  ]
  print("\n".join(header), flush=True)

  results = {}
  for _, cases in groups:
    for case in cases:
      for method in methods:
        if (case, method) in results:
          continue
        r = time_case(config, case, method)
        results[(case, method)] = r
        print(
          f"# {case.label()} {method}: median {r['median_ms']:.1f} ms, min {r['min_ms']:.1f} ms "
          f"(n={r['n']}, first call {r['first_call_s']:.1f} s, load {r['load_before']})",
          file=sys.stderr,
          flush=True,
        )

  print()
  for title, cases in groups:
    print(format_group(title, cases, results, methods) + "\n")
  print(format_picks(groups, results, methods) + "\n")
  if not _QUICK.value:
    print(format_s5(results, methods) + "\n")
  print(f"- uptime at end: `{uptime()}`", flush=True)

  if _JSON_OUT.value:
    with open(_JSON_OUT.value, "w") as f:
      json.dump(
        {
          "jax": jax.__version__,
          "backend": jax.default_backend(),
          "argv": sys.argv,
          "results": list(results.values()),
        },
        f,
        indent=2,
      )


if __name__ == "__main__":
  app.run(main)
