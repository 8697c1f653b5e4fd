r"""Step-mode analog simulation speed: ours (JAX) against IBM aihwkit, side by side in one run.

  .venv/bin/python bench/bench_aihwkit.py
  .venv/bin/python bench/bench_aihwkit.py --threads=1 --rounds=3
  .venv/bin/python bench/bench_aihwkit.py --aihwkit_python=/path/to/venv/bin/python
  python3 bench/bench_aihwkit.py --device=cuda --aihwkit_python=python3   # on a GPU machine

aihwkit is a benchmark-only dependency: it lives in its own venv (BENCHMARKS.md "Chip simulation"
has the commands) and its half, bench/aihwkit_side.py, runs there as a subprocess; this
script exits non-zero with those commands when that venv is missing.

The workload, the same on both sides: one analog linear layer (in=64, out=128) on PCM-like
devices (aihwkit's PCMLikeNoiseModel statistics; `devices.PCM_LIKE` here), programmed once
(programming noise frozen), drifted to 1 h with global drift compensation, 8-bit DAC on the
inputs over [-1, 1] and 8-bit ADC on the outputs over +-12 x full scale, batch 256, and 64
sequential forwards with the output fed back, x_{k+1} = tanh(y_k[:, :64]) (x_0 pre-drawn
uniform in [-1, 1], the same weights and x_0 on both sides). Each forward draws fresh noise:
here the per-product read noise of `analog.analog_matmul` (Gaussian with std
sqrt(x^2 @ read_std^2)); aihwkit's torch tile has no per-read weight noise (forward.w_noise
is refused there), so its per-forward noise is output noise, set to the RMS of ours.

Our variants (jitted `jax.lax.scan` over the steps, programming done once outside it):
  ours_chip_mvm       the headline: the chip simulator's `chip.array_mvm` as deploy runs it
                      (DAC, programmed array, per-product read noise from the counter-hash
                      Gaussian `hardware.rng`, ADC);
  ours_chip_mvm_threefry  the same with `jax.random.normal` (threefry) read noise;
  ours_chip_output_noise  the same MVM with aihwkit's noise model instead of ours: no
                      per-product read noise, output noise of aihwkit's constant std (the
                      work aihwkit_matched does, so the like-for-like ratio);
  ours_step_mvm       the same step written out, threefry read noise (the cost split below
                      varies one of its pieces at a time);
  ours_analog_matmul  the same through `analog.analog_matmul` itself (it programs inside,
                      with the frozen key; XLA hoists that out of the scan);
  ours_weight_read    one weight-sized read per step shared by the batch (the cheaper
                      read_noise_draw="forward" model), for the cost split;
  ours_no_read_noise  DAC -> matmul -> ADC only, for the cost split;
  jax_float           x @ w, the float reference.
aihwkit's variants are listed in bench/aihwkit_side.py.

Timing: per variant, a warm-up (and the compile), then `--repeats` repeats of
`--seqs_per_repeat` sequences each; the two sides alternate for `--rounds` rounds and the
median (and minimum) over all repeats is reported, with ms per 64-step sequence, sequences
per second, the first step's relative error against the float product, and the ratio
aihwkit / ours. Results and caveats: BENCHMARKS.md "Chip simulation".
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ssm_aimc import chip as chip_lib  # noqa: E402
from ssm_aimc import quant  # noqa: E402
from ssm_aimc.hardware import analog, crossbar, devices  # noqa: E402

_AIHWKIT_PYTHON = flags.DEFINE_string(
  "aihwkit_python", "/work/aihwkit-venv/bin/python", "Python of the separate aihwkit venv."
)
_THREADS = flags.DEFINE_integer(
  "threads", 2, "torch.set_num_threads on the aihwkit side; XLA CPU threads here."
)
_REPEATS = flags.DEFINE_integer("repeats", 7, "Timed repeats per round (median reported).")
_SEQS = flags.DEFINE_integer("seqs_per_repeat", 5, "Sequences timed per repeat.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Rounds alternating ours and aihwkit.")
_STEPS = flags.DEFINE_integer("steps", 64, "Sequential forwards per sequence.")
_BATCH = flags.DEFINE_integer("batch", 256, "Batch size.")
_IN = flags.DEFINE_integer("in_size", 64, "Layer inputs (<= out_size: outputs are fed back).")
_OUT = flags.DEFINE_integer("out_size", 128, "Layer outputs.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the weights, x_0 and the noise.")
_DEVICE = flags.DEFINE_enum(
  "device",
  "cpu",
  ["cpu", "cuda"],
  "Where both sides run: the CPU, or the GPU (torch on cuda, JAX on its default GPU backend).",
)

_HERE = os.path.dirname(os.path.abspath(__file__))

# aihwkit counts inference time from the end of programming, at t0 = 20 s after the write
# (its drift uses (t_inference + t0) / t0); ours counts from the write.
_T_INFERENCE_AIHWKIT = 3600.0
_T0 = 20.0
_BITS = 8
_ADC_BOUND = 12.0
_X_RANGE = 1.0

_SETUP = """\
aihwkit's venv was not found or cannot import aihwkit ({python}).
It is a benchmark-only dependency, kept out of the project venv. Create it with:

  python3 -m venv /work/aihwkit-venv
  /work/aihwkit-venv/bin/pip install torch==2.13.0
  /work/aihwkit-venv/bin/pip install --no-deps aihwkit==1.1.0
  /work/aihwkit-venv/bin/pip install scipy requests tqdm protobuf

