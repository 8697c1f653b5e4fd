r"""Why the vmapped population step is slower per member than the unbatched one (issue 21).

  PYTHONPATH=. .venv/bin/python bench/vmap_root.py --repeats=15
  PYTHONPATH=. .venv/bin/python bench/vmap_root.py --d_model=16,64 --hlo_out=/tmp/vmap_hlo

Builds the training step of configs/sweep_bits.py at the size of bench/bench_sweep.py
(d_model 16, 2 layers, d_state 8, batch 64, weight bits 1..8) and at larger d_model, as
`sweep.run_sweep` does (`runner.Population`), in these layouts (`--layouts`):
  vmap:0    the 8 members batched by one `jax.vmap` in one program (runner._stacked_step),
            the vmap strategy before the fix;
  vmap:K    vmapped groups of K members, the groups by `jax.lax.map` in one program;
  vmap      the vmap strategy as a sweep runs it: groups of `sweep.cpu_vmap_group` on CPU;
  map       the 8 members by `jax.lax.map` in one program;
  separate  the unbatched step of one member (runner._SINGLE_STEP), as a separate sweep
            calls it once per member.
Each program is lowered and compiled ahead of time (compile time = lower + compile), then
called in interleaved rounds (vmap, map, separate, vmap, ...; `--repeats` rounds of
`--calls` calls each); per-member-step time = median call time / members, with the
process's CPU time (user + system, all threads) per member-step, the program's
temporary buffer (`memory_analysis`) and the minor page faults per step. `--ablate`
also times the same layouts with quantization off (`quant.enabled=False`, members differ
by seed). `--hlo_out` writes the optimised HLO of every program there with a count of its
ops by kind. Prints a markdown table and the `uptime` load before and after.
"""

from __future__ import annotations

import collections
import os
import re
import resource
import statistics
import subprocess
import time

import jax
import numpy as np
from absl import app, flags

from ssm_aimc import population as population_lib
from ssm_aimc import runner, sweep, train

_D_MODEL = flags.DEFINE_list("d_model", ["16", "64"], "Model widths to time.")
_MEMBERS = flags.DEFINE_integer("members", 8, "Population size of the stacked layouts.")
_REPEATS = flags.DEFINE_integer("repeats", 15, "Interleaved rounds (median reported).")
_CALLS = flags.DEFINE_integer("calls", 3, "Calls per layout per round (their mean is one sample).")
_LAYOUTS = flags.DEFINE_list(
  "layouts", ["vmap:0", "vmap", "map", "separate"], "Layouts to time (module docstring)."
)
_ABLATE = flags.DEFINE_bool("ablate", False, "Also time with quantization off.")
_HLO_OUT = flags.DEFINE_string("hlo_out", "", "Folder for the optimised HLO and op counts.")

OVERRIDES = {"model.n_layers": 2, "model.d_state": 8, "batch_size": 64, "progress_bar": False}


def _config(d_model: int, members: int, quantized: bool):
  from configs import sweep_bits  # noqa: PLC0415

  config = sweep_bits.get_config()
  config.model.d_model = d_model
  for path, value in OVERRIDES.items():
    *parents, leaf = path.split(".")
    section = config
    for p in parents:
      section = section[p]
    section[leaf] = value
  if quantized:
    config.sweep.weight_bits = tuple(range(1, members + 1))
    config.sweep.seeds = ()
  else:  # Members differ by seed only.
    config.quant.enabled = False
    config.sweep.weight_bits = ()
    config.sweep.seeds = tuple(range(members))
  return config


def _population(setup, members, layout):
  exps = [m.exp for m in members]
  starts = [runner.init_variables(setup, e.seed) for e in exps]
  params = [
    runner.calibrate(setup, e, s["params"], s.get("batch_stats"))
    for e, s in zip(exps, starts, strict=True)
  ]
  stats = [s.get("batch_stats") for s in starts]
  return runner.Population.start(setup, exps, layout, params, stats)


def _program(pop):
  """(compiled step, its arguments, compile seconds) of `pop`'s training step."""
  x, y = jax.device_put(next(iter(pop.batches(0))), jax.local_devices()[0])
  args = (pop.state, x, y, pop.keys, pop.specs, pop.analog_at(0))
  if pop.layout.stacked:
    jitted = runner._stacked_step(pop.layout)
  else:
    jitted, args = runner._SINGLE_STEP, (*args, None)
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, args, time.perf_counter() - start


def op_counts(hlo: str) -> collections.Counter:
  """Instructions of an HLO module's text by opcode (fusions counted once, with their bodies)."""
  counts = collections.Counter()
  for line in hlo.splitlines():
    m = re.match(r"\s*(?:ROOT )?%?[\w.\-]+ = [^=]*? ([a-z][a-z0-9\-_]*)\(", line)
    if m:
      counts[m.group(1)] += 1
  return counts


