"""C2, model size against precision: the iso-memory frontier of a sweep over (H, N, weight
bits) (exp.sweep; configs/claims/c2_size_vs_precision.py).

On the Pareto front of accuracy against memory bits the trade is real when the front mixes
model sizes and bit widths; claim.iso_tolerance sets how close two memories must be to
compare a bigger low-precision model with a smaller high-precision one.
"""

import dataclasses
import os

from ssm_aimc import sweep
from ssm_aimc import workdir as workdir_lib
from ssm_aimc.claims import common

ID, TITLE = "C2", "Model size against precision"
STATEMENT = "Model size trades against numerical precision (an iso-memory frontier)."
RULE = (
  "supported if the accuracy-memory Pareto front holds more than one model size and more "
  "than one bit width, and at some iso-memory pair a bigger, lower-precision model is at "
  "least as accurate as a smaller, higher-precision one; partly if only one holds."
)
SWEEP_DIR = "sweep"
# What a row of the sweep is judged on; the claim.json rows drop d_model and d_state.
ROW_KEYS = ("d_model", "d_state", "weight_bits", "params", "memory_bits", "test_accuracy", "pareto")
NUMBER_KEYS = ("size", "weight_bits", "params", "memory_bits", "test_accuracy", "pareto")


@dataclasses.dataclass(frozen=True)
class Settings:
  """claim.* of C2.

  Attributes:
    iso_tolerance: two memories within this factor count as the same budget.
  """

  iso_tolerance: float


def measure(exp, runs, workdir: str) -> dict:
  """The sweep of `exp.sweep` in workdir/sweep (reused when it finished with the same
  config, refused when another config wrote it): {"rows": every member that did not
  diverge, with ROW_KEYS and its "size"}."""
  base = dataclasses.replace(exp, claim=None)
  folder = os.path.join(workdir, SWEEP_DIR)
  reused = workdir_lib.finished(folder, base, sweep.JSON_NAME)
  result = sweep.run_sweep(base, folder)
  runs.seconds["sweep"] = float(result["wall_time_s"])
  if reused:
    runs.reused.append("sweep")
  rows = [{k: r[k] for k in ROW_KEYS} for r in result["rows"] if not r.get("diverged")]
  return {"rows": [{**r, "size": f"H={r['d_model']}, N={r['d_state']}"} for r in rows]}


def iso_memory_pairs(rows: list[dict], tolerance: float) -> list[tuple[dict, dict]]:
  """(bigger, smaller) rows: more parameters at fewer weight bits against fewer parameters at
  more bits, with memory bits within `tolerance`x of each other (the same budget)."""
  pairs = []
  for big in rows:
    for small in rows:
      bigger = big["params"] > small["params"] and big["weight_bits"] < small["weight_bits"]
      ratio = big["memory_bits"] / small["memory_bits"]
      if bigger and 1 / tolerance <= ratio <= tolerance:
        pairs.append((big, small))
  return pairs


def judge(numbers: dict, s: Settings) -> dict:
  """{"verdict", "front": the Pareto rows by memory, its "sizes" and "widths", the iso-memory
  "pairs" and the "wins" among them (the bigger model at least as accurate)}."""
  rows = numbers["rows"]
  front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["memory_bits"])
  sizes = sorted({r["size"] for r in front})
  widths = sorted({int(r["weight_bits"]) for r in front})
  pairs = iso_memory_pairs(rows, s.iso_tolerance)
  wins = [(b, small) for b, small in pairs if b["test_accuracy"] >= small["test_accuracy"]]
  mixed = len(sizes) > 1 and len(widths) > 1
  verdict = common.grade(mixed and bool(wins), mixed or bool(wins))
  return {
    "verdict": verdict,
    "front": front,
    "sizes": sizes,
    "widths": widths,
    "pairs": pairs,
    "wins": wins,
  }


def _point(r: dict) -> str:
  return f"{r['size']} at {int(r['weight_bits'])} bits"


