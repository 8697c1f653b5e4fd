"""--mode=train and --mode=evaluate: one run in its workdir.

`train_and_evaluate(config, workdir)` reads the config once (`experiment.from_config`) and

  resumes (the workdir's latest checkpoint, else `init_checkpoint`'s best params, else
    scratch; a workdir of another config is refused, `workdir.check_resume`), calibrates
    quantizer ranges of a fresh quantized or analog run,
  -> trains with the runner's loop (a population of one): metrics.jsonl, checkpoints (the
    last k, and the best by validation accuracy), pruning masks when `prune.enabled`,
  -> evaluates the best state on the test split (and on simulated chips when
    `hardware.enabled`), exports a quantized model and the smaller pruned one, and writes
    results.json and training_curves.png (and .pdf) from metrics.jsonl.

`train(config, workdir)` is the same and also returns what the run leaves in memory
(`Trained`: best params, history, results, cost report); with workdir None it writes
nothing at all (ssm_aimc.fit, the Python API).

Each mode holds the workdir for its run (`workdir.lock`): a second launch into it fails at
once.

Determinism: the batch order of epoch e depends only on (seed, e) and dropout keys are
fold_in(key, step), so a run stopped after a checkpoint and resumed ends with exactly the
parameters of an uninterrupted run.

`evaluate(config, workdir)` re-evaluates the best checkpoint under any quantization (PTQ of
a float checkpoint) and any device, writing results_evaluate.json; the model and data must
be the run's own (`workdir.check_inference`); `inference_of` and `evaluate_inference` do
the same for a model trained in memory, writing nothing.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from ssm_aimc import (
  cost,
  errors,
  experiment,
  export,
  figures,
  noise_eval,
  progress,
  prune,
  pruning,
  quant,
  runner,
)
from ssm_aimc import population as population_lib
from ssm_aimc import workdir as workdir_lib

EXPORT_DIR = "export"
NOISE_PLOT = "accuracy_vs_noise.png"
PRUNED_DIR = "pruned"
PRUNE_START = "prune_start.json"


def as_experiment(config) -> experiment.Experiment:
  """An Experiment as is, or one read from a ConfigDict / dict."""
  return config if isinstance(config, experiment.Experiment) else experiment.from_config(config)


def quant_summary(spec: quant.QuantSpec | None) -> dict:
  """{group: bits or "off"} for results.json; {} when spec is None."""
  if spec is None:
    return {}
  out = {g: quant.describe_bits(getattr(spec, g).bits) for g in quant.GROUPS}
  return {**out, "mode": spec.encoder.mode.value, "a_bar_param": spec.a_bar_param}


def export_params(
  setup: runner.Setup, exp: experiment.Experiment, params, directory: str, batch_stats=None
):
  """Writes the integer export (codes + steps + manifest) of `params` (and BatchNorm
  `batch_stats`) to `directory`."""
  return export.export_model(
    setup.model,
    params,
    exp.quant.spec,
    setup.example,
    directory,
    export_arch(setup, exp),
    batch_stats,
  )


def export_arch(setup: runner.Setup, exp: experiment.Experiment) -> dict:
  """The architecture an export's manifest records (what `export.forward` rebuilds)."""
  return {
    **dataclasses.asdict(exp.model),
    "n_classes": setup.dataset.n_classes,
    "model_name": exp.model_name,
    "task": setup.dataset.name,
  }


def analog_results(
  pop: runner.Population, params, workdir: str | None = None, batch_stats=None
) -> dict:
  """Test accuracy on `hardware.eval_seeds` simulated chips, and at every scale of
  `hardware.prog_noise_scales` (with accuracy_vs_noise.png in workdir); {} without hardware.
  """
  exp = pop.members[0]
  spec = exp.hardware.spec
  if spec is None:
    return {}
  test, hw = pop.setup.dataset.test, exp.hardware
  # One progress display for the stage: the chips at the device's noise, then at each scale.
  calls = noise_eval.n_calls(len(test), exp.eval_batch_size, hw.eval_seeds, hw.seeds_per_call)
  evaluations = 1 + len(hw.prog_noise_scales)
  bar = progress.bar(
    calls * evaluations, f"{spec.device.name} chips", unit="calls", enabled=exp.progress_bar
  )

  def at(analog):
    accuracies = pop.chip_accuracies(params, test, analog, progress=bar, batch_stats=batch_stats)
    return noise_eval.summary(accuracies[0])

  with bar:
    return _analog_results(pop, spec, at, workdir)


