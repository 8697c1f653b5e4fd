r"""Command-line entry point: flags -> one library call.

  python launch.py --config=configs/default.py --workdir=runs/default
  python launch.py --config=configs/default.py:smoke --workdir=/tmp/smoke \
      --config.model.d_model=32 --config.num_epochs=3
  python launch.py --config=configs/default.py --workdir=runs/default --mode=evaluate
  python launch.py --config=configs/default.py --workdir=runs/default --mode=deploy
  python launch.py --config=configs/sweep_bits.py --workdir=runs/sweep --mode=sweep
  python launch.py --config=configs/claims/c1_cost.py --workdir=runs/claims/c1 --mode=claim

Errors caused by the input (unknown config key, bad value, missing data file or
checkpoint, a diverging run) print one line and exit with status 1; anything else is a bug
and keeps its traceback.
"""

import importlib
import importlib.util
import logging as py_logging
import re
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from ssm_aimc import cost, errors, experiment

# mode -> (module of ssm_aimc, function(config, workdir)); a mode's module is imported only
# when it runs.
MODES = {
  "train": ("train", "train_and_evaluate"),
  "evaluate": ("train", "evaluate"),
  "deploy": ("deploy", "deploy"),
  "sweep": ("sweep", "run_sweep"),
  "claim": ("claims", "run_claim"),
}

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Path to a config file, optionally with :variant.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_MODE = flags.DEFINE_enum("mode", "train", list(MODES), "What to do with the config.")
flags.mark_flags_as_required(["config", "workdir"])


def _fail(message) -> None:
  """The one line an input error prints, and exit status 1."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(1)


def _config_tree(argv) -> dict | None:
  """The nested dict of the --config file of `argv` (path[:variant]), None without one."""
  values = []
  for i, arg in enumerate(argv):
    if re.match(r"^--?config=", arg):
      values.append(arg.split("=", 1)[1])
    elif re.fullmatch(r"--?config", arg) and i + 1 < len(argv):
      values.append(argv[i + 1])
  if not values:
    return None
  path, *variant = values[-1].split(":", 1)
  spec = importlib.util.spec_from_file_location("config_file", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(*variant).to_dict()


def _unknown_override(argv) -> errors.ConfigError | None:
  """The ConfigError naming the first --config.<key> of `argv` that the config file lacks
  (with the closest valid key), or None when every key exists."""
  paths = [m[2] for m in (re.match(r"^--?(no)?config\.([^=]+)", a) for a in argv) if m]
  tree = _config_tree(argv) if paths else None
  if tree is None:
    return None
  for path in paths:
    try:
      experiment.find_key(tree, path)
    except errors.ConfigError as e:
      return e
  return None


def _parse_flags(argv):
  """absl's flag parsing, with bad flags as one `error:` line: an unknown or misspelled
  --config.<key> (which ml_collections raises as an AttributeError, tracebacks and all)
  names the closest valid key; a bad flag value says why."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).replace("\n", " "))
  except (AttributeError, KeyError):
    unknown = _unknown_override(argv)
    if unknown is None:  # Not an unknown key: a bug, which keeps its traceback.
      raise
    _fail(unknown)


def _quiet_libraries(record: py_logging.LogRecord) -> bool:
  """Drops orbax's per-checkpoint INFO chatter; keeps its warnings and errors."""
  return record.levelno >= py_logging.WARNING or "orbax" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(_quiet_libraries)
  logging.info("JAX %s, devices: %s", jax.__version__, jax.devices())
  logging.info("Config:\n%s", _CONFIG.value)
  try:
    module, function = MODES[_MODE.value]
    run = getattr(importlib.import_module(f"ssm_aimc.{module}"), function)
    results = run(_CONFIG.value, _WORKDIR.value)
  except errors.UserError as e:  # Printed once, here (not logged as well).
    _fail(e)
  print(f"\n{_MODE.value} results ({_WORKDIR.value}):\n{cost.format_table(results)}")


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
