"""What a run leaves in its workdir, and the rule that a workdir belongs to one config.

  launch.lock       while a launch uses the workdir: its pid and host (`lock`)
  config.json       the run's config (`experiment.to_dict`)
  metrics.jsonl     one JSON object per logged step and per epoch
  tensorboard/      the same numbers as TensorBoard events (config.log_tensorboard)
  training_curves.png (.pdf)  loss and accuracy against the step (figures.CURVES)
  checkpoints/      the last `keep_checkpoints` states (orbax), for resuming
  best/             the state with the best validation accuracy
  unreadable/       checkpoints a resume could not read, moved aside (never deleted)
  results.json      what the run measured (train), results_evaluate.json (evaluate), ...

Every JSON file is written to a temporary name and renamed, so a crash never leaves half a
file. A workdir belongs to the config that wrote its config.json; three rules say what
another launch may do with it, each a ConfigError naming the fields that differ, raised
before anything is written or deleted:

  check_owner      the cache rule of the claims, sweeps and bench table scripts: a folder
                   of the same config (up to NOT_TRAINING_KEYS) is reused, any other refused;
  check_resume     --mode=train resumes only a run of the same config up to RESUMABLE_KEYS
                   (how long it trains and what it writes, never what it trains);
  check_inference  --mode=evaluate and --mode=deploy read a checkpoint under any
                   quantization and hardware, but only with the model and data it was
                   trained with (INFERENCE_KEYS, up to INFERENCE_FREE_KEYS).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from ssm_aimc import errors, experiment, lockfile

LOCK = "launch.lock"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
RESULTS = "results.json"
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
TENSORBOARD_DIR = "tensorboard"  # Event files, with config.log_tensorboard.
UNREADABLE_DIR = "unreadable"
# Orbax writes a checkpoint under this suffix and renames it when complete: a folder that
# still has it was cut off by a crash.
PARTIAL_CHECKPOINT = ".orbax-checkpoint-tmp"
# Sections a training run does not read: ignored when deciding whether a workdir holds a
# run of a config (the progress bar, TensorBoard logging; the chip a run is deployed on,
# --mode=deploy's own).
NOT_TRAINING_KEYS = ("progress_bar", "log_tensorboard", "deploy")
# The fields a relaunch of --mode=train may change and still resume (the one list): how
# long to train and what is written. A longer num_epochs stretches the learning-rate
# schedule (and a gradual pruning schedule) from the resumed step on; everything else
# (task, model, optimizer, seed, quantization, hardware, batch sizes, ...) must agree.
RESUMABLE_KEYS = NOT_TRAINING_KEYS + (
  "num_epochs",
  "log_every_steps",
  "checkpoint_every_epochs",
  "keep_checkpoints",
)
# What --mode=evaluate and --mode=deploy need to share with the run that wrote a
# checkpoint: the model it was trained as and the data (so the test split is one it never
# trained on), except fields that do not change what the checkpoint computes (the
# recurrence method: the same numbers; dropout: off at inference; where the files are).
INFERENCE_KEYS = ("model_name", "model", "data")
INFERENCE_FREE_KEYS = ("model.method", "model.dropout", "data.data_dir")


def _json_default(obj):
  if isinstance(obj, np.generic | jax.Array | np.ndarray):
    return np.asarray(obj).tolist()
  if isinstance(obj, tuple):
    return list(obj)
  raise TypeError(f"Not JSON serialisable: {type(obj)}")


def to_json(obj) -> str:
  """`obj` as indented JSON; numpy and JAX values as numbers or lists."""
  return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


@contextlib.contextmanager
def writing(path: str):
  """Turns a failing write (a full disk, a read-only filesystem) into a one-line
  WorkdirError naming `path`; what was written before is left as it was."""
  try:
    yield
  except OSError as e:
    if isinstance(e, errors.UserError):
      raise
    reason = e.strerror or str(e)
    raise errors.WorkdirError(
      f"Could not write {path}: {reason}; the files written before are intact."
    ) from e


def write_text(path: str, text: str) -> None:
  """Writes `text` to a temporary file and renames it, so a crash never leaves half a file
  (and a failing write is a WorkdirError, `writing`)."""
  tmp = f"{path}.tmp{os.getpid()}"
  with writing(path):
    try:
      with open(tmp, "w") as f:
        f.write(text)
      os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)


def write_json(path: str, obj) -> None:
  """`obj` as JSON at `path`, written whole or not at all (`write_text`)."""
  write_text(path, to_json(obj))


def read_json(path: str):
  with open(path) as f:
    return json.load(f)


@contextlib.contextmanager
def lock(workdir: str, create: bool = True, name: str = LOCK):
  """`workdir` (made when `create`) held by this process for the block (through the lock
  file `name`): one launch per workdir. A WorkdirError, before anything is written, when
  another launch holds it, or when it is not a folder this process can write in; a
  CheckpointError when it does not exist and `create` is off (evaluate, deploy: nothing to
  read)."""
  if not create and not os.path.isdir(workdir):
    raise errors.CheckpointError(
      f"No checkpoint found: {workdir} does not exist; train first with --mode=train."
    )
  path = os.path.join(workdir, name)
  try:
    os.makedirs(workdir, exist_ok=True)
    fd = lockfile.acquire(path)
  except (FileExistsError, NotADirectoryError) as e:
    raise errors.WorkdirError(f"--workdir {workdir} is not a folder ({e}).") from e
  except errors.WorkdirError:
    raise
  except OSError as e:  # Read-only filesystem, no permission.
    raise errors.WorkdirError(f"Cannot write in --workdir {workdir}: {e}") from e
  try:
    yield
  finally:
    lockfile.release(path, fd)


def write_config(workdir: str, exp: experiment.Experiment) -> None:
  write_json(os.path.join(workdir, CONFIG), experiment.to_dict(exp))


def truncate_metrics(workdir: str, step: int, run: str | None = None, name: str = METRICS) -> int:
  """Drops the records of metrics.jsonl (or `name`) after `step` (and any line cut off by a
  crash), so that a run resumed at `step` does not log those steps twice; with `run`, only
  the records of that run (a sweep's population: their "run" field). Returns how many went."""
  path = os.path.join(workdir, name)
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    lines = f.read().splitlines()
  kept = []
  for line in lines:
    try:
      record = json.loads(line)
      if record["step"] <= step or (run is not None and record.get("run") != run):
        kept.append(line)
    except (ValueError, KeyError, TypeError):
      pass  # Half a line written when the run was killed.
  if len(kept) < len(lines):
    write_text(path, "".join(line + "\n" for line in kept))
  return len(lines) - len(kept)


def read_metrics(workdir: str, name: str = METRICS) -> list[dict]:
  """The records of workdir/metrics.jsonl (or `name`) in order ([] without one; a line cut
  off by a crash is skipped)."""
  path = os.path.join(workdir, name)
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except ValueError:
        pass  # Half a line written when the run was killed.
  return records


def remove_partial_checkpoints(workdir: str) -> list[str]:
  """Removes the checkpoint folders a crash left half-written (orbax's temporary names) in
  checkpoints/ and best/; their complete predecessors are untouched. Returns the paths."""
  removed = []
  for sub in (CHECKPOINT_DIR, BEST_DIR):
    directory = os.path.join(workdir, sub)
    if not os.path.isdir(directory):
      continue
    for name in sorted(os.listdir(directory)):
      if PARTIAL_CHECKPOINT in name:
        shutil.rmtree(os.path.join(directory, name))
        removed.append(os.path.join(directory, name))
  return removed


def move_aside(workdir: str, checkpoint: str) -> str:
  """Moves an unreadable checkpoint folder to workdir/unreadable/ (kept for inspection,
  out of orbax's way). Returns its new path."""
  target = os.path.join(workdir, UNREADABLE_DIR, os.path.basename(checkpoint))
  if os.path.exists(target):
    target = f"{target}.{int(time.time())}"
  os.makedirs(os.path.dirname(target), exist_ok=True)
  os.replace(checkpoint, target)
  return target


class MetricsWriter:
  """Appends one JSON object per line to workdir/metrics.jsonl and keeps every record it
  wrote in `records` (the run's history, for the Python API).

  With `tensorboard` (the config's `log_tensorboard`) every number of a record is also a
  TensorBoard scalar in workdir/tensorboard/ (tensorboardX, the `[tensorboard]` extra):
  tag `key` (`run/key` for a sweep's member, `key/i` for the i-th of a population's
  values), flushed at every epoch record; `purge_step` (a resumed run's step + 1) makes
  TensorBoard drop the events a crashed run wrote after it, as `truncate_metrics` drops
  their records. With `workdir` None nothing is written: the records are only kept. `name`:
  the file's (a multi-process sweep's other processes write their own).
  """

  def __init__(
    self, workdir: str | None, tensorboard: bool = False, purge_step=None, name: str = METRICS
  ):
    self.path = None if workdir is None else os.path.join(workdir, name)
    self.records = []
    self._events = None
    if tensorboard:
      check_tensorboard(tensorboard, workdir)
      self._events = tensorboard_writer(os.path.join(workdir, TENSORBOARD_DIR), purge_step)

  def write(self, step: int, **metrics) -> None:
    record = {"step": int(step), **{k: _to_python(v) for k, v in metrics.items()}}
    self.records.append(record)
    if self.path is not None:
      with writing(self.path), open(self.path, "a") as f:
        f.write(json.dumps(record) + "\n")
    if self._events is not None:
      for tag, value in scalars(record):
        self._events.add_scalar(tag, value, record["step"])
      if "epoch" in record:
        self._events.flush()

  def close(self) -> None:
    """Flushes and closes the TensorBoard event file (nothing to do without one)."""
    if self._events is not None:
      self._events.close()
      self._events = None


def scalars(record: dict) -> list[tuple[str, float]]:
  """(TensorBoard tag, value) of every number of a metrics record but its step."""
  run = str(record.get("run", "")).replace(" ", "_").replace("/", "_of_")
  prefix = f"{run}/" if run else ""
  out = []
  for key, value in record.items():
    if key in ("step", "run") or isinstance(value, bool | str):
      continue
    if isinstance(value, list):
      out += [(f"{prefix}{key}/{i}", float(v)) for i, v in enumerate(value) if _number(v)]
    elif _number(value):
      out.append((f"{prefix}{key}", float(value)))
  return out


def _number(value) -> bool:
  return isinstance(value, int | float) and not isinstance(value, bool)


def check_tensorboard(enabled: bool, workdir: str | None) -> None:
  """With `enabled` (the config's `log_tensorboard`), a ConfigError when there is no
  `workdir` to write the events in, or when tensorboardX is missing (naming the extra to
  install): called before anything is written."""
  if not enabled:
    return
  if workdir is None:
    raise errors.ConfigError(
      "log_tensorboard=True needs a workdir to write the event files in; pass one, or set "
      "log_tensorboard=False (the records are kept in memory either way)."
    )
  if importlib.util.find_spec("tensorboardX") is None:
    raise errors.ConfigError(
      "log_tensorboard=True needs tensorboardX, which is not installed: "
      "pip install 'ssm-aimc[tensorboard]' (or set log_tensorboard=False)."
    )


def tensorboard_writer(logdir: str, purge_step=None):
  """A tensorboardX SummaryWriter in `logdir`."""
  import tensorboardX  # noqa: PLC0415  (an optional extra, imported when asked for)

  with writing(logdir):
    return tensorboardX.SummaryWriter(logdir, purge_step=purge_step, flush_secs=30)


def _to_python(v):
  if isinstance(v, np.generic | jax.Array | np.ndarray):
    v = np.asarray(v)
    return v.item() if v.ndim == 0 else v.tolist()
  return v


# ---------------------------------------------------------------------------------------
# Which config a workdir belongs to.
# ---------------------------------------------------------------------------------------


def _normalised(tree: dict, drop=NOT_TRAINING_KEYS) -> dict:
  """`tree` as JSON has it (tuples as lists) without the dotted paths of `drop`."""
  tree = json.loads(json.dumps(tree, default=_json_default))
  for path in drop:
    *parents, leaf = path.split(".")
    section = tree
    for p in parents:
      section = section.get(p, {})
    section.pop(leaf, None)
  return tree


def differences(a, b, path: str = "") -> list[str]:
  """'field: A there, B now' for every field where two config trees differ."""
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for key in sorted(set(a) | set(b)):
      x, y = a.get(key, "<missing>"), b.get(key, "<missing>")
      if x != y:
        out += differences(x, y, f"{path}.{key}")
    return out
  if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
    return [
      d
      for i, (x, y) in enumerate(zip(a, b, strict=True))
      for d in differences(x, y, f"{path}[{i}]")
    ]
  return [f"{path.lstrip('.')}: {a!r} there, {b!r} now"] if a != b else []


def first_difference(a, b, path: str = "") -> str:
  """'field: A there, B now' for the first field where two config trees differ ('' if none)."""
  found = differences(a, b, path)
  return found[0] if found else ""


def _listed(found: list[str], most: int = 4) -> str:
  more = f"; and {len(found) - most} more" if len(found) > most else ""
  return "; ".join(found[:most]) + more


def stored_config(workdir: str) -> dict | None:
  """The config.json of `workdir` as this version reads it (fields added since at their
  defaults, as in from_config), None without one; a ConfigError when it cannot be read."""
  path = os.path.join(workdir, CONFIG)
  if not os.path.exists(path):
    return None
  try:
    return experiment.to_dict(experiment.from_config(read_json(path)))
  except (errors.ConfigError, ValueError) as e:  # JSONDecodeError is a ValueError.
    raise errors.ConfigError(
      f"{workdir} holds a run whose config.json this version cannot read ({e}); it is left "
      "as it is. Remove it or pass another --workdir."
    ) from e


def check_owner(workdir: str, exp: experiment.Experiment) -> None:
  """ConfigError if `workdir` holds a run of another config (fields a training run does not
  read are ignored); a workdir without config.json belongs to anyone."""
  stored = stored_config(workdir)
  if stored is None:
    return
  stored, wanted = _normalised(stored), _normalised(experiment.to_dict(exp))
  if stored != wanted:
    raise errors.ConfigError(
      f"{workdir} holds a run of another config ({first_difference(stored, wanted)}); it is "
      "left as it is. Remove it or pass another --workdir (or --config.claim.models_dir)."
    )


def check_resume(workdir: str, exp: experiment.Experiment) -> None:
  """ConfigError naming every differing field if `workdir` holds a run of another config
  than `exp` outside RESUMABLE_KEYS: --mode=train would train it over. A workdir without
  config.json belongs to anyone."""
  stored = stored_config(workdir)
  if stored is None:
    return
  found = differences(
    _normalised(stored, RESUMABLE_KEYS), _normalised(experiment.to_dict(exp), RESUMABLE_KEYS)
  )
  if found:
    raise errors.ConfigError(
      f"{workdir} holds a run of another config ({_listed(found)}); it is left as it is. "
      f"Relaunch it with its own config (only {', '.join(RESUMABLE_KEYS)} may change) or "
      "pass another --workdir."
    )


def check_inference(workdir: str, exp: experiment.Experiment) -> None:
  """ConfigError naming every differing field if `workdir`'s run was trained with another
  model or data than `exp` (INFERENCE_KEYS up to INFERENCE_FREE_KEYS); quantization,
  hardware and the rest are free. A workdir without config.json is not checked."""
  stored = stored_config(workdir)
  if stored is not None:
    check_same_model(stored, exp, f"{workdir} holds a model")


def check_same_model(stored: dict, exp: experiment.Experiment, what: str) -> None:
  """ConfigError naming every differing field if the config tree `stored` (a config.json,
  or `experiment.to_dict` of a model trained in memory) has another model or data than
  `exp` (INFERENCE_KEYS up to INFERENCE_FREE_KEYS); `what` starts the message."""
  pick = lambda tree: {k: tree.get(k) for k in INFERENCE_KEYS}
  found = differences(
    pick(_normalised(stored, INFERENCE_FREE_KEYS)),
    pick(_normalised(experiment.to_dict(exp), INFERENCE_FREE_KEYS)),
  )
  if found:
    raise errors.ConfigError(
      f"{what} trained with another config ({_listed(found)}): its "
      "checkpoint is only evaluated or deployed with its own model and data settings."
    )


def cached_json(path: str, key, compute, normalise=None) -> dict:
  """compute()'s dict, kept in the JSON file `path` with `key` under "config" (a JSON-able
  description of what made it: an experiment's to_dict, or a list of them) and the seconds
  compute() took under "wall_time_s": reused for the same key, a ConfigError (the file never
  overwritten) when it holds another's or none. `normalise(stored key)` reads a key an
  older version wrote as this one would write it (e.g. config fields added since, at their
  defaults) before the comparison."""
  key = json.loads(to_json(key))
  if os.path.exists(path):
    stored = read_json(path)
    if normalise is not None and "config" in stored:
      stored = {**stored, "config": json.loads(to_json(normalise(stored["config"])))}
    if stored.get("config") != key:
      why = first_difference(stored["config"], key) if "config" in stored else "none recorded"
      raise errors.ConfigError(f"{path} holds results of another config ({why}); remove it.")
    return stored
  tick = time.time()
  results = compute()
  results = {**results, "wall_time_s": time.time() - tick, "config": key}
  write_json(path, results)
  return results


def finished(workdir: str, exp: experiment.Experiment, done_file: str = RESULTS) -> bool:
  """Whether `workdir` already holds `done_file` from a run of `exp` (`check_owner`)."""
  check_owner(workdir, exp)
  return os.path.exists(os.path.join(workdir, done_file))


# ---------------------------------------------------------------------------------------
# Checkpoints.
# ---------------------------------------------------------------------------------------


def checkpoint_manager(directory: str, max_to_keep: int, best: bool = False):
  """Orbax manager for the last `max_to_keep` states, or (best=True) the best by val acc."""
  options = ocp.CheckpointManagerOptions(
    max_to_keep=max_to_keep,
    create=True,
    best_fn=(lambda m: m["val_accuracy"]) if best else None,
    best_mode="max",
    enable_async_checkpointing=False,
  )
  try:
    return ocp.CheckpointManager(os.path.abspath(directory), options=options)
  except ValueError as e:  # Orbax reads the saved metrics of a best manager at once.
    raise errors.CheckpointError(
      f"Could not read the checkpoints in {directory} (a corrupt file: {e}); move the "
      "folder aside to go on without it."
    ) from e


def checkpoint_item(state) -> dict:
  """The saved part of a TrainState: step, params and optimizer state, and the BatchNorm
  running statistics of a model that has them (a model without saves what it always did)."""
  item = {"step": state.step, "params": state.params, "opt_state": state.opt_state}
  if state.batch_stats:
    item["batch_stats"] = state.batch_stats
  return item


def save(manager, state, metrics: dict | None = None) -> None:
  """Saves `state` at its step; a failing write (orbax reports a full disk or a read-only
  filesystem as an OSError or a ValueError from its storage layer) is a WorkdirError, and
  the half-written folder is removed by the next launch (`remove_partial_checkpoints`)."""
  step = int(state.step)
  try:
    manager.save(step, args=ocp.args.StandardSave(checkpoint_item(state)), metrics=metrics)
    manager.wait_until_finished()
  except (OSError, ValueError) as e:
    reason = (getattr(e, "strerror", None) or str(e)).strip().splitlines()[0][:300]
    raise errors.WorkdirError(
      f"Could not save checkpoint step {step} in {manager.directory}: {reason}; the "
      "checkpoints saved before are intact."
    ) from e


def restore_state(manager, step: int, state):
  """Restores step/params/opt_state (and batch_stats) saved at `step` into a state of the
  same structure."""
  abstract = jax.tree.map(ocp.tree.to_shape_dtype_struct, checkpoint_item(state))
  try:
    item = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  except Exception as e:  # Orbax raises many types for corrupt or mismatched files.
    raise errors.CheckpointError(
      f"Could not restore checkpoint step {step} from {manager.directory}: {e}"
    ) from e
  return state.replace(**item)


def load_state(workdir: str, state, which: str = "best"):
  """Another run's best (or latest) checkpoint, into `state`. Returns (state, step)."""
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


def best_val_accuracy(manager) -> float | None:
  """The validation accuracy recorded with the best manager's checkpoint, or None."""
  step = manager.latest_step()
  metrics = manager.metrics(step) if step is not None else None
  return None if not metrics else float(metrics["val_accuracy"])


def trained_with(workdir: str, section: str) -> bool:
  """Whether the run that wrote workdir/config.json had `section`.enabled (quant, hardware)."""
  path = os.path.join(workdir, CONFIG)
  return os.path.exists(path) and bool(read_json(path).get(section, {}).get("enabled", False))
