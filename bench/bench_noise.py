r"""Cost of the analog simulation: noise-aware train step vs float step, and 100 chips.

  .venv/bin/python bench/bench_noise.py                 # default digits model
  .venv/bin/python bench/bench_noise.py --chips=100 --repeats=7

Measures, side by side in one process on the same batch:
  1. the jitted train step of the float model and of noise-aware training (PCM-like preset:
     programming noise, drift + compensation, read noise drawn at every product or once
     per forward pass), interleaved repeat by repeat; reports the median of each and the
     median of the per-repeat ratios against float;
  2. the wall time of evaluating the test split on `--chips` simulated chips (vmapped in
     groups of `--seeds_per_call`), after one warm-up call, next to one digital evaluation.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import time

import jax
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import default  # noqa: E402
from ssm_aimc import data, experiment, noise_eval, runner, steps  # noqa: E402

_REPEATS = flags.DEFINE_integer("repeats", 7, "Timed repeats (median reported).")
_STEPS = flags.DEFINE_integer("steps", 20, "Train steps per timed repeat.")
_CHIPS = flags.DEFINE_integer("chips", 100, "Simulated chips for the evaluation timing.")
_PER_CALL = flags.DEFINE_integer("seeds_per_call", 20, "Chips per vmapped call.")


def _time_steps(step_fn, state, x, y, key, analog, n):
  start = time.perf_counter()
  for _ in range(n):
    state, metrics = step_fn(state, x, y, key, None, analog)
  jax.block_until_ready(metrics["loss"])
  return state, (time.perf_counter() - start) / n


def main(_):
  config = default.get_config()
  config.hardware.enabled = True
  exp = experiment.from_config(config)
  pop = runner.single(exp)
  x, y = next(data.batches(pop.setup.dataset.train, exp.batch_size, seed=0, epoch=0))
  key = jax.random.PRNGKey(0)
  step = jax.jit(steps.train_step)  # no donation: both variants reuse the state
  state = pop.state
  variants = {
    "float": None,
    "noise-aware, read noise per product": exp.hardware.spec,
    "noise-aware, read noise per forward": dataclasses.replace(
      exp.hardware.spec, read_noise_draw="forward"
    ),
  }
  for analog in variants.values():  # compile all
    _time_steps(step, state, x, y, key, analog, 2)
  times = {name: [] for name in variants}
  ratios = {name: [] for name in variants}
  for _ in range(_REPEATS.value):
    for name, analog in variants.items():
      times[name].append(_time_steps(step, state, x, y, key, analog, _STEPS.value)[1])
      ratios[name].append(times[name][-1] / times["float"][-1])
  print(f"platform {jax.default_backend()}, batch {config.batch_size}, model {config.model}")
  for name in variants:
    print(
      f"{name:38s} median {1e3 * statistics.median(times[name]):7.2f} ms"
      f"  / float {statistics.median(ratios[name]):.3f}"
    )

  params = runner.calibrate(pop.setup, exp, state.params)
  test = pop.setup.dataset.test
  run = lambda: noise_eval.chip_accuracies(
    pop.chip_eval_fn,
    params,
    test,
    exp.eval_batch_size,
    exp.hardware.spec,
    _CHIPS.value,
    seeds_per_call=_PER_CALL.value,
  )
  run()  # compile
  digital, chips = [], []
  for _ in range(3):
    start = time.perf_counter()
    pop.evaluate(params, test)
    digital.append(time.perf_counter() - start)
    start = time.perf_counter()
    run()
    chips.append(time.perf_counter() - start)
  print(
    f"test split ({len(test)} sequences): digital {statistics.median(digital):.2f} s, "
    f"{_CHIPS.value} chips {statistics.median(chips):.2f} s "
    f"({_PER_CALL.value} chips per vmapped call; median of 3)"
  )


if __name__ == "__main__":
  app.run(main)
