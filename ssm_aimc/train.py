"""Training and evaluation: optimizer, pure jitted steps, checkpoints, logs and results.

This is where the ml_collections config stops: `train_and_evaluate(config, workdir)` turns
it into typed dataclasses (`data.DataConfig`, `models.ModelConfig`, `OptimConfig`) and runs

  resume (workdir's latest checkpoint, else `init_checkpoint`, else scratch)
  -> epochs of jitted `train_step` over a deterministic batch order
  -> evaluation every epoch, `metrics.jsonl`, checkpoints (last k, and the best by val acc)
  -> test evaluation of the best checkpoint and `results.json`.

Determinism: the batch order of epoch e depends only on (seed, e), and dropout keys are
`fold_in(key, step)`, so a run stopped after a checkpoint and resumed ends with exactly the
parameters of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging as py_logging
import os
import re
import time
from collections.abc import Callable

import flax.traverse_util
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm
from absl import logging
from flax.training import train_state

from ssm_aimc import (
  cost,
  data,
  errors,
  export,
  layers,
  models,
  noise_eval,
  prune,
  pruning,
  quant,
  ssm,
)
from ssm_aimc.hardware import analog as analog_lib
from ssm_aimc.hardware import devices

CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
EXPORT_DIR = "export"
NOISE_PLOT = "accuracy_vs_noise.png"
PRUNED_DIR = "pruned"
PRUNE_START = "prune_start.json"


# ---------------------------------------------------------------------------------------
# Typed configs (built from the ConfigDict once, at the top).
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """AdamW with warm-up + cosine decay, global-norm clipping and per-parameter rules.

  Attributes:
    learning_rate: peak learning rate.
    weight_decay: decoupled weight decay of parameters no rule matches.
    warmup_epochs: linear warm-up length, in epochs (may be fractional).
    end_lr_fraction: final learning rate as a fraction of the peak.
    grad_clip: global-norm gradient clipping threshold (0 disables).
    b1, b2: Adam moment decay rates.
    rules: (regex, lr_multiplier, weight_decay) triples matched in order against the
      '/'-joined parameter path; the first match wins. lr_multiplier 0 freezes.
  """

  learning_rate: float = 1e-2
  weight_decay: float = 0.01
  warmup_epochs: float = 1.0
  end_lr_fraction: float = 0.0
  grad_clip: float = 1.0
  b1: float = 0.9
  b2: float = 0.999
  rules: tuple[tuple[str, float, float], ...] = ()


def _typed(cls, cfg: ml_collections.ConfigDict, **extra):
  """Builds dataclass `cls` from the matching fields of a ConfigDict section."""
  names = {f.name for f in dataclasses.fields(cls)}
  values = {k: v for k, v in cfg.items() if k in names}
  values.update(extra)
  return cls(**values)


def optim_config(config: ml_collections.ConfigDict) -> OptimConfig:
  rules = tuple((str(r[0]), float(r[1]), float(r[2])) for r in config.optimizer.rules)
  for pattern, _, _ in rules:
    try:
      re.compile(pattern)
    except re.error as e:
      raise errors.ConfigError(f"optimizer.rules: bad regex {pattern!r}: {e}") from e
  return _typed(OptimConfig, config.optimizer, rules=rules)


def data_config(config: ml_collections.ConfigDict) -> data.DataConfig:
  return _typed(data.DataConfig, config.data)


def model_config(config: ml_collections.ConfigDict) -> models.ModelConfig:
  return _typed(models.ModelConfig, config.model)


def prune_config(config: ml_collections.ConfigDict) -> pruning.PruneConfig:
  return _typed(pruning.PruneConfig, config.prune)


def quant_spec(config: ml_collections.ConfigDict) -> quant.QuantSpec | None:
  """The QuantSpec of `config.quant`, or None when quantization is disabled.

  Weights share `weight_bits`, activations `act_bits`, a_bar `a_bar_bits`; any entry of
  `group_bits` that is not 0 overrides its group. Invalid widths raise ConfigError.
  """
  q = config.quant
  if not q.enabled:
    return None
  try:
    mode = quant.ScaleMode(q.mode)
  except ValueError as e:
    valid = [m.value for m in quant.ScaleMode]
    raise errors.ConfigError(f"Unknown quant.mode {q.mode!r}; valid: {valid}.") from e
  spec = quant.QuantSpec.uniform(
    q.weight_bits, q.act_bits, q.a_bar_bits, mode, a_bar_param=q.a_bar_param
  )
  overrides = {}
  for group, bits in q.group_bits.items():
    if bits:
      overrides[group] = quant.TensorQuant.make(bits, getattr(spec, group).mode)
  return dataclasses.replace(spec, **overrides)


def analog_spec(config: ml_collections.ConfigDict) -> analog_lib.AnalogSpec | None:
  """The AnalogSpec of `config.hardware`, or None when it is disabled (ConfigError if bad)."""
  hw = config.hardware
  if not hw.enabled:
    if hw.train:
      raise errors.ConfigError("hardware.train (noise-aware training) needs hardware.enabled.")
    return None
  for name in ("eval_seeds", "seeds_per_call"):
    if hw[name] < 1:
      raise errors.ConfigError(f"hardware.{name} must be >= 1, got {hw[name]}.")
  if hw.ramp_epochs < 0:
    raise errors.ConfigError(f"hardware.ramp_epochs must be >= 0, got {hw.ramp_epochs}.")
  for scale in hw.noise_scales:
    if not scale >= 0:
      raise errors.ConfigError(f"hardware.noise_scales must be >= 0, got {scale}.")
  return analog_lib.AnalogSpec.make(
    devices.get_device(hw.device, hw.device_csv),
    prog_noise_scale=hw.prog_noise_scale,
    read_noise_scale=hw.read_noise_scale,
    t_inference=hw.t_inference,
    drift=hw.drift,
    drift_compensation=hw.drift_compensation,
    stuck_min=hw.stuck_min,
    stuck_max=hw.stuck_max,
    levels=hw.levels or None,
    dac_bits=hw.dac_bits or None,
    adc_bits=hw.adc_bits or None,
    adc_bound=hw.adc_bound,
    output_noise=hw.output_noise,
    mapping=hw.mapping,
    recurrence=hw.recurrence,
    read_noise_draw=hw.read_noise_draw,
  )


def spec_summary(spec: quant.QuantSpec | None) -> dict:
  """{group: bits} for results.json ("off" for float groups); {} when spec is None."""
  if spec is None:
    return {}
  out = {}
  for group in quant.GROUPS:
    bits = float(getattr(spec, group).bits)
    out[group] = "off" if bits >= quant.OFF_THRESHOLD else int(bits)
  out["mode"] = spec.encoder.mode.value
  out["a_bar_param"] = spec.a_bar_param
  return out


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the values a user is most likely to get wrong; raises ConfigError."""
  positive = {
    "batch_size": config.batch_size,
    "eval_batch_size": config.eval_batch_size,
    "num_epochs": config.num_epochs,
    "model.d_model": config.model.d_model,
    "model.n_layers": config.model.n_layers,
    "model.d_state": config.model.d_state,
    "log_every_steps": config.log_every_steps,
    "keep_checkpoints": config.keep_checkpoints,
  }
  for name, value in positive.items():
    if value <= 0:
      raise errors.ConfigError(f"{name} must be positive, got {value}.")
  if config.model.d_state % 2:
    raise errors.ConfigError(f"model.d_state must be even, got {config.model.d_state}.")
  if not 0.0 <= config.model.dropout < 1.0:
    raise errors.ConfigError(f"model.dropout must be in [0, 1), got {config.model.dropout}.")
  if config.optimizer.learning_rate <= 0:
    raise errors.ConfigError("optimizer.learning_rate must be positive.")
  if config.model.method not in ssm.METHODS + ("auto",):
    raise errors.ConfigError(
      f"Unknown model.method {config.model.method!r}; valid: {ssm.METHODS + ('auto',)}."
    )
  if config.model.a_init not in ssm.A_INITS:
    raise errors.ConfigError(f"Unknown model.a_init {config.model.a_init!r}; valid: {ssm.A_INITS}.")
  if config.model.discretization not in ssm.DISCRETIZATIONS:
    raise errors.ConfigError(
      f"Unknown model.discretization {config.model.discretization!r}; valid: {ssm.DISCRETIZATIONS}."
    )
  if config.model.pooling not in models.POOLINGS:
    raise errors.ConfigError(
      f"Unknown model.pooling {config.model.pooling!r}; valid: {models.POOLINGS}."
    )
  if config.model_name not in models.MODELS:
    raise errors.ConfigError(
      f"Unknown model_name {config.model_name!r}; valid: {sorted(models.MODELS)}."
    )


