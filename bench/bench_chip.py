r"""Throughput of the step-mode chip simulator on the default model (BENCHMARKS.md "Chip
simulation").

  .venv/bin/python bench/bench_chip.py --batch=256 --chips=1,5 --repeats=5

A freshly initialised default-size classifier (H=64, 4 blocks, d_state=32, L=64 digits
sequences; the weights do not change the work) is exported and run through
`ssm_aimc.chip` on PCM-like chips with 8-bit DACs/ADCs: programming once per chip,
then 64 steps of every MVM with fresh read noise. Reports the median wall time of one
jitted call (after compilation) and sequences per second, for 1 and several chips vmapped
in one call, and for the digital (exported) model's forward pass on the same batch.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import default  # noqa: E402
from ssm_aimc import chip, experiment, export, runner, train  # noqa: E402
from ssm_aimc.hardware import analog, devices  # noqa: E402

_BATCH = flags.DEFINE_integer("batch", 256, "Sequences per call.")
_CHIPS = flags.DEFINE_list("chips", ["1", "5"], "Chips vmapped in one call.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per setting (median reported).")
_RECURRENCE = flags.DEFINE_enum("recurrence", "digital", list(chip.RECURRENCES), "")
_RNG = flags.DEFINE_enum("read_rng", "hash", ["hash", "threefry"], "Read-noise source.")


def _median_time(fn, *args) -> float:
  jax.block_until_ready(fn(*args))  # compile
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def main(_):
  pop = runner.single(experiment.from_config(default.get_config()))
  directory = tempfile.mkdtemp()
  train.export_params(pop.setup, pop.members[0], pop.state.params, directory)
  manifest, tensors = export.load_export(directory)
  x = jnp.asarray(pop.setup.dataset.train.x[: _BATCH.value])
  recurrence = _RECURRENCE.value
  ranges = chip.calibrate(manifest, tensors, x, recurrence)
  spec = analog.AnalogSpec.make(devices.PCM_LIKE, dac_bits=8, adc_bits=8)
  chip_config = chip.ChipConfig(read_rng=_RNG.value)
  print(f"uptime: {os.popen('uptime').read().strip()}")
  print(
    f"JAX {jax.__version__} on {jax.devices()[0].device_kind}; batch {x.shape[0]}, L={x.shape[1]}"
  )
  digital = jax.jit(lambda x: export.forward(manifest, tensors, x))
  t = _median_time(digital, x)
  print(f"digital exported model (FFT/scan path): {1e3 * t:8.1f} ms  {x.shape[0] / t:9.0f} seq/s")
  for n in map(int, _CHIPS.value):
    keys = jax.random.split(jax.random.PRNGKey(0), 2 * n).reshape(2, n, 2)
    fn = jax.jit(
      jax.vmap(
        lambda kp, kr: chip.run(manifest, tensors, ranges, x, kp, kr, spec, chip_config, recurrence)
      )
    )
    t = _median_time(fn, keys[0], keys[1])
    print(
      f"chip simulation, {n} chip(s) per call ({recurrence}, {_RNG.value}): {1e3 * t:8.1f} ms  "
      f"{n * x.shape[0] / t:9.0f} seq/s"
    )


if __name__ == "__main__":
  app.run(main)
