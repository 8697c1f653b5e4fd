"""Tests of the energy and latency model (ssm_aimc.hardware.energy) against hand-computed
examples, with every product written out in the comments.

Constants (docs/design.md §2, defaults of EnergyConstants): cell read V^2 G t = 0.2^2 x 50e-6 x
10e-9 J = 0.02 pJ; ADC 2 pJ at 8 bits x 2^(bits - 8); DAC 0.1 pJ; a periphery op is an int8
mult + add = 0.2 + 0.03 = 0.23 pJ; FP32 MAC 3.7 + 0.9 = 4.6 pJ; INT8 MAC 0.23 pJ; 64-bit
read 20 pJ (SRAM) or 2000 pJ (DRAM).
"""

import numpy as np
import pytest

from ssm_aimc import cost, errors
from ssm_aimc.hardware import crossbar, energy

L = 10
TILE = crossbar.TileConfig()


def _usage(tiles, used, dac, adc):
  return crossbar.TileUsage(tiles, used, TILE.cells, (), dac_per_mvm=dac, adc_per_mvm=adc)


def _hand_mapping() -> crossbar.MappingReport:
  """A mapping written out by hand (not by map_model):
  enc  dense 100 x 130 per step: 10 tiles, 26000 cells, 500 DACs and 260 ADCs per MVM
       (two row blocks: 130 digital partial sums);
  ssm  recurrence 28 x 24, 2 MVMs per step (bidirectional), 144 weight cells, 28 DACs,
       24 ADCs per MVM;
  dec  dense 4 x 3 once per sequence: 24 cells, 4 DACs, 3 ADCs."""
  arrays = (
    crossbar.MappedMatrix("enc", "dense", (100, 130), 1, _usage(10, 26000, 500, 260), 26000),
    crossbar.MappedMatrix(
      "ssm", "recurrence", (28, 24), 4, _usage(1, 336, 28, 24), 144, mvms_per_step=2
    ),
    crossbar.MappedMatrix("dec", "dense", (4, 3), 1, _usage(1, 24, 4, 3), 24, per_sequence=True),
  )
  stage = crossbar.DigitalStage
  digital = (
    stage("ssm", "gelu", 4),
    stage("blk", "residual", 4),
    stage("norm", "norm", 4),
    stage("enc", "partial_sum", 130),
    stage("enc", "output_scale", 130),
    stage("ssm", "output_scale", 48),
    stage("dec", "output_scale", 3, per_sequence=True),
    stage("dec", "pool_scale", 4, per_sequence=True),
  )
  return crossbar.MappingReport(TILE, arrays, digital)


def _hand_records():
  """Encoder 1 -> 4, S4D with H = 4, n = 3, GLU 4 -> 8, decoder 4 -> 3 (per sequence)."""
  rec = lambda shape, macs, dtype=np.float32, **extra: dict(
    values=np.ones(shape, dtype), macs_per_element=macs, bits=8.0, scales=0.0, **extra
  )
  return {
    "encoder/kernel": rec((1, 4), 1.0, per_sequence=False, act_bits=8.0),
    "encoder/bias": rec((4,), 0.0),
    "block_0/norm/scale": rec((4,), 0.0),
    "block_0/s4d/a_bar": rec((4, 3), 2.0, np.complex64),
    "block_0/s4d/b_bar": rec((4, 3), 1.0, np.complex64),
    "block_0/s4d/c": rec((4, 3), 1.0, np.complex64),
    "block_0/s4d/d": rec((4,), 1.0),
    "block_0/glu_dense/kernel": rec((4, 8), 1.0, per_sequence=False, act_bits=8.0),
    "decoder/kernel": rec((4, 3), 1.0, per_sequence=True, act_bits=8.0),
  }


def test_constants_match_design_md():
  c = energy.EnergyConstants()
  assert c.cell_read_pj == pytest.approx(0.02)  # 0.04 V^2 x 50 uS x 10 ns.
  assert c.adc_pj(8) == pytest.approx(2.0)
  assert c.adc_pj(10) == pytest.approx(8.0)  # 2 x 2^2.
  assert c.adc_pj(4) == pytest.approx(0.125)  # 2 x 2^-4.
  assert c.periphery_op_pj == pytest.approx(0.23)


