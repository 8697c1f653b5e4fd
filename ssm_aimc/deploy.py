"""`--mode=deploy`: a trained checkpoint programmed onto simulated chips and run step by step.

  python launch.py --config=configs/default.py --workdir=runs/default --mode=deploy

reads the best checkpoint of the workdir (trained with any config: float, QAT, noise-aware,
pruned), exports it (`ssm_aimc.export`: the integer codes a programming tool reads),
calibrates the chip's converter ranges on one training batch (an ideal run), and evaluates
the test split on `deploy.seeds` chips of every preset in `deploy.devices` with the
step-mode simulator (`ssm_aimc.chip`). It maps the model onto tiles
(`hardware.crossbar`), prices one inference against FP32 and INT8 digital baselines
(`hardware.energy`) and writes into workdir/deploy/:

  results.json        docs/design.md §3 keys (test_accuracy of the software model,
                      analog_accuracy_mean/std and noise_seeds on the first device, tiles,
                      energy_per_inference_j) plus every device, the mapping, the energy
                      breakdown and the configuration;
  deploy_report.md    the same as tables a person reads;
  deploy.png          software vs chip accuracy, and the energy breakdown;
  export/             the exported model that was programmed.
Training's own results.json in the workdir is never touched.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from ssm_aimc import (
  callable_module,
  data,
  experiment,
  export,
  figures,
  models,
  noise_eval,
  runner,
  train,
)
from ssm_aimc import chip as chip_lib
from ssm_aimc import workdir as workdir_lib
from ssm_aimc.hardware import crossbar, energy

REPORT = "deploy_report.md"
PLOT = "deploy.png"


def energy_report(exp: experiment.Experiment, records: dict, seq_len: int):
  """The model's mapping onto `exp.deploy`'s tiles (with its `mapping` of the S4D blocks)
  and the energy of one inference on that chip and on FP32 / INT8 digital processors
  (weights fetched from SRAM every step).

  Returns:
    (crossbar.MappingReport, {"aimc", "digital_fp32", "digital_int8"}: energy dicts).
  """
  d = exp.deploy
  mapping = crossbar.map_model(
    records,
    d.chip.tile,
    exp.model.pooling,
    exp.hardware.recurrence,
    d.chip.mapping,
    shared=d.share_tiles,
  )
  out = {"aimc": energy.aimc_energy(mapping, seq_len, d.adc_bits, d.dac_bits, d.energy)}
  periphery = energy.count_periphery_ops(mapping, seq_len, d.energy, array_ops=False)
  for p in energy.PRECISIONS:
    out[f"digital_{p}"] = energy.digital_energy(
      records, seq_len, p, "sram", d.energy, periphery_ops=periphery
    )
  return mapping, out


def _accuracy(logits_fn, split: data.Split, batch_size: int) -> float:
  correct = count = 0.0
  for x, y, mask in data.padded_batches(split, batch_size):
    pred = np.asarray(jnp.argmax(logits_fn(jnp.asarray(x)), -1))
    correct += float(np.sum((pred == y) * mask))
    count += float(mask.sum())
  return correct / max(count, 1.0)


def _chips(exp: experiment.Experiment, specs: dict, eval_fn, params, test: data.Split) -> dict:
  """Accuracies on the chips: converters only (an ideal device, one chip), every device of
  `specs` (deploy.seeds chips each) and the first device at every deploy.drift_times."""
  d, bs = exp.deploy, exp.eval_batch_size

  def run(spec, label, n_seeds=d.seeds, seed=exp.hardware.eval_seed, per_call=d.seeds_per_call):
    progress = label if exp.progress_bar and label else None
    args = (eval_fn, params, test, bs, spec, n_seeds, seed, per_call, progress)
    return noise_eval.summary(noise_eval.chip_accuracies(*args))

  first_name, first_spec = next(iter(specs.items()))
  # The converters and periphery alone: an ideal device, one chip.
  ideal = first_spec.converters_only()
  converters_only = run(ideal, None, n_seeds=1, seed=0, per_call=1)["analog_accuracy_mean"]
  out = {"converters_only": converters_only, "chips": {}}
  logging.info("Chip with an ideal device (converters only): %.4f.", out["converters_only"])
  for name, spec in specs.items():
    tick = time.time()
    chip = out["chips"][name] = run(spec, f"{name} chips")
    chip["wall_time_s"] = time.time() - tick
    logging.info(
      "Chip %s: test accuracy %.4f +- %.4f over %d chips (%.0f s).",
      name,
      chip["analog_accuracy_mean"],
      chip["analog_accuracy_std"],
      d.seeds,
      chip["wall_time_s"],
    )
  out["drift"] = [
    {
      "t_inference": float(t),
      **run(
        dataclasses.replace(first_spec, t_inference=jnp.asarray(t, jnp.float32)),
        f"{first_name} at t={t:g} s",
      ),
    }
    for t in d.drift_times
  ]
  return out


def deploy(config, workdir: str) -> dict:
  """Deploys the best checkpoint of `workdir` on simulated chips; returns the summary of
  deploy/results.json that launch.py prints (`summary`)."""
  return summary(deploy_results(config, workdir))


def deploy_results(config, workdir: str) -> dict:
  """Deploys the best checkpoint of `workdir` on simulated chips; returns results.json."""
  start_time = time.time()
  exp = train.as_experiment(config)
  specs = exp.chip_specs()
  with workdir_lib.lock(workdir, create=False):
    return deploy_inference(train.load_for_inference(exp, workdir), specs, workdir, start_time)


def summary(results: dict) -> dict:
  """The flat keys of deploy/results.json and one line per device's chips."""
  out = {k: v for k, v in results.items() if not isinstance(v, dict) or k == "quant"}
  for name, r in results["chips"].items():
    mean, std = r["analog_accuracy_mean"], r["analog_accuracy_std"]
    out[f"chip_accuracy_{name}"] = f"{mean:.4f} +- {std:.4f} ({r['noise_seeds']} chips)"
  return out


