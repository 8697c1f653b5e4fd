"""Energy and latency per inference: the simulated AIMC chip against a digital baseline
(docs/design.md §2, "Energy"). Every constant lives in `EnergyConstants` with its source.

What is counted for the chip (`aimc_energy`), per inference of one sequence of L steps
(matrices with `per_sequence`, the decoder, run once; everything else L times):
  cell reads   every device holding a structurally non-zero weight on a driven row
               conducts at V^2 G t, with G the mean programmed conductance and V the full
               read voltage (an upper-end figure: real inputs are mostly below full
               scale). In a diagonal layout that is every such device once per MVM; in a
               packed one (`crossbar.pack_lanes`) each read drives its pieces' rows and
               the devices of the other pieces on those rows conduct too (their columns
               are clamped, just not converted): `MappedMatrix.cell_reads_per_mvm`,
               those extra devices weighted by `unread_columns_conduct` (1 by default;
               0 for a periphery that floats the columns it does not read);
  DAC          one conversion per driven row per piece per MVM (an input that drives the
               tiles of several column blocks is converted once per tile, a row piece
               read in its own cycle once per read); energy per
               conversion is flat, as docs/design.md gives it (the width is recorded, not priced);
  ADC          one conversion per LOGICAL output per piece per MVM (a packed read fires
               the ADCs of its own columns only): the G+ and G- currents
               of a differential pair are subtracted in analog before one shared ADC; the
               energy scales as adc_8bit_pj x 2^(bits - 8);
  periphery    digital work counted in int8 operations and charged `periphery_op_pj` each
               (an int8 mult + add): LayerNorm, GELU, GLU gate, bias and residual adds,
               pooling, the digital sums of row-split partial outputs and the per-column
               rescaling of ADC codes (`crossbar.map_model` lists the stages, the
               `*_ops_per_element` constants price them).
Not counted (in neither model): activation buffers, control, clocking, programming.

Latency of the chip is a non-pipelined upper bound: every MVM cycle (all tiles of one
matrix in parallel; a matrix whose tiles read their pieces in several cycles takes its
busiest tile's `cycles`) takes dac + integration + ADC time, cycles run one after another, the
digital periphery runs at `digital_int8_ops_per_ns`. The digital baseline is compute-bound:
MACs / throughput (weight-fetch time is not modelled).

The digital baseline (`digital_energy`) runs the same architecture at FP32 or INT8: MACs x
(mult + add) at that precision, plus weight fetches of bits/64 reads of 64 bits per weight
from SRAM or DRAM. By default (`fetch="per_step"`) weights are fetched every step they are
used (batch 1, no on-chip weight cache, the usual premise of the AIMC comparison); with
`fetch="per_sequence"` each weight is fetched once per inference (weights cached in
registers over the whole sequence: the most favourable case for the baseline).

Pure Python/numpy; no flax.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from ssm_aimc import errors
from ssm_aimc.hardware import crossbar

PRECISIONS = ("fp32", "int8")
WEIGHT_SOURCES = ("sram", "dram")
FETCHES = ("per_step", "per_sequence")
# Stages that exist only because of the arrays (ADC partial outputs and codes); a digital
# baseline has the rest of the periphery.
# The recurrence and state adds of a chip that keeps (part of) the recurrence in its
# periphery are already MACs of the digital baseline.
ARRAY_ONLY_KINDS = ("partial_sum", "output_scale", "recurrence", "state_add")
_WEIGHT_BITS = {"fp32": 32, "int8": 8}


@dataclasses.dataclass(frozen=True)
class EnergyConstants:
  """Energy and latency constants (docs/design.md §2). Everything is overridable.

  Attributes: see the comment on each field (source, or "assumption").
  """

  # Digital arithmetic, Horowitz ISSCC 2014, 45 nm.
  int8_add_pj: float = 0.03  # Horowitz ISSCC 2014: 8-bit integer add.
  int8_mult_pj: float = 0.2  # Horowitz ISSCC 2014: 8-bit integer multiply.
  fp32_add_pj: float = 0.9  # Horowitz ISSCC 2014: 32-bit float add.
  fp32_mult_pj: float = 3.7  # Horowitz ISSCC 2014: 32-bit float multiply.
  sram_read_64b_pj: float = 20.0  # Horowitz ISSCC 2014: 64-bit read from a 32 KB SRAM.
  dram_read_64b_pj: float = 2000.0  # Horowitz ISSCC 2014: 64-bit DRAM read, about 2 nJ.
  # Crossbar and periphery.
  cell_read_voltage_v: float = 0.2  # assumption (docs/design.md §2): read voltage.
  cell_conductance_us: float = 50.0  # assumption (docs/design.md §2): mean programmed conductance.
  cell_read_time_ns: float = 10.0  # assumption (docs/design.md §2): read pulse width.
  adc_8bit_pj: float = 2.0  # assumption (docs/design.md §2): one 8-bit conversion, x 2^(bits-8).
  dac_pj: float = 0.1  # assumption (docs/design.md §2): one input conversion.
  # assumption: share of the devices of unread pieces on a driven row that conduct in a
  # packed read (1: every column of a tile clamped at virtual ground; 0: unread columns
  # floated by column switches). A diagonal layout has no such devices.
  unread_columns_conduct: float = 1.0
  # Digital periphery, int8 operations per element (assumption: small lookup tables with
  # linear interpolation for the nonlinearities).
  norm_ops_per_element: float = 8.0  # assumption: mean, centre, square-add, normalise, affine.
  gelu_ops_per_element: float = 4.0  # assumption: lookup + interpolation.
  glu_gate_ops_per_element: float = 5.0  # assumption: sigmoid (lookup + interp.) + product.
  add_ops_per_element: float = 1.0  # assumption: bias, residual, pooling sum, partial sums.
  scale_ops_per_element: float = 1.0  # assumption: one multiply (ADC rescale, 1/L pooling).
  # Digital recurrence per complex mode: a x (4 mults, 2 adds) + b u (2 mults, 2 adds).
  recurrence_ops_per_element: float = 10.0
  # Latency.
  dac_latency_ns: float = 1.0  # assumption: input conversion.
  mvm_latency_ns: float = 10.0  # assumption: analog integration of one MVM (= read pulse).
  adc_latency_8bit_ns: float = 20.0  # assumption: SAR-type, scales with bits / 8.
  columns_per_adc: int = 1  # assumption: one ADC per logical output (>1: time-multiplexed).
  digital_int8_ops_per_ns: float = 64.0  # assumption: 1 GHz, 64 int8 lanes (periphery).
  digital_int8_macs_per_ns: float = 64.0  # assumption: 1 GHz, 64 int8 MAC lanes.
  digital_fp32_macs_per_ns: float = 16.0  # assumption: 1 GHz, 16 fp32 FMA lanes.

  def __post_init__(self):
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.ConfigError(f"EnergyConstants.{f.name} must be a number, got {value!r}.")
      if not (math.isfinite(value) and value >= 0):
        raise errors.ConfigError(f"EnergyConstants.{f.name} must be finite and >= 0, got {value}.")
    for name in (
      "columns_per_adc",
      "digital_int8_ops_per_ns",
      "digital_int8_macs_per_ns",
      "digital_fp32_macs_per_ns",
    ):
      if getattr(self, name) <= 0:
        raise errors.ConfigError(f"EnergyConstants.{name} must be > 0.")
    if not 0.0 <= self.unread_columns_conduct <= 1.0:
      raise errors.ConfigError("EnergyConstants.unread_columns_conduct must be in [0, 1].")
    if int(self.columns_per_adc) != self.columns_per_adc:
      raise errors.ConfigError("EnergyConstants.columns_per_adc must be an integer.")

  @property
  def cell_read_pj(self) -> float:
    """V^2 G t of one device read: 0.2^2 V^2 x 50e-6 S x 10e-9 s = 0.02 pJ by default."""
    return self.cell_read_voltage_v**2 * self.cell_conductance_us * self.cell_read_time_ns * 1e-3

  def adc_pj(self, bits: int) -> float:
    """Energy of one conversion at `bits`: adc_8bit_pj x 2^(bits - 8)."""
    return self.adc_8bit_pj * 2.0 ** (bits - 8)

  @property
  def periphery_op_pj(self) -> float:
    """One digital periphery operation, charged as an int8 multiply + add."""
    return self.int8_mult_pj + self.int8_add_pj

  def ops_per_element(self, kind: str) -> float:
    """int8 operations per element of a `crossbar.DigitalStage` kind."""
    table = {
      "norm": self.norm_ops_per_element,
      "gelu": self.gelu_ops_per_element,
      "glu_gate": self.glu_gate_ops_per_element,
      "residual": self.add_ops_per_element,
      "bias": self.add_ops_per_element,
      "pool": self.add_ops_per_element,
      "partial_sum": self.add_ops_per_element,
      "pool_scale": self.scale_ops_per_element,
      "output_scale": self.scale_ops_per_element,
      "recurrence": self.recurrence_ops_per_element,
      "state_add": self.add_ops_per_element,
    }
    if kind not in table:
      raise errors.ConfigError(f"Unknown periphery kind {kind!r}; valid: {sorted(table)}.")
    return table[kind]


def _check_seq_len(seq_len) -> int:
  if isinstance(seq_len, bool) or not isinstance(seq_len, int | np.integer) or seq_len <= 0:
    raise errors.ConfigError(f"seq_len must be a positive integer, got {seq_len!r}.")
  return int(seq_len)


def _check_bits(name: str, bits) -> int:
  if isinstance(bits, bool) or int(bits) != bits or not 1 <= bits <= 32:
    raise errors.ConfigError(f"{name} must be an integer in [1, 32], got {bits!r}.")
  return int(bits)


def count_periphery_ops(
  mapping: crossbar.MappingReport,
  seq_len: int,
  constants: EnergyConstants | None = None,
  array_ops: bool = True,
) -> dict[str, float]:
  """int8 operations per inference of the digital periphery, by stage kind.

  Args:
    mapping: `crossbar.map_model`'s report (its `digital` stages).
    seq_len: L.
    constants: the ops-per-element table.
    array_ops: include the stages that only the arrays need (ARRAY_ONLY_KINDS); False
      gives the periphery of a digital implementation of the same model.

  Returns:
    {kind: operations per inference}.
  """
  constants = constants or EnergyConstants()
  seq_len = _check_seq_len(seq_len)
  out: dict[str, float] = {}
  for stage in mapping.digital:
    if not array_ops and stage.kind in ARRAY_ONLY_KINDS:
      continue
    times = 1 if stage.per_sequence else seq_len
    ops = stage.elements * times * constants.ops_per_element(stage.kind)
    out[stage.kind] = out.get(stage.kind, 0.0) + ops
  return out


def aimc_energy(
  mapping: crossbar.MappingReport,
  seq_len: int,
  adc_bits: int = 8,
  dac_bits: int = 8,
  constants: EnergyConstants | None = None,
  periphery_ops: Mapping[str, float] | float | None = None,
) -> dict[str, float]:
  """Energy (J) and latency (s) of one inference on the mapped chip.

  Args:
    mapping: `crossbar.map_model`'s report.
    seq_len: L, time steps per sequence.
    adc_bits, dac_bits: converter widths.
    constants: `EnergyConstants`.
    periphery_ops: int8 operations per inference of the digital periphery ({kind: ops} or
      a total); None counts them from the mapping (`count_periphery_ops(mapping, seq_len)`).

  Returns:
    {"cell_read_j", "dac_j", "adc_j", "periphery_j", "total_j", "latency_s", and the counts
    per inference "mvms", "mvm_cycles" (MVMs times the cycles each takes), "cell_reads",
    "dac_conversions", "adc_conversions", "periphery_ops", "adc_bits", "dac_bits"}.
  """
  constants = constants or EnergyConstants()
  seq_len = _check_seq_len(seq_len)
  adc_bits, dac_bits = _check_bits("adc_bits", adc_bits), _check_bits("dac_bits", dac_bits)
  if periphery_ops is None:
    periphery_ops = count_periphery_ops(mapping, seq_len, constants)
  ops = float(sum(periphery_ops.values()) if isinstance(periphery_ops, Mapping) else periphery_ops)
  mvms = cycles = cells = dacs = adcs = 0.0
  for a in mapping.arrays:
    n = a.mvms_per_step * (1 if a.per_sequence else seq_len)
    mvms += n
    cycles += n * a.cycles
    unread = a.cell_reads_per_mvm - a.weight_cells  # Devices of other pieces on driven rows.
    cells += n * (a.weight_cells + constants.unread_columns_conduct * unread)
    dacs += n * a.usage.dac_per_mvm
    adcs += n * a.usage.adc_per_mvm
  energy_pj = {
    "cell_read_j": cells * constants.cell_read_pj,
    "dac_j": dacs * constants.dac_pj,
    "adc_j": adcs * constants.adc_pj(adc_bits),
    "periphery_j": ops * constants.periphery_op_pj,
  }
  out = {k: v * 1e-12 for k, v in energy_pj.items()}
  out["total_j"] = sum(energy_pj.values()) * 1e-12
  stage_ns = (
    constants.dac_latency_ns
    + constants.mvm_latency_ns
    + constants.adc_latency_8bit_ns * adc_bits / 8 * constants.columns_per_adc
  )
  out["latency_s"] = (cycles * stage_ns + ops / constants.digital_int8_ops_per_ns) * 1e-9
  out.update(
    mvms=mvms,
    mvm_cycles=cycles,
    cell_reads=cells,
    dac_conversions=dacs,
    adc_conversions=adcs,
    periphery_ops=ops,
    adc_bits=float(adc_bits),
    dac_bits=float(dac_bits),
  )
  return out


@dataclasses.dataclass(frozen=True)
class DigitalWork:
  """What a digital implementation computes per inference.

  Attributes:
    macs_per_step: real MACs per time step.
    macs_per_sequence: real MACs of layers that run once per sequence (the decoder).
    weights_per_step: real weights used every step (matrix and SSM coefficients).
    weights_per_sequence: real weights used once per sequence.
  """

  macs_per_step: float
  macs_per_sequence: float = 0.0
  weights_per_step: float = 0.0
  weights_per_sequence: float = 0.0

  @classmethod
  def from_records(cls, records: dict) -> DigitalWork:
    """From deployed records (`models.deployed_tensors`), with the MAC convention of
    `ssm_aimc.cost`: MACs = real scalars x macs_per_element; records without MACs (norms,
    biases) are periphery, not weights to fetch."""
    work = dict(macs_per_step=0.0, macs_per_sequence=0.0, weights_per_step=0.0)
    work["weights_per_sequence"] = 0.0
    for record in records.values():
      macs_per_element = float(record["macs_per_element"])
      if macs_per_element <= 0:
        continue
      values = np.asarray(record["values"])
      size = values.size * (2 if np.iscomplexobj(values) else 1)
      when = "sequence" if record.get("per_sequence", False) else "step"
      work[f"macs_per_{when}"] += size * macs_per_element
      work[f"weights_per_{when}"] += size
    return cls(**work)


def digital_energy(
  work: DigitalWork | dict,
  seq_len: int,
  precision: str = "fp32",
  weight_source: str = "sram",
  constants: EnergyConstants | None = None,
  fetch: str = "per_step",
  periphery_ops: Mapping[str, float] | float = 0.0,
) -> dict[str, float]:
  """Energy (J) and latency (s) of one inference on a digital processor.

  Args:
    work: a `DigitalWork`, or deployed records (converted by `DigitalWork.from_records`).
    seq_len: L.
    precision: "fp32" or "int8" (MACs and weight width: 32 or 8 bits).
    weight_source: "sram" or "dram".
    constants: `EnergyConstants`.
    fetch: "per_step" (weights fetched every step they are used) or "per_sequence" (once
      per inference).
    periphery_ops: operations per inference of the digital periphery ({kind: ops} or a
      total; e.g. `count_periphery_ops(mapping, L, array_ops=False)`), each charged as a MAC at
      `precision`; 0 leaves it out.

  Returns:
    {"mac_j", "weight_fetch_j", "periphery_j", "total_j", "latency_s", and the counts per
    inference "macs", "weight_reads_64b", "periphery_ops"}.
  """
  constants = constants or EnergyConstants()
  seq_len = _check_seq_len(seq_len)
  if precision not in PRECISIONS:
    raise errors.ConfigError(f"Unknown precision {precision!r}; valid: {PRECISIONS}.")
  if weight_source not in WEIGHT_SOURCES:
    raise errors.ConfigError(f"Unknown weight_source {weight_source!r}; valid: {WEIGHT_SOURCES}.")
  if fetch not in FETCHES:
    raise errors.ConfigError(f"Unknown fetch {fetch!r}; valid: {FETCHES}.")
  if not isinstance(work, DigitalWork):
    work = DigitalWork.from_records(work)
  ops = float(sum(periphery_ops.values()) if isinstance(periphery_ops, Mapping) else periphery_ops)
  if precision == "fp32":
    mac_pj, macs_per_ns = (
      constants.fp32_mult_pj + constants.fp32_add_pj,
      constants.digital_fp32_macs_per_ns,
    )
  else:
    mac_pj, macs_per_ns = (
      constants.int8_mult_pj + constants.int8_add_pj,
      constants.digital_int8_macs_per_ns,
    )
  macs = work.macs_per_step * seq_len + work.macs_per_sequence
  fetch_steps = seq_len if fetch == "per_step" else 1
  weights = work.weights_per_step * fetch_steps + work.weights_per_sequence
  reads = weights * _WEIGHT_BITS[precision] / 64
  read_pj = constants.sram_read_64b_pj if weight_source == "sram" else constants.dram_read_64b_pj
  energy_pj = {
    "mac_j": macs * mac_pj,
    "weight_fetch_j": reads * read_pj,
    "periphery_j": ops * mac_pj,
  }
  out = {k: v * 1e-12 for k, v in energy_pj.items()}
  out["total_j"] = sum(energy_pj.values()) * 1e-12
  out["latency_s"] = (macs + ops) / macs_per_ns * 1e-9
  out.update(macs=macs, weight_reads_64b=reads, periphery_ops=ops)
  return out


def _si(value: float | None, unit: str) -> str:
  """1.23e-9, "J" -> "1.23 nJ"."""
  if value is None:
    return "-"
  if value == 0:
    return f"0 {unit}"
  for factor, prefix in ((1e-15, "f"), (1e-12, "p"), (1e-9, "n"), (1e-6, "u"), (1e-3, "m")):
    if abs(value) < factor * 1e3:
      return f"{value / factor:.4g} {prefix}{unit}"
  return f"{value:.4g} {unit}"


def format_energy_table(aimc: dict, digital_fp32: dict, digital_int8: dict) -> str:
  """Plain-text table of every energy component per inference, the latency, and the ratio
  of each digital baseline to the chip (like `ssm_aimc.cost.format_table`)."""
  columns = (("AIMC chip", aimc), ("digital FP32", digital_fp32), ("digital INT8", digital_int8))
  components = (
    ("cell reads", "cell_read_j", "J"),
    ("DAC", "dac_j", "J"),
    ("ADC", "adc_j", "J"),
    ("MACs", "mac_j", "J"),
    ("weight fetch", "weight_fetch_j", "J"),
    ("digital periphery", "periphery_j", "J"),
    ("total energy", "total_j", "J"),
    ("latency", "latency_s", "s"),
  )
  width = max(len(name) for name, _, _ in components) + 2
  lines = ["  " + " " * width + "".join(f"{title:>16}" for title, _ in columns)]
  for name, key, unit in components:
    cells = "".join(f"{_si(col.get(key), unit):>16}" for _, col in columns)
    lines.append(f"  {name:<{width}}{cells}")
  for name, key in (("energy vs AIMC", "total_j"), ("latency vs AIMC", "latency_s")):
    ratios = [col[key] / aimc[key] if aimc.get(key) else float("nan") for _, col in columns]
    lines.append(f"  {name:<{width}}" + "".join(f"{f'{r:.3g}x':>16}" for r in ratios))
  return "\n".join(lines)
