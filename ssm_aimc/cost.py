"""Cost accounting: parameters, memory bits, MACs and bit-operations of a model.

Pure functions of plain numbers, parameter trees and the "deployed" records that the
layers write (`models.deployed_tensors`); no flax here.

What is counted (docs/design.md §1, "Cost accounting"):
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

The QS4D paper's three hardware metrics (arXiv 2507.06079, Fig. "Metrics"), per inference
of one whole sequence, each with its FP32 counterpart (the same architecture with every
width 32) and the ratio FP32 / value (`*_reduction_vs_fp32`; the paper prints the
reduction 1 - 1/ratio in %):
  ace               computational complexity, the "arithmetic computation effort" of
                    PokeBNN (Zhang et al., CVPR 2022): sum over every MAC of the sequence of
                    weight bits x activation bits. The MACs are those of macs_per_step, run
                    L times (the decoder once): encoder; per block the recurrence a_bar x,
                    the input b_bar u, the read-out Re(c x), d u and the GLU dense layer.
                    Weight bits: the tensor's storage width (32 when float; under the
                    qs4d scheme a_bar, and b_bar when b is fixed, carry A's width, as they
                    are computed from the quantized A and step: `layers.S4D`); activation
                    bits: the width of the layer's input, for the recurrence and read-out
                    too, as in bitops (so ace = bitops_per_step x L). Norms, GELU, GLU
                    gating, biases and pooling are not MACs.
  model_size_kb     memory_bits / 8 / 1000: kB of 1000 bytes, the non-zero stored scalars
                    at their widths plus 32 bits per quantization step; its FP32
                    counterpart stores every scalar in 32 bits and no steps, and their ratio
                    is compression_vs_fp32.
  adc_complexity    sum over analog-to-digital conversions of their bits [a.u.]: one
                    conversion per output of every matrix product and step (encoder H; per
                    block and direction the new state, 2n H at the state group's width, and
                    the read-out y, H; the GLU dense layer 2H; the decoder's classes once),
                    outputs at the activation width. Linear in bits: a successive-
                    approximation ADC makes one comparator decision per bit, so this counts
                    decisions; it is the scaling that fits the paper's printed ratios
                    (sCIFAR FP -> PTQ -68.75 % = 1 - 10/32 at 10 bits, then -50 % at 5 bits;
                    2^bits would give -99.9... %).
  adc_energy_walden the same conversions weighted by 2^bits: ADC energy at a fixed Walden
                    figure of merit, P / (2^ENOB f_s) (R. H. Walden, "Analog-to-digital
                    converter survey and analysis", IEEE JSAC 17(4), 1999; the trend of B.
                    Murmann's "ADC Performance Survey" at moderate resolution). Its FP32
                    counterpart is a 32-bit converter, so the ratio is huge: compare
                    quantized models with each other on this one.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ssm_aimc import quant

# The S4D reference size of docs/design.md §1 (S4D's own example): 4 layers, H=128, N=64, FP32.
REFERENCE = {"n_layers": 4, "d_model": 128, "d_state": 64}
MACS_PER_COMPLEX_MODE = 8
# Width of an unquantized (FP32) value: a float tensor, a step size, the FP32 references.
FLOAT_BITS = quant.OFF_BITS
# Bits in a kB of model size: 8 bits a byte, 1000 bytes a kB (SI).
BITS_PER_KB = 8 * 1000


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
    ace, ace_fp32, ace_reduction_vs_fp32: bit-operations per inference (the QS4D paper's
      computational complexity), of this model and in FP32, and their ratio.
    model_size_kb, model_size_kb_fp32: memory_bits and fp32_memory_bits in kB.
    adc_complexity, adc_complexity_fp32, adc_complexity_reduction_vs_fp32: ADC conversions
      x bits per inference.
    adc_energy_walden, adc_energy_walden_fp32, adc_energy_walden_reduction_vs_fp32: ADC
      conversions x 2^bits per inference.
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
  ace: float
  ace_fp32: float
  ace_reduction_vs_fp32: float
  model_size_kb: float
  model_size_kb_fp32: float
  adc_complexity: float
  adc_complexity_fp32: float
  adc_complexity_reduction_vs_fp32: float
  adc_energy_walden: float
  adc_energy_walden_fp32: float
  adc_energy_walden_reduction_vs_fp32: float

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
      products, act_bits and per_sequence; a product whose outputs go through an ADC
      also has conversions (outputs per step, or per sequence when per_sequence) and
      adc_bits (absent: none).
    params: trainable parameter count (reported as is).
    seq_len: L, to amortise per-sequence layers.
    reference: architecture of the FP32 reference (keyword arguments of `macs` and
      `deployed_count`: d_input, d_model, n_layers, d_state, n_classes).
  """
  deployed = nonzero = 0
  memory = fp32_memory = macs_step = bitops = fp32_bitops = 0.0
  macs_inference = ace = conversions = adc = adc_walden = 0.0
  for record in records.values():
    size, nz = _real_size(record["values"]), _real_nonzero(record["values"])
    bits = float(record["bits"])
    deployed += size
    nonzero += nz
    memory += nz * bits + FLOAT_BITS * float(record["scales"])
    fp32_memory += FLOAT_BITS * size
    act_bits = float(record.get("act_bits", FLOAT_BITS))
    m = size * float(record["macs_per_element"])
    uses = 1 if record.get("per_sequence", False) else seq_len  # Per inference.
    macs_inference += m * uses
    ace += m * uses * bits * act_bits
    n_conv = float(record.get("conversions", 0.0)) * uses
    adc_bits = float(record.get("adc_bits", FLOAT_BITS))
    conversions += n_conv
    adc += n_conv * adc_bits
    adc_walden += n_conv * 2.0**adc_bits
    if record.get("per_sequence", False):
      m /= seq_len
    macs_step += m
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
    ace=ace,
    ace_fp32=macs_inference * FLOAT_BITS**2,
    ace_reduction_vs_fp32=macs_inference * FLOAT_BITS**2 / max(ace, 1.0),
    model_size_kb=memory / BITS_PER_KB,
    model_size_kb_fp32=fp32_memory / BITS_PER_KB,
    adc_complexity=adc,
    adc_complexity_fp32=conversions * FLOAT_BITS,
    adc_complexity_reduction_vs_fp32=conversions * FLOAT_BITS / max(adc, 1.0),
    adc_energy_walden=adc_walden,
    adc_energy_walden_fp32=conversions * 2.0**FLOAT_BITS,
    adc_energy_walden_reduction_vs_fp32=conversions * 2.0**FLOAT_BITS / max(adc_walden, 1.0),
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