def _exported(run: train.Inference, out_dir: str | None) -> tuple[dict, dict]:
  """(manifest, tensors) of the export of `run`'s params: written to out_dir/export and
  read back, or (out_dir None) in memory, the same values."""
  exp, setup = run.exp, run.setup
  if out_dir is not None:
    export_dir = os.path.join(out_dir, train.EXPORT_DIR)
    train.export_params(setup, exp, run.params, export_dir, run.batch_stats)
    return export.load_export(export_dir)
  arch = train.export_arch(setup, exp)
  args = (setup.model, run.params, exp.quant.spec, setup.example, arch, run.batch_stats)
  manifest, arrays = export.export_arrays(*args)
  manifest = json.loads(json.dumps(manifest))  # As manifest.json holds it.
  return manifest, export.tensors_of(manifest, arrays)


def deploy_inference(run: train.Inference, specs: dict, workdir: str | None, start_time: float):
  """deploy/results.json's dict of `run` on the chips of `specs` (`Experiment.chip_specs`),
  with the report, plot and export written to workdir/deploy.folder and the tables printed;
  nothing written or printed with `workdir` None."""
  exp = run.exp
  recurrence = exp.hardware.recurrence
  setup, d = run.setup, exp.deploy
  out_dir = None if workdir is None else os.path.join(workdir, d.folder)
  if out_dir is not None:
    os.makedirs(out_dir, exist_ok=True)
  manifest, tensors = _exported(run, out_dir)
  chip_lib.check_streamable(tensors)
  x_cal, _ = next(data.batches(setup.dataset.train, exp.batch_size, seed=exp.seed, epoch=0))
  ranges = chip_lib.calibrate(manifest, tensors, jnp.asarray(x_cal), recurrence, d.chip)
  test = setup.dataset.test
  forward = jax.jit(lambda x: export.forward(manifest, tensors, x))
  software = _accuracy(forward, test, exp.eval_batch_size)
  logging.info("Software (exported model): test accuracy %.4f.", software)
  eval_fn = chip_lib.make_eval_fn(manifest, d.chip, recurrence)
  chips = _chips(exp, specs, eval_fn, (tensors, ranges), test)
  records = models.deployed_tensors(
    setup.model, run.params, exp.quant.spec, setup.example, run.batch_stats
  )
  mapping, energies = energy_report(exp, records, setup.dataset.seq_len)
  results = _results(exp, run, software, chips, specs, mapping, energies)
  results["wall_time_s"] = time.time() - start_time
  tables = {
    "mapping": crossbar.format_mapping_table(mapping),
    "energy": energy.format_energy_table(
      energies["aimc"], energies["digital_fp32"], energies["digital_int8"]
    ),
  }
  if out_dir is None:
    return results
  plot(results, os.path.join(out_dir, PLOT))
  workdir_lib.write_text(os.path.join(out_dir, REPORT), report_markdown(results, tables, workdir))
  train.write_results(out_dir, "results.json", results)
  # The tables once, on stdout (also in the report); the launcher prints the summary.
  print(f"\nMapping ({mapping.totals()['tile']} tiles):\n{tables['mapping']}")
  print(f"\nEnergy per inference:\n{tables['energy']}")
  return results


