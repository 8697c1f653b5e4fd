"""Mapping a trained model onto fixed-size crossbar arrays (tiles), and the real read-out row
of an S4D layer (docs/design.md §1, "Crossbar deployment"); `ssm_aimc.chip` runs the arrays.

Conventions, used everywhere in this file:

  Orientation.  A crossbar computes y = x @ W: inputs drive the ROWS (one DAC per driven
  row), outputs are the COLUMN currents (one ADC per logical output). A matrix of "shape
  (in, out)" therefore occupies `in` rows and `out` logical columns: the recurrence block
  of a channel, s_k = M @ [s_{k-1}; u_k] with M of shape (2n, 2n+1), is stored as M.T,
  2n+1 rows x 2n logical columns. `pack_blocks` and `tiles_for_matrix` take crossbar
  shapes (rows, logical cols).

  Differential pairs.  With `TileConfig.differential` (the default) every weight uses two
  devices, G+ and G-, in adjacent physical columns 2j and 2j+1 of the same row, and the
  two column currents are subtracted in analog before ONE ADC, so a tile of `cols`
  physical columns holds `cols // 2` logical outputs and does `cols // 2` conversions per
  MVM. Without it every weight is one device and a tile holds `cols` logical outputs (the
  sign handling, e.g. a shared reference column, is not modelled). Column offsets in a
  placement are LOGICAL columns; the physical G+ column is 2 x offset when differential.

  Cells.  `used_cells` counts physical devices inside the rectangles allocated to weights,
  structural zeros included (a zero inside a recurrence block is programmed to g_min and
  cannot serve another block): utilisation = used_cells / (tiles x rows x cols).
  `weight_cells` counts only devices that hold a structurally non-zero weight (the 2x2
  mode blocks and the b column of a recurrence block); the energy model charges reads of
  these (a device at g_min = 0 draws no current).

  Tiling.  A matrix larger than a tile is cut into a grid of pieces of at most rows x
  logical-cols; each piece's partial outputs are digitised by its own ADCs and the pieces
  of one output column are summed digitally (`chip.array_mvm` computes this). A dense
  matrix gets tiles of its own; small blocks that each have their own inputs and outputs
  (one per S4D channel) are placed by one of two MAPPINGS:
    "diagonal"  `pack_blocks`: block-diagonally, no two blocks on a tile share a row or a
                column, so one MVM cycle reads every block of every tile at once; a
                33 x 1 read-out column takes a whole 64-row tile.
    "packed"    `pack_lanes`: the tile is cut into vertical lanes as wide as the blocks,
                and blocks are stacked down the lanes, a block that reaches a lane's
                bottom continuing at the top of the next lane (row pieces digitised
                separately and summed digitally), so tiles approach the lower bound
                ceil(cells / cells per tile). Blocks that share a row (side by side) or a
                column (stacked) cannot be read in the same cycle (their inputs differ;
                a shared column would sum them), so each tile reads its pieces in
                several MVM cycles (`schedule_reads`: greedy, pieces on disjoint rows
                and columns share a cycle).
  With the diagonal mapping, `share_tiles` (`map_model(shared=True)`, `deploy.share_tiles`)
  then places the pieces of all matrices together by the same no-shared-row-or-column rule,
  so that small matrices (a 1 x 3 encoder, a 3 x 2 decoder) fill the corners other
  matrices leave instead of taking tiles of their own; only the tile count changes.

  Reads.  One read (MVM cycle) of a tile drives the rows of the pieces it reads through
  their DACs and fires the ADCs of their columns only. Every device on a driven row
  conducts, the devices of other pieces on those rows included (their columns are held
  at the sense amplifiers' virtual ground, as all columns of a tile are; they are just
  not converted): `TileUsage.driven_cells_per_mvm` counts them, and the energy model
  charges them. In the diagonal layout no other piece shares a driven row, so this is
  every allocated device once.

  S4D layers.  Per channel the state s = [Re x_1, Im x_1, Re x_2, Im x_2, ...] (mode i in
  rows 2i, 2i+1). The recurrent update is one MVM with [A_bar | B_bar] on [s_{k-1}; u_k]
  (`chip.recurrence_weights`, one (2n+1) x 2n block per channel on the array, mode i the
  2x2 block [[Re a, -Im a], [Im a, Re a]] of the complex product a_bar x); the read-out
  y_k = 2 Re(c . x_k) + d u_k (exactly `ssm.step`) is a second MVM with one (2n+1)-long
  column per channel on [s_k; u_k] (`readout_row`), i.e. the block-diagonal
  (H(2n+1)) x H matrix, packed the same way as the recurrence blocks. d is folded into the
  read-out's u row, so it needs no array of its own.

`map_model` maps the deployed records of a whole model (`models.deployed_tensors`) with
either mapping (dense matrices are tiled by `tiles_for_matrix` in both) and
lists the digital periphery (norm, GELU, GLU gate, bias, residual, pooling, digital
partial sums and output scaling) that `ssm_aimc.hardware.energy` prices. Pure numpy/jax;
no flax.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from ssm_aimc import errors

# Kinds of mapped matrices and of digital periphery stages (see `map_model`).
ARRAY_KINDS = ("dense", "recurrence", "readout", "readout_reverse")
DIGITAL_KINDS = (
  "norm",  # LayerNorm over H channels, per step.
  "gelu",  # GELU on the S4D output, per channel and step.
  "glu_gate",  # sigmoid gate and product of the GLU, per output channel.
  "residual",  # residual add of a block, per channel.
  "bias",  # bias add after a dense product, per output.
  "pool",  # running sum of mean pooling, per channel and step.
  "pool_scale",  # the division by L of mean pooling, per channel, once per sequence.
  "partial_sum",  # digital add of the partial outputs of row-split pieces.
  "output_scale",  # ADC code -> weight units (per-column conductance scale), per output.
  "recurrence",  # digital recurrence: complex a_bar x + b_bar u, per mode and step.
  "state_add",  # residual recurrence: old state + array output, per real state value.
)
# How the recurrence is held (`ssm_aimc.hardware.analog.RECURRENCES`): [A_bar | B_bar] on
# the array ("direct"), [A_bar - I | B_bar] on the array with the identity added digitally
# ("residual"), or the whole diagonal recurrence in the digital periphery ("digital": it
# is elementwise, 2n real values per channel; on an array b_bar alone would need H 2n ADC
# conversions per step).
RECURRENCES = ("direct", "residual", "digital")
POOLINGS = ("mean", "last")
# How the per-channel S4D blocks are placed on tiles (module docstring): `pack_blocks` or
# `pack_lanes`.
MAPPINGS = ("diagonal", "packed")


def check_mapping(mapping: str) -> str:
  """`mapping`, or a ConfigError listing the valid ones."""
  if mapping not in MAPPINGS:
    raise errors.ConfigError(f"Unknown mapping {mapping!r}; valid: {MAPPINGS}.")
  return mapping


def _check_positive_int(name: str, value) -> int:
  if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
    raise errors.ConfigError(f"{name} must be a positive integer, got {value!r}.")
  return int(value)


@dataclasses.dataclass(frozen=True)
class TileConfig:
  """Size of one crossbar array.

  Attributes:
    rows: physical rows (inputs) per tile; 64 in the predecessor chip, 256 in Rao et al.
      2023, 512 in aihwkit's default tile.
    cols: physical columns per tile.
    differential: each weight is a G+/G- pair in two adjacent columns sharing one ADC, so a
      tile holds cols // 2 logical outputs (cols must be even); False: one device per weight.
  """

  rows: int = 64
  cols: int = 64
  differential: bool = True

  def __post_init__(self):
    _check_positive_int("TileConfig.rows", self.rows)
    _check_positive_int("TileConfig.cols", self.cols)
    if self.differential and self.cols % 2:
      raise errors.ConfigError(
        f"A differential tile needs an even number of columns (G+/G- pairs), got {self.cols}."
      )

  @property
  def devices_per_weight(self) -> int:
    return 2 if self.differential else 1

  @property
  def logical_cols(self) -> int:
    """Logical outputs (and ADC conversions per MVM) of a full tile."""
    return self.cols // self.devices_per_weight

  @property
  def cells(self) -> int:
    return self.rows * self.cols


@dataclasses.dataclass(frozen=True)
class Placement:
  """Where one piece of a block sits on a tile.

  Attributes:
    block: index of the block in `pack_blocks`'s input.
    block_row, block_col: the piece's origin inside its block (non-zero when a block larger
      than a tile was cut), in rows and logical columns.
    rows, cols: the piece's size in rows and logical columns.
    tile: index of the tile that holds it.
    row_offset, col_offset: its origin on that tile, in rows and LOGICAL columns.
  """

  block: int
  block_row: int
  block_col: int
  rows: int
  cols: int
  tile: int
  row_offset: int
  col_offset: int


@dataclasses.dataclass(frozen=True)
class TileUsage:
  """Tiles and cells taken by one matrix or one set of packed blocks.

  Attributes:
    tiles: tiles used (a partly filled tile counts as a whole one).
    used_cells: physical devices inside allocated rectangles (structural zeros included).
    cells_per_tile: rows x cols of one tile.
    placements: where every piece sits (row-major grid for a dense matrix).
    dac_per_mvm: DAC conversions per MVM (every piece converts its own rows).
    adc_per_mvm: ADC conversions per MVM (every piece converts its own logical columns).
    schedule: the MVM cycle in which each placement is read (`schedule_reads`); empty:
      every piece in cycle 0 (one read per tile).
    driven_cells_per_mvm: allocated devices on the driven rows, summed over the reads of
      one MVM (module docstring, "Reads"); None: every allocated device once
      (`used_cells`), as when no two pieces of a tile share a row.
  """

  tiles: int
  used_cells: int
  cells_per_tile: int
  placements: tuple[Placement, ...]
  dac_per_mvm: int
  adc_per_mvm: int
  schedule: tuple[int, ...] = ()
  driven_cells_per_mvm: int | None = None

  @property
  def utilisation(self) -> float:
    return self.used_cells / max(self.tiles * self.cells_per_tile, 1)

  @property
  def cycles(self) -> int:
    """MVM cycles of one MVM of the matrix: its tiles run in parallel, each reads its
    pieces in `schedule` order, so the busiest tile sets it (1 for a diagonal layout)."""
    return max(self.schedule, default=0) + 1

  @property
  def driven_cells(self) -> int:
    """`driven_cells_per_mvm`, or `used_cells` where that is None."""
    return self.used_cells if self.driven_cells_per_mvm is None else self.driven_cells_per_mvm


def _pieces(rows: int, cols: int, tile: TileConfig):
  """Row-major grid of (block_row, block_col, rows, cols) pieces that fit one tile each."""
  for r0 in range(0, rows, tile.rows):
    for c0 in range(0, cols, tile.logical_cols):
      yield r0, c0, min(tile.rows, rows - r0), min(tile.logical_cols, cols - c0)


def tiles_for_matrix(in_features: int, out_features: int, tile: TileConfig) -> TileUsage:
  """Tiles for a dense (in, out) matrix cut into row blocks of `tile.rows` and column blocks
  of `tile.logical_cols`; every block gets its own tile (partial tiles count whole).

  Example: 100 x 130 on 64 x 64 differential tiles (32 logical columns) needs
  ceil(100/64) x ceil(130/32) = 2 x 5 = 10 tiles and 2 x 100 x 130 = 26000 cells.
  """
  in_features = _check_positive_int("in_features", in_features)
  out_features = _check_positive_int("out_features", out_features)
  placements = tuple(
    Placement(0, r0, c0, r, c, tile=i, row_offset=0, col_offset=0)
    for i, (r0, c0, r, c) in enumerate(_pieces(in_features, out_features, tile))
  )
  return TileUsage(
    tiles=len(placements),
    used_cells=in_features * out_features * tile.devices_per_weight,
    cells_per_tile=tile.cells,
    placements=placements,
    dac_per_mvm=sum(p.rows for p in placements),
    adc_per_mvm=sum(p.cols for p in placements),
  )


def pack_blocks(block_shapes: Sequence[tuple[int, int]], tile: TileConfig) -> TileUsage:
  """Packs independent blocks block-diagonally onto as few tiles as this rule allows.

  Each block has its own inputs and outputs, so no two blocks may share a row or a column
  range. Blocks are placed in order along the tile's diagonal (next-fit): the next block
  goes right below and right of the previous one while both the rows and the logical
  columns still fit; otherwise a new tile is started. A block larger than a tile is first
  cut into a grid of tile-sized pieces (as in `tiles_for_matrix`), which are then placed
  like blocks. For identical blocks of r x c this puts min(rows // r, logical_cols // c)
  blocks on a tile, the most any diagonal placement can.

  Args:
    block_shapes: (rows, logical cols) of each block in crossbar orientation (inputs x
      outputs), e.g. (2n+1, 2n) for an S4D channel's recurrence block.
    tile: the tile size.

  Returns:
    `TileUsage` with one `Placement` per piece.
  """
  placements = []
  n_tiles, row_cursor, col_cursor = 0, 0, 0
  used = 0
  for index, shape in enumerate(block_shapes):
    rows, cols = _check_block(index, shape)
    used += rows * cols * tile.devices_per_weight
    for r0, c0, r, c in _pieces(rows, cols, tile):
      fits = row_cursor + r <= tile.rows and col_cursor + c <= tile.logical_cols
      if n_tiles == 0 or not fits:
        n_tiles, row_cursor, col_cursor = n_tiles + 1, 0, 0
      placements.append(
        Placement(
          index, r0, c0, r, c, tile=n_tiles - 1, row_offset=row_cursor, col_offset=col_cursor
        )
      )
      row_cursor, col_cursor = row_cursor + r, col_cursor + c
  return _scheduled_usage(n_tiles, used, placements, tile)


def _check_block(index: int, shape) -> tuple[int, int]:
  if len(shape) != 2:
    raise errors.ConfigError(f"Block {index}: expected a (rows, cols) shape, got {shape!r}.")
  return (
    _check_positive_int(f"block {index} rows", shape[0]),
    _check_positive_int(f"block {index} cols", shape[1]),
  )


def pack_lanes(block_shapes: Sequence[tuple[int, int]], tile: TileConfig) -> TileUsage:
  """Packs independent blocks densely: stacked down lanes, split across lane ends.

  A block wider than the tile's logical columns is first cut into column chunks of at
  most `tile.logical_cols`. A lane is a vertical strip of a tile, `tile.rows` tall and as
  wide as the chunks it holds; lanes sit side by side from column 0. Chunks are stacked
  down the current lane in order; a chunk that reaches the lane's bottom is cut there and
  goes on at the top of the next lane (to the right, or column 0 of a new tile), so a
  piece is the part of a chunk inside one lane and a chunk may be cut at any row. A chunk
  of another width starts a new lane. Identical r x c blocks (c <= logical columns) thus
  fill floor(logical_cols / c) lanes per tile completely, leaving only the last tile's
  tail and the columns right of the last lane empty.

  The pieces of a tile share rows (side by side) or columns (stacked), so they are read in
  several MVM cycles (`schedule_reads`); every row piece gets its own ADC conversions and
  the pieces of one output are summed digitally.

  Args:
    block_shapes: (rows, logical cols) of each block, as in `pack_blocks`.
    tile: the tile size.

  Returns:
    `TileUsage` with one `Placement` per piece, the read schedule and the driven cells.
  """
  placements = []
  used = 0
  # The current lane: its tile, first logical column, width and next free row. A full lane
  # of width 0 stands for "no lane yet".
  n_tiles, lane_col, lane_width, cursor = 0, 0, 0, tile.rows
  for index, shape in enumerate(block_shapes):
    rows, cols = _check_block(index, shape)
    used += rows * cols * tile.devices_per_weight
    for c0 in range(0, cols, tile.logical_cols):
      c = min(tile.logical_cols, cols - c0)
      r0 = 0
      while r0 < rows:
        if cursor == tile.rows or c != lane_width:
          right = lane_col + lane_width
          if n_tiles and right + c <= tile.logical_cols:
            lane_col = right
          else:
            n_tiles, lane_col = n_tiles + 1, 0
          lane_width, cursor = c, 0
        r = min(rows - r0, tile.rows - cursor)
        placements.append(
          Placement(index, r0, c0, r, c, tile=n_tiles - 1, row_offset=cursor, col_offset=lane_col)
        )
        r0, cursor = r0 + r, cursor + r
  return _scheduled_usage(n_tiles, used, placements, tile)


def _overlap(start_a: int, size_a: int, start_b: int, size_b: int) -> bool:
  return start_a < start_b + size_b and start_b < start_a + size_a


def _by_tile(placements: Sequence[Placement]) -> dict[int, list[int]]:
  """{tile: indices of its placements, in order}."""
  out: dict[int, list[int]] = {}
  for i, p in enumerate(placements):
    out.setdefault(p.tile, []).append(i)
  return out


def schedule_reads(placements: Sequence[Placement]) -> tuple[int, ...]:
  """The MVM cycle of each placement: greedy colouring in placement order.

  Two pieces on one tile conflict when they share a row (one row driver cannot carry two
  inputs) or a logical column (their currents would add on the column). Each piece gets
  the first cycle in which no piece of its tile conflicts with it, so pieces on disjoint
  rows and columns (a diagonal layout) all read in cycle 0.
  """
  cycles = [0] * len(placements)
  for indices in _by_tile(placements).values():
    for k, i in enumerate(indices):
      p = placements[i]
      taken = {
        cycles[j]
        for j in indices[:k]
        if _overlap(p.row_offset, p.rows, placements[j].row_offset, placements[j].rows)
        or _overlap(p.col_offset, p.cols, placements[j].col_offset, placements[j].cols)
      }
      cycles[i] = next(c for c in range(len(taken) + 1) if c not in taken)
  return tuple(cycles)


def _driven_cells(
  placements: Sequence[Placement], schedule: Sequence[int], tile: TileConfig
) -> int:
  """Allocated devices on the driven rows, summed over every read (tile, cycle)."""
  total = 0
  for indices in _by_tile(placements).values():
    # Allocated devices on each row of this tile.
    per_row = np.zeros(tile.rows, np.int64)
    for i in indices:
      p = placements[i]
      per_row[p.row_offset : p.row_offset + p.rows] += p.cols * tile.devices_per_weight
    for cycle in {schedule[i] for i in indices}:
      driven = np.zeros(tile.rows, bool)
      for i in indices:
        if schedule[i] == cycle:
          driven[placements[i].row_offset : placements[i].row_offset + placements[i].rows] = True
      total += int(per_row[driven].sum())
  return total


def _scheduled_usage(
  n_tiles: int, used: int, placements: Sequence[Placement], tile: TileConfig
) -> TileUsage:
  schedule = schedule_reads(placements)
  return TileUsage(
    tiles=n_tiles,
    used_cells=used,
    cells_per_tile=tile.cells,
    placements=tuple(placements),
    dac_per_mvm=sum(p.rows for p in placements),
    adc_per_mvm=sum(p.cols for p in placements),
    schedule=schedule,
    driven_cells_per_mvm=_driven_cells(placements, schedule, tile),
  )


def place_blocks(
  block_shapes: Sequence[tuple[int, int]], tile: TileConfig, mapping: str = "diagonal"
) -> TileUsage:
  """`pack_blocks` ("diagonal") or `pack_lanes` ("packed") of the blocks."""
  pack = {"diagonal": pack_blocks, "packed": pack_lanes}[check_mapping(mapping)]
  return pack(block_shapes, tile)


@dataclasses.dataclass(frozen=True)
class SharedPlacement:
  """Where one piece of one matrix sits in a joint placement (`share_tiles`).

  Attributes:
    matrix: index of the matrix in the list given to `share_tiles` (`MappingReport.arrays`).
    piece: index of the piece in that matrix's `TileUsage.placements`.
    rows, cols: the piece's size in rows and logical columns.
    tile: index of the tile that holds it.
    row_offset, col_offset: its origin on that tile, in rows and LOGICAL columns.
  """

  matrix: int
  piece: int
  rows: int
  cols: int
  tile: int
  row_offset: int
  col_offset: int


def share_tiles(usages: Sequence[TileUsage], tile: TileConfig) -> tuple[SharedPlacement, ...]:
  """Places the pieces of several matrices together, so that small matrices share tiles.

  The rule of `pack_blocks` (no two pieces of a tile share a row or a column: each piece
  keeps its own DACs and ADCs, and reading one drives no device of another) applied to
  every piece of every matrix at once: pieces in decreasing order of cells (stable), each
  at the bottom-right corner of the first tile whose free rows and logical columns both
  hold it (first fit decreasing), else on a new tile. Only the tile count and the
  placement change: every piece is the same rectangle with the same inputs and outputs,
  read in the same MVM as before (pieces of different matrices are read in the cycles of
  their own matrices), so the MVMs, conversions and cell reads, hence the energy, latency
  and the step-mode simulation, are those of the separate layout. Defined for diagonal
  layouts only (`pack_blocks`, `tiles_for_matrix`): packed lanes share rows by design.

  Args:
    usages: every matrix's own layout (`MappedMatrix.usage`).
    tile: the tile size.

  Returns:
    One `SharedPlacement` per piece, in the order of `usages` and their placements.
  """
  pieces = [
    (m, i, p.rows, p.cols) for m, usage in enumerate(usages) for i, p in enumerate(usage.placements)
  ]
  cursors: list[list[int]] = []  # Per tile: [next free row, next free logical column].
  placed = {}
  for m, i, r, c in sorted(pieces, key=lambda q: -q[2] * q[3]):
    fits = (t for t, (row, col) in enumerate(cursors) if row + r <= tile.rows)
    t = next((t for t in fits if cursors[t][1] + c <= tile.logical_cols), len(cursors))
    if t == len(cursors):
      cursors.append([0, 0])
    row, col = cursors[t]
    placed[m, i] = SharedPlacement(m, i, r, c, t, row, col)
    cursors[t] = [row + r, col + c]
  return tuple(placed[m, i] for m, i, _, _ in pieces)


# ---------------------------------------------------------------------------------------
# The S4D read-out as a real row.
# ---------------------------------------------------------------------------------------


def _interleave(z: jnp.ndarray) -> jnp.ndarray:
  """(..., n) complex -> (..., 2n) real [Re z_0, Im z_0, Re z_1, Im z_1, ...]."""
  pair = jnp.stack([jnp.real(z), jnp.imag(z)], axis=-1)
  return pair.reshape(*z.shape[:-1], 2 * z.shape[-1])


def readout_row(c: jnp.ndarray, d: jnp.ndarray) -> jnp.ndarray:
  """The real row r with y_k = r @ [s_k; u_k] = 2 Re(c . x_k) + d u_k, as `ssm.step`.

  2 Re(c x) = 2 (Re c Re x - Im c Im x), so mode i contributes (2 Re c_i, -2 Im c_i); the
  factor 2 accounts for the implied conjugate modes (docs/design.md §1).

  Args:
    c: (..., n) complex; d: (...) real.

  Returns:
    (..., 2n+1) real.
  """
  row = _interleave(2.0 * jnp.conj(c))
  return jnp.concatenate([row, jnp.asarray(d, row.dtype)[..., None]], axis=-1)


# ---------------------------------------------------------------------------------------
# A whole model.
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MappedMatrix:
  """One matrix of the model on the arrays (one row of the mapping table).

  Attributes:
    layer: path of the layer in the deployed records (e.g. "block_0/s4d", "encoder").
    kind: "dense", "recurrence", "readout" or "readout_reverse".
    shape: (rows, logical cols) of the whole matrix in crossbar orientation; for S4D the
      block-diagonal matrix (H(2n+1), H 2n) or (H(2n+1), H).
    blocks: diagonal blocks packed (1 for a dense matrix).
    usage: tiles, cells, placements and conversions per MVM.
    weight_cells: devices holding a structurally non-zero weight.
    mvms_per_step: MVMs per time step (2 for the recurrence of a bidirectional layer, whose
      reverse pass reuses the same arrays); per sequence when `per_sequence`.
    per_sequence: runs once per sequence (the decoder), not once per step.
  """

  layer: str
  kind: str
  shape: tuple[int, int]
  blocks: int
  usage: TileUsage
  weight_cells: int
  mvms_per_step: int = 1
  per_sequence: bool = False

  @property
  def tiles(self) -> int:
    return self.usage.tiles

  @property
  def used_cells(self) -> int:
    return self.usage.used_cells

  @property
  def utilisation(self) -> float:
    return self.usage.utilisation

  @property
  def outputs(self) -> int:
    """Logical outputs of one MVM (after the digital partial sums)."""
    return self.shape[1]

  @property
  def partial_sums_per_mvm(self) -> int:
    """Digital adds per MVM that merge the partial outputs of row-split pieces."""
    return self.usage.adc_per_mvm - self.outputs

  @property
  def cycles(self) -> int:
    """MVM cycles per MVM (`TileUsage.cycles`): 1 unless pieces of a tile share rows or
    columns."""
    return self.usage.cycles

  @property
  def cell_reads_per_mvm(self) -> float:
    """Weight-holding devices that conduct in one MVM: the allocated devices on the driven
    rows of every read (`TileUsage.driven_cells`) times the matrix's share of allocated
    devices that hold a non-zero weight; `weight_cells` exactly when every allocated device
    is driven once (a diagonal layout)."""
    return self.weight_cells * self.usage.driven_cells / max(self.used_cells, 1)


@dataclasses.dataclass(frozen=True)
class DigitalStage:
  """Digital periphery work: `elements` values per step (or per sequence) through `kind`.

  Attributes:
    layer: the layer it belongs to.
    kind: one of DIGITAL_KINDS.
    elements: values processed per step (per sequence when `per_sequence`).
    per_sequence: once per sequence instead of once per step.
  """

  layer: str
  kind: str
  elements: int
  per_sequence: bool = False


@dataclasses.dataclass(frozen=True)
class MappingReport:
  """A model mapped onto tiles: the arrays, the digital periphery and the totals.

  Attributes:
    tile: the tile size.
    arrays: one `MappedMatrix` per matrix, in the order of the records.
    digital: the digital periphery stages.
    mapping: how the S4D blocks were placed (MAPPINGS).
  """

  tile: TileConfig
  arrays: tuple[MappedMatrix, ...]
  digital: tuple[DigitalStage, ...]
  mapping: str = "diagonal"
  shared: tuple[SharedPlacement, ...] | None = None

  @property
  def tiles(self) -> int:
    """Tiles of the chip: the sum of every matrix's own tiles, or with `shared` the tiles of
    the joint placement."""
    if self.shared is not None:
      return 1 + max((p.tile for p in self.shared), default=-1)
    return sum(a.tiles for a in self.arrays)

  def matrix_tiles(self, index: int) -> int:
    """Tiles that hold a piece of matrix `index` of `arrays` (with `shared`, tiles it shares
    with other matrices count for each of them)."""
    if self.shared is None:
      return self.arrays[index].tiles
    return len({p.tile for p in self.shared if p.matrix == index})

  @property
  def used_cells(self) -> int:
    return sum(a.used_cells for a in self.arrays)

  @property
  def weight_cells(self) -> int:
    return sum(a.weight_cells for a in self.arrays)

  @property
  def utilisation(self) -> float:
    return self.used_cells / max(self.tiles * self.tile.cells, 1)

  @property
  def tiles_lower_bound(self) -> int:
    """ceil(used cells / cells per tile): no placement of these rectangles needs fewer
    tiles (the same for every mapping: the blocks are the same rectangles)."""
    return -(-self.used_cells // self.tile.cells)

  @property
  def utilisation_at_bound(self) -> float:
    """The utilisation a mapping onto `tiles_lower_bound` tiles would have."""
    return self.used_cells / max(self.tiles_lower_bound * self.tile.cells, 1)

  @property
  def cycles_per_step(self) -> int:
    """MVM cycles per time step (matrices in sequence, each its `cycles` per MVM)."""
    return sum(a.cycles * a.mvms_per_step for a in self.arrays if not a.per_sequence)

  def rows(self) -> list[dict]:
    """One JSON-ready dict per matrix: layer, kind, shape, tiles (`matrix_tiles`),
    used_cells, utilisation (of those tiles)."""
    return [
      {
        "layer": a.layer,
        "kind": a.kind,
        "shape": list(a.shape),
        "tiles": self.matrix_tiles(i),
        "used_cells": a.used_cells,
        "weight_cells": a.weight_cells,
        "utilisation": a.used_cells / max(self.matrix_tiles(i) * self.tile.cells, 1),
        "cycles": a.cycles,
      }
      for i, a in enumerate(self.arrays)
    ]

  def totals(self) -> dict:
    return {
      "tile": f"{self.tile.rows}x{self.tile.cols}"
      + (" differential" if self.tile.differential else ""),
      "tiles": self.tiles,
      "used_cells": self.used_cells,
      "weight_cells": self.weight_cells,
      "utilisation": self.utilisation,
      "mapping": self.mapping,
      "shared_tiles": self.shared is not None,
      "tiles_lower_bound": self.tiles_lower_bound,
      "tiles_vs_bound": self.tiles / max(self.tiles_lower_bound, 1),
      "utilisation_at_bound": self.utilisation_at_bound,
      "mvm_cycles_per_step": self.cycles_per_step,
    }


def format_mapping_table(report: MappingReport) -> str:
  """Plain-text table of the mapping, one line per matrix (with its MVM cycles), a totals
  line and the lower bound on tiles."""
  head = (
    f"  {'layer':<24} {'kind':<16} {'shape':>12} {'tiles':>6} {'cells':>9} {'util':>7} "
    f"{'cycles':>6}"
  )
  lines = [head]
  for r in report.rows():
    shape = "x".join(str(s) for s in r["shape"])
    lines.append(
      f"  {r['layer']:<24} {r['kind']:<16} {shape:>12} {r['tiles']:>6} "
      f"{r['used_cells']:>9} {r['utilisation']:>7.1%} {r['cycles']:>6}"
    )
  t = report.totals()
  lines.append(
    f"  {'total (' + t['tile'] + ')':<41} {'':>12} {t['tiles']:>6} {t['used_cells']:>9} "
    f"{t['utilisation']:>7.1%} {t['mvm_cycles_per_step']:>6}"
  )
  lines.append(
    f"  {t['mapping']} mapping; lower bound ceil(cells / cells per tile) = "
    f"{t['tiles_lower_bound']} tiles ({t['utilisation_at_bound']:.1%} utilisation): "
    f"{t['tiles_vs_bound']:.2f}x the bound; MVM cycles per step {t['mvm_cycles_per_step']}"
  )
  if report.shared is not None:
    lines.append(
      "  matrices share tiles (crossbar.share_tiles, disjoint rows and columns): a matrix's "
      "tiles count every tile holding a piece of it"
    )
  return "\n".join(lines)


def _parent(path: str) -> str:
  return path.rsplit("/", 1)[0] if "/" in path else ""


def _join(layer: str, name: str) -> str:
  return f"{layer}/{name}" if layer else name


def _s4d_layer(
  layer: str,
  records: dict,
  tile: TileConfig,
  recurrence: str = "direct",
  mapping: str = "diagonal",
) -> tuple[list, list]:
  """Arrays and digital stages of one S4D layer whose records live under `layer`."""
  missing = [n for n in ("a_bar", "b_bar", "c", "d") if _join(layer, n) not in records]
  if missing:
    raise errors.ConfigError(f"S4D layer {layer!r}: records {missing} are missing.")
  a_bar = np.asarray(records[_join(layer, "a_bar")]["values"])
  channels, n = a_bar.shape
  for name in ("b_bar", "c"):
    if np.shape(records[_join(layer, name)]["values"]) != (channels, n):
      raise errors.ConfigError(
        f"S4D layer {layer!r}: {name} must have a_bar's shape {a_bar.shape}."
      )
  bidirectional = _join(layer, "c_reverse") in records
  mvms = 2 if bidirectional else 1
  arrays, extra_digital = [], []
  if recurrence == "digital":
    extra_digital.append(DigitalStage(layer, "recurrence", channels * n * mvms))
  else:
    arrays.append(
      MappedMatrix(
        layer=layer,
        kind="recurrence",
        shape=(channels * (2 * n + 1), channels * 2 * n),
        blocks=channels,
        usage=place_blocks([(2 * n + 1, 2 * n)] * channels, tile, mapping),
        # Per mode 4 entries of the 2x2 block and 2 of the b column.
        weight_cells=channels * 6 * n * tile.devices_per_weight,
        mvms_per_step=mvms,
      )
    )
  if recurrence == "residual":
    extra_digital.append(DigitalStage(layer, "state_add", channels * 2 * n * mvms))
  for kind in ("readout", "readout_reverse") if bidirectional else ("readout",):
    arrays.append(
      MappedMatrix(
        layer=layer,
        kind=kind,
        shape=(channels * (2 * n + 1), channels),
        blocks=channels,
        usage=place_blocks([(2 * n + 1, 1)] * channels, tile, mapping),
        weight_cells=channels * (2 * n + 1) * tile.devices_per_weight,
      )
    )
  # Every S4D layer sits in a residual block (models.S4DBlock): GELU on its output, the
  # residual add after the GLU.
  digital = extra_digital + [
    DigitalStage(layer, "gelu", channels),
    DigitalStage(_parent(layer), "residual", channels),
  ]
  return arrays, digital


def map_model(
  records: dict,
  tile: TileConfig | None = None,
  pooling: str = "mean",
  recurrence: str = "direct",
  mapping: str = "diagonal",
  shared: bool = False,
) -> MappingReport:
  """Maps the deployed records of a whole model onto tiles.

  Recognised records (the names `models.deployed_tensors` writes):
    ".../a_bar" (complex (H, n)) with siblings b_bar, c, d and optionally c_reverse: an S4D
      layer -> a "recurrence" matrix (H packed (2n+1) x 2n blocks) and a "readout" matrix
      (H packed (2n+1) x 1 columns, d folded in); a bidirectional layer adds
      "readout_reverse" and runs its recurrence twice per step on the same arrays;
    any other real 2-D record with macs_per_element > 0: a "dense" (in, out) matrix on its
      own tiles (`per_sequence` records, the decoder, run once per sequence and are preceded
      by the pooling);
    ".../bias" next to a kernel: a digital bias add; ".../scale" with no kernel beside it: a
      LayerNorm. A dense layer whose path contains "glu" is followed by a GLU gate over
      half its outputs.
  Every matrix also adds digital output scaling (one per logical output) and partial sums.

  Args:
    records: {path: record} with "values" and "macs_per_element" (and "per_sequence").
    tile: the tile size (default 64 x 64 differential).
    pooling: "mean" (a running sum per step and a division per sequence) or "last".
    recurrence: "direct" (the [A_bar | B_bar] blocks above), "residual" (the same arrays
      holding a_bar - 1, plus a digital "state_add" per state value) or "digital" (no
      recurrence array; a digital "recurrence" stage per mode).
    mapping: how the per-channel S4D blocks go onto tiles, "diagonal" (`pack_blocks`) or
      "packed" (`pack_lanes`); dense matrices are tiled the same way in both.
    shared: with the diagonal mapping, place the pieces of all matrices together
      (`share_tiles`: small matrices share tiles) instead of giving every matrix tiles of
      its own; the tile count changes, nothing else.

  Returns:
    `MappingReport`.
  """
  tile = tile or TileConfig()
  if pooling not in POOLINGS:
    raise errors.ConfigError(f"Unknown pooling {pooling!r}; valid: {POOLINGS}.")
  if recurrence not in RECURRENCES:
    raise errors.ConfigError(f"Unknown recurrence {recurrence!r}; valid: {RECURRENCES}.")
  check_mapping(mapping)
  if shared and mapping != "diagonal":
    raise errors.ConfigError(f"Shared tiles need the diagonal mapping, got {mapping!r}.")
  s4d_layers = [_parent(p) for p in records if p.rsplit("/", 1)[-1] == "a_bar"]
  arrays, digital = [], []
  for path, record in records.items():
    layer, name = _parent(path), path.rsplit("/", 1)[-1]
    values = np.asarray(record["values"])
    if layer in s4d_layers:
      if name == "a_bar":
        more_arrays, more_digital = _s4d_layer(layer, records, tile, recurrence, mapping)
        arrays += more_arrays
        digital += more_digital
      continue
    kernel = next(
      (
        records[p]
        for p in records
        if _parent(p) == layer and p != path and float(records[p]["macs_per_element"]) > 0
      ),
      None,
    )
    if float(record["macs_per_element"]) > 0:
      matrix, more_digital = _dense_layer(path, record, tile, pooling)
      arrays.append(matrix)
      digital += more_digital
    elif name == "bias" and kernel is not None:
      digital.append(
        DigitalStage(layer, "bias", values.size, bool(kernel.get("per_sequence", False)))
      )
    elif name == "scale" and kernel is None:
      digital.append(DigitalStage(layer, "norm", values.size))
  for a in arrays:
    mvms = a.mvms_per_step
    digital.append(DigitalStage(a.layer, "output_scale", a.outputs * mvms, a.per_sequence))
    if a.partial_sums_per_mvm:
      digital.append(
        DigitalStage(a.layer, "partial_sum", a.partial_sums_per_mvm * mvms, a.per_sequence)
      )
  joint = share_tiles([a.usage for a in arrays], tile) if shared else None
  return MappingReport(
    tile=tile, arrays=tuple(arrays), digital=tuple(digital), mapping=mapping, shared=joint
  )


def _dense_layer(
  path: str, record: dict, tile: TileConfig, pooling: str
) -> tuple[MappedMatrix, list]:
  """The array of one dense (in, out) record and its digital stages: the pooling before a
  per-sequence layer (mean pooling) and the GLU gate after a "glu" layer."""
  layer, values = _parent(path), np.asarray(record["values"])
  if values.ndim != 2 or np.iscomplexobj(values):
    raise errors.ConfigError(
      f"{path}: a matrix product needs real (in, out) values, got {values.dtype} {values.shape}."
    )
  per_sequence = bool(record.get("per_sequence", False))
  d_in, d_out = values.shape
  digital = []
  if per_sequence and pooling == "mean":
    digital += [DigitalStage(layer, "pool", d_in), DigitalStage(layer, "pool_scale", d_in, True)]
  matrix = MappedMatrix(
    layer=layer,
    kind="dense",
    shape=(d_in, d_out),
    blocks=1,
    usage=tiles_for_matrix(d_in, d_out, tile),
    weight_cells=d_in * d_out * tile.devices_per_weight,
    per_sequence=per_sequence,
  )
  if "glu" in layer:
    digital.append(DigitalStage(layer, "glu_gate", d_out // 2, per_sequence))
  return matrix, digital
