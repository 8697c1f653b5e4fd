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
      "vmap"      `jax.vmap` over stacked members, one batched program (on the CPU in
                  vmapped groups of members sized to the cache, `cpu_vmap_group`);
      "map"       `jax.lax.map` over stacked members inside one program;
      "auto"      "separate", the fastest measured on every platform before the CPU
                  fix of vmap (BENCHMARKS.md "Population sweeps": on 2 CPU cores vmap was
                  ~1.7x slower per member, from its P-fold temporary buffer, "Why vmap was
                  slower"; on an H200 the 8-config digits sweep trained in 106 s with vmap
                  against 32 s separate, not re-measured since);
    stacked populations go in chunks of `chunk_size` members (0: all), padded to a multiple
    of the devices, and are sharded over all devices when there are several (`shard`);
  -> evaluates every member's best state (by validation accuracy, as a single run): test
    accuracy, accuracy on simulated chips when `hardware.enabled`, cost and chip energy,
    and writes sweep.csv (one row per grid point), sweep.json, config.json, metrics.jsonl
    and the plots.

A noise-scale axis multiplies the programming, read and relative (`a_noise`) noise of
`config.hardware`. With
`hardware.train` it is a training axis; otherwise an evaluation axis: every trained member
is evaluated at every scale (one row per scale) without being trained again.

A workdir belongs to one config (`workdir.check_owner`); a finished sweep is reused.
Not supported in a sweep (ConfigError): pruning.

Checkpoints (a workdir given). A sweep survives a kill: every finished member's result is
written, whole or not at all, to members/<index>.json (index: the member's place in the
grid) the moment its population is evaluated, and a population still training is saved
with orbax in checkpoints/<round>/ every `checkpoint_every_epochs` epochs, after its last,
and every `sweep.checkpoint_every_steps` steps when that is > 0 (TrainState, best params
and BatchNorm statistics, best validation accuracy and step, loss histories, and the
running loss and accuracy sums of an epoch saved in its middle; `keep_checkpoints` kept).
A relaunch with the same config reads the finished members back instead of training
them, goes on with a saved population from its latest checkpoint (the same numbers, bit
for bit, as a run never stopped: the batch order and dropout keys depend only on seed,
epoch and step), drops the metrics.jsonl records the killed launch wrote after that
checkpoint, and trains the rest. Half-written files never count: JSON is renamed into
place, orbax renames a checkpoint when complete and the relaunch removes its temporary
folders. A workdir of another config is refused by `workdir.check_owner` before anything
is written.

