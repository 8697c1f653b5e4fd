r"""Accuracy against the fraction of state modes pruned, for float and QAT W4A8 models.

  .venv/bin/python bench/prune_table.py --task=digits --seeds=0,1,2 --out=runs/prune

For every seed the base models are a float model (configs/default.py) and a QAT W4A8
fine-tune of it (configs/qat_w4a8.py); existing ones under --base (bench/qat_table.py's
layout) are reused, missing ones are trained with the same commands. Each base is then
pruned at every ratio with configs/prune_float.py / configs/prune_w4a8.py (H2 scores,
the same number of modes removed in every channel, 5 fine-tuning epochs). Every number
comes from those launch.py commands (printed as they run): accuracy right after pruning
("no fine-tune") and of the fine-tuned, physically smaller model, plus its memory bits.
Writes OUT/TASK/table.md, table.json and accuracy_vs_pruning.png.
"""

from __future__ import annotations

import json
import os
import statistics

import launcher  # bench/launcher.py, next to this script
from absl import app, flags

_TASK = flags.DEFINE_enum("task", "digits", ["digits", "mnist1d"], "Embedded task.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds.")
_RATIOS = flags.DEFINE_list("ratios", ["0.25", "0.5", "0.75", "0.9"], "Pruning ratios.")
_BASE = flags.DEFINE_string("base", "runs/qat_table", "Folder of bench/qat_table.py runs.")
_OUT = flags.DEFINE_string("out", "runs/prune", "Output folder.")

FLOAT_CONFIG = {"digits": "configs/default.py", "mnist1d": "configs/mnist1d.py"}
# label -> (base run folder under BASE/TASK/seedS, base config, pruning config)
MODELS = {
  "Float": ("float", None, "configs/prune_float.py"),
  "QAT W4A8": ("qat_w4a8__channel", "configs/qat_w4a8.py", "configs/prune_w4a8.py"),
}


def _results(workdir: str) -> dict:
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def _mean_std(values):
  return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main(_):
  task = _TASK.value
  seeds = [int(s) for s in _SEEDS.value]
  ratios = [float(r) for r in _RATIOS.value]
  common = [f"--config.data.task={task}"]
  runs = {label: {} for label in MODELS}  # label -> ratio -> [results per seed]
  for seed in seeds:
    base = os.path.join(_BASE.value, task, f"seed{seed}")
    float_dir = os.path.join(base, "float")
    for label, (folder, base_config, prune_config) in MODELS.items():
      base_dir = os.path.join(base, folder)
      if not os.path.exists(os.path.join(base_dir, "results.json")):
        init = [] if base_config is None else [f"--config.init_checkpoint={float_dir}"]
        config = base_config or FLOAT_CONFIG[task]
        launcher.launch(
          [f"--config={config}", f"--workdir={base_dir}", f"--config.seed={seed}", *common, *init]
        )
      runs[label].setdefault(0.0, []).append(_results(base_dir))
      for ratio in ratios:
        workdir = os.path.join(
          _OUT.value, task, f"seed{seed}", f"{folder}_prune{round(100 * ratio)}"
        )
        if not os.path.exists(os.path.join(workdir, "results.json")):
          launcher.launch(
            [
              f"--config={prune_config}",
              f"--workdir={workdir}",
              f"--config.seed={seed}",
              f"--config.init_checkpoint={base_dir}",
              f"--config.prune.ratio={ratio}",
              *common,
            ]
          )
        runs[label].setdefault(ratio, []).append(_results(workdir))

  lines = [
    f"Task `{task}`, seeds {seeds}; test accuracy mean +- std over seeds (percent). Memory "
    "bits of the exported (physically smaller) model, seed 0; x vs reference = FP32 memory of "
    "the S4D reference size / this model's memory.",
    "",
    "| model | modes pruned | no fine-tune | fine-tuned (5 epochs) | d_state | memory bits "
    "| x vs FP32 reference |",
    "|---|---|---|---|---|---|---|",
  ]
  table, best = {}, {}
  for label, by_ratio in runs.items():
    base_mean, _ = _mean_std([100 * r["test_accuracy"] for r in by_ratio[0.0]])
    best[label] = {"no fine-tune": 0.0, "fine-tuned": 0.0}
    for ratio, results in sorted(by_ratio.items()):
      # The exported smaller model's accuracy (equal to the masked model's in float; under
      # quantization the a_bar grid of the smaller model no longer sees the pruned modes).
      tuned = [100 * r.get("pruned_model_test_accuracy", r["test_accuracy"]) for r in results]
      before = [100 * r.get("test_accuracy_before_finetune", r["test_accuracy"]) for r in results]
      (tm, ts), (bm, bs) = _mean_std(tuned), _mean_std(before)
      r0 = results[0]
      d_state = r0.get("prune", {}).get("d_state_after", r0.get("d_state", "-"))
      lines.append(
        f"| {label} | {100 * ratio:.0f} % | {bm:.2f} +- {bs:.2f} | {tm:.2f} +- {ts:.2f} "
        f"| {d_state} | {r0['memory_bits']:.3g} | {r0['compression_vs_reference']:.1f} |"
      )
      table.setdefault(label, {})[ratio] = {"before": before, "tuned": tuned, "seed0": r0}
      for name, mean in (("no fine-tune", bm), ("fine-tuned", tm)):
        if mean >= base_mean - 1.0:
          best[label][name] = max(best[label][name], ratio)
  lines.append("")
  for label, b in best.items():
    lines.append(
      f"- {label}: largest ratio within 1 point of unpruned: {100 * b['fine-tuned']:.0f} % "
      f"fine-tuned, {100 * b['no fine-tune']:.0f} % without fine-tuning."
    )
  text = "\n".join(lines)
  print(text)
  out_dir = os.path.join(_OUT.value, task)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "table.md"), "w") as f:
    f.write(text + "\n")
  with open(os.path.join(out_dir, "table.json"), "w") as f:
    json.dump({k: {str(r): v for r, v in t.items()} for k, t in table.items()}, f, indent=1)
  _plot(table, os.path.join(out_dir, "accuracy_vs_pruning.png"), task)


def _plot(table: dict, path: str, task: str) -> None:
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  fig, ax = plt.subplots(figsize=(5.5, 3.8))
  for label, by_ratio in table.items():
    ratios = sorted(by_ratio)
    for key, style in (("tuned", "-o"), ("before", "--x")):
      means = [statistics.fmean(by_ratio[r][key]) for r in ratios]
      name = f"{label}, {'fine-tuned' if key == 'tuned' else 'no fine-tune'}"
      ax.plot([100 * r for r in ratios], means, style, label=name)
  ax.set_xlabel("state modes pruned (%)")
  ax.set_ylabel("test accuracy (%)")
  ax.set_title(f"{task}: structured pruning (mean over seeds)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  print(f"Plot: {path}")


if __name__ == "__main__":
  app.run(main)
