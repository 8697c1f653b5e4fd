"""Cost accounting: parameters, memory bits and multiply-accumulates (MACs) of a model.

Pure functions of plain numbers and parameter trees (no flax). For now every weight is an
FP32 number; the quantization-aware path will pass per-group bit widths to `memory_bits`.

MAC counting convention (one real multiply-accumulate = 1 MAC), per time step and channel:
  one complex S4D mode    x <- a_bar x + b_bar u : 4 + 2 real MACs, read-out Re(c x): 2
  skip term d u           1
  encoder                 d_input x H;  GLU dense: H x 2H;  LayerNorm and GELU are not MACs.
  decoder                 H x n_classes once per sequence (divided by L in the per-step view).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

# The S4D reference size of DESIGN.md §1 (S4D's own example): 4 layers, H=128, N=64, FP32.
REFERENCE = {"n_layers": 4, "d_model": 128, "d_state": 64}
MACS_PER_COMPLEX_MODE = 8


@dataclasses.dataclass(frozen=True)
class CostReport:
  """Cost of one model.

  Attributes:
    params: number of stored scalar parameters.
    nonzero_params: parameters that are not exactly zero.
    memory_bits: bits needed to store the non-zero parameters (32 each for FP32).
    fp32_memory_bits: the same architecture with every parameter in FP32.
    compression_vs_fp32: fp32_memory_bits / memory_bits.
    macs_per_step: MACs per input time step (decoder amortised over the sequence).
    macs_per_sequence: MACs for one whole sequence of length L.
  """

  params: int
  nonzero_params: int
  memory_bits: int
  fp32_memory_bits: int
  compression_vs_fp32: float
  macs_per_step: float
  macs_per_sequence: int

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def count_params(params) -> tuple[int, int]:
  """(total, non-zero) scalar counts of a parameter tree."""
  leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(params)]
  return sum(x.size for x in leaves), sum(int(np.count_nonzero(x)) for x in leaves)


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
  """(MACs per step, MACs per sequence) of an S4D classifier; see the module docstring."""
  n_modes = d_state // 2
  directions = 2 if bidirectional else 1  # The reverse pass runs its own recurrence.
  ssm_per_step = d_model * (directions * n_modes * MACS_PER_COMPLEX_MODE + 1)
  block_per_step = ssm_per_step + d_model * 2 * d_model
  per_step_body = d_input * d_model + n_layers * block_per_step
  per_sequence = per_step_body * seq_len + d_model * n_classes
  return per_sequence / seq_len, per_sequence


def fp32_report(params, *, seq_len: int, **arch) -> CostReport:
  """Cost of an all-FP32 model with parameter tree `params` and architecture `arch`."""
  total, nonzero = count_params(params)
  per_step, per_seq = macs(seq_len=seq_len, **arch)
  return CostReport(
    params=total,
    nonzero_params=nonzero,
    memory_bits=32 * nonzero,
    fp32_memory_bits=32 * total,
    compression_vs_fp32=total / max(nonzero, 1),
    macs_per_step=per_step,
    macs_per_sequence=per_seq,
  )


def format_table(rows: dict[str, object]) -> str:
  """Two-column plain-text table of name -> value, for logs and the terminal."""
  width = max(len(k) for k in rows)
  lines = []
  for key, value in rows.items():
    if isinstance(value, float):
      text = f"{value:.4g}" if abs(value) < 1e4 else f"{value:.4e}"
    else:
      text = str(value)
    lines.append(f"  {key:<{width}}  {text}")
  return "\n".join(lines)