def _analog_results(pop: runner.Population, spec, at, workdir: str | None) -> dict:
  """analog_results' evaluations, `at(spec)` a results dict of the chips at `spec`."""
  exp = pop.members[0]
  out = {"hardware": spec.summary(), **at(spec)}
  logging.info(
    "Analog (%s): test accuracy %.4f +- %.4f over %d chips.",
    spec.device.name,
    out["analog_accuracy_mean"],
    out["analog_accuracy_std"],
    out["noise_seeds"],
  )
  if exp.hardware.prog_noise_scales:
    out["noise_sweep"] = noise_eval.at_prog_noise_scales(at, spec, exp.hardware.prog_noise_scales)
    if workdir is not None:
      label = f"{'quantized' if exp.quant.enabled else 'float'} model"
      out["noise_plot"] = noise_eval.plot_noise_sweep(
        {label: out["noise_sweep"]},
        os.path.join(workdir, NOISE_PLOT),
        title=f"{pop.setup.dataset.name}, {spec.device.name}",
      )
  return out


# ---------------------------------------------------------------------------------------
# What a single run adds to the loop: checkpoints and pruning.
# ---------------------------------------------------------------------------------------


class _Checkpoints:
  """The workdir's last `keep_checkpoints` states and its best state (runner.Checkpoints)."""

  def __init__(self, workdir: str, exp: experiment.Experiment):
    join = os.path.join
    self.workdir, self.exp = workdir, exp
    self.directory = join(workdir, workdir_lib.CHECKPOINT_DIR)
    for path in workdir_lib.remove_partial_checkpoints(workdir):
      logging.warning("Removed %s: a checkpoint left half-written by a crash.", path)
    self.last = workdir_lib.checkpoint_manager(self.directory, exp.keep_checkpoints)
    self.best = workdir_lib.checkpoint_manager(join(workdir, workdir_lib.BEST_DIR), 1, best=True)
    self.last_good = self.latest = self.last.latest_step()

  def resume(self, state):
    """The latest readable checkpoint restored into `state`. An unreadable one (corrupt or
    truncated files) is moved to workdir/unreadable/ with a warning and the one before it
    is tried; CheckpointError when none can be read (never a silent fresh start)."""
    while self.latest is not None:
      try:
        return workdir_lib.restore_state(self.last, self.latest, state)
      except errors.CheckpointError as e:
        moved = workdir_lib.move_aside(self.workdir, os.path.join(self.directory, str(self.latest)))
        logging.warning("%s; moved it to %s, resuming from the checkpoint before.", e, moved)
        self.last = workdir_lib.checkpoint_manager(self.directory, self.exp.keep_checkpoints)
        self.last_good = self.latest = self.last.latest_step()
    raise errors.CheckpointError(
      f"No readable checkpoint is left in {self.directory} (the unreadable ones are in "
      f"{os.path.join(self.workdir, workdir_lib.UNREADABLE_DIR)}); remove the workdir to "
      "train from scratch."
    )

  def best_so_far(self, state) -> tuple | None:
    """((params, batch_stats), val accuracy (1,), step (1,)) of a resumed run's best state,
    or None."""
    step, val = self.best.latest_step(), workdir_lib.best_val_accuracy(self.best)
    if step is None or val is None:
      return None
    best = workdir_lib.restore_state(self.best, step, state)
    return (best.params, best.batch_stats), np.array([val]), np.array([step])

  def after_epoch(self, epoch: int, state) -> None:
    if (epoch + 1) % self.exp.checkpoint_every_epochs == 0 or epoch + 1 == self.exp.num_epochs:
      workdir_lib.save(self.last, state)
      self.last_good = int(state.step)

  def new_best(self, state, val_accuracy: float) -> None:
    workdir_lib.save(self.best, state, metrics={"val_accuracy": val_accuracy})

  def where(self) -> str:
    if self.last_good is None:
      return "no checkpoint had been written yet"
    return f"the last good checkpoint (step {self.last_good}) in {self.directory} is left intact"


