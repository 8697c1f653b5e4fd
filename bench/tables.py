"""What the README table scripts share (qat_table, noise_table, prune_table, deploy_table).

Every trained model is a run of `ssm_aimc.runs.Runs`: trained on first use, reused when its
folder holds a finished run of the same config, and a ConfigError when another config
wrote it. A run's recipe is the whole experiment of a config file (as `launch.py
--config=FILE --config.k=v` would build it), so each folder holds exactly the run a user
would get from that command. Evaluations and deployments are `cached` with the experiment
that made them, under the same rule.
"""

import ast
import importlib
import json
import logging as py_logging
import os
import statistics
import sys

from absl import logging

# The repository root: config files are imported as modules (configs.default, ...).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssm_aimc import experiment, runs  # noqa: E402
from ssm_aimc import workdir as workdir_lib  # noqa: E402

# The runs log as launch.py's do, without orbax's per-checkpoint INFO chatter.
logging.get_absl_handler().addFilter(
  lambda record: record.levelno >= py_logging.WARNING or "orbax" not in record.pathname
)

FLOAT_CONFIG = {"digits": "configs/default.py", "mnist1d": "configs/mnist1d.py"}
# The models of noise_table.py (and deployed by deploy_table.py): folder -> (table row,
# training config file, fine-tuned from the float model; None: the float model itself).
NOISE_MODELS = {
  "float": ("Float", None),
  "qat_w4a8": ("QAT W4A8", "configs/qat_w4a8.py"),
  "noise_aware": ("Noise-aware (float)", "configs/noise_aware.py"),
  "noise_aware_w4a8": ("Noise-aware + QAT W4A8", "configs/noise_aware_w4a8.py"),
}


def parse(pairs: list[str]) -> dict:
  """["k=v", ...] (an --extra flag) -> {k: v}, each v read as a Python literal if it is one."""
  out = {}
  for pair in pairs:
    key, _, text = pair.partition("=")
    try:
      out[key] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      out[key] = text
  return out


def load(path: str, overrides: dict) -> experiment.Experiment:
  """The experiment of config file `path` ("configs/x.py[:variant]") with {dotted key: value}
  set as launch.py's --config.k=v flags set them, and no progress bar."""
  file, _, variant = path.partition(":")
  module = importlib.import_module(file.removesuffix(".py").replace("/", "."))
  exp = experiment.from_config(module.get_config(variant))
  return experiment.override(exp, {**overrides, "progress_bar": False})


def recipe(path: str, overrides: dict, init_from: str = "") -> dict:
  """The Runs recipe of config file `path` with `overrides`: its whole experiment."""
  return {"init_from": init_from, "overrides": experiment.to_dict(load(path, overrides))}


def family(root: str, task: str, common: dict, configs: dict) -> runs.Runs:
  """The float model of `task` in root/float and, fine-tuned from it, one run per
  {folder: (config file, overrides)} of `configs`; `common` overrides every run."""
  recipes = {"float": recipe(FLOAT_CONFIG[task], common)}
  for folder, (path, overrides) in configs.items():
    recipes[folder] = recipe(path, {**overrides, **common}, init_from="float")
  return runs.Runs(load(FLOAT_CONFIG[task], common), root, recipes)


def noise_models(out: str, task: str, seed: int) -> runs.Runs:
  """NOISE_MODELS of `task` and training `seed` in OUT/TASK/seedS."""
  configs = {folder: (path, {}) for folder, (_, path) in NOISE_MODELS.items() if path}
  common = {"data.task": task, "seed": seed}
  return family(os.path.join(out, task, f"seed{seed}"), task, common, configs)


def cached(path: str, exp: experiment.Experiment, compute) -> dict:
  """compute()'s results kept in `path` with the experiment that made them
  (`workdir.cached_json`)."""
  return workdir_lib.cached_json(path, experiment.to_dict(exp), compute)


def write(folder: str, name: str, text: str, obj) -> None:
  """Prints the markdown table `text`; writes it to folder/NAME.md and `obj` to NAME.json."""
  print(text)
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(folder, f"{name}.md"), "w") as f:
    f.write(text + "\n")
  with open(os.path.join(folder, f"{name}.json"), "w") as f:
    json.dump(obj, f, indent=1)


def mean_std(values) -> tuple[float, float]:
  return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