# ---------------------------------------------------------------------------------------
# Optimizer.
# ---------------------------------------------------------------------------------------


def param_labels(params, rules: tuple[tuple[str, float, float], ...]):
  """Tree of labels: index of the first rule whose regex matches the path, or 'default'."""
  flat = flax.traverse_util.flatten_dict(params, sep="/")
  labels = {}
  for path in flat:
    labels[path] = "default"
    for i, (pattern, _, _) in enumerate(rules):
      if re.search(pattern, path):
        labels[path] = f"rule_{i}"
        break
  return flax.traverse_util.unflatten_dict(labels, sep="/")


def make_optimizer(cfg: OptimConfig, steps_per_epoch: int, total_steps: int):
  """AdamW per rule group behind one global-norm clip; returns (tx, base schedule)."""
  warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
  schedule = optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=cfg.learning_rate,
    warmup_steps=min(warmup, max(total_steps - 1, 0)),
    decay_steps=max(total_steps, 1),
    end_value=cfg.learning_rate * cfg.end_lr_fraction,
  )

  def adamw(lr_multiplier: float, weight_decay: float):
    if lr_multiplier == 0.0:
      return optax.set_to_zero()
    return optax.adamw(
      lambda count: lr_multiplier * schedule(count), cfg.b1, cfg.b2, weight_decay=weight_decay
    )

  transforms = {"default": adamw(1.0, cfg.weight_decay)}
  for i, (_, lr_multiplier, weight_decay) in enumerate(cfg.rules):
    transforms[f"rule_{i}"] = adamw(lr_multiplier, weight_decay)
  tx = optax.multi_transform(transforms, functools.partial(param_labels, rules=cfg.rules))
  # Same state structure with or without clipping, so a run can resume with either.
  clip = optax.clip_by_global_norm(cfg.grad_clip) if cfg.grad_clip > 0 else optax.identity()
  return optax.chain(clip, tx), schedule


