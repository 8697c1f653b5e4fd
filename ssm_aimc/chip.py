"""Step-mode inference of an exported model on a simulated AIMC chip (docs/design.md §1, "Crossbar
deployment").

The chip runs the sequence one step at a time, as hardware does. Every matrix product is an
array read: inputs go through a DAC, the programmed conductances (programming noise frozen
when the chip is programmed, drift to t_inference) are read with fresh read noise at every
MVM, and each array piece's output is digitised by an ADC. The recurrent state leaves the
arrays through the ADC and comes back through the DAC at every step, so it is quantized
every step. The norm (a LayerNorm, or a BatchNorm folded into a per-channel scale and
shift), GELU, the output activation (GLU gate or ReLU), bias and residual adds and pooling
are digital periphery whose stored values (the residual stream, the digital state
register, the pooled features) are rounded to `ChipConfig.periphery_bits`.

Arrays, in crossbar orientation (inputs on rows, outputs on columns; differential pairs as
in `ssm_aimc.hardware.analog.program`), each a weight tensor of shape (*group, in, out):

  encoder, block_i/glu_dense, decoder   dense (in, out), cut into row pieces of
                                        `tile.rows` that are digitised separately and
                                        summed digitally (`crossbar.tiles_for_matrix`);
  block_i/recurrence                    per channel h and mode m the two columns
                                        (Re, Im of the new state) of the block-diagonal
                                        [A_bar | B_bar] matrix, on their non-zero rows:
                                        (H, n, 3, 2) with rows (Re s, Im s, u);
                                        `recurrence` says what the array holds:
                                          direct    [A_bar | B_bar]; its output IS the state;
                                          residual  [A_bar - I | B_bar]; the state register
                                                    adds the output to the old state;
                                          digital   nothing: the diagonal recurrence runs
                                                    in the periphery (the default: an
                                                    untrimmed a_bar on PCM arrays costs
                                                    points, README "The recurrence on the
                                                    arrays, made to work"; b_bar u is
                                                    elementwise);
  block_i/readout                       per channel one column [2 Re c, -2 Im c, ..., d]
                                        on [s; u]: (H, 2n+1, 1).

Structural zeros of the block-diagonal matrices (other modes, other channels) are devices
left unprogrammed, at zero conductance: they add neither weight nor read noise. The
recurrence and read-out blocks are cut into row pieces exactly where `ChipConfig.mapping`'s
placement cuts them (`crossbar.place_blocks`): "diagonal" cuts a block taller than a tile
every `tile.rows` rows from the block's origin; "packed" cuts a block wherever it crosses
the bottom of a lane, so channel h's cut depends on where its block starts. Each piece is
read with its own read and output noise and digitised by its own ADC, and the pieces are
summed digitally. (Which MVM cycle reads a piece changes the latency, not the numbers.)

Ranges. The DAC of a matrix input uses the model's own activation quantizer when it has
one (a QAT model's 8-bit input grid IS the chip's 8-bit DAC), else the calibrated range;
every other DAC and every ADC range is calibrated per row or column on an ideal, noise-free
run of this same step program over one batch (`calibrate`: the largest |value| seen, times
`ChipConfig.headroom`). Inputs are normalised to [-1, 1] by their range before the DAC and
the range is folded into the array's row (w_row * r_row), as a chip with per-row input
scaling does; the conductance mapping sees the folded weights.

Gain trim (`ChipConfig.recurrence_gain="decay"`). A recurrence on the arrays turns a slow
mode's decay into growth when the device error on its 2 x 2 block exceeds 1 - |a_bar|. The
trim measures each mode's block on the programmed chip (`measured_transitions`) and the
periphery multiplies the new state by |a_bar| / (its spectral radius) (`recurrence_gains`).

With the IDEAL device, no periphery quantization (converter widths off, periphery >= 16
bits) the step program computes the exported model exactly (tests/test_chip.py, against
`export.forward`). Bidirectional models are not streamable and are refused.

Pure JAX; no flax. `run` takes one chip's keys; vmap it over keys for many chips.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ssm_aimc import blocks, errors, quant
from ssm_aimc.hardware import analog as analog_lib
from ssm_aimc.hardware import crossbar
from ssm_aimc.hardware import devices as devices_lib
from ssm_aimc.hardware import rng as rng_lib

RECURRENCES = analog_lib.RECURRENCES
# Per-mode gain trims of a recurrence on the arrays (`ChipConfig.recurrence_gain`).
RECURRENCE_GAINS = ("off", "decay")


@dataclasses.dataclass(frozen=True)
class ChipConfig:
  """The chip around the device model (the device itself is in `analog.AnalogSpec`).

  Attributes:
    tile: array size; pieces of a matrix taller than `tile.rows` are digitised separately.
    periphery_bits: width of the values the digital periphery stores (residual stream,
      state register, pooled features); >= 16 leaves them in float.
    headroom: calibrated DAC/ADC ranges are the largest |value| of the calibration batch
      times this factor (> 1 leaves room for noise, < 1 clips outliers for resolution).
    read_rng: source of the per-MVM read and output noise: "hash" (`hardware.rng`, a
      counter hash, ~5x cheaper on a CPU) or "threefry" (`jax.random.normal`).
    mapping: how the per-channel S4D blocks sit on the tiles (`crossbar.MAPPINGS`):
      "diagonal" or "packed"; it decides where a block is cut into row pieces.
    recurrence_gain: per-mode gain trim of a recurrence held on the arrays
      (`RECURRENCE_GAINS`): "off", or "decay": after programming, each mode's 2 x 2 block
      is measured on the chip (`measured_transitions`) and the periphery multiplies the
      new state by |a_bar| / (spectral radius of the measured transition), one real factor
      per mode and step (`recurrence_gains`), so every mode decays at its trained rate.
    gain_reads: reads averaged per measured weight for "decay": 0 takes the programmed
      weights exactly (infinitely many reads), k >= 1 leaves read noise of std / sqrt(k).
    gain_time_s: seconds after programming at which the trim is measured (the same chip,
      its drift at that time); < 0 measures it at the inference time itself (a trim
      re-measured whenever the chip is used).
  """

  tile: crossbar.TileConfig = crossbar.TileConfig()
  periphery_bits: int = 16
  headroom: float = 1.0
  read_rng: str = "hash"
  mapping: str = "diagonal"
  recurrence_gain: str = "off"
  gain_reads: int = 0
  gain_time_s: float = -1.0

  def __post_init__(self):
    quant.validate_bits(self.periphery_bits)
    crossbar.check_mapping(self.mapping)
    if self.read_rng not in rng_lib.RNGS:
      raise errors.ConfigError(f"Unknown read_rng {self.read_rng!r}; valid: {rng_lib.RNGS}.")
    if not (math.isfinite(self.headroom) and self.headroom > 0):
      raise errors.ConfigError(f"headroom must be a number > 0, got {self.headroom}.")
    if self.recurrence_gain not in RECURRENCE_GAINS:
      raise errors.ConfigError(
        f"Unknown recurrence_gain {self.recurrence_gain!r}; valid: {RECURRENCE_GAINS}."
      )
    if isinstance(self.gain_reads, bool) or int(self.gain_reads) != self.gain_reads:
      raise errors.ConfigError(f"gain_reads must be an integer >= 0, got {self.gain_reads!r}.")
    if self.gain_reads < 0:
      raise errors.ConfigError(f"gain_reads must be an integer >= 0, got {self.gain_reads!r}.")
    if not math.isfinite(self.gain_time_s):
      raise errors.ConfigError(f"gain_time_s must be a finite number, got {self.gain_time_s}.")


# ---------------------------------------------------------------------------------------
# The exported model as arrays.
# ---------------------------------------------------------------------------------------


def check_streamable(tensors: dict) -> None:
  """ConfigError for models a step-mode chip cannot run (bidirectional S4D)."""
  if any(p.endswith("/c_reverse") for p in tensors):
    raise errors.ConfigError(
      "A bidirectional model sees the whole sequence before its first output; the step-mode "
      "chip runs causal models only (model_name='s4d')."
    )
  missing = [p for p in ("encoder/kernel", "decoder/kernel") if p not in tensors]
  if missing:
    raise errors.ConfigError(f"The export lacks {missing}; is it an S4D classifier export?")


def _n_layers(manifest: dict) -> int:
  return int(manifest["arch"]["n_layers"])


def _input_range(manifest: dict, path: str) -> float | None:
  """The range r = step x q_max of a matrix input's own quantizer grid, or None."""
  q = manifest["input_quantizers"].get(path)
  if q is None or quant.is_off(q["bits"]):
    return None
  return float(q["scale"]) * float(quant.q_max(q["bits"]))


