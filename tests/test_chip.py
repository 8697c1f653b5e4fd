"""Tests of the step-mode chip simulator against the exported model and closed forms."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_aimc import blocks, chip, errors, export, quant, ssm
from ssm_aimc.hardware import analog, crossbar, devices
from tests import test_export

W4A8 = quant.QuantSpec.uniform(4, 8, a_bar_bits=8, mode=quant.ScaleMode.CHANNEL)
IDEAL = analog.AnalogSpec.make(devices.IDEAL, drift=False)


def _exported(tmp_path, spec=None, name="s4d", **overrides):
  model, variables, x, arch = test_export.build_variables(name, spec, batch=6, **overrides)
  params, stats = variables["params"], variables.get("batch_stats")
  export.export_model(model, params, spec, x[:1], str(tmp_path), arch, stats)
  manifest, tensors = export.load_export(str(tmp_path))
  return manifest, tensors, x


SMALL_TILE = crossbar.TileConfig(rows=3, cols=4)


# The QS4D authors' blocks: BatchNorm, no residual; and the predecessor chip's ReLU.
QS4D_BLOCKS = dict(norm="batch", residual=False)
QS4D_RELU_BLOCKS = dict(norm="batch", residual=False, activation="relu")


@pytest.mark.parametrize(
  "spec, recurrence, tile, blocks_options, mapping",
  [
    (None, "digital", crossbar.TileConfig(), {}, "diagonal"),
    (W4A8, "digital", crossbar.TileConfig(), {}, "diagonal"),
    (None, "direct", SMALL_TILE, {}, "diagonal"),
    (W4A8, "residual", SMALL_TILE, {}, "diagonal"),
    (None, "digital", crossbar.TileConfig(), QS4D_BLOCKS, "diagonal"),
    (W4A8, "residual", SMALL_TILE, QS4D_BLOCKS, "diagonal"),
    (W4A8, "digital", crossbar.TileConfig(), QS4D_RELU_BLOCKS, "diagonal"),
    (None, "direct", SMALL_TILE, {}, "packed"),
    (W4A8, "digital", SMALL_TILE, {}, "packed"),
  ],
  ids=[
    "float-digital",
    "w4a8-digital",
    "float-direct-3rows",
    "w4a8-residual-3rows",
    "batchnorm-noskip-float-digital",
    "batchnorm-noskip-w4a8-residual-3rows",
    "batchnorm-noskip-relu-w4a8-digital",
    "packed-float-direct-3rows",
    "packed-w4a8-digital-3rows",
  ],
)
def test_ideal_chip_equals_the_exported_model(
  tmp_path, spec, recurrence, tile, blocks_options, mapping
):
  """Ideal device, converters and periphery off (>= 16 bits): the step program computes
  the software model, for every way of holding the recurrence and both mappings; on 3-row
  tiles every block and dense matrix is cut into row pieces whose partial outputs are
  summed (packed: cut where each channel's block crosses a lane's bottom,
  test_packed_row_pieces_differ_between_channels). A BatchNorm runs as its folded
  per-channel scale and shift in the periphery."""
  manifest, tensors, x = _exported(tmp_path, spec, **blocks_options)
  reference = export.forward(manifest, tensors, x)
  config = chip.ChipConfig(tile=tile, periphery_bits=16, mapping=mapping)
  ranges = chip.calibrate(manifest, tensors, x, recurrence, config)
  keys = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
  logits = chip.run(manifest, tensors, ranges, x, *keys, IDEAL, config, recurrence)
  # Tolerance: float32 rounding of the row scaling (x / r, then w r) and of the order of
  # the sums (step by step here, sequential scan in the reference).
  np.testing.assert_allclose(logits, reference, rtol=1e-5, atol=1e-5)


def test_recurrence_and_readout_weights_run_the_complex_recurrence():
  """Reading [s_{k-1}; u_k] through each mode's (Re, Im) columns of recurrence_weights and
  [s_k; u_k] through readout_weights is x_k = a_bar x_{k-1} + b_bar u_k and
  y_k = 2 Re(c x_k) + d u_k: against ssm.linear_recurrence and ssm.apply_ssm in float64."""
  channels, n, length = 2, 3, 7
  rng = np.random.default_rng(3)
  cplx = lambda: rng.normal(size=(channels, n)) + 1j * rng.normal(size=(channels, n))
  a_bar = rng.uniform(0.5, 0.95, (channels, n)) * np.exp(
    1j * rng.uniform(-np.pi, np.pi, (channels, n))
  )
  b_bar, c, d = cplx(), cplx(), rng.normal(size=channels)
  u = rng.normal(size=(length, channels))
  with jax.enable_x64(True):
    w = chip.recurrence_weights(jnp.asarray(a_bar), jnp.asarray(b_bar), "direct")
    readout = chip.readout_weights(jnp.asarray(c), jnp.asarray(d))  # (H, 2n+1, 1)
    chex.assert_shape(w, (channels, n, 3, 2))
    chex.assert_shape(readout, (channels, 2 * n + 1, 1))

    def step(s, u_k):  # s (H, n, 2): (Re, Im) of each mode.
      v = jnp.concatenate([s, jnp.broadcast_to(u_k[:, None, None], (channels, n, 1))], -1)
      s = jnp.einsum("hmi,hmio->hmo", v, w)
      v = jnp.concatenate([s.reshape(channels, 2 * n), u_k[:, None]], -1)
      return s, (s, jnp.einsum("hi,hio->ho", v, readout)[:, 0])

    _, (states, y) = jax.lax.scan(step, jnp.zeros((channels, n, 2)), jnp.asarray(u))
    bu = (b_bar[None] * u[:, :, None]).reshape(length, channels * n)
    x = ssm.linear_recurrence(jnp.asarray(a_bar).reshape(-1), jnp.asarray(bu), "sequential")
    x = np.asarray(x).reshape(length, channels, n)
    np.testing.assert_allclose(states[..., 0] + 1j * states[..., 1], x, rtol=1e-12, atol=1e-12)
    y_ref = ssm.apply_ssm(*map(jnp.asarray, (a_bar, b_bar, c, d, u)), method="sequential")
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    # The residual array holds A_bar - I: the same weights less one on the (Re s, Im s) rows.
    residual = chip.recurrence_weights(jnp.asarray(a_bar), jnp.asarray(b_bar), "residual")
    identity = np.zeros((3, 2))
    identity[0, 0] = identity[1, 1] = 1.0
    np.testing.assert_allclose(residual, w - identity, rtol=1e-15, atol=1e-15)
  with pytest.raises(errors.ConfigError):
    chip.recurrence_weights(jnp.asarray(a_bar), jnp.asarray(b_bar), "digital")


def test_row_pieces_follow_the_block_cut():
  tile = crossbar.TileConfig(rows=4, cols=8)
  # n = 2 modes: rows (0, 1), (2, 3) and u at row 4 -> the u row is a piece of its own.
  pieces = chip.row_pieces("block_0/s4d/recurrence", (5, 2, 3, 2), tile)
  assert pieces.shape == (5, 2, 3)
  np.testing.assert_array_equal(pieces[0], [[0, 0, 1], [0, 0, 1]])
  np.testing.assert_array_equal(chip.row_pieces("encoder", (9, 3), tile), [0] * 4 + [1] * 4 + [2])


def test_packed_row_pieces_differ_between_channels():
  """The TINY model of the chip tests (H = 4, n = 2) on 3 x 4 tiles (2 logical columns,
  lanes 3 rows tall), cut by hand."""
  # Read-out blocks are 5 x 1: two 1-wide lanes of 3 rows per tile, filled in order.
  # Channel 0: rows 0-2 (lane 0), 3-4 (lane 1 top); channel 1: row 0 (lane 1 bottom),
  # rows 1-3 (tile 1 lane 0), row 4 (tile 1 lane 1); channel 2: rows 0-1 (tile 1 lane 1),
  # rows 2-4 (tile 2 lane 0); channel 3: rows 0-2 (tile 2 lane 1), rows 3-4 (tile 3).
  packed = chip.row_pieces("block_0/s4d/readout", (4, 5, 1), SMALL_TILE, "packed")
  np.testing.assert_array_equal(
    packed, [[0, 0, 0, 1, 1], [0, 1, 1, 1, 2], [0, 0, 1, 1, 1], [0, 0, 0, 1, 1]]
  )
  # Diagonal: every block cut every 3 rows from its own origin.
  diagonal = chip.row_pieces("block_0/s4d/readout", (4, 5, 1), SMALL_TILE)
  np.testing.assert_array_equal(diagonal, [[0, 0, 0, 1, 1]] * 4)
  # The chip's cut is map_model's: one piece per placement of the packed read-out.
  usage = crossbar.pack_lanes([(5, 1)] * 4, SMALL_TILE)
  assert [(p.block, p.block_row, p.rows) for p in usage.placements] == [
    (0, 0, 3), (0, 3, 2), (1, 0, 1), (1, 1, 3), (1, 4, 1), (2, 0, 2), (2, 2, 3), (3, 0, 3),
    (3, 3, 2),
  ]  # fmt: skip
  # Recurrence blocks 5 x 4 are cut into two 2-wide chunks, each flowing down full-width
  # lanes of 3 rows; mode 0 (rows 0, 1, u = 4) lies in chunk 0, mode 1 (rows 2, 3, 4) in
  # chunk 1. Channel 0: chunk 0 rows 0-2 | 3-4, chunk 1 row 0 | 1-3 | 4; so mode 0 reads
  # pieces (0, 0, 1) and mode 1 (1, 1, 2).
  recurrence = chip.row_pieces("block_0/s4d/recurrence", (4, 2, 3, 2), SMALL_TILE, "packed")
  np.testing.assert_array_equal(recurrence[0], [[0, 0, 1], [1, 1, 2]])
  # An odd number of logical columns can put the Re and Im columns of a mode in chunks
  # cut at different rows: n = 3 (7 x 6 blocks) on 3 logical columns puts mode 1's
  # columns 2 and 3 in chunks 0 (cut 0-2 | 3-5 | 6) and 1 (cut 0-1 | 2-4 | 5-6): refused.
  odd = crossbar.TileConfig(rows=3, cols=3, differential=False)
  with pytest.raises(errors.ConfigError, match="even number of logical columns"):
    chip.row_pieces("block_0/s4d/recurrence", (4, 3, 3, 2), odd, "packed")


def test_packed_readout_is_digitised_per_piece_of_its_placement():
  """The packed chip's ADC rounds each row piece of the placement: the read-out MVM of
  4 channels (n = 2) on 3 x 4 tiles, an ideal device with a 4-bit ADC, against the sum of
  the per-piece roundings built from `crossbar.pack_lanes`' placements (second path). The
  diagonal cut (rows 0-2 | 3-4 for every channel) rounds other partial sums."""
  channels, rows = 4, 5
  w = jax.random.normal(jax.random.PRNGKey(0), (channels, rows, 1))
  x = jax.random.uniform(jax.random.PRNGKey(1), (16, channels, rows), minval=-1, maxval=1)
  adc = analog.AnalogSpec.make(devices.IDEAL, drift=False, adc_bits=4)
  (array,) = chip.program_arrays(jax.random.PRNGKey(2), {"block_0/s4d/readout": w}, adc).values()
  r = jnp.full((channels, 1), 3.0)
  step = 3.0 / 7  # q_max(4) = 7 codes each side.
  rounded = lambda y: np.clip(np.round(np.asarray(y) / step), -7, 7) * step
  expected = np.zeros((16, channels, 1))
  for p in crossbar.pack_lanes([(rows, 1)] * channels, SMALL_TILE).placements:
    part = x[:, p.block, p.block_row : p.block_row + p.rows] @ w[p.block, p.block_row :][: p.rows]
    expected[:, p.block] += rounded(part)
  for mapping, equal in (("packed", True), ("diagonal", False)):
    pieces = chip.row_pieces("block_0/s4d/readout", w.shape, SMALL_TILE, mapping)
    y = chip.array_mvm(jax.random.PRNGKey(3), x, array, pieces, r, adc)
    assert np.allclose(y, expected, atol=1e-5) == equal, mapping


def test_bad_mapping_raises_config_error():
  with pytest.raises(errors.ConfigError, match="Unknown mapping 'dense'"):
    chip.ChipConfig(mapping="dense")


def test_array_mvm_reads_fresh_noise_of_the_closed_form_std_and_rounds_to_the_adc_grid():
  w = jax.random.normal(jax.random.PRNGKey(0), (16, 8))
  spec = analog.AnalogSpec.make(devices.PCM_LIKE, prog_noise_scale=0.0, drift=False)
  (array,) = chip.program_arrays(jax.random.PRNGKey(1), {"encoder": w}, spec).values()
  np.testing.assert_allclose(array.w, w, rtol=1e-6)  # No programming noise.
  x = jnp.ones((4000, 16)) * jnp.linspace(-1, 1, 16)
  pieces = chip.row_pieces("encoder", w.shape, crossbar.TileConfig())
  std = np.sqrt(np.square(x[0]) @ np.square(array.read_std))
  for read_rng in ("hash", "threefry"):
    y = chip.array_mvm(jax.random.PRNGKey(2), x, array, pieces, jnp.ones(8), spec, read_rng)
    np.testing.assert_allclose(np.std(y - x @ w, axis=0), std, rtol=0.06)
    np.testing.assert_allclose(np.mean(y - x @ w, axis=0), 0, atol=5 * std.max() / np.sqrt(4000))
  # The same read key reads the same noise; another key fresh noise.
  y2 = chip.array_mvm(jax.random.PRNGKey(3), x, array, pieces, jnp.ones(8), spec)
  assert not np.allclose(y, y2)
  adc = analog.AnalogSpec.make(devices.IDEAL, drift=False, adc_bits=4)
  (ideal,) = chip.program_arrays(jax.random.PRNGKey(1), {"encoder": w}, adc).values()
  r = jnp.full(8, 2.0)
  y = chip.array_mvm(jax.random.PRNGKey(2), x[:8], ideal, pieces, r, adc)
  codes = np.asarray(y) / (2.0 / 7)
  np.testing.assert_allclose(codes, np.round(codes), atol=1e-4)
  assert np.abs(codes).max() <= 7 + 1e-4


def test_calibrated_state_range_is_the_largest_state_of_the_recurrence(tmp_path):
  """Second path: the states of block 0 from ssm.linear_recurrence on its input."""
  manifest, tensors, x = _exported(tmp_path)
  ranges = chip.calibrate(manifest, tensors, x, "digital", chip.ChipConfig(headroom=1.0))
  h = x @ tensors["encoder/kernel"] + tensors["encoder/bias"]
  u = blocks.layer_norm(h, tensors["block_0/norm/scale"], tensors["block_0/norm/bias"])
  a_bar, b_bar = tensors["block_0/s4d/a_bar"], tensors["block_0/s4d/b_bar"]

  def states(u_seq):  # (L, H) -> (L, H, n) complex
    bu = (b_bar[None] * u_seq[..., None]).reshape(u_seq.shape[0], -1)
    return ssm.linear_recurrence(a_bar.reshape(-1), bu, "sequential").reshape(
      bu.shape[0], *a_bar.shape
    )

  s = jax.vmap(states)(u)
  expected = jnp.maximum(jnp.abs(s.real), jnp.abs(s.imag)).max(axis=(0, 1))
  np.testing.assert_allclose(ranges["block_0/s4d/state"], expected, rtol=1e-5)
  np.testing.assert_allclose(ranges["block_0/s4d/u"], jnp.abs(u).max(), rtol=1e-5)


def test_a_chip_keeps_its_programming_and_reads_fresh_noise(tmp_path):
  manifest, tensors, x = _exported(tmp_path)
  ranges = chip.calibrate(manifest, tensors, x)
  prog_only = analog.AnalogSpec.make(devices.PCM_LIKE, read_noise_scale=0.0)
  kp, kr = jax.random.PRNGKey(5), jax.random.PRNGKey(6)
  run = jax.jit(lambda spec, kp, kr: chip.run(manifest, tensors, ranges, x, kp, kr, spec))
  np.testing.assert_array_equal(run(prog_only, kp, kr), run(prog_only, kp, jax.random.PRNGKey(7)))
  assert not np.allclose(run(prog_only, kp, kr), run(prog_only, jax.random.PRNGKey(8), kr))
  pcm = analog.AnalogSpec.make(devices.PCM_LIKE)
  assert not np.allclose(run(pcm, kp, kr), run(pcm, kp, jax.random.PRNGKey(7)))


def test_bidirectional_models_are_refused(tmp_path):
  manifest, tensors, x = _exported(tmp_path, name="s4d_bidirectional")
  with pytest.raises(errors.ConfigError, match="bidirectional"):
    chip.calibrate(manifest, tensors, x)


@pytest.mark.parametrize("kwargs", [dict(periphery_bits=0), dict(headroom=0.0)])
def test_bad_chip_config_raises_config_error(kwargs):
  with pytest.raises(errors.ConfigError):
    chip.ChipConfig(**kwargs)


def test_bad_read_rng_raises_config_error():
  with pytest.raises(errors.ConfigError, match="read_rng"):
    chip.ChipConfig(read_rng="mt19937")


def test_the_chip_refuses_qs4d_exports(tmp_path):
  manifest, tensors, x = _exported(tmp_path, quant.QuantSpec.qs4d(4, 8))
  with pytest.raises(errors.ConfigError, match="ssm_aimc quantization scheme only"):
    chip.calibrate(manifest, tensors, x)