class _Pruning:
  """Masks of `prune` for the run's state (runner.Pruning): at the start, and at every
  epoch start of a gradual schedule. Modes pruned earlier have zero b and c, hence score
  0, so they stay pruned when masks are recomputed (gradual schedule, or after a resume);
  so do channels, whose entries are all zero.

  With `prune.unit` "channel" the run trains and evaluates the channel-masked model
  (`pruning.masked_model`, the population's model from the first mask on; a new mask is
  a new model, compiled anew); `model` is the unmasked one, which scores, and `keep` the
  (H,) bool channel mask in use (None for modes)."""

  def __init__(self, pop: runner.Population, first_epoch: int, fresh: bool = True):
    self.pop, self.cfg, self.first_epoch = pop, pop.members[0].prune, first_epoch
    self.model, self.keep, self.modes, self.greedy = pop.setup.model, None, None, None
    self.fresh = fresh
    pop.state, pop.masks, self.ratio = self.masks_for(pop.state)

  def greedy_modes(self, state) -> dict:
    """The greedy pass's mode masks: run on a fresh start (judged on the validation
    split), read back from the zeros of the params on a resume (`prune.nonzero_modes`)."""
    if self.modes is None:
      setup, exp = self.pop.setup, self.pop.members[0]
      if self.fresh:
        self.modes, self.greedy = pruning.greedy_masks(
          self.cfg,
          self.model,
          state.params,
          exp.quant.spec,
          setup.dataset.val,
          exp.eval_batch_size,
          setup.example,
          state.batch_stats,
        )
        logging.info(
          "Greedy pruning (%s): validation accuracy %.4f -> %.4f, %d evaluations, %.1f s.",
          self.cfg.greedy_kind,
          self.greedy["val_accuracy_before"],
          self.greedy["val_accuracy_after"],
          self.greedy["evaluations"],
          self.greedy["seconds"],
        )
      else:
        self.modes = prune.nonzero_modes(state.params)
    return self.modes

  def masks_for(self, state):
    setup, exp = self.pop.setup, self.pop.members[0]
    ratio = self.cfg.ratio_at(int(state.step), setup.total_steps)
    args = (self.cfg, self.model, state.params, exp.quant.spec, setup.example, ratio)
    if self.cfg.unit == "channel":
      self.keep, masks = pruning.channel_masks_at(*args, state.batch_stats)
      params = prune.apply_channel_masks(state.params, masks)
      self.pop.use_model(pruning.masked_model(self.model, self.keep))
      state = state.replace(apply_fn=self.pop.setup.model.apply)
      kept = f"{int(self.keep.sum())} of {self.keep.size} channels kept"
    else:
      if self.cfg.method == "greedy":
        modes = self.greedy_modes(state)
        masks, ratio = prune.model_masks(state.params, modes), prune.pruned_fraction(modes)
      else:
        modes, masks = pruning.masks_at(*args, state.batch_stats)
      params = prune.apply_masks(state.params, masks)
      kept = f"{pruning.kept_modes(modes)} modes kept"
    logging.info("Pruning at step %d: ratio %.3f, %s.", int(state.step), ratio, kept)
    params = prune.fill_pruned_modes(params, masks)
    return state.replace(params=params), masks, ratio

  def start_epoch(self, state, epoch: int):
    if self.cfg.schedule == "gradual" and epoch > self.first_epoch:
      state, masks, _ = self.masks_for(state)
      return state, masks
    return state, self.pop.masks

  def fully_pruned(self, step: int) -> bool:
    return self.cfg.ratio_at(step, self.pop.setup.total_steps) >= self.cfg.ratio


def pruned_experiment(
  exp: experiment.Experiment, d_state: int, d_model: int | None = None
) -> experiment.Experiment:
  """The experiment of the physically smaller model a pruning run exports (workdir/pruned):
  `d_state` (modes pruned) and `d_model` (channels pruned; None: exp's)."""
  d_model = exp.model.d_model if d_model is None else d_model
  return dataclasses.replace(
    exp,
    model=dataclasses.replace(exp.model, d_state=d_state, d_model=d_model),
    prune=dataclasses.replace(exp.prune, enabled=False),
    hardware=dataclasses.replace(exp.hardware, train=False),
    init_checkpoint="",
  )


