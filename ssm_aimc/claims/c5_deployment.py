"""C5, deployment on the simulated crossbar: every model deployed (ssm_aimc.deploy) on
simulated chips of every preset in exp.deploy.devices (configs/claims/c5_deployment.py)."""

import dataclasses
import os
import time

from ssm_aimc import deploy
from ssm_aimc import workdir as workdir_lib
from ssm_aimc.claims import common

ID, TITLE = "C5", "Deployment on a memristive crossbar"
STATEMENT = (
  "The result deploys on a memristive crossbar (simulated here) with large efficiency gains."
)


@dataclasses.dataclass(frozen=True)
class Settings:
  """claim.* of C5.

  Attributes:
    deployed: the model judged (QAT + noise-aware).
    max_gap_points: its allowed loss on the chips of every preset against software.
    min_energy_gain: the least energy gain against an FP32 digital processor.
  """

  deployed: str
  max_gap_points: float
  min_energy_gain: float


def measure(exp, runs, workdir: str) -> dict:
  """Trains and deploys every model of the claim: {"models": {name: deploy/results.json}}."""
  del exp, workdir  # Each model deploys with its own experiment, in its own folder.
  out = {}
  for name in runs.names():
    runs.train(name)
    model, folder = runs.experiment(name), runs.workdir(name)
    tick = time.time()
    deploy.deploy(model, folder)
    runs.seconds[f"deployment of {name}"] = time.time() - tick
    path = os.path.join(folder, model.deploy.folder, workdir_lib.RESULTS)
    out[name] = workdir_lib.read_json(path)
  return {"models": out}


def chip_loss(results: dict, device: str) -> float:
  """Points lost on the chips of `device` against software."""
  return 100 * (results["test_accuracy"] - results["chips"][device]["analog_accuracy_mean"])


def judge(numbers: dict, s: Settings) -> dict:
  """{"verdict", "devices", "gaps": {device: `chip_loss` of the deployed model}, "gain": its
  energy gain against FP32 digital}."""
  judged = numbers["models"][s.deployed]
  devices = list(judged["chips"])
  gaps = {d: chip_loss(judged, d) for d in devices}
  gain = float(judged["energy_vs_fp32"])
  close, efficient = all(g <= s.max_gap_points for g in gaps.values()), gain >= s.min_energy_gain
  verdict = common.grade(close and efficient, close or efficient)
  return {"verdict": verdict, "devices": devices, "gaps": gaps, "gain": gain}


def summary(numbers: dict, judged: dict, s: Settings) -> str:
  models, devices, gaps = numbers["models"], judged["devices"], judged["gaps"]
  r, gain = models[s.deployed], judged["gain"]
  energy = r["energy_per_inference_j"]
  chips = ", ".join(
    f"{d} {common.chips_text(r['chips'][d])} % ({-gaps[d]:+.2f} points)" for d in devices
  )
  text = (
    f"{s.deployed}: software {common.pct(r['test_accuracy'])} %; on the chips {chips} over "
    f"{r['noise_seeds']} chips each; {r['tiles']} tiles; {1e9 * energy['aimc']:.0f} nJ per "
    f"inference against {1e6 * energy['digital_fp32']:.1f} uJ on an FP32 digital processor "
    f"({gain:.1f}x) and {1e6 * energy['digital_int8']:.2f} uJ on INT8 "
    f"({energy['digital_int8'] / energy['aimc']:.1f}x)."
  )
  others = [
    f"{n} " + ", ".join(f"{-chip_loss(models[n], d):+.2f} points on {d}" for d in devices)
    for n in models
    if n != s.deployed
  ]
  return text + (f" For comparison, chip minus software: {'; '.join(others)}." if others else "")


def table(numbers: dict, devices: list[str]) -> str:
  return common.markdown_table(
    ["model", "software (%)", *(f"{d} chips (%)" for d in devices), "tiles", "energy x vs FP32"],
    [
      [
        name,
        common.pct(r["test_accuracy"]),
        *(common.chips_text(r["chips"][d]) for d in devices),
        r["tiles"],
        common.times(r["energy_vs_fp32"]),
      ]
      for name, r in numbers["models"].items()
    ],
  )


def figure(numbers: dict, devices: list[str], s: Settings, task: str, workdir: str) -> None:
  models = numbers["models"]
  fig, (ax, ax_e) = common.new_figure(2, 5.0)
  width = 0.8 / (len(devices) + 1)
  for i, r in enumerate(models.values()):
    ax.bar(i, 100 * r["test_accuracy"], width, color="gray", label="software" if i == 0 else None)
    for j, d in enumerate(devices):
      chips = r["chips"][d]
      mean, std = 100 * chips["analog_accuracy_mean"], 100 * chips["analog_accuracy_std"]
      label = f"{d} chips" if i == 0 else None
      ax.bar(i + (j + 1) * width, mean, width, yerr=std, color=f"C{j}", capsize=3, label=label)
  ax.set_xticks([i + width * len(devices) / 2 for i in range(len(models))], list(models))
  low = min(100 * r["chips"][d]["analog_accuracy_mean"] for r in models.values() for d in devices)
  ax.set_ylim(max(0.0, low - 5), 100)
  ax.set_ylabel("test accuracy (%)")
  ax.legend(fontsize=7)
  energy = models[s.deployed]["energy_per_inference_j"]
  nj = [1e9 * energy[k] for k in ("aimc", "digital_fp32", "digital_int8")]
  ax_e.bar(["chip", "FP32 digital", "INT8 digital"], nj, color=["C2", "C7", "C8"])
  ax_e.set_yscale("log")
  ax_e.set_ylabel(f"energy per inference, {s.deployed} (nJ)")
  title = f"C5 deployment ({task}, {models[s.deployed]['noise_seeds']} chips per device)"
  common.finish_figure(fig, [ax, ax_e], title, workdir, grid="y")


def render(numbers: dict, judged: dict, s: Settings, task: str, workdir: str) -> common.Outcome:
  """The claim's outcome from `judge`'s verdict; writes its figure into `workdir`."""
  figure(numbers, judged["devices"], s, task, workdir)
  rule = (
    f"supported if the deployed model's chip accuracy is within {s.max_gap_points:g} points "
    f"of its software accuracy on every device preset and its energy per inference is "
    f">= {s.min_energy_gain:g}x below an FP32 digital processor; partly if one holds."
  )
  out = {"models": numbers["models"], "gaps_points": judged["gaps"]}
  out["energy_vs_fp32"] = judged["gain"]
  text, cells = summary(numbers, judged, s), table(numbers, judged["devices"])
  return common.Outcome(ID, TITLE, STATEMENT, rule, judged["verdict"], text, cells, out)