then run this script again (or pass --aihwkit_python=PATH for a venv elsewhere)."""


def _check_aihwkit(python: str) -> bool:
  if shutil.which(python) is None:  # a path, or a name on PATH ("python3")
    return False
  probe = subprocess.run([python, "-c", "import aihwkit, torch"], capture_output=True)
  return probe.returncode == 0


def _aihwkit_round(inputs: str, out_noise: float) -> dict:
  cmd = [
    _AIHWKIT_PYTHON.value,
    os.path.join(_HERE, "aihwkit_side.py"),
    f"--inputs={inputs}",
    f"--steps={_STEPS.value}",
    f"--repeats={_REPEATS.value}",
    f"--seqs_per_repeat={_SEQS.value}",
    f"--threads={_THREADS.value}",
    f"--t_inference={_T_INFERENCE_AIHWKIT}",
    f"--bits={_BITS}",
    f"--out_bound={_ADC_BOUND}",
    f"--out_noise={out_noise}",
    f"--seed={_SEED.value}",
    f"--device={_DEVICE.value}",
  ]
  out = subprocess.run(cmd, capture_output=True, text=True)
  if out.returncode != 0:
    raise RuntimeError(f"aihwkit side failed ({out.returncode}):\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def main(_):
  load_start = os.getloadavg()
  if not _check_aihwkit(_AIHWKIT_PYTHON.value):
    print(_SETUP.format(python=_AIHWKIT_PYTHON.value), file=sys.stderr)
    sys.exit(2)
  if _IN.value > _OUT.value:
    raise app.UsageError("--in_size must be <= --out_size (outputs are fed back as inputs).")
  # XLA reads its flags when the CPU backend starts (the first computation), so setting them
  # after `import jax` works; a user's own XLA_FLAGS win.
  os.environ.setdefault(
    "XLA_FLAGS",
    f"--xla_cpu_multi_thread_eigen={'true' if _THREADS.value > 1 else 'false'} "
    f"intra_op_parallelism_threads={_THREADS.value}",
  )
  if _DEVICE.value == "cpu":
    jax.config.update("jax_platforms", "cpu")  # before the first computation
  elif jax.default_backend() != "gpu":
    raise app.UsageError(f"--device=cuda needs JAX's GPU backend; found {jax.default_backend()}.")
  spec = analog.AnalogSpec.make(
    devices.PCM_LIKE,
    t_inference=_T_INFERENCE_AIHWKIT + _T0,
    dac_bits=_BITS,
    adc_bits=_BITS,
    adc_bound=_ADC_BOUND,
    mapping="tensor",  # aihwkit maps g_max to max|w| of the whole tensor
    read_noise_draw="product",
  )
  in_size, steps = _IN.value, _STEPS.value
  rng = np.random.default_rng(_SEED.value)
  bound = 1.0 / np.sqrt(in_size)  # torch's nn.Linear init range
  w_np = rng.uniform(-bound, bound, (in_size, _OUT.value)).astype(np.float32)
  x0_np = rng.uniform(-1.0, 1.0, (_BATCH.value, in_size)).astype(np.float32)
  w, x0 = jnp.asarray(w_np), jnp.asarray(x0_np)
  x_range = jnp.float32(_X_RANGE)
  key_program, key_read = jax.random.split(jax.random.PRNGKey(_SEED.value))

  # Programming once, outside the timed loop: the chip is frozen from here on.
  prog = analog.program(key_program, w, spec, reduce_axes=(0, 1))
  chip = {
    "w_eff": w + prog.delta,
    "read_var": jnp.square(prog.read_std),
    "full_scale": x_range * prog.w_max[0, 0],
  }

  # aihwkit's per-forward output noise: the RMS of our read-noise std at the first step, in
  # its units (full-scale input x max|w|).
  x_q = quant.fake_quant(x0, spec.dac_bits, x_range / quant.q_max(spec.dac_bits))
  read_std = jnp.sqrt(jnp.square(x_q) @ chip["read_var"])
  out_noise = float(jnp.sqrt(jnp.mean(jnp.square(read_std))) / chip["full_scale"])

  # --- The chip simulator's own MVM (ssm_aimc.chip.array_mvm), as deploy runs it: ---
  # inputs through the DAC, the programmed array read with fresh per-product noise from
  # the counter hash (the default) or threefry, the ADC over +-adc_bound x full scale.
  arrays = chip_lib.program_arrays(key_program, {"layer": w * x_range}, spec)
  pieces = chip_lib.row_pieces("layer", w.shape, crossbar.TileConfig(rows=in_size))
  adc_range = spec.adc_bound * arrays["layer"].w_max

  def chip_mvm(_, key, x, read_rng="hash", spec=spec, array=arrays["layer"]):
    x = jnp.clip(x / x_range, -1.0, 1.0)
    x = quant.fake_quant(x, spec.dac_bits, 1.0 / quant.q_max(spec.dac_bits))
    return chip_lib.array_mvm(key, x, array, pieces, adc_range, spec, read_rng)

  # aihwkit's own noise model on our chip: no per-product read noise, output noise of the
  # same constant std as aihwkit's out_noise (the work aihwkit_matched does).
  spec_output_noise = dataclasses.replace(spec, output_noise=jnp.float32(out_noise), output=True)
  array_without_reads = dataclasses.replace(arrays["layer"], read_std=None)

  # --- The per-step MVM written out: DAC -> w + delta -> per-product read noise -> ADC. ---
  # The same pieces as analog.analog_matmul (read_noise_draw="product"), on pre-programmed
  # weights, with threefry normals: the cost split below varies one piece at a time.
  def step_mvm(chip, key, x, read_noise="product"):
    x = quant.fake_quant(x, spec.dac_bits, x_range / quant.q_max(spec.dac_bits))
    w_eff = chip["w_eff"]
    if read_noise == "weights":  # one read of the array per step, shared by the batch
      read = jnp.sqrt(chip["read_var"]) * jax.random.normal(key, w_eff.shape)
      w_eff = w_eff + spec.read_noise_scale * read
    y = x @ w_eff
    if read_noise == "product":  # every device read afresh for every example (exact)
      std = jnp.sqrt(jnp.maximum(jnp.square(x) @ chip["read_var"], 1e-30))
      y = y + spec.read_noise_scale * std * jax.random.normal(key, y.shape, y.dtype)
    adc_step = spec.adc_bound * chip["full_scale"] / quant.q_max(spec.adc_bits)
    return quant.fake_quant(y, spec.adc_bits, adc_step)

  # ---------------------------------------------------------------------------------------

  def library_mvm(_, key, x):
    # analog.analog_matmul as is: it programs inside, with the same frozen key every step
    # (XLA hoists that loop-invariant work out of the scan).
    return analog.analog_matmul(key_program, key, x, w, x_range, spec)

  def float_mvm(_, key, x):
    return x @ w

  def sequence(mvm):
    @jax.jit
    def run(chip, key, x0):
      def body(carry, k):
        y = mvm(chip, k, carry[0])
        return (jnp.tanh(y[:, :in_size]), y), None

      y0 = jnp.zeros((x0.shape[0], _OUT.value), x0.dtype)
      (_, y), _ = jax.lax.scan(body, (x0, y0), jax.random.split(key, steps))
      return y  # the last step's output

    return run

  mvms = {
    "ours_chip_mvm": chip_mvm,
    "ours_chip_mvm_threefry": functools.partial(chip_mvm, read_rng="threefry"),
    "ours_chip_output_noise": functools.partial(
      chip_mvm, spec=spec_output_noise, array=array_without_reads
    ),
    "ours_step_mvm": step_mvm,
    "ours_analog_matmul": library_mvm,
    # Cheaper noise models, for the cost split: one weight-sized read per step (shared by
    # the batch, as read_noise_draw="forward" does), and no read noise at all.
    "ours_weight_read": functools.partial(step_mvm, read_noise="weights"),
    "ours_no_read_noise": functools.partial(step_mvm, read_noise=None),
    "jax_float": float_mvm,
  }
  ours = {name: sequence(mvm) for name, mvm in mvms.items()}

  y_ideal = x0_np @ w_np
  rel_err, times = {}, {}
  for name, fn in ours.items():
    y1 = np.asarray(mvms[name](chip, key_read, x0))
    rel_err[name] = float(np.linalg.norm(y1 - y_ideal) / np.linalg.norm(y_ideal))
    jax.block_until_ready(fn(chip, key_read, x0))  # compile
    times[name] = []

  aihwkit_runs = []
  with tempfile.TemporaryDirectory() as tmp:
    inputs = os.path.join(tmp, "inputs.npz")
    np.savez(inputs, w=w_np, x0=x0_np)
    for r in range(_ROUNDS.value):
      for name, fn in ours.items():
        for i in range(_REPEATS.value):
          key = jax.random.fold_in(key_read, 1000 * r + i)
          start = time.perf_counter()
          for _ in range(_SEQS.value):
            out = fn(chip, key, x0)
          jax.block_until_ready(out)
          times[name].append((time.perf_counter() - start) / _SEQS.value)
      aihwkit_runs.append(_aihwkit_round(inputs, out_noise))

  rows = {name: (t, rel_err[name]) for name, t in times.items()}
  for name in aihwkit_runs[0]["results"]:
    seconds = [s for run in aihwkit_runs for s in run["results"][name]["seconds_per_sequence"]]
    rows[name] = (seconds, aihwkit_runs[0]["results"][name]["step1_rel_err"])
  median = {name: statistics.median(seconds) for name, (seconds, _) in rows.items()}

  ours_versions = {
    "python": platform.python_version(),
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "numpy": np.__version__,
  }
  load = (
    " ".join(f"{a:.2f}" for a in load_start)
    + " -> "
    + " ".join(f"{a:.2f}" for a in os.getloadavg())
  )
  print(
    f"{steps} sequential forwards of a {in_size}x{_OUT.value} PCM analog layer, batch "
    f"{_BATCH.value}, {_BITS}-bit DAC/ADC, t = 1 h; threads {_THREADS.value}; "
    f"{_ROUNDS.value} rounds x {_REPEATS.value} repeats x {_SEQS.value} sequences; "
    f"load average {load} (start -> end, {os.cpu_count()} cores)"
  )
  for side, versions in (("ours", ours_versions), ("aihwkit", aihwkit_runs[0]["versions"])):
    print(f"{side} venv: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
  print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; aihwkit out_noise {out_noise:.4f}")
  print(
    f"device: ours {jax.devices()[0].device_kind}, aihwkit {aihwkit_runs[0]['versions']['device']}"
  )
  print(
    f"{'variant':24s} {'ms/sequence':>11s} {'(min)':>7s} {'sequences/s':>11s} "
    f"{'step-1 rel. err':>15s}"
  )
  for name, (seconds, err) in rows.items():
    print(
      f"{name:24s} {1e3 * median[name]:11.2f} {1e3 * min(seconds):7.2f} "
      f"{1.0 / median[name]:11.1f} {err:15.4f}"
    )
  ours_s = median["ours_chip_mvm"]
  print(
    f"aihwkit / ours (chip_mvm): {median['aihwkit_matched'] / ours_s:.2f}x (matched "
    f"periphery), {median['aihwkit_default_io'] / ours_s:.2f}x (aihwkit's default periphery); "
    f"with threefry read noise "
    f"{median['aihwkit_matched'] / median['ours_chip_mvm_threefry']:.2f}x; same noise model "
    f"as aihwkit {median['aihwkit_matched'] / median['ours_chip_output_noise']:.2f}x; "
    f"torch Linear / jax float: {median['torch_linear'] / median['jax_float']:.2f}x"
  )


if __name__ == "__main__":
  app.run(main)