def recurrence_weights(a_bar: jax.Array, b_bar: jax.Array, recurrence: str) -> jax.Array:
  """The non-zero rows of each mode's two state columns, (H, n, 3, 2) real.

  Rows (Re s, Im s, u) for "direct" ([A_bar | B_bar]) and "residual" ([A_bar - I | B_bar]).
  Columns (Re, Im) of the new state: for mode m,
  Re s' = Re a Re s - Im a Im s + Re b u and Im s' = Im a Re s + Re a Im s + Im b u: the
  complex x' = a_bar x + b_bar u on real pairs (tested against `ssm.linear_recurrence`).
  """
  if recurrence not in ("direct", "residual"):
    raise errors.ConfigError(f"No recurrence array for recurrence={recurrence!r}.")
  b_row = jnp.stack([b_bar.real, b_bar.imag], -1)[..., None, :]
  re = a_bar.real - (1.0 if recurrence == "residual" else 0.0)
  im = a_bar.imag
  a_rows = jnp.stack([jnp.stack([re, im], -1), jnp.stack([-im, re], -1)], -2)
  return jnp.concatenate([a_rows, b_row], axis=-2)


def readout_weights(c: jax.Array, d: jax.Array) -> jax.Array:
  """Each channel's read-out column on [s; u], (H, 2n+1, 1): `crossbar.readout_row`."""
  return crossbar.readout_row(c, d)[..., None]