Several processes (`ssm_aimc.distributed.initialize` first; the command line's
--coordinator_address / --num_processes / --process_id, or --distributed on a cluster JAX
detects). Every process expands the same grid and trains its own members; nothing is
stepped across processes. A structure's chunks go out in rounds of P (the process
count): chunk r * P + p to process p, each process's chunk held in the layout of the
strategy over its own local devices (`population.mesh_over`; chunk_size 0 means a P-th of
the members each), so "separate" keeps every member the single run bit for bit on any
number of processes. A process with no chunk in the last round trains a copy of the last
chunk and throws it away, because a round's checkpoint is one orbax checkpoint written
by all processes together, each process's population as its slice of one global array
(orbax refuses to save process-local arrays once JAX runs on several processes). When a
structure is done every process gets every member's result (`distributed.gather`: a
key-value-store barrier, then one `process_allgather` of the results as JSON), and
process 0 alone writes config.json, metrics.jsonl, sweep.csv, sweep.json and the plots;
process p > 0 logs to metrics.process<p>.jsonl. The workdir must be one folder every
process sees (a shared filesystem on a cluster), as for orbax's multi-host checkpoints.
A relaunch may change the process count: finished members are read back all the same,
but a round's checkpoint (its folder name records the count, chunk and padding) only
resumes under the same count; other rounds start again.
Why not one program over the global mesh: every chunk would then step all processes in
lock-step through one cross-process program (a collective per step on CPU), and the
"separate" strategy, the fastest measured, has no population axis to shard.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import itertools
import json
import os
import shutil
import time
from collections.abc import Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssm_aimc import (
  callable_module,
  deploy,
  distributed,
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
MEMBERS_DIR = "members"  # One result file per finished member: <global index>.json.
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
          **({"hardware.a_noise": hw.a_noise * v} if hw.a_noise > 0 else {}),
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

  def to_json(self) -> dict:
    """The result as JSON values (floats as Python floats: `from_json` gives them back
    exactly)."""
    out = dataclasses.asdict(self)
    out["losses"], out["epoch_losses"] = self.losses.tolist(), self.epoch_losses.tolist()
    # Keys in their order (the rows of sweep.json keep theirs); numpy scalars as numbers.
    return json.loads(json.dumps(out, default=lambda v: np.asarray(v).tolist()))

  @classmethod
  def from_json(cls, obj: dict) -> MemberResult:
    return cls(
      **{
        **obj,
        "losses": np.asarray(obj["losses"], np.float64),
        "epoch_losses": np.asarray(obj["epoch_losses"], np.float64),
      }
    )


def layout_of(strategy: str, mesh=None) -> population_lib.Layout:
  """The population layout of a sweep strategy ("separate" = single runs)."""
  if strategy == "separate":
    return population_lib.Layout()
  return population_lib.Layout(strategy, mesh)


# A CPU vmap group's temporaries are kept under this many bytes: below 32 MiB, glibc's
# largest allocation that it reuses instead of mapping fresh pages at every call (its mmap
# threshold tops out there), with a margin for the estimate below; also within the
# benchmark CPU's shared cache (32 MiB L3).
CPU_GROUP_BYTES = 24 * 2**20
# Temporaries of one member's training step per activation value (batch x length x
# d_model x n_layers), in float32 words: 19.3 for the benchmark S4D at d_model 16 (10.1
# MiB), 17.6 at d_model 64 (36.9 MiB), measured with bench/vmap_root.py.
TEMP_WORDS_PER_ACTIVATION = 20


def cpu_vmap_group(layout: population_lib.Layout, setup, exp, size: int) -> population_lib.Layout:
  """`layout` with its vmap group sized for the CPU, for programs of `size` members: the
  largest divisor of the members per device (no remainder group, which would be compiled
  apart) whose step's temporaries stay under CPU_GROUP_BYTES, at least one member; 0 (one
  vmap) when all of them fit. A vmapped population holds every member's temporaries at
  once; above that size every step got fresh pages from the allocator and a working set
  outside the cache, and on 2 CPU cores the vmapped step was 1.1-1.7x slower per member
  than `separate` (BENCHMARKS.md "Why vmap was slower"). Other platforms and layouts, and
  a group already set, are returned unchanged."""
  if layout.strategy != "vmap" or layout.group or jax.default_backend() != "cpu":
    return layout
  activations = exp.batch_size * setup.dataset.seq_len * exp.model.d_model * exp.model.n_layers
  fits = max(1, CPU_GROUP_BYTES // (4 * TEMP_WORDS_PER_ACTIVATION * activations))
  per_device = max(1, size // layout.devices)
  group = max(k for k in range(1, per_device + 1) if per_device % k == 0 and k <= fits)
  return dataclasses.replace(layout, group=0 if group == per_device else group)


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


class Store:
  """What a sweep keeps in its workdir to survive a kill (module docstring, "Checkpoints"):
  members/<index>.json, one finished member's result, and checkpoints/<round>/, the
  orbax checkpoints of the populations of a round not yet finished."""

  def __init__(self, workdir: str):
    self.workdir = workdir

  def result_path(self, index: int) -> str:
    return os.path.join(self.workdir, MEMBERS_DIR, f"{index}.json")

  def finished(self, index: int) -> bool:
    return os.path.exists(self.result_path(index))

  def load(self, index: int, member: Member) -> MemberResult:
    stored = workdir_lib.read_json(self.result_path(index))
    if stored["overrides"] != json.loads(workdir_lib.to_json(member.overrides)):
      raise errors.ConfigError(
        f"{self.result_path(index)} holds another member ({stored['overrides']}, not "
        f"{member.overrides}); remove {os.path.join(self.workdir, MEMBERS_DIR)} to retrain."
      )
    return MemberResult.from_json(stored["result"])

  def save(self, index: int, member: Member, result: MemberResult) -> None:
    os.makedirs(os.path.dirname(self.result_path(index)), exist_ok=True)
    record = {"overrides": member.overrides, "result": result.to_json()}
    workdir_lib.write_json(self.result_path(index), record)

  def round_dir(self, name: str) -> str:
    return os.path.join(self.workdir, workdir_lib.CHECKPOINT_DIR, name)


def _process_sharding() -> NamedSharding:
  """One device of every process along one axis: a host array of each process's own
  population, stacked process after process, is one global array orbax saves together."""
  firsts: dict[int, jax.Device] = {}
  for d in jax.devices():
    firsts.setdefault(d.process_index, d)
  mesh = jax.sharding.Mesh(np.array([firsts[p] for p in sorted(firsts)]), ("process",))
  return NamedSharding(mesh, P("process"))


def _bits64(a: np.ndarray) -> np.ndarray:
  """(S, ...) float64 -> (S, 2k) uint32 of the same bits (JAX arrays are 32-bit)."""
  a = np.ascontiguousarray(a, np.float64)
  return a.reshape(len(a), -1).view(np.uint32)


class RoundCheckpoint:
  """The populations of one round (one per process) saved with orbax in `directory`
  every `checkpoint_every_epochs` epochs, after the last, and every
  `sweep.checkpoint_every_steps` steps when > 0: the TrainState, the best params (and
  BatchNorm statistics), the best validation accuracy and its step, the loss histories
  and the running sums of an epoch saved in its middle, so a relaunch goes on as if never
  stopped. Every process saves its own population as its slice of one global array
  (`_process_sharding`): one orbax checkpoint per round, written together, with orbax's
  atomic rename."""

  def __init__(self, directory: str, exp: experiment.Experiment, layout: population_lib.Layout):
    self.directory, self.layout = directory, layout
    self.every = max(1, exp.checkpoint_every_epochs)
    self.every_steps = exp.sweep.checkpoint_every_steps if exp.sweep is not None else 0
    self.epochs = exp.num_epochs
    self.steps_per_epoch = None  # Known once a population is restored or trained.
    name = os.path.basename(directory)
    if distributed.is_main():
      # A kill mid-save leaves orbax's temporary folder; its predecessor is complete.
      for partial in glob.glob(os.path.join(directory, f"*{workdir_lib.PARTIAL_CHECKPOINT}*")):
        shutil.rmtree(partial, ignore_errors=True)
    distributed.barrier(f"open_{name}")
    self.manager = workdir_lib.checkpoint_manager(directory, exp.keep_checkpoints)
    self.sharding = _process_sharding()
    self.prefix = None  # (losses (steps, S), epoch_losses (epochs, S), diverged (S,)).

  def _item(self, state, best, best_val, best_step, losses, epoch_losses, diverged, sums):
    """The saved tree: host arrays, every one with the population axis first. `losses`
    (steps, S) runs to the state's step; `sums` (loss, accuracy) (S,) of its epoch so far."""
    params, stats = best
    item = {
      "state": workdir_lib.checkpoint_item(state),
      "best": {"params": params},
      "best_val": _bits64(best_val),
      "best_step": np.asarray(best_step, np.int32),
      "losses": np.ascontiguousarray(np.asarray(losses, np.float32).T),
      "epoch_losses": _bits64(np.asarray(epoch_losses).T),
      "diverged": np.asarray(diverged, np.int8),
      "epoch_sums": np.ascontiguousarray(np.stack(sums, axis=1), np.float32),
    }
    if stats:
      item["best"]["batch_stats"] = stats
    if not len(epoch_losses):  # Saved in the first epoch; orbax saves no empty array.
      del item["epoch_losses"]
    return item

  def _global(self, a):
    a = np.asarray(a)
    shape = (a.shape[0] * jax.process_count(), *a.shape[1:])
    return jax.make_array_from_process_local_data(self.sharding, a, shape)

  def restore(self, pop: runner.Population):
    """Puts the latest checkpoint's state into `pop`; returns (fit's `best`, fit's
    `carry`, the step), or None without a checkpoint."""
    self.steps_per_epoch = spe = pop.setup.steps_per_epoch
    step = self.manager.latest_step()
    if step is None:
      return None
    layout, size = pop.layout, pop.size
    host = layout.fetch(pop.state)
    epochs, zeros = step // spe, np.zeros(size)
    template = self._item(
      host,
      layout.fetch((pop.state.params, pop.state.batch_stats)),
      zeros,
      zeros,
      np.zeros((step, size)),
      np.zeros((epochs, size)),
      zeros,
      (zeros, zeros),
    )
    n, sharding = jax.process_count(), self.sharding
    abstract = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct((a.shape[0] * n, *a.shape[1:]), a.dtype, sharding=sharding),
      template,
    )
    try:
      restored = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # Orbax raises many types for corrupt or mismatched files.
      raise errors.CheckpointError(
        f"Could not restore the sweep checkpoint step {step} from {self.directory}: {e}; "
        "remove that folder to train its members again."
      ) from e
    item = jax.tree.map(lambda a: np.asarray(a.addressable_shards[0].data), restored)
    pop.state = layout.place(host.replace(**item["state"]))
    best = item["best"]
    variables = layout.place((best["params"], best.get("batch_stats", {})))
    best_val = item["best_val"].view(np.float64).reshape(size)
    epoch_losses = np.zeros((0, size))
    if epochs:
      epoch_losses = item["epoch_losses"].view(np.float64).reshape(size, epochs).T
    losses = item["losses"].T  # (step, S)
    done = epochs * spe  # The steps of whole epochs; the rest are the epoch so far.
    self.prefix = (losses[:done].astype(np.float64), epoch_losses, item["diverged"] > 0)
    carry = None
    if step > done:
      loss_sum, acc_sum = (layout.place(item["epoch_sums"][:, k]) for k in (0, 1))
      carry = (loss_sum, acc_sum, [layout.place(row) for row in losses[done:]])
    best = (None if epochs == 0 else variables, best_val, item["best_step"].astype(np.int64))
    return best, carry, step

  def joined(self, fit: runner.Fit) -> runner.Fit:
    """`fit` with the histories of the epochs run before the restored checkpoint."""
    if self.prefix is None:
      return fit
    losses, epoch_losses, diverged = self.prefix
    return dataclasses.replace(
      fit,
      losses=np.concatenate([losses, fit.losses]),
      epoch_losses=np.concatenate([epoch_losses, fit.epoch_losses]),
      diverged=diverged | fit.diverged,
    )

  def _save(self, state, fit: runner.Fit, carry) -> None:
    fit = self.joined(fit)
    host = self.layout.fetch(state)
    size = len(fit.best_val)
    losses, sums = fit.losses, (np.zeros(size), np.zeros(size))
    if carry is not None:
      loss_sum, acc_sum, epoch_losses = carry
      sums = self.layout.fetch((loss_sum, acc_sum))
      losses = np.concatenate([losses, np.stack(self.layout.fetch(epoch_losses))])
    best = (fit.best, fit.best_batch_stats) if fit.best is not None else None
    item = self._item(
      host,
      self.layout.fetch(best or (state.params, state.batch_stats)),
      fit.best_val,
      fit.best_step,
      losses,
      fit.epoch_losses,
      fit.diverged,
      tuple(np.broadcast_to(np.asarray(s, np.float32), (size,)) for s in sums),
    )
    step = int(np.asarray(host.step)[0])
    try:
      self.manager.save(step, args=ocp.args.StandardSave(jax.tree.map(self._global, item)))
      self.manager.wait_until_finished()
    except (OSError, ValueError) as e:
      raise errors.WorkdirError(
        f"Could not save the sweep checkpoint step {step} in {self.directory}: {e}"
      ) from e

  def after_epoch(self, epoch: int, state, fit: runner.Fit) -> None:
    """runner.fit's on_epoch hook: saves every `every` epochs and after the last."""
    if (epoch + 1) % self.every and epoch + 1 != self.epochs:
      return
    self._save(state, fit, None)

  def after_step(self, step: int, state, so_far, carry) -> None:
    """runner.fit's on_step hook: saves every `every_steps` steps inside an epoch (an
    epoch's end is after_epoch's)."""
    if self.every_steps and step % self.every_steps == 0 and step % self.steps_per_epoch:
      self._save(state, so_far(), carry)

  def remove(self) -> None:
    """Once every process stored its members' results: the round's checkpoints go."""
    distributed.barrier(f"done_{os.path.basename(self.directory)}")
    if distributed.is_main():
      shutil.rmtree(self.directory, ignore_errors=True)


def _train_chunk(
  setup, chunk: list[Member], padded: int, layout, loaded, writer, label: str, checkpoint=None
):
  """Trains one chunk, padded to `padded` members (copies of its last: one compiled shape
  for every chunk), from the variables `loaded` (None: each member's initial ones), or
  from the latest of `checkpoint` (a RoundCheckpoint) and saving there; returns the
  results of the real members."""
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
  hooks = {}
  if checkpoint is not None:
    resumed = checkpoint.restore(pop)
    best, carry, step = resumed if resumed is not None else (None, None, 0)
    if resumed is not None:
      logging.info("%sresumed from its checkpoint at step %d.", label, step)
    if writer is not None and writer.path is not None:
      path = writer.path
      workdir_lib.truncate_metrics(
        os.path.dirname(path), step, run=label.strip(": "), name=os.path.basename(path)
      )
    hooks = dict(best=best, carry=carry, on_epoch=checkpoint.after_epoch)
    if checkpoint.every_steps:
      hooks["on_step"] = checkpoint.after_step
  fit = runner.fit(pop, writer=writer, label=label, **hooks)
  if checkpoint is not None:
    fit = checkpoint.joined(fit)
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
  *,
  store: Store | None = None,
  first_index: int = 0,
  prefix: str = "",
) -> list[MemberResult]:
  """Trains and evaluates the members of one structure; one result each, in order.

  With several processes the chunks go out in rounds, chunk r * P + p of round r to
  process p (a process without one trains a copy of the last, thrown away: every round's
  checkpoints are saved by all processes together), and every process gets every result
  (`distributed.gather`). With a `store` (a workdir) finished members' results are read
  back instead of trained (`first_index`: the global index of members[0]), a round's
  populations resume from their checkpoint, and each member's result is stored when its
  round ends. `prefix` starts the log labels (the structure, when there are several)."""
  first = members[0].exp
  setup = runner.build(first)
  loaded = None
  if first.init_checkpoint:
    state, _ = workdir_lib.load_state(first.init_checkpoint, runner.initial_state(setup, first))
    # On the host: every member's training donates its own device copy of these.
    loaded = jax.device_get(models.variables(state.params, state.batch_stats))
  n, procs, me = len(members), jax.process_count(), jax.process_index()
  if procs > 1 and chunk_size == 0 and layout.stacked:
    chunk_size = -(-n // procs)  # "All at once" in a multi-process run: a share each.
  size, padded = population_lib.chunks(n, chunk_size, layout)
  layout = cpu_vmap_group(layout, setup, first, padded)
  n_chunks = -(-n // size)
  chunks = [list(range(c * size, min((c + 1) * size, n))) for c in range(n_chunks)]
  results: dict[int, MemberResult] = {}
  for r in range(-(-n_chunks // procs)):
    in_round = [i for chunk in chunks[r * procs : (r + 1) * procs] for i in chunk]
    name = f"{first_index + in_round[0]}-{first_index + in_round[-1]}_{procs}x{padded}"
    if store is not None and all(store.finished(first_index + i) for i in in_round):
      results.update({i: store.load(first_index + i, members[i]) for i in in_round})
      logging.info("%smembers %s: finished in an earlier launch.", prefix, name.split("_")[0])
      if distributed.is_main() and os.path.isdir(store.round_dir(name)):
        shutil.rmtree(store.round_dir(name), ignore_errors=True)
      continue
    c = r * procs + me
    mine = chunks[c] if c < n_chunks else []
    what = "member" if size == 1 else "chunk"
    label = f"{prefix}{what} {c + 1}/{n_chunks}: "
    if not mine:  # This process pads the last round (see the docstring).
      label = f"{prefix}padding, a copy of {what} {n_chunks}/{n_chunks}: "
    checkpoint = (
      RoundCheckpoint(store.round_dir(name), first, layout) if store is not None else None
    )
    chunk = [members[i] for i in (mine or chunks[-1])]
    trained = _train_chunk(
      setup, chunk, padded, layout, loaded, writer if mine else None, label, checkpoint
    )
    for i, result in zip(mine, trained, strict=False):
      results[i] = result
      if store is not None:
        store.save(first_index + i, members[i], result)
    if checkpoint is not None:
      checkpoint.remove()
  if procs > 1:
    everyone = distributed.gather(
      {str(i): results[i].to_json() for i in results}, f"results_{first_index}"
    )
    for part in everyone:
      for i, result in part.items():
        results.setdefault(int(i), MemberResult.from_json(result))
  return [results[i] for i in range(n)]


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
  # One launch per workdir: process 0 holds launch.lock (as a single run does), every other
  # process of a multi-process launch a lock file of its own.
  index = jax.process_index()
  with workdir_lib.lock(
    workdir, name=workdir_lib.LOCK if index == 0 else f"launch.process{index}.lock"
  ):
    return _run_sweep(exp, workdir, start_time)


def _metrics_name(index: int) -> str:
  """Process `index`'s metrics file: metrics.jsonl for process 0."""
  return workdir_lib.METRICS if index == 0 else f"metrics.process{index}.jsonl"


def _all_records(workdir: str) -> list[dict]:
  """The records of every process's metrics file (process 0's first)."""
  others = sorted(glob.glob(os.path.join(workdir, "metrics.process*.jsonl")))
  names = [workdir_lib.METRICS, *(os.path.basename(p) for p in others)]
  return [r for name in names for r in workdir_lib.read_metrics(workdir, name)]


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
  index = jax.process_index()
  tensorboard = exp.log_tensorboard and main
  writer = workdir_lib.MetricsWriter(workdir, tensorboard, name=_metrics_name(index))
  store = None if workdir is None else Store(workdir)
  reused = 0 if store is None else sum(store.finished(i) for i in range(n_members))
  if reused:
    logging.info("Resuming: %d of %d members finished in earlier launches.", reused, n_members)
  rows, train_start, first_index = [], time.time(), 0
  try:
    for s, members in enumerate(structures):
      prefix = f"structure {s + 1}/{len(structures)}, " if len(structures) > 1 else ""
      results = train_members(
        members,
        layout,
        exp.sweep.chunk_size,
        writer,
        store=store,
        first_index=first_index,
        prefix=prefix,
      )
      first_index += len(members)
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
    "processes": jax.process_count(),
    "members_reused": reused,
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
      records = _all_records(workdir)
      summary["plots"].append(figures.plot_training_curves(records, curves, title))
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
