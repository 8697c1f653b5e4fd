r"""Accuracy on simulated analog chips against programming-noise scale: the README noise table.

  .venv/bin/python bench/noise_table.py --task=digits --seed=0 --chips=20 --out=runs/noise

In OUT/TASK/seedS/ (runs as bench/tables.py says): a float model (configs/default.py) and
its fine-tunes (configs/qat_w4a8.py, noise_aware.py, noise_aware_w4a8.py), each evaluated
(`train.evaluate`, kept in <model>/noise_DEVICE.json) on the same `--chips` simulated chips
(programming noise frozen per chip, fresh read noise per batch, drift to t_inference with
global compensation) at every programming-noise scale of `--scales`, other terms at the
preset's level. Writes table.md, table.json and accuracy_vs_noise.png there.
"""

import os
import time

import tables  # bench/tables.py, next to this script
from absl import app, flags

from ssm_aimc import experiment, noise_eval, train
from ssm_aimc.claims import c3_robustness, common

_TASK = flags.DEFINE_enum("task", "digits", ["digits", "mnist1d"], "Embedded task.")
_SEED = flags.DEFINE_integer("seed", 0, "Training seed of the models.")
_CHIPS = flags.DEFINE_integer("chips", 20, "Simulated chips (noise seeds) per point.")
_SCALES = flags.DEFINE_list("scales", ["0", "0.5", "1", "2", "4"], "Programming-noise scales.")
_DEVICE = flags.DEFINE_string("device", "pcm_like", "Device preset for evaluation.")
_OUT = flags.DEFINE_string("out", "runs/noise", "Output folder.")
_EXTRA = flags.DEFINE_list("extra", [], "Extra k=v config overrides for every evaluation.")


def evaluated(zoo, folder: str) -> dict:
  """results_evaluate.json of model `folder` on the chips (cached; trained first if needed)."""
  zoo.train(folder)
  scales = tuple(float(s) for s in _SCALES.value)
  exp = zoo.experiment(folder)
  exp = c3_robustness.on_chips(
    exp, _DEVICE.value, _CHIPS.value, scales, exp.hardware.seeds_per_call
  )
  exp = experiment.override(exp, tables.parse(_EXTRA.value))

  def evaluate():
    tick = time.time()
    return {**train.evaluate(exp, zoo.workdir(folder)), "eval_command_s": time.time() - tick}

  return tables.cached(
    os.path.join(zoo.workdir(folder), f"noise_{_DEVICE.value}.json"), exp, evaluate
  )


def main(_):
  task, seed = _TASK.value, _SEED.value
  zoo = tables.noise_models(_OUT.value, task, seed)
  rows = {name: evaluated(zoo, folder) for folder, (name, _) in tables.NOISE_MODELS.items()}
  scales = [r["prog_noise_scale"] for r in next(iter(rows.values()))["noise_sweep"]]
  lines = [
    f"Task `{task}`, training seed {seed}, device `{_DEVICE.value}`, {_CHIPS.value} simulated "
    "chips per point (mean +- std over chips, percent). Programming noise scaled; drift to "
    "t_inference with global compensation and read noise at the preset's level.",
    "",
    "| model | digital | " + " | ".join(f"{s:g} x" for s in scales) + " |",
    "|---|---|" + "---|" * len(scales),
  ]
  for name, r in rows.items():
    cells = [common.chips_text(p) for p in r["noise_sweep"]]
    lines.append(f"| {name} | {100 * r['test_accuracy']:.2f} | " + " | ".join(cells) + " |")
  curves = {k: v["noise_sweep"] for k, v in rows.items()}
  tables.write(zoo.root, "table", "\n".join(lines), curves)
  title = f"{task}: accuracy on simulated {_DEVICE.value} chips"
  path = noise_eval.plot_noise_sweep(curves, os.path.join(zoo.root, "accuracy_vs_noise.png"), title)
  print(f"Plot: {path}")


if __name__ == "__main__":
  app.run(main)