def _results(exp, run, software: float, chips: dict, specs: dict, mapping, energies) -> dict:
  """deploy/results.json: the docs/design.md §3 keys of the first device, every device, the
  mapping, the energy breakdown and the configuration."""
  d, aimc = exp.deploy, energies["aimc"]
  digital = {p: energies[f"digital_{p}"] for p in energy.PRECISIONS}
  first_name = next(iter(specs))
  first = chips["chips"][first_name]
  return {
    "task": run.setup.dataset.name,
    "model": exp.model_name,
    "mode": "deploy",
    "checkpoint_step": run.step,
    "quant": train.quant_summary(exp.quant.spec),
    "test_accuracy": software,
    "converters_only_accuracy": chips["converters_only"],
    "device": first_name,
    "analog_accuracy_mean": first["analog_accuracy_mean"],
    "analog_accuracy_std": first["analog_accuracy_std"],
    "noise_seeds": first["noise_seeds"],
    "chips": chips["chips"],
    "drift": chips["drift"],
    "tiles": mapping.tiles,
    "utilisation": mapping.utilisation,
    "tiles_lower_bound": mapping.tiles_lower_bound,
    "utilisation_at_bound": mapping.utilisation_at_bound,
    "mvm_cycles_per_step": mapping.cycles_per_step,
    "energy_per_inference_j": {
      "aimc": aimc["total_j"],
      **{f"digital_{p}": v["total_j"] for p, v in digital.items()},
    },
    "energy_vs_fp32": digital["fp32"]["total_j"] / aimc["total_j"],
    "latency_per_inference_s": {
      "aimc": aimc["latency_s"],
      **{f"digital_{p}": v["latency_s"] for p, v in digital.items()},
    },
    **runner.cost_report(run.setup, run.params, exp.quant.spec, run.batch_stats).as_dict(),
    "energy": {"aimc": aimc, **{f"digital_{p}": v for p, v in digital.items()}},
    "mapping": {"totals": mapping.totals(), "arrays": mapping.rows()},
    "chip": {
      "recurrence": exp.hardware.recurrence,
      "dac_bits": d.dac_bits,
      "adc_bits": d.adc_bits,
      "periphery_bits": d.periphery_bits,
      "headroom": d.headroom,
      "read_rng": d.read_rng,
      "tile": mapping.totals()["tile"],
      "mapping": d.mapping,
      "share_tiles": d.share_tiles,
      "recurrence_gain": d.recurrence_gain,
      "gain_reads": d.gain_reads,
      "gain_time_s": d.gain_time_s,
      "hardware": {n: s.summary() for n, s in specs.items()},
    },
    "energy_constants": dataclasses.asdict(d.energy),
    "platform": jax.default_backend(),
  }


def report_markdown(results: dict, tables: dict, workdir: str) -> str:
  """deploy_report.md: what was deployed, accuracy per device, mapping and energy."""
  pct = lambda v: f"{100 * v:.2f} %"
  chip = results["chip"]
  shared = ", matrices sharing tiles" if chip.get("share_tiles") else ""
  lines = [
    f"# Deployment report: {workdir}",
    "",
    f"Task `{results['task']}`, model `{results['model']}`, checkpoint step "
    f"{results['checkpoint_step']}; quantization `{json.dumps(results['quant'])}`; "
    f"{results['params']} parameters, {results['memory_bits']:.4g} memory bits "
    f"({results['compression_vs_fp32']:.3g}x fewer than FP32).",
    f"Chip: {chip['tile']} tiles, {chip['mapping']} mapping{shared} ({results['tiles']} tiles, "
    f"lower bound {results['tiles_lower_bound']}, {results['mvm_cycles_per_step']} MVM cycles per "
    f"step), recurrence `{chip['recurrence']}`, DAC {chip['dac_bits']} "
    f"bits, ADC {chip['adc_bits']} bits, digital periphery {chip['periphery_bits']} bits, "
    f"converter headroom {chip['headroom']}.",
    "",
    "## Accuracy on the test split",
    "",
    "| model | accuracy |",
    "|---|---|",
    f"| software (exported model) | {pct(results['test_accuracy'])} |",
    f"| chip, ideal device (converters only) | {pct(results['converters_only_accuracy'])} |",
  ]
  for name, r in results["chips"].items():
    lines.append(
      f"| chip, {name} ({r['noise_seeds']} chips) | {pct(r['analog_accuracy_mean'])} +- "
      f"{pct(r['analog_accuracy_std'])} (worst {pct(min(r['analog_accuracies']))}) |"
    )
  if results["drift"]:
    lines += ["", f"Accuracy over time on {results['device']}:", "", "| t (s) | accuracy |"]
    lines.append("|---|---|")
    for r in results["drift"]:
      lines.append(
        f"| {r['t_inference']:g} | {pct(r['analog_accuracy_mean'])} +- "
        f"{pct(r['analog_accuracy_std'])} |"
      )
  e = results["energy_per_inference_j"]
  lines += [
    "",
    "## Mapping",
    "",
    "```",
    tables["mapping"],
    "```",
    "",
    "## Energy and latency per inference",
    "",
    "Constants: docs/design.md §2 (`ssm_aimc.hardware.energy.EnergyConstants`, overridable as "
    "`--config.deploy.energy.<name>=...`); the digital baselines fetch every weight from "
    "SRAM at every step.",
    "",
    "```",
    tables["energy"],
    "```",
    "",
    f"FP32 digital / chip energy: {e['digital_fp32'] / e['aimc']:.3g}x; INT8 digital / chip: "
    f"{e['digital_int8'] / e['aimc']:.3g}x.",
    "",
    f"![deployment]({PLOT})",
    "",
  ]
  return "\n".join(lines)