def _start_pruning(pop: runner.Population, workdir: str | None, fresh: bool) -> _Pruning:
  """The pruning hook; on a fresh run also its `start` (accuracy before and right after
  pruning, memory before), written to prune_start.json in `workdir` (kept across resumes,
  which read it back); None: kept in memory only."""
  setup, exp, stats = pop.setup, pop.members[0], pop.state.batch_stats
  if fresh:
    unpruned = pop.evaluate(pop.state.params, setup.dataset.test, stats)["accuracy"][0]
    unpruned_bits = runner.cost_report(setup, pop.state.params, exp.quant.spec, stats).memory_bits
  hook = _Pruning(pop, first_epoch=int(pop.state.step) // setup.steps_per_epoch, fresh=fresh)
  if fresh:
    hook.start = {
      "ratio": hook.ratio,
      **({"greedy": hook.greedy} if hook.greedy else {}),
      "test_accuracy_unpruned": float(unpruned),
      "test_accuracy_before_finetune": float(
        pop.evaluate(pop.state.params, setup.dataset.test, stats)["accuracy"][0]
      ),
      "unpruned_memory_bits": unpruned_bits,
    }
    if workdir is not None:
      workdir_lib.write_json(os.path.join(workdir, PRUNE_START), hook.start)
  else:
    hook.start = workdir_lib.read_json(os.path.join(workdir, PRUNE_START))
  return hook


def _compact(pop: runner.Population, hook: _Pruning, params, batch_stats) -> tuple:
  """(smaller params, their batch_stats, smaller experiment, results["prune"] keys) of the
  masked `params`: the kept modes at the final ratio (a smaller d_state; every channel
  kept, so BatchNorm's running statistics go over as they are) or the channels of the
  hook's mask, the model's (a smaller d_model, the statistics gathered too)."""
  setup, exp = pop.setup, pop.members[0]
  cfg = exp.prune
  args = (cfg, hook.model, params, exp.quant.spec, setup.example, cfg.ratio, batch_stats)
  if cfg.unit == "channel":
    keep = hook.keep
    tree, batch_stats, d_model = pruning.compact_channels(params, batch_stats, keep)
    small_exp = pruned_experiment(exp, exp.model.d_state, d_model)
    keys = {"pruned_fraction": 1.0 - d_model / keep.size, "kept_channels": d_model}
  else:
    modes = hook.modes if cfg.method == "greedy" else pruning.masks_at(*args)[0]
    tree, d_state = pruning.compact(params, modes)
    small_exp = pruned_experiment(exp, d_state)
    keys = {
      "pruned_fraction": prune.pruned_fraction(modes),
      "kept_modes": pruning.kept_modes(modes),
    }
  for name in ("d_state", "d_model"):
    keys[f"{name}_before"] = getattr(exp.model, name)
    keys[f"{name}_after"] = getattr(small_exp.model, name)
  return tree, batch_stats, small_exp, keys


def _export_pruned(pop: runner.Population, params, batch_stats, workdir, hook: _Pruning) -> dict:
  """Writes the physically smaller model to workdir/pruned (a workdir of its own: config.json
  with the new d_state or d_model and a best/ checkpoint; nothing with `workdir` None) and
  returns its results keys; `hook` the run's pruning hook."""
  exp, start = pop.members[0], hook.start
  tree, batch_stats, small_exp, keys = _compact(pop, hook, params, batch_stats)
  small = runner.build(small_exp)
  small_params = jax.tree_util.tree_map(jnp.asarray, tree)
  state = runner.initial_state(small, small_exp)
  directory = None
  if workdir is not None:
    directory = os.path.join(workdir, PRUNED_DIR)
    os.makedirs(directory, exist_ok=True)
    manager = workdir_lib.checkpoint_manager(os.path.join(directory, workdir_lib.BEST_DIR), 1)
    workdir_lib.save(manager, state.replace(params=small_params, batch_stats=batch_stats))
    workdir_lib.write_config(directory, small_exp)
    if small_exp.quant.spec is not None:
      export_dir = os.path.join(directory, EXPORT_DIR)
      export_params(small, small_exp, small_params, export_dir, batch_stats)
  small_pop = runner.Population(small, [small_exp], population_lib.Layout(), [state])
  test = small_pop.evaluate(small_params, small.dataset.test, batch_stats)
  return {
    "prune": {
      **dataclasses.asdict(exp.prune),
      **keys,
      **({"greedy": start["greedy"]} if "greedy" in start else {}),
    },
    "pruned_dir": directory,
    "test_accuracy_unpruned": start["test_accuracy_unpruned"],
    "test_accuracy_before_finetune": start["test_accuracy_before_finetune"],
    "unpruned_memory_bits": start.get("unpruned_memory_bits"),
    "pruned_model_test_accuracy": float(test["accuracy"][0]),
    "report": runner.cost_report(small, small_params, small_exp.quant.spec, batch_stats),
    "pruned_params": small_params,
  }


# ---------------------------------------------------------------------------------------
# The modes.
# ---------------------------------------------------------------------------------------


def _start_state(setup: runner.Setup, exp: experiment.Experiment, ckpts: _Checkpoints | None):
  """The run's first state: resumed (`ckpts`, None: no workdir), else from
  `init_checkpoint`, else scratch (then calibrated when quantized or analog)."""
  state = runner.initial_state(setup, exp)
  if ckpts is not None and ckpts.latest is not None:
    state = ckpts.resume(state)
    logging.info("Resumed from %s at step %d.", ckpts.directory, ckpts.latest)
    return state
  if exp.init_checkpoint:
    loaded, step = workdir_lib.load_state(exp.init_checkpoint, state)
    state = state.replace(params=loaded.params, batch_stats=loaded.batch_stats)
    logging.info("Initialised params from %s (step %d).", exp.init_checkpoint, step)
  if exp.quant.enabled or exp.hardware.enabled:
    state = state.replace(params=runner.calibrate(setup, exp, state.params, state.batch_stats))
    logging.info(
      "Quantization %s; activation ranges calibrated.", quant_summary(exp.quant.spec) or "off"
    )
  return state


@dataclasses.dataclass(frozen=True)
class Trained:
  """What a training run leaves in memory (`train`).

  Attributes:
    exp: the experiment trained.
    results: results.json's dict.
    params, batch_stats: the best state by validation accuracy ({} batch_stats: a model
      without BatchNorm); with pruning, the masked params of the model as trained.
    pruned_params: with pruning, the physically smaller model's params (else None).
    history: the records of metrics.jsonl (a resumed run's earlier ones included).
    report: the cost report (of the exported, smaller model with pruning).
  """

  exp: experiment.Experiment
  results: dict
  params: object
  batch_stats: object
  pruned_params: object
  history: tuple
  report: cost.CostReport


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if it holds checkpoints); returns results.json."""
  return train(config, workdir).results


def train(config, workdir: str | None) -> Trained:
  """`train_and_evaluate`, keeping what the run leaves in memory. With `workdir` None it
  writes nothing anywhere: no checkpoints (so no resume), no metrics.jsonl (the records are
  in `history`), no exports or plots (a ConfigError with `log_tensorboard`); the numbers are
  those of a run in a workdir."""
  start_time = time.time()
  exp = as_experiment(config)
  workdir_lib.check_tensorboard(exp.log_tensorboard, workdir)
  if workdir is None:
    return _train_and_evaluate(exp, None, start_time)
  with workdir_lib.lock(workdir):
    workdir_lib.check_resume(workdir, exp)  # Before anything is written or deleted.
    return _train_and_evaluate(exp, workdir, start_time)


def _train_and_evaluate(exp: experiment.Experiment, workdir: str | None, start_time: float):
  progress.show_info_logs()
  _ = exp.hardware.spec  # Reads a measured device table: a bad one fails before any write.
  setup = runner.build(exp)
  ds = setup.dataset
  logging.info(
    "Task %s: %d train / %d val / %d test, L=%d, %d classes; %d steps per epoch.",
    ds.name,
    len(ds.train),
    len(ds.val),
    len(ds.test),
    ds.seq_len,
    ds.n_classes,
    setup.steps_per_epoch,
  )
  ckpts = None if workdir is None else _Checkpoints(workdir, exp)
  state = _start_state(setup, exp, ckpts)
  fresh = ckpts is None or ckpts.latest is None
  resumed_step = 0 if fresh else int(state.step)
  if workdir is not None:
    dropped = workdir_lib.truncate_metrics(workdir, resumed_step)
    if dropped:
      logging.info("metrics.jsonl: dropped %d records after the resumed step.", dropped)
  pop = runner.Population(setup, [exp], population_lib.Layout(), [state])
  hook = _start_pruning(pop, workdir, fresh=fresh) if exp.prune.enabled else None
  if workdir is not None:
    workdir_lib.write_config(workdir, exp)
  writer = workdir_lib.MetricsWriter(
    workdir, exp.log_tensorboard, purge_step=None if fresh else resumed_step + 1
  )
  try:
    fit = runner.fit(
      pop,
      writer=writer,
      checkpoints=ckpts,
      pruning=hook,
      best=None if ckpts is None else ckpts.best_so_far(pop.state),
      start_time=start_time,
    )
  finally:
    writer.close()
  runner.best_or_raise(fit)
  results, report, pruned_params = _final_results(pop, fit, workdir, start_time, hook)
  history = writer.records
  if workdir is not None:
    write_results(workdir, workdir_lib.RESULTS, results)
    history = workdir_lib.read_metrics(workdir)
    title = f"{ds.name}, {exp.model_name}: test accuracy {results['test_accuracy']:.4f}"
    figures.plot_training_curves(history, os.path.join(workdir, figures.CURVES), title)
  return Trained(
    exp, results, fit.best, fit.best_batch_stats, pruned_params, tuple(history), report
  )


def write_results(directory: str, name: str, results: dict) -> None:
  path = os.path.join(directory, name)
  workdir_lib.write_json(path, results)
  logging.info("Test accuracy %.4f; results in %s.", results["test_accuracy"], path)


def _final_results(pop: runner.Population, fit: runner.Fit, workdir, start_time: float, hook):
  """(results, cost report, pruned params or None): test metrics of the best state (by val
  accuracy), exports (none with `workdir` None) and the cost report."""
  setup, exp, params, stats = pop.setup, pop.members[0], fit.best, fit.best_batch_stats
  test = pop.evaluate(params, setup.dataset.test, stats)
  val = pop.evaluate(params, setup.dataset.val, stats)
  report = runner.cost_report(setup, params, exp.quant.spec, stats)
  extra, pruned_params = {}, None
  # A channel-pruned model's export is the smaller one's (workdir/pruned/export): the
  # export's architecture has no channel mask, so a full-size one would not be this model.
  channels = exp.prune.enabled and exp.prune.unit == "channel"
  if exp.quant.spec is not None and workdir is not None and not channels:
    extra["export_dir"] = os.path.join(workdir, EXPORT_DIR)
    export_params(setup, exp, params, extra["export_dir"], stats)
  extra.update(analog_results(pop, params, workdir, stats))
  if exp.prune.enabled:
    pruned = _export_pruned(pop, params, stats, workdir, hook)
    # The cost keys describe the model as exported: the physically smaller one.
    report, pruned_params = pruned.pop("report"), pruned.pop("pruned_params")
    extra.update(pruned)
  results = {
    **extra,
    "task": setup.dataset.name,
    "model": exp.model_name,
    "quant": quant_summary(exp.quant.spec),
    "test_accuracy": float(test["accuracy"][0]),
    "test_loss": float(test["loss"][0]),
    "val_accuracy": float(val["accuracy"][0]),
    "checkpoint_step": int(fit.best_step[0]),
    "final_step": int(pop.state.step),
    "epochs": exp.num_epochs,
    "seed": exp.seed,
    "wall_time_s": time.time() - start_time,
    "platform": jax.default_backend(),
    **report.as_dict(),
  }
  return results, report, pruned_params


@dataclasses.dataclass
class Inference:
  """A trained workdir's best params, ready for an experiment's quantization and device.

  Attributes:
    exp: the experiment it is used under.
    setup, pop: the experiment built, and its single-run population (evaluation programs).
    params: the best params (activation ranges calibrated when the checkpoint never fitted
      them and the experiment quantizes or simulates hardware: post-training quantization).
    batch_stats: their BatchNorm running statistics ({} for a model without BatchNorm).
    step: the checkpoint's step.
    trained_quantized: the checkpoint was trained with quantization.
  """

  exp: experiment.Experiment
  setup: runner.Setup
  pop: runner.Population
  params: object
  batch_stats: object
  step: int
  trained_quantized: bool


def _check_not_channel_masked(workdir: str) -> None:
  """ConfigError for the workdir of a channel-pruned run (`prune.unit` "channel"): its
  checkpoints hold the channel-masked model, which only its run builds (the unmasked model
  would read its zeroed channels into every LayerNorm); the model to evaluate or deploy is
  the smaller one in workdir/pruned."""
  path = os.path.join(workdir, workdir_lib.CONFIG)
  cfg = workdir_lib.read_json(path).get("prune", {}) if os.path.exists(path) else {}
  if cfg.get("enabled") and cfg.get("unit") == "channel":
    raise errors.ConfigError(
      f"{workdir} is a channel-pruned run; evaluate or deploy its smaller model instead: "
      f"--workdir={os.path.join(workdir, PRUNED_DIR)} with that directory's model.d_model "
      "(its config.json; results.json's prune.d_model_after)."
    )


def _check_not_channel_masked_fit(trained: Trained) -> None:
  """`_check_not_channel_masked` for a model trained in memory: its smaller model is
  `trained.pruned_params`, of results["prune"]["d_model_after"] channels."""
  if trained.exp.prune.enabled and trained.exp.prune.unit == "channel":
    raise errors.ConfigError(
      "The fit result is a channel-pruned model, whose params are the channel-masked "
      "model's; evaluate its smaller model (pruned_params, with model.d_model = "
      f"{trained.results['prune']['d_model_after']}) instead."
    )


def _best_params(setup: runner.Setup, exps: list, workdir: str) -> tuple[list, object, int]:
  """The best params of `workdir` for each of `exps` (activation ranges calibrated under
  each one when the checkpoint never fitted them and it quantizes or simulates hardware:
  post-training quantization), their BatchNorm running statistics and the checkpoint's
  step. A channel-pruned run's workdir is refused (`_check_not_channel_masked`)."""
  _check_not_channel_masked(workdir)
  template = runner.initial_state(setup, exps[0])
  state, step = workdir_lib.load_state(workdir, template, which="best")
  fitted = workdir_lib.trained_with(workdir, "quant") or workdir_lib.trained_with(
    workdir, "hardware"
  )
  return _calibrated(setup, exps, state.params, state.batch_stats, fitted), state.batch_stats, step


