"""C5, deployment on the simulated crossbar: every model deployed (ssm_aimc.deploy) on
simulated chips of every preset in exp.deploy.devices (configs/claims/c5_deployment.py),
and one of them again with the recurrence on the arrays (a_bar - 1 held in the devices, the
state through the converters every step, each mode's decay trimmed after programming:
README "The recurrence on the arrays, made to work"), reported beside the verdict."""

import dataclasses
import os
import textwrap
import time

from ssm_aimc import deploy, experiment
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
    arrays_model: the model deployed again with the recurrence on the arrays ("": none).
    arrays_recurrence: how a_bar is held there (hardware.recurrence: residual | direct).
    arrays_gain: the per-mode gain trim there (deploy.recurrence_gain: none | decay).
  """

  deployed: str
  max_gap_points: float
  min_energy_gain: float
  arrays_model: str
  arrays_recurrence: str
  arrays_gain: str


ARRAYS_FOLDER = "deploy_arrays"  # The arrays deployment's folder in its model's workdir.


def arrays_experiment(model_exp, s: Settings):
  """`model_exp` deployed with the recurrence on the arrays (its own deploy folder)."""
  return experiment.override(
    model_exp,
    {
      "hardware.recurrence": s.arrays_recurrence,
      "deploy.recurrence_gain": s.arrays_gain,
      "deploy.folder": ARRAYS_FOLDER,
    },
  )


def arrays_label(s: Settings) -> str:
  """The arrays deployment's row name in the table and figure."""
  trim = ", gain trim" if s.arrays_gain != "none" else ""
  return f"{s.arrays_model}, a_bar on the arrays ({s.arrays_recurrence}{trim})"


def _deployed(runs, name: str, model, stage: str) -> dict:
  folder = runs.workdir(name)
  tick = time.time()
  deploy.deploy(model, folder)
  runs.seconds[stage] = time.time() - tick
  return workdir_lib.read_json(os.path.join(folder, model.deploy.folder, workdir_lib.RESULTS))


def measure(exp, runs, workdir: str) -> dict:
  """Trains and deploys every model of the claim, then claim.arrays_model with the
  recurrence on the arrays: {"models": {name: deploy/results.json}, "arrays": results.json
  of that deployment or None}."""
  del workdir  # Each model deploys with its own experiment, in its own folder.
  s = common.settings(Settings, exp.claim)
  out = {}
  for name in runs.names():
    runs.train(name)
    out[name] = _deployed(runs, name, runs.experiment(name), f"deployment of {name}")
  arrays = None
  if s.arrays_model:
    runs.train(s.arrays_model)
    model = arrays_experiment(runs.experiment(s.arrays_model), s)
    arrays = _deployed(runs, s.arrays_model, model, f"{s.arrays_model} on the arrays")
  return {"models": out, "arrays": arrays}


def rows(numbers: dict, s: Settings) -> dict:
  """{row name: deploy results}: every model, then the arrays deployment if any."""
  out = dict(numbers["models"])
  if numbers.get("arrays"):
    out[arrays_label(s)] = numbers["arrays"]
  return out


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
  out = {"verdict": verdict, "devices": devices, "gaps": gaps, "gain": gain}
  if numbers.get("arrays"):
    out["arrays_gaps"] = {d: chip_loss(numbers["arrays"], d) for d in devices}
  return out


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
  text += f" For comparison, chip minus software: {'; '.join(others)}." if others else ""
  if "arrays_gaps" in judged:
    a, gaps = numbers["arrays"], judged["arrays_gaps"]
    chips = ", ".join(f"{d} {common.chips_text(a['chips'][d])} %" for d in devices)
    within = all(g <= s.max_gap_points for g in gaps.values())
    text += (
      f" With the recurrence on the arrays ({arrays_label(s)}, reported beside the verdict): "
      f"software {common.pct(a['test_accuracy'])} %, chips {chips}; "
      f"{'within' if within else 'not within'} {s.max_gap_points:g} points on every preset."
    )
  return text


def table(numbers: dict, devices: list[str], s: Settings) -> str:
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
      for name, r in rows(numbers, s).items()
    ],
  )


def figure(numbers: dict, devices: list[str], s: Settings, task: str, workdir: str) -> None:
  models = rows(numbers, s)
  fig, (ax, ax_e) = common.new_figure(2, 5.0)
  width = 0.8 / (len(devices) + 1)
  for i, r in enumerate(models.values()):
    ax.bar(i, 100 * r["test_accuracy"], width, color="gray", label="software" if i == 0 else None)
    for j, d in enumerate(devices):
      chips = r["chips"][d]
      mean, std = 100 * chips["analog_accuracy_mean"], 100 * chips["analog_accuracy_std"]
      label = f"{d} chips" if i == 0 else None
      ax.bar(i + (j + 1) * width, mean, width, yerr=std, color=f"C{j}", capsize=3, label=label)
  ticks = [i + width * len(devices) / 2 for i in range(len(models))]
  ax.set_xticks(ticks, [textwrap.fill(n, 22) for n in models], fontsize=7)
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
  if s.arrays_model:
    rule += (
      f" The {s.arrays_model} model with the recurrence on the arrays is reported beside, "
      "by the same gap, outside the verdict."
    )
  out = {"models": numbers["models"], "gaps_points": judged["gaps"]}
  out["energy_vs_fp32"] = judged["gain"]
  if "arrays_gaps" in judged:
    out["arrays"], out["arrays_gaps_points"] = numbers["arrays"], judged["arrays_gaps"]
  text, cells = summary(numbers, judged, s), table(numbers, judged["devices"], s)
  return common.Outcome(ID, TITLE, STATEMENT, rule, judged["verdict"], text, cells, out)
