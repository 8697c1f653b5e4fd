r"""Software vs simulated-chip accuracy and energy of the noise-table models: README "Deployment".

  .venv/bin/python bench/deploy_table.py --task=digits --seed=0 --chips=20 --out=runs/noise

Deploys (`deploy.deploy`) the four models of bench/noise_table.py (trained if missing) on
`--chips` PCM-like and RRAM-like chips each, 8-bit DACs and ADCs, the recurrence in the
digital periphery, and the float and noise-aware + QAT W4A8 models also with the recurrence
on the arrays (residual, direct); deployments as bench/tables.py says. Writes
OUT/TASK/seedS/deploy_table.md and .json (deploy_table_threefry.* with --read_rng=threefry).
"""

import os

import tables  # bench/tables.py, next to this script
from absl import app, flags

from ssm_aimc import deploy, experiment
from ssm_aimc import workdir as workdir_lib
from ssm_aimc.claims import common

_TASK = flags.DEFINE_enum("task", "digits", ["digits", "mnist1d"], "Embedded task.")
_SEED = flags.DEFINE_integer("seed", 0, "Training seed of the models.")
_CHIPS = flags.DEFINE_integer("chips", 20, "Simulated chips per device.")
_OUT = flags.DEFINE_string("out", "runs/noise", "Folder of bench/noise_table.py's runs.")
_RNG = flags.DEFINE_enum("read_rng", "hash", ["hash", "threefry"], "Read-noise source.")

# (folder of tables.NOISE_MODELS, recurrence): every model with the recurrence digital,
# then the float and noise-aware + QAT W4A8 models with it on the arrays.
ROWS = [(folder, "digital") for folder in tables.NOISE_MODELS]
ROWS += [(f, r) for r in ("residual", "direct") for f in ("float", "noise_aware_w4a8")]


def deployed(zoo, folder: str, recurrence: str) -> dict:
  """deploy/results.json of model `folder` with `recurrence` (cached; trained if needed)."""
  zoo.train(folder)
  out = "deploy" + ("" if recurrence == "digital" else f"_{recurrence}")
  out += "" if _RNG.value == "hash" else f"_{_RNG.value}"
  settings = {"hardware.recurrence": recurrence, "deploy.folder": out}
  settings |= {"deploy.seeds": _CHIPS.value, "deploy.read_rng": _RNG.value}
  exp = experiment.override(zoo.experiment(folder), settings)
  path = os.path.join(zoo.workdir(folder), out, workdir_lib.RESULTS)

  def run():
    deploy.deploy(exp, zoo.workdir(folder))
    return workdir_lib.read_json(path)

  return tables.cached(path, exp, run)


def main(_):
  task, seed = _TASK.value, _SEED.value
  zoo = tables.noise_models(_OUT.value, task, seed)
  table = [(tables.NOISE_MODELS[f][0], rec, deployed(zoo, f, rec)) for f, rec in ROWS]

  lines = [
    f"Task `{task}`, training seed {seed}; {_CHIPS.value} simulated chips per device (mean +- "
    "std over chips, percent); 8-bit DAC and ADC, 64x64 differential tiles, t_inference "
    f"1 h with global drift compensation; read noise from the {_RNG.value} generator.",
    "",
    "| model | recurrence | software | ideal device | PCM-like | RRAM-like | tiles | "
    "energy / inference | FP32 / chip |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for name, recurrence, r in table:
    lines.append(
      f"| {name} | {recurrence} | {100 * r['test_accuracy']:.2f} | "
      f"{100 * r['converters_only_accuracy']:.2f} | {common.chips_text(r['chips']['pcm_like'])} | "
      f"{common.chips_text(r['chips']['rram_taox'])} | {r['tiles']} | "
      f"{1e9 * r['energy_per_inference_j']['aimc']:.0f} nJ | {r['energy_vs_fp32']:.1f}x |"
    )
  suffix = "" if _RNG.value == "hash" else f"_{_RNG.value}"
  records = [{"model": n, "recurrence": rc, **r} for n, rc, r in table]
  tables.write(zoo.root, f"deploy_table{suffix}", "\n".join(lines), records)


if __name__ == "__main__":
  app.run(main)
