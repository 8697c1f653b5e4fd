r"""Accuracy against the fraction of state modes pruned, for float and QAT W4A8 models.

  .venv/bin/python bench/prune_table.py --task=digits --seeds=0,1,2 --out=runs/prune

Per seed, the float model and its QAT W4A8 fine-tune in --base (bench/qat_table.py's runs),
each pruned at every ratio (configs/prune_float.py / prune_w4a8.py: H2 scores, the same
modes removed in every channel, 5 fine-tuning epochs) in OUT/TASK/seedS (runs as
bench/tables.py says): accuracy right after pruning and of the fine-tuned, physically
smaller model, and its memory bits. Writes OUT/TASK/table.md, table.json and
accuracy_vs_pruning.png.
"""

import os
import statistics

import tables  # bench/tables.py, next to this script
from absl import app, flags

from ssm_aimc import figures, runs

_TASK = flags.DEFINE_enum("task", "digits", ["digits", "mnist1d"], "Embedded task.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Training seeds.")
_RATIOS = flags.DEFINE_list("ratios", ["0.25", "0.5", "0.75", "0.9"], "Pruning ratios.")
_BASE = flags.DEFINE_string("base", "runs/qat_table", "Folder of bench/qat_table.py runs.")
_OUT = flags.DEFINE_string("out", "runs/prune", "Output folder.")

# label -> (base run folder under BASE/TASK/seedS, its config (None: the float model),
# pruning config)
MODELS = {
  "Float": ("float", None, "configs/prune_float.py"),
  "QAT W4A8": ("qat_w4a8__channel", "configs/qat_w4a8.py", "configs/prune_w4a8.py"),
}


def run_seed(task: str, seed: int, ratios: list[float]) -> dict:
  """label -> ratio -> results.json of seed `seed` (ratio 0: the base model)."""
  common = {"data.task": task, "seed": seed}
  tuned = {folder: (config, {}) for folder, config, _ in MODELS.values() if config}
  bases = tables.family(os.path.join(_BASE.value, task, f"seed{seed}"), task, common, tuned)
  recipes = {}
  for folder, _, config in MODELS.values():
    for ratio in ratios:
      overrides = {**common, "init_checkpoint": bases.workdir(folder), "prune.ratio": ratio}
      recipes[f"{folder}_prune{round(100 * ratio)}"] = tables.recipe(config, overrides)
  pruned = runs.Runs(bases.base, os.path.join(_OUT.value, task, f"seed{seed}"), recipes)
  out = {}
  for label, (folder, _, _) in MODELS.items():
    out[label] = {0.0: bases.train(folder)}
    for ratio in ratios:
      out[label][ratio] = pruned.train(f"{folder}_prune{round(100 * ratio)}")
  return out


def main(_):
  task, seeds = _TASK.value, [int(s) for s in _SEEDS.value]
  per_seed = [run_seed(task, s, [float(r) for r in _RATIOS.value]) for s in seeds]
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
  for label in MODELS:
    base_mean, _ = tables.mean_std([100 * r[label][0.0]["test_accuracy"] for r in per_seed])
    best[label] = {"no fine-tune": 0.0, "fine-tuned": 0.0}
    for ratio in sorted(per_seed[0][label]):
      results = [r[label][ratio] for r in per_seed]
      # The exported smaller model's accuracy (equal to the masked model's in float; under
      # quantization the a_bar grid of the smaller model no longer sees the pruned modes).
      tuned = [100 * r.get("pruned_model_test_accuracy", r["test_accuracy"]) for r in results]
      before = [100 * r.get("test_accuracy_before_finetune", r["test_accuracy"]) for r in results]
      (tm, ts), (bm, bs) = tables.mean_std(tuned), tables.mean_std(before)
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
  out_dir = os.path.join(_OUT.value, task)
  by_ratio = {k: {str(r): v for r, v in t.items()} for k, t in table.items()}
  tables.write(out_dir, "table", "\n".join(lines), by_ratio)
  _plot(table, os.path.join(out_dir, "accuracy_vs_pruning.png"), task)


def _plot(table: dict, path: str, task: str) -> None:
  from matplotlib.figure import Figure  # noqa: PLC0415

  fig = Figure(figsize=(5.5, 3.8))
  ax = fig.subplots()
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
  print(f"Plot: {figures.save(fig, path)}")


if __name__ == "__main__":
  app.run(main)
