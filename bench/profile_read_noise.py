r"""Where the per-product read noise of a simulated step goes (BENCHMARKS.md "Chip
simulation"): a 64-step scan of a 256x64 @ 64x128 MVM with tanh feedback, adding one piece
at a time, and the cost of 2.1 M Gaussians from each generator.

  XLA_FLAGS='--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1' \
      PYTHONPATH=. .venv/bin/python bench/profile_read_noise.py
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from ssm_aimc.hardware import rng

BATCH, N_IN, N_OUT, STEPS = 256, 64, 128, 64


def _median_ms(fn, *args, repeats=15) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))


def scan_variant(kind: str):
  w = jax.random.normal(jax.random.PRNGKey(0), (N_IN, N_OUT)) * 0.1
  var_w = jnp.abs(jax.random.normal(jax.random.PRNGKey(1), (N_IN, N_OUT))) * 0.01

  @jax.jit
  def run(key, x0):
    def body(x, k):
      y = x @ w
      std = 0.01
      if kind in ("variance", "variance + hash", "variance + threefry"):
        std = jnp.sqrt(jnp.maximum(jnp.square(x) @ var_w, 1e-30))
      if kind in ("hash", "variance + hash"):
        y = y + std * rng.hash_normal(k, y.shape)
      elif kind == "variance + threefry":
        y = y + std * jax.random.normal(k, y.shape)
      elif kind == "variance":
        y = y + std
      return jnp.tanh(y[:, :N_IN]), None

    x, _ = jax.lax.scan(body, x0, jax.random.split(key, STEPS))
    return x

  return run


def main():
  x0 = jax.random.uniform(jax.random.PRNGKey(2), (BATCH, N_IN), minval=-1, maxval=1)
  key = jax.random.PRNGKey(3)
  print(f"JAX {jax.__version__}; ms per sequence of {STEPS} steps, batch {BATCH}, {N_IN}x{N_OUT}")
  for kind in ("none", "variance", "hash", "variance + hash", "variance + threefry"):
    print(f"  MVM + {kind:22s} {_median_ms(scan_variant(kind), key, x0):7.2f} ms")
  n = STEPS * BATCH * N_OUT
  draws = {
    "threefry normal": lambda k: jax.random.normal(k, (n,)),
    "hash normal": lambda k: rng.hash_normal(k, (n,)),
    "hash uniform only": lambda k: rng.hash_uniform(k, (n,)),
  }
  print(f"{n / 1e6:.1f} M draws:")
  for name, fn in draws.items():
    print(f"  {name:22s} {_median_ms(jax.jit(fn), key):7.2f} ms")


if __name__ == "__main__":
  main()
