r"""The command line: flags -> one library call (`ssm-aimc`, `python -m ssm_aimc` and a
clone's `python launch.py` are this module's `main`).

  ssm-aimc --config=default --workdir=runs/default
  ssm-aimc --config=default:smoke --workdir=/tmp/smoke --config.model.d_model=32
  ssm-aimc --config=default --workdir=runs/default --mode=evaluate
  ssm-aimc --config=default --workdir=runs/default --mode=deploy
  ssm-aimc --config=sweep_bits --workdir=runs/sweep --mode=sweep
  ssm-aimc --config=claims/c1_cost --workdir=runs/claims/c1 --mode=claim
  ssm-aimc --config=sweep_bits --workdir=runs/sweep --mode=sweep \
      --coordinator_address=127.0.0.1:8476 --num_processes=2 --process_id=0   # and =1
  srun ssm-aimc --config=sweep_bits --workdir=runs/sweep --mode=sweep --distributed
  python launch.py --config=configs/default.py:smoke --workdir=/tmp/smoke   # in a clone

--config is a config file, optionally with :variant. A path that exists as a file is that
file; otherwise it names a config shipped in the package (ssm_aimc/configs: "default",
"default.py", "configs/default.py", "claims/c1_cost"), so the packaged configs work from any
directory. `ssm_aimc.configs.names()` lists them.

A launch prints a short header (mode, task, model, workdir and where the config is saved;
not the config itself), progress of each long stage (a bar on a terminal, a few log lines
otherwise), each table once and the results. Errors caused by the input (unknown config
key, bad value, missing data file or checkpoint, a diverging run) print one `error:` line
and exit with status 1; anything else is a bug and keeps its traceback.

A sweep runs on several processes (README "Sweeps beyond one machine"): each process is
launched with the same flags and its own --process_id, or with --distributed where JAX
reads the cluster from the environment (SLURM's srun, TPU pods); `ssm_aimc.distributed`
joins them before anything touches a device.
"""

import importlib
import importlib.util
import os
import re
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

# Nothing here may touch a JAX device before `distributed.initialize` (a multi-process
# sweep): ssm_aimc.experiment (and workdir, which imports it) builds arrays when imported,
# so they are imported where used, after it.
from ssm_aimc import configs, cost, distributed, errors, progress

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
  "config",
  None,
  "Config file, optionally with :variant; a name such as default or claims/c1_cost that is "
  "not a file is the config of that name shipped in the package.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_MODE = flags.DEFINE_enum("mode", "train", list(MODES), "What to do with the config.")
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address", None, "host:port of process 0 in a multi-process --mode=sweep."
)
_NUM_PROCESSES = flags.DEFINE_integer(
  "num_processes", None, "Processes of a multi-process --mode=sweep (jax.distributed)."
)
_PROCESS_ID = flags.DEFINE_integer(
  "process_id", None, "This process's id in a multi-process --mode=sweep, from 0."
)
_DISTRIBUTED = flags.DEFINE_bool(
  "distributed",
  False,
  "Join the cluster JAX detects from the environment (SLURM, TPU pods) for --mode=sweep.",
)
flags.mark_flags_as_required(["config", "workdir"])
MULTI_PROCESS_MODES = ("sweep",)