def ideal_arrays(manifest: dict, tensors: dict, ranges: dict, recurrence: str) -> dict:
  """{array name: weights (*group, in, out)} with the input ranges folded into the rows.

  `ranges` comes from `calibrate` (all ones there, while calibrating).
  """
  out = {}
  for path in _dense_paths(manifest):
    out[path] = tensors[f"{path}/kernel"] * ranges[f"{path}/in"]
  for i in range(_n_layers(manifest)):
    path = f"block_{i}/s4d"
    r_u, r_s = ranges[f"{path}/u"], ranges[f"{path}/state"]  # scalar, (H, n)
    if recurrence != "digital":
      w = recurrence_weights(tensors[f"{path}/a_bar"], tensors[f"{path}/b_bar"], recurrence)
      row_scale = jnp.stack([r_s, r_s, jnp.broadcast_to(r_u, r_s.shape)], -1)[..., None]
      out[f"{path}/recurrence"] = w * row_scale
    rows = jnp.concatenate(
      [jnp.repeat(r_s, 2, axis=-1), jnp.broadcast_to(r_u, r_s.shape[:1])[:, None]], -1
    )
    out[f"{path}/readout"] = (
      readout_weights(tensors[f"{path}/c"], tensors[f"{path}/d"]) * (rows[..., None])
    )
  return out


def _dense_paths(manifest: dict) -> list[str]:
  return ["encoder"] + [f"block_{i}/glu_dense" for i in range(_n_layers(manifest))] + ["decoder"]


