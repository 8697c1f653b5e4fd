"""What a run leaves in its workdir, and the rule that a workdir belongs to one config.

  config.json       the run's config (`experiment.to_dict`)
  metrics.jsonl     one JSON object per logged step and per epoch
  checkpoints/      the last `keep_checkpoints` states (orbax), for resuming
  best/             the state with the best validation accuracy
  results.json      what the run measured (train), results_evaluate.json (evaluate), ...

Every JSON file is written to a temporary name and renamed, so a crash never leaves half a
file. `check_owner` is the one cache rule of the project, used by the claims, the sweeps
and the bench table scripts alike: a workdir whose config.json comes from another config
is refused (a ConfigError naming the first field that differs), never trained over.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from ssm_aimc import errors, experiment

CONFIG = "config.json"
METRICS = "metrics.jsonl"
RESULTS = "results.json"
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"
# Sections a training run does not read: ignored when deciding whether a workdir holds a
# run of a config (the progress bar; the chip a run is deployed on, --mode=deploy's own).
NOT_TRAINING_KEYS = ("progress_bar", "deploy")


def _json_default(obj):
  if isinstance(obj, np.generic | jax.Array | np.ndarray):
    return np.asarray(obj).tolist()
  if isinstance(obj, tuple):
    return list(obj)
  raise TypeError(f"Not JSON serialisable: {type(obj)}")


def to_json(obj) -> str:
  """`obj` as indented JSON; numpy and JAX values as numbers or lists."""
  return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


def write_json(path: str, obj) -> None:
  """Writes JSON to a temporary file and renames it, so a crash never leaves half a file."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(to_json(obj))
  os.replace(tmp, path)


def read_json(path: str):
  with open(path) as f:
    return json.load(f)


def write_config(workdir: str, exp: experiment.Experiment) -> None:
  write_json(os.path.join(workdir, CONFIG), experiment.to_dict(exp))


class MetricsWriter:
  """Appends one JSON object per line to workdir/metrics.jsonl."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, METRICS)

  def write(self, step: int, **metrics) -> None:
    record = {"step": int(step), **{k: _to_python(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")


def _to_python(v):
  if isinstance(v, np.generic | jax.Array | np.ndarray):
    v = np.asarray(v)
    return v.item() if v.ndim == 0 else v.tolist()
  return v


# ---------------------------------------------------------------------------------------
# Which config a workdir belongs to.
# ---------------------------------------------------------------------------------------


def _normalised(tree: dict) -> dict:
  tree = json.loads(json.dumps(tree, default=_json_default))  # Tuples become lists.
  for key in NOT_TRAINING_KEYS:
    tree.pop(key, None)
  return tree


def first_difference(a, b, path: str = "") -> str:
  """'field: A there, B now' for the first field where two config trees differ ('' if none)."""
  if isinstance(a, dict) and isinstance(b, dict):
    for key in sorted(set(a) | set(b)):
      if a.get(key, "<missing>") != b.get(key, "<missing>"):
        return first_difference(a.get(key, "<missing>"), b.get(key, "<missing>"), f"{path}.{key}")
    return ""
  if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
      if x != y:
        return first_difference(x, y, f"{path}[{i}]")
    return ""
  return f"{path.lstrip('.')}: {a!r} there, {b!r} now"


def check_owner(workdir: str, exp: experiment.Experiment) -> None:
  """ConfigError if `workdir` holds a run of another config (fields a training run does not
  read are ignored); a workdir without config.json belongs to anyone."""
  path = os.path.join(workdir, CONFIG)
  if not os.path.exists(path):
    return
  try:  # Fields added since the run was written take their defaults, as in from_config.
    stored = experiment.to_dict(experiment.from_config(read_json(path)))
  except errors.ConfigError as e:
    raise errors.ConfigError(
      f"{workdir} holds a run whose config.json this version cannot read ({e}); it is left "
      "as it is. Remove it or pass another --workdir."
    ) from e
  stored, wanted = _normalised(stored), _normalised(experiment.to_dict(exp))
  if stored != wanted:
    raise errors.ConfigError(
      f"{workdir} holds a run of another config ({first_difference(stored, wanted)}); it is "
      "left as it is. Remove it or pass another --workdir (or --config.claim.models_dir)."
    )


def cached_json(path: str, key, compute) -> dict:
  """compute()'s dict, kept in the JSON file `path` with `key` under "config" (a JSON-able
  description of what made it: an experiment's to_dict, or a list of them) and the seconds
  compute() took under "wall_time_s": reused for the same key, a ConfigError (the file never
  overwritten) when it holds another's or none."""
  key = json.loads(to_json(key))
  if os.path.exists(path):
    stored = read_json(path)
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
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def checkpoint_item(state) -> dict:
  """The saved part of a TrainState: step, params and optimizer state, and the BatchNorm
  running statistics of a model that has them (a model without saves what it always did)."""
  item = {"step": state.step, "params": state.params, "opt_state": state.opt_state}
  if state.batch_stats:
    item["batch_stats"] = state.batch_stats
  return item


def save(manager, state, metrics: dict | None = None) -> None:
  manager.save(int(state.step), args=ocp.args.StandardSave(checkpoint_item(state)), metrics=metrics)
  manager.wait_until_finished()


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
