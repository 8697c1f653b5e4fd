r"""The paper's five claims, each reproduced by one command and judged by a stated rule.

  python launch.py --config=configs/claims/c1_cost.py --workdir=runs/claims/c1 --mode=claim
  make reproduce    # all five into runs/claims, then CLAIMS.md with the figures

A claim config is an ordinary config (task, model size and seed of every run it trains)
with a `claim` section:

  claim.name        which claim: a key of CLAIMS (c1 ... c5);
  claim.models_dir  where its models are trained ("" = workdir/models). Claims given the
                    same folder share models: `make reproduce` trains the float model once;
  claim.models      name -> {init_from, overrides}: every model the claim needs, as
                    overrides of the base config, fine-tuned from model `init_from` if set;
  claim.<rest>      what the claim measures and the numbers its rule is judged by (see the
                    claim's function below and the config's docstring).

Every model is an ordinary training run in models_dir/<name> (`launch.py --mode=train`
with the same config gives the same folder). A folder that already holds results.json
from the same config is reused; one written by a different config is an error, never
overwritten. Each claim writes to workdir: claim.json (verdict, rule, numbers, table,
wall times), claim.md (its section of CLAIMS.md) and claim.png (its figure).
`python -m ssm_aimc.claims --runs=runs/claims --out=CLAIMS.md` gathers the sections.

Verdicts are "supported", "partly supported" or "not supported", decided by the rule
printed next to each: the numbers decide, not the paper.
"""

from __future__ import annotations

import dataclasses
import datetime
import glob
import json
import os
import shutil
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from ssm_aimc import deploy, errors, figures, models, noise_eval, sweep, train

SUPPORTED, PARTLY, NOT_SUPPORTED = "supported", "partly supported", "not supported"
FIGURE = "claim.png"
CLAIM_JSON = "claim.json"
CLAIM_MD = "claim.md"
# Config sections a training run does not read (ignored when reusing a model): the bar,
# and the chip a claim deploys on (C5 deploys with its own config.deploy).
NOT_TRAINING_KEYS = ("progress_bar", "deploy")


# ---------------------------------------------------------------------------------------
# Configs and models.
# ---------------------------------------------------------------------------------------


def base_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The claim config without its `claim` section: the base of every model it trains."""
  out = config.to_dict()
  out.pop("claim", None)
  return ml_collections.ConfigDict(out)


def merge(
  config: ml_collections.ConfigDict, overrides, where: str = ""
) -> ml_collections.ConfigDict:
  """A copy of `config` with the nested `overrides` applied; unknown keys are ConfigErrors."""
  out = ml_collections.ConfigDict(config.to_dict())
  _merge_into(out, overrides, where)
  return out


def _merge_into(config: ml_collections.ConfigDict, overrides, where: str) -> None:
  items = overrides.items() if overrides is not None else ()
  for key, value in items:
    path = f"{where}.{key}" if where else key
    if key not in config:
      raise errors.ConfigError(f"Unknown config key {path!r} in a claim model's overrides.")
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      _merge_into(config[key], value, path)
    else:
      config[key] = value


def _normalised(tree: dict) -> dict:
  tree = json.loads(json.dumps(tree, default=train._json_default))  # Tuples become lists.
  for key in NOT_TRAINING_KEYS:
    tree.pop(key, None)
  return tree


def _first_difference(a, b, path: str = "") -> str:
  if isinstance(a, dict) and isinstance(b, dict):
    for key in sorted(set(a) | set(b)):
      if a.get(key, "<missing>") != b.get(key, "<missing>"):
        return _first_difference(a.get(key, "<missing>"), b.get(key, "<missing>"), f"{path}.{key}")
    return ""
  return f"{path.lstrip('.')}: {a!r} there, {b!r} now"


def finished_with(workdir: str, config: ml_collections.ConfigDict, done_file: str) -> bool:
  """Whether `workdir` already holds `done_file` from a run of `config`.

  A workdir whose config.json comes from another config is a ConfigError: it is left as it
  is, never overwritten (sections a training run does not read are ignored).
  """
  config_path = os.path.join(workdir, "config.json")
  if os.path.exists(config_path):
    with open(config_path) as f:
      stored = _normalised(json.load(f))
    wanted = _normalised(config.to_dict())
    if stored != wanted:
      raise errors.ConfigError(
        f"{workdir} holds a run of another config ({_first_difference(stored, wanted)}); "
        "it is left as it is. Remove it or pass another --config.claim.models_dir (or "
        "--workdir)."
      )
  return os.path.exists(done_file)


class Models:
  """The models of one claim config: trained on first use, reused afterwards.

  Attributes:
    root: models_dir, one folder per model.
    seconds: stage -> wall time (s): each model's training as its results.json recorded
      it, and the claim's own measurements (noise evaluations, deployments, the sweep).
    reused: names found already trained by this or another claim.
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    self.base = base_config(config)
    self.root = config.claim.models_dir or os.path.join(workdir, "models")
    self.specs = config.claim.models
    self.seconds: dict[str, float] = {}
    self.reused: list[str] = []

  def names(self) -> list[str]:
    return list(self.specs.keys())

  def workdir(self, name: str) -> str:
    return os.path.join(self.root, name)

  def config(self, name: str) -> ml_collections.ConfigDict:
    if name not in self.specs:
      raise errors.ConfigError(
        f"The claim needs model {name!r}, which claim.models does not define "
        f"(defined: {sorted(self.specs.keys())})."
      )
    spec = self.specs[name]
    config = merge(self.base, spec.get("overrides"))
    if spec.get("init_from"):
      config.init_checkpoint = self.workdir(spec.init_from)
    return config

  def train(self, name: str) -> dict:
    """results.json of model `name`, training it (and the model it starts from) if needed."""
    spec = self.config(name)  # Validates the name first.
    if self.specs[name].get("init_from"):
      self.train(self.specs[name].init_from)
    workdir = self.workdir(name)
    results_path = os.path.join(workdir, "results.json")
    if finished_with(workdir, spec, results_path):
      if name not in self.reused and name not in self.seconds:
        self.reused.append(name)
      logging.info("Claim model %s: reusing %s.", name, workdir)
    else:
      logging.info("Claim model %s: training in %s.", name, workdir)
      train.train_and_evaluate(spec, workdir)
    with open(results_path) as f:
      results = json.load(f)
    self.seconds[name] = float(results.get("wall_time_s", 0.0))
    return results

  def inference_config(self, name: str, results: dict) -> tuple[ml_collections.ConfigDict, str]:
    """(config, workdir) of the model as deployed: the smaller exported one when pruned."""
    config, workdir = self.config(name), self.workdir(name)
    if "pruned_dir" in results:
      config = train.pruned_config(config, results["prune"]["d_state_after"])
      workdir = os.path.join(workdir, train.PRUNED_DIR)
    return config, workdir


