r"""Where the noise-aware train step's time goes: one noise term added at a time.

  .venv/bin/python bench/profile_noise.py

The default config's jitted train step on one digits batch, for: float, the ideal device
(conductance mapping only), programming noise only (a constant-noise device, 2 % of
g_max), the RRAM preset (programming + read noise at every product), PCM without drift and
full PCM. Variants are interleaved, 5 repeats of 10 steps; medians in ms.
"""

import os
import statistics
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import default  # noqa: E402
from ssm_aimc import data, experiment, runner, steps  # noqa: E402
from ssm_aimc.hardware import analog, devices  # noqa: E402


def main():
  config = default.get_config()
  config.hardware.enabled = True
  exp = runner.single(experiment.from_config(config))
  x, y = next(data.batches(exp.setup.dataset.train, config.batch_size, seed=0, epoch=0))
  key = jax.random.PRNGKey(0)
  step = jax.jit(steps.train_step)
  prog_only = devices.ConstantNoiseDevice("prog_only", 0.0, 25.0, prog_noise_of_gmax=0.02)
  variants = {
    "float": None,
    "ideal device": analog.AnalogSpec.make(devices.IDEAL),
    "programming noise only": analog.AnalogSpec.make(prog_only),
    "rram (prog + read per product)": analog.AnalogSpec.make(devices.RRAM_TAOX),
    "pcm without drift": analog.AnalogSpec.make(devices.PCM_LIKE, drift=False),
    "pcm full": analog.AnalogSpec.make(devices.PCM_LIKE),
  }

  def timed(spec, n=10):
    start = time.perf_counter()
    for _ in range(n):
      _, metrics = step(exp.state, x, y, key, None, spec)
    jax.block_until_ready(metrics["loss"])
    return (time.perf_counter() - start) / n

  for spec in variants.values():
    timed(spec, 2)
  times = {name: [] for name in variants}
  for _ in range(5):
    for name, spec in variants.items():
      times[name].append(timed(spec))
  for name, values in times.items():
    print(f"{name:32s} {1e3 * statistics.median(values):8.2f} ms")


if __name__ == "__main__":
  main()