def _uptime() -> str:
  return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def measure(d_model: int, quantized: bool) -> list[dict]:
  exp = train.as_experiment(_config(d_model, _MEMBERS.value, quantized))
  (members,) = sweep.expand(exp)
  setup = runner.build(members[0].exp)
  programs = {}
  for name in _LAYOUTS.value:
    strategy, _, group = name.partition(":")  # vmap:K = vmapped groups of K members.
    strategy = "single" if strategy == "separate" else strategy
    layout = population_lib.Layout(strategy, group=int(group or 0))
    if name == "vmap":  # As the sweep runs it: sweep.cpu_vmap_group on the CPU.
      layout = sweep.cpu_vmap_group(layout, setup, members[0].exp, len(members))
      name = f"vmap (group {layout.group or 'all'})"
    pop = _population(setup, members if layout.stacked else members[:1], layout)
    compiled, args, compile_s = _program(pop)
    temp_mb = compiled.memory_analysis().temp_size_in_bytes / 2**20
    programs[name] = dict(
      compiled=compiled, args=list(args), compile_s=compile_s, size=pop.size, temp_mb=temp_mb
    )
    if _HLO_OUT.value:
      os.makedirs(_HLO_OUT.value, exist_ok=True)
      tag = re.sub(r"[^\w.-]+", "_", f"d{d_model}_{'q' if quantized else 'float'}_{name}")
      text = compiled.as_text()
      with open(os.path.join(_HLO_OUT.value, tag + ".hlo.txt"), "w") as f:
        f.write(text)
      counts = op_counts(text)
      with open(os.path.join(_HLO_OUT.value, tag + ".counts.txt"), "w") as f:
        f.write("\n".join(f"{k} {v}" for k, v in counts.most_common()) + "\n")
  samples = {name: [] for name in programs}
  faults = {name: 0 for name in programs}
  cpu = {name: [] for name in programs}

  def call(p):
    state, metrics = p["compiled"](*p["args"])
    jax.block_until_ready(metrics)
    p["args"][0] = state  # The state is donated.

  for p in programs.values():  # Warm-up.
    call(p)
  for _ in range(_REPEATS.value):
    for name, p in programs.items():
      before = resource.getrusage(resource.RUSAGE_SELF)
      start = time.perf_counter()
      for _ in range(_CALLS.value):
        call(p)
      samples[name].append((time.perf_counter() - start) / _CALLS.value)
      after = resource.getrusage(resource.RUSAGE_SELF)
      faults[name] += after.ru_minflt - before.ru_minflt
      used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
      cpu[name].append(used / _CALLS.value)
  rows = []
  for name, p in programs.items():
    step = statistics.median(samples[name])
    rows.append(
      dict(
        d_model=d_model,
        quantized=quantized,
        layout=name,
        members=p["size"],
        step_ms=1e3 * step,
        member_ms=1e3 * step / p["size"],
        member_cpu_ms=1e3 * statistics.median(cpu[name]) / p["size"],
        compile_s=p["compile_s"],
        temp_mb=p["temp_mb"],
        faults=faults[name] / (_REPEATS.value * _CALLS.value),
      )
    )
  return rows


def main(_):
  load_before = _uptime()
  rows = []
  for d in _D_MODEL.value:
    for quantized in (True, False) if _ABLATE.value else (True,):
      rows += measure(int(d), quantized)
      print(f"  d_model {d} quantized={quantized} done ({_uptime()})", flush=True)
  sep = {(r["d_model"], r["quantized"]): r["member_ms"] for r in rows if r["layout"] == "separate"}
  lines = [
    f"jax {jax.__version__}, {jax.default_backend()}, {os.cpu_count()} CPU(s); "
    f"{_REPEATS.value} interleaved rounds of {_CALLS.value} calls, medians.",
    f"Load before: `{load_before}`; after: `{_uptime()}`.",
    "",
    "| d_model | quantized | layout | members | step (ms) | per member-step (ms) | x separate "
    "| CPU time per member-step (ms) | compile (s) | temp buffer (MB) | page faults per step |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    ratio = r["member_ms"] / sep[(r["d_model"], r["quantized"])] if sep else float("nan")
    lines.append(
      f"| {r['d_model']} | {'yes' if r['quantized'] else 'no'} | {r['layout']} | {r['members']} "
      f"| {r['step_ms']:.2f} | {r['member_ms']:.3f} | {ratio:.2f} | {r['member_cpu_ms']:.3f} "
      f"| {r['compile_s']:.1f} "
      f"| {r['temp_mb']:.1f} | {r['faults']:.0f} |"
    )
  print("\n".join(lines))


if __name__ == "__main__":
  np.set_printoptions(precision=3)
  app.run(main)