def _block_row_pieces(
  n_blocks: int, rows: int, cols: int, tile: crossbar.TileConfig, mapping: str
) -> np.ndarray:
  """Piece index of each row of each column chunk of n identical (rows, cols) blocks placed
  by `crossbar.place_blocks`: (n_blocks, column chunks, rows), the k-th cut of a chunk
  from its top is piece k."""
  usage = crossbar.place_blocks([(rows, cols)] * n_blocks, tile, mapping)
  chunks = -(-cols // tile.logical_cols)
  starts = [[[] for _ in range(chunks)] for _ in range(n_blocks)]
  for p in usage.placements:
    starts[p.block][p.block_col // tile.logical_cols].append(p.block_row)
  index = np.arange(rows)
  return np.asarray(
    [[np.searchsorted(np.sort(s), index, side="right") - 1 for s in block] for block in starts],
    np.int32,
  )


def row_pieces(
  name: str, shape: tuple, tile: crossbar.TileConfig, mapping: str = "diagonal"
) -> np.ndarray:
  """Index of the tile piece that holds each weight row, shape (*group, in) (static).

  Dense matrices are cut every `tile.rows` rows. A recurrence ((2n+1) x 2n) or read-out
  ((2n+1) x 1) block of channel h is cut where `crossbar.place_blocks` cuts it under
  `mapping`: the rows of mode m are 2m, 2m+1 of its channel's block and u is row 2n; the
  two columns of mode m must lie in one column chunk of the block, or in chunks cut at the
  same rows (a ConfigError otherwise: an odd number of logical columns per tile under the
  packed mapping can split them).
  """
  *group, n_in, _ = shape
  if name.endswith("/recurrence"):
    channels, n_modes = group
    cuts = _block_row_pieces(channels, 2 * n_modes + 1, 2 * n_modes, tile, mapping)
    m = np.arange(n_modes)
    first, second = (2 * m) // tile.logical_cols, (2 * m + 1) // tile.logical_cols
    if not np.array_equal(cuts[:, first], cuts[:, second]):
      raise errors.ConfigError(
        f"{name}: the Re and Im columns of a mode lie in column chunks cut at different "
        f"rows ({tile.logical_cols} logical columns per tile, mapping {mapping!r}); use an "
        "even number of logical columns per tile."
      )
    rows = np.stack([2 * m, 2 * m + 1, np.full_like(m, 2 * n_modes)], -1)  # (n, 3)
    return cuts[:, first[:, None], rows].astype(np.int32)  # (H, n, 3)
  if name.endswith("/readout"):
    (channels,) = group
    return _block_row_pieces(channels, n_in, 1, tile, mapping)[:, 0]
  return np.broadcast_to(np.arange(n_in) // tile.rows, (*group, n_in)).astype(np.int32)


# ---------------------------------------------------------------------------------------
# Programming and reading.
# ---------------------------------------------------------------------------------------


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ProgrammedArray:
  """One array after programming.

  Attributes:
    w: effective weights (ideal + programming/drift perturbation), (*group, in, out).
    read_std: std of one read of each weight (at read_noise_scale 1), or None.
    w_max: the weight mapped to g_max, per column (*group, out), for output noise.
  """

  w: jax.Array
  read_std: jax.Array | None
  w_max: jax.Array


def program_arrays(key: jax.Array, arrays: dict, spec: analog_lib.AnalogSpec) -> dict:
  """Programs every array once: {name: ProgrammedArray}. The same key is the same chip."""
  out = {}
  for index, name in enumerate(sorted(arrays)):
    w = arrays[name]
    axes = (w.ndim - 2,) if spec.mapping == "column" else tuple(range(w.ndim))
    prog = analog_lib.program(jax.random.fold_in(key, index), w, spec, axes)
    w_max = jnp.broadcast_to(prog.w_max, w.shape).max(axis=-2)
    out[name] = ProgrammedArray(w=w + prog.delta, read_std=prog.read_std, w_max=w_max)
  return out


def measured_transitions(
  key: jax.Array,
  array: ProgrammedArray,
  r_state: jax.Array,
  recurrence: str,
  spec: analog_lib.AnalogSpec,
  reads: int = 0,
) -> jax.Array:
  """Each mode's 2 x 2 state transition as the programmed recurrence array realises it.

  The measurement drives the state rows with known inputs (the unit vectors) and reads the
  two state columns: `reads` reads averaged per weight (read noise std / sqrt(reads)), or
  with `reads` 0 the programmed weights exactly. The rows of the array hold the weights
  times the state range `r_state` (H, n) (`ideal_arrays`), which is divided out.

  Returns:
    T (H, n, 2, 2) real with (Re s', Im s') = T (Re s, Im s) for u = 0: the array's own
    matrix for "direct", the identity plus it for "residual" (the state register's add).
  """
  if recurrence not in ("direct", "residual"):
    raise errors.ConfigError(f"No recurrence array to measure for recurrence={recurrence!r}.")
  w = array.w[..., :2, :]
  if reads > 0 and array.read_std is not None:
    noise = jax.random.normal(key, w.shape, w.dtype) / math.sqrt(reads)
    w = w + spec.read_noise_scale * array.read_std[..., :2, :] * noise
  t = jnp.swapaxes(w, -1, -2) / r_state[..., None, None]
  if recurrence == "residual":
    t = t + jnp.eye(2, dtype=t.dtype)
  return t


def spectral_radius_2x2(t: jax.Array) -> jax.Array:
  """max |eigenvalue| of real 2 x 2 matrices t (..., 2, 2), in closed form."""
  trace = t[..., 0, 0] + t[..., 1, 1]
  det = t[..., 0, 0] * t[..., 1, 1] - t[..., 0, 1] * t[..., 1, 0]
  disc = 0.25 * trace**2 - det
  complex_pair = jnp.sqrt(jnp.maximum(det, 0.0))  # |lambda| of a conjugate pair.
  real_pair = 0.5 * jnp.abs(trace) + jnp.sqrt(jnp.maximum(disc, 0.0))
  return jnp.where(disc < 0, complex_pair, real_pair)


def recurrence_gains(a_bar: jax.Array, transition: jax.Array) -> jax.Array:
  """Per-mode digital gains |a_bar| / rho(T), (H, n): the trim that gives each measured
  transition T (`measured_transitions`) the trained decay |a_bar|. A mode whose measured
  radius is 0 keeps gain 1."""
  rho = spectral_radius_2x2(transition)
  return jnp.where(rho > 0, jnp.abs(a_bar) / jnp.where(rho > 0, rho, 1.0), 1.0)


def chip_gains(
  key: jax.Array,
  manifest: dict,
  tensors: dict,
  ranges: dict,
  chip: dict,
  spec: analog_lib.AnalogSpec,
  config: ChipConfig,
  recurrence: str,
) -> dict:
  """{block_i/s4d: gains (H, n)} of a programmed chip under `config.recurrence_gain`, or {}
  when it is "off" (ConfigError for a trim of a digital recurrence)."""
  if config.recurrence_gain == "off":
    return {}
  if recurrence == "digital":
    raise errors.ConfigError(
      f"recurrence_gain={config.recurrence_gain!r} trims a recurrence held on the arrays; "
      "with recurrence='digital' a_bar is exact and there is nothing to measure."
    )
  out = {}
  for i in range(_n_layers(manifest)):
    path = f"block_{i}/s4d"
    t = measured_transitions(
      jax.random.fold_in(key, i),
      chip[f"{path}/recurrence"],
      ranges[f"{path}/state"],
      recurrence,
      spec,
      config.gain_reads,
    )
    out[path] = recurrence_gains(tensors[f"{path}/a_bar"], t)
  return out


def _quantize(x, bits, r):
  """x rounded to `bits` over [-r, r] (clipped); identity for bits >= 16."""
  return quant.fake_quant(x, bits, r / quant.q_max(bits))


def array_mvm(
  key: jax.Array,
  x: jax.Array,
  array: ProgrammedArray,
  pieces: np.ndarray,
  out_range: jax.Array,
  spec: analog_lib.AnalogSpec,
  read_rng: str = "hash",
) -> jax.Array:
  """One MVM of a programmed array on normalised inputs x (B, *group, in) -> (B, *group, out).

  Every row piece is read with fresh read noise (exactly Gaussian: variance
  sum_i x_i^2 sigma_i^2 per output), gets output noise and its own ADC over `out_range`
  (*group, out); the pieces are summed digitally.
  """
  total = 0.0
  n_pieces = int(pieces.max()) + 1
  normal = lambda k, shape, dtype: rng_lib.normal(k, shape, dtype, read_rng)
  for p in range(n_pieces):
    xp = x if n_pieces == 1 else x * jnp.asarray(pieces == p, x.dtype)
    keys = jax.random.split(jax.random.fold_in(key, p))
    y = analog_lib.read_product(
      xp, array.w, array.read_std, keys, spec, array.w_max, out_range, _group_product, normal
    )
    total = total + y
  return total


def _group_product(x: jax.Array, w: jax.Array) -> jax.Array:
  """(B, *group, in) x (*group, in, out) -> (B, *group, out): one product per group."""
  return jnp.einsum("b...i,...io->b...o", x, w)


# ---------------------------------------------------------------------------------------
# The step program.
# ---------------------------------------------------------------------------------------


class _Periphery:
  """The converters and stored digital values of one trace. Running: DACs round inputs,
  the periphery rounds what it stores. Calibrating (`record`): nothing is rounded and the
  largest |value| of every named signal is noted, per row or column."""

  def __init__(self, spec, ranges, config: ChipConfig, record: bool):
    self.spec, self.ranges, self.config, self.record = spec, ranges, config, record
    self.stats = {}

  def note(self, name: str, value, axes):
    if self.record:
      self.stats[name] = jnp.max(jnp.abs(value), axis=axes)

  def dac(self, name: str, x, axes, r=None):
    """x in its own units -> normalised input codes x / r, r the `name` range."""
    self.note(name, x, axes)
    x = x / (self.ranges[name] if r is None else r)
    if self.spec.dac and not self.record:
      x = _quantize(jnp.clip(x, -1.0, 1.0), self.spec.dac_bits, 1.0)
    return x

  def store(self, name: str, x, axes=None, r=None):
    """A value the digital periphery stores, rounded to periphery_bits over its range."""
    self.note(name, x, axes)
    if self.record:
      return x
    r = self.ranges[name] if r is None else r
    return _quantize(x, self.config.periphery_bits, r)


def _qs4d_activations_on(manifest: dict) -> bool:
  """A qs4d export quantizes an activation or the state (per-sequence absmax grids)."""
  info = manifest.get("quant") or {}
  inputs = manifest["input_quantizers"].values()
  state_on = float(info.get("state_bits", quant.OFF_BITS)) < quant.OFF_THRESHOLD
  return state_on or any(float(q["bits"]) < quant.OFF_THRESHOLD for q in inputs)


def _model_input(manifest: dict, path: str, x):
  """The model's own activation quantizer on a matrix input (a QAT model's grid); none for
  a float input (off: a qs4d export with only weights quantized records no step)."""
  q = manifest["input_quantizers"].get(path)
  if q is None or float(q["bits"]) >= quant.OFF_THRESHOLD:
    return x
  return quant.fake_quant(x, q["bits"], jnp.float32(q["scale"]))


def _digital_recurrence(a_bar: jax.Array, b_bar: jax.Array, state: jax.Array, u: jax.Array):
  """a_bar s + b_bar u on real pairs: state (B, H, n, 2), u (B, H) -> (B, H, n, 2)."""
  re, im = state[..., 0], state[..., 1]
  return jnp.stack(
    [
      a_bar.real * re - a_bar.imag * im + b_bar.real * u[..., None],
      a_bar.imag * re + a_bar.real * im + b_bar.imag * u[..., None],
    ],
    -1,
  )


def _s4d_step(per, mvm, tensors, ranges, path, state, u, recurrence, gain=None):
  """One step of S4D layer `path`: state (B, H, n, 2) real s_{k-1}, u (B, H) the layer's
  input (on its own quantizer's grid) -> (s_k, y_k (B, H)). `mvm(name, v, out_name)` reads
  an array; `gain` (H, n), if given, multiplies the new state of an analog recurrence
  (`recurrence_gains`)."""
  batch = state.shape[0]
  u_n = per.dac(f"{path}/u", u, axes=None)
  r_state = ranges[f"{path}/state"][..., None]
  if recurrence == "digital":
    new = _digital_recurrence(tensors[f"{path}/a_bar"], tensors[f"{path}/b_bar"], state, u)
    new = per.store(f"{path}/state", new, (0, 3), r_state)
  else:
    s_n = per.dac(f"{path}/state", state, (0, 3), r_state)
    v = jnp.concatenate([s_n, jnp.broadcast_to(u_n[:, :, None, None], s_n[..., :1].shape)], -1)
    update = mvm(f"{path}/recurrence", v, f"{path}/update")
    new = update if recurrence == "direct" else state + update  # direct: the ADC's codes.
    if gain is not None:
      new = gain[..., None] * new
    if gain is not None or recurrence == "residual":
      new = per.store(f"{path}/state", new, (0, 3), r_state)
  s_n = per.dac(f"{path}/state", new, (0, 3), r_state)
  v = jnp.concatenate([s_n.reshape(batch, s_n.shape[1], -1), u_n[..., None]], -1)
  y = mvm(f"{path}/readout", v, f"{path}/readout/out")
  return new, y[..., 0]


def _forward(
  manifest: dict,
  tensors: dict,
  chip: dict,
  ranges: dict,
  x: jax.Array,
  key_read: jax.Array,
  spec: analog_lib.AnalogSpec,
  config: ChipConfig,
  recurrence: str,
  record: bool = False,
  gains: dict | None = None,
):
  """The step program over x (B, L, d_in): (logits (B, classes), stats of the calibration).
  `gains`: {S4D path: per-mode gains} of `chip_gains` (none: {} or None).

  Per step: encoder MVM -> per block [norm -> recurrence MVM (+ digital a_bar or old state)
  -> state register -> read-out MVM -> GELU -> output MVM -> GLU gate or ReLU (-> residual)]
  -> pooling; the decoder MVM runs once on the pooled features.
  """
  arch = manifest["arch"]
  norm_kind, options = blocks.block_options(arch)
  names = sorted(chip)
  pieces = {n: row_pieces(n, chip[n].w.shape, config.tile, config.mapping) for n in names}
  batch, length, _ = x.shape

  def reader(per, key):
    """(mvm, dense) reading the arrays with `key`, their outputs noted by `per`."""

    def mvm(name, v, out_name):
      k = jax.random.fold_in(key, names.index(name))
      y = array_mvm(k, v, chip[name], pieces[name], ranges[out_name], spec, config.read_rng)
      per.note(out_name, y, (0,))
      return y

    def dense(path, h):
      v = per.dac(f"{path}/in", _model_input(manifest, path, h), axes=None)
      return mvm(path, v, f"{path}/out") + tensors[f"{path}/bias"]

    return mvm, dense

  def step(carry, inputs):
    states, pool = carry
    t, x_t = inputs
    per = _Periphery(spec, ranges, config, record)
    mvm, dense = reader(per, jax.random.fold_in(key_read, t))
    h = per.store("encoder/h", dense("encoder", x_t))
    new_states = []
    for i, state in enumerate(states):
      block = f"block_{i}"

      def s4d(z, path=f"{block}/s4d", state=state):
        u = _model_input(manifest, path, z)
        gain = (gains or {}).get(path)
        new, y = _s4d_step(per, mvm, tensors, ranges, path, state, u, recurrence, gain)
        new_states.append(new)
        return y

      h = blocks.residual_block(
        h,
        norm=blocks.stored_norm(
          norm_kind, tensors[f"{block}/norm/scale"], tensors[f"{block}/norm/bias"]
        ),
        sequence_layer=s4d,
        glu_dense=functools.partial(dense, f"{block}/glu_dense"),
        **options,
      )
      h = per.store(f"{block}/h", h)
    pool = per.store("pool", pool + h) if arch["pooling"] == "mean" else h
    return (tuple(new_states), pool), per.stats

  states = tuple(
    jnp.zeros((batch, *tensors[f"block_{i}/s4d/a_bar"].shape, 2), jnp.float32)
    for i in range(_n_layers(manifest))
  )
  pool = jnp.zeros((batch, tensors["encoder/kernel"].shape[1]), jnp.float32)
  (_, pool), stats = jax.lax.scan(step, (states, pool), (jnp.arange(length), jnp.swapaxes(x, 0, 1)))
  pooled = pool / length if arch["pooling"] == "mean" else pool
  per = _Periphery(spec, ranges, config, record)
  _, dense = reader(per, jax.random.fold_in(key_read, length))
  logits = dense("decoder", pooled)
  stats = {k: jnp.max(v, axis=0) for k, v in stats.items()}
  stats.update(per.stats)
  return logits, stats


# ---------------------------------------------------------------------------------------
# Calibration and the public entry points.
# ---------------------------------------------------------------------------------------


def _unit_ranges(manifest: dict, tensors: dict) -> dict:
  """Every range at 1 (shapes as `calibrate` returns them): normalisation off."""
  out = {"encoder/h": 1.0, "pool": 1.0}
  for path in _dense_paths(manifest):
    out[f"{path}/in"] = 1.0
    out[f"{path}/out"] = jnp.ones(tensors[f"{path}/kernel"].shape[1])
  for i in range(_n_layers(manifest)):
    path = f"block_{i}/s4d"
    shape = tensors[f"{path}/a_bar"].shape
    out[f"block_{i}/h"] = 1.0
    out[f"{path}/u"] = 1.0
    out[f"{path}/state"] = jnp.ones(shape)
    out[f"{path}/update"] = jnp.ones((*shape, 2))
    out[f"{path}/readout/out"] = jnp.ones((shape[0], 1))
  return {k: jnp.asarray(v, jnp.float32) for k, v in out.items()}


def calibrate(
  manifest: dict,
  tensors: dict,
  x: jax.Array,
  recurrence: str = "digital",
  config: ChipConfig | None = None,
) -> dict:
  """DAC, ADC and periphery ranges from an ideal, noise-free run of the step program on x.

  Each range is the largest |value| over the batch and the steps (per row or column where
  the hardware has one converter per row or column), times `config.headroom`; the input
  grid of a quantized model is kept as it is (its DAC is the model's own quantizer). A
  signal that never leaves zero (e.g. a pruned mode) gets range 1.

  Returns:
    {signal name: range}, the `ranges` argument of `run`.
  """
  config = config or ChipConfig()
  check_streamable(tensors)
  info = manifest.get("quant") or {}
  if info.get("scheme") == "qs4d" and _qs4d_activations_on(manifest):
    raise errors.ConfigError(
      "The step-mode chip runs exports of the ssm_aimc quantization scheme only, or qs4d "
      "exports whose activations and state are float: the qs4d scheme scales every "
      "activation by its sequence's absmax, which no converter range fixed before the "
      "sequence starts can hold."
    )
  unit = _unit_ranges(manifest, tensors)
  ideal = analog_lib.AnalogSpec.make(devices_lib.IDEAL, drift=False)
  chip = program_arrays(
    jax.random.PRNGKey(0), ideal_arrays(manifest, tensors, unit, recurrence), ideal
  )
  _, stats = jax.jit(
    lambda t, x: _forward(
      manifest, t, chip, unit, x, jax.random.PRNGKey(0), ideal, config, recurrence, record=True
    )
  )(tensors, x)
  ranges = {}
  for name, value in unit.items():
    if name not in stats:  # A signal this recurrence does not have.
      ranges[name] = value
      continue
    seen = stats[name] * config.headroom
    ranges[name] = jnp.where(seen > 0, seen, 1.0).reshape(value.shape).astype(jnp.float32)
  for path in _dense_paths(manifest):
    grid = _input_range(manifest, path)
    if grid is not None:
      ranges[f"{path}/in"] = jnp.float32(grid)
  for i in range(_n_layers(manifest)):
    path = f"block_{i}/s4d"
    grid = _input_range(manifest, path)
    if grid is not None:
      ranges[f"{path}/u"] = jnp.float32(grid)
    if recurrence == "direct":
      # The array's output is the state: one ADC code per state value, fed straight back.
      ranges[f"{path}/update"] = jnp.repeat(ranges[f"{path}/state"][..., None], 2, -1)
  return ranges


def run(
  manifest: dict,
  tensors: dict,
  ranges: dict,
  x: jax.Array,
  key_program: jax.Array,
  key_read: jax.Array,
  spec: analog_lib.AnalogSpec,
  config: ChipConfig | None = None,
  recurrence: str = "digital",
) -> jax.Array:
  """Logits (B, classes) of one chip (programmed with `key_program`) on x (B, L, d_in).

  `manifest`, `tensors` from `export.load_export`; `ranges` from `calibrate` with the same
  recurrence. vmap over (key_program, key_read) for many chips.
  """
  config = config or ChipConfig()
  arrays = ideal_arrays(manifest, tensors, ranges, recurrence)
  chip = program_arrays(key_program, arrays, spec)
  key_gain = jax.random.fold_in(key_program, len(arrays))  # Not a key of program_arrays.
  measured = chip
  if config.recurrence_gain != "off" and config.gain_time_s >= 0:
    # The same chip (same key: programming noise and drift exponents) at the trim's time.
    at = dataclasses.replace(spec, t_inference=jnp.asarray(config.gain_time_s, jnp.float32))
    measured = program_arrays(key_program, arrays, at)
  gains = chip_gains(key_gain, manifest, tensors, ranges, measured, spec, config, recurrence)
  logits, _ = _forward(
    manifest, tensors, chip, ranges, x, key_read, spec, config, recurrence, gains=gains
  )
  return logits


def make_eval_fn(manifest: dict, config: ChipConfig | None = None, recurrence: str = "digital"):
  """Jitted correct counts of a batch on S chips, in `noise_eval.chip_accuracies`'s
  signature:
  fn((tensors, ranges), x, y, mask, spec, keys_program (S, 2), keys_read (S, 2), batch_index)
  -> (S,). Chip s keeps its programming across batches and reads fresh noise in each."""
  config = config or ChipConfig()

  def fn(params, x, y, mask, spec, keys_program, keys_read, batch_index):
    tensors, ranges = params

    def one_chip(kp, kr):
      kr = jax.random.fold_in(kr, batch_index)
      logits = run(manifest, tensors, ranges, x, kp, kr, spec, config, recurrence)
      return jnp.sum((jnp.argmax(logits, -1) == y) * mask)

    return jax.vmap(one_chip)(keys_program, keys_read)

  return jax.jit(fn)
