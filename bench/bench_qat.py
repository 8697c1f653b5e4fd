r"""QAT training-step time against the float step, measured side by side (BENCHMARKS.md).

  .venv/bin/python bench/bench_qat.py                 # default config (digits, H=64, N=32)
  .venv/bin/python bench/bench_qat.py --rounds=50 --config.batch_size=32

Both steps are the real jitted `steps.train_step` of configs/default.py on the same batch:
the float one with spec=None, the quantized one with the W4A8 spec (a_bar 8 bits, per
channel steps, activations quantized). They are timed in alternation (float, QAT, float,
QAT, ...) so that machine load hits both alike; the ratio of medians is the result.
"""

from __future__ import annotations

import os
import statistics
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from ssm_aimc import data, experiment, runner, steps

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "default.py")
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG, "Base config.")
_ROUNDS = flags.DEFINE_integer("rounds", 30, "Timed (float, QAT) pairs after warm-up.")
_WEIGHT_BITS = flags.DEFINE_integer("weight_bits", 4, "Weight bits of the QAT step.")
_MODE = flags.DEFINE_string("mode", "channel", "Scale mode of the QAT step.")


def _timed(step, state, x, y, key, spec):
  start = time.perf_counter()
  state, metrics = step(state, x, y, key, spec)
  jax.block_until_ready(metrics)
  return state, time.perf_counter() - start


def main(_):
  config = _CONFIG.value
  config.quant.enabled = True
  config.quant.weight_bits = _WEIGHT_BITS.value
  config.quant.mode = _MODE.value
  exp = experiment.from_config(config)
  pop = runner.single(exp)
  x, y = next(data.batches(pop.setup.dataset.train, config.batch_size, seed=0, epoch=0))
  key = jax.random.PRNGKey(0)
  # Two independent states, so donation of one never touches the other.
  float_state = pop.state
  qat_state = runner.single(exp).state
  step = jax.jit(steps.train_step, donate_argnums=0)
  for _ in range(3):  # compile + warm-up
    float_state, _ = _timed(step, float_state, x, y, key, None)
    qat_state, _ = _timed(step, qat_state, x, y, key, exp.quant.spec)
  float_times, qat_times = [], []
  for _ in range(_ROUNDS.value):
    float_state, t = _timed(step, float_state, x, y, key, None)
    float_times.append(t)
    qat_state, t = _timed(step, qat_state, x, y, key, exp.quant.spec)
    qat_times.append(t)
  f_med, q_med = statistics.median(float_times), statistics.median(qat_times)
  load = os.getloadavg()
  print(f"jax {jax.__version__} on {jax.default_backend()}; load average {load[0]:.2f}")
  print(
    f"config: task={config.data.task} H={config.model.d_model} N={config.model.d_state} "
    f"layers={config.model.n_layers} batch={config.batch_size} method={config.model.method}"
  )
  print(f"float step  median {f_med * 1e3:.2f} ms (min {min(float_times) * 1e3:.2f})")
  print(
    f"QAT step    median {q_med * 1e3:.2f} ms (min {min(qat_times) * 1e3:.2f}) "
    f"[W{_WEIGHT_BITS.value}A8, mode {_MODE.value}]"
  )
  print(
    f"QAT / float = {q_med / f_med:.3f} (pairwise median "
    f"{np.median(np.array(qat_times) / np.array(float_times)):.3f})"
  )


if __name__ == "__main__":
  app.run(main)
