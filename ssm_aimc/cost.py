"""Cost accounting: parameters, memory bits, MACs and bit-operations of a model.

Pure functions of plain numbers, parameter trees and the "deployed" records that the
layers write (`models.deployed_tensors`); no flax here.

What is counted (DESIGN.md §1, "Cost accounting"):
  params            trainable scalars (quantizer parameters excluded);
  deployed_params   real scalars stored on hardware: a complex a_bar, b_bar or c counts 2,
                    and log_step, A, B collapse into the discrete a_bar, b_bar;
  memory_bits       sum over stored tensors of (non-zero scalars x their bits), plus 32 bits
                    per quantization step size;
  macs_per_step     real multiply-accumulates per input time step; the decoder, which runs
                    once per sequence, is divided by L. Per channel and complex mode:
                    a_bar x = 4 MACs, b_bar u = 2, Re(c x) = 2; d u = 1 per channel;
                    LayerNorm, GELU and GLU gating are not MACs;
  bitops_per_step   sum over matrix products of MACs x weight bits x activation bits.
Each is reported as a ratio against FP32 of the same architecture and against the S4D
reference size (4 layers, H=128, N=64, FP32) with the same input and output widths.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ssm_aimc import quant

# The S4D reference size of DESIGN.md §1 (S4D's own example): 4 layers, H=128, N=64, FP32.
REFERENCE = {"n_layers": 4, "d_model": 128, "d_state": 64}
MACS_PER_COMPLEX_MODE = 8
# Width of an unquantized (FP32) value: a float tensor, a step size, the FP32 references.
FLOAT_BITS = quant.OFF_BITS


@dataclasses.dataclass(frozen=True)
class CostReport:
  """Cost of one model (see the module docstring for definitions).

  Attributes:
    params: trainable scalars.
    deployed_params: real scalars stored on hardware.
    nonzero_params: stored scalars that are not exactly zero.
    memory_bits: bits to store the non-zero scalars, plus FP32 step sizes.
    fp32_memory_bits: the same architecture with every stored scalar in FP32.
    compression_vs_fp32: fp32_memory_bits / memory_bits.
    compression_vs_reference: FP32 bits of the S4D reference size / memory_bits.
    macs_per_step: MACs per input time step (decoder amortised over the sequence).
    macs_per_sequence: MACs for one sequence of length L.
    bitops_per_step: MACs x weight bits x activation bits, per time step.
    bitops_reduction_vs_fp32: FP32 bit-operations of the same architecture / bitops.
    bitops_reduction_vs_reference: FP32 bit-operations of the reference size / bitops.
    params_reduction_vs_reference: stored scalars of the reference size / deployed_params
      (against FP32 of the same architecture this ratio is 1 by definition).
    macs_reduction_vs_reference: MACs per step of the reference size / macs_per_step.
  """

  params: int
  deployed_params: int
  nonzero_params: int
  memory_bits: float
  fp32_memory_bits: float
  compression_vs_fp32: float
  compression_vs_reference: float
  macs_per_step: float
  macs_per_sequence: float
  bitops_per_step: float
  bitops_reduction_vs_fp32: float
  bitops_reduction_vs_reference: float
  params_reduction_vs_reference: float
  macs_reduction_vs_reference: float

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def count_params(params, exclude=lambda path: False) -> int:
  """Scalar count of a nested-dict parameter tree, skipping '/'-paths where exclude(path)."""
  total = 0

  def visit(tree, prefix):
    nonlocal total
    for key, value in tree.items():
      path = f"{prefix}/{key}" if prefix else key
      if isinstance(value, dict):
        visit(value, path)
      elif not exclude(path):
        total += int(np.size(value))

  visit(params, "")
  return total


def macs(
  *,
  d_input: int,
  d_model: int,
  n_layers: int,
  d_state: int,
  n_classes: int,
  seq_len: int,
  bidirectional: bool = False,
) -> tuple[float, int]:
  """(MACs per step, MACs per sequence) of an S4D classifier, in closed form."""
  n_modes = d_state // 2
  directions = 2 if bidirectional else 1  # The reverse pass runs its own recurrence.
  ssm_per_step = d_model * (directions * n_modes * MACS_PER_COMPLEX_MODE + 1)
  block_per_step = ssm_per_step + d_model * 2 * d_model
  per_step_body = d_input * d_model + n_layers * block_per_step
  per_sequence = per_step_body * seq_len + d_model * n_classes
  return per_sequence / seq_len, per_sequence


def deployed_count(
  *,
  d_input: int,
  d_model: int,
  n_layers: int,
  d_state: int,
  n_classes: int,
  bidirectional: bool = False,
) -> int:
  """Stored real scalars of an S4D classifier, in closed form (cross-checks the records)."""
  n_modes = d_state // 2
  readouts = 2 if bidirectional else 1
  ssm = d_model * n_modes * 2 * (2 + readouts) + d_model  # a_bar, b_bar, c (, c_rev), d
  block = 2 * d_model + ssm + d_model * 2 * d_model + 2 * d_model  # norm, ssm, glu
  return d_input * d_model + d_model + n_layers * block + d_model * n_classes + n_classes


def _real_size(values) -> int:
  values = np.asarray(values)
  return values.size * (2 if np.iscomplexobj(values) else 1)


def _real_nonzero(values) -> int:
  values = np.asarray(values)
  if np.iscomplexobj(values):
    return int(np.count_nonzero(values.real) + np.count_nonzero(values.imag))
  return int(np.count_nonzero(values))


def deployed_report(records: dict, *, params: int, seq_len: int, reference: dict) -> CostReport:
  """Cost of a model from its deployed records (`models.deployed_tensors`).

  Args:
    records: {path: record} with values, bits, macs_per_element, scales and, for matrix
      products, act_bits and per_sequence.
    params: trainable parameter count (reported as is).
    seq_len: L, to amortise per-sequence layers.
    reference: architecture of the FP32 reference (keyword arguments of `macs` and
      `deployed_count`: d_input, d_model, n_layers, d_state, n_classes).
  """
  deployed = nonzero = 0
  memory = fp32_memory = macs_step = bitops = fp32_bitops = 0.0
  for record in records.values():
    size, nz = _real_size(record["values"]), _real_nonzero(record["values"])
    bits = float(record["bits"])
    deployed += size
    nonzero += nz
    memory += nz * bits + FLOAT_BITS * float(record["scales"])
    fp32_memory += FLOAT_BITS * size
    m = size * float(record["macs_per_element"])
    if record.get("per_sequence", False):
      m /= seq_len
    macs_step += m
    act_bits = float(record.get("act_bits", FLOAT_BITS))
    bitops += m * bits * act_bits
    fp32_bitops += m * FLOAT_BITS * FLOAT_BITS
  ref_params = deployed_count(**reference)
  ref_memory = FLOAT_BITS * ref_params
  ref_macs, _ = macs(seq_len=seq_len, **reference)
  ref_bitops = ref_macs * FLOAT_BITS * FLOAT_BITS
  return CostReport(
    params=params,
    deployed_params=deployed,
    nonzero_params=nonzero,
    memory_bits=memory,
    fp32_memory_bits=fp32_memory,
    compression_vs_fp32=fp32_memory / max(memory, 1.0),
    compression_vs_reference=ref_memory / max(memory, 1.0),
    macs_per_step=macs_step,
    macs_per_sequence=macs_step * seq_len,
    bitops_per_step=bitops,
    bitops_reduction_vs_fp32=fp32_bitops / max(bitops, 1.0),
    bitops_reduction_vs_reference=ref_bitops / max(bitops, 1.0),
    params_reduction_vs_reference=ref_params / max(deployed, 1),
    macs_reduction_vs_reference=ref_macs / max(macs_step, 1e-9),
  )


def format_table(rows: dict[str, object]) -> str:
  """Two-column plain-text table of name -> value, for logs and the terminal."""
  width = max(len(k) for k in rows)
  lines = []
  for key, value in rows.items():
    if isinstance(value, float):
      text = f"{value:.4g}" if abs(value) < 1e4 else f"{value:.4e}"
    elif isinstance(value, list | tuple) and len(value) > 4:
      text = f"[{len(value)} entries: see the results file]"
    else:
      text = str(value)
    lines.append(f"  {key:<{width}}  {text}")
  return "\n".join(lines)
