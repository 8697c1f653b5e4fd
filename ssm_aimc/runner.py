"""One runner: an experiment built into a population of runs and trained by one loop.

  setup = runner.build(exp)                    # data, model, steps: one structure
  pop = runner.Population(setup, members, layout, states)   # P >= 1 runs of it
  fit = runner.fit(pop, ...)                   # THE training loop

A single run (--mode=train) is a population of one in the single layout; a sweep trains
populations of its grid's members in the layout of its strategy (ssm_aimc.population).
The loop is the same: a deterministic batch order per (seed, epoch), dropout keys
fold_in(key, step), metrics.jsonl, the non-finite guard, validation every epoch and the
best state by validation accuracy. What a single run adds (checkpoints and resume,
pruning masks) comes in through the optional `checkpoints` and `pruning` hooks.

Evaluation is the same for every layout too: counts fetched per batch and summed on the
host in float64 (`Population.evaluate`, `Population.chip_accuracies`).

A model with BatchNorm has running statistics besides its params (`models.variables`):
they live in the TrainState's `batch_stats`, come from `init_variables`, are updated by
every training step and travel with the params wherever those go (the best state,
evaluation, calibration, cost); a model without carries an empty `batch_stats`.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from ssm_aimc import (
  cost,
  data,
  errors,
  experiment,
  models,
  noise_eval,
  optim,
  progress,
  quant,
  steps,
)
from ssm_aimc import population as population_lib


@dataclasses.dataclass(frozen=True)
class Setup:
  """What an experiment builds before training, shared by every run of its structure.

  Attributes:
    exp: the experiment it was built from (its data, model and schedule are every
      member's).
    dataset: the task's splits.
    model: the Flax classifier.
    steps_per_epoch, total_steps: of the training schedule.
  """

  exp: experiment.Experiment
  dataset: data.Dataset
  model: object
  steps_per_epoch: int
  total_steps: int

  @property
  def example(self) -> jax.Array:
    """A (1, L, d_input) input that fixes every shape."""
    return jnp.zeros((1, self.dataset.seq_len, self.dataset.d_input), jnp.float32)

  def optimizer(self, exp: experiment.Experiment):
    """The optimizer of `exp` on this schedule (one shared object per optimizer config)."""
    return optim.make_optimizer(exp.optimizer, self.steps_per_epoch, self.total_steps)[0]


def build(exp: experiment.Experiment) -> Setup:
  """Loads the data and builds the model of `exp`."""
  dataset = data.load_dataset(exp.data)
  if exp.batch_size > len(dataset.train):
    raise errors.ConfigError(
      f"batch_size {exp.batch_size} exceeds the {len(dataset.train)} training examples."
    )
  model = models.get_model(exp.model_name, exp.model, dataset.n_classes)
  steps_per_epoch = data.num_batches(len(dataset.train), exp.batch_size, drop_last=True)
  return Setup(exp, dataset, model, steps_per_epoch, steps_per_epoch * exp.num_epochs)


@functools.lru_cache(maxsize=16)
def _init_fn(model, seq_len: int, d_input: int):
  dummy = jnp.zeros((1, seq_len, d_input), jnp.float32)
  return jax.jit(lambda key: model.init(key, dummy, mutable=["params", models.BATCH_STATS]))


def init_variables(setup: Setup, seed: int) -> dict:
  """The initial variables of `seed`, {"params": ...} and for a model with BatchNorm
  {"batch_stats": ...}: key fold_in(PRNGKey(seed), 0), one compiled init per model and
  input shape in this process."""
  fn = _init_fn(setup.model, setup.dataset.seq_len, setup.dataset.d_input)
  return fn(jax.random.fold_in(jax.random.PRNGKey(seed), 0))


def init_params(setup: Setup, seed: int):
  """The initial params of `seed` (`init_variables`)."""
  return init_variables(setup, seed)["params"]


def calibrate(setup: Setup, exp: experiment.Experiment, params, batch_stats=None):
  """Quantizer ranges and LSQ steps from the first training batch of `exp`'s order.

  Runs when the model is quantized or simulated on analog hardware (whose DAC and ADC use
  the activation ranges); a no-op for a digital float model.
  """
  if exp.quant.spec is None and exp.hardware.spec is None:
    return params
  spec = exp.quant.spec if exp.quant.spec is not None else quant.QuantSpec.off()
  x, _ = next(data.batches(setup.dataset.train, exp.batch_size, seed=exp.seed, epoch=0))
  return models.calibrate(setup.model, params, spec, jnp.asarray(x), batch_stats)


def new_state(
  setup: Setup, exp: experiment.Experiment, params, tx=None, batch_stats=None
) -> steps.TrainState:
  """A fresh TrainState of `params` (and BatchNorm `batch_stats`) with `exp`'s optimizer
  (or `tx`)."""
  tx = setup.optimizer(exp) if tx is None else tx
  return steps.TrainState.create(
    apply_fn=setup.model.apply, params=params, tx=tx, batch_stats=batch_stats or {}
  )


def initial_state(setup: Setup, exp: experiment.Experiment, params=None) -> steps.TrainState:
  """`exp`'s TrainState at step 0 from its seed's initial variables (the params replaced
  by `params` when given)."""
  init = init_variables(setup, exp.seed)
  params = init["params"] if params is None else params
  return new_state(setup, exp, params, batch_stats=init.get(models.BATCH_STATS))


def cost_report(
  setup: Setup, params, spec: quant.QuantSpec | None, batch_stats=None
) -> cost.CostReport:
  """Cost of `params` (and BatchNorm `batch_stats`) under `spec`, from the deployed tensors."""
  records = models.deployed_tensors(setup.model, params, spec, setup.example, batch_stats)
  ds = setup.dataset
  reference = dict(cost.REFERENCE, d_input=ds.d_input, n_classes=ds.n_classes)
  return cost.deployed_report(
    records,
    params=cost.count_params(params, exclude=models.is_quantizer_param),
    seq_len=ds.seq_len,
    reference=reference,
  )


# ---------------------------------------------------------------------------------------
# A population and its programs.
# ---------------------------------------------------------------------------------------


_SINGLE_STEP = jax.jit(steps.train_step, donate_argnums=0)


@functools.lru_cache(maxsize=8)
def _stacked_step(layout: population_lib.Layout):
  def member_step(state, x, y, key, spec, analog):
    return steps.train_step(state, x, y, key, spec, analog)

  return jax.jit(layout.map(member_step, (True,) * 6), donate_argnums=0)


@functools.lru_cache(maxsize=8)
def _stacked_evals(layout: population_lib.Layout, apply_fn):
  """(eval, chip eval) programs of a stacked population: one compile per layout, model and
  shape, shared by every population (chunk) of them."""

  def member_eval(params, batch_stats, spec, x, y, mask):
    return steps.eval_step(apply_fn, spec, params, x, y, mask, batch_stats)

  def member_counts(params, spec, analog, x, y, mask, kp, kr, index, batch_stats):
    return noise_eval.correct_counts(
      apply_fn, spec, params, x, y, mask, analog, kp, kr, index, batch_stats
    )

  evaluate = jax.jit(layout.map(member_eval, (True,) * 3 + (False,) * 3))
  return evaluate, jax.jit(layout.map(member_counts, (True,) * 3 + (False,) * 6 + (True,)))


def _stack_or_none(layout, trees: list):
  return None if trees[0] is None else layout.stack(trees)


class Population:
  """P >= 1 runs of one structure (`members`, Experiments that differ only in traced
  numbers: bit widths, noise scales, learning rate, seed) held as `layout` says.

  Attributes:
    setup, members, layout: as given.
    state: the TrainState (stacked for a stacked layout).
    masks: pruning masks passed to every step (single layout only), or None.
  """

  @classmethod
  def start(
    cls,
    setup: Setup,
    members: list,
    layout: population_lib.Layout,
    params: list,
    batch_stats: list | None = None,
  ):
    """A population starting from `params` (one tree per member) and, for a model with
    BatchNorm, `batch_stats` (one tree per member) at step 0."""
    tx, rates = cls.optimizer(setup, members, layout.stacked)
    batch_stats = [None] * len(members) if batch_stats is None else batch_stats
    states = [
      new_state(setup, m, p, tx, s) for m, p, s in zip(members, params, batch_stats, strict=True)
    ]
    if rates is not None:
      states = [
        s.replace(opt_state=optax.tree_utils.tree_set(s.opt_state, learning_rate=jnp.float32(r)))
        for s, r in zip(states, rates, strict=True)
      ]
    return cls(setup, members, layout, states)

  def __init__(self, setup: Setup, members: list, layout: population_lib.Layout, states: list):
    if not layout.stacked and len(members) != 1:
      raise ValueError("The single layout holds exactly one member.")
    self.setup, self.members, self.layout = setup, members, layout
    self.size = len(members)
    self.state = layout.stack(states)
    self.specs = _stack_or_none(layout, [m.quant.spec for m in members])
    self.analogs = _stack_or_none(layout, [m.hardware.spec for m in members])
    keys = [jax.random.fold_in(jax.random.PRNGKey(m.seed), 1) for m in members]
    self.keys = layout.stack(keys) if layout.stacked else keys[0]
    self.masks = None
    apply_fn = setup.model.apply
    if layout.stacked:
      step = _stacked_step(layout)
      self._step = lambda state, x, y, key, spec, analog, masks: step(
        state, x, y, key, spec, analog
      )

      self._eval, self.chip_eval_fn = _stacked_evals(layout, apply_fn)
    else:
      self._step = _SINGLE_STEP
      self._single_evals(apply_fn)

  def _single_evals(self, apply_fn) -> None:
    """The single run's evaluation programs of `apply_fn`. The quantization spec is baked
    into them (as --mode=train always compiled them); the train step takes it as an
    argument."""
    spec = self.members[0].quant.spec
    self._eval = jax.jit(functools.partial(steps.eval_step, apply_fn, spec))
    self.chip_eval_fn = noise_eval.make_eval_fn(apply_fn, spec)

  def use_model(self, model) -> None:
    """Trains and evaluates with `model` from now on, a model of the same variables as
    `setup.model` (a channel-pruned run's masked classifier, `pruning.masked_model`): the
    setup, the state's apply_fn and the evaluation programs change. Single layout only."""
    if self.layout.stacked:
      raise ValueError("Only a single run can change its model.")
    self.setup = dataclasses.replace(self.setup, model=model)
    self.state = self.state.replace(apply_fn=model.apply)
    self._single_evals(model.apply)

  @staticmethod
  def optimizer(setup: Setup, members: list, stacked: bool):
    """The members' shared optimizer and each member's learning rate to set (None: baked).

    Members with one optimizer config share its transformation (the learning rate
    baked in, as a single run has it); a stacked population whose members differ only in
    learning rate gets `optim.injected_optimizer` and each member's rate in its state."""
    configs = {m.optimizer for m in members}
    if len(configs) == 1:
      return setup.optimizer(members[0]), None
    rates = {dataclasses.replace(c, learning_rate=1.0) for c in configs}
    if not stacked or len(rates) != 1:
      raise errors.ConfigError("Members trained together must share their optimizer settings.")
    tx = optim.injected_optimizer(rates.pop(), setup.steps_per_epoch, setup.total_steps)
    return tx, [m.optimizer.learning_rate for m in members]

  def batches(self, epoch: int, start_batch: int = 0):
    """The epoch's batches (x, y), each member in its own seed's order."""
    train, bs = self.setup.dataset.train, self.members[0].batch_size
    if not self.layout.stacked:
      return data.batches(
        train, bs, seed=self.members[0].seed, epoch=epoch, start_batch=start_batch
      )
    seeds = [m.seed for m in self.members]
    orders = {
      s: data.batches(train, bs, seed=s, epoch=epoch, start_batch=start_batch)
      for s in dict.fromkeys(seeds)
    }

    def stacked():
      for _ in range(self.setup.steps_per_epoch - start_batch):
        batch = {s: next(it) for s, it in orders.items()}
        yield tuple(self.layout.stack([batch[s][k] for s in seeds]) for k in (0, 1))

    return stacked()

  def analog_at(self, step: int):
    """The analog spec of training step `step`: None unless noise-aware, ramped in linearly."""
    hw = self.members[0].hardware
    if not hw.train:
      return None
    ramp_steps = hw.ramp_epochs * self.setup.steps_per_epoch
    factor = 1.0 if ramp_steps <= 0 else min(1.0, (step + 1) / ramp_steps)
    return self.analogs.scaled(jnp.asarray(factor, jnp.float32))

  def step(self, x, y, step: int):
    """One training step of every member; returns the metrics (on the device)."""
    self.state, metrics = self._step(
      self.state, x, y, self.keys, self.specs, self.analog_at(step), self.masks
    )
    return metrics

  def evaluate(self, params, split: data.Split, batch_stats=None) -> dict:
    """{"loss", "accuracy"}: (P,) float64 over a whole split, of `params` and, for a model
    with BatchNorm, its running statistics `batch_stats`. Every split of the dataset goes
    through one padded batch shape (eval_batch_size, or the largest of the validation and
    test splits if that is smaller), so validation and test share one compiled program."""
    dataset = self.setup.dataset
    bs = min(self.members[0].eval_batch_size, max(len(dataset.val), len(dataset.test)))
    batch_stats = batch_stats or {}
    totals = None
    for x, y, mask in data.padded_batches(split, bs, shrink=False):
      args = (
        (params, x, y, mask, batch_stats)
        if not self.layout.stacked
        else (params, batch_stats, self.specs, *self.layout.shared((x, y, mask)))
      )
      out = {k: np.asarray(v, np.float64) for k, v in self.layout.fetch(self._eval(*args)).items()}
      totals = out if totals is None else {k: totals[k] + out[k] for k in out}
    count = np.maximum(totals["count"], 1.0)
    return {"loss": totals["loss_sum"] / count, "accuracy": totals["correct"] / count}

  def chip_accuracies(
    self, params, split: data.Split, analogs, progress: str | None = None, batch_stats=None
  ):
    """(P, chips) accuracies on the simulated chips of `hardware` (eval_seeds, eval_seed,
    seeds_per_call): chip s is the same for every member; `analogs` the members' specs,
    `batch_stats` their BatchNorm running statistics (None: none)."""
    hw, stacked = self.members[0].hardware, self.layout.stacked
    batch_stats = batch_stats or {}
    eval_fn = functools.partial(self.chip_eval_fn, batch_stats=batch_stats)
    fetch = np.asarray
    if stacked:
      shared, fetch = self.layout.shared, self.layout.fetch

      def eval_fn(p, x, y, mask, analog, kp, kr, index):
        args = shared((x, y, mask, kp, kr, index))
        return self.chip_eval_fn(p, self.specs, analog, *args, batch_stats)

    bs = self.members[0].eval_batch_size
    chips = (hw.eval_seeds, hw.eval_seed, hw.seeds_per_call)
    accuracies = noise_eval.chip_accuracies(
      eval_fn, params, split, bs, analogs, *chips, progress=progress, fetch=fetch
    )
    return accuracies if stacked else accuracies[None]


def single(exp: experiment.Experiment, params=None) -> Population:
  """A single run of `exp` at step 0, from its seed's initial variables (its params
  replaced by `params` when given)."""
  setup = build(exp)
  return Population(setup, [exp], population_lib.Layout(), [initial_state(setup, exp, params)])


# ---------------------------------------------------------------------------------------
# The loop.
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Fit:
  """What the loop leaves. Per-member arrays have a leading population axis P.

  Attributes:
    best: the params with the best validation accuracy (stacked as the layout holds them).
    best_batch_stats: the BatchNorm running statistics of that state ({}: none).
    best_val: (P,) that accuracy; best_step: (P,) its step.
    epoch_losses: (epochs, P) mean training loss of every epoch run.
    losses: (steps, P) training loss of every step run.
    diverged: (P,) a non-finite loss occurred (stacked layouts; a single run raises).
  """

  best: object
  best_batch_stats: object
  best_val: np.ndarray
  best_step: np.ndarray
  epoch_losses: np.ndarray
  losses: np.ndarray
  diverged: np.ndarray


@dataclasses.dataclass
class _Guard:
  """The non-finite guard: a single run stops with NonFiniteLossError, a member of a
  population is marked diverged and the others go on."""

  size: int
  raises: bool
  checkpoints: object  # Its where() says what is left on disk; None: nothing is saved.

  def __post_init__(self):
    self.diverged = np.zeros(self.size, bool)

  def __call__(self, values: np.ndarray, step: int, what: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any() and self.raises:
      where = self.checkpoints.where() if self.checkpoints else "nothing was saved"
      raise errors.NonFiniteLossError(
        f"Non-finite {what} ({values[bad][0]}) at step {step}; training stopped and {where}. "
        "Lower optimizer.learning_rate or tighten optimizer.grad_clip."
      )
    self.diverged |= bad


def _scalar_or_list(values: np.ndarray):
  return float(values[0]) if len(values) == 1 else [float(v) for v in values]


def _log_epoch(label: str, epoch: int, epochs: int, step: int, record: dict) -> None:
  loss, acc = np.atleast_1d(record["train_loss"]), np.atleast_1d(record["val_accuracy"])
  if len(loss) == 1:
    logging.info(
      "%sepoch %d/%d step %d: train loss %.4f acc %.4f | val loss %.4f acc %.4f",
      label,
      epoch,
      epochs,
      step,
      loss[0],
      record["train_accuracy"],
      record["val_loss"],
      acc[0],
    )
  else:
    logging.info(
      "%sepoch %d/%d: train loss %.4f (min %.4f, max %.4f) | val acc mean %.4f, best %.4f",
      label,
      epoch,
      epochs,
      np.nanmean(loss),
      np.nanmin(loss),
      np.nanmax(loss),
      np.mean(acc),
      np.max(acc),
    )


def _train_epoch(
  pop: Population,
  epoch: int,
  step: int,
  guard: _Guard,
  writer,
  label: str,
  carry: tuple | None = None,
  on_step=None,
):
  """One epoch of training steps from `step`; returns (step, mean loss (P,), mean accuracy
  (P,), every step's loss (steps, P)). Logs and guards every `log_every_steps`.

  `carry`: (loss sum, accuracy sum, [loss of each step]) of the epoch's steps before
  `step` (an epoch resumed in its middle), as the layout holds them; `on_step(step, state,
  carry)` is called after every step with the carry so far."""
  exp, layout, spe = pop.members[0], pop.layout, pop.setup.steps_per_epoch
  start_batch = step - epoch * spe
  desc = f"{label}epoch {epoch + 1}/{exp.num_epochs}"
  bar = progress.bar(spe, desc, initial=start_batch, enabled=exp.progress_bar, unit="steps")
  loss_sum, acc_sum, losses = carry or (jnp.zeros(()), jnp.zeros(()), [])
  losses = list(losses)
  for x, y in pop.batches(epoch, start_batch):
    metrics = pop.step(x, y, step)
    step += 1
    bar.update()
    losses.append(metrics["loss"])
    loss_sum, acc_sum = loss_sum + metrics["loss"], acc_sum + metrics["accuracy"]
    if on_step is not None:
      on_step(step, pop.state, (loss_sum, acc_sum, losses))
    if step % exp.log_every_steps == 0:
      loss, acc = layout.fetch((metrics["loss"], metrics["accuracy"]))
      guard(loss, step, "training loss")
      if writer is not None:
        record = {"train_loss": _scalar_or_list(loss), "train_accuracy": _scalar_or_list(acc)}
        writer.write(step, **_run(label), **record)
      bar.set_postfix(loss=f"{np.nanmean(loss):.3f}", acc=f"{np.mean(acc):.3f}")
  bar.close()
  n = max(len(losses), 1)
  loss_sum, acc_sum = layout.fetch((loss_sum, acc_sum))
  history = np.stack(layout.fetch(losses), axis=0) if losses else np.zeros((0, pop.size))
  return step, np.asarray(loss_sum, np.float64) / n, np.asarray(acc_sum, np.float64) / n, history


def fit(
  pop: Population,
  *,
  writer=None,
  checkpoints=None,
  pruning=None,
  best: tuple | None = None,
  label: str = "",
  start_time: float | None = None,
  on_epoch=None,
  on_step=None,
  carry: tuple | None = None,
) -> Fit:
  """Trains `pop` from its state's step to the members' num_epochs (see the module doc).

  Args:
    writer: a `workdir.MetricsWriter` for metrics.jsonl (None: none written).
    checkpoints: saves the last and best states (a single run's workdir: train.py's,
      with after_epoch(epoch, state), new_best(state, val_accuracy) and where(), the text
      of the non-finite error).
    pruning: masks at every epoch start, start_epoch(state, epoch) -> (state, masks), and
      fully_pruned(step): whether a step may become the best (train.py's).
    best: ((params, batch_stats), val accuracy (P,), step (P,)) already reached (a resumed
      run), or None.
    label: prefix of log lines and records ("" for a single run).
    start_time: for the records' wall_time_s (default: now).
    on_epoch: called at the end of every epoch as on_epoch(epoch, state, fit), `fit` the
      `Fit` of the epochs run so far (a sweep's checkpoints of its populations).
    on_step: called after every training step as on_step(step, state, so_far, carry):
      so_far() makes the `Fit` of the epochs run so far, `carry` is the epoch so far
      (`_train_epoch`).
    carry: the epoch so far of a state saved in the middle of an epoch (`_train_epoch`).
  """
  exp, spe = pop.members[0], pop.setup.steps_per_epoch
  start_time = time.time() if start_time is None else start_time
  step = int(np.asarray(pop.layout.fetch(pop.state.step))[0])
  guard = _Guard(pop.size, raises=not pop.layout.stacked, checkpoints=checkpoints)
  # The best state as (params, batch_stats): its running statistics go with its params.
  variables, best_val, best_step = best or (None, np.full(pop.size, -np.inf), np.full(pop.size, -1))
  histories, epoch_losses = [np.zeros((0, pop.size))], [np.zeros((0, pop.size))]
  step_hook = None
  if on_step is not None:

    def step_hook(at, state, epoch_carry):
      so_far = lambda: _fit_of(variables, best_val, best_step, epoch_losses, histories, guard)
      on_step(at, state, so_far, epoch_carry)

  for epoch in range(step // spe, exp.num_epochs):
    if pruning is not None:
      pop.state, pop.masks = pruning.start_epoch(pop.state, epoch)
    step, train_loss, train_acc, history = _train_epoch(
      pop, epoch, step, guard, writer, label, carry, step_hook
    )
    carry = None
    guard(train_loss, step, "mean training loss of the epoch")
    val = pop.evaluate(pop.state.params, pop.setup.dataset.val, pop.state.batch_stats)
    guard(val["loss"], step, "validation loss")
    record = {
      "epoch": epoch + 1,
      "train_loss": _scalar_or_list(train_loss),
      "train_accuracy": _scalar_or_list(train_acc),
      "val_loss": _scalar_or_list(val["loss"]),
      "val_accuracy": _scalar_or_list(val["accuracy"]),
      "wall_time_s": time.time() - start_time,
    }
    if writer is not None:
      writer.write(step, **_run(label), **record)
    _log_epoch(label, epoch + 1, exp.num_epochs, step, record)
    histories.append(history)
    epoch_losses.append(train_loss[None])
    # While a gradual schedule is still pruning, a less-pruned state must not become "best".
    improved = val["accuracy"] > best_val
    if (pruning is None or pruning.fully_pruned(step)) and improved.any():
      variables = pop.layout.select(improved, variables, (pop.state.params, pop.state.batch_stats))
      best_val = np.where(improved, val["accuracy"], best_val)
      best_step = np.where(improved, step, best_step)
      if checkpoints is not None:
        checkpoints.new_best(pop.state, float(val["accuracy"][0]))
    # The last state is saved after the best one: a crash between the two resumes from the
    # previous last state and redoes this epoch exactly, so no best state is ever lost.
    if checkpoints is not None:
      checkpoints.after_epoch(epoch, pop.state)
    if on_epoch is not None:
      on_epoch(
        epoch, pop.state, _fit_of(variables, best_val, best_step, epoch_losses, histories, guard)
      )
  return _fit_of(variables, best_val, best_step, epoch_losses, histories, guard)


def _fit_of(variables, best_val, best_step, epoch_losses, histories, guard) -> Fit:
  params, batch_stats = variables or (None, None)
  return Fit(
    params,
    batch_stats,
    best_val,
    best_step,
    np.concatenate(epoch_losses),
    np.concatenate(histories),
    guard.diverged.copy(),
  )


def _run(label: str) -> dict:
  return {"run": label.strip(": ")} if label else {}


def best_or_raise(result: Fit) -> None:
  if result.best is None:
    raise errors.CheckpointError("Training ended with no best state (no epoch was evaluated).")
