r"""Wall time of greedy pruning passes (ssm_aimc.greedy) at several batch sizes of masks,
side by side on one trained model, and a check that every batch size decides alike.

  .venv/bin/python bench/bench_greedy.py --config=configs/claims/c4_qs4d.py \
      --workdir=runs/claims/models/c4_qs4d_2x32x16_fp_seed0 --batches=1,4,16 --repeats=2

The model is the best checkpoint of --workdir, read under --config (the claim section, if
any, is dropped). For every kind (greedy.KINDS) and every --batches value the script runs
the whole-model pass on the validation split within one point, --repeats times in
alternation (batch sizes interleaved, so load drifts hit them alike; the first repeat
includes the compiles, every later one reuses them), and prints `uptime` before and after,
a markdown table of the median seconds, the evaluations (masks evaluated, padding
included) and the calls of the program, and whether the decisions equal those of the
first batch size (they must: the batching is exact).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from ssm_aimc import experiment, greedy, pruning, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "The trained model's config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "A trained model's workdir.")
_BATCHES = flags.DEFINE_list("batches", ["1", "4", "16"], "max_batch values compared.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Passes per batch size (median reported).")
_TOLERANCE = flags.DEFINE_float("tolerance_points", 1.0, "Validation points allowed.")
_OUT = flags.DEFINE_string("out", "", "Also write the rows as JSON here.")


def main(argv):
  del argv
  exp = dataclasses.replace(experiment.from_config(_CONFIG.value), claim=None)
  print("uptime before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout)
  inf = train.load_for_inference(exp, _WORKDIR.value)
  setup, spec, params = inf.setup, exp.quant.spec, inf.params
  groups, scores = pruning.greedy_units(
    setup.model, params, spec, greedy.KINDS, setup.example, "h2", inf.batch_stats
  )
  evaluator = pruning.greedy_evaluator(
    setup.model, params, groups, setup.dataset.val, exp.eval_batch_size, spec, inf.batch_stats
  )
  batches = [int(b) for b in _BATCHES.value]
  rows = []
  for kind in greedy.KINDS:
    seconds = {b: [] for b in batches}
    results = {}
    for _ in range(_REPEATS.value):
      for b in batches:
        results[b] = greedy.prune_model(evaluator, kind, scores, _TOLERANCE.value / 100, b)
        seconds[b].append(results[b].seconds)
    first = results[batches[0]]
    for b in batches:
      r = results[b]
      rows.append(
        {
          "kind": kind,
          "max_batch": b,
          "units": sum(g.size for g in r.groups),
          "pruned": r.shares()["total"],
          "first_s": seconds[b][0],
          "median_s": statistics.median(seconds[b][1:] or seconds[b]),
          "evaluations": r.evaluations,
          "calls": r.batches,
          "same_decisions": bool(np.array_equal(r.keep, first.keep)),
        }
      )
  print("uptime after:", subprocess.run(["uptime"], capture_output=True, text=True).stdout)
  print(
    "| kind | max_batch | units | pruned | first pass (s, compiles) | median later (s) | "
    "evaluations | calls | same decisions |"
  )
  print("|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(
      f"| {r['kind']} | {r['max_batch']} | {r['units']} | {100 * r['pruned']:.1f} % | "
      f"{r['first_s']:.1f} | {r['median_s']:.1f} | {r['evaluations']} | {r['calls']} | "
      f"{'yes' if r['same_decisions'] else 'NO'} |"
    )
  if _OUT.value:
    os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
    with open(_OUT.value, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
