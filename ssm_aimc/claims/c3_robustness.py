"""C3, robustness to analog noise: the accuracy drop (digital - chips) against programming
noise of the float, QAT and noise-aware models (configs/claims/c3_robustness.py).

A model is more robust than the float one at a scale when its drop is smaller by more than
the standard error of the difference (std over chips / sqrt(chips), combined).
"""

import dataclasses
import time

import numpy as np

from ssm_aimc import experiment, noise_eval, train
from ssm_aimc.claims import common

ID, TITLE = "C3", "Robustness to analog noise"
STATEMENT = "QAT makes models more robust to analog noise."
RULE = (
  "supported if the QAT model's accuracy drop is smaller than the float model's (by more "
  "than the standard error over chips) at least at half the noise scales >= 1x and never "
  "larger; partly if that holds only for the noise-aware QAT model; else not supported."
)


@dataclasses.dataclass(frozen=True)
class Settings:
  """claim.* of C3.

  Attributes:
    baseline, qat, noise_aware: the float, QAT and noise-aware + QAT models compared.
    device: the device preset of the simulated chips.
    prog_noise_scales: programming-noise scales evaluated (other terms at the preset's).
    chips: simulated chips per point.
  """

  baseline: str
  qat: str
  noise_aware: str
  device: str
  prog_noise_scales: tuple[float, ...]
  chips: int


def on_chips(
  exp: experiment.Experiment, device: str, chips: int, prog_noise_scales, seeds_per_call=None
) -> experiment.Experiment:
  """`exp` evaluated on `chips` simulated chips of `device` (`seeds_per_call` at a time, all
  by default) at every programming-noise scale, drift and read noise (drawn at every
  product) as the preset has them; a ConfigError for a bad value."""
  hardware = {
    "enabled": True,
    "train": False,
    "device": device,
    "read_noise_draw": "product",
    "eval_seeds": chips,
    "seeds_per_call": seeds_per_call or chips,
    "prog_noise_scales": tuple(prog_noise_scales),
  }
  return experiment.override(exp, {f"hardware.{k}": v for k, v in hardware.items()})


def noise_curve(exp: experiment.Experiment, workdir: str) -> dict:
  """{"digital": test accuracy, "rows": chip accuracies (noise_eval.summary) at every scale
  of exp.hardware.prog_noise_scales} of the model trained in `workdir`."""
  run = train.load_for_inference(exp, workdir)
  test = run.setup.dataset.test

  def at(spec):
    return noise_eval.summary(run.pop.chip_accuracies(run.params, test, spec)[0])

  rows = noise_eval.at_prog_noise_scales(at, exp.hardware.spec, exp.hardware.prog_noise_scales)
  return {"digital": float(run.pop.evaluate(run.params, test)["accuracy"][0]), "rows": rows}


def measure(exp, runs, workdir: str) -> dict:
  """Trains and evaluates every model (the three compared first): {"curves": {name:
  `noise_curve`}}."""
  del workdir  # Everything lives in the models' folders.
  s = common.settings(Settings, exp.claim)
  first = [s.baseline, s.qat, s.noise_aware]
  names = first + [n for n in runs.names() if n not in first]
  evaluated = {
    n: on_chips(runs.experiment(n), s.device, s.chips, s.prog_noise_scales) for n in names
  }
  curves = {}
  for name in names:
    runs.train(name)
    tick = time.time()
    curves[name] = noise_curve(evaluated[name], runs.workdir(name))
    runs.seconds[f"noise evaluation of {name}"] = time.time() - tick
  return {"curves": curves}


def compare_drops(rows: list[dict], baseline: list[dict], chips: int) -> list[str]:
  """ "better" / "worse" / "same" robustness than `baseline` at each noise scale >= 1.

  Rows carry "prog_noise_scale", "drop" (digital minus mean chip accuracy) and
  "analog_accuracy_std"; a difference of drops within the standard error of that
  difference (stds over `chips` chips, combined) is "same".
  """
  out = []
  for r, b in zip(rows, baseline, strict=True):
    if r["prog_noise_scale"] < 1:
      continue
    se = np.hypot(r["analog_accuracy_std"], b["analog_accuracy_std"]) / np.sqrt(chips)
    diff = b["drop"] - r["drop"]
    out.append("better" if diff > se else "worse" if diff < -se else "same")
  return out


