"""Tests of the cost accounting against hand counts, the QS4D paper's metrics included."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssm_aimc import cost, models, quant


def test_hand_counted_example():
  records = {
    # A 2x3 ternary kernel with two zeros, per-tensor step, 8-bit inputs.
    "dense/kernel": {
      "values": np.array([[1.0, 0.0, -1.0], [0.0, 1.0, 1.0]]),
      "bits": 2.0,
      "macs_per_element": 1.0,
      "scales": 1.0,
      "act_bits": 8.0,
      "per_sequence": False,
    },
    # Three complex a_bar modes at 8 bits, 2 steps (decay, angle), 2 MACs per real number.
    "ssm/a_bar": {
      "values": np.array([0.5 + 0.5j, 0.9 + 0j, 0.1j]),
      "bits": 8.0,
      "macs_per_element": 2.0,
      "scales": 2.0,
      "act_bits": 8.0,
    },
    # A float bias: 32 bits, no scale, no MACs.
    "dense/bias": {
      "values": np.array([0.5, 0.0, 2.0]),
      "bits": 32.0,
      "macs_per_element": 0.0,
      "scales": 0.0,
    },
    # A decoder run once per sequence of L=4.
    "decoder/kernel": {
      "values": np.ones((3, 2)),
      "bits": 4.0,
      "macs_per_element": 1.0,
      "scales": 2.0,
      "act_bits": 8.0,
      "per_sequence": True,
    },
  }
  ref = dict(d_input=1, d_model=2, n_layers=1, d_state=2, n_classes=2)
  report = cost.deployed_report(records, params=17, seq_len=4, reference=ref)
  assert report.params == 17
  assert report.deployed_params == 6 + 6 + 3 + 6
  assert report.nonzero_params == 4 + 4 + 2 + 6
  # 4*2 + 32 | 4*8 + 2*32 | 2*32 | 6*4 + 2*32
  assert report.memory_bits == 40 + 96 + 64 + 88
  assert report.fp32_memory_bits == 32 * 21
  assert report.compression_vs_fp32 == pytest.approx(32 * 21 / 288)
  # MACs per step: 6 + 12 + 0 + 6/4.
  assert report.macs_per_step == pytest.approx(19.5)
  assert report.macs_per_sequence == pytest.approx(78.0)
  assert report.bitops_per_step == pytest.approx(6 * 2 * 8 + 12 * 8 * 8 + 1.5 * 4 * 8)
  assert report.bitops_reduction_vs_fp32 == pytest.approx(19.5 * 1024 / report.bitops_per_step)
  # Reference: encoder 1*2+2, block: norm 4, ssm 2*1*2*3 + 2, glu 2*4 + 4, decoder 2*2+2.
  assert cost.deployed_count(**ref) == 4 + (4 + 14 + 12) + 6
  assert report.compression_vs_reference == pytest.approx(32 * 40 / 288)
  assert report.params_reduction_vs_reference == pytest.approx(40 / 21)
  # Reference MACs per step: encoder 2 + block 2*(1*8+1) + 2*4 + decoder 4/4 = 29.
  assert report.macs_reduction_vs_reference == pytest.approx(29 / 19.5)


def test_closed_form_macs_of_the_reference_size():
  per_step, per_seq = cost.macs(seq_len=784, d_input=1, n_classes=10, **cost.REFERENCE)
  # encoder 128; per block 128*(32*8+1) + 128*256; decoder 1280 per sequence.
  body = 128 + 4 * (128 * 257 + 128 * 256)
  assert per_seq == body * 784 + 1280
  assert per_step == pytest.approx(body + 1280 / 784)


def test_count_params_excludes_by_path():
  params = {"a": {"kernel": np.zeros((2, 3)), "input_range": np.zeros(())}, "b": np.ones(4)}
  assert cost.count_params(params) == 11
  assert cost.count_params(params, exclude=lambda p: p.endswith("input_range")) == 10


def _tiny_records(spec):
  """Records of a tiny classifier: d_input 1, H 2, one block, one complex mode, 2 classes."""
  config = models.ModelConfig(d_model=2, n_layers=1, d_state=2, dropout=0.0)
  model = models.get_model("s4d", config, n_classes=2)
  x = jnp.ones((1, 3, 1))
  params = model.init(jax.random.PRNGKey(0), x)["params"]
  return models.deployed_tensors(model, params, spec, x)


def test_qs4d_metrics_of_a_tiny_model_by_hand():
  spec = quant.QuantSpec.qs4d(2, 4, a_bits=3, state_bits=5)
  report = cost.deployed_report(
    _tiny_records(spec), params=0, seq_len=3, reference=dict(cost.REFERENCE, d_input=1, n_classes=2)
  )
  # (real MACs per step, weight bits, activation bits): encoder 1x2 at 2 bits; a_bar x
  # (4 real MACs) at A's 3 bits; b_bar u (2) in float, as b is learned; Re(c x) (2) at 2;
  # d u (2 channels) in float; GLU dense 2x4 at 2; all on 4-bit inputs, L = 3 steps.
  per_step = [(2, 2), (8, 3), (4, 32), (4, 2), (2, 32), (8, 2)]
  decoder = 4 * 2 * 4  # 2x2 at 2 bits, once per sequence.
  assert report.ace == 3 * sum(m * w * 4 for m, w in per_step) + decoder == 2960
  assert report.ace_fp32 == (3 * 28 + 4) * 32 * 32
  assert report.ace_reduction_vs_fp32 == pytest.approx(90112 / 2960)
  assert report.ace == pytest.approx(report.bitops_per_step * 3)
  # Conversions per step (outputs, ADC bits): encoder (2, 4); the new state, Re and Im of
  # 2 modes, (4, 5); the read-out y (2, 4); the GLU dense layer (4, 4); decoder (2, 4) once.
  conversions = [(2, 4), (4, 5), (2, 4), (4, 4)]
  assert report.adc_complexity == 3 * sum(n * b for n, b in conversions) + 2 * 4 == 164
  assert report.adc_complexity_fp32 == (3 * 12 + 2) * 32
  assert report.adc_complexity_reduction_vs_fp32 == pytest.approx(1216 / 164)
  assert report.adc_energy_walden == 3 * sum(n * 2**b for n, b in conversions) + 2 * 16 == 800
  assert report.adc_energy_walden_fp32 == 38 * 2.0**32
  assert report.model_size_kb == report.memory_bits / 8000


def test_model_size_of_a_tiny_float_model_by_hand():
  report = cost.deployed_report(
    _tiny_records(None), params=0, seq_len=3, reference=dict(cost.REFERENCE, d_input=1, n_classes=2)
  )
  # Stored reals: encoder 2 + 2, norm 2 + 2, a_bar, b_bar, c 4 each, d 2, GLU 8 + 4,
  # decoder 4 + 2 = 40. Zeros are not stored: the biases and the norm's offset (2 + 2 + 4
  # + 2) start at 0, and so do Im a_bar and Im b_bar (2 + 2; S4D-Lin's only mode has Im a 0).
  assert report.model_size_kb_fp32 == 40 * 32 / 8 / 1000
  assert report.model_size_kb == (40 - 10 - 4) * 32 / 8 / 1000
  assert report.ace_reduction_vs_fp32 == 1.0 and report.adc_complexity_reduction_vs_fp32 == 1.0
  # Float: every conversion is charged at 32 bits.
  assert report.adc_complexity == (3 * 12 + 2) * 32