def _calibrated(setup: runner.Setup, exps: list, params, stats, fitted: bool) -> list:
  """`params` for each of `exps`: activation ranges calibrated under each one that
  quantizes or simulates hardware when the params never fitted them (not `fitted`)."""
  calibrate = lambda e: not fitted and (e.quant.enabled or e.hardware.enabled)
  out = [runner.calibrate(setup, e, params, stats) if calibrate(e) else params for e in exps]
  if any(calibrate(e) for e in exps):
    logging.info("Activation ranges calibrated on one training batch.")
  return out


def _inference(exp, setup, params, stats, step: int, quantized: bool) -> Inference:
  state = runner.new_state(setup, exp, params, batch_stats=stats)
  pop = runner.Population(setup, [exp], population_lib.Layout(), [state])
  return Inference(exp, setup, pop, params, stats, step, quantized)


def load_for_inference(config, workdir: str) -> Inference:
  """The best checkpoint of `workdir` under `config`'s quantization and hardware (a
  ConfigError when the run was trained with another model or data)."""
  exp = as_experiment(config)
  workdir_lib.check_inference(workdir, exp)
  setup = runner.build(exp)
  (params,), stats, step = _best_params(setup, [exp], workdir)
  quantized = workdir_lib.trained_with(workdir, "quant")
  return _inference(exp, setup, params, stats, step, quantized)