def test_periphery_ops_by_hand():
  ops = energy.count_periphery_ops(_hand_mapping(), L)
  # Per step x L: gelu 4 x 4 = 16 -> 160; residual 4 -> 40; norm 4 x 8 = 32 -> 320;
  # partial sums 130 -> 1300; output scale 130 + 48 = 178 -> 1780, plus 3 once;
  # pooling scale 4 once.
  assert ops == pytest.approx(
    {
      "gelu": 160,
      "residual": 40,
      "norm": 320,
      "partial_sum": 1300,
      "output_scale": 1783,
      "pool_scale": 4,
    }
  )
  digital_only = energy.count_periphery_ops(_hand_mapping(), L, array_ops=False)
  assert sum(digital_only.values()) == pytest.approx(160 + 40 + 320 + 4)


def test_aimc_energy_reproduces_a_hand_computed_example():
  out = energy.aimc_energy(_hand_mapping(), L, adc_bits=6, dac_bits=8)
  # MVMs: enc 10 + ssm 2 x 10 + dec 1 = 31.
  assert out["mvms"] == 31
  # Cell reads: 26000 x 10 + 144 x 20 + 24 = 262904; x 0.02 pJ = 5258.08 pJ.
  assert out["cell_reads"] == 262904
  assert out["cell_read_j"] == pytest.approx(5258.08e-12)
  # DAC: 500 x 10 + 28 x 20 + 4 = 5564; x 0.1 pJ = 556.4 pJ.
  assert out["dac_conversions"] == 5564
  assert out["dac_j"] == pytest.approx(556.4e-12)
  # ADC at 6 bits: 2 pJ x 2^-2 = 0.5 pJ; 260 x 10 + 24 x 20 + 3 = 3083 -> 1541.5 pJ.
  assert out["adc_conversions"] == 3083
  assert out["adc_j"] == pytest.approx(1541.5e-12)
  # Periphery: 160 + 40 + 320 + 1300 + 1783 + 4 = 3607 ops x 0.23 pJ = 829.61 pJ.
  assert out["periphery_ops"] == 3607
  assert out["periphery_j"] == pytest.approx(829.61e-12)
  assert out["total_j"] == pytest.approx((5258.08 + 556.4 + 1541.5 + 829.61) * 1e-12)
  # Latency: a stage is 1 (DAC) + 10 (MVM) + 20 x 6/8 (ADC) = 26 ns; 31 stages = 806 ns;
  # periphery 3607 / 64 ns = 56.359375 ns.
  assert out["latency_s"] == pytest.approx((806 + 56.359375) * 1e-9)
  # The periphery can be overridden, as a total or by kind.
  assert energy.aimc_energy(_hand_mapping(), L, 6, 8, periphery_ops=0.0)["periphery_j"] == 0.0
  with_dict = energy.aimc_energy(_hand_mapping(), L, 6, 8, periphery_ops={"x": 100.0, "y": 1.0})
  assert with_dict["periphery_j"] == pytest.approx(101 * 0.23e-12)


def test_adc_sharing_multiplies_the_conversion_time_only():
  shared = energy.EnergyConstants(columns_per_adc=4)
  base = energy.aimc_energy(_hand_mapping(), L, 8, 8)
  out = energy.aimc_energy(_hand_mapping(), L, 8, 8, shared)
  assert out["total_j"] == pytest.approx(base["total_j"])
  # At 8 bits an ADC stage is 20 ns; 4 columns per ADC add 3 x 20 ns to each of 31 stages.
  assert out["latency_s"] - base["latency_s"] == pytest.approx(31 * 60e-9)


