r"""Every way of pruning the default float model, and what each saves on the chip.

  .venv/bin/python bench/prune_chip_table.py --task=digits --seed=0 --out=runs/prune

The float model of bench/qat_table.py's runs (--base: trained there on first use), pruned
and fine-tuned 5 epochs (configs/prune_float.py) by each ROW: H2 scores at a ratio of the
modes (today's README table), the authors' greedy pass within one validation point
(`prune.method=greedy`: whole modes of a layer, or single modes of a channel), and whole
channels (`prune.unit=channel`). For each exported, physically smaller model: test
accuracy, its shape, memory bits, and its chip as `--mode=deploy` maps it (64x64 tiles,
digital recurrence): tiles under the diagonal and the packed mapping of the S4D blocks,
the lower bound ceil(cells / cells per tile), MVM cycles per step and energy per
inference (`deploy.energy_report`, 8-bit converters; shapes only, no simulation). Writes
OUT/TASK/seedS/chip_table.md and chip_table.json.
"""

import os

import tables  # bench/tables.py, next to this script
from absl import app, flags

from ssm_aimc import deploy, experiment, models, runner, runs, train

_TASK = flags.DEFINE_enum("task", "digits", ["digits", "mnist1d"], "Embedded task.")
_SEED = flags.DEFINE_integer("seed", 0, "Training seed.")
_BASE = flags.DEFINE_string("base", "runs/qat_table", "Folder of bench/qat_table.py runs.")
_OUT = flags.DEFINE_string("out", "runs/prune", "Output folder.")

# Row label -> (run folder under OUT/TASK/seedS, overrides of configs/prune_float.py).
ROWS = {
  "H2, 50 % of the modes": ("float_prune50", {"prune.ratio": 0.5}),
  "H2, 75 % of the modes": ("float_prune75", {"prune.ratio": 0.75}),
  "greedy, whole modes": ("float_greedy_structured", {"prune.method": "greedy"}),
  "greedy, single modes": (
    "float_greedy_unstructured",
    {"prune.method": "greedy", "prune.greedy_kind": "unstructured"},
  ),
  "channels, 25 %": ("float_channels25", {"prune.unit": "channel", "prune.ratio": 0.25}),
  "channels, 50 %": ("float_channels50", {"prune.unit": "channel", "prune.ratio": 0.5}),
}


def chip(exp: experiment.Experiment, mapping: str) -> dict:
  """Tiles, bound, MVM cycles per step and energy (J) of `exp`'s shapes under `mapping`."""
  exp = experiment.override(exp, {"deploy.mapping": mapping})
  setup = runner.build(exp)
  params = runner.init_params(setup, exp.seed)
  records = models.deployed_tensors(setup.model, params, None, setup.example)
  report, energies = deploy.energy_report(exp, records, setup.dataset.seq_len)
  return {
    "tiles": report.tiles,
    "bound": report.tiles_lower_bound,
    "cycles": report.cycles_per_step,
    "energy_j": energies["aimc"]["total_j"],
  }


def main(_):
  task, seed = _TASK.value, _SEED.value
  common = {"data.task": task, "seed": seed}
  bases = tables.family(os.path.join(_BASE.value, task, f"seed{seed}"), task, common, {})
  base = bases.train("float")
  recipes = {
    folder: tables.recipe(
      "configs/prune_float.py", {**common, "init_checkpoint": bases.workdir("float"), **o}
    )
    for folder, o in ROWS.values()
  }
  pruned = runs.Runs(bases.base, os.path.join(_OUT.value, task, f"seed{seed}"), recipes)
  rows = [("unpruned", base, bases.experiment("float"))]
  for label, (folder, _) in ROWS.items():
    results = pruned.train(folder)
    small = train.pruned_experiment(
      pruned.experiment(folder),
      results["prune"]["d_state_after"],
      results["prune"].get("d_model_after"),
    )
    rows.append((label, results, small))
  lines = [
    f"Task `{task}`, seed {seed}; the float model of bench/qat_table.py pruned and fine-tuned "
    "5 epochs; the exported model's test accuracy and shape; 64x64 tiles, digital "
    "recurrence, 8-bit converters.",
    "",
    "| pruning | test accuracy (%) | d_model | d_state | memory bits | tiles, diagonal | "
    "tiles, packed (bound) | MVM cycles per step, packed | energy, diagonal | energy, packed |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  out = []
  for label, results, exp in rows:
    diagonal, packed = chip(exp, "diagonal"), chip(exp, "packed")
    accuracy = results.get("pruned_model_test_accuracy", results["test_accuracy"])
    out.append(
      {
        "row": label,
        "test_accuracy": accuracy,
        "d_model": exp.model.d_model,
        "d_state": exp.model.d_state,
        "memory_bits": results["memory_bits"],
        "pruned_fraction": results.get("prune", {}).get("pruned_fraction", 0.0),
        "diagonal": diagonal,
        "packed": packed,
      }
    )
    lines.append(
      f"| {label} | {100 * accuracy:.2f} | {exp.model.d_model} | {exp.model.d_state} | "
      f"{results['memory_bits']:.3g} | {diagonal['tiles']} | {packed['tiles']} "
      f"({packed['bound']}) | {packed['cycles']} | {1e9 * diagonal['energy_j']:.0f} nJ | "
      f"{1e9 * packed['energy_j']:.0f} nJ |"
    )
  text = "\n".join(lines) + "\n"
  tables.write(os.path.join(_OUT.value, task, f"seed{seed}"), "chip_table", text, out)


if __name__ == "__main__":
  app.run(main)