def inference_of(config, trained: Trained) -> Inference:
  """A model trained in memory (`train`'s best state) under `config`'s quantization and
  hardware, exactly as `load_for_inference` reads its checkpoint from a workdir (a
  ConfigError when it was trained with another model or data)."""
  exp = as_experiment(config)
  _check_not_channel_masked_fit(trained)
  workdir_lib.check_same_model(experiment.to_dict(trained.exp), exp, "The fit result is a model")
  setup = runner.build(exp)
  fitted = trained.exp.quant.enabled or trained.exp.hardware.enabled
  (params,) = _calibrated(setup, [exp], trained.params, trained.batch_stats, fitted)
  step = trained.results["checkpoint_step"]
  return _inference(exp, setup, params, trained.batch_stats, step, trained.exp.quant.enabled)


def evaluate_many(exps: list, workdir: str, chunk_size: int = 16) -> list[dict]:
  """The best checkpoint of `workdir` evaluated under each of `exps` (experiments of one
  structure that differ in traced numbers, e.g. the bit widths of post-training
  quantization), `chunk_size` at a time in one vmapped program; nothing is written.

  Returns:
    per experiment, in order: test_accuracy, test_loss, val_accuracy and the cost report.
  """
  for exp in exps:
    workdir_lib.check_inference(workdir, exp)
  setup = runner.build(exps[0])
  params, stats, _ = _best_params(setup, exps, workdir)
  out = []
  for start in range(0, len(exps), chunk_size):
    members, trees = exps[start : start + chunk_size], params[start : start + chunk_size]
    layout = population_lib.Layout("vmap")
    pop = runner.Population.start(setup, members, layout, trees, [stats] * len(members))
    test = pop.evaluate(pop.state.params, setup.dataset.test, pop.state.batch_stats)
    val = pop.evaluate(pop.state.params, setup.dataset.val, pop.state.batch_stats)
    for i, (exp, tree) in enumerate(zip(members, trees, strict=True)):
      out.append(
        {
          "test_accuracy": float(test["accuracy"][i]),
          "test_loss": float(test["loss"][i]),
          "val_accuracy": float(val["accuracy"][i]),
          **runner.cost_report(setup, tree, exp.quant.spec, stats).as_dict(),
        }
      )
  return out


