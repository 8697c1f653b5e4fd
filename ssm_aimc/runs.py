"""A named family of trained runs in one folder: each trained on first use, reused after.

The cache of the claims (ssm_aimc.claims) and the bench table scripts. A run is a recipe:
nested overrides of a base experiment, optionally fine-tuned from another run of the family
(`init_from`). Run `name` lives in root/<name> and is an ordinary --mode=train workdir
(`launch.py --mode=train` with the same config gives the same folder). A folder that
already holds results.json from the same config is reused; one written by another config
is an error and is never trained over (`workdir.check_owner`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from absl import logging

from ssm_aimc import errors, experiment, train
from ssm_aimc import workdir as workdir_lib


def flatten(overrides: Mapping | None, prefix: str = "") -> dict:
  """{"quant": {"weight_bits": 4}} -> {"quant.weight_bits": 4}."""
  out = {}
  for key, value in (overrides or {}).items():
    if isinstance(value, Mapping):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


class Runs:
  """The runs of `recipes` ({name: {"init_from": name or "", "overrides": nested dict}}) on
  `base`, in `root`.

  Attributes:
    seconds: stage -> wall time (s): each run's training as its results.json recorded it,
      and whatever else the caller records (evaluations, deployments, sweeps); None where
      a kept stage recorded none.
    reused: names found already trained (by this or an earlier process).
  """

  def __init__(self, base: experiment.Experiment, root: str, recipes: Mapping):
    self.base, self.root, self.recipes = base, root, recipes
    self.seconds: dict[str, float] = {}
    self.reused: list[str] = []

  def names(self) -> list[str]:
    return list(self.recipes)

  def workdir(self, name: str) -> str:
    return os.path.join(self.root, name)

  def experiment(self, name: str) -> experiment.Experiment:
    """Run `name`'s experiment (ConfigError for an unknown name or override key)."""
    if name not in self.recipes:
      raise errors.ConfigError(
        f"Run {name!r} is needed but not defined (defined: {sorted(self.recipes)})."
      )
    recipe = self.recipes[name]
    overrides = flatten(recipe.get("overrides"))
    if recipe.get("init_from"):
      overrides["init_checkpoint"] = self.workdir(recipe["init_from"])
    try:
      return experiment.override(self.base, overrides)
    except errors.ConfigError as e:
      raise errors.ConfigError(f"Run {name!r}: {e}") from e

  def train(self, name: str) -> dict:
    """results.json of run `name`, training it (and the run it starts from) if needed."""
    exp = self.experiment(name)  # Validates the name first.
    if self.recipes[name].get("init_from"):
      self.train(self.recipes[name]["init_from"])
    workdir = self.workdir(name)
    if workdir_lib.finished(workdir, exp):
      if name not in self.reused and name not in self.seconds:
        self.reused.append(name)
      logging.info("Run %s: reusing %s.", name, workdir)
    else:
      logging.info("Run %s: training in %s.", name, workdir)
      train.train_and_evaluate(exp, workdir)
    results = workdir_lib.read_json(os.path.join(workdir, workdir_lib.RESULTS))
    self.seconds[name] = float(results.get("wall_time_s", 0.0))
    return results

  def deployed(self, name: str, results: dict) -> tuple[experiment.Experiment, str]:
    """(experiment, workdir) of run `name` as deployed: the smaller exported one if pruned."""
    exp, workdir = self.experiment(name), self.workdir(name)
    if "pruned_dir" in results:
      prune = results["prune"]
      exp = train.pruned_experiment(exp, prune["d_state_after"], prune.get("d_model_after"))
      workdir = os.path.join(workdir, train.PRUNED_DIR)
    return exp, workdir

  def standalone_seconds(self, own_seconds: float) -> float | None:
    """What running the caller alone would cost: its own time plus every reused stage's;
    None (unknown) when a reused stage recorded no time."""
    reused = [self.seconds[n] for n in self.reused]
    return None if None in reused else own_seconds + sum(reused)