def test_digital_work_from_records_by_hand_and_against_cost():
  records = _hand_records()
  work = energy.DigitalWork.from_records(records)
  # Per step: encoder 1 x 4 = 4; a_bar 24 reals x 2 = 48; b_bar 24; c 24; d 4; GLU 32
  # -> 136 MACs on 4 + 24 + 24 + 24 + 4 + 32 = 112 weights. Decoder 12 once.
  assert work == energy.DigitalWork(136, 12, 112, 12)
  report = cost.deployed_report(
    records, params=0, seq_len=L, reference=dict(cost.REFERENCE, d_input=1, n_classes=3)
  )
  assert report.macs_per_sequence == pytest.approx(136 * L + 12)


def test_digital_energy_reproduces_hand_computed_examples():
  records = _hand_records()
  fp32 = energy.digital_energy(records, L, "fp32", "sram", periphery_ops=524.0)
  # MACs 136 x 10 + 12 = 1372 x 4.6 pJ = 6311.2 pJ.
  assert fp32["macs"] == 1372
  assert fp32["mac_j"] == pytest.approx(6311.2e-12)
  # Weights fetched every step: 112 x 10 + 12 = 1132 x 32/64 = 566 reads x 20 pJ = 11320 pJ.
  assert fp32["weight_reads_64b"] == pytest.approx(566)
  assert fp32["weight_fetch_j"] == pytest.approx(11320e-12)
  # Periphery 524 ops at an FP32 MAC: 2410.4 pJ.
  assert fp32["periphery_j"] == pytest.approx(2410.4e-12)
  assert fp32["total_j"] == pytest.approx((6311.2 + 11320 + 2410.4) * 1e-12)
  # Latency: (1372 + 524) / 16 per ns = 118.5 ns.
  assert fp32["latency_s"] == pytest.approx(118.5e-9)

  int8 = energy.digital_energy(records, L, "int8", "dram", fetch="per_sequence")
  # MACs 1372 x 0.23 = 315.56 pJ; weights once: (112 + 12) x 8/64 = 15.5 reads x 2000 pJ.
  assert int8["mac_j"] == pytest.approx(315.56e-12)
  assert int8["weight_reads_64b"] == pytest.approx(15.5)
  assert int8["weight_fetch_j"] == pytest.approx(31000e-12)
  assert int8["total_j"] == pytest.approx((315.56 + 31000) * 1e-12)
  assert int8["latency_s"] == pytest.approx(1372 / 64 * 1e-9)
  # A DigitalWork gives the same numbers as the records.
  same = energy.digital_energy(energy.DigitalWork(136, 12, 112, 12), L, "fp32", "sram")
  assert same["total_j"] == pytest.approx((6311.2 + 11320) * 1e-12)


def test_format_energy_table_lists_every_component_and_the_ratio():
  aimc = energy.aimc_energy(_hand_mapping(), L, 6, 8)
  fp32 = energy.digital_energy(_hand_records(), L, "fp32", periphery_ops=524.0)
  int8 = energy.digital_energy(_hand_records(), L, "int8", periphery_ops=524.0)
  text = energy.format_energy_table(aimc, fp32, int8)
  for name in ("cell reads", "DAC", "ADC", "MACs", "weight fetch", "digital periphery"):
    assert name in text
  assert "8.186 nJ" in text  # AIMC total, 8185.59 pJ.
  assert "20.04 nJ" in text  # FP32 total, 20041.6 pJ.
  # FP32 / AIMC = 20041.6 / 8185.59 = 2.448.
  assert f"{20041.6 / 8185.59:.3g}x" == "2.45x" and "2.45x" in text


