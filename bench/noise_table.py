r"""Accuracy on simulated analog chips against programming-noise scale: the README noise table.

  .venv/bin/python bench/noise_table.py --task=digits --seed=0 --chips=20 --out=runs/noise

Every number comes from the launch.py commands a user would type (printed as they run):
  1. a float model (configs/default.py);
  2. fine-tunes initialised from it: QAT W4A8 (configs/qat_w4a8.py), noise-aware training
     (configs/noise_aware.py) and both together (configs/noise_aware_w4a8.py);
  3. `--mode=evaluate` of each checkpoint with the hardware switched on: the same
     `--chips` simulated chips (programming noise frozen per chip, fresh read noise per
     batch, drift to t_inference with global compensation) at every programming-noise
     scale in `--scales`, other terms at the preset's level.
Runs whose results already exist are reused. Writes OUT/TASK/seedS/table.md, table.json and
accuracy_vs_noise.png.
"""

from __future__ import annotations

import json
import os
import sys

import launcher  # bench/launcher.py, next to this script
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssm_aimc import noise_eval  # noqa: E402

_TASK = flags.DEFINE_enum("task", "digits", ["digits", "mnist1d"], "Embedded task.")
_SEED = flags.DEFINE_integer("seed", 0, "Training seed of the models.")
_CHIPS = flags.DEFINE_integer("chips", 20, "Simulated chips (noise seeds) per point.")
_SCALES = flags.DEFINE_list("scales", ["0", "0.5", "1", "2", "4"], "Programming-noise scales.")
_DEVICE = flags.DEFINE_string("device", "pcm_like", "Device preset for evaluation.")
_OUT = flags.DEFINE_string("out", "runs/noise", "Output folder.")
_EXTRA = flags.DEFINE_list("extra", [], "Extra --config.k=v overrides for every evaluation.")

FLOAT_CONFIG = {"digits": "configs/default.py", "mnist1d": "configs/mnist1d.py"}
# name -> (workdir name, training config); the float model is trained first.
MODELS = {
  "Float": ("float", None),
  "QAT W4A8": ("qat_w4a8", "configs/qat_w4a8.py"),
  "Noise-aware (float)": ("noise_aware", "configs/noise_aware.py"),
  "Noise-aware + QAT W4A8": ("noise_aware_w4a8", "configs/noise_aware_w4a8.py"),
}


def main(_):
  task, seed = _TASK.value, _SEED.value
  base = os.path.join(_OUT.value, task, f"seed{seed}")
  common = [f"--config.data.task={task}", f"--config.seed={seed}"]
  float_dir = os.path.join(base, "float")
  rows = {}
  for name, (folder, config) in MODELS.items():
    workdir = os.path.join(base, folder)
    config = config or FLOAT_CONFIG[task]
    if not os.path.exists(os.path.join(workdir, "results.json")):
      init = [] if folder == "float" else [f"--config.init_checkpoint={float_dir}"]
      launcher.launch([f"--config={config}", f"--workdir={workdir}", *common, *init])
    target = os.path.join(workdir, f"noise_{_DEVICE.value}.json")
    if not os.path.exists(target):
      eval_time = launcher.launch(
        [
          f"--config={config}",
          f"--workdir={workdir}",
          "--mode=evaluate",
          *common,
          "--config.hardware.enabled=True",
          "--config.hardware.train=False",
          "--config.hardware.read_noise_draw=product",
          f"--config.hardware.device={_DEVICE.value}",
          f"--config.hardware.eval_seeds={_CHIPS.value}",
          f"--config.hardware.noise_scales=({','.join(_SCALES.value)},)",
          *[f"--config.{kv}" for kv in _EXTRA.value],
        ]
      )
      with open(os.path.join(workdir, "results_evaluate.json")) as f:
        result = json.load(f)
      result["eval_command_s"] = eval_time
      with open(target, "w") as f:
        json.dump(result, f, indent=1)
    with open(target) as f:
      rows[name] = json.load(f)

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
    cells = [
      f"{100 * p['analog_accuracy_mean']:.2f} +- {100 * p['analog_accuracy_std']:.2f}"
      for p in r["noise_sweep"]
    ]
    lines.append(f"| {name} | {100 * r['test_accuracy']:.2f} | " + " | ".join(cells) + " |")
  text = "\n".join(lines)
  print(text)
  with open(os.path.join(base, "table.md"), "w") as f:
    f.write(text + "\n")
  with open(os.path.join(base, "table.json"), "w") as f:
    json.dump({k: v["noise_sweep"] for k, v in rows.items()}, f, indent=1)
  path = noise_eval.plot_noise_sweep(
    {k: v["noise_sweep"] for k, v in rows.items()},
    os.path.join(base, "accuracy_vs_noise.png"),
    title=f"{task}: accuracy on simulated {_DEVICE.value} chips",
  )
  print(f"Plot: {path}")


if __name__ == "__main__":
  app.run(main)
