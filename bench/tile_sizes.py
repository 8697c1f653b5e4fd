r"""Tiles, utilisation and chip energy of a trained checkpoint for several tile sizes and
recurrence placements (README "Deployment", the mapping bullet).

  PYTHONPATH=. .venv/bin/python bench/tile_sizes.py \
      --config=configs/noise_aware_w4a8.py --workdir=runs/noise/digits/seed0/noise_aware_w4a8

Maps the checkpoint's deployed tensors with `crossbar.map_model` and prices one inference
with `energy.aimc_energy` (8-bit converters, docs/design.md §2 constants); no simulation.
"""

from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from ssm_aimc import models, train
from ssm_aimc.hardware import crossbar, energy

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config the checkpoint was trained with.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir holding the checkpoint.")
_SIZES = flags.DEFINE_list("sizes", ["64", "256", "512"], "Square tile sizes.")
flags.mark_flags_as_required(["config", "workdir"])


def main(_):
  config = _CONFIG.value
  run = train.load_for_inference(config, _WORKDIR.value)
  records = models.deployed_tensors(
    run.setup.model, run.params, run.exp.quant.spec, run.setup.example
  )
  print("| tile | recurrence | tiles | utilisation | cell reads | DAC | ADC | periphery | total |")
  print("|---|---|---|---|---|---|---|---|---|")
  for size in map(int, _SIZES.value):
    for recurrence in ("digital", "direct"):
      tile = crossbar.TileConfig(size, size)
      m = crossbar.map_model(records, tile, run.exp.model.pooling, recurrence)
      e = energy.aimc_energy(m, run.setup.dataset.seq_len, 8, 8)
      nj = {k: f"{1e9 * v:.0f} nJ" for k, v in e.items() if k.endswith("_j")}
      print(
        f"| {size}x{size} | {recurrence} | {m.tiles} | {m.utilisation:.1%} | "
        f"{nj['cell_read_j']} | {nj['dac_j']} | {nj['adc_j']} | {nj['periphery_j']} | "
        f"{nj['total_j']} |"
      )


if __name__ == "__main__":
  app.run(main)