def plot(results: dict, path: str) -> str:
  """Two panels: accuracy (software, converters only, every device with its chips) and the
  energy per inference by component (chip vs digital FP32 and INT8), log scale."""
  # The object-oriented API: no pyplot state, no backend switch (notebooks keep theirs).
  from matplotlib.figure import Figure  # noqa: PLC0415

  fig = Figure(figsize=(10, 4))
  ax_acc, ax_e = fig.subplots(1, 2)
  labels = ["software", "ideal device"] + list(results["chips"])
  means = [results["test_accuracy"], results["converters_only_accuracy"]]
  means += [r["analog_accuracy_mean"] for r in results["chips"].values()]
  stds = [0.0, 0.0] + [r["analog_accuracy_std"] for r in results["chips"].values()]
  xs = np.arange(len(labels))
  ax_acc.bar(
    xs,
    100 * np.array(means),
    yerr=100 * np.array(stds),
    capsize=4,
    color=["tab:gray", "tab:blue"] + ["tab:orange"] * len(results["chips"]),
  )
  for i, r in enumerate(results["chips"].values(), start=2):
    acc = 100 * np.array(r["analog_accuracies"])
    ax_acc.scatter(
      np.full(acc.shape, i) + np.linspace(-0.2, 0.2, acc.size), acc, s=8, color="black", zorder=3
    )
  low = min(
    100 * min(means) - 5,
    100 * min(min(r["analog_accuracies"]) for r in results["chips"].values()) - 2,
  )
  ax_acc.set_ylim(max(low, 0), 100)
  ax_acc.set_xticks(xs, labels, rotation=15)
  ax_acc.set_ylabel("test accuracy (%)")
  ax_acc.set_title(f"{results['task']}: software vs simulated chip")
  ax_acc.grid(alpha=0.3, axis="y")

  systems = {"AIMC chip": "aimc", "digital FP32": "digital_fp32", "digital INT8": "digital_int8"}
  components = {
    "cell reads": "cell_read_j",
    "DAC": "dac_j",
    "ADC": "adc_j",
    "MACs": "mac_j",
    "weight fetch": "weight_fetch_j",
    "periphery": "periphery_j",
    "total": "total_j",
  }
  width = 0.8 / len(systems)
  for i, (label, key) in enumerate(systems.items()):
    e = results["energy"][key]
    values = [e.get(k, 0.0) for k in components.values()]
    xs = np.arange(len(components)) + (i - (len(systems) - 1) / 2) * width
    ax_e.bar(xs, [v if v > 0 else np.nan for v in values], width, label=label)
  ax_e.set_xticks(range(len(components)), list(components), rotation=20)
  ax_e.set_yscale("log")
  ax_e.set_ylabel("energy per inference (J, log scale)")
  ax_e.set_title(f"FP32 / chip = {results['energy_vs_fp32']:.3g}x")
  ax_e.legend(fontsize=8, loc="upper left")
  ax_e.grid(alpha=0.3, axis="y")
  return figures.save(fig, path)


# `ssm_aimc.deploy(...)` is the Python API's `api.deploy` (ssm_aimc.callable_module).
callable_module.make_callable(__name__, "deploy")
