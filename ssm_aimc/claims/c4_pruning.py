"""C4, structured pruning: accuracy against the fraction of state modes pruned, float
against QAT (configs/claims/c4_pruning.py).

claim.families maps a label to (unpruned model, pruned model name prefix); the pruned
models are named <prefix><percent> (e.g. qat_w4a8_prune75) in claim.models.
"""

import dataclasses
from collections.abc import Callable

from ssm_aimc.claims import common

ID, TITLE = "C4", "Structured pruning"
STATEMENT = "QAT enables structured pruning."


@dataclasses.dataclass(frozen=True)
class Settings:
  """claim.* of C4.

  Attributes:
    families: label -> (unpruned model, name prefix of its pruned models).
    reference: the float family's label.
    quantized: the QAT family's label.
    max_loss_points: the loss against the family's unpruned model still called kept.
    min_ratio: fraction of modes the quantized model must lose within that loss.
  """

  families: dict[str, tuple[str, str]]
  reference: str
  quantized: str
  max_loss_points: float
  min_ratio: float


def prune_row(results: dict) -> dict:
  """A model's point on its family's curve from its results.json: the fraction of modes
  pruned ("ratio", 0 unpruned) and asked ("target"), test accuracy before and after the
  fine-tune, memory bits of the exported model and of the FP32 float model."""
  prune = results.get("prune")
  return {
    "ratio": prune["pruned_fraction"] if prune else 0.0,
    "target": prune["ratio"] if prune else 0.0,
    "before": results["test_accuracy_before_finetune"] if prune else results["test_accuracy"],
    "after": float(results["test_accuracy"]),
    "memory_bits": float(results["memory_bits"]),
    "fp32_memory_bits": float(results["fp32_memory_bits"]),
  }


def families(s: Settings, names: list[str], results_of: Callable[[str], dict]) -> dict:
  """{label: `prune_row`s by pruned fraction}: the unpruned model and every model of `names`
  with the family's prefix; `results_of(name)` gives (trains) a model's results.json."""
  out = {}
  for label, (unpruned, prefix) in s.families.items():
    rows = [prune_row(results_of(unpruned))]
    rows += [prune_row(results_of(n)) for n in names if n.startswith(prefix)]
    out[label] = sorted(rows, key=lambda r: r["ratio"])
  return out


def measure(exp, runs, workdir: str) -> dict:
  """Trains every model of the claim: {"families": `families`}."""
  del workdir  # Everything lives in the models' folders.
  return {"families": families(common.settings(Settings, exp.claim), runs.names(), runs.train)}


def largest_kept(rows: list[dict], max_loss_points: float) -> dict:
  """The row with the largest pruned "ratio" whose fine-tuned accuracy ("after") is within
  `max_loss_points` of the unpruned row (ratio 0, the first)."""
  ok = [r for r in rows if 100 * (rows[0]["after"] - r["after"]) <= max_loss_points]
  return max(ok, key=lambda r: r["ratio"])


def judge(numbers: dict, s: Settings) -> dict:
  """{"verdict", "best": {label: `largest_kept` row}, "better": the quantized family keeps
  a larger fraction than the reference}."""
  best = {
    label: largest_kept(rows, s.max_loss_points) for label, rows in numbers["families"].items()
  }
  q, f = best[s.quantized], best[s.reference]
  combined, better = q["ratio"] >= s.min_ratio, q["ratio"] > f["ratio"]
  return {"verdict": common.grade(combined and better, combined), "best": best, "better": better}


def summary(judged: dict, s: Settings, fp32_bits: float) -> str:
  q, f = judged["best"][s.quantized], judged["best"][s.reference]
  text = (
    f"Largest fraction of modes pruned within {s.max_loss_points:g} point of the unpruned "
    f"model (after a short fine-tune): {s.reference} {100 * f['ratio']:.0f} % "
    f"({common.pct(f['after'])} %), {s.quantized} {100 * q['ratio']:.0f} % "
    f"({common.pct(q['after'])} %, {fp32_bits / q['memory_bits']:.1f}x fewer memory bits than "
    "the FP32 float model). "
  )
  return text + (
    "The quantized model tolerates more pruning than the float one."
    if judged["better"]
    else "The quantized model does not tolerate more pruning than the float one here: "
    "QAT and pruning combine, but QAT is not what makes pruning possible."
  )


def _ratio_text(row: dict) -> str:
  """The pruned fraction; the asked one too where whole modes per channel made it differ."""
  text = f"{100 * row['ratio']:.1f} %"
  if abs(row["ratio"] - row["target"]) > 1e-6:
    text += f" (asked {100 * row['target']:.0f} %)"
  return text


def table(numbers: dict, fp32_bits: float) -> str:
  header = ["model", "modes pruned", "no fine-tune (%)", "fine-tuned (%)", "memory bits"]
  cells = [
    [
      label,
      _ratio_text(r),
      common.pct(r["before"]),
      common.pct(r["after"]),
      f"{r['memory_bits']:.3g}",
      common.times(fp32_bits / r["memory_bits"]),
    ]
    for label, rows in numbers["families"].items()
    for r in rows
  ]
  return common.markdown_table([*header, "x vs FP32 float"], cells)


def figure(numbers: dict, fp32_bits: float, task: str, workdir: str) -> None:
  fig, (ax, ax_mem) = common.new_figure(2, 5.0)
  for label, rows in numbers["families"].items():
    ratio = [100 * r["ratio"] for r in rows]
    after = [100 * r["after"] for r in rows]
    line = ax.plot(ratio, after, marker="o", label=f"{label}")
    before = [100 * r["before"] for r in rows]
    color = line[0].get_color()
    ax.plot(ratio, before, ls="--", marker="x", color=color, label=f"{label}, no fine-tune")
    ax_mem.plot([fp32_bits / r["memory_bits"] for r in rows], after, marker="o", label=label)
  ax.set_xlabel("state modes pruned (%)")
  ax.set_ylabel("test accuracy (%)")
  ax.legend(fontsize=7)
  common.log_times_axis(ax_mem)
  ax_mem.set_xlabel("memory bits: x fewer than the FP32 float model")
  ax_mem.set_ylabel("test accuracy, fine-tuned (%)")
  ax_mem.legend(fontsize=7)
  common.finish_figure(fig, [ax, ax_mem], f"C4 structured pruning ({task})", workdir)


def render(numbers: dict, judged: dict, s: Settings, task: str, workdir: str) -> common.Outcome:
  """The claim's outcome from `judge`'s verdict; writes its figure into `workdir`."""
  fp32_bits = numbers["families"][s.reference][0]["fp32_memory_bits"]
  figure(numbers, fp32_bits, task, workdir)
  rule = (
    f"supported if the quantized model keeps accuracy within {s.max_loss_points:g} point "
    f"of its unpruned self at >= {100 * s.min_ratio:.0f} % of the modes pruned AND "
    "tolerates a larger fraction than the float model; partly if only the first holds."
  )
  text, verdict = summary(judged, s, fp32_bits), judged["verdict"]
  out = {"families": numbers["families"]}
  return common.Outcome(ID, TITLE, STATEMENT, rule, verdict, text, table(numbers, fp32_bits), out)
