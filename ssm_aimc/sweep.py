r"""Population training: a grid of configurations trained together by one compiled program.

`run_sweep(config, workdir)` reads `config.sweep` (see configs/sweep_bits.py) and

  expands its axes into a grid: bit widths (all weights, activations, a_bar, or one tensor
    group), analog noise scales, learning rates and seeds; each grid point is an ordinary
    config (`Member.config`, the base config with `Member.overrides` applied), so any row
    of the sweep can be reproduced alone with `launch.py --mode=train`;
  -> loops, in Python, over the structural axes (d_model, d_state, n_layers), which change
    array shapes and so need a program of their own;
  -> stacks the members' params, optimizer states, quantization and analog specs and
    PRNG keys along a leading population axis and trains them with ONE jitted step:
    `train.train_step` mapped over the population (`strategy`):
      "vmap"      `jax.vmap` (one batched program; the slowest in every measurement so far),
      "map"       `jax.lax.map` inside one program (members one after another, one compile),
      "separate"  the unbatched step called once per member (one compile, P dispatches),
      "auto"      the fastest measured: "separate" on every platform measured so far
                  (BENCHMARKS.md "Population sweeps": on 2 CPU cores vmap is ~1.7x slower per
                  member; on an H200 GPU the 8-config digits sweep trained in 106 s with
                  vmap against 32 s separate);
    the population is split into chunks of `chunk_size` members (0: all at once) so a
    population that does not fit in memory runs chunk by chunk, every chunk through the
    same compiled step (the last one is padded with copies of its last member);
  -> evaluates every member (best validation checkpoint, as train.py does: test accuracy,
    analog accuracy over noise seeds when `hardware.enabled`, cost report) and writes
    sweep.csv (one row per grid point), sweep.json, config.json, metrics.jsonl and PNG
    plots (accuracy vs bits per swept group, accuracy vs noise, accuracy vs memory bits
    with the Pareto front).

What makes one program possible: bit widths (`quant.QuantSpec`) and noise levels
(`analog.AnalogSpec`) are traced leaves, and the learning rate is a leaf of the optimizer
state through `optax.inject_hyperparams`: the population's optimizer is train.py's
`make_optimizer` at peak learning rate 1, followed by an injected `optax.scale(lr)`. AdamW's
update (weight decay included) is linear in the learning rate and the warm-up + cosine
schedule linear in its peak, so this is the per-member optimizer, up to float rounding.

A noise-scale axis multiplies the programming and read noise of `config.hardware`. With
`hardware.train` (noise-aware training) it is a training axis; otherwise it is an
evaluation axis: each trained member is evaluated at every scale (one row per scale)
without being trained again.

Scaling past one device: when more than one device is visible (and `sweep.shard`), the
population axis is sharded over all of them: a `jax.sharding.Mesh` with one axis
("population"), every stacked array placed with `NamedSharding(mesh, P("population"))`,
and the mapped step wrapped in `jax.shard_map`, so each device trains its own slice of
members with no communication (chunks are padded to a multiple of the device count).
On several hosts, start every process with

  jax.distributed.initialize()   # or (coordinator_address, num_processes, process_id)

before anything else touches JAX (e.g. at the top of launch.py's main, or via
`JAX_COORDINATOR_ADDRESS` etc. on managed clusters); `jax.devices()` then lists the
devices of all hosts and the mesh spans them. Every process runs the same sweep: arrays
are built from identical host data with `jax.make_array_from_callback` (each process
fills only its own shards), results are gathered with
`jax.experimental.multihost_utils.process_allgather`, and only process 0 writes files.
CPU testing of the sharded path: `XLA_FLAGS=--xla_force_host_platform_device_count=8`
set before JAX is imported (tests/test_sweep.py does this in a subprocess).

Not supported in a sweep (ConfigError): pruning; resuming (nothing is checkpointed).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import logging as py_logging
import math
import os
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssm_aimc import data, deploy, errors, figures, models, noise_eval, quant, train

STRATEGIES = ("vmap", "map", "separate")
AUTO = "auto"
AXIS = "population"
CSV_NAME = "sweep.csv"
JSON_NAME = "sweep.json"
PLOT_BITS = "sweep_accuracy_vs_bits.png"
PLOT_NOISE = "sweep_accuracy_vs_noise.png"
PLOT_PARETO = "sweep_accuracy_vs_memory.png"

# Axes that set bit widths: sweep field -> config.quant field.
BIT_AXES = {"weight_bits": "weight_bits", "act_bits": "act_bits", "a_bar_bits": "a_bar_bits"}
# Axes that change array shapes: looped over in Python, one program each.
STRUCTURE_AXES = ("d_model", "d_state", "n_layers")
SWEEP_FIELDS = (
  *BIT_AXES,
  "group_bits",
  "noise_scales",
  "learning_rates",
  "seeds",
  *STRUCTURE_AXES,
  "strategy",
  "chunk_size",
  "shard",
  "plots",
)
KNOB_COLUMNS = (
  "weight_bits",
  "act_bits",
  "a_bar_bits",
  *(f"bits_{g}" for g in quant.GROUPS),
  "learning_rate",
  "seed",
  "noise_scale",
  *STRUCTURE_AXES,
)
METRIC_COLUMNS = (
  "test_accuracy",
  "test_loss",
  "val_accuracy",
  "train_loss",
  "diverged",
  "analog_accuracy_mean",
  "analog_accuracy_std",
  "noise_seeds",
  "params",
  "memory_bits",
  "fp32_memory_bits",
  "compression_vs_fp32",
  "compression_vs_reference",
  "macs_per_step",
  "bitops_per_step",
  "bitops_reduction_vs_fp32",
  "tiles",
  "energy_per_inference_j",
  "energy_vs_fp32",
  "pareto",
)
COLUMNS = ("index", *KNOB_COLUMNS, *METRIC_COLUMNS)


# ---------------------------------------------------------------------------------------
# The sweep config and its grid.
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """The `sweep` section of a config, validated. An empty axis is not swept.

  Attributes:
    weight_bits: widths of every weight group (config.quant.weight_bits).
    act_bits: widths of activations, biases and state (config.quant.act_bits).
    a_bar_bits: widths of the recurrent coefficient (config.quant.a_bar_bits).
    group_bits: (group, widths) pairs: one axis per tensor group of `quant.GROUPS`,
      overriding the three above for that group (config.quant.group_bits.<group>).
    noise_scales: factors on the programming and read noise of config.hardware.
    learning_rates: peak learning rates (through optax.inject_hyperparams).
    seeds: config.seed values (init, dropout and batch order of each member).
    d_model, d_state, n_layers: structural axes, one compiled program each.
    strategy: "vmap", "map", "separate" or "auto" (module docstring).
    chunk_size: members trained together; 0 = the whole population.
    shard: shard the population over all devices when there are several.
    plots: write the PNG plots.
  """

  weight_bits: tuple[int, ...] = ()
  act_bits: tuple[int, ...] = ()
  a_bar_bits: tuple[int, ...] = ()
  group_bits: tuple[tuple[str, tuple[int, ...]], ...] = ()
  noise_scales: tuple[float, ...] = ()
  learning_rates: tuple[float, ...] = ()
  seeds: tuple[int, ...] = ()
  d_model: tuple[int, ...] = ()
  d_state: tuple[int, ...] = ()
  n_layers: tuple[int, ...] = ()
  strategy: str = AUTO
  chunk_size: int = 0
  shard: bool = True
  plots: bool = True


def _values(name: str, values, kind: str) -> tuple:
  """An axis as a tuple of ints ("int") or positive-or-zero floats ("float"); ConfigError."""
  if isinstance(values, str | bytes) or not isinstance(values, Sequence):
    raise errors.ConfigError(f"sweep.{name} must be a tuple of values, got {values!r}.")
  out = []
  for v in values:
    if isinstance(v, bool) or not isinstance(v, int | float | np.number):
      raise errors.ConfigError(f"sweep.{name}: {v!r} is not a number.")
    if kind == "int":
      if not float(v).is_integer():
        raise errors.ConfigError(f"sweep.{name}: {v!r} is not a whole number.")
      out.append(int(v))
    else:
      if not math.isfinite(v):
        raise errors.ConfigError(f"sweep.{name}: {v!r} is not finite.")
      out.append(float(v))
  if len(set(out)) != len(out):
    raise errors.ConfigError(f"sweep.{name} repeats a value: {tuple(values)}.")
  return tuple(out)


def _bits_axis(name: str, values) -> tuple[int, ...]:
  values = _values(name, values, "int")
  for v in values:
    try:
      quant.validate_bits(v)
    except errors.ConfigError as e:
      raise errors.ConfigError(f"sweep.{name}: {e}") from e
  return values


def sweep_config(config: ml_collections.ConfigDict) -> SweepConfig:
  """The validated `config.sweep` (ConfigError on a missing section or a bad value)."""
  if "sweep" not in config:
    raise errors.ConfigError(
      "The config has no `sweep` section; start from configs/sweep_bits.py, which adds it."
    )
  s = config.sweep
  unknown = sorted(set(s.keys()) - set(SWEEP_FIELDS))
  if unknown:
    raise errors.ConfigError(f"Unknown sweep fields {unknown}; valid: {list(SWEEP_FIELDS)}.")
  get = lambda name, default: s[name] if name in s else default
  bit_axes = {name: _bits_axis(name, get(name, ())) for name in BIT_AXES}
  group_bits = []
  groups = get("group_bits", {}) or {}
  for group in groups:
    if group not in quant.GROUPS:
      raise errors.ConfigError(
        f"Unknown tensor group sweep.group_bits.{group}; valid: {list(quant.GROUPS)}."
      )
    values = _bits_axis(f"group_bits.{group}", groups[group])
    if values:
      group_bits.append((group, values))
  noise = _values("noise_scales", get("noise_scales", ()), "float")
  if any(v < 0 for v in noise):
    raise errors.ConfigError(f"sweep.noise_scales must be >= 0, got {noise}.")
  lrs = _values("learning_rates", get("learning_rates", ()), "float")
  if any(v <= 0 for v in lrs):
    raise errors.ConfigError(f"sweep.learning_rates must be > 0, got {lrs}.")
  seeds = _values("seeds", get("seeds", ()), "int")
  if any(v < 0 for v in seeds):
    raise errors.ConfigError(f"sweep.seeds must be >= 0, got {seeds}.")
  structure = {name: _values(name, get(name, ()), "int") for name in STRUCTURE_AXES}
  for name, values in structure.items():
    if any(v <= 0 for v in values):
      raise errors.ConfigError(f"sweep.{name} must be positive, got {values}.")
  strategy = get("strategy", AUTO)
  if strategy not in STRATEGIES + (AUTO,):
    raise errors.ConfigError(f"Unknown sweep.strategy {strategy!r}; valid: {STRATEGIES + (AUTO,)}.")
  chunk_size = get("chunk_size", 0)
  if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 0:
    raise errors.ConfigError(
      f"sweep.chunk_size must be an integer >= 0 (0: whole population), got {chunk_size!r}."
    )
  if (any(bit_axes.values()) or group_bits) and not config.quant.enabled:
    raise errors.ConfigError("Sweeping bit widths needs quant.enabled=True.")
  if noise and not config.hardware.enabled:
    raise errors.ConfigError("sweep.noise_scales needs hardware.enabled=True.")
  if config.prune.enabled:
    raise errors.ConfigError("A sweep cannot prune: set prune.enabled=False.")
  return SweepConfig(
    **bit_axes,
    group_bits=tuple(group_bits),
    noise_scales=noise,
    learning_rates=lrs,
    seeds=seeds,
    **structure,
    strategy=strategy,
    chunk_size=chunk_size,
    shard=bool(get("shard", True)),
    plots=bool(get("plots", True)),
  )


@dataclasses.dataclass(frozen=True)
class Member:
  """One trained model of the population.

  Attributes:
    overrides: {config path: value} that turn the base config into this member's.
    config: the base config with `overrides` applied (a complete, valid config).
    evals: (noise_scale column value, factor on the config's analog noise) per row this
      member produces: one row, or one per scale of an evaluation-only noise axis;
      (None, None) without hardware.
  """

  overrides: dict
  config: ml_collections.ConfigDict
  evals: tuple[tuple[float | None, float | None], ...]


def _set(config: ml_collections.ConfigDict, path: str, value) -> None:
  *parents, leaf = path.split(".")
  target = config
  for p in parents:
    target = target[p]
  target[leaf] = value


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict):
  """A copy of `config` with {dotted path: value} set."""
  out = ml_collections.ConfigDict(config.to_dict())
  for path, value in overrides.items():
    _set(out, path, value)
  return out


def _axes(config, cfg: SweepConfig) -> tuple[list, list, tuple[float, ...]]:
  """(structural axes, training axes, evaluation-only noise scales); an axis is a list of
  override dicts, one per value."""
  structure = [
    [{f"model.{name}": v} for v in getattr(cfg, name)]
    for name in STRUCTURE_AXES
    if getattr(cfg, name)
  ]
  training = [
    [{f"quant.{field}": v} for v in getattr(cfg, name)]
    for name, field in BIT_AXES.items()
    if getattr(cfg, name)
  ]
  training += [[{f"quant.group_bits.{g}": v} for v in values] for g, values in cfg.group_bits]
  if cfg.learning_rates:
    training.append([{"optimizer.learning_rate": v} for v in cfg.learning_rates])
  if cfg.seeds:
    training.append([{"seed": v} for v in cfg.seeds])
  eval_noise = ()
  if cfg.noise_scales and config.hardware.train:
    hw = config.hardware
    training.append(
      [
        {
          "hardware.prog_noise_scale": hw.prog_noise_scale * s,
          "hardware.read_noise_scale": hw.read_noise_scale * s,
          "_noise_scale": s,
        }
        for s in cfg.noise_scales
      ]
    )
  elif cfg.noise_scales:
    eval_noise = cfg.noise_scales
  return structure, training, eval_noise


def _product(axes: list) -> list[dict]:
  out = []
  for combo in itertools.product(*axes):
    merged = {}
    for part in combo:
      merged.update(part)
    out.append(merged)
  return out


def expand(config: ml_collections.ConfigDict) -> list[list[Member]]:
  """The grid of `config.sweep`: one list of members per structure (ConfigError if bad).

  Every member's config is validated here, before any training starts.
  """
  cfg = sweep_config(config)
  structure, training, eval_noise = _axes(config, cfg)
  out = []
  for shape in _product(structure):
    members = []
    for point in _product(training):
      overrides = {**shape, **point}
      noise = overrides.pop("_noise_scale", None)
      member_config = apply_overrides(config, overrides)
      train.validate(member_config)
      train.quant_spec(member_config)
      train.analog_spec(member_config)
      if not config.hardware.enabled:
        evals = ((None, None),)
      elif eval_noise:
        evals = tuple((s, s) for s in eval_noise)
      else:
        evals = ((1.0 if noise is None else noise, 1.0),)
      members.append(Member(overrides, member_config, evals))
    out.append(members)
  return out


def knobs(member: Member, noise_scale: float | None) -> dict:
  """The knob columns of one row: resolved bit widths (32 = float), lr, seed, noise, shape."""
  c = member.config
  spec = train.quant_spec(c)
  summary = {g: quant.OFF_BITS for g in quant.GROUPS}
  if spec is not None:
    summary = {g: float(getattr(spec, g).bits) for g in quant.GROUPS}
  row = {
    "weight_bits": c.quant.weight_bits if spec is not None else int(quant.OFF_BITS),
    "act_bits": c.quant.act_bits if spec is not None else int(quant.OFF_BITS),
    "a_bar_bits": c.quant.a_bar_bits if spec is not None else int(quant.OFF_BITS),
    **{f"bits_{g}": int(min(b, quant.OFF_BITS)) for g, b in summary.items()},
    "learning_rate": c.optimizer.learning_rate,
    "seed": c.seed,
    "noise_scale": noise_scale,
  }
  row.update({name: c.model[name] for name in STRUCTURE_AXES})
  return row


# ---------------------------------------------------------------------------------------
# One program over the population.
# ---------------------------------------------------------------------------------------


def init_params(exp: train.Experiment, seed: int):
  """The initial params train.build makes for `seed` (same key, same init, and the same
  compiled init: `train.init_fn` is cached per model and input shape)."""
  fn = train.init_fn(exp.model, exp.dataset.seq_len, exp.dataset.d_input)
  return fn(train.init_key(seed))


def _scale_by_learning_rate(learning_rate):
  return optax.scale(learning_rate)


def population_optimizer(config: ml_collections.ConfigDict, exp: train.Experiment):
  """train.make_optimizer at peak learning rate 1, then an injected `scale(learning_rate)`.

  The learning rate lives in the optimizer state (`optax.inject_hyperparams`), so the
  members' states stack and one compiled step serves every learning rate; set it with
  `optax.tree_utils.tree_set(opt_state, learning_rate=lr)`.
  """
  cfg = dataclasses.replace(train.optim_config(config), learning_rate=1.0)
  base, _ = train.make_optimizer(cfg, exp.steps_per_epoch, exp.total_steps)
  return optax.chain(base, optax.inject_hyperparams(_scale_by_learning_rate)(learning_rate=1.0))


def resolve_strategy(strategy: str) -> str:
  """ "auto" -> the fastest measured strategy: "separate" (CPU and GPU, module docstring)."""
  return "separate" if strategy == AUTO else strategy


def population_mesh(devices=None) -> jax.sharding.Mesh | None:
  """A one-axis ("population") mesh over `devices` (default: all), or None for one device."""
  devices = jax.devices() if devices is None else list(devices)
  if len(devices) < 2:
    return None
  return jax.sharding.Mesh(np.array(devices), (AXIS,))


def over_population(
  fn: Callable, strategy: str, mapped: tuple[bool, ...], mesh: jax.sharding.Mesh | None = None
) -> Callable:
  """`fn` of one member -> the same function of a population (leading axis of the arguments
  flagged in `mapped`; the others are shared). Outputs gain the population axis.

  strategy "vmap" batches with jax.vmap, "map" loops with jax.lax.map inside the program,
  "separate" takes a population of exactly one. With a mesh, each device runs the mapped
  function on its own slice of the population (jax.shard_map, no communication).
  """
  if strategy not in STRATEGIES:
    raise errors.ConfigError(f"Unknown strategy {strategy!r}; valid: {STRATEGIES}.")

  def batched(*args):
    if strategy == "vmap":
      return jax.vmap(fn, in_axes=tuple(0 if m else None for m in mapped))(*args)
    if strategy == "map":
      xs = tuple(a for a, m in zip(args, mapped, strict=True) if m)

      def body(member_args):
        it = iter(member_args)
        return fn(*(next(it) if m else a for a, m in zip(args, mapped, strict=True)))

      return jax.lax.map(body, xs)
    one = [jax.tree.map(lambda a: a[0], a) if m else a for a, m in zip(args, mapped, strict=True)]
    return jax.tree.map(lambda a: a[None], fn(*one))

  if mesh is None:
    return batched
  in_specs = tuple(P(AXIS) if m else P() for m in mapped)
  return jax.shard_map(batched, mesh=mesh, in_specs=in_specs, out_specs=P(AXIS), check_vma=False)


def make_step(strategy: str, mesh=None) -> Callable:
  """The jitted population train step (states, x, y, keys, specs, analogs) -> (states,
  metrics): `train.train_step` of every member; states are donated."""

  def member_step(state, x, y, key, spec, analog):
    return train.train_step(state, x, y, key, spec, analog)

  return jax.jit(over_population(member_step, strategy, (True,) * 6, mesh), donate_argnums=0)


def _make_eval(apply_fn: Callable, strategy: str, mesh) -> Callable:
  def member_eval(params, spec, x, y, mask):
    return train.eval_step(apply_fn, spec, params, x, y, mask)

  return jax.jit(over_population(member_eval, strategy, (True, True, False, False, False), mesh))


def _make_analog_eval(apply_fn: Callable, strategy: str, mesh) -> Callable:
  def member_counts(params, spec, analog, x, y, mask, keys_program, keys_read, batch_index):
    return noise_eval.correct_counts(
      apply_fn, spec, params, x, y, mask, analog, keys_program, keys_read, batch_index
    )

  mapped = (True, True, True) + (False,) * 6
  return jax.jit(over_population(member_counts, strategy, mapped, mesh))


@jax.jit
def _select(improved, best, params):
  """Per member: params where improved, else best."""

  def pick(b, p):
    return jnp.where(improved.reshape((-1,) + (1,) * (p.ndim - 1)), p, b)

  return jax.tree.map(pick, best, params)


class _Placer:
  """Puts host arrays on the mesh: stacked ones split along the population axis, shared
  ones replicated; a plain device_put without a mesh. Works across hosts (each process
  fills only its own shards from identical host data)."""

  def __init__(self, mesh):
    self.mesh = mesh

  def _put(self, tree, spec):
    if self.mesh is None:
      return jax.tree.map(jnp.asarray, tree)
    sharding = NamedSharding(self.mesh, spec)

    def put(a):
      a = np.asarray(a)
      return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    return jax.tree.map(put, tree)

  def stacked(self, tree):
    return self._put(tree, P(AXIS))

  def shared(self, tree):
    return self._put(tree, P())


def fetch(tree):
  """Device arrays -> numpy on this host (gathered from every host when there are several)."""
  if jax.process_count() > 1:
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.tree.map(np.asarray, jax.device_get(tree))


def _stack(trees: list):
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


@dataclasses.dataclass
class MemberResult:
  """What training and evaluating one member produced.

  Attributes:
    losses: (steps,) training loss of every step.
    epoch_losses: (epochs,) mean training loss per epoch.
    val_accuracy: best validation accuracy (the checkpoint that is evaluated).
    test_accuracy, test_loss: of that checkpoint.
    diverged: a non-finite epoch loss occurred.
    analog: per entry of `Member.evals`, {analog_accuracy_mean, _std, noise_seeds,
      analog_accuracies} ({} without hardware).
    cost: the cost report (train.cost_report) as a dict, with tiles and the energy of one
      inference on the chip of config.deploy (deploy.energy_report).
  """

  losses: np.ndarray
  epoch_losses: np.ndarray
  val_accuracy: float
  test_accuracy: float
  test_loss: float
  diverged: bool
  analog: list[dict]
  cost: dict


def _chunks(n: int, cfg_chunk: int, strategy: str, mesh) -> tuple[int, int]:
  """(members per chunk, padded chunk size)."""
  if strategy == "separate":
    return 1, 1
  size = n if cfg_chunk == 0 else min(cfg_chunk, n)
  padded = size
  if mesh is not None:
    padded = -(-size // mesh.size) * mesh.size
  return size, padded


def _population_eval(eval_fn, params, specs, split: data.Split, batch_size: int, placer):
  totals = None
  for x, y, mask in data.padded_batches(split, batch_size):
    out = eval_fn(params, specs, *placer.shared((x, y, mask)))
    totals = out if totals is None else jax.tree.map(jnp.add, totals, out)
  t = fetch(totals)
  count = np.maximum(t["count"], 1.0)
  return {"loss": t["loss_sum"] / count, "accuracy": t["correct"] / count}


def _population_analog(fn, params, specs, analogs, split, config, placer) -> list[dict]:
  """noise_eval.evaluate for every member at once: the same chips (keys) and batches."""
  hw = config.hardware
  n_seeds = hw.eval_seeds
  keys_program, keys_read = noise_eval.chip_keys(hw.eval_seed, n_seeds)
  correct, count = None, 0.0
  for index, (x, y, mask) in enumerate(data.padded_batches(split, config.eval_batch_size)):
    count += float(mask.sum())
    shared = placer.shared((x, y, mask))
    parts = []
    for start in range(0, n_seeds, hw.seeds_per_call):
      chips = slice(start, min(start + hw.seeds_per_call, n_seeds))
      parts.append(
        fn(
          params,
          specs,
          analogs,
          *shared,
          *placer.shared((keys_program[chips], keys_read[chips], jnp.int32(index))),
        )
      )
    batch = np.concatenate(fetch(parts), axis=1)
    correct = batch if correct is None else correct + batch
  accuracies = correct / max(count, 1.0)
  return [
    {
      "analog_accuracy_mean": float(np.mean(a)),
      "analog_accuracy_std": float(np.std(a)),
      "noise_seeds": int(n_seeds),
      "analog_accuracies": [float(v) for v in a],
    }
    for a in accuracies
  ]


def train_members(
  config: ml_collections.ConfigDict,
  members: list[Member],
  *,
  strategy: str = "vmap",
  chunk_size: int = 0,
  mesh: jax.sharding.Mesh | None = None,
  step_fn: Callable | None = None,
  writer: train.MetricsWriter | None = None,
) -> list[MemberResult]:
  """Trains and evaluates members of one structure as a population; one result each.

  Args:
    config: the base config (its shapes, epochs, batch size and hardware are shared).
    members: members with the same structure (`expand` groups them).
    strategy: "vmap", "map" or "separate".
    chunk_size: members per compiled call; 0 = all.
    mesh: shard the population over this mesh (`population_mesh`); None = one device.
    step_fn: a step from `make_step(strategy, mesh)` to reuse (else one is made here).
    writer: where to log one population summary per epoch (metrics.jsonl).
  """
  if strategy == "separate":
    mesh = None
  first = members[0].config
  exp = train.build(first)
  tx = population_optimizer(first, exp)
  step_fn = step_fn or make_step(strategy, mesh)
  eval_fn = _make_eval(exp.model.apply, strategy, mesh)
  analog_fn = _make_analog_eval(exp.model.apply, strategy, mesh) if exp.analog else None
  placer = _Placer(mesh)
  loaded = None
  if first.init_checkpoint:
    loaded = train.load_params(first.init_checkpoint, exp.state)[0].params
  size, padded = _chunks(len(members), chunk_size, strategy, mesh)
  n_chunks = -(-len(members) // size)
  bar = tqdm.tqdm(
    total=n_chunks * first.num_epochs * exp.steps_per_epoch,
    desc=f"sweep: {len(members)} members ({strategy})",
    disable=None if first.progress_bar else True,
    dynamic_ncols=True,
  )
  results = []
  for c in range(n_chunks):
    chunk = members[c * size : (c + 1) * size]
    batch_members = chunk + [chunk[-1]] * (padded - len(chunk))
    results += _train_chunk(
      first,
      exp,
      tx,
      batch_members,
      len(chunk),
      step_fn,
      eval_fn,
      analog_fn,
      loaded,
      placer,
      bar,
      writer,
      f"chunk {c + 1}/{n_chunks}",
    )
  bar.close()
  return results


def _train_chunk(
  config,
  exp,
  tx,
  members,
  n_real,
  step_fn,
  eval_fn,
  analog_fn,
  loaded,
  placer,
  bar,
  writer,
  label,
) -> list[MemberResult]:
  states, specs, analogs, keys = [], [], [], []
  for m in members:
    c = m.config
    spec, analog = train.quant_spec(c), train.analog_spec(c)
    params = loaded if loaded is not None else init_params(exp, c.seed)
    # The same calibration as train_and_evaluate (one batch of this member's order).
    params = train.calibrate(c, dataclasses.replace(exp, spec=spec, analog=analog), params)
    state = train.TrainState.create(apply_fn=exp.model.apply, params=params, tx=tx)
    lr = jnp.float32(c.optimizer.learning_rate)
    states.append(
      state.replace(opt_state=optax.tree_utils.tree_set(state.opt_state, learning_rate=lr))
    )
    specs.append(spec)
    analogs.append(analog)
    keys.append(jax.random.fold_in(jax.random.PRNGKey(c.seed), 1))
  state = placer.stacked(_stack(states))
  specs = placer.stacked(_stack(specs)) if specs[0] is not None else None
  analogs = placer.stacked(_stack(analogs)) if analogs[0] is not None else None
  keys = placer.stacked(np.stack([np.asarray(k) for k in keys]))
  seeds = [m.config.seed for m in members]
  n = len(members)
  best, best_val = None, np.full(n, -np.inf)
  diverged = np.zeros(n, bool)
  all_losses, epoch_losses = [], []
  step = 0
  for epoch in range(config.num_epochs):
    orders = {
      s: data.batches(exp.dataset.train, config.batch_size, seed=s, epoch=epoch)
      for s in dict.fromkeys(seeds)
    }
    losses = []
    for _ in range(exp.steps_per_epoch):
      batch = {s: next(it) for s, it in orders.items()}
      x = placer.stacked(np.stack([batch[s][0] for s in seeds]))
      y = placer.stacked(np.stack([batch[s][1] for s in seeds]))
      # The noise ramp of noise-aware training, applied to every member's own spec.
      train_analog = train._train_analog(config, dataclasses.replace(exp, analog=analogs), step)
      state, metrics = step_fn(state, x, y, keys, specs, train_analog)
      losses.append(metrics["loss"])
      step += 1
      bar.update(1)
    losses = fetch(jnp.stack(losses))
    all_losses.append(losses)
    epoch_loss = losses.mean(axis=0)
    epoch_losses.append(epoch_loss)
    diverged |= ~np.isfinite(epoch_loss)
    val = _population_eval(
      eval_fn, state.params, specs, exp.dataset.val, config.eval_batch_size, placer
    )
    improved = val["accuracy"] > best_val
    best_val = np.where(improved, val["accuracy"], best_val)
    best = _select(placer.stacked(improved), state.params if best is None else best, state.params)
    real = slice(0, n_real)
    logging.info(
      "sweep %s, epoch %d/%d: train loss %.4f (min %.4f, max %.4f) | val acc mean %.4f, "
      "best member %.4f%s",
      label,
      epoch + 1,
      config.num_epochs,
      float(np.nanmean(epoch_loss[real])),
      float(np.nanmin(epoch_loss[real])),
      float(np.nanmax(epoch_loss[real])),
      float(np.mean(val["accuracy"][real])),
      float(np.max(val["accuracy"][real])),
      f"; {int(diverged[real].sum())} diverged" if diverged[real].any() else "",
    )
    if writer is not None:
      writer.write(
        step,
        chunk=label,
        epoch=epoch + 1,
        train_loss_mean=float(np.nanmean(epoch_loss[real])),
        val_accuracy_mean=float(np.mean(val["accuracy"][real])),
        val_accuracy_max=float(np.max(val["accuracy"][real])),
      )
  test = _population_eval(eval_fn, best, specs, exp.dataset.test, config.eval_batch_size, placer)
  analog_rows = [[] for _ in range(n)]
  if analog_fn is not None:
    for j in range(len(members[0].evals)):
      eval_specs = _stack(
        [train.analog_spec(m.config).scaled(np.float32(m.evals[j][1])) for m in members]
      )
      per_member = _population_analog(
        analog_fn, best, specs, placer.stacked(eval_specs), exp.dataset.test, config, placer
      )
      for i, row in enumerate(per_member):
        analog_rows[i].append(row)
  host_best = fetch(best)
  all_losses = np.concatenate(all_losses)
  epoch_losses = np.stack(epoch_losses)
  out = []
  for i, m in enumerate(members[:n_real]):
    spec = train.quant_spec(m.config)
    params = jax.tree.map(lambda a, i=i: a[i], host_best)
    report = train.cost_report(dataclasses.replace(exp, spec=spec), params)
    # Energy of one inference on the chip of config.deploy / hardware.recurrence.
    x1 = jnp.zeros((1, exp.dataset.seq_len, exp.dataset.d_input), jnp.float32)
    records = models.deployed_tensors(exp.model, params, spec, x1)
    mapping, energies = deploy.energy_report(
      m.config, records, exp.dataset.seq_len, exp.model_cfg.pooling
    )
    chip_cost = {
      "tiles": mapping.tiles,
      "energy_per_inference_j": energies["aimc"]["total_j"],
      "energy_vs_fp32": energies["digital_fp32"]["total_j"] / energies["aimc"]["total_j"],
    }
    out.append(
      MemberResult(
        losses=all_losses[:, i],
        epoch_losses=epoch_losses[:, i],
        val_accuracy=float(best_val[i]),
        test_accuracy=float(test["accuracy"][i]),
        test_loss=float(test["loss"][i]),
        diverged=bool(diverged[i]),
        analog=analog_rows[i],
        cost={**report.as_dict(), **chip_cost},
      )
    )
  return out


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
    for key in METRIC_COLUMNS:
      if key in result.cost:
        row[key] = result.cost[key]
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


def write_csv_atomic(path: str, rows: list[dict], columns: Sequence[str] = COLUMNS) -> None:
  """Writes rows (missing or None values as empty cells) to a temporary file, then renames."""
  tmp = path + ".tmp"
  with open(tmp, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
      writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
  os.replace(tmp, path)


def _swept_bit_columns(cfg: SweepConfig) -> list[str]:
  columns = [name for name in BIT_AXES if getattr(cfg, name)]
  return columns + [f"bits_{g}" for g, _ in cfg.group_bits]


def plot_sweep(rows: list[dict], cfg: SweepConfig, workdir: str, title: str = "") -> list[str]:
  """The PNG plots of a sweep; returns the paths written.

  accuracy vs bits: one panel per swept bit axis, every row as a dot, the mean per width
    as a line;
  accuracy vs noise: analog accuracy (mean +- std over chips) against the noise scale, one
    line per combination of the other knobs (only when the hardware was simulated);
  accuracy vs memory bits: every row, the Pareto front highlighted (log memory axis).
  """
  # The object-oriented API: no pyplot state, no backend switch (notebooks keep theirs).
  from matplotlib.figure import Figure  # noqa: PLC0415

  paths = []
  acc = np.array([100 * r["test_accuracy"] for r in rows])
  bit_columns = _swept_bit_columns(cfg)
  if bit_columns:
    fig = Figure(figsize=(4.2 * len(bit_columns), 3.6))
    axes = fig.subplots(1, len(bit_columns), squeeze=False)
    for ax, column in zip(axes[0], bit_columns, strict=True):
      bits = np.array([r[column] for r in rows], float)
      ax.scatter(bits, acc, alpha=0.5, s=18, label="grid point")
      values = np.unique(bits)
      mean = [acc[bits == v].mean() for v in values]
      ax.plot(values, mean, marker="o", color="C1", label="mean over the other knobs")
      ax.legend(fontsize=7)
      ax.set_xticks(values)
      ax.set_xlabel(column.replace("_", " "))
      ax.set_ylabel("test accuracy (%)")
      ax.grid(alpha=0.3)
    if title:
      fig.suptitle(title)
    paths.append(figures.save(fig, os.path.join(workdir, PLOT_BITS)))
  simulated = [r for r in rows if r.get("analog_accuracy_mean") is not None]
  if simulated and len({r["noise_scale"] for r in simulated}) > 1:
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    swept = _swept_bit_columns(cfg) + ["learning_rate", "seed", *STRUCTURE_AXES]
    varying = [k for k in swept if len({r[k] for r in simulated}) > 1]
    curves: dict[tuple, list[dict]] = {}
    for r in simulated:
      curves.setdefault(tuple(r[k] for k in varying), []).append(r)
    for key, curve in curves.items():
      curve = sorted(curve, key=lambda r: r["noise_scale"])
      label = ", ".join(f"{k}={v}" for k, v in zip(varying, key, strict=True)) or "model"
      ax.errorbar(
        [r["noise_scale"] for r in curve],
        [100 * r["analog_accuracy_mean"] for r in curve],
        yerr=[100 * r["analog_accuracy_std"] for r in curve],
        marker="o",
        capsize=3,
        label=label,
      )
    ax.set_xlabel("noise scale (x the device's programming and read noise)")
    ax.set_ylabel("test accuracy on the simulated chip (%)")
    ax.grid(alpha=0.3)
    if len(curves) <= 12:
      ax.legend(fontsize=7, loc="best")
    if title:
      ax.set_title(title)
    paths.append(figures.save(fig, os.path.join(workdir, PLOT_NOISE)))
  memory = np.array([r["memory_bits"] for r in rows], float)
  front = np.array([bool(r["pareto"]) for r in rows])
  fig = Figure(figsize=(5.5, 3.8))
  ax = fig.subplots()
  ax.scatter(memory[~front], acc[~front], alpha=0.5, s=18, label="grid point")
  order = np.argsort(memory[front])
  ax.plot(memory[front][order], acc[front][order], marker="o", color="C3", label="Pareto front")
  ax.set_xscale("log")
  ax.set_xlabel("memory (bits)")
  ax.set_ylabel("test accuracy (%)")
  ax.grid(alpha=0.3, which="both")
  ax.legend()
  if title:
    ax.set_title(title)
  paths.append(figures.save(fig, os.path.join(workdir, PLOT_PARETO)))
  return paths


def run_sweep(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the grid of `config.sweep` in `workdir`; returns the summary (also sweep.json).

  Writes config.json, metrics.jsonl (one population summary per epoch), sweep.csv (one
  row per grid point: `COLUMNS`), sweep.json (summary and rows) and the plots.
  """
  start_time = time.time()
  py_logging.getLogger("absl").setLevel(py_logging.INFO)
  cfg = sweep_config(config)
  cfg = dataclasses.replace(cfg, strategy=resolve_strategy(cfg.strategy))
  structures = expand(config)
  main = jax.process_index() == 0
  os.makedirs(workdir, exist_ok=True)
  if main:
    train.write_json_atomic(os.path.join(workdir, "config.json"), config.to_dict())
  mesh = population_mesh() if cfg.shard and cfg.strategy != "separate" else None
  n_members = sum(len(m) for m in structures)
  logging.info(
    "Sweep: %d members in %d structure(s), strategy %s, chunk size %s, %d device(s)%s.",
    n_members,
    len(structures),
    cfg.strategy,
    cfg.chunk_size or "all",
    1 if mesh is None else mesh.size,
    " (population sharded)" if mesh is not None else "",
  )
  writer = train.MetricsWriter(workdir) if main else None
  step_fn = make_step(cfg.strategy, mesh)
  rows = []
  train_start = time.time()
  for members in structures:
    results = train_members(
      config,
      members,
      strategy=cfg.strategy,
      chunk_size=cfg.chunk_size,
      mesh=mesh,
      step_fn=step_fn,
      writer=writer,
    )
    for member, result in zip(members, results, strict=True):
      rows += rows_of(member, result)
  train_time = time.time() - train_start
  front = pareto_front([r["memory_bits"] for r in rows], [r["test_accuracy"] for r in rows])
  for i, (row, on_front) in enumerate(zip(rows, front, strict=True)):
    row["index"] = i
    row["pareto"] = bool(on_front)
  best = max(rows, key=lambda r: r["test_accuracy"])
  summary = {
    "task": config.data.task,
    "mode": "sweep",
    "strategy": cfg.strategy,
    "grid_points": len(rows),
    "population": n_members,
    "structures": len(structures),
    "chunk_size": cfg.chunk_size,
    "devices": 1 if mesh is None else mesh.size,
    "best_test_accuracy": best["test_accuracy"],
    "best_index": best["index"],
    "csv": os.path.join(workdir, CSV_NAME),
    "train_time_s": train_time,
    "wall_time_s": time.time() - start_time,
    "platform": jax.default_backend(),
  }
  if main:
    write_csv_atomic(summary["csv"], rows)
    if cfg.plots:
      summary["plots"] = plot_sweep(rows, cfg, workdir, title=f"{config.data.task} sweep")
    summary["wall_time_s"] = time.time() - start_time
    train.write_json_atomic(os.path.join(workdir, JSON_NAME), {**summary, "rows": rows})
  logging.info(
    "Sweep done: %d rows in %s; best test accuracy %.4f (row %d); %.1f s.",
    len(rows),
    summary["csv"],
    best["test_accuracy"],
    best["index"],
    summary["wall_time_s"],
  )
  return {**summary, "rows": rows}
