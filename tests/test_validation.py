"""Every field of the config has a stated domain, checked before any work: a value of the
wrong kind or outside the domain is one ConfigError naming the field, through Python and
through launch.py (one `error:` line, no traceback, nothing written).

The test enumerates the leaf fields of configs/default.py and of the sweep section, so a new
field fails `test_every_field_has_a_stated_domain` until it gets a row in OUT_OF_DOMAIN (or
is listed in ANY_VALUE: free text, such as a path checked when it is used)."""

import dataclasses
import os

import pytest

from configs import default, sweep_bits
from ssm_aimc import errors, experiment, quant
from ssm_aimc.hardware import energy
from tests.test_train import error_lines, launch


def leaves(tree, prefix="") -> dict:
  """{dotted path: value} of every leaf of a ConfigDict."""
  out = {}
  for key, value in tree.items():
    if hasattr(value, "items"):
      out.update(leaves(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


DEFAULT = leaves(default.get_config())
SWEEP = {k: v for k, v in leaves(sweep_bits.get_config()).items() if k.startswith("sweep.")}

# Fields where any value of the right kind is valid: paths and names checked where they are
# used (a missing file is its own one-line error), and the booleans.
ANY_VALUE = {"data.data_dir", "hardware.device_csv", "init_checkpoint"} | {
  k for k, v in {**DEFAULT, **SWEEP}.items() if isinstance(v, bool)
}

# Values of the right kind outside each field's domain.
OUT_OF_DOMAIN = {
  "batch_size": [0],
  "checkpoint_every_epochs": [0],
  "eval_batch_size": [0],
  "keep_checkpoints": [0],
  "log_every_steps": [0],
  "num_epochs": [0],
  "seed": [-1],
  "model_name": ["s5"],
  "data.classes": [(1,), (1, 1), (-1, 2)],
  "data.hd_classes": [(20,), (1, 1)],
  "data.hd_language": ["french"],
  "data.hd_subsample": [0],
  "data.mnist1d_samples": [5],
  "data.pathfinder_difficulty": ["hardest"],
  "data.pathfinder_resolution": [48],
  "data.seed": [-1],
  "data.task": ["imagenet"],
  "data.test_fraction": [0.0, 1.0],
  "data.val_fraction": [0.0, 1.0],
  "deploy.adc_bits": [0, 65],
  "deploy.dac_bits": [0],
  "deploy.devices": [("flash",)],
  "deploy.drift_times": [(-1.0,)],
  "deploy.folder": ["", "a/b", ".."],
  "deploy.headroom": [0.0],
  "deploy.mapping": ["shelf", "Packed"],
  "deploy.periphery_bits": [0],
  "deploy.read_rng": ["mersenne"],
  "deploy.recurrence_gain": ["gain"],
  "deploy.gain_reads": [-1],
  "deploy.gain_time_s": [float("nan")],
  "deploy.seeds": [0],
  "deploy.seeds_per_call": [0],
  "deploy.tile_cols": [0, 7],
  "deploy.tile_rows": [0],
  # Every energy constant is a finite number >= 0 (EnergyConstants).
  **{f"deploy.energy.{f.name}": [-1.0] for f in dataclasses.fields(energy.EnergyConstants)},
  "deploy.energy.columns_per_adc": [0],
  "hardware.adc_bits": [-1],
  "hardware.adc_bound": [0.0],
  "hardware.dac_bits": [-1],
  "hardware.device": ["flash"],
  "hardware.eval_seed": [-1],
  "hardware.eval_seeds": [0],
  "hardware.levels": [1],
  "hardware.mapping": ["row"],
  "hardware.output_noise": [-0.1],
  "hardware.a_noise": [-0.01, float("nan")],
  "hardware.g_max_fraction": [0.0, 1.5, float("nan")],
  "hardware.a_noise_on": ["b"],
  "hardware.prog_noise_scale": [-1.0],
  "hardware.prog_noise_scales": [(-1.0,)],
  "hardware.ramp_epochs": [-1.0],
  "hardware.read_noise_draw": ["never"],
  "hardware.read_noise_scale": [-1.0],
  "hardware.recurrence": ["analog"],
  "hardware.seeds_per_call": [0],
  "hardware.stuck_max": [1.5],
  "hardware.stuck_min": [-0.1],
  "hardware.t_inference": [-1.0],
  "model.a_init": ["random"],
  "model.activation": ["tanh"],
  "model.d_model": [0],
  "model.d_state": [3],
  "model.discretization": ["euler"],
  "model.dropout": [1.0],
  "model.method": ["magic"],
  "model.n_layers": [0],
  "model.norm": ["group"],
  "model.pooling": ["max"],
  "model.step_max": [1e-5],
  "model.step_min": [0.0],
  "optimizer.b1": [1.0],
  "optimizer.b2": [-0.1],
  "optimizer.end_lr_fraction": [-0.1],
  "optimizer.grad_clip": [-1.0],
  "optimizer.learning_rate": [0.0],
  "optimizer.rules": [(("(", 1.0, 0.0),), (("x", -1.0, 0.0),), (("x", 1.0),)],
  "optimizer.warmup_epochs": [-1.0],
  "optimizer.weight_decay": [-0.1],
  "prune.end_fraction": [0.0],
  "prune.ratio": [1.0],
  "prune.schedule": ["weekly"],
  "prune.scope": ["row"],
  "prune.score": ["random"],
  "prune.unit": ["layer"],
  "prune.method": ["random"],
  "prune.greedy_kind": ["linear"],
  "prune.tolerance_points": [-1.0],
  "quant.a_bar_bits": [0],
  "quant.a_bar_param": ["spherical"],
  "quant.act_bits": [0],
  "quant.mode": ["vector"],
  "quant.scheme": ["other"],
  "quant.weight_bits": [0, 65],
  # Every group width is 0 (inherit) or a valid width (QuantConfig).
  **{f"quant.group_bits.{g}": [-1] for g in quant.GROUPS},
  "sweep.a_bar_bits": [(0,)],
  "sweep.act_bits": [(65,)],
  "sweep.weight_bits": [(0,), (4, 4)],
  **{f"sweep.group_bits.{g}": [(0,)] for g in quant.GROUPS},
  "sweep.chunk_size": [-1],
  "sweep.checkpoint_every_steps": [-1],
  "sweep.d_model": [(0,)],
  "sweep.d_state": [(-2,)],
  "sweep.n_layers": [(0,)],
  "sweep.seeds": [(-1,)],
  "sweep.noise_scales": [(-1.0,)],
  "sweep.learning_rates": [(0.0,)],
  "sweep.strategy": ["parallel"],
}


def wrong_kind(value):
  """A value of another kind than `value`'s."""
  if isinstance(value, bool):
    return "yes"
  if isinstance(value, int | float):
    return "1"
  if isinstance(value, str):
    return 3
  return "x"  # A tuple's place.


def refused(path: str, value) -> str:
  """The ConfigError message of setting `path` to `value` (in the sweep config for sweep
  fields, in the default config otherwise); fails if the value is accepted."""
  config = sweep_bits.get_config() if path.startswith("sweep.") else default.get_config()
  exp = experiment.from_config(config)
  with pytest.raises(errors.ConfigError) as info:
    experiment.override(exp, {path: value})
  return str(info.value)


def test_every_field_has_a_stated_domain():
  fields = set(DEFAULT) | set(SWEEP)
  missing = sorted(fields - ANY_VALUE - set(OUT_OF_DOMAIN))
  assert not missing, f"fields without a row in OUT_OF_DOMAIN (or ANY_VALUE): {missing}"
  assert not set(OUT_OF_DOMAIN) - fields, "rows for fields the config does not have"


@pytest.mark.parametrize("path", sorted({**DEFAULT, **SWEEP}))
def test_a_value_of_the_wrong_kind_names_the_field(path):
  value = {**DEFAULT, **SWEEP}[path]
  assert path in refused(path, wrong_kind(value))


@pytest.mark.parametrize(
  "path, value", [(p, v) for p, values in sorted(OUT_OF_DOMAIN.items()) for v in values]
)
def test_a_value_outside_the_domain_names_the_field(path, value):
  message = refused(path, value)
  name = path.split(".")[-1]
  assert name in message, message


def test_through_launch_one_line_and_nothing_written(tmp_path):
  workdir = tmp_path / "w"
  out = launch(
    "--config=configs/default.py:smoke", f"--workdir={workdir}", "--config.optimizer.b1=1.5"
  )
  (line,) = error_lines(out)
  assert line == "error: optimizer.b1 must be in [0, 1), got 1.5."
  assert not os.path.exists(workdir) or not os.listdir(workdir)