# ---------------------------------------------------------------------------------------
# Pure steps.
# ---------------------------------------------------------------------------------------


class TrainState(train_state.TrainState):
  """Flax TrainState (step, params, opt_state, apply_fn, tx)."""


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy, (B, C), (B,) -> (B,)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def train_step(
  state: TrainState,
  x: jax.Array,
  y: jax.Array,
  key: jax.Array,
  spec: quant.QuantSpec | None,
  analog: analog_lib.AnalogSpec | None = None,
  masks=None,
):
  """One optimizer step on a batch; dropout key = fold_in(key, step). Returns (state, metrics).

  `masks` (a 0/1 tree shaped like the params, `ssm_aimc.prune.model_masks`) holds pruned
  entries fixed: the optimizer's updates are multiplied by it.

  `spec` (None: float) and `analog` (None: digital) are ordinary traced arguments: one
  compiled step serves every bit width and noise scale of the same structure. With
  `analog`, every step programs a fresh chip (noise-aware training).
  """
  step_key = jax.random.fold_in(key, state.step)
  rngs = {"dropout": step_key}
  if analog is not None:
    rngs[layers.PROGRAM_RNG] = jax.random.fold_in(step_key, 1)
    rngs[layers.READ_RNG] = jax.random.fold_in(step_key, 2)

  def loss_fn(params):
    logits = state.apply_fn({"params": params}, x, train=True, spec=spec, analog=analog, rngs=rngs)
    return jnp.mean(cross_entropy(logits, y)), logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  if masks is None:
    state = state.apply_gradients(grads=grads)
  else:
    # Masked updates (not only masked gradients): weight decay and momentum would otherwise
    # move pruned entries away from zero.
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, prune.mask_updates(updates, masks))
    params = prune.fill_pruned_modes(params, masks)
    state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
  metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}
  return state, metrics


def eval_step(
  apply_fn: Callable,
  spec: quant.QuantSpec | None,
  params,
  x: jax.Array,
  y: jax.Array,
  mask: jax.Array,
):
  """Summed loss, correct count and example count of a (padded) batch; mask (B,) of 0/1."""
  logits = apply_fn({"params": params}, x, train=False, spec=spec)
  correct = (jnp.argmax(logits, -1) == y) * mask
  return {
    "loss_sum": jnp.sum(cross_entropy(logits, y) * mask),
    "correct": jnp.sum(correct),
    "count": jnp.sum(mask),
  }


def evaluate_split(eval_fn: Callable, params, split: data.Split, batch_size: int) -> dict:
  """Loss and accuracy over a whole split; the last batch is padded so one shape compiles."""
  totals = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
  for x, y, mask in data.padded_batches(split, batch_size):
    out = eval_fn(params, x, y, mask)
    for k in totals:
      totals[k] += float(out[k])
  count = max(totals["count"], 1.0)
  return {"loss": totals["loss_sum"] / count, "accuracy": totals["correct"] / count}


# ---------------------------------------------------------------------------------------
# Files.
# ---------------------------------------------------------------------------------------


