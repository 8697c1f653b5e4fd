r"""Float vs post-training quantization (PTQ) vs QAT, over seeds: the README QAT table.

  .venv/bin/python bench/qat_table.py --task=digits  --seeds=0,1,2 --out=runs/qat_table
  .venv/bin/python bench/qat_table.py --task=mnist1d --seeds=0,1,2 --out=runs/qat_table

Per seed, in OUT/TASK/seedS/ (runs as bench/tables.py says): the float model
(configs/default.py or configs/mnist1d.py) in float/, PTQ of it (`train.evaluate`) at
several widths, and QAT fine-tunes of it (configs/qat_*.py). Prints the table (mean +- std
over seeds) and writes OUT/TASK/table.md and table.json.
"""

import os
import statistics
import time

import tables  # bench/tables.py, next to this script
from absl import app, flags

from ssm_aimc import experiment, train

_TASK = flags.DEFINE_enum("task", "digits", ["digits", "mnist1d"], "Embedded task.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (model init, dropout, batches).")
_OUT = flags.DEFINE_string("out", "runs/qat_table", "Output folder.")
_EXTRA = flags.DEFINE_list("extra", [], "Extra k=v config overrides for every run.")

CHANNEL, TERNARY = {"quant.mode": "channel"}, {"quant.weight_bits": 2, "quant.mode": "channel"}
# name -> (QAT config file, or None for PTQ of the float model; overrides)
RUNS = {
  "PTQ W8A8 (channel)": (None, {"quant.weight_bits": 8, **CHANNEL}),
  "PTQ W4A8 (tensor)": (None, {"quant.weight_bits": 4, "quant.mode": "tensor"}),
  "PTQ W4A8 (channel)": (None, {"quant.weight_bits": 4, **CHANNEL}),
  "PTQ ternary (channel, a_bar 8)": (None, TERNARY),
  "PTQ ternary (channel, a_bar 4)": (None, {**TERNARY, "quant.a_bar_bits": 4}),
  "QAT W8A8 (channel)": ("configs/qat_w8a8.py", {}),
  "QAT W4A8 (tensor)": ("configs/qat_w4a8.py", {"quant.mode": "tensor"}),
  "QAT W4A8 (channel)": ("configs/qat_w4a8.py", {}),
  "QAT ternary (channel, a_bar 4)": ("configs/qat_ternary.py", {}),
}


def _slug(name: str) -> str:
  return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def run_seed(task: str, seed: int, out: str) -> dict:
  common = {"seed": seed, "data.task": task, **tables.parse(_EXTRA.value)}
  qat = {_slug(name): run for name, run in RUNS.items() if run[0]}
  zoo = tables.family(os.path.join(out, task, f"seed{seed}"), task, common, qat)
  results = {"Float (FP32)": zoo.train("float")}
  for name, (config, overrides) in RUNS.items():
    if config:
      results[name] = zoo.train(_slug(name))
    else:
      ptq = experiment.override(zoo.base, {"quant.enabled": True, **overrides, **common})
      results[name] = train.evaluate(ptq, zoo.workdir("float"))
  return results


def main(_):
  task, seeds = _TASK.value, [int(s) for s in _SEEDS.value]
  start = time.time()
  per_seed = [run_seed(task, s, _OUT.value) for s in seeds]
  float_mean, _ = tables.mean_std([r["Float (FP32)"]["test_accuracy"] for r in per_seed])
  lines = [
    f"Task `{task}`, seeds {seeds}; test accuracy mean +- std (percent). Memory bits and "
    "ratios are those of seed 0.",
    "",
    "| run | test accuracy | vs float (points) | memory bits | x vs FP32 | x vs reference "
    "| bit-ops x vs FP32 | train time (s) |",
    "|---|---|---|---|---|---|---|---|",
  ]
  table = {}
  for name in per_seed[0]:
    accs = [100 * r[name]["test_accuracy"] for r in per_seed]
    mean, std = tables.mean_std(accs)
    r0 = per_seed[0][name]
    wall = statistics.median(r[name]["wall_time_s"] for r in per_seed)
    train_time = "-" if name.startswith("PTQ") else f"{wall:.0f}"
    lines.append(
      f"| {name} | {mean:.2f} +- {std:.2f} | {mean - 100 * float_mean:+.2f} "
      f"| {r0['memory_bits']:.3g} | {r0['compression_vs_fp32']:.1f} "
      f"| {r0['compression_vs_reference']:.1f} | {r0['bitops_reduction_vs_fp32']:.1f} "
      f"| {train_time} |"
    )
    table[name] = {"accuracy": accs, "mean": mean, "std": std, "seed0": r0}
  tables.write(os.path.join(_OUT.value, task), "table", "\n".join(lines), table)
  print(f"(total {time.time() - start:.0f} s)")


if __name__ == "__main__":
  app.run(main)