def summary(rows: list[dict], judged: dict, s: Settings) -> str:
  front, wins = judged["front"], judged["wins"]
  front_text = "; ".join(
    f"{_point(r)} ({r['memory_bits']:.3g} bits, {common.pct(r['test_accuracy'])} %)" for r in front
  )
  text = (
    f"{len(rows)} models ({len({r['size'] for r in rows})} sizes x "
    f"{len({r['weight_bits'] for r in rows})} weight widths). The Pareto front, from the "
    f"smallest memory up: {front_text}. It holds {len(judged['sizes'])} size(s) and "
    f"{len(judged['widths'])} width(s). Of {len(judged['pairs'])} iso-memory pairs (memories "
    f"within {s.iso_tolerance:g}x) of a bigger model at fewer bits against a smaller one at "
    f"more, the bigger model is at least as accurate in {len(wins)}."
  )
  if wins:
    b, small = max(wins, key=lambda p: p[0]["test_accuracy"] - p[1]["test_accuracy"])
    text += (
      f" Largest gain: {_point(b)}, {common.pct(b['test_accuracy'])} % in "
      f"{b['memory_bits']:.3g} bits, against {_point(small)}, "
      f"{common.pct(small['test_accuracy'])} % in {small['memory_bits']:.3g} bits."
    )
  return text


def table(rows: list[dict]) -> str:
  return common.markdown_table(
    ["size", "weight bits", "params", "memory bits", "test accuracy (%)", "Pareto"],
    [
      [
        r["size"],
        int(r["weight_bits"]),
        int(r["params"]),
        f"{r['memory_bits']:.3g}",
        common.pct(r["test_accuracy"]),
        "yes" if r["pareto"] else "",
      ]
      for r in sorted(rows, key=lambda r: r["memory_bits"])
    ],
  )


def figure(rows: list[dict], front: list[dict], task: str, workdir: str) -> None:
  fig, ax = common.new_figure()
  markers = dict(zip(sorted({int(r["weight_bits"]) for r in rows}), "ovs^Dp*", strict=False))
  by_size = sorted(rows, key=lambda r: (r["d_model"], r["d_state"]))
  colors = {size: f"C{i}" for i, size in enumerate(dict.fromkeys(r["size"] for r in by_size))}
  for r in rows:
    marker, color = markers[int(r["weight_bits"])], colors[r["size"]]
    ax.scatter(r["memory_bits"], 100 * r["test_accuracy"], marker=marker, color=color)
  accuracy = [100 * r["test_accuracy"] for r in front]
  memory = [r["memory_bits"] for r in front]
  ax.step(memory, accuracy, where="post", color="black", lw=1, label="Pareto front")
  for size, color in colors.items():
    ax.scatter([], [], color=color, label=size)
  for bits, marker in markers.items():
    ax.scatter([], [], color="gray", marker=marker, label=f"{bits}-bit weights")
  ax.set_xscale("log")
  ax.set_xlabel("memory (bits)")
  ax.set_ylabel("test accuracy (%)")
  ax.legend(fontsize=7, ncol=2)
  common.finish_figure(fig, [ax], f"C2 size vs precision ({task})", workdir)


def render(numbers: dict, judged: dict, s: Settings, task: str, workdir: str) -> common.Outcome:
  """The claim's outcome from `judge`'s verdict; writes its figure into `workdir`."""
  rows = numbers["rows"]
  figure(rows, judged["front"], task, workdir)
  out = {
    "rows": [{k: r[k] for k in NUMBER_KEYS} for r in rows],
    "front_sizes": judged["sizes"],
    "front_widths": judged["widths"],
    "iso_pairs": len(judged["pairs"]),
    "iso_wins": len(judged["wins"]),
  }
  text, verdict = summary(rows, judged, s), judged["verdict"]
  return common.Outcome(ID, TITLE, STATEMENT, RULE, verdict, text, table(rows), out)