@pytest.mark.parametrize(
  "call",
  [
    lambda m: energy.aimc_energy(m, 0),
    lambda m: energy.aimc_energy(m, -3),
    lambda m: energy.aimc_energy(m, 2.5),
    lambda m: energy.aimc_energy(m, L, adc_bits=0),
    lambda m: energy.aimc_energy(m, L, dac_bits=-1),
    lambda m: energy.digital_energy(energy.DigitalWork(1.0), L, precision="fp16"),
    lambda m: energy.digital_energy(energy.DigitalWork(1.0), L, weight_source="hbm"),
    lambda m: energy.digital_energy(energy.DigitalWork(1.0), L, fetch="never"),
    lambda m: energy.EnergyConstants(adc_8bit_pj=-1.0),
    lambda m: energy.EnergyConstants(columns_per_adc=0),
    lambda m: energy.EnergyConstants(cell_read_voltage_v=float("nan")),
    lambda m: energy.count_periphery_ops(
      crossbar.MappingReport(TILE, (), (crossbar.DigitalStage("x", "softmax", 3),)), L
    ),
  ],
)
def test_bad_input_raises_config_error(call):
  with pytest.raises(errors.ConfigError):
    call(_hand_mapping())


def test_a_packed_readout_costs_its_cycles_and_driven_rows_by_hand():
  """Four 7 x 1 read-out columns on 8 x 4 tiles (tests/test_crossbar.py
  test_pack_lanes_by_hand): diagonal on 4 tiles in 1 cycle, packed on 2 tiles in 3 cycles,
  2 lanes sharing rows. L = 10, 8-bit converters, no periphery."""
  small = crossbar.TileConfig(rows=8, cols=4)
  shape = (28, 4)

  def cost(pack):
    usage = pack([(7, 1)] * 4, small)
    matrix = crossbar.MappedMatrix("ssm", "readout", shape, 4, usage, weight_cells=56)
    mapping = crossbar.MappingReport(small, (matrix,), ())
    return energy.aimc_energy(mapping, L, 8, 8, periphery_ops=0.0)

  diagonal, packed = cost(crossbar.pack_blocks), cost(crossbar.pack_lanes)
  # Diagonal: 10 MVMs of one cycle; every device once: 56 x 10 = 560 cell reads
  # (11.2 pJ); 28 DACs (28 pJ) and 4 ADCs (80 pJ) per MVM.
  assert (diagonal["mvms"], diagonal["mvm_cycles"]) == (10, 10)
  assert diagonal["cell_reads"] == 560
  assert (diagonal["dac_conversions"], diagonal["adc_conversions"]) == (280, 40)
  # Packed: 3 cycles per MVM -> 30; 104 driven devices per MVM -> 1040 cell reads
  # (20.8 pJ); the same 280 DACs; 7 ADCs per MVM (row pieces) -> 70 (140 pJ).
  assert (packed["mvms"], packed["mvm_cycles"]) == (10, 30)
  assert packed["cell_reads"] == 1040
  assert packed["cell_read_j"] == pytest.approx(20.8e-12)
  assert (packed["dac_conversions"], packed["adc_conversions"]) == (280, 70)
  assert packed["adc_j"] == pytest.approx(140e-12)
  assert packed["total_j"] == pytest.approx((20.8 + 28 + 140) * 1e-12)
  # A periphery that floats the unread columns reads only the 56 weight devices per MVM;
  # halfway, 56 + 0.5 x (104 - 56) = 80.
  floated = energy.EnergyConstants(unread_columns_conduct=0.0)
  half = energy.EnergyConstants(unread_columns_conduct=0.5)
  usage = crossbar.pack_lanes([(7, 1)] * 4, small)
  mapping = crossbar.MappingReport(
    small, (crossbar.MappedMatrix("ssm", "readout", shape, 4, usage, weight_cells=56),), ()
  )
  assert energy.aimc_energy(mapping, L, constants=floated)["cell_reads"] == 560
  assert energy.aimc_energy(mapping, L, constants=half)["cell_reads"] == 800
  for bad in (1.5, -0.1):
    with pytest.raises(errors.ConfigError, match="unread_columns_conduct"):
      energy.EnergyConstants(unread_columns_conduct=bad)
  # Latency: a cycle is 1 + 10 + 20 = 31 ns: 10 x 31 = 310 ns against 30 x 31 = 930 ns.
  assert diagonal["latency_s"] == pytest.approx(310e-9)
  assert packed["latency_s"] == pytest.approx(930e-9)