def more_robust(comparison: list[str]) -> bool:
  """Better at half the scales or more, and worse at none."""
  return "worse" not in comparison and 2 * comparison.count("better") >= len(comparison) > 0


def judge(numbers: dict, s: Settings) -> dict:
  """{"verdict", "curves": the curves with each row's "drop", "qat" and "aware": their
  `compare_drops` against the baseline}."""
  curves = {}
  for name, curve in numbers["curves"].items():
    drops = [{**r, "drop": curve["digital"] - r["analog_accuracy_mean"]} for r in curve["rows"]]
    curves[name] = {**curve, "rows": drops}
  base = curves[s.baseline]["rows"]
  qat = compare_drops(curves[s.qat]["rows"], base, s.chips)
  aware = compare_drops(curves[s.noise_aware]["rows"], base, s.chips)
  verdict = common.grade(more_robust(qat), more_robust(aware))
  return {"verdict": verdict, "curves": curves, "qat": qat, "aware": aware}


def summary(judged: dict, s: Settings) -> str:
  curves = judged["curves"]
  scales = [r["prog_noise_scale"] for r in curves[s.baseline]["rows"]]
  high = [scale for scale in scales if scale >= 1]

  def at_scales(comparison: list[str]) -> str:
    return ", ".join(f"{v} at {scale:g}x" for scale, v in zip(high, comparison, strict=True))

  last = ", ".join(f"{n} {100 * c['rows'][-1]['drop']:.2f} points" for n, c in curves.items())
  return (
    f"Test accuracy on {s.chips} simulated {s.device} chips per point. Robustness (accuracy "
    f"drop from digital) against the float model's: QAT alone ({s.qat}) "
    f"{at_scales(judged['qat'])}; noise-aware QAT ({s.noise_aware}) "
    f"{at_scales(judged['aware'])}. At the largest scale ({scales[-1]:g}x) the drops are: "
    f"{last}."
  )


def table(curves: dict, scales: list[float]) -> str:
  return common.markdown_table(
    ["model", "digital (%)", *(f"{scale:g}x (%)" for scale in scales)],
    [
      [
        name,
        common.pct(curve["digital"]),
        *(common.chips_text(r) for r in curve["rows"]),
      ]
      for name, curve in curves.items()
    ],
  )


def figure(curves: dict, s: Settings, task: str, workdir: str) -> None:
  fig, (ax, ax_drop) = common.new_figure(2, 5.0)
  for name, curve in curves.items():
    scales = [r["prog_noise_scale"] for r in curve["rows"]]
    mean = np.array([100 * r["analog_accuracy_mean"] for r in curve["rows"]])
    std = np.array([100 * r["analog_accuracy_std"] for r in curve["rows"]])
    ax.errorbar(scales, mean, yerr=std, marker="o", capsize=3, label=name)
    ax_drop.plot(scales, [100 * r["drop"] for r in curve["rows"]], marker="o", label=name)
  ax.set_ylabel("accuracy on the chips (%)")
  ax_drop.set_ylabel("drop from digital (points)")
  for a in (ax, ax_drop):
    a.set_xlabel(f"programming-noise scale (x {s.device})")
  ax.legend(fontsize=8)
  title = f"C3 robustness ({task}, {s.chips} chips per point)"
  common.finish_figure(fig, [ax, ax_drop], title, workdir)


def render(numbers: dict, judged: dict, s: Settings, task: str, workdir: str) -> common.Outcome:
  """The claim's outcome from `judge`'s verdict; writes its figure into `workdir`."""
  del numbers  # judged["curves"] holds them, with the drops.
  curves = judged["curves"]
  figure(curves, s, task, workdir)
  scales = [r["prog_noise_scale"] for r in curves[s.baseline]["rows"]]
  out = {"curves": curves, "qat_vs_float": judged["qat"], "noise_aware_vs_float": judged["aware"]}
  text, verdict = summary(judged, s), judged["verdict"]
  return common.Outcome(ID, TITLE, STATEMENT, RULE, verdict, text, table(curves, scales), out)
