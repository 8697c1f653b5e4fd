r"""Backward pass of (B, L, H) @ (H, 2H) as a 3-D product vs on the flattened (B L, H) matrix.

  .venv/bin/python bench/bench_dense_layout.py

Why `layers.matmul` flattens: XLA:CPU's gradient of the 3-D form contracts over two batch
axes for the kernel gradient and runs slower. The two variants are timed in alternation
(medians of 20 after warm-up), at the GLU dense size of configs/default.py.
"""

import statistics
import time

import jax
import jax.numpy as jnp

B, L, H = 64, 64, 64


def main():
  key = jax.random.PRNGKey(0)
  u = jax.random.normal(key, (B, L, H))
  w = jax.random.normal(key, (H, 2 * H))
  variants = {
    "3-D x @ w": lambda w, u: u @ w,
    "flattened (B L, H) @ w": lambda w, u: (u.reshape(-1, H) @ w).reshape(B, L, 2 * H),
  }
  fns = {
    name: jax.jit(jax.grad(lambda w, u, f=f: jnp.sum(jnp.tanh(f(w, u))), argnums=(0, 1)))
    for name, f in variants.items()
  }
  times = {name: [] for name in fns}
  for r in range(23):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn(w, u))
      if r >= 3:
        times[name].append(time.perf_counter() - start)
  print(f"jax {jax.__version__}, load average {__import__('os').getloadavg()[0]:.2f}")
  base = statistics.median(times["3-D x @ w"])
  for name, ts in times.items():
    med = statistics.median(ts)
    print(f"{name:24s} median {med * 1e3:.2f} ms  ({med / base:.2f} x the 3-D form)")


if __name__ == "__main__":
  main()
