r"""Population sweeps: a grid of runs trained as populations by the runner's one loop.

`run_sweep(config, workdir)` reads `config.sweep` (experiment.SweepConfig; see
configs/sweep_bits.py) and

  expands its axes into a grid: bit widths (all weights, activations, a_bar, or one tensor
    group), analog noise scales, learning rates and seeds; every grid point is an
    ordinary experiment (`Member.exp`, the base with `Member.overrides` applied), so any row
    can be reproduced alone with `launch.py --mode=train`;
  -> loops over the structural axes (d_model, d_state, n_layers), which change array
    shapes and so need programs of their own;
  -> trains the members of a structure as populations (`runner.fit`), in the layout of
    `strategy` (ssm_aimc.population):
      "separate"  one member at a time, each exactly a --mode=train run (same programs,
                  same numbers, bit for bit);
      "vmap"      `jax.vmap` over stacked members, one batched program;
      "map"       `jax.lax.map` over stacked members inside one program;
      "auto"      the fastest measured: "separate" on every platform measured so far
                  (BENCHMARKS.md "Population sweeps": on 2 CPU cores vmap is ~1.7x slower
                  per member; on an H200 the 8-config digits sweep trained in 106 s with
                  vmap against 32 s separate);
    stacked populations go in chunks of `chunk_size` members (0: all), padded to a multiple
    of the devices, and are sharded over all devices when there are several (`shard`);
  -> evaluates every member's best state (by validation accuracy, as a single run): test
    accuracy, accuracy on simulated chips when `hardware.enabled`, cost and chip energy,
    and writes sweep.csv (one row per grid point), sweep.json, config.json, metrics.jsonl
    and the plots.

A noise-scale axis multiplies the programming and read noise of `config.hardware`. With
`hardware.train` it is a training axis; otherwise an evaluation axis: every trained member
is evaluated at every scale (one row per scale) without being trained again.

A workdir belongs to one config (`workdir.check_owner`); a finished sweep is reused.
Not supported in a sweep (ConfigError): pruning; resuming (nothing is checkpointed).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import itertools
import os
import time
from collections.abc import Sequence

import jax
import numpy as np
from absl import logging

from ssm_aimc import (
  callable_module,
  deploy,
  errors,
  experiment,
  figures,
  models,
  noise_eval,
  progress,
  quant,
  runner,
  train,
)
from ssm_aimc import population as population_lib
from ssm_aimc import workdir as workdir_lib

CSV_NAME = "sweep.csv"
JSON_NAME = "sweep.json"
PLOT_BITS = "sweep_accuracy_vs_bits.png"
PLOT_NOISE = "sweep_accuracy_vs_noise.png"
PLOT_PARETO = "sweep_accuracy_vs_memory.png"
STRUCTURE_AXES = experiment.STRUCTURE_AXES
KNOB_COLUMNS = (
  *experiment.BIT_AXES,
  *(f"bits_{g}" for g in quant.GROUPS),
  "learning_rate",
  "seed",
  "noise_scale",
  *STRUCTURE_AXES,
)
METRIC_COLUMNS = tuple(
  """test_accuracy test_loss val_accuracy train_loss diverged analog_accuracy_mean
  analog_accuracy_std noise_seeds params memory_bits fp32_memory_bits compression_vs_fp32
  compression_vs_reference macs_per_step bitops_per_step bitops_reduction_vs_fp32 ace
  ace_reduction_vs_fp32 model_size_kb adc_complexity adc_complexity_reduction_vs_fp32 tiles
  energy_per_inference_j energy_vs_fp32 pareto""".split()
)
COLUMNS = ("index", *KNOB_COLUMNS, *METRIC_COLUMNS)


# ---------------------------------------------------------------------------------------
# The grid.
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Member:
  """One trained model of the population.

  Attributes:
    overrides: {dotted config path: value} that turn the base experiment into this one.
    exp: the base experiment with `overrides` applied (complete and valid).
    evals: (noise_scale column value, factor on the member's analog noise) per row it
      produces: one row, or one per scale of an evaluation-only noise axis; (None, None)
      without hardware.
  """

  overrides: dict
  exp: experiment.Experiment
  evals: tuple[tuple[float | None, float | None], ...]


def _axes(exp: experiment.Experiment) -> tuple[list, list, tuple[float, ...]]:
  """(structural axes, training axes, evaluation-only noise scales); an axis is a list of
  override dicts, one per value."""
  s = exp.sweep
  structure = [[{f"model.{a}": v} for v in getattr(s, a)] for a in STRUCTURE_AXES if getattr(s, a)]
  training = [
    [{f"quant.{a}": v} for v in getattr(s, a)] for a in experiment.BIT_AXES if getattr(s, a)
  ]
  training += [[{f"quant.group_bits.{g}": v} for v in values] for g, values in s.swept_groups]
  if s.learning_rates:
    training.append([{"optimizer.learning_rate": v} for v in s.learning_rates])
  if s.seeds:
    training.append([{"seed": v} for v in s.seeds])
  if s.noise_scales and exp.hardware.train:
    hw = exp.hardware
    training.append(
      [
        {
          "hardware.prog_noise_scale": hw.prog_noise_scale * v,
          "hardware.read_noise_scale": hw.read_noise_scale * v,
          "_noise_scale": v,
        }
        for v in s.noise_scales
      ]
    )
    return structure, training, ()
  return structure, training, s.noise_scales


def _product(axes: list) -> list[dict]:
  return [
    dict(itertools.chain.from_iterable(p.items() for p in combo))
    for combo in itertools.product(*axes)
  ]


def expand(exp: experiment.Experiment) -> list[list[Member]]:
  """The grid of `exp.sweep`: one list of members per structure, every member validated."""
  structure, training, eval_noise = _axes(exp)
  out = []
  for shape in _product(structure):
    members = []
    for point in _product(training):
      overrides = {**shape, **point}
      noise = overrides.pop("_noise_scale", None)
      if not exp.hardware.enabled:
        evals = ((None, None),)
      elif eval_noise:
        evals = tuple((v, v) for v in eval_noise)
      else:
        evals = ((1.0 if noise is None else noise, 1.0),)
      members.append(Member(overrides, experiment.override(exp, overrides), evals))
    out.append(members)
  return out


def knobs(member: Member, noise_scale: float | None) -> dict:
  """The knob columns of one row: resolved bit widths (32 = float), lr, seed, noise, shape."""
  exp, spec = member.exp, member.exp.quant.spec
  bits = {g: quant.OFF_BITS if spec is None else getattr(spec, g).bits for g in quant.GROUPS}
  row = {
    a: getattr(exp.quant, a) if spec is not None else int(quant.OFF_BITS)
    for a in experiment.BIT_AXES
  }
  row.update({f"bits_{g}": int(quant.storage_bits(b)) for g, b in bits.items()})
  row.update(learning_rate=exp.optimizer.learning_rate, seed=exp.seed, noise_scale=noise_scale)
  row.update({a: getattr(exp.model, a) for a in STRUCTURE_AXES})
  return row


# ---------------------------------------------------------------------------------------
# Training a structure's members.
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class MemberResult:
  """What training and evaluating one member produced.

  Attributes:
    losses: (steps,) training loss of every step.
    epoch_losses: (epochs,) mean training loss per epoch.
    val_accuracy: best validation accuracy (the state that is evaluated).
    test_accuracy, test_loss: of that state.
    diverged: a non-finite loss occurred.
    analog: per entry of `Member.evals`, `noise_eval.summary` ({} without hardware).
    cost: the cost report as a dict, with tiles and the energy of one inference on the
      chip of config.deploy (deploy.energy_report).
  """

  losses: np.ndarray
  epoch_losses: np.ndarray
  val_accuracy: float
  test_accuracy: float
  test_loss: float
  diverged: bool
  analog: list[dict]
  cost: dict


def layout_of(strategy: str, mesh=None) -> population_lib.Layout:
  """The population layout of a sweep strategy ("separate" = single runs)."""
  if strategy == "separate":
    return population_lib.Layout()
  return population_lib.Layout(strategy, mesh)


def _member_result(pop, fit, i: int, test, analog_rows) -> MemberResult:
  setup, exp = pop.setup, pop.members[i]
  params, stats = pop.layout.member((fit.best, fit.best_batch_stats), i)
  records = models.deployed_tensors(setup.model, params, exp.quant.spec, setup.example, stats)
  mapping, energies = deploy.energy_report(exp, records, setup.dataset.seq_len)
  chip_cost = {
    "tiles": mapping.tiles,
    "energy_per_inference_j": energies["aimc"]["total_j"],
    "energy_vs_fp32": energies["digital_fp32"]["total_j"] / energies["aimc"]["total_j"],
  }
  return MemberResult(
    losses=fit.losses[:, i],
    epoch_losses=fit.epoch_losses[:, i],
    val_accuracy=float(fit.best_val[i]),
    test_accuracy=float(test["accuracy"][i]),
    test_loss=float(test["loss"][i]),
    diverged=bool(fit.diverged[i]),
    analog=[rows[i] for rows in analog_rows],
    cost={**runner.cost_report(setup, params, exp.quant.spec, stats).as_dict(), **chip_cost},
  )


def _train_chunk(setup, chunk: list[Member], padded: int, layout, loaded, writer, label: str):
  """Trains one chunk, padded to `padded` members (copies of its last: one compiled shape
  for every chunk), from the variables `loaded` (None: each member's initial ones);
  returns the results of the real members."""
  n_real = len(chunk)
  batch = chunk + [chunk[-1]] * (padded - n_real)
  exps = [m.exp for m in batch]
  starts = [runner.init_variables(setup, e.seed) if loaded is None else loaded for e in exps]
  stats = [start.get(models.BATCH_STATS) for start in starts]
  params = [
    runner.calibrate(setup, e, start["params"], s)
    for e, start, s in zip(exps, starts, stats, strict=True)
  ]
  pop = runner.Population.start(setup, exps, layout, params, stats)
  fit = runner.fit(pop, writer=writer, label=label)
  runner.best_or_raise(fit)
  test = pop.evaluate(fit.best, setup.dataset.test, fit.best_batch_stats)
  analog_rows = []
  if exps[0].hardware.enabled:
    for j in range(len(batch[0].evals)):
      specs = layout.stack([m.exp.hardware.spec.scaled(np.float32(m.evals[j][1])) for m in batch])
      accuracies = pop.chip_accuracies(
        fit.best, setup.dataset.test, specs, batch_stats=fit.best_batch_stats
      )
      analog_rows.append([noise_eval.summary(a) for a in accuracies])
  return [_member_result(pop, fit, i, test, analog_rows) for i in range(n_real)]


def train_members(
  members: list[Member],
  layout: population_lib.Layout,
  chunk_size: int = 0,
  writer: workdir_lib.MetricsWriter | None = None,
) -> list[MemberResult]:
  """Trains and evaluates the members of one structure; one result each, in order."""
  first = members[0].exp
  setup = runner.build(first)
  loaded = None
  if first.init_checkpoint:
    state, _ = workdir_lib.load_state(first.init_checkpoint, runner.initial_state(setup, first))
    # On the host: every member's training donates its own device copy of these.
    loaded = jax.device_get(models.variables(state.params, state.batch_stats))
  size, padded = population_lib.chunks(len(members), chunk_size, layout)
  n_chunks = -(-len(members) // size)
  results = []
  for c in range(n_chunks):
    chunk = members[c * size : (c + 1) * size]
    label = f"{'member' if size == 1 else 'chunk'} {c + 1}/{n_chunks}: "
    results += _train_chunk(setup, chunk, padded, layout, loaded, writer, label)
  return results


# ---------------------------------------------------------------------------------------
# Rows, files and plots.
# ---------------------------------------------------------------------------------------


def rows_of(member: Member, result: MemberResult) -> list[dict]:
  """The sweep.csv rows of one member: one per entry of `member.evals`."""
  rows = []
  for j, (noise_scale, _) in enumerate(member.evals):
    row = knobs(member, noise_scale)
    row.update(
      test_accuracy=result.test_accuracy,
      test_loss=result.test_loss,
      val_accuracy=result.val_accuracy,
      train_loss=float(result.epoch_losses[-1]),
      diverged=result.diverged,
    )
    analog = result.analog[j] if result.analog else {}
    for key in ("analog_accuracy_mean", "analog_accuracy_std", "noise_seeds"):
      row[key] = analog.get(key)
    row.update({k: v for k, v in result.cost.items() if k in METRIC_COLUMNS})
    rows.append(row)
  return rows


def pareto_front(memory: Sequence[float], accuracy: Sequence[float]) -> np.ndarray:
  """Boolean mask of the points no other point beats: less or equal memory and higher or
  equal accuracy, strictly better in one."""
  memory, accuracy = np.asarray(memory, float), np.asarray(accuracy, float)
  front = np.ones(len(memory), bool)
  for i in range(len(memory)):
    better = (memory <= memory[i]) & (accuracy >= accuracy[i])
    strictly = (memory < memory[i]) | (accuracy > accuracy[i])
    front[i] = not np.any(better & strictly)
  return front


def write_csv(path: str, rows: list[dict], columns: Sequence[str] = COLUMNS) -> None:
  """Writes rows (missing or None values as empty cells) to a temporary file, then renames."""
  tmp = path + ".tmp"
  with open(tmp, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
      writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
  os.replace(tmp, path)


def _swept_bit_columns(s: experiment.SweepConfig) -> list[str]:
  return [a for a in experiment.BIT_AXES if getattr(s, a)] + [
    f"bits_{g}" for g, _ in s.swept_groups
  ]


def _plot_bits(rows: list[dict], columns: list[str], title: str):
  from matplotlib.figure import Figure  # noqa: PLC0415  (no pyplot state: notebooks keep theirs)

  acc = np.array([100 * r["test_accuracy"] for r in rows])
  fig = Figure(figsize=(4.2 * len(columns), 3.6))
  for ax, column in zip(fig.subplots(1, len(columns), squeeze=False)[0], columns, strict=True):
    bits = np.array([r[column] for r in rows], float)
    ax.scatter(bits, acc, alpha=0.5, s=18, label="grid point")
    values = np.unique(bits)
    ax.plot(
      values,
      [acc[bits == v].mean() for v in values],
      marker="o",
      color="C1",
      label="mean over the other knobs",
    )
    ax.legend(fontsize=7)
    ax.set_xticks(values)
    ax.set(xlabel=column.replace("_", " "), ylabel="test accuracy (%)")
    ax.grid(alpha=0.3)
  fig.suptitle(title)
  return fig


def _plot_noise(simulated: list[dict], varying: list[str], title: str):
  from matplotlib.figure import Figure  # noqa: PLC0415

  fig = Figure(figsize=(5.5, 3.8))
  ax = fig.subplots()
  curves: dict[tuple, list[dict]] = {}
  for r in simulated:
    curves.setdefault(tuple(r[k] for k in varying), []).append(r)
  for key, curve in curves.items():
    curve = sorted(curve, key=lambda r: r["noise_scale"])
    ax.errorbar(
      [r["noise_scale"] for r in curve],
      [100 * r["analog_accuracy_mean"] for r in curve],
      yerr=[100 * r["analog_accuracy_std"] for r in curve],
      marker="o",
      capsize=3,
      label=", ".join(f"{k}={v}" for k, v in zip(varying, key, strict=True)) or "model",
    )
  ax.set(
    xlabel="noise scale (x the device's programming and read noise)",
    ylabel="test accuracy on the simulated chip (%)",
    title=title,
  )
  ax.grid(alpha=0.3)
  if len(curves) <= 12:
    ax.legend(fontsize=7, loc="best")
  return fig


def _plot_pareto(rows: list[dict], title: str):
  from matplotlib.figure import Figure  # noqa: PLC0415

  acc = np.array([100 * r["test_accuracy"] for r in rows])
  memory = np.array([r["memory_bits"] for r in rows], float)
  front = np.array([bool(r["pareto"]) for r in rows])
  fig = Figure(figsize=(5.5, 3.8))
  ax = fig.subplots()
  ax.scatter(memory[~front], acc[~front], alpha=0.5, s=18, label="grid point")
  order = np.argsort(memory[front])
  ax.plot(memory[front][order], acc[front][order], marker="o", color="C3", label="Pareto front")
  ax.set(xscale="log", xlabel="memory (bits)", ylabel="test accuracy (%)", title=title)
  ax.grid(alpha=0.3, which="both")
  ax.legend()
  return fig


def plot_sweep(
  rows: list[dict], s: experiment.SweepConfig, workdir: str, title: str = ""
) -> list[str]:
  """The plots of a sweep (PNG, and PDF next to each); returns the PNG paths written.

  accuracy vs bits: one panel per swept bit axis, every row as a dot, the mean per width;
  accuracy vs noise: chip accuracy (mean +- std over chips) against the noise scale, one
    line per combination of the other knobs (only when the hardware was simulated);
  accuracy vs memory bits: every row, the Pareto front highlighted (log memory axis).
  """
  paths, columns = [], _swept_bit_columns(s)
  if columns:
    paths.append(figures.save(_plot_bits(rows, columns, title), os.path.join(workdir, PLOT_BITS)))
  simulated = [r for r in rows if r.get("analog_accuracy_mean") is not None]
  if simulated and len({r["noise_scale"] for r in simulated}) > 1:
    swept = columns + ["learning_rate", "seed", *STRUCTURE_AXES]
    varying = [k for k in swept if len({r[k] for r in simulated}) > 1]
    paths.append(
      figures.save(_plot_noise(simulated, varying, title), os.path.join(workdir, PLOT_NOISE))
    )
  paths.append(figures.save(_plot_pareto(rows, title), os.path.join(workdir, PLOT_PARETO)))
  return paths


def resolve_strategy(strategy: str) -> str:
  """ "auto" -> the fastest measured strategy: "separate" (CPU and GPU, module docstring)."""
  return "separate" if strategy == experiment.AUTO else strategy


def run_sweep(config, workdir: str | None) -> dict:
  """Trains the grid of `config.sweep` in `workdir`; returns the summary (also sweep.json).

  Writes config.json, metrics.jsonl, sweep.csv (one row per grid point: `COLUMNS`),
  sweep.json (summary and rows) and the plots. With `workdir` None nothing is written (the
  same numbers; "csv" is None, no plots).
  """
  start_time = time.time()
  progress.show_info_logs()
  exp = train.as_experiment(config)
  if exp.sweep is None:
    raise errors.ConfigError(
      "The config has no `sweep` section; start from configs/sweep_bits.py, which adds it."
    )
  workdir_lib.check_tensorboard(exp.log_tensorboard, workdir)
  if workdir is None:
    return _run_sweep(exp, None, start_time)
  # One launch per workdir; the processes of one multi-host sweep share theirs.
  with workdir_lib.lock(workdir) if jax.process_count() == 1 else contextlib.nullcontext():
    return _run_sweep(exp, workdir, start_time)


def _run_sweep(exp: experiment.Experiment, workdir: str | None, start_time: float) -> dict:
  if workdir is not None and workdir_lib.finished(workdir, exp, JSON_NAME):
    logging.info("Sweep already finished in %s with this config: reusing it.", workdir)
    return workdir_lib.read_json(os.path.join(workdir, JSON_NAME))
  strategy = resolve_strategy(exp.sweep.strategy)
  structures = expand(exp)
  main = jax.process_index() == 0
  if workdir is not None:
    os.makedirs(workdir, exist_ok=True)
  if main and workdir is not None:
    workdir_lib.write_config(workdir, exp)
  mesh = population_lib.mesh_over() if exp.sweep.shard and strategy != "separate" else None
  layout = layout_of(strategy, mesh)
  n_members = sum(len(m) for m in structures)
  logging.info(
    "Sweep: %d members in %d structure(s), strategy %s, chunk size %s, %d device(s)%s.",
    n_members,
    len(structures),
    strategy,
    exp.sweep.chunk_size or "all",
    layout.devices,
    " (population sharded)" if mesh is not None else "",
  )
  writer = workdir_lib.MetricsWriter(workdir, exp.log_tensorboard) if main else None
  rows, train_start = [], time.time()
  try:
    for members in structures:
      results = train_members(members, layout, exp.sweep.chunk_size, writer)
      for member, result in zip(members, results, strict=True):
        rows += rows_of(member, result)
  finally:
    if writer is not None:
      writer.close()
  train_time = time.time() - train_start
  front = pareto_front([r["memory_bits"] for r in rows], [r["test_accuracy"] for r in rows])
  for i, (row, on_front) in enumerate(zip(rows, front, strict=True)):
    row["index"], row["pareto"] = i, bool(on_front)
  best = max(rows, key=lambda r: r["test_accuracy"])
  summary = {
    "task": exp.data.task,
    "mode": "sweep",
    "strategy": strategy,
    "grid_points": len(rows),
    "population": n_members,
    "structures": len(structures),
    "chunk_size": exp.sweep.chunk_size,
    "devices": layout.devices,
    "best_test_accuracy": best["test_accuracy"],
    "best_index": best["index"],
    "csv": None if workdir is None else os.path.join(workdir, CSV_NAME),
    "train_time_s": train_time,
    "platform": jax.default_backend(),
  }
  if main and workdir is not None:
    write_csv(summary["csv"], rows)
    if exp.sweep.plots:
      summary["plots"] = plot_sweep(rows, exp.sweep, workdir, title=f"{exp.data.task} sweep")
      curves = os.path.join(workdir, figures.CURVES)
      title = f"{exp.data.task} sweep"
      summary["plots"].append(figures.plot_training_curves(writer.records, curves, title))
    summary["wall_time_s"] = time.time() - start_time
    workdir_lib.write_json(os.path.join(workdir, JSON_NAME), {**summary, "rows": rows})
  summary["wall_time_s"] = time.time() - start_time
  logging.info(
    "Sweep done: %d rows in %s; best test accuracy %.4f (row %d); %.1f s.",
    len(rows),
    summary["csv"],
    best["test_accuracy"],
    best["index"],
    summary["wall_time_s"],
  )
  return {**summary, "rows": rows}


# `ssm_aimc.sweep(...)` is the Python API's `api.sweep` (ssm_aimc.callable_module).
callable_module.make_callable(__name__, "sweep")
