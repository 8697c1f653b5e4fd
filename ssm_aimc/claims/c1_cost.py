"""C1, cost reduction: memory bits, bit-operations and energy of every model of the claim
against the FP32 float model (configs/claims/c1_cost.py).

Every ratio is against the float baseline in FP32 (memory, bit-operations) or run on an
FP32 digital processor (energy; the model itself on the simulated chip of exp.deploy).
"""

import dataclasses

from ssm_aimc import deploy, errors, models, train
from ssm_aimc.claims import common

ID, TITLE = "C1", "Cost reduction"
STATEMENT = (
  "QAT cuts the cost of an SSM (memory bits, operations, energy) by up to two orders "
  "of magnitude at small accuracy loss, down to ternary weights."
)
METRICS = {"memory_x": "memory bits", "bitops_x": "bit-operations", "energy_x": "energy"}
# Judged on what quantization changes; the chip's energy is set by its converters and
# tiles, not the weight bits (the float model's own chip energy is in the table).
JUDGED_COSTS = ("memory_x", "bitops_x")
COST_KEYS = ("test_accuracy", "memory_bits", "fp32_memory_bits", "bitops_per_step", "macs_per_step")


@dataclasses.dataclass(frozen=True)
class Settings:
  """claim.* of C1.

  Attributes:
    baseline: the float model, one of claim.models.
    max_loss_points: accuracy loss (points) against it still "small".
    target_reduction: the reduction claimed ("two orders of magnitude": 100).
  """

  baseline: str
  max_loss_points: float
  target_reduction: float


def energy_of(exp, workdir: str) -> dict:
  """Energy per inference (J) of a trained model on the chip of `exp.deploy`, and on FP32 /
  INT8 digital processors; plus tiles used."""
  run = train.load_for_inference(exp, workdir)
  records = models.deployed_tensors(run.setup.model, run.params, exp.quant.spec, run.setup.example)
  mapping, energies = deploy.energy_report(exp, records, run.setup.dataset.seq_len)
  return {
    "aimc_j": energies["aimc"]["total_j"],
    "digital_fp32_j": energies["digital_fp32"]["total_j"],
    "digital_int8_j": energies["digital_int8"]["total_j"],
    "tiles": mapping.tiles,
  }


def cost_row(name: str, results: dict, energy: dict) -> dict:
  """One model's numbers: the cost keys of its results.json, the FP32 bit-operations of
  its architecture and its energy (`energy_of`)."""
  out = {"model": name, **{k: float(results[k]) for k in COST_KEYS}}
  # FP32 bit-operations of the same architecture: 32-bit weights x 32-bit activations.
  out["fp32_bitops_per_step"] = 32 * 32 * out["macs_per_step"]
  return {**out, **energy}


def measure(exp, runs, workdir: str) -> dict:
  """Trains every model of the claim: {"rows": its `cost_row`s, in claim.models' order}."""
  del workdir  # Everything lives in the models' folders.
  s = common.settings(Settings, exp.claim)
  if s.baseline not in runs.names():
    raise errors.ConfigError(f"claim.baseline {s.baseline!r} is not one of claim.models.")
  rows = []
  for name in runs.names():
    results = runs.train(name)
    rows.append(cost_row(name, results, energy_of(*runs.deployed(name, results))))
  return {"rows": rows}


def judge(numbers: dict, s: Settings) -> dict:
  """Every ratio against the baseline and the best model within the loss.

  Returns:
    {"verdict", "rows": with loss_points and the ratios of METRICS, by memory ratio,
     "base": the baseline's row, "best": {metric: best row within the loss}}.
  """
  raw = next(r for r in numbers["rows"] if r["model"] == s.baseline)
  rows = []
  for r in numbers["rows"]:
    rows.append(
      {
        **r,
        "loss_points": 100 * (raw["test_accuracy"] - r["test_accuracy"]),
        "memory_x": raw["fp32_memory_bits"] / r["memory_bits"],
        "bitops_x": raw["fp32_bitops_per_step"] / r["bitops_per_step"],
        "energy_x": raw["digital_fp32_j"] / r["aimc_j"],
      }
    )
  rows.sort(key=lambda r: r["memory_x"])
  base = next(r for r in rows if r["model"] == s.baseline)
  # The float model itself is no candidate: the claim is about what quantization buys.
  within = [r for r in rows if r is not base and r["loss_points"] <= s.max_loss_points]
  best = {m: max(within, key=lambda r, m=m: r[m]) for m in METRICS} if within else {}
  best_any = max((best[m][m] for m in JUDGED_COSTS if m in best), default=0.0)
  verdict = common.grade(best_any >= s.target_reduction, best_any >= s.target_reduction / 10)
  return {"verdict": verdict, "rows": rows, "base": base, "best": best}


