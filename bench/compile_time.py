r"""How long XLA takes to compile the analog model against the digital one (BENCHMARKS.md).

  .venv/bin/python bench/compile_time.py                  # the default model (H=64, 4 layers)
  .venv/bin/python bench/compile_time.py --d_model=16 --n_layers=2   # a smaller model
  # The test suite's settings (tests/conftest.py): the tests' tiny model at XLA's CPU
  # optimisation level 0, with XLA's MLIR fusion emitters and with the older ones:
  XLA_FLAGS=--xla_backend_optimization_level=0 .venv/bin/python bench/compile_time.py \
    --d_model=16 --n_layers=1 --d_state=4 --batch_size=32 --emitters

For the default config on one digits batch, compiles (lowering excluded) the forward pass
and the training step of: the digital model, PCM with fresh read noise at every product
(evaluation), PCM with one read per forward pass (noise-aware training), RRAM. Each is
compiled --repeats times in fresh jits (variants interleaved, the persistent compilation
cache off); medians in seconds, and the random-generator calls in the traced program
(`rng.count_calls`). XLA's CPU backend at its default optimisation level unless XLA_FLAGS
says otherwise. With --emitters every variant is compiled both with XLA's CPU fusion
emitters (the default) and without them (`xla_cpu_use_fusion_emitters=false`, the older
elemental emitters), interleaved, and the step times of both compiled train steps are
measured too (median of 5 x 10 calls).
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import jax
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import default  # noqa: E402
from ssm_aimc import data, experiment, layers, models, runner, steps  # noqa: E402
from ssm_aimc.hardware import analog, devices, rng  # noqa: E402

_D_MODEL = flags.DEFINE_integer("d_model", 64, "Channels H.")
_N_LAYERS = flags.DEFINE_integer("n_layers", 4, "S4D blocks.")
_D_STATE = flags.DEFINE_integer("d_state", None, "State size N (default: the config's).")
_BATCH = flags.DEFINE_integer("batch_size", None, "Batch size (default: the config's).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Compiles per variant.")
_EMITTERS = flags.DEFINE_bool(
  "emitters", False, "Also compile every variant without XLA's CPU fusion emitters."
)
EMITTER_OPTIONS = {"fusion emitters": {}, "older emitters": {"xla_cpu_use_fusion_emitters": False}}

VARIANTS = {
  "digital": None,
  "pcm, read per product": analog.AnalogSpec.make(devices.PCM_LIKE),
  "pcm, read per forward": analog.AnalogSpec.make(devices.PCM_LIKE, read_noise_draw="forward"),
  "rram, read per product": analog.AnalogSpec.make(devices.RRAM_TAOX),
}


def main(_):
  jax.config.update("jax_enable_compilation_cache", False)
  config = default.get_config()
  config.model.d_model = _D_MODEL.value
  config.model.n_layers = _N_LAYERS.value
  if _D_STATE.value:
    config.model.d_state = _D_STATE.value
  if _BATCH.value:
    config.batch_size = _BATCH.value
  exp = runner.single(experiment.from_config(config))
  state = exp.state
  x, y = next(data.batches(exp.setup.dataset.train, config.batch_size, seed=0, epoch=0))
  key = jax.random.PRNGKey(0)

  def forward(params, x, spec, key):
    rngs = None
    if spec is not None:
      rngs = {layers.PROGRAM_RNG: key, layers.READ_RNG: jax.random.fold_in(key, 1)}
    variables = models.variables(params, state.batch_stats)
    return state.apply_fn(variables, x, spec=None, analog=spec, rngs=rngs)

  programs = {
    "forward": (forward, lambda spec: (state.params, x, spec, key)),
    "train step": (steps.train_step, lambda spec: (state, x, y, key, None, spec)),
  }
  print(
    f"H={_D_MODEL.value}, {_N_LAYERS.value} layers, x {tuple(x.shape)}; "
    f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; uptime: {os.getloadavg()[0]:.2f}"
  )
  options = EMITTER_OPTIONS if _EMITTERS.value else {"": {}}
  for program, (fn, args) in programs.items():
    times = {(name, o): [] for name in VARIANTS for o in options}
    compiled = {}
    for _ in range(_REPEATS.value):
      for name, spec in VARIANTS.items():
        for o, compiler_options in options.items():
          jax.clear_caches()  # Else a compiled program is reused from memory.
          lowered = jax.jit(fn).lower(*args(spec))
          start = time.perf_counter()
          compiled[name, o] = lowered.compile(compiler_options)
          times[name, o].append(time.perf_counter() - start)
    for name, spec in VARIANTS.items():
      calls = rng.count_calls(fn, *args(spec))
      for o in options:
        median = statistics.median(times[name, o])
        digital = statistics.median(times["digital", o])
        line = f"{program:10s} {name:24s} {o:16s} compile {median:6.2f} s"
        line += f" ({median / digital:4.1f}x digital)  rng calls {calls}"
        if _EMITTERS.value and program == "train step":
          line += f"  step {1e3 * _step_time(compiled[name, o], args(spec)):6.1f} ms"
        print(line, flush=True)


def _step_time(compiled, args) -> float:
  """Median seconds of one call of `compiled` over 5 rounds of 10 calls, after a warm-up."""
  jax.block_until_ready(compiled(*args))
  rounds = []
  for _ in range(5):
    start = time.perf_counter()
    for _ in range(10):
      out = compiled(*args)
    jax.block_until_ready(out)
    rounds.append((time.perf_counter() - start) / 10)
  return statistics.median(rounds)


if __name__ == "__main__":
  app.run(main)
