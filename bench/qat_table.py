r"""Float vs post-training quantization (PTQ) vs QAT, over seeds: the README QAT table.

  .venv/bin/python bench/qat_table.py --task=digits  --seeds=0,1,2 --out=runs/qat_table
  .venv/bin/python bench/qat_table.py --task=mnist1d --seeds=0,1,2 --out=runs/qat_table

Per seed, every number comes from the exact launch.py command a user would type (printed
as it runs):
  1. the float model (configs/default.py, or configs/mnist1d.py);
  2. PTQ of that checkpoint (--mode=evaluate with a quant config) at several widths;
  3. QAT fine-tunes initialised from it (configs/qat_*.py).
Results land in OUT/TASK/seedS/<run>/ and a markdown table with mean +- std over seeds
is printed and written to OUT/TASK/table.md (plus table.json).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time

import launcher  # bench/launcher.py, next to this script
from absl import app, flags

_TASK = flags.DEFINE_enum("task", "digits", ["digits", "mnist1d"], "Embedded task.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (model init, dropout, batches).")
_OUT = flags.DEFINE_string("out", "runs/qat_table", "Output folder.")
_EXTRA = flags.DEFINE_list("extra", [], "Extra --config.k=v overrides for every run.")

FLOAT_CONFIG = {"digits": "configs/default.py", "mnist1d": "configs/mnist1d.py"}

# name -> (kind, config file, overrides)
RUNS = {
  "PTQ W8A8 (channel)": (
    "ptq",
    None,
    ["--config.quant.weight_bits=8", "--config.quant.mode=channel"],
  ),
  "PTQ W4A8 (tensor)": (
    "ptq",
    None,
    ["--config.quant.weight_bits=4", "--config.quant.mode=tensor"],
  ),
  "PTQ W4A8 (channel)": (
    "ptq",
    None,
    ["--config.quant.weight_bits=4", "--config.quant.mode=channel"],
  ),
  "PTQ ternary (channel, a_bar 8)": (
    "ptq",
    None,
    ["--config.quant.weight_bits=2", "--config.quant.mode=channel"],
  ),
  "PTQ ternary (channel, a_bar 4)": (
    "ptq",
    None,
    ["--config.quant.weight_bits=2", "--config.quant.mode=channel", "--config.quant.a_bar_bits=4"],
  ),
  "QAT W8A8 (channel)": ("qat", "configs/qat_w8a8.py", []),
  "QAT W4A8 (tensor)": ("qat", "configs/qat_w4a8.py", ["--config.quant.mode=tensor"]),
  "QAT W4A8 (channel)": ("qat", "configs/qat_w4a8.py", []),
  "QAT ternary (channel, a_bar 4)": ("qat", "configs/qat_ternary.py", []),
}


def _slug(name: str) -> str:
  return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def _task_args(task: str) -> list[str]:
  return [f"--config.data.task={task}"] + [f"--config.{kv}" for kv in _EXTRA.value]


def run_seed(task: str, seed: int, out: str) -> dict:
  results = {}
  base = os.path.join(out, task, f"seed{seed}")
  float_dir = os.path.join(base, "float")
  if not os.path.exists(os.path.join(float_dir, "results.json")):
    launcher.launch(
      [
        f"--config={FLOAT_CONFIG[task]}",
        f"--workdir={float_dir}",
        f"--config.seed={seed}",
        *_task_args(task),
      ]
    )
  with open(os.path.join(float_dir, "results.json")) as f:
    results["Float (FP32)"] = json.load(f)
  for name, (kind, config, overrides) in RUNS.items():
    target = os.path.join(base, _slug(name) + ".json")
    if not os.path.exists(target):
      if kind == "ptq":
        launcher.launch(
          [
            f"--config={FLOAT_CONFIG[task]}",
            f"--workdir={float_dir}",
            "--mode=evaluate",
            f"--config.seed={seed}",
            "--config.quant.enabled=True",
            *overrides,
            *_task_args(task),
          ]
        )
        shutil.copy(os.path.join(float_dir, "results_evaluate.json"), target)
      else:
        workdir = os.path.join(base, _slug(name))
        launcher.launch(
          [
            f"--config={config}",
            f"--workdir={workdir}",
            f"--config.seed={seed}",
            f"--config.init_checkpoint={float_dir}",
            *overrides,
            *_task_args(task),
          ]
        )
        shutil.copy(os.path.join(workdir, "results.json"), target)
    with open(target) as f:
      results[name] = json.load(f)
  return results


def _mean_std(values):
  mean = statistics.fmean(values)
  std = statistics.stdev(values) if len(values) > 1 else 0.0
  return mean, std


def main(_):
  task, seeds = _TASK.value, [int(s) for s in _SEEDS.value]
  start = time.time()
  per_seed = [run_seed(task, s, _OUT.value) for s in seeds]
  names = list(per_seed[0])
  float_mean, _ = _mean_std([r["Float (FP32)"]["test_accuracy"] for r in per_seed])
  lines = [
    f"Task `{task}`, seeds {seeds}; test accuracy mean +- std (percent). Memory bits and "
    "ratios are those of seed 0.",
    "",
    "| run | test accuracy | vs float (points) | memory bits | x vs FP32 | x vs reference "
    "| bit-ops x vs FP32 | train time (s) |",
    "|---|---|---|---|---|---|---|---|",
  ]
  table = {}
  for name in names:
    accs = [100 * r[name]["test_accuracy"] for r in per_seed]
    mean, std = _mean_std(accs)
    r0 = per_seed[0][name]
    wall = [r[name]["wall_time_s"] for r in per_seed]
    train_time = "-" if name.startswith("PTQ") else f"{statistics.median(wall):.0f}"
    lines.append(
      f"| {name} | {mean:.2f} +- {std:.2f} | {mean - 100 * float_mean:+.2f} "
      f"| {r0['memory_bits']:.3g} | {r0['compression_vs_fp32']:.1f} "
      f"| {r0['compression_vs_reference']:.1f} | {r0['bitops_reduction_vs_fp32']:.1f} "
      f"| {train_time} |"
    )
    table[name] = {"accuracy": accs, "mean": mean, "std": std, "seed0": r0}
  text = "\n".join(lines)
  print(text)
  print(f"(total {time.time() - start:.0f} s)")
  os.makedirs(os.path.join(_OUT.value, task), exist_ok=True)
  with open(os.path.join(_OUT.value, task, "table.md"), "w") as f:
    f.write(text + "\n")
  with open(os.path.join(_OUT.value, task, "table.json"), "w") as f:
    json.dump(table, f, indent=1)


if __name__ == "__main__":
  app.run(main)