def summary(judged: dict, s: Settings) -> str:
  rows, base, best = judged["rows"], judged["base"], judged["best"]
  quantized = [r for r in rows if r is not base]
  overall = {m: max(quantized, key=lambda r, m=m: r[m]) for m in METRICS}
  beyond = [
    f"{label} {common.times(overall[m][m])} ({overall[m]['model']}, "
    f"{-overall[m]['loss_points']:+.2f} points)"
    for m, label in METRICS.items()
    if best.get(m) is not overall[m]
  ]
  text = f"Float baseline {common.pct(base['test_accuracy'])} %. "
  if best:
    parts = [
      f"{label} {common.times(best[m][m])} ({best[m]['model']})" for m, label in METRICS.items()
    ]
    text += (
      f"Within {s.max_loss_points:g} point of it the largest reductions against FP32 are: "
      f"{', '.join(parts)}."
    )
  else:
    text += f"No quantized model is within {s.max_loss_points:g} point of it."
  if beyond:
    text += f" Beyond that loss: {', '.join(beyond)}."
  return text + (
    " Energy compares one inference on the simulated chip (8-bit converters, cells, "
    "periphery) with the float model on an FP32 digital processor; the chip, not the bit "
    "width, buys most of it (the float model's own chip energy is in the table: pruning "
    "changes it through the tiles, the weight bits do not), so the verdict rests on memory "
    "bits and bit-operations, and whether the chip keeps the accuracy is C5."
  )


def table(rows: list[dict]) -> str:
  header = ["model", "test accuracy (%)", "vs float (points)", "memory bits", "memory x"]
  header += ["bit-ops x", "chip energy (nJ)", "energy x vs FP32", "tiles"]
  cells = [
    [
      r["model"],
      common.pct(r["test_accuracy"]),
      f"{0.0 - r['loss_points']:+.2f}",
      f"{r['memory_bits']:.3g}",
      common.times(r["memory_x"]),
      common.times(r["bitops_x"]),
      f"{1e9 * r['aimc_j']:.0f}",
      common.times(r["energy_x"]),
      r["tiles"],
    ]
    for r in rows
  ]
  return common.markdown_table(header, cells)


def figure(judged: dict, s: Settings, task: str, workdir: str) -> None:
  rows = judged["rows"]
  fig, ax = common.new_figure()
  for m, marker in zip(METRICS, "os^", strict=True):
    accuracy = [100 * r["test_accuracy"] for r in rows]
    ax.scatter([r[m] for r in rows], accuracy, marker=marker, label=METRICS[m])
  for r in rows:
    ax.annotate(r["model"], (r["memory_x"], 100 * r["test_accuracy"]), fontsize=7)
  ax.axhline(100 * judged["base"]["test_accuracy"] - s.max_loss_points, color="gray", ls="--", lw=1)
  ax.axvline(s.target_reduction, color="gray", ls=":", lw=1)
  common.log_times_axis(ax)
  ax.set_xlabel("reduction against the FP32 float model (x)")
  ax.set_ylabel("test accuracy (%)")
  ax.legend(fontsize=8)
  common.finish_figure(fig, [ax], f"C1 cost reduction ({task})", workdir)


def render(numbers: dict, judged: dict, s: Settings, task: str, workdir: str) -> common.Outcome:
  """The claim's outcome from `judge`'s verdict; writes its figure into `workdir`."""
  figure(judged, s, task, workdir)
  rule = (
    f"supported if some quantized model within {s.max_loss_points:g} point of the float "
    f"model needs >= {s.target_reduction:g}x fewer memory bits or bit-operations than the "
    f"FP32 float model; partly if >= {s.target_reduction / 10:g}x; else not supported "
    "(energy is reported, not judged)."
  )
  best = {m: r["model"] for m, r in judged["best"].items()}
  numbers = {"rows": judged["rows"], "best_within_loss": best}
  text, verdict = summary(judged, s), judged["verdict"]
  return common.Outcome(ID, TITLE, STATEMENT, rule, verdict, text, table(judged["rows"]), numbers)
