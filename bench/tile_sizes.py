r"""Tiles, utilisation, MVM cycles and chip energy of a model for several tile sizes,
recurrence placements and mappings of the S4D blocks (README "Deployment", the mapping
bullet and its table).

  PYTHONPATH=. .venv/bin/python bench/tile_sizes.py \
      --config=configs/noise_aware_w4a8.py --workdir=runs/noise/digits/seed0/noise_aware_w4a8
  PYTHONPATH=. .venv/bin/python bench/tile_sizes.py --config=configs/default.py --sizes=64

Maps the model's deployed tensors with `crossbar.map_model` under each of --mappings
(diagonal: today's block-diagonal placement; packed: `crossbar.pack_lanes`) and prices one
inference with `energy.aimc_energy` (8-bit converters, docs/design.md §2 constants; the
last column with `unread_columns_conduct=0`, a periphery that floats the columns a packed
read does not convert); no simulation. With --workdir the checkpoint's tensors are
mapped; without it the config's model at initialisation (unquantized): the mapping and
the chip's energy depend on the shapes only, so the numbers are those of any trained
checkpoint of that config's shapes.
"""

from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from ssm_aimc import models, runner, train
from ssm_aimc.hardware import crossbar, energy

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config of the model.")
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Workdir holding a checkpoint; unset: the config's model at initialisation."
)
_SIZES = flags.DEFINE_list("sizes", ["64", "256", "512"], "Square tile sizes.")
_MAPPINGS = flags.DEFINE_list("mappings", list(crossbar.MAPPINGS), "Mappings of the S4D blocks.")
_RECURRENCES = flags.DEFINE_list("recurrences", ["digital", "direct"], "Recurrence placements.")
flags.mark_flags_as_required(["config"])


def _records():
  """(deployed records, pooling, seq_len) of the checkpoint or the initial model."""
  config = _CONFIG.value
  if _WORKDIR.value:
    run = train.load_for_inference(config, _WORKDIR.value)
    setup, params, spec = run.setup, run.params, run.exp.quant.spec
    stats = run.batch_stats
  else:
    setup = runner.build(train.as_experiment(config))
    variables = runner.init_variables(setup, setup.exp.seed)  # BatchNorm: its statistics too.
    params, stats, spec = variables["params"], variables.get("batch_stats"), None
  records = models.deployed_tensors(setup.model, params, spec, setup.example, stats)
  return records, setup.exp.model.pooling, setup.dataset.seq_len


def main(_):
  records, pooling, seq_len = _records()
  for mapping in _MAPPINGS.value:
    crossbar.check_mapping(mapping)
  print(
    "| tile | recurrence | mapping | tiles | lower bound | utilisation | MVM cycles per step "
    "| cell reads | DAC | ADC | periphery | total | latency | total, unread columns floated |"
  )
  print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
  floated = energy.EnergyConstants(unread_columns_conduct=0.0)
  for size in map(int, _SIZES.value):
    for recurrence in _RECURRENCES.value:
      for mapping in _MAPPINGS.value:
        tile = crossbar.TileConfig(size, size)
        m = crossbar.map_model(records, tile, pooling, recurrence, mapping)
        e = energy.aimc_energy(m, seq_len, 8, 8)
        nj = {k: f"{1e9 * v:.0f} nJ" for k, v in e.items() if k.endswith("_j")}
        floated_j = energy.aimc_energy(m, seq_len, 8, 8, floated)["total_j"]
        print(
          f"| {size}x{size} | {recurrence} | {mapping} | {m.tiles} | {m.tiles_lower_bound} | "
          f"{m.utilisation:.1%} | {m.cycles_per_step} | {nj['cell_read_j']} | {nj['dac_j']} | "
          f"{nj['adc_j']} | {nj['periphery_j']} | {nj['total_j']} | "
          f"{1e6 * e['latency_s']:.2f} us | {1e9 * floated_j:.0f} nJ |"
        )


if __name__ == "__main__":
  app.run(main)
