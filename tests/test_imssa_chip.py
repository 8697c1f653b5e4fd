"""configs/imssa_chip.py, the predecessor paper's chip model: it fits three 64x64 tiles with
the recurrence on the arrays (counted by the mapping --mode=deploy uses, not assumed), two
more states do not fit, shared tiles change the tile count only, and the class filter of
the embedded tasks (data.classes) keeps and relabels the classes asked for."""

import functools

import numpy as np
import pytest

from configs import imssa_chip
from ssm_aimc import data, deploy, errors, models, runner, train
from ssm_aimc.hardware import crossbar

PREDECESSOR_TILES = 3  # Three 64x64 arrays on the predecessor's chip.


@functools.cache
def _mapping(d_state: int | None = None, recurrence: str | None = None, **deploy_overrides):
  """(experiment, mapping report, energies) of the config's model at initialisation, as
  `deploy.energy_report` maps it (the mapping depends on the shapes only)."""
  config = imssa_chip.get_config()
  config.data.mnist1d_samples = 1000  # Shapes only; fewer samples to generate.
  if d_state is not None:
    config.model.d_state = d_state
  if recurrence is not None:
    config.hardware.recurrence = recurrence
  for key, value in deploy_overrides.items():
    setattr(config.deploy, key, value)
  exp = train.as_experiment(config)
  setup = runner.build(exp)
  variables = runner.init_variables(setup, 0)
  records = models.deployed_tensors(
    setup.model, variables["params"], None, setup.example, variables.get("batch_stats")
  )
  mapping, energies = deploy.energy_report(exp, records, setup.dataset.seq_len)
  return exp, mapping, energies


@pytest.mark.parametrize("recurrence", ["residual", "direct"])
def test_the_model_fits_three_64x64_tiles_with_the_recurrence_on_the_arrays(recurrence):
  exp, mapping, _ = _mapping(recurrence=recurrence)
  assert (exp.model.n_layers, exp.model.d_model, exp.model.activation) == (1, 3, "relu")
  assert (exp.deploy.tile_rows, exp.deploy.tile_cols, exp.deploy.share_tiles) == (64, 64, True)
  assert "recurrence" in {a.kind for a in mapping.arrays}  # On the arrays, not digital.
  assert mapping.tiles <= PREDECESSOR_TILES
  assert mapping.totals()["shared_tiles"]


def test_d_state_is_the_largest_that_fits():
  _, mapping, _ = _mapping()
  assert mapping.tiles <= PREDECESSOR_TILES
  _, larger, _ = _mapping(d_state=imssa_chip.D_STATE + 2)  # The next even state size.
  assert larger.tiles > PREDECESSOR_TILES


def test_shared_tiles_change_the_tile_count_and_nothing_else():
  _, shared, energies = _mapping()
  _, own, own_energies = _mapping(share_tiles=False)
  assert own.tiles > shared.tiles  # Every matrix on tiles of its own.
  assert own.tiles == sum(a.tiles for a in own.arrays)
  assert energies == own_energies
  assert shared.cycles_per_step == own.cycles_per_step
  assert shared.used_cells == own.used_cells


def test_shared_pieces_sit_on_disjoint_rows_and_columns_inside_their_tile():
  _, mapping, _ = _mapping()
  tile = mapping.tile
  assert len(mapping.shared) == sum(len(a.usage.placements) for a in mapping.arrays)
  by_tile = {}
  for p in mapping.shared:
    source = mapping.arrays[p.matrix].usage.placements[p.piece]
    assert (p.rows, p.cols) == (source.rows, source.cols)
    assert p.row_offset + p.rows <= tile.rows and p.col_offset + p.cols <= tile.logical_cols
    by_tile.setdefault(p.tile, []).append(p)
  for pieces in by_tile.values():
    rows = np.zeros(tile.rows, int)
    cols = np.zeros(tile.logical_cols, int)
    for p in pieces:
      rows[p.row_offset : p.row_offset + p.rows] += 1
      cols[p.col_offset : p.col_offset + p.cols] += 1
    assert rows.max() <= 1 and cols.max() <= 1


def test_shared_tiles_need_the_diagonal_mapping():
  config = imssa_chip.get_config()
  config.deploy.mapping = "packed"
  with pytest.raises(errors.ConfigError, match="deploy.share_tiles"):
    train.as_experiment(config)
  with pytest.raises(errors.ConfigError, match="diagonal"):
    crossbar.map_model({}, mapping="packed", shared=True)


def test_class_filter_keeps_the_classes_asked_for_relabelled_by_rank():
  full = data.load_dataset(data.DataConfig(task="digits", normalize=False))
  kept = data.load_dataset(data.DataConfig(task="digits", normalize=False, classes=(8, 3)))
  assert kept.n_classes == 2
  for whole, part in zip(
    (full.train, full.val, full.test), (kept.train, kept.val, kept.test), strict=True
  ):
    assert set(np.unique(part.y)) == {0, 1}
    for label, original in enumerate((3, 8)):  # Ranks: 3 -> 0, 8 -> 1 whatever the order.
      np.testing.assert_array_equal(part.x[part.y == label], whole.x[whole.y == original])


def test_class_filter_standardises_with_the_kept_classes():
  kept = data.load_dataset(data.DataConfig(task="digits", classes=(0, 1)))
  assert abs(float(kept.train.x.mean())) < 1e-5
  assert float(kept.train.x.std()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("classes", [(1,), (1, 1), (-1, 2), [0, 1], (0.0, 1)])
def test_bad_class_lists_are_refused(classes):
  with pytest.raises(errors.ConfigError, match="data.classes"):
    data.DataConfig(task="digits", classes=classes)


def test_classes_outside_the_task_and_on_hd_are_refused():
  with pytest.raises(errors.ConfigError, match="classes 0..9"):
    data.load_dataset(data.DataConfig(task="digits", classes=(0, 10)))
  with pytest.raises(errors.ConfigError, match="hd_classes"):
    data.DataConfig(task="hd", classes=(0, 1))


def test_the_config_and_its_variants_are_valid():
  for variant in ("",) + imssa_chip.VARIANTS:
    exp = train.as_experiment(imssa_chip.get_config(variant))
    assert exp.data.classes == (0, 1) and exp.model.d_state == imssa_chip.D_STATE
  with pytest.raises(ValueError, match="Unknown variant"):
    imssa_chip.get_config("large")