def _fail(message) -> None:
  """The one line an input error prints, and exit status 1."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(1)


def _config_positions(argv) -> list[tuple[int, str]]:
  """(index into argv, value) of every --config value of `argv` (`--config=x`, `--config x`)."""
  found = []
  for i, arg in enumerate(argv):
    if re.match(r"^--?config=", arg):
      found.append((i, arg.split("=", 1)[1]))
    elif re.fullmatch(r"--?config", arg) and i + 1 < len(argv):
      found.append((i + 1, argv[i + 1]))
  return found


def _resolve_config(argv) -> list[str]:
  """`argv` with every --config value made a file path (ssm_aimc.configs.resolve: a packaged
  config's name becomes its file); a name that is neither is a ConfigError."""
  argv = list(argv)
  for i, value in _config_positions(argv):
    argv[i] = argv[i].removesuffix(value) + configs.resolve(value)  # "--config=" kept.
  return argv


def _load_config(argv):
  """The ConfigDict of the last --config of `argv` (path[:variant]), None without one."""
  values = _config_positions(argv)
  if not values:
    return None
  path, *variant = values[-1][1].split(":", 1)
  spec = importlib.util.spec_from_file_location("config_file", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(*variant)


def _unknown_override(argv) -> errors.ConfigError | None:
  """The ConfigError naming the first --config.<key> of `argv` that the config file lacks
  (with the closest valid key), or None when every key exists."""
  paths = [m[2] for m in (re.match(r"^--?(no)?config\.([^=]+)", a) for a in argv) if m]
  config = _load_config(argv) if paths else None
  if config is None:
    return None
  from ssm_aimc import experiment  # noqa: PLC0415  (module comment at the imports)

  tree = config.to_dict()
  for path in paths:
    try:
      experiment.find_key(tree, path)
    except errors.ConfigError as e:
      return e
  return None


def _config_file_error(argv, given: str) -> str | None:
  """Why the --config file of `argv` (the user's `given` --config) does not load (its
  exception's message, without ml_collections' traceback), or None when it loads."""
  try:
    _load_config(argv)
  except Exception as e:  # noqa: BLE001 (any failure of a config file is the user's)
    return f"--config={given}: {type(e).__name__}: {e}"
  return None


def _parse_flags(argv):
  """absl's flag parsing, with bad flags as one `error:` line: a --config that is neither a
  file nor a packaged config lists the packaged ones; a config file that fails to load says
  why (ml_collections folds a traceback into its message); an unknown or misspelled
  --config.<key> (which ml_collections raises as an AttributeError, tracebacks and all)
  names the closest valid key; a bad flag value says why."""
  given = _config_positions(argv)
  try:
    argv = _resolve_config(argv)
  except errors.ConfigError as e:
    _fail(e)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    loading = "Error whilst parsing config file" in str(e) and given
    if loading and (why := _config_file_error(argv, given[-1][1])):
      _fail(why)
    _fail(str(e).replace("\n", " "))
  except (AttributeError, KeyError):
    unknown = _unknown_override(argv)
    if unknown is None:  # Not an unknown key: a bug, which keeps its traceback.
      raise
    _fail(unknown)


def header(config, mode: str, workdir: str) -> str:
  """The two lines a launch starts with: what runs where (the config itself is saved in the
  workdir, not printed), and on what."""
  from ssm_aimc import workdir as workdir_lib  # noqa: PLC0415  (module comment at the imports)

  model = config.model_name
  if "model" in config and "d_model" in config.model:
    m = config.model
    layers = f"{m.n_layers} layer" + ("s" if m.n_layers != 1 else "")
    model += f" ({layers}, H={m.d_model}, N={m.d_state})"
  saved = os.path.join(workdir, workdir_lib.CONFIG)
  devices = jax.devices()
  return (
    f"ssm-aimc {mode}: task {config.data.task}, model {model}, workdir {workdir} "
    f"(config: {saved})\n"
    f"JAX {jax.__version__} on {len(devices)} {devices[0].platform} device(s)"
  )


def _join_processes(mode: str) -> None:
  """jax.distributed.initialize from the process flags (`distributed.initialize` checks
  them), before anything touches a device; only a sweep runs on several processes."""
  several = _DISTRIBUTED.value or (_NUM_PROCESSES.value or 1) > 1
  if several and mode not in MULTI_PROCESS_MODES:
    raise errors.ConfigError(
      f"--mode={mode} runs in one process; only --mode=sweep takes --num_processes > 1 or "
      "--distributed."
    )
  distributed.initialize(
    _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, auto=_DISTRIBUTED.value
  )


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  progress.show_info_logs()
  config, mode, workdir = _CONFIG.value, _MODE.value, _WORKDIR.value
  try:
    _join_processes(mode)
  except errors.UserError as e:
    _fail(e)
  print(header(config, mode, workdir), flush=True)
  try:
    module, function = MODES[mode]
    run = getattr(importlib.import_module(f"ssm_aimc.{module}"), function)
    results = run(config, workdir)
  except errors.UserError as e:  # Printed once, here (not logged as well).
    _fail(e)
  print(f"\n{mode} results ({workdir}):\n{cost.format_table(results)}")


def main(argv=None) -> None:
  """The `ssm-aimc` console script: parses `argv` (default sys.argv) and runs the mode."""
  app.run(_main, argv=argv, flags_parser=_parse_flags)
