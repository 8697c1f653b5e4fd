"""The Python API: train, evaluate, deploy and sweep from a notebook or a script.

  import ssm_aimc
  from configs import default

  result = ssm_aimc.fit(default.get_config("smoke"), overrides={"model.d_model": 32})
  result.test_accuracy, result.history, result.report      # in memory, nothing written
  ssm_aimc.evaluate(trained=result, overrides={"quant.enabled": True})   # PTQ, in memory
  ssm_aimc.deploy(trained=result)                          # simulated chips, in memory
  ssm_aimc.sweep(sweep_bits.get_config())                  # a population sweep's rows

  ssm_aimc.fit(config, "runs/x")          # exactly `launch.py --mode=train --workdir=runs/x`
  ssm_aimc.evaluate(config, "runs/x")     # exactly --mode=evaluate (reads runs/x/best;
                                          # config defaults to runs/x/config.json)
  ssm_aimc.deploy(config, "runs/x")       # exactly --mode=deploy
  ssm_aimc.sweep(config, "runs/sweep")    # exactly --mode=sweep

`config` is a ConfigDict (configs/*.py get_config), a nested dict (a run's config.json) or
an `experiment.Experiment`; `overrides` sets {dotted path: value} on it, as
--config.<path>=value does. A key that no section has is a ConfigError naming the closest
valid key, before any work.

With a workdir, each function is its launch.py mode: the same code path, the same files
and the same numbers (a workdir of another config is refused; a training workdir with
checkpoints is resumed). Without one, nothing is written anywhere (no checkpoints, so
nothing to resume; no exports, plots or TensorBoard events, a ConfigError with
`log_tensorboard`): the same code path with the writing left out, hence the same numbers,
bit for bit. Evaluation and deployment read a trained model: from a workdir's best
checkpoint (`workdir=`), or from a `FitResult` in memory (`trained=`), never both.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

from ssm_aimc import cost, errors, experiment, train
from ssm_aimc import deploy as deploy_lib
from ssm_aimc import sweep as sweep_lib
from ssm_aimc import workdir as workdir_lib


@dataclasses.dataclass(frozen=True)
class FitResult:
  """What `fit` trained.

  Attributes:
    experiment: the experiment trained (the config with the overrides applied).
    params: the parameters of the best state by validation accuracy (the state that was
      tested), a pytree of arrays; with pruning the masked params of the model as trained.
    batch_stats: their BatchNorm running statistics ({} for a model without BatchNorm).
    pruned_params: with `prune.enabled`, the params of the physically smaller model (its
      d_state and d_model in results["prune"]["d_state_after"], ["d_model_after"]); else
      None.
    history: the metrics records in order, one dict per logged step (step, train_loss,
      train_accuracy) and per epoch (also epoch, val_loss, val_accuracy, wall_time_s), as
      in metrics.jsonl.
    results: the final results (results.json's dict): test_accuracy, test_loss,
      val_accuracy, checkpoint_step, the cost keys, analog accuracies when simulated, ...
    report: the cost report (`cost.CostReport`: params, memory bits, MACs, ...).
    workdir: the workdir it was trained in, or None (in memory).
  """

  experiment: experiment.Experiment
  params: object
  batch_stats: object
  pruned_params: object
  history: tuple[dict, ...]
  results: dict
  report: cost.CostReport
  workdir: str | None = None

  @property
  def test_accuracy(self) -> float:
    return self.results["test_accuracy"]


def as_experiment(config, overrides: Mapping | None = None) -> experiment.Experiment:
  """The Experiment of `config` (ConfigDict, nested dict or Experiment) with the dotted
  `overrides` applied; a ConfigError naming the closest key for an unknown one."""
  if config is None:
    raise errors.ConfigError(
      "A config is needed: a ConfigDict (e.g. configs/default.py get_config()), a nested "
      "dict or an experiment.Experiment."
    )
  if not isinstance(config, experiment.Experiment | Mapping) and not hasattr(config, "to_dict"):
    raise errors.ConfigError(
      f"config must be a ConfigDict, a nested dict or an experiment.Experiment, got "
      f"{type(config).__name__}."
    )
  exp = train.as_experiment(config)
  if overrides:
    if not isinstance(overrides, Mapping):
      raise errors.ConfigError(
        f"overrides must be a dict of dotted config path -> value, got {overrides!r}."
      )
    exp = experiment.override(exp, overrides)
  return exp


def fit(config, workdir: str | None = None, *, overrides: Mapping | None = None) -> FitResult:
  """Trains `config` (with `overrides`) and tests its best state; see the module doc.

  With `workdir`: `launch.py --mode=train` (checkpoints, metrics.jsonl, results.json, the
  training curves, exports; resumes a workdir holding checkpoints of this config). Without:
  nothing is written, the same numbers.
  """
  trained = train.train(as_experiment(config, overrides), workdir)
  return FitResult(
    experiment=trained.exp,
    params=trained.params,
    batch_stats=trained.batch_stats,
    pruned_params=trained.pruned_params,
    history=trained.history,
    results=trained.results,
    report=trained.report,
    workdir=workdir,
  )


def _model_source(config, workdir, trained, overrides, what: str):
  """(experiment, trained or None) of evaluate / deploy: a ConfigError unless exactly one
  of `workdir` and `trained` says where the model is."""
  if (workdir is None) == (trained is None):
    raise errors.ConfigError(
      f"{what} reads a trained model: pass either workdir= (its best checkpoint; the "
      "results are written there) or trained= (a FitResult, in memory), not "
      f"{'both' if workdir is not None else 'neither'}."
    )
  if trained is not None and not isinstance(trained, FitResult):
    raise errors.ConfigError(
      f"trained must be the FitResult of ssm_aimc.fit, got {type(trained).__name__}."
    )
  if config is None and trained is not None:
    config = trained.experiment
  elif config is None:
    config = workdir_lib.stored_config(workdir)  # The run's own config.json (None: none).
  return as_experiment(config, overrides), trained


def _trained(result: FitResult) -> train.Trained:
  return train.Trained(
    result.experiment,
    result.results,
    result.params,
    result.batch_stats,
    result.pruned_params,
    result.history,
    result.report,
  )


def evaluate(
  config=None,
  workdir: str | None = None,
  *,
  trained: FitResult | None = None,
  overrides: Mapping | None = None,
) -> dict:
  """Evaluates a trained model on the test split under `config`'s quantization (post-
  training quantization of a float model) and hardware (simulated chips); returns
  results_evaluate.json's dict.

  Args:
    config: the experiment to evaluate under (default: the trained model's own, from
      `trained` or the workdir's config.json); its model and data must be the trained
      model's (a ConfigError otherwise).
    workdir: `launch.py --mode=evaluate`: reads its best checkpoint and writes
      results_evaluate.json there.
    trained: a `FitResult`, evaluated in memory (nothing written).
    overrides: {dotted path: value} on `config`.
  """
  start_time = time.time()
  exp, result = _model_source(config, workdir, trained, overrides, "evaluate")
  if result is None:
    return train.evaluate(exp, workdir)
  return train.evaluate_inference(train.inference_of(exp, _trained(result)), None, start_time)


def deploy(
  config=None,
  workdir: str | None = None,
  *,
  trained: FitResult | None = None,
  overrides: Mapping | None = None,
) -> dict:
  """Programs a trained model onto simulated chips of `deploy.devices` and runs the test
  split step by step (ssm_aimc.deploy); returns deploy/results.json's dict (accuracy per
  device, tile mapping, energy per inference).

  Args:
    config, overrides: as `evaluate` (the chip: `config.deploy`, `config.hardware`).
    workdir: `launch.py --mode=deploy`: reads its best checkpoint and writes
      workdir/deploy/ (results.json, deploy_report.md, deploy.png and .pdf, export/).
    trained: a `FitResult`, deployed in memory (the export is made in memory too; nothing
      written, nothing printed).
  """
  start_time = time.time()
  exp, result = _model_source(config, workdir, trained, overrides, "deploy")
  if result is None:
    return deploy_lib.deploy_results(exp, workdir)
  specs = exp.chip_specs()  # Before any work, as deploy_results.
  run = train.inference_of(exp, _trained(result))
  return deploy_lib.deploy_inference(run, specs, None, start_time)


def sweep(config, workdir: str | None = None, *, overrides: Mapping | None = None) -> dict:
  """Trains the grid of `config.sweep` as populations (ssm_aimc.sweep); returns the
  summary with "rows" (one dict per grid point: the knobs and metrics of sweep.csv).

  With `workdir`: `launch.py --mode=sweep` (sweep.csv, sweep.json, metrics.jsonl, plots;
  a finished sweep of the same config is reused). Without: nothing written ("csv" None).
  """
  return sweep_lib.run_sweep(as_experiment(config, overrides), workdir)
