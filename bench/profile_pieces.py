r"""Where a training step's time goes: each piece of one S4D block, jitted alone (BENCHMARKS.md).

  .venv/bin/python bench/profile_pieces.py                      # H=128, N=64, L=784, B=32
  .venv/bin/python bench/profile_pieces.py --H=64 --N=32 --L=64 --B=64

Times forward and gradient (of sum(tanh(out)) w.r.t. every input) of: the SSM kernel
K = 2 Re(sum c b_bar a_bar^l), the batched causal FFT convolution (at the padding length
2L and at three larger lengths), the S4D layer, the GLU dense layer, LayerNorm. Medians of
--repeats calls after one compiling call.
"""

from __future__ import annotations

import os
import statistics
import time

import jax
import jax.numpy as jnp
from absl import app, flags

from ssm_aimc import layers, ssm

_H = flags.DEFINE_integer("H", 128, "Channels.")
_N = flags.DEFINE_integer("N", 64, "Real state size.")
_L = flags.DEFINE_integer("L", 784, "Sequence length.")
_B = flags.DEFINE_integer("B", 32, "Batch.")
_REPEATS = flags.DEFINE_integer("repeats", 7, "Timed calls per piece.")


def _median_ms(fn, *args) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def _fwd_and_grad(f, *args):
  grad = jax.grad(lambda *a: jnp.sum(jnp.tanh(f(*a))), argnums=tuple(range(len(args))))
  return _median_ms(jax.jit(f), *args), _median_ms(jax.jit(grad), *args)


def main(_):
  h, n_state, length, batch = _H.value, _N.value, _L.value, _B.value
  key = jax.random.PRNGKey(0)
  u = jax.random.normal(key, (batch, length, h))
  log_neg_re_a, im_a = ssm.init_a(n_state // 2)
  a = ssm.decode_a(jnp.tile(log_neg_re_a, (h, 1)), jnp.tile(im_a, (h, 1)))
  a_bar, b_bar = ssm.discretize(a, jnp.ones_like(a), 0.01)
  c = jax.random.normal(key, a.shape) + 0j
  kernel = ssm.ssm_kernel(a_bar, b_bar, c, length)

  def fft_conv(n_fft):
    def conv(u, k):
      u_f = jnp.fft.rfft(u, n=n_fft, axis=1)
      k_f = jnp.fft.rfft(k, n=n_fft, axis=0)[None]
      return jnp.fft.irfft(u_f * k_f, n=n_fft, axis=1)[:, :length]

    return conv

  def module(mod):
    params = mod.init(key, u)["params"]
    return (lambda p, u: mod.apply({"params": p}, u)), params

  pieces = {
    "kernel K (L, H)": (lambda a, b, c: ssm.ssm_kernel(a, b, c, length), (a_bar, b_bar, c)),
  }
  for n_fft in (
    2 * length,
    2 * length + 32,
    int(2.3 * length) // 64 * 64,
    1 << (2 * length - 1).bit_length(),
  ):
    pieces[f"FFT conv, {n_fft} points"] = (fft_conv(n_fft), (u, kernel))
  for name, mod in (
    ("S4D layer (fft)", layers.S4D(d_state=n_state, method="fft")),
    ("GLU dense", layers.QDense(2 * h, group="glu")),
    ("LayerNorm", layers.QLayerNorm()),
  ):
    fn, params = module(mod)
    pieces[name] = (fn, (params, u))

  print(
    f"jax {jax.__version__} ({jax.default_backend()}), H={h} N={n_state} L={length} B={batch}, "
    f"load average {os.getloadavg()[0]:.2f}"
  )
  print("| piece | forward ms | gradient ms |\n|---|---:|---:|")
  for name, (fn, args) in pieces.items():
    fwd, grad = _fwd_and_grad(fn, *args)
    print(f"| {name} | {fwd:.1f} | {grad:.1f} |", flush=True)


if __name__ == "__main__":
  app.run(main)
