r"""Software vs simulated-chip accuracy and energy of the noise-table models: README "Deployment".

  .venv/bin/python bench/deploy_table.py --task=digits --seed=0 --chips=20 --out=runs/noise

Deploys (`launch.py --mode=deploy`, printed as it runs) the four models that
bench/noise_table.py trains in OUT/TASK/seedS (float, QAT W4A8, noise-aware, noise-aware +
QAT W4A8; run that script first) on `--chips` PCM-like and RRAM-like chips each, with
8-bit DACs and ADCs and the recurrence in the digital periphery, and the noise-aware +
QAT W4A8 and float models also with the recurrence on the arrays
(`hardware.recurrence=residual` and `direct`). Deployments whose results exist are
reused. Writes OUT/TASK/seedS/deploy_table.md and deploy_table.json
(deploy_table_threefry.* with --read_rng=threefry).
"""

from __future__ import annotations

import json
import os

import launcher  # bench/launcher.py, next to this script
from absl import app, flags

_TASK = flags.DEFINE_enum("task", "digits", ["digits", "mnist1d"], "Embedded task.")
_SEED = flags.DEFINE_integer("seed", 0, "Training seed of the models.")
_CHIPS = flags.DEFINE_integer("chips", 20, "Simulated chips per device.")
_OUT = flags.DEFINE_string("out", "runs/noise", "Folder of bench/noise_table.py's runs.")
_RNG = flags.DEFINE_enum("read_rng", "hash", ["hash", "threefry"], "Read-noise source.")

FLOAT_CONFIG = {"digits": "configs/default.py", "mnist1d": "configs/mnist1d.py"}
# (row name, workdir name, config, recurrence)
ROWS = (
  ("Float", "float", None, "digital"),
  ("QAT W4A8", "qat_w4a8", "configs/qat_w4a8.py", "digital"),
  ("Noise-aware (float)", "noise_aware", "configs/noise_aware.py", "digital"),
  ("Noise-aware + QAT W4A8", "noise_aware_w4a8", "configs/noise_aware_w4a8.py", "digital"),
  ("Float", "float", None, "residual"),
  ("Noise-aware + QAT W4A8", "noise_aware_w4a8", "configs/noise_aware_w4a8.py", "residual"),
  ("Float", "float", None, "direct"),
  ("Noise-aware + QAT W4A8", "noise_aware_w4a8", "configs/noise_aware_w4a8.py", "direct"),
)


def main(_):
  task, seed = _TASK.value, _SEED.value
  base = os.path.join(_OUT.value, task, f"seed{seed}")
  table = []
  for name, folder, config, recurrence in ROWS:
    workdir = os.path.join(base, folder)
    if not os.path.exists(os.path.join(workdir, "results.json")):
      raise SystemExit(f"{workdir} has no trained model; run bench/noise_table.py first.")
    out = "deploy" + ("" if recurrence == "digital" else f"_{recurrence}")
    out += "" if _RNG.value == "hash" else f"_{_RNG.value}"
    target = os.path.join(workdir, out, "results.json")
    if not os.path.exists(target):
      launcher.launch(
        [
          f"--config={config or FLOAT_CONFIG[task]}",
          f"--workdir={workdir}",
          "--mode=deploy",
          f"--config.data.task={task}",
          f"--config.seed={seed}",
          f"--config.hardware.recurrence={recurrence}",
          f"--config.deploy.folder={out}",
          f"--config.deploy.seeds={_CHIPS.value}",
          f"--config.deploy.read_rng={_RNG.value}",
        ]
      )
    with open(target) as f:
      table.append((name, recurrence, json.load(f)))

  pct = lambda r, d: (
    f"{100 * r['chips'][d]['analog_accuracy_mean']:.2f} +- "
    f"{100 * r['chips'][d]['analog_accuracy_std']:.2f}"
  )
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
      f"{100 * r['converters_only_accuracy']:.2f} | {pct(r, 'pcm_like')} | "
      f"{pct(r, 'rram_taox')} | {r['tiles']} | "
      f"{1e9 * r['energy_per_inference_j']['aimc']:.0f} nJ | {r['energy_vs_fp32']:.1f}x |"
    )
  text = "\n".join(lines)
  print(text)
  suffix = "" if _RNG.value == "hash" else f"_{_RNG.value}"
  with open(os.path.join(base, f"deploy_table{suffix}.md"), "w") as f:
    f.write(text + "\n")
  with open(os.path.join(base, f"deploy_table{suffix}.json"), "w") as f:
    json.dump([{"model": n, "recurrence": rc, **r} for n, rc, r in table], f, indent=1)


if __name__ == "__main__":
  app.run(main)
