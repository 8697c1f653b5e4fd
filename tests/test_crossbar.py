"""Tests of the crossbar mapping (ssm_aimc.hardware.crossbar): the S4D read-out row, and tile
counts against hand counts written out here. (The recurrence and read-out arrays the chip
runs are tested against the complex recurrence in tests/test_chip.py.)
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_aimc import errors, models
from ssm_aimc.hardware import crossbar

TILE = crossbar.TileConfig()  # 64 x 64, differential: 32 logical columns per tile.


def _complex(rng, shape):
  return rng.normal(size=shape) + 1j * rng.normal(size=shape)


def _stable_a_bar(rng, shape):
  """Random a_bar with 0.5 <= |a_bar| <= 0.95 and any angle."""
  return rng.uniform(0.5, 0.95, shape) * np.exp(1j * rng.uniform(-np.pi, np.pi, shape))


# ----------------------------------------------------------------------------------------
# The read-out as a real row.


def test_readout_row_by_hand():
  # y = 2 Re(c x) + d u: c = (1 + 2i, -3i), d = 0.7 -> (2, -4, 0, 6, 0.7).
  c = jnp.asarray([1.0 + 2.0j, -3.0j], jnp.complex64)
  np.testing.assert_allclose(
    np.asarray(crossbar.readout_row(c, jnp.asarray(0.7))), [2.0, -4.0, 0.0, 6.0, 0.7], rtol=1e-6
  )


# ----------------------------------------------------------------------------------------
# Tile counts by hand.


def test_tiles_for_a_100_by_130_matrix_by_hand():
  # Differential 64 x 64: 32 logical columns. Row blocks ceil(100/64) = 2, column blocks
  # ceil(130/32) = 5 -> 10 tiles; cells 2 devices x 100 x 130 = 26000 of 10 x 4096 = 40960.
  usage = crossbar.tiles_for_matrix(100, 130, TILE)
  assert usage.tiles == 10
  assert usage.used_cells == 26000
  assert usage.utilisation == pytest.approx(26000 / 40960)
  # DACs per MVM: every tile converts its rows: 5 x 64 + 5 x 36 = 500. ADCs: every tile
  # converts its logical columns: 2 row blocks x 130 = 260.
  assert (usage.dac_per_mvm, usage.adc_per_mvm) == (500, 260)
  # Single-device 64 x 64: 64 logical columns -> 2 x ceil(130/64) = 2 x 3 = 6 tiles,
  # 13000 cells of 6 x 4096 = 24576.
  single = crossbar.tiles_for_matrix(100, 130, crossbar.TileConfig(64, 64, differential=False))
  assert (single.tiles, single.used_cells) == (6, 13000)
  assert single.utilisation == pytest.approx(13000 / 24576)


def test_pack_blocks_by_hand():
  # H = 4 channels, n = 3 modes: each recurrence block is 2n+1 = 7 rows x 2n = 6 logical
  # columns (12 devices wide). Diagonally: 4 x 7 = 28 <= 64 rows, 4 x 6 = 24 <= 32 logical
  # columns -> one tile; cells 4 x 7 x 12 = 336 of 4096.
  packed = crossbar.pack_blocks([(7, 6)] * 4, TILE)
  assert packed.tiles == 1
  assert packed.used_cells == 336
  assert packed.utilisation == pytest.approx(336 / 4096)
  offsets = [(p.tile, p.row_offset, p.col_offset) for p in packed.placements]
  assert offsets == [(0, 0, 0), (0, 7, 6), (0, 14, 12), (0, 21, 18)]
  # 6 such blocks: columns run out after 5 (5 x 6 = 30 <= 32 < 36); the 6th opens tile 1.
  packed = crossbar.pack_blocks([(7, 6)] * 6, TILE)
  assert packed.tiles == 2
  assert [p.tile for p in packed.placements] == [0, 0, 0, 0, 0, 1]
  assert packed.placements[-1].row_offset == packed.placements[-1].col_offset == 0
  # A block larger than a tile (n = 32: 65 x 64) is cut into 64 x 32, 64 x 32, 1 x 32,
  # 1 x 32 pieces, each filling the 32 logical columns: 4 tiles.
  packed = crossbar.pack_blocks([(65, 64)], TILE)
  assert packed.tiles == 4
  pieces = [(p.block_row, p.block_col, p.rows, p.cols) for p in packed.placements]
  assert pieces == [(0, 0, 64, 32), (0, 32, 64, 32), (64, 0, 1, 32), (64, 32, 1, 32)]


SMALL = crossbar.TileConfig(rows=8, cols=4)  # 8 rows x 2 logical columns, 32 cells.


def test_pack_lanes_by_hand():
  # Four 7 x 1 read-out columns (H = 4, n = 3) on 8 x 4 differential tiles: two 1-wide
  # lanes of 8 rows per tile, 28 rows to stack:
  #   tile 0 lane 0: A = block 0 rows 0-6 at rows 0-6, B = block 1 row 0 at row 7;
  #   tile 0 lane 1: C = block 1 rows 1-6 at rows 0-5, D = block 2 rows 0-1 at rows 6-7;
  #   tile 1 lane 0: E = block 2 rows 2-6 at rows 0-4, F = block 3 rows 0-2 at rows 5-7;
  #   tile 1 lane 1: G = block 3 rows 3-6 at rows 0-3 (rows 4-7 empty).
  packed = crossbar.pack_lanes([(7, 1)] * 4, SMALL)
  got = [
    (p.block, p.block_row, p.rows, p.tile, p.row_offset, p.col_offset) for p in packed.placements
  ]
  assert got == [
    (0, 0, 7, 0, 0, 0), (1, 0, 1, 0, 7, 0), (1, 1, 6, 0, 0, 1), (2, 0, 2, 0, 6, 1),
    (2, 2, 5, 1, 0, 0), (3, 0, 3, 1, 5, 0), (3, 3, 4, 1, 0, 1),
  ]  # fmt: skip
  # 2 tiles, the bound ceil(4 x 7 x 2 / 32) = ceil(56 / 32) = 2; 56 of 64 cells = 87.5 %.
  # Diagonally each 7-row column takes a tile (2 x 7 > 8 rows): 4 tiles, 56 of 128.
  assert (packed.tiles, packed.used_cells) == (2, 56)
  assert packed.utilisation == pytest.approx(56 / 64)
  diagonal = crossbar.pack_blocks([(7, 1)] * 4, SMALL)
  assert (diagonal.tiles, diagonal.utilisation) == (4, pytest.approx(56 / 128))
  # Reads, greedily: A cycle 0; B shares A's column -> 1; C shares rows 0-5 with A, not
  # B's row 7 -> 1; D shares rows with A (6) and B (7), a column with C -> 2. Tile 1: E 0;
  # F shares E's column -> 1; G shares rows 0-3 with E, nothing with F -> 1. The busiest
  # tile takes 3 cycles per MVM; the diagonal layout reads everything in one.
  assert packed.schedule == (0, 1, 1, 2, 0, 1, 1)
  assert (packed.cycles, diagonal.cycles) == (3, 1)
  # Every piece converts its rows and columns once: 28 DACs as diagonally, 7 ADCs for 4
  # outputs (3 digital partial sums) against 4.
  assert (packed.dac_per_mvm, packed.adc_per_mvm) == (28, 7)
  assert (diagonal.dac_per_mvm, diagonal.adc_per_mvm) == (28, 4)
  # Devices on driven rows (2 per row and lane), per read:
  #   tile 0 cycle 0 (A, rows 0-6): lane 0 rows 0-6 (A) 14 + lane 1 rows 0-6 (C, D) 14 = 28;
  #          cycle 1 (B, C: rows 0-5, 7): 7 rows x 2 lanes x 2 = 28;
  #          cycle 2 (D, rows 6-7): A's row 6, B's row 7, D's 2 rows: 8;
  #   tile 1 cycle 0 (E, rows 0-4): E 10 + G's rows 0-3 8 = 18;
  #          cycle 1 (F, G: rows 0-3, 5-7): lane 0 7 rows 14 + G 8 = 22.
  # 28 + 28 + 8 + 18 + 22 = 104 against 56 (every device once) diagonally.
  assert packed.driven_cells == 104
  assert diagonal.driven_cells == diagonal.used_cells == 56


def test_pack_lanes_cuts_wide_blocks_into_chunks_and_lanes_of_their_width():
  # 7 x 6 recurrence blocks on 2 logical columns: chunks of 7 x 2, each lane the whole
  # tile; 4 blocks x 3 chunks x 7 rows = 84 rows -> ceil(84 / 8) = 11 tiles (diagonal: one
  # 7 x 2 chunk per tile, 12). Lane ends at rows 8, 16, ..., 80 cut a chunk except at 56
  # (= 8 x 7): 12 + 9 = 21 pieces, 2 per tile at most, both in one column -> 2 cycles.
  packed = crossbar.pack_lanes([(7, 6)] * 4, SMALL)
  assert (packed.tiles, len(packed.placements), packed.cycles) == (11, 21, 2)
  assert crossbar.pack_blocks([(7, 6)] * 4, SMALL).tiles == 12
  # No two pieces share a row: every device is driven once.
  assert packed.driven_cells == packed.used_cells == 4 * 7 * 6 * 2
  # Lanes as wide as the blocks: four 7 x 6 blocks on a 64 x 64 tile (32 logical columns)
  # stack down one 6-wide lane (28 rows), all sharing its columns: 1 tile, 4 cycles.
  one = crossbar.pack_lanes([(7, 6)] * 4, TILE)
  assert [(p.row_offset, p.col_offset) for p in one.placements] == [
    (0, 0),
    (7, 0),
    (14, 0),
    (21, 0),
  ]
  assert (one.tiles, one.cycles) == (1, 4)
  # A block of another width opens a new lane beside the last one.
  mixed = crossbar.pack_lanes([(7, 6), (3, 2)], TILE)
  assert [(p.tile, p.col_offset) for p in mixed.placements] == [(0, 0), (0, 6)]
  assert mixed.schedule == (0, 1)  # They share rows 0-2.


@pytest.mark.parametrize("mapping", crossbar.MAPPINGS)
@pytest.mark.parametrize(
  "shapes, tile",
  [
    ([(33, 1)] * 64, TILE),  # The default model's read-outs.
    ([(33, 32)] * 9, TILE),  # Its recurrence blocks.
    ([(65, 70)] * 3 + [(5, 3), (7, 3), (2, 1)], TILE),  # Wider and taller than a tile.
    ([(7, 6)] * 5 + [(7, 1)] * 5, SMALL),
  ],
  ids=["readouts", "recurrence", "mixed", "small"],
)
def test_placements_cover_every_block_once_and_reads_never_collide(mapping, shapes, tile):
  """Invariants of both mappings: every cell of every block is placed exactly once, inside
  a tile, no two pieces overlap, and no two pieces read in one cycle share a row or a
  logical column of their tile."""
  usage = crossbar.place_blocks(shapes, tile, mapping)
  blocks = [np.zeros(shape, int) for shape in shapes]
  tiles = np.zeros((usage.tiles, tile.rows, tile.logical_cols), int)
  for p in usage.placements:
    assert 0 <= p.row_offset and p.row_offset + p.rows <= tile.rows
    assert 0 <= p.col_offset and p.col_offset + p.cols <= tile.logical_cols
    blocks[p.block][p.block_row : p.block_row + p.rows, p.block_col : p.block_col + p.cols] += 1
    tiles[p.tile, p.row_offset : p.row_offset + p.rows, p.col_offset : p.col_offset + p.cols] += 1
  assert all((b == 1).all() for b in blocks)
  assert tiles.max() == 1
  assert usage.used_cells == tiles.sum() * tile.devices_per_weight
  for cycle in set(usage.schedule):
    for t in range(usage.tiles):
      placed = zip(usage.placements, usage.schedule, strict=True)
      read = [p for p, c in placed if c == cycle and p.tile == t]
      rows = np.zeros(tile.rows, int)
      cols = np.zeros(tile.logical_cols, int)
      for p in read:
        rows[p.row_offset : p.row_offset + p.rows] += 1
        cols[p.col_offset : p.col_offset + p.cols] += 1
      assert rows.max(initial=0) <= 1 and cols.max(initial=0) <= 1
  assert usage.tiles >= -(-usage.used_cells // tile.cells)  # Never below the bound.


def _hand_records(bidirectional=False):
  """A tiny model's deployed records: encoder 1 -> 4, one block (norm, S4D with H = 4,
  n = 3, GLU 4 -> 8), mean pooling, decoder 4 -> 3."""
  rng = np.random.default_rng(2)
  rec = lambda values, macs, **extra: dict(values=values, macs_per_element=macs, **extra)
  records = {
    "encoder/kernel": rec(np.ones((1, 4), np.float32), 1.0, per_sequence=False),
    "encoder/bias": rec(np.zeros(4, np.float32), 0.0),
    "block_0/norm/scale": rec(np.ones(4, np.float32), 0.0),
    "block_0/norm/bias": rec(np.zeros(4, np.float32), 0.0),
    "block_0/s4d/a_bar": rec(_stable_a_bar(rng, (4, 3)), 2.0),
    "block_0/s4d/b_bar": rec(_complex(rng, (4, 3)), 1.0),
    "block_0/s4d/c": rec(_complex(rng, (4, 3)), 1.0),
    "block_0/s4d/d": rec(np.ones(4, np.float32), 1.0),
    "block_0/glu_dense/kernel": rec(np.ones((4, 8), np.float32), 1.0, per_sequence=False),
    "block_0/glu_dense/bias": rec(np.zeros(8, np.float32), 0.0),
    "decoder/kernel": rec(np.ones((4, 3), np.float32), 1.0, per_sequence=True),
    "decoder/bias": rec(np.zeros(3, np.float32), 0.0),
  }
  if bidirectional:
    records["block_0/s4d/c_reverse"] = rec(_complex(rng, (4, 3)), 1.0)
  return records


def test_map_model_of_a_small_model_by_hand():
  report = crossbar.map_model(_hand_records(), TILE)
  rows = [
    (r["layer"], r["kind"], tuple(r["shape"]), r["tiles"], r["used_cells"]) for r in report.rows()
  ]
  assert rows == [
    # 1 x 4: 2 x 1 x 4 = 8 cells.
    ("encoder", "dense", (1, 4), 1, 8),
    # 4 blocks of 7 x 6 on one tile (see test_pack_blocks_by_hand): 336 cells.
    ("block_0/s4d", "recurrence", (28, 24), 1, 336),
    # 4 blocks of 7 x 1: 28 rows, 4 logical columns, 2 x 28 = 56 cells.
    ("block_0/s4d", "readout", (28, 4), 1, 56),
    # 4 x 8: 2 x 32 = 64 cells.
    ("block_0/glu_dense", "dense", (4, 8), 1, 64),
    # 4 x 3: 2 x 12 = 24 cells.
    ("decoder", "dense", (4, 3), 1, 24),
  ]
  assert report.tiles == 5
  assert report.used_cells == 8 + 336 + 56 + 64 + 24 == 488
  assert report.utilisation == pytest.approx(488 / (5 * 4096))
  # Non-zero weights: the recurrence has 6 per mode (2x2 block + b column) -> 4 x 6 x 3 = 72
  # weights = 144 devices; everything else is dense.
  assert report.weight_cells == 8 + 144 + 56 + 64 + 24
  assert report.arrays[-1].per_sequence and not report.arrays[0].per_sequence
  # {layer: {kind: (elements, per_sequence)}}. One output rescale per logical output; the
  # S4D layer's recurrence (24) and read-out (4) are two stages of the same layer, kept
  # apart below.
  stages = {}
  for s in report.digital:
    stages.setdefault(s.layer, {})[s.kind] = (s.elements, s.per_sequence)
  assert stages == {
    "encoder": {"bias": (4, False), "output_scale": (4, False)},
    "block_0/norm": {"norm": (4, False)},
    "block_0/s4d": {"gelu": (4, False), "output_scale": (4, False)},
    "block_0": {"residual": (4, False)},
    "block_0/glu_dense": {"glu_gate": (4, False), "bias": (8, False), "output_scale": (8, False)},
    "decoder": {
      "pool": (4, False),
      "pool_scale": (4, True),
      "bias": (3, True),
      "output_scale": (3, True),
    },
  }
  s4d_scales = [s.elements for s in report.digital if s.kind == "output_scale" and "s4d" in s.layer]
  assert s4d_scales == [24, 4]
  assert not any(s.kind == "partial_sum" for s in report.digital)  # Nothing is row-split.
  text = crossbar.format_mapping_table(report)
  assert "recurrence" in text and "total" in text


def test_map_model_packed_by_hand():
  """The small model of test_map_model_of_a_small_model_by_hand on 8 x 4 tiles, both
  mappings, with the lower bound."""
  diagonal = crossbar.map_model(_hand_records(), SMALL)
  packed = crossbar.map_model(_hand_records(), SMALL, mapping="packed")
  tiles = lambda report: [(a.kind, a.tiles, a.cycles) for a in report.arrays]
  # encoder 1 x 4 and GLU 4 x 8 and decoder 4 x 3 are dense (2 logical columns per tile):
  # ceil(4 / 2) = 2, ceil(8 / 2) = 4, ceil(3 / 2) = 2 tiles in both mappings. Recurrence
  # and read-out: test_pack_lanes_cuts_wide_blocks... and test_pack_lanes_by_hand.
  assert tiles(diagonal) == [
    ("dense", 2, 1), ("recurrence", 12, 1), ("readout", 4, 1), ("dense", 4, 1), ("dense", 2, 1)
  ]  # fmt: skip
  assert tiles(packed) == [
    ("dense", 2, 1), ("recurrence", 11, 2), ("readout", 2, 3), ("dense", 4, 1), ("dense", 2, 1)
  ]  # fmt: skip
  # Cells 8 + 336 + 56 + 64 + 24 = 488 of 32 per tile: bound ceil(15.25) = 16 tiles for
  # both; diagonal 2 + 12 + 4 + 4 + 2 = 24 tiles (1.5x), packed 2 + 11 + 2 + 4 + 2 = 21.
  for report, n_tiles in ((diagonal, 24), (packed, 21)):
    t = report.totals()
    assert (t["tiles"], t["tiles_lower_bound"], t["used_cells"]) == (n_tiles, 16, 488)
    assert t["utilisation"] == pytest.approx(488 / (n_tiles * 32))
    assert t["utilisation_at_bound"] == pytest.approx(488 / 512)
    assert t["tiles_vs_bound"] == pytest.approx(n_tiles / 16)
  # MVM cycles per step (the decoder runs once per sequence): diagonal 1 + 1 + 1 + 1 = 4,
  # packed 1 + 2 + 3 + 1 = 7.
  assert (diagonal.cycles_per_step, packed.cycles_per_step) == (4, 7)
  assert (packed.totals()["mapping"], packed.totals()["mvm_cycles_per_step"]) == ("packed", 7)
  # Digital partial sums: the packed recurrence has 21 pieces x 2 columns = 42 ADC outputs
  # for 24 (18 adds), the read-out 7 for 4 (3 adds); diagonally none.
  sums = [(s.layer, s.elements) for s in packed.digital if s.kind == "partial_sum"]
  assert sums == [("block_0/s4d", 18), ("block_0/s4d", 3)]
  assert not any(s.kind == "partial_sum" for s in diagonal.digital)
  text = crossbar.format_mapping_table(packed)
  assert "lower bound" in text and "1.31x the bound" in text


def _default_shaped_records():
  """Records of configs/default.py's model on digits (1 input, 10 classes), values zero:
  the mapping depends on shapes only."""
  from ssm_aimc.configs import default  # noqa: PLC0415

  m = default.get_config().model
  h, n = m.d_model, m.d_state // 2
  rec = lambda shape, macs, dtype=np.float32, **extra: dict(
    values=np.zeros(shape, dtype), macs_per_element=macs, **extra
  )
  records = {"encoder/kernel": rec((1, h), 1.0), "encoder/bias": rec((h,), 0.0)}
  for i in range(m.n_layers):
    b = f"block_{i}"
    records |= {
      f"{b}/norm/scale": rec((h,), 0.0),
      f"{b}/norm/bias": rec((h,), 0.0),
      f"{b}/s4d/a_bar": rec((h, n), 2.0, np.complex64),
      f"{b}/s4d/b_bar": rec((h, n), 1.0, np.complex64),
      f"{b}/s4d/c": rec((h, n), 1.0, np.complex64),
      f"{b}/s4d/d": rec((h,), 1.0),
      f"{b}/glu_dense/kernel": rec((h, 2 * h), 1.0),
      f"{b}/glu_dense/bias": rec((2 * h,), 0.0),
    }
  records |= {"decoder/kernel": rec((h, 10), 1.0, per_sequence=True)}
  return records


def test_the_default_model_packs_within_twice_the_bound():
  records = _default_shaped_records()
  # H = 64, n = 16, 4 layers, recurrence in the periphery (the default). Cells: encoder
  # 2 x 64 = 128, GLU 4 x 2 x 64 x 128 = 65536, decoder 2 x 640 = 1280, read-outs
  # 4 x 64 x 33 x 2 = 16896: 83840, bound ceil(83840 / 4096) = ceil(20.47) = 21 tiles.
  diagonal = crossbar.map_model(records, TILE, recurrence="digital")
  packed = crossbar.map_model(records, TILE, recurrence="digital", mapping="packed")
  assert diagonal.used_cells == packed.used_cells == 83840
  assert diagonal.tiles_lower_bound == packed.tiles_lower_bound == 21
  # Diagonal (README): 2 + 16 + 1 + 4 x 64 = 275 tiles, 13x the bound. Packed: 32 one-wide
  # lanes of 64 rows per tile hold 64 x 33 = 2112 rows of a layer's read-outs in
  # ceil(2112 / 2048) = 2 tiles: 2 + 16 + 1 + 4 x 2 = 27 tiles, 1.29x the bound.
  assert diagonal.tiles == 275 and diagonal.tiles > 2 * diagonal.tiles_lower_bound
  assert packed.tiles == 27 <= 2 * packed.tiles_lower_bound
  # With the recurrence on the arrays: + 4 x 64 x 33 x 32 x 2 = 540672 cells, bound
  # ceil(624512 / 4096) = 153; 64 blocks of 33 x 32 stack down full-width lanes in
  # ceil(64 x 33 / 64) = 33 tiles per layer: 27 + 4 x 33 = 159 tiles (diagonal 531).
  direct = crossbar.map_model(records, TILE, recurrence="direct", mapping="packed")
  assert (direct.tiles, direct.tiles_lower_bound) == (159, 153)


def test_map_model_bidirectional_and_row_split_layers():
  report = crossbar.map_model(_hand_records(bidirectional=True), TILE)
  kinds = [(a.kind, a.mvms_per_step) for a in report.arrays if a.layer == "block_0/s4d"]
  # The reverse pass reuses the recurrence arrays (2 MVMs a step) and has its own read-out.
  assert kinds == [("recurrence", 2), ("readout", 1), ("readout_reverse", 1)]
  assert report.tiles == 6
  # A 100 x 130 kernel: 260 ADC outputs per MVM for 130 outputs -> 130 digital adds.
  big = {"dense/kernel": dict(values=np.zeros((100, 130)), macs_per_element=1.0)}
  report = crossbar.map_model(big, TILE, pooling="last")
  (stage,) = [s for s in report.digital if s.kind == "partial_sum"]
  assert stage.elements == 130


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_map_model_reads_the_records_of_a_real_model(name):
  cfg = models.ModelConfig(d_model=4, n_layers=2, d_state=6, dropout=0.0)
  model = models.get_model(name, cfg, n_classes=5)
  x = jnp.zeros((1, 7, 2))
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  records = models.deployed_tensors(model, params, None, x)
  report = crossbar.map_model(records, TILE)
  kinds = sorted({(a.layer, a.kind) for a in report.arrays})
  readouts = ("readout", "readout_reverse") if name == "s4d_bidirectional" else ("readout",)
  expected = {("encoder", "dense"), ("decoder", "dense")}
  for i in range(2):
    expected |= {(f"block_{i}/glu_dense", "dense"), (f"block_{i}/s4d", "recurrence")}
    expected |= {(f"block_{i}/s4d", k) for k in readouts}
  assert kinds == sorted(expected)
  # Per layer: encoder 1 + (recurrence 1 + readouts + glu 1) x 2 + decoder 1.
  assert report.tiles == 2 + 2 * (2 + len(readouts))
  assert {s.kind for s in report.digital} >= {"norm", "gelu", "glu_gate", "residual", "pool"}


# ----------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize(
  "kwargs",
  [
    dict(rows=0),
    dict(rows=-64),
    dict(cols=0),
    dict(cols=-2),
    dict(cols=63),  # Odd: no room for the last G- column.
    dict(rows=64.0),
    dict(rows=True),
  ],
)
def test_bad_tile_sizes_raise_config_error(kwargs):
  with pytest.raises(errors.ConfigError):
    crossbar.TileConfig(**kwargs)


def test_bad_shapes_raise_config_error():
  with pytest.raises(errors.ConfigError):
    crossbar.tiles_for_matrix(0, 5, TILE)
  with pytest.raises(errors.ConfigError):
    crossbar.pack_blocks([(7, 6), (7, -1)], TILE)
  with pytest.raises(errors.ConfigError):
    crossbar.map_model({}, TILE, pooling="max")
  with pytest.raises(errors.ConfigError, match="Unknown mapping 'shelf'"):
    crossbar.map_model(_hand_records(), TILE, mapping="shelf")
  with pytest.raises(errors.ConfigError):
    crossbar.pack_lanes([(7, 6), (0, 1)], TILE)


def test_map_model_recurrence_in_the_periphery_or_residual_by_hand():
  direct = crossbar.map_model(_hand_records(), TILE)
  digital = crossbar.map_model(_hand_records(), TILE, recurrence="digital")
  # No recurrence array: the 336-cell tile of the direct mapping is gone.
  assert [a.kind for a in digital.arrays if a.layer == "block_0/s4d"] == ["readout"]
  assert digital.tiles == direct.tiles - 1
  assert digital.used_cells == direct.used_cells - 336
  # ... and the periphery runs the recurrence: one complex a x + b u per mode (4 x 3).
  stages = {(s.layer, s.kind): s.elements for s in digital.digital}
  assert stages[("block_0/s4d", "recurrence")] == 12
  residual = crossbar.map_model(_hand_records(), TILE, recurrence="residual")
  assert residual.tiles == direct.tiles
  # The identity part: one digital add per real state value (4 channels x 6).
  stages = {(s.layer, s.kind): s.elements for s in residual.digital}
  assert stages[("block_0/s4d", "state_add")] == 24
  with pytest.raises(errors.ConfigError):
    crossbar.map_model(_hand_records(), TILE, recurrence="analog")
