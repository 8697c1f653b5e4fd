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
import logging as py_logging
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from ssm_aimc import cost, errors

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
  except errors.UserError as e:
    logging.error("%s: %s", type(e).__name__, e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(f"\n{_MODE.value} results ({_WORKDIR.value}):\n{cost.format_table(results)}")


if __name__ == "__main__":
  app.run(main)