def load_model(config: ml_collections.ConfigDict, workdir: str):
  """(Experiment, best params) of a trained workdir, ready for inference under `config`."""
  exp = train.build(config)
  params, _, _ = train.load_for_inference(config, exp, workdir)
  return exp, params


def energy_of(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Energy per inference (J) of a trained model on the chip of `config.deploy`, and on
  FP32 / INT8 digital processors; plus tiles used."""
  exp, params = load_model(config, workdir)
  x = jnp.zeros((1, exp.dataset.seq_len, exp.dataset.d_input), jnp.float32)
  records = models.deployed_tensors(exp.model, params, exp.spec, x)
  mapping, energies = deploy.energy_report(
    config, records, exp.dataset.seq_len, exp.model_cfg.pooling
  )
  return {
    "aimc_j": energies["aimc"]["total_j"],
    "digital_fp32_j": energies["digital_fp32"]["total_j"],
    "digital_int8_j": energies["digital_int8"]["total_j"],
    "tiles": mapping.tiles,
  }


# ---------------------------------------------------------------------------------------
# Outcomes.
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
  """What one claim measured and what the numbers say.

  Attributes:
    claim: "C1" ... "C5".
    title: short name.
    statement: the paper's claim, in our words.
    rule: how the verdict follows from the numbers.
    verdict: SUPPORTED, PARTLY or NOT_SUPPORTED.
    summary: the measured outcome in a few sentences.
    table: markdown table of the numbers behind it.
    numbers: the same numbers for machines.
    figure: file name of the figure in the claim's workdir.
  """

  claim: str
  title: str
  statement: str
  rule: str
  verdict: str
  summary: str
  table: str
  numbers: dict
  figure: str = FIGURE


def markdown_table(header: list[str], rows: list[list]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def _pct(x: float) -> str:
  return f"{100 * x:.2f}"


def _times(x: float) -> str:
  return f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


def _new_figure(cols: int = 1, width: float = 6.0):
  # The object-oriented API: no pyplot state, no backend switch (notebooks keep theirs).
  from matplotlib.figure import Figure  # noqa: PLC0415

  fig = Figure(figsize=(width * cols, 4.0))
  return fig, fig.subplots(1, cols)


def _finish_figure(fig, axes, title: str, workdir: str, grid: str = "both") -> None:
  """Grid on `axes`, `title` over the figure, saved as the claim's figure in `workdir`."""
  for ax in axes:
    ax.grid(alpha=0.3, axis=grid)
  fig.suptitle(title)
  figures.save(fig, os.path.join(workdir, FIGURE), dpi=110)


def _log_times_axis(ax) -> None:
  """A log x axis of ratios labelled 1x, 10x, 100x."""
  from matplotlib import ticker  # noqa: PLC0415

  ax.set_xscale("log")
  ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
  ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
  ax.xaxis.set_minor_formatter(ticker.NullFormatter())


# ---------------------------------------------------------------------------------------
# C1: cost reduction.
# ---------------------------------------------------------------------------------------


def cost_reduction(config: ml_collections.ConfigDict, workdir: str, zoo: Models) -> Outcome:
  """C1: memory bits, bit-operations and energy of each model against the FP32 float model.

  claim.baseline names the float model; claim.max_loss_points (accuracy loss allowed) and
  claim.target_reduction (the "two orders of magnitude", 100) judge it. Every ratio is
  against the float baseline in FP32 (memory, bit-operations) or run on an FP32 digital
  processor (energy; the model itself on the simulated chip of config.deploy).
  """
  c = config.claim
  rows = []
  base = None
  for name in zoo.names():
    results = zoo.train(name)
    energy = energy_of(*zoo.inference_config(name, results))
    rows.append({"model": name, **_cost_keys(results), **energy})
    if name == c.baseline:
      base = rows[-1]
  if base is None:
    raise errors.ConfigError(f"claim.baseline {c.baseline!r} is not one of claim.models.")
  for r in rows:
    r["loss_points"] = 100 * (base["test_accuracy"] - r["test_accuracy"])
    r["memory_x"] = base["fp32_memory_bits"] / r["memory_bits"]
    r["bitops_x"] = base["fp32_bitops_per_step"] / r["bitops_per_step"]
    r["energy_x"] = base["digital_fp32_j"] / r["aimc_j"]
  rows.sort(key=lambda r: r["memory_x"])
  metrics = {"memory_x": "memory bits", "bitops_x": "bit-operations", "energy_x": "energy"}
  # The float model itself is no candidate: the claim is about what quantization buys.
  within = [r for r in rows if r is not base and r["loss_points"] <= c.max_loss_points]
  best = {m: max(within, key=lambda r, m=m: r[m]) for m in metrics} if within else {}
  # Judged on what quantization changes; the chip's energy is set by its converters and
  # tiles, not the weight bits (the float model's own chip energy is in the table).
  best_any = max((best[m][m] for m in JUDGED_COSTS if m in best), default=0.0)
  verdict = (
    SUPPORTED
    if best_any >= c.target_reduction
    else PARTLY
    if best_any >= c.target_reduction / 10
    else NOT_SUPPORTED
  )
  quantized = [r for r in rows if r is not base]
  overall = {m: max(quantized, key=lambda r, m=m: r[m]) for m in metrics}
  beyond = [
    f"{label} {_times(overall[m][m])} ({overall[m]['model']}, "
    f"{-overall[m]['loss_points']:+.2f} points)"
    for m, label in metrics.items()
    if best.get(m) is not overall[m]
  ]
  summary = f"Float baseline {_pct(base['test_accuracy'])} %. "
  if best:
    parts = [f"{label} {_times(best[m][m])} ({best[m]['model']})" for m, label in metrics.items()]
    summary += (
      f"Within {c.max_loss_points:g} point of it the largest reductions against FP32 are: "
      f"{', '.join(parts)}."
    )
  else:
    summary += f"No quantized model is within {c.max_loss_points:g} point of it."
  if beyond:
    summary += f" Beyond that loss: {', '.join(beyond)}."
  summary += (
    " Energy compares one inference on the simulated chip (8-bit converters, cells, "
    "periphery) with the float model on an FP32 digital processor; the chip, not the bit "
    "width, buys most of it (the float model's own chip energy is in the table: pruning "
    "changes it through the tiles, the weight bits do not), so the verdict rests on memory "
    "bits and bit-operations, and whether the chip keeps the accuracy is C5."
  )
  table = markdown_table(
    [
      "model",
      "test accuracy (%)",
      "vs float (points)",
      "memory bits",
      "memory x",
      "bit-ops x",
      "chip energy (nJ)",
      "energy x vs FP32",
      "tiles",
    ],
    [
      [
        r["model"],
        _pct(r["test_accuracy"]),
        f"{0.0 - r['loss_points']:+.2f}",
        f"{r['memory_bits']:.3g}",
        _times(r["memory_x"]),
        _times(r["bitops_x"]),
        f"{1e9 * r['aimc_j']:.0f}",
        _times(r["energy_x"]),
        r["tiles"],
      ]
      for r in rows
    ],
  )
  fig, ax = _new_figure()
  for m, marker in zip(metrics, "os^", strict=True):
    ax.scatter(
      [r[m] for r in rows],
      [100 * r["test_accuracy"] for r in rows],
      marker=marker,
      label=metrics[m],
    )
  for r in rows:
    ax.annotate(r["model"], (r["memory_x"], 100 * r["test_accuracy"]), fontsize=7)
  ax.axhline(100 * base["test_accuracy"] - c.max_loss_points, color="gray", ls="--", lw=1)
  ax.axvline(c.target_reduction, color="gray", ls=":", lw=1)
  _log_times_axis(ax)
  ax.set_xlabel("reduction against the FP32 float model (x)")
  ax.set_ylabel("test accuracy (%)")
  ax.legend(fontsize=8)
  _finish_figure(fig, [ax], f"C1 cost reduction ({config.data.task})", workdir)
  return Outcome(
    claim="C1",
    title="Cost reduction",
    statement=(
      "QAT cuts the cost of an SSM (memory bits, operations, energy) by up to two orders "
      "of magnitude at small accuracy loss, down to ternary weights."
    ),
    rule=(
      f"supported if some quantized model within {c.max_loss_points:g} point of the float "
      f"model needs >= {c.target_reduction:g}x fewer memory bits or bit-operations than the "
      f"FP32 float model; partly if >= {c.target_reduction / 10:g}x; else not supported "
      "(energy is reported, not judged)."
    ),
    verdict=verdict,
    summary=summary,
    table=table,
    numbers={"rows": rows, "best_within_loss": {m: best[m]["model"] for m in best}},
  )


JUDGED_COSTS = ("memory_x", "bitops_x")


def _cost_keys(results: dict) -> dict:
  keys = ("test_accuracy", "memory_bits", "fp32_memory_bits", "bitops_per_step", "macs_per_step")
  out = {k: float(results[k]) for k in keys}
  # FP32 bit-operations of the same architecture: 32-bit weights x 32-bit activations.
  out["fp32_bitops_per_step"] = 32 * 32 * out["macs_per_step"]
  return out


# ---------------------------------------------------------------------------------------
# C2: model size against numerical precision.
# ---------------------------------------------------------------------------------------


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


def size_vs_precision(config: ml_collections.ConfigDict, workdir: str, zoo: Models) -> Outcome:
  """C2: the iso-memory frontier of a sweep over (H, N, weight bits) (config.sweep).

  The sweep runs in workdir/sweep (reused when it finished with the same config). On the
  Pareto front of accuracy against memory bits the trade is real when the front mixes
  model sizes and bit widths; claim.iso_tolerance sets how close two memories must be to
  compare a bigger low-precision model with a smaller high-precision one.
  """
  c = config.claim
  sweep_dir = os.path.join(workdir, "sweep")
  summary_path = os.path.join(sweep_dir, sweep.JSON_NAME)
  base = base_config(config)
  reused = finished_with(sweep_dir, base, summary_path)
  if reused:
    with open(summary_path) as f:
      result = json.load(f)
  else:
    result = sweep.run_sweep(base, sweep_dir)
  zoo.seconds["sweep"] = float(result["wall_time_s"])
  if reused:
    zoo.reused.append("sweep")
  rows = [r for r in result["rows"] if not r.get("diverged")]
  for r in rows:
    r["size"] = f"H={r['d_model']}, N={r['d_state']}"
  front = sorted((r for r in rows if r["pareto"]), key=lambda r: r["memory_bits"])
  sizes = sorted({r["size"] for r in front})
  widths = sorted({int(r["weight_bits"]) for r in front})
  # Iso-memory pairs: a bigger model at fewer bits against a smaller one at more bits.
  pairs = iso_memory_pairs(rows, c.iso_tolerance)
  wins = [(b, s) for b, s in pairs if b["test_accuracy"] >= s["test_accuracy"]]
  mixed = len(sizes) > 1 and len(widths) > 1
  verdict = SUPPORTED if mixed and wins else PARTLY if mixed or wins else NOT_SUPPORTED
  front_text = "; ".join(
    f"{r['size']} at {int(r['weight_bits'])} bits ({r['memory_bits']:.3g} bits, "
    f"{_pct(r['test_accuracy'])} %)"
    for r in front
  )
  summary = (
    f"{len(rows)} models ({len({r['size'] for r in rows})} sizes x "
    f"{len({r['weight_bits'] for r in rows})} weight widths). The Pareto front, from the "
    f"smallest memory up: {front_text}. It holds {len(sizes)} size(s) and "
    f"{len(widths)} width(s). Of {len(pairs)} iso-memory pairs (memories within "
    f"{c.iso_tolerance:g}x) of a bigger model at fewer bits against a smaller one at more, "
    f"the bigger model is at least as accurate in {len(wins)}."
  )
  if wins:
    b, s = max(wins, key=lambda p: p[0]["test_accuracy"] - p[1]["test_accuracy"])
    summary += (
      f" Largest gain: {b['size']} at {int(b['weight_bits'])} bits, {_pct(b['test_accuracy'])} "
      f"% in {b['memory_bits']:.3g} bits, against {s['size']} at {int(s['weight_bits'])} bits, "
      f"{_pct(s['test_accuracy'])} % in {s['memory_bits']:.3g} bits."
    )
  table = markdown_table(
    ["size", "weight bits", "params", "memory bits", "test accuracy (%)", "Pareto"],
    [
      [
        r["size"],
        int(r["weight_bits"]),
        int(r["params"]),
        f"{r['memory_bits']:.3g}",
        _pct(r["test_accuracy"]),
        "yes" if r["pareto"] else "",
      ]
      for r in sorted(rows, key=lambda r: r["memory_bits"])
    ],
  )
  fig, ax = _new_figure()
  markers = dict(zip(sorted({int(r["weight_bits"]) for r in rows}), "ovs^Dp*", strict=False))
  by_size = sorted(rows, key=lambda r: (r["d_model"], r["d_state"]))
  colors = {s: f"C{i}" for i, s in enumerate(dict.fromkeys(r["size"] for r in by_size))}
  for r in rows:
    ax.scatter(
      r["memory_bits"],
      100 * r["test_accuracy"],
      marker=markers[int(r["weight_bits"])],
      color=colors[r["size"]],
    )
  ax.step(
    [r["memory_bits"] for r in front],
    [100 * r["test_accuracy"] for r in front],
    where="post",
    color="black",
    lw=1,
    label="Pareto front",
  )
  for s, color in colors.items():
    ax.scatter([], [], color=color, label=s)
  for b, m in markers.items():
    ax.scatter([], [], color="gray", marker=m, label=f"{b}-bit weights")
  ax.set_xscale("log")
  ax.set_xlabel("memory (bits)")
  ax.set_ylabel("test accuracy (%)")
  ax.legend(fontsize=7, ncol=2)
  _finish_figure(fig, [ax], f"C2 size vs precision ({config.data.task})", workdir)
  return Outcome(
    claim="C2",
    title="Model size against precision",
    statement="Model size trades against numerical precision (an iso-memory frontier).",
    rule=(
      "supported if the accuracy-memory Pareto front holds more than one model size and more "
      "than one bit width, and at some iso-memory pair a bigger, lower-precision model is at "
      "least as accurate as a smaller, higher-precision one; partly if only one holds."
    ),
    verdict=verdict,
    summary=summary,
    table=table,
    numbers={
      "rows": [
        {
          k: r[k]
          for k in ("size", "weight_bits", "params", "memory_bits", "test_accuracy", "pareto")
        }
        for r in rows
      ],
      "front_sizes": sizes,
      "front_widths": widths,
      "iso_pairs": len(pairs),
      "iso_wins": len(wins),
    },
  )


# ---------------------------------------------------------------------------------------
# C3: robustness to analog noise.
# ---------------------------------------------------------------------------------------


def noise_curve(config: ml_collections.ConfigDict, workdir: str, c) -> dict:
  """Digital accuracy and accuracy on claim.chips simulated chips of claim.device at every
  programming-noise scale of claim.noise_scales (other terms at the preset's level)."""
  config = merge(
    config,
    {
      "hardware": {
        "enabled": True,
        "train": False,
        "device": c.device,
        "read_noise_draw": "product",
        "eval_seeds": c.chips,
        "seeds_per_call": c.chips,
      }
    },
  )
  exp, params = load_model(config, workdir)
  digital = train.evaluate_split(exp.eval_fn, params, exp.dataset.test, config.eval_batch_size)
  rows = noise_eval.noise_sweep(
    exp.analog_eval_fn,
    params,
    exp.dataset.test,
    config.eval_batch_size,
    exp.analog,
    c.noise_scales,
    c.chips,
    config.hardware.eval_seed,
    c.chips,
  )
  return {"digital": digital["accuracy"], "rows": rows}


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


def robustness(config: ml_collections.ConfigDict, workdir: str, zoo: Models) -> Outcome:
  """C3: accuracy drop (digital - chips) against noise for float, QAT and noise-aware models.

  claim.baseline (float), claim.qat (QAT alone) and claim.noise_aware (noise-aware + QAT)
  name the models compared. A model is more robust than the float one at a scale when its
  drop is smaller by more than the standard error of the difference (std over chips /
  sqrt(chips), combined).
  """
  c = config.claim
  curves = {}
  first = [c.baseline, c.qat, c.noise_aware]
  for name in first + [n for n in zoo.names() if n not in first]:
    zoo.train(name)
    tick = time.time()
    curves[name] = noise_curve(zoo.config(name), zoo.workdir(name), c)
    zoo.seconds[f"noise evaluation of {name}"] = time.time() - tick
  for curve in curves.values():
    for r in curve["rows"]:
      r["drop"] = curve["digital"] - r["analog_accuracy_mean"]

  base_rows = curves[c.baseline]["rows"]
  qat = compare_drops(curves[c.qat]["rows"], base_rows, c.chips)
  aware = compare_drops(curves[c.noise_aware]["rows"], base_rows, c.chips)
  verdict = SUPPORTED if more_robust(qat) else PARTLY if more_robust(aware) else NOT_SUPPORTED
  scales = [r["prog_noise_scale"] for r in curves[c.baseline]["rows"]]
  high = [s for s in scales if s >= 1]

  def at_scales(comparison: list[str]) -> str:
    return ", ".join(f"{v} at {s:g}x" for s, v in zip(high, comparison, strict=True))

  summary = (
    f"Test accuracy on {c.chips} simulated {c.device} chips per point. Robustness (accuracy "
    f"drop from digital) against the float model's: QAT alone ({c.qat}) {at_scales(qat)}; "
    f"noise-aware QAT ({c.noise_aware}) {at_scales(aware)}."
  )
  last = {n: curves[n]["rows"][-1] for n in curves}
  summary += " At the largest scale ({:g}x) the drops are: {}.".format(
    scales[-1], ", ".join(f"{n} {100 * last[n]['drop']:.2f} points" for n in curves)
  )
  header = ["model", "digital (%)", *(f"{s:g}x (%)" for s in scales)]
  table = markdown_table(
    header,
    [
      [
        name,
        _pct(curve["digital"]),
        *(
          f"{_pct(r['analog_accuracy_mean'])} +- {_pct(r['analog_accuracy_std'])}"
          for r in curve["rows"]
        ),
      ]
      for name, curve in curves.items()
    ],
  )
  fig, (ax, ax_drop) = _new_figure(2, 5.0)
  for name, curve in curves.items():
    s = [r["prog_noise_scale"] for r in curve["rows"]]
    mean = np.array([100 * r["analog_accuracy_mean"] for r in curve["rows"]])
    std = np.array([100 * r["analog_accuracy_std"] for r in curve["rows"]])
    ax.errorbar(s, mean, yerr=std, marker="o", capsize=3, label=name)
    ax_drop.plot(s, [100 * r["drop"] for r in curve["rows"]], marker="o", label=name)
  ax.set_ylabel("accuracy on the chips (%)")
  ax_drop.set_ylabel("drop from digital (points)")
  for a in (ax, ax_drop):
    a.set_xlabel(f"programming-noise scale (x {c.device})")
  ax.legend(fontsize=8)
  title = f"C3 robustness ({config.data.task}, {c.chips} chips per point)"
  _finish_figure(fig, [ax, ax_drop], title, workdir)
  return Outcome(
    claim="C3",
    title="Robustness to analog noise",
    statement="QAT makes models more robust to analog noise.",
    rule=(
      "supported if the QAT model's accuracy drop is smaller than the float model's (by more "
      "than the standard error over chips) at least at half the noise scales >= 1x and never "
      "larger; partly if that holds only for the noise-aware QAT model; else not supported."
    ),
    verdict=verdict,
    summary=summary,
    table=table,
    numbers={"curves": curves, "qat_vs_float": qat, "noise_aware_vs_float": aware},
  )


# ---------------------------------------------------------------------------------------
# C4: structured pruning.
# ---------------------------------------------------------------------------------------


def largest_kept(rows: list[dict], max_loss_points: float) -> dict:
  """The row with the largest pruned "ratio" whose fine-tuned accuracy ("after") is within
  `max_loss_points` of the unpruned row (ratio 0, the first)."""
  ok = [r for r in rows if 100 * (rows[0]["after"] - r["after"]) <= max_loss_points]
  return max(ok, key=lambda r: r["ratio"])


def pruning(config: ml_collections.ConfigDict, workdir: str, zoo: Models) -> Outcome:
  """C4: accuracy against the fraction of state modes pruned, float against QAT.

  claim.families maps a label to (unpruned model, pruned model name prefix); the pruned
  models are named <prefix><percent> (e.g. qat_w4a8_prune75) in claim.models.
  claim.max_loss_points: the loss against the family's unpruned model still called kept.
  """
  c = config.claim
  families = {}
  for label, (unpruned, prefix) in c.families.items():
    base = zoo.train(unpruned)
    rows = [{"ratio": 0.0, "target": 0.0, "before": base["test_accuracy"], **_prune_row(base)}]
    for name in zoo.names():
      if name.startswith(prefix):
        r = zoo.train(name)
        rows.append(
          {
            "ratio": r["prune"]["pruned_fraction"],
            "target": r["prune"]["ratio"],
            "before": r["test_accuracy_before_finetune"],
            **_prune_row(r),
          }
        )
    families[label] = sorted(rows, key=lambda r: r["ratio"])
  reference = families[c.reference]
  fp32_bits = reference[0]["fp32_memory_bits"]

  best = {label: largest_kept(rows, c.max_loss_points) for label, rows in families.items()}
  q, f = best[c.quantized], best[c.reference]
  combined = q["ratio"] >= c.min_ratio
  better = q["ratio"] > f["ratio"]
  verdict = SUPPORTED if combined and better else PARTLY if combined else NOT_SUPPORTED
  summary = (
    f"Largest fraction of modes pruned within {c.max_loss_points:g} point of the unpruned "
    f"model (after a short fine-tune): {c.reference} {100 * f['ratio']:.0f} % "
    f"({_pct(f['after'])} %), {c.quantized} {100 * q['ratio']:.0f} % ({_pct(q['after'])} %, "
    f"{fp32_bits / q['memory_bits']:.1f}x fewer memory bits than the FP32 float model). "
  )
  summary += (
    "The quantized model tolerates more pruning than the float one."
    if better
    else "The quantized model does not tolerate more pruning than the float one here: "
    "QAT and pruning combine, but QAT is not what makes pruning possible."
  )
  table_rows = []
  for label, rows in families.items():
    for r in rows:
      table_rows.append(
        [
          label,
          _ratio_text(r),
          _pct(r["before"]),
          _pct(r["after"]),
          f"{r['memory_bits']:.3g}",
          _times(fp32_bits / r["memory_bits"]),
        ]
      )
  table = markdown_table(
    [
      "model",
      "modes pruned",
      "no fine-tune (%)",
      "fine-tuned (%)",
      "memory bits",
      "x vs FP32 float",
    ],
    table_rows,
  )
  fig, (ax, ax_mem) = _new_figure(2, 5.0)
  for label, rows in families.items():
    ratio = [100 * r["ratio"] for r in rows]
    line = ax.plot(ratio, [100 * r["after"] for r in rows], marker="o", label=f"{label}")
    ax.plot(
      ratio,
      [100 * r["before"] for r in rows],
      ls="--",
      marker="x",
      color=line[0].get_color(),
      label=f"{label}, no fine-tune",
    )
    ax_mem.plot(
      [fp32_bits / r["memory_bits"] for r in rows],
      [100 * r["after"] for r in rows],
      marker="o",
      label=label,
    )
  ax.set_xlabel("state modes pruned (%)")
  ax.set_ylabel("test accuracy (%)")
  ax.legend(fontsize=7)
  _log_times_axis(ax_mem)
  ax_mem.set_xlabel("memory bits: x fewer than the FP32 float model")
  ax_mem.set_ylabel("test accuracy, fine-tuned (%)")
  ax_mem.legend(fontsize=7)
  _finish_figure(fig, [ax, ax_mem], f"C4 structured pruning ({config.data.task})", workdir)
  return Outcome(
    claim="C4",
    title="Structured pruning",
    statement="QAT enables structured pruning.",
    rule=(
      f"supported if the quantized model keeps accuracy within {c.max_loss_points:g} point "
      f"of its unpruned self at >= {100 * c.min_ratio:.0f} % of the modes pruned AND "
      "tolerates a larger fraction than the float model; partly if only the first holds."
    ),
    verdict=verdict,
    summary=summary,
    table=table,
    numbers={"families": families},
  )


def _ratio_text(row: dict) -> str:
  """The pruned fraction; the asked one too where whole modes per channel made it differ."""
  text = f"{100 * row['ratio']:.1f} %"
  if abs(row["ratio"] - row["target"]) > 1e-6:
    text += f" (asked {100 * row['target']:.0f} %)"
  return text


def _prune_row(results: dict) -> dict:
  return {
    "after": float(results["test_accuracy"]),
    "memory_bits": float(results["memory_bits"]),
    "fp32_memory_bits": float(results["fp32_memory_bits"]),
  }


# ---------------------------------------------------------------------------------------
# C5: deployment on the simulated crossbar.
# ---------------------------------------------------------------------------------------


def deployment(config: ml_collections.ConfigDict, workdir: str, zoo: Models) -> Outcome:
  """C5: every model deployed on simulated chips of every preset in config.deploy.devices.

  claim.deployed names the model judged (QAT + noise-aware); claim.max_gap_points its
  allowed loss on the chips, claim.min_energy_gain the energy gain against FP32 digital.
  """
  c = config.claim
  results = {}
  for name in zoo.names():
    zoo.train(name)
    stage = zoo.config(name)
    tick = time.time()
    deploy.deploy(stage, zoo.workdir(name))
    zoo.seconds[f"deployment of {name}"] = time.time() - tick
    with open(os.path.join(zoo.workdir(name), stage.deploy.folder, "results.json")) as f:
      results[name] = json.load(f)
  devices = list(results[c.deployed]["chips"])
  judged = results[c.deployed]

  def loss(r: dict, device: str) -> float:
    """Points lost on the chips against software."""
    return 100 * (r["test_accuracy"] - r["chips"][device]["analog_accuracy_mean"])

  gaps = {d: loss(judged, d) for d in devices}
  gain = float(judged["energy_vs_fp32"])
  close = all(g <= c.max_gap_points for g in gaps.values())
  efficient = gain >= c.min_energy_gain
  verdict = SUPPORTED if close and efficient else PARTLY if close or efficient else NOT_SUPPORTED
  energy = judged["energy_per_inference_j"]
  summary = (
    f"{c.deployed}: software {_pct(judged['test_accuracy'])} %; on the chips "
    + ", ".join(
      f"{d} {_pct(judged['chips'][d]['analog_accuracy_mean'])} +- "
      f"{_pct(judged['chips'][d]['analog_accuracy_std'])} % ({-gaps[d]:+.2f} points)"
      for d in devices
    )
    + f" over {judged['noise_seeds']} chips each; {judged['tiles']} tiles; "
    f"{1e9 * energy['aimc']:.0f} nJ per inference against {1e6 * energy['digital_fp32']:.1f} uJ "
    f"on an FP32 digital processor ({gain:.1f}x) and {1e6 * energy['digital_int8']:.2f} uJ "
    f"on INT8 ({energy['digital_int8'] / energy['aimc']:.1f}x)."
  )
  others = [n for n in results if n != c.deployed]
  if others:
    summary += (
      " For comparison, chip minus software: "
      + "; ".join(
        f"{n} " + ", ".join(f"{-loss(results[n], d):+.2f} points on {d}" for d in devices)
        for n in others
      )
      + "."
    )
  table = markdown_table(
    ["model", "software (%)", *(f"{d} chips (%)" for d in devices), "tiles", "energy x vs FP32"],
    [
      [
        name,
        _pct(r["test_accuracy"]),
        *(
          f"{_pct(r['chips'][d]['analog_accuracy_mean'])} +- "
          f"{_pct(r['chips'][d]['analog_accuracy_std'])}"
          for d in devices
        ),
        r["tiles"],
        _times(r["energy_vs_fp32"]),
      ]
      for name, r in results.items()
    ],
  )
  fig, (ax, ax_e) = _new_figure(2, 5.0)
  width = 0.8 / (len(devices) + 1)
  for i, name in enumerate(results):
    r = results[name]
    ax.bar(i, 100 * r["test_accuracy"], width, color="gray", label="software" if i == 0 else None)
    for j, d in enumerate(devices):
      ax.bar(
        i + (j + 1) * width,
        100 * r["chips"][d]["analog_accuracy_mean"],
        width,
        yerr=100 * r["chips"][d]["analog_accuracy_std"],
        color=f"C{j}",
        capsize=3,
        label=f"{d} chips" if i == 0 else None,
      )
  ax.set_xticks([i + width * len(devices) / 2 for i in range(len(results))], list(results))
  low = min(100 * r["chips"][d]["analog_accuracy_mean"] for r in results.values() for d in devices)
  ax.set_ylim(max(0.0, low - 5), 100)
  ax.set_ylabel("test accuracy (%)")
  ax.legend(fontsize=7)
  labels = ["chip", "FP32 digital", "INT8 digital"]
  values = [energy["aimc"], energy["digital_fp32"], energy["digital_int8"]]
  ax_e.bar(labels, [1e9 * v for v in values], color=["C2", "C7", "C8"])
  ax_e.set_yscale("log")
  ax_e.set_ylabel(f"energy per inference, {c.deployed} (nJ)")
  title = f"C5 deployment ({config.data.task}, {judged['noise_seeds']} chips per device)"
  _finish_figure(fig, [ax, ax_e], title, workdir, grid="y")
  return Outcome(
    claim="C5",
    title="Deployment on a memristive crossbar",
    statement=(
      "The result deploys on a memristive crossbar (simulated here) with large efficiency gains."
    ),
    rule=(
      f"supported if the deployed model's chip accuracy is within {c.max_gap_points:g} points "
      f"of its software accuracy on every device preset and its energy per inference is "
      f">= {c.min_energy_gain:g}x below an FP32 digital processor; partly if one holds."
    ),
    verdict=verdict,
    summary=summary,
    table=table,
    numbers={"models": results, "gaps_points": gaps, "energy_vs_fp32": gain},
  )


# ---------------------------------------------------------------------------------------
# Running claims and writing CLAIMS.md.
# ---------------------------------------------------------------------------------------


CLAIMS: dict[str, Callable[[ml_collections.ConfigDict, str, Models], Outcome]] = {
  "c1": cost_reduction,
  "c2": size_vs_precision,
  "c3": robustness,
  "c4": pruning,
  "c5": deployment,
}


def run_claim(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Measures the claim of `config.claim.name`; writes claim.json, claim.md and claim.png."""
  if "claim" not in config:
    raise errors.ConfigError("--mode=claim needs a claim config (configs/claims/*.py).")
  name = config.claim.name
  if name not in CLAIMS:
    raise errors.ConfigError(f"Unknown claim.name {name!r}; valid: {sorted(CLAIMS)}.")
  start = time.time()
  os.makedirs(workdir, exist_ok=True)
  zoo = Models(config, workdir)
  outcome = CLAIMS[name](config, workdir, zoo)
  wall = time.time() - start
  record = {
    **dataclasses.asdict(outcome),
    "task": config.data.task,
    "wall_time_s": wall,
    # What running the claim alone costs: every model it needs trained, plus its own work.
    "stage_seconds": zoo.seconds,
    "reused": zoo.reused,
    "standalone_time_s": wall + sum(zoo.seconds[n] for n in zoo.reused),
    "platform": jax.default_backend(),
    "device": _device_name(),
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "command": _command(name, workdir),
  }
  train.write_json_atomic(os.path.join(workdir, CLAIM_JSON), record)
  figures.write_text(os.path.join(workdir, CLAIM_MD), section(record, FIGURE))
  logging.info("%s %s: %s.", outcome.claim, outcome.title, outcome.verdict)
  return {
    "claim": outcome.claim,
    "title": outcome.title,
    "verdict": outcome.verdict,
    "summary": outcome.summary,
    "figure": os.path.join(workdir, FIGURE),
    "wall_time_s": wall,
    "standalone_time_s": record["standalone_time_s"],
  }


CONFIG_FILES = {
  "c1": "c1_cost.py",
  "c2": "c2_size_vs_precision.py",
  "c3": "c3_robustness.py",
  "c4": "c4_pruning.py",
  "c5": "c5_deployment.py",
}


def _command(name: str, workdir: str) -> str:
  """The command line that ran the claim (launch.py's own), else its plain form."""
  if sys.argv and os.path.basename(sys.argv[0]) == "launch.py":
    return " ".join(["python", *sys.argv])
  return (
    f"python launch.py --config=configs/claims/{CONFIG_FILES.get(name, name + '.py')} "
    f"--workdir={workdir} --mode=claim"
  )


def _device_name() -> str:
  device = jax.devices()[0]
  kind = str(device.device_kind)
  if device.platform == "cpu":
    return f"{os.cpu_count()}-core CPU"
  return f"{device.platform} {kind}"


def _minutes(seconds: float) -> str:
  return f"{seconds / 60:.1f} min"


def section(record: dict, figure: str) -> str:
  """The markdown section of one claim (figure: path relative to the markdown file)."""
  reused = f" (models reused from earlier claims: {', '.join(record['reused'])})"
  return "\n".join(
    [
      f"## {record['claim']}: {record['title']} — **{record['verdict']}**",
      "",
      f"*Claim.* {record['statement']}",
      "",
      f"*Rule.* {record['rule']}",
      "",
      f"*Measured* ({record['task']}, {record['device']}, {record['date']}). {record['summary']}",
      "",
      record["table"],
      "",
      f"![{record['claim']}]({figure})",
      "",
      f"`{record['command']}`: {_minutes(record['wall_time_s'])} in this run"
      f"{reused if record['reused'] else ''}; about {_minutes(record['standalone_time_s'])} "
      "when run alone (every model it needs trained).",
      "",
    ]
  )


def write_report(runs: str, out: str, figure_dir: str = "docs/claims") -> str:
  """Gathers runs/*/claim.json into the markdown file `out`; figures are copied into
  `figure_dir` (relative to out's folder). Returns the path written."""
  paths = glob.glob(os.path.join(runs, "*", CLAIM_JSON))
  if not paths:
    raise errors.DataError(f"No {CLAIM_JSON} under {runs}/*: run the claims first.")
  found = []
  for path in paths:
    with open(path) as f:
      found.append((json.load(f), os.path.dirname(path)))
  found.sort(key=lambda pair: pair[0]["claim"])
  root = os.path.dirname(os.path.abspath(out))
  os.makedirs(os.path.join(root, figure_dir), exist_ok=True)
  sections = []
  for record, folder in found:
    target = os.path.join(figure_dir, f"{record['claim'].lower()}.png")
    shutil.copyfile(os.path.join(folder, record["figure"]), os.path.join(root, target))
    sections.append(section(record, target))
  overview = markdown_table(
    ["claim", "verdict", "time in this run"],
    [
      [f"{r['claim']} {r['title']}", f"**{r['verdict']}**", _minutes(r["wall_time_s"])]
      for r, _ in found
    ],
  )
  text = "\n".join(
    [
      "# The paper's claims, measured",
      "",
      "Written by `make reproduce` (`python -m ssm_aimc.claims`) from the claim runs in "
      f"`{runs}`; every number below is one of those runs. Verdicts follow the rule printed "
      "with each claim. Claims: QS4D (arXiv 2507.06079), on the embedded task at CPU size; "
      "the `:paper` variant of each config is the paper-scale run.",
      "",
      overview,
      "",
      *sections,
    ]
  )
  figures.write_text(out, text)
  return out


def main(argv) -> None:
  from absl import flags  # noqa: PLC0415

  del argv
  path = write_report(flags.FLAGS.runs, flags.FLAGS.out, flags.FLAGS.figures)
  print(f"Wrote {path}.")


if __name__ == "__main__":
  from absl import app, flags

  flags.DEFINE_string("runs", "runs/claims", "Folder with one sub-folder per claim run.")
  flags.DEFINE_string("out", "CLAIMS.md", "Markdown file to write.")
  flags.DEFINE_string("figures", "docs/claims", "Folder for the figures, next to --out.")
  app.run(main)