def write_json_atomic(path: str, obj) -> None:
  """Writes JSON to a temporary file and renames it, so a crash never leaves half a file."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
    f.write("\n")
  os.replace(tmp, path)


def _json_default(obj):
  if isinstance(obj, (np.generic, jax.Array)):
    return np.asarray(obj).tolist()
  if isinstance(obj, tuple):
    return list(obj)
  raise TypeError(f"Not JSON serialisable: {type(obj)}")


class MetricsWriter:
  """Appends one JSON object per line to workdir/metrics.jsonl."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, "metrics.jsonl")

  def write(self, step: int, **metrics) -> None:
    record = {"step": int(step), **{k: _to_python(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")


def _to_python(v):
  if isinstance(v, (np.generic, jax.Array, np.ndarray)):
    return np.asarray(v).item()
  return v


def checkpoint_manager(directory: str, max_to_keep: int, best: bool = False):
  """Orbax manager for the last `max_to_keep` states, or (best=True) the best by val acc."""
  options = ocp.CheckpointManagerOptions(
    max_to_keep=max_to_keep,
    create=True,
    best_fn=(lambda m: m["val_accuracy"]) if best else None,
    best_mode="max",
    enable_async_checkpointing=False,
  )
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def _checkpoint_item(state: TrainState) -> dict:
  return {"step": state.step, "params": state.params, "opt_state": state.opt_state}


def restore_state(manager, step: int, state: TrainState) -> TrainState:
  """Restores step/params/opt_state saved at `step` into a state of the same structure."""
  abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, _checkpoint_item(state))
  try:
    item = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  except Exception as e:  # Orbax raises many types for corrupt or mismatched files.
    raise errors.CheckpointError(
      f"Could not restore checkpoint step {step} from {manager.directory}: {e}"
    ) from e
  return state.replace(step=item["step"], params=item["params"], opt_state=item["opt_state"])


def load_params(workdir: str, state: TrainState, which: str = "best") -> tuple[TrainState, int]:
  """Params of another run's best (or latest) checkpoint, into `state`. Returns (state, step)."""
  order = (BEST_DIR, CHECKPOINT_DIR) if which == "best" else (CHECKPOINT_DIR, BEST_DIR)
  for sub in order:
    directory = os.path.join(workdir, sub)
    if not os.path.isdir(directory):
      continue
    manager = checkpoint_manager(directory, 1)
    step = manager.latest_step()
    if step is not None:
      return restore_state(manager, step, state), int(step)
  raise errors.CheckpointError(
    f"No checkpoint found in {os.path.join(workdir, BEST_DIR)} or "
    f"{os.path.join(workdir, CHECKPOINT_DIR)}; train first with --mode=train."
  )


# ---------------------------------------------------------------------------------------
# The loop.
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Experiment:
  """Everything built from a config before training: data, model, state and step functions."""

  dataset: data.Dataset
  model_cfg: models.ModelConfig
  model: object
  state: TrainState
  steps_per_epoch: int
  total_steps: int
  spec: quant.QuantSpec | None
  train_step: Callable
  eval_fn: Callable
  analog: analog_lib.AnalogSpec | None = None
  analog_eval_fn: Callable | None = None


def init_key(seed: int) -> jax.Array:
  """The key of a model's initial params for `seed`."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), 0)


@functools.lru_cache(maxsize=16)
def init_fn(model, seq_len: int, d_input: int):
  """key -> initial params of `model` for inputs (B, seq_len, d_input), jitted once per
  model and input shape in this process (`build` and the sweeps' members share it)."""
  dummy = jnp.zeros((1, seq_len, d_input), jnp.float32)
  return jax.jit(lambda key: model.init(key, dummy)["params"])


def build(config: ml_collections.ConfigDict) -> Experiment:
  """Loads data, builds the model and an initial TrainState from `config.seed`."""
  validate(config)
  spec = quant_spec(config)
  analog = analog_spec(config)
  prune_config(config)  # Validates config.prune before any work.
  dataset = data.load_dataset(data_config(config))
  model_cfg = model_config(config)
  model = models.get_model(config.model_name, model_cfg, dataset.n_classes)
  if config.batch_size > len(dataset.train):
    raise errors.ConfigError(
      f"batch_size {config.batch_size} exceeds the {len(dataset.train)} training examples."
    )
  steps_per_epoch = data.num_batches(len(dataset.train), config.batch_size, drop_last=True)
  total_steps = steps_per_epoch * config.num_epochs
  tx, _ = make_optimizer(optim_config(config), steps_per_epoch, total_steps)
  params = init_fn(model, dataset.seq_len, dataset.d_input)(init_key(config.seed))
  state = TrainState.create(apply_fn=model.apply, params=params, tx=tx)
  return Experiment(
    dataset=dataset,
    model_cfg=model_cfg,
    model=model,
    state=state,
    steps_per_epoch=steps_per_epoch,
    total_steps=total_steps,
    spec=spec,
    train_step=jax.jit(train_step, donate_argnums=0),
    eval_fn=jax.jit(functools.partial(eval_step, model.apply, spec)),
    analog=analog,
    analog_eval_fn=noise_eval.make_eval_fn(model.apply, spec) if analog is not None else None,
  )


def cost_report(exp: Experiment, params) -> cost.CostReport:
  """Cost of `params` under the experiment's quantization, from the deployed tensors."""
  x = jnp.zeros((1, exp.dataset.seq_len, exp.dataset.d_input), jnp.float32)
  records = models.deployed_tensors(exp.model, params, exp.spec, x)
  reference = dict(cost.REFERENCE, d_input=exp.dataset.d_input, n_classes=exp.dataset.n_classes)
  return cost.deployed_report(
    records,
    params=cost.count_params(params, exclude=models.is_quantizer_param),
    seq_len=exp.dataset.seq_len,
    reference=reference,
  )


def export_params(config: ml_collections.ConfigDict, exp: Experiment, params, directory: str):
  """Writes the integer export (codes + steps + manifest) of `params` to `directory`."""
  x = jnp.zeros((1, exp.dataset.seq_len, exp.dataset.d_input), jnp.float32)
  arch = {
    **dataclasses.asdict(exp.model_cfg),
    "n_classes": exp.dataset.n_classes,
    "model_name": config.model_name,
    "task": exp.dataset.name,
  }
  return export.export_model(exp.model, params, exp.spec, x, directory, arch)


def calibrate(config: ml_collections.ConfigDict, exp: Experiment, params):
  """Quantizer ranges and LSQ steps from the first training batch.

  Runs when the model is quantized or simulated on analog hardware (whose DAC and ADC use
  the activation ranges); a no-op for a digital float model.
  """
  if exp.spec is None and exp.analog is None:
    return params
  spec = exp.spec if exp.spec is not None else quant.QuantSpec.off()
  x, _ = next(data.batches(exp.dataset.train, config.batch_size, seed=config.seed, epoch=0))
  return models.calibrate(exp.model, params, spec, jnp.asarray(x))


def analog_results(config: ml_collections.ConfigDict, exp: Experiment, params) -> dict:
  """Test accuracy on `hardware.eval_seeds` simulated chips, and the noise sweep if asked.

  Returns {} without an analog spec; otherwise the DESIGN.md §3 keys
  (analog_accuracy_mean, analog_accuracy_std, noise_seeds), per-chip accuracies, the
  hardware summary and, with `hardware.noise_scales`, one row per scale.
  """
  if exp.analog is None:
    return {}
  hw = config.hardware
  run = functools.partial(
    noise_eval.evaluate,
    exp.analog_eval_fn,
    params,
    exp.dataset.test,
    config.eval_batch_size,
    n_seeds=hw.eval_seeds,
    seed=hw.eval_seed,
    seeds_per_call=hw.seeds_per_call,
  )
  out = {"hardware": exp.analog.summary(), **run(exp.analog)}
  logging.info(
    "Analog (%s): test accuracy %.4f +- %.4f over %d chips.",
    exp.analog.device.name,
    out["analog_accuracy_mean"],
    out["analog_accuracy_std"],
    out["noise_seeds"],
  )
  if hw.noise_scales:
    out["noise_sweep"] = noise_eval.noise_sweep(
      exp.analog_eval_fn,
      params,
      exp.dataset.test,
      config.eval_batch_size,
      exp.analog,
      hw.noise_scales,
      hw.eval_seeds,
      hw.eval_seed,
      hw.seeds_per_call,
    )
  return out


def _check_finite(value: float, step: int, what: str, last_good: int | None, workdir: str):
  if not np.isfinite(value):
    where = (
      f"the last good checkpoint (step {last_good}) in {os.path.join(workdir, CHECKPOINT_DIR)} "
      "is left intact"
      if last_good is not None
      else "no checkpoint had been written yet"
    )
    raise errors.NonFiniteLossError(
      f"Non-finite {what} ({value}) at step {step}; training stopped and {where}. "
      "Lower optimizer.learning_rate or tighten optimizer.grad_clip."
    )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config` in `workdir` (resuming if it holds checkpoints); returns results.json."""
  start_time = time.time()
  os.makedirs(workdir, exist_ok=True)
  py_logging.getLogger("absl").setLevel(py_logging.INFO)
  exp = build(config)
  state = exp.state
  logging.info(
    "Task %s: %d train / %d val / %d test, L=%d, %d classes; %d steps per epoch.",
    exp.dataset.name,
    len(exp.dataset.train),
    len(exp.dataset.val),
    len(exp.dataset.test),
    exp.dataset.seq_len,
    exp.dataset.n_classes,
    exp.steps_per_epoch,
  )

  manager = checkpoint_manager(os.path.join(workdir, CHECKPOINT_DIR), config.keep_checkpoints)
  best_manager = checkpoint_manager(os.path.join(workdir, BEST_DIR), 1, best=True)
  latest = manager.latest_step()
  if latest is not None:
    state = restore_state(manager, latest, state)
    logging.info("Resumed from %s at step %d.", manager.directory, latest)
  else:
    if config.init_checkpoint:
      loaded, step = load_params(config.init_checkpoint, state)
      state = state.replace(params=loaded.params)
      logging.info("Initialised params from %s (step %d).", config.init_checkpoint, step)
    if exp.spec is not None or exp.analog is not None:
      state = state.replace(params=calibrate(config, exp, state.params))
      logging.info(
        "Quantization %s; activation ranges calibrated.", spec_summary(exp.spec) or "off"
      )
  prune_cfg = prune_config(config)
  masks = None
  if prune_cfg.enabled:
    if latest is None:
      unpruned = evaluate_split(exp.eval_fn, state.params, exp.dataset.test, config.eval_batch_size)
      unpruned_bits = cost_report(exp, state.params).memory_bits
    state, masks, ratio = _prune(config, exp, prune_cfg, state)
    if latest is None:
      # Accuracy right after pruning, before any fine-tuning (kept across resumes).
      pruned = evaluate_split(exp.eval_fn, state.params, exp.dataset.test, config.eval_batch_size)
      write_json_atomic(
        os.path.join(workdir, PRUNE_START),
        {
          "ratio": ratio,
          "test_accuracy_unpruned": unpruned["accuracy"],
          "test_accuracy_before_finetune": pruned["accuracy"],
          "unpruned_memory_bits": unpruned_bits,
        },
      )
  write_json_atomic(os.path.join(workdir, "config.json"), config.to_dict())

  writer = MetricsWriter(workdir)
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
  step = int(state.step)
  best_val = _best_val_accuracy(best_manager)
  last_good = latest
  first_epoch = step // exp.steps_per_epoch
  for epoch in range(first_epoch, config.num_epochs):
    if prune_cfg.enabled and prune_cfg.schedule == "gradual" and epoch > first_epoch:
      state, masks, _ = _prune(config, exp, prune_cfg, state)
    start_batch = step - epoch * exp.steps_per_epoch
    bar = tqdm.tqdm(
      data.batches(
        exp.dataset.train, config.batch_size, seed=config.seed, epoch=epoch, start_batch=start_batch
      ),
      total=exp.steps_per_epoch,
      initial=start_batch,
      desc=f"epoch {epoch + 1}/{config.num_epochs}",
      leave=False,
      disable=None if config.progress_bar else True,
      dynamic_ncols=True,
    )
    epoch_loss, epoch_acc, n_steps = jnp.zeros(()), jnp.zeros(()), 0
    for x, y in bar:
      state, metrics = exp.train_step(
        state, x, y, key, exp.spec, _train_analog(config, exp, step), masks
      )
      step += 1
      n_steps += 1
      epoch_loss, epoch_acc = epoch_loss + metrics["loss"], epoch_acc + metrics["accuracy"]
      if step % config.log_every_steps == 0:
        loss = float(metrics["loss"])
        _check_finite(loss, step, "training loss", last_good, workdir)
        writer.write(step, train_loss=loss, train_accuracy=float(metrics["accuracy"]))
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{float(metrics['accuracy']):.3f}")
    bar.close()
    train_loss = float(epoch_loss) / max(n_steps, 1)
    _check_finite(train_loss, step, "mean training loss of the epoch", last_good, workdir)
    val = evaluate_split(exp.eval_fn, state.params, exp.dataset.val, config.eval_batch_size)
    _check_finite(val["loss"], step, "validation loss", last_good, workdir)
    record = {
      "epoch": epoch + 1,
      "train_loss": train_loss,
      "train_accuracy": float(epoch_acc) / max(n_steps, 1),
      "val_loss": val["loss"],
      "val_accuracy": val["accuracy"],
      "wall_time_s": time.time() - start_time,
    }
    writer.write(step, **record)
    logging.info(
      "epoch %d/%d step %d: train loss %.4f acc %.4f | val loss %.4f acc %.4f",
      epoch + 1,
      config.num_epochs,
      step,
      record["train_loss"],
      record["train_accuracy"],
      val["loss"],
      val["accuracy"],
    )
    if (epoch + 1) % config.checkpoint_every_epochs == 0 or epoch + 1 == config.num_epochs:
      manager.save(step, args=ocp.args.StandardSave(_checkpoint_item(state)))
      manager.wait_until_finished()
      last_good = step
    # While a gradual schedule is still pruning, a less-pruned state must not become "best".
    fully_pruned = not prune_cfg.enabled or prune_cfg.ratio_at(step, exp.total_steps) >= (
      prune_cfg.ratio
    )
    if fully_pruned and (best_val is None or val["accuracy"] > best_val):
      best_val = val["accuracy"]
      best_manager.save(
        step,
        args=ocp.args.StandardSave(_checkpoint_item(state)),
        metrics={"val_accuracy": val["accuracy"]},
      )
      best_manager.wait_until_finished()

  results = _final_results(config, exp, state, workdir, start_time)
  write_results(workdir, "results.json", results)
  return results


def _prune(config, exp: Experiment, cfg: pruning.PruneConfig, state: TrainState):
  """Masks for the state's step (from its current, possibly already pruned, params) and the
  state with pruned b and c set to zero. Returns (state, parameter-mask tree, ratio).

  Modes pruned earlier have zero b and c, hence score 0, so they stay pruned when masks are
  recomputed (gradual schedule, or after a resume)."""
  ratio = cfg.ratio_at(int(state.step), exp.total_steps)
  x = jnp.zeros((1, exp.dataset.seq_len, exp.dataset.d_input), jnp.float32)
  modes, masks = pruning.masks_at(cfg, exp.model, state.params, exp.spec, x, ratio)
  logging.info(
    "Pruning at step %d: ratio %.3f, %d modes kept.",
    int(state.step),
    ratio,
    pruning.kept_modes(modes),
  )
  params = prune.fill_pruned_modes(prune.apply_masks(state.params, masks), masks)
  return state.replace(params=params), masks, ratio


def pruned_config(config: ml_collections.ConfigDict, d_state: int) -> ml_collections.ConfigDict:
  """The config of the physically smaller model a pruning run exports (workdir/pruned)."""
  small_config = ml_collections.ConfigDict(config.to_dict())
  small_config.model.d_state = d_state
  small_config.prune.enabled = False
  small_config.hardware.train = False
  small_config.init_checkpoint = ""
  return small_config


def _export_pruned(config, exp: Experiment, params, workdir: str) -> dict:
  """Writes the physically smaller model to workdir/pruned (a workdir of its own: config.json
  with the new d_state and a best/ checkpoint) and returns its results keys."""
  cfg = prune_config(config)
  x = jnp.zeros((1, exp.dataset.seq_len, exp.dataset.d_input), jnp.float32)
  modes, _ = pruning.masks_at(cfg, exp.model, params, exp.spec, x, cfg.ratio)
  tree, d_state = pruning.compact(params, modes)
  small_config = pruned_config(config, d_state)
  small = build(small_config)
  small_params = jax.tree_util.tree_map(jnp.asarray, tree)
  directory = os.path.join(workdir, PRUNED_DIR)
  os.makedirs(directory, exist_ok=True)
  manager = checkpoint_manager(os.path.join(directory, BEST_DIR), 1)
  manager.save(
    0, args=ocp.args.StandardSave(_checkpoint_item(small.state.replace(params=small_params)))
  )
  manager.wait_until_finished()
  write_json_atomic(os.path.join(directory, "config.json"), small_config.to_dict())
  if small.spec is not None:
    export_params(small_config, small, small_params, os.path.join(directory, EXPORT_DIR))
  test = evaluate_split(small.eval_fn, small_params, small.dataset.test, config.eval_batch_size)
  with open(os.path.join(workdir, PRUNE_START)) as f:
    start = json.load(f)
  return {
    "prune": {
      **dataclasses.asdict(cfg),
      "pruned_fraction": prune.pruned_fraction(modes),
      "kept_modes": pruning.kept_modes(modes),
      "d_state_before": config.model.d_state,
      "d_state_after": d_state,
    },
    "pruned_dir": directory,
    "test_accuracy_unpruned": start["test_accuracy_unpruned"],
    "test_accuracy_before_finetune": start["test_accuracy_before_finetune"],
    "unpruned_memory_bits": start.get("unpruned_memory_bits"),
    "pruned_model_test_accuracy": test["accuracy"],
    "report": cost_report(small, small_params),
  }


def _train_analog(config, exp: Experiment, step: int) -> analog_lib.AnalogSpec | None:
  """The analog spec of training step `step`: None unless noise-aware, ramped in linearly."""
  if not config.hardware.train:
    return None
  ramp_steps = config.hardware.ramp_epochs * exp.steps_per_epoch
  factor = 1.0 if ramp_steps <= 0 else min(1.0, (step + 1) / ramp_steps)
  return exp.analog.scaled(jnp.asarray(factor, jnp.float32))


def write_results(workdir: str, name: str, results: dict) -> None:
  path = os.path.join(workdir, name)
  write_json_atomic(path, results)
  logging.info("Test accuracy %.4f; results in %s.", results["test_accuracy"], path)


def _best_val_accuracy(best_manager) -> float | None:
  step = best_manager.latest_step()
  if step is None:
    return None
  metrics = best_manager.metrics(step) if hasattr(best_manager, "metrics") else None
  return None if not metrics else float(metrics["val_accuracy"])


def _final_results(config, exp: Experiment, state: TrainState, workdir: str, start_time: float):
  """Test metrics of the best checkpoint (by val accuracy) and the cost report."""
  best_state, best_step = load_params(workdir, state, which="best")
  test = evaluate_split(exp.eval_fn, best_state.params, exp.dataset.test, config.eval_batch_size)
  val = evaluate_split(exp.eval_fn, best_state.params, exp.dataset.val, config.eval_batch_size)
  report = cost_report(exp, best_state.params)
  extra = {}
  if exp.spec is not None:
    directory = os.path.join(workdir, EXPORT_DIR)
    export_params(config, exp, best_state.params, directory)
    extra["export_dir"] = directory
  extra.update(_analog_results_with_plot(config, exp, best_state.params, workdir))
  if prune_config(config).enabled:
    pruned = _export_pruned(config, exp, best_state.params, workdir)
    # The cost keys describe the model as exported: the physically smaller one.
    report = pruned.pop("report")
    extra.update(pruned)
  return {
    **extra,
    "task": exp.dataset.name,
    "model": config.model_name,
    "quant": spec_summary(exp.spec),
    "test_accuracy": test["accuracy"],
    "test_loss": test["loss"],
    "val_accuracy": val["accuracy"],
    "checkpoint_step": best_step,
    "final_step": int(state.step),
    "epochs": config.num_epochs,
    "seed": config.seed,
    "wall_time_s": time.time() - start_time,
    "platform": jax.default_backend(),
    **report.as_dict(),
  }


def _analog_results_with_plot(config, exp: Experiment, params, workdir: str) -> dict:
  """`analog_results`, plus accuracy_vs_noise.png in workdir when a noise sweep ran."""
  out = analog_results(config, exp, params)
  if "noise_sweep" in out:
    label = f"{'quantized' if exp.spec is not None else 'float'} model"
    path = os.path.join(workdir, NOISE_PLOT)
    noise_eval.plot_noise_sweep(
      {label: out["noise_sweep"]}, path, title=f"{exp.dataset.name}, {exp.analog.device.name}"
    )
    out["noise_plot"] = path
  return out


def _trained_with(workdir: str, section: str) -> bool:
  """Whether the run that wrote workdir/config.json had `section`.enabled (quant, hardware)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return False
  with open(path) as f:
    return bool(json.load(f).get(section, {}).get("enabled", False))


def load_for_inference(config: ml_collections.ConfigDict, exp: Experiment, workdir: str):
  """The best checkpoint of `workdir`, ready for `exp`'s quantization and hardware.

  A checkpoint trained without quantization or hardware never fitted its activation
  ranges; they are calibrated on one training batch when `config` quantizes (post-training
  quantization) or simulates hardware.

  Returns:
    (params, checkpoint step, whether the checkpoint was trained quantized).
  """
  state, step = load_params(workdir, exp.state, which="best")
  params = state.params
  trained_quantized = _trained_with(workdir, "quant")
  ranges_fitted = trained_quantized or _trained_with(workdir, "hardware")
  if (exp.spec is not None or exp.analog is not None) and not ranges_fitted:
    params = calibrate(config, exp, params)
    logging.info("Activation ranges calibrated on one training batch.")
  return params, step, trained_quantized


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Evaluates the best checkpoint in `workdir` on the test split; writes results_evaluate.json.

  With `config.quant.enabled` and a checkpoint trained in float, this is post-training
  quantization (PTQ): quantizer ranges are calibrated on one training batch, then the
  quantized model is evaluated. With `config.hardware.enabled` the checkpoint is also
  evaluated on simulated chips of any device preset, whatever it was trained with (the
  activation ranges of a checkpoint trained without quantization or hardware are
  calibrated first, for the DAC and ADC). Training's results.json is left untouched, so
  evaluating under another config never overwrites what training measured.
  """
  start_time = time.time()
  exp = build(config)
  params, step, trained_quantized = load_for_inference(config, exp, workdir)
  test = evaluate_split(exp.eval_fn, params, exp.dataset.test, config.eval_batch_size)
  report = cost_report(exp, params)
  analog = _analog_results_with_plot(config, exp, params, workdir)
  results = {
    "task": exp.dataset.name,
    "model": config.model_name,
    "mode": "evaluate",
    "quant": spec_summary(exp.spec),
    "post_training_quantization": exp.spec is not None and not trained_quantized,
    "test_accuracy": test["accuracy"],
    "test_loss": test["loss"],
    "checkpoint_step": step,
    "wall_time_s": time.time() - start_time,
    "platform": jax.default_backend(),
    **report.as_dict(),
    **analog,
  }
  write_results(workdir, "results_evaluate.json", results)
  return results