def evaluate(config, workdir: str) -> dict:
  """Evaluates the best checkpoint in `workdir` on the test split; writes results_evaluate.json.

  With `quant.enabled` and a checkpoint trained in float, this is post-training
  quantization (PTQ). With `hardware.enabled` the checkpoint is also evaluated on
  simulated chips of any device preset, whatever it was trained with. Training's
  results.json is left untouched.
  """
  start_time = time.time()
  exp = as_experiment(config)
  with workdir_lib.lock(workdir, create=False):
    return evaluate_inference(load_for_inference(exp, workdir), workdir, start_time)


def evaluate_inference(run: Inference, workdir: str | None, start_time: float) -> dict:
  """results_evaluate.json's dict of `run`, written into `workdir` (with the noise plot of
  `hardware.prog_noise_scales`); nothing written with `workdir` None."""
  exp = run.exp
  test = run.pop.evaluate(run.params, run.setup.dataset.test, run.batch_stats)
  report = runner.cost_report(run.setup, run.params, exp.quant.spec, run.batch_stats)
  analog = analog_results(run.pop, run.params, workdir, run.batch_stats)
  results = {
    "task": run.setup.dataset.name,
    "model": exp.model_name,
    "mode": "evaluate",
    "quant": quant_summary(exp.quant.spec),
    "post_training_quantization": exp.quant.enabled and not run.trained_quantized,
    "test_accuracy": float(test["accuracy"][0]),
    "test_loss": float(test["loss"][0]),
    "checkpoint_step": run.step,
    "wall_time_s": time.time() - start_time,
    "platform": jax.default_backend(),
    **report.as_dict(),
    **analog,
  }
  if workdir is not None:
    write_results(workdir, "results_evaluate.json", results)
  return results
