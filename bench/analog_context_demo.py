"""A plain Flax MLP on simulated PCM chips through `analog_context.on_analog_hardware`: the
numbers of the README section "Any Flax model on analog hardware".

An MLP (64 -> 128 -> 10, ReLU) written with nothing but `nn.Dense` is trained in float on
scikit-learn's digits (8 x 8 images as 64 features, 1400 train / 397 test), evaluated on
simulated PCM chips (`devices.PCM_LIKE`, noise at `--noise_scale` x the preset (default 3), one day
after programming, global drift compensation), then fine-tuned for a few steps with
noise-aware training (a new chip every step) through the same context and evaluated on
the same chips again. Prints float accuracy, chip accuracy before and after (mean +- std
over `--chips` chips) and the wall time.

    PYTHONPATH=. python bench/analog_context_demo.py [--noise_scale=3 --chips=8 --steps=1000]
    (--hidden=128: the MLP's width)

Keys use JAX's "rbg" PRNG implementation: the same statistics, and on a CPU it compiles
the noise draws several times faster than the default threefry.
"""

from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
import numpy as np
import optax
from sklearn import datasets

from ssm_aimc import analog_context
from ssm_aimc.hardware import analog, devices


class MLP(nn.Module):
  """Any user's model: two nn.Dense layers, nothing from ssm_aimc."""

  hidden: int = 128

  @nn.compact
  def __call__(self, x):
    return nn.Dense(10)(nn.relu(nn.Dense(self.hidden)(x)))


def digits(n_train: int = 1400):
  """scikit-learn's digits as (x_train, y_train, x_test, y_test), pixels scaled to [0, 1]."""
  d = datasets.load_digits()
  perm = np.random.default_rng(0).permutation(len(d.target))
  x, y = (d.data[perm] / 16.0).astype(np.float32), d.target[perm]
  return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def run(noise_scale=3.0, chips=8, float_steps=300, nat_steps=1000, lr=1e-2, hidden=128, seed=0):
  """Trains, evaluates and fine-tunes; returns a dict of the measured numbers."""
  start = time.time()
  x_train, y_train, x_test, y_test = digits()
  model = MLP(hidden)
  opt = optax.adam(lr)
  spec = analog.AnalogSpec.make(devices.PCM_LIKE, t_inference=86400.0).scaled(noise_scale)

  def logits(params, x, spec, key):
    if spec is None:
      return model.apply(params, x)
    k_program, k_read = jax.random.split(key)
    with analog_context.on_analog_hardware(spec):
      return model.apply(params, x, rngs={"program": k_program, "read": k_read})

  def make_step(on_chip: bool):
    @jax.jit
    def step(params, opt_state, spec, key):
      def loss(p):
        out = logits(p, x_train, spec if on_chip else None, key)
        return optax.softmax_cross_entropy_with_integer_labels(out, y_train).mean()

      grads = jax.grad(loss)(params)
      updates, opt_state = opt.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    return step

  @jax.jit
  def chip_accuracy(params, spec, key):
    return (logits(params, x_test, spec, key).argmax(-1) == y_test).mean()

  def on_chips(params):
    keys = [jax.random.key(1000 + i, impl="rbg") for i in range(chips)]
    acc = np.array([float(chip_accuracy(params, spec, k)) for k in keys])
    return float(acc.mean()), float(acc.std())

  key = jax.random.key(seed, impl="rbg")
  params = model.init(jax.random.key(seed), x_train[:1])
  float_step, nat_step = make_step(False), make_step(True)
  opt_state = opt.init(params)
  for _ in range(float_steps):
    params, opt_state = float_step(params, opt_state, spec, key)
  float_acc = float((model.apply(params, x_test).argmax(-1) == y_test).mean())
  before = on_chips(params)
  nat_params, opt_state = params, opt.init(params)
  for i in range(nat_steps):  # A new chip (programming key) every step.
    nat_params, opt_state = nat_step(nat_params, opt_state, spec, jax.random.fold_in(key, i))
  after = on_chips(nat_params)
  return {
    "float": float_acc,
    "chip_before": before,
    "chip_after": after,
    "float_after": float((model.apply(nat_params, x_test).argmax(-1) == y_test).mean()),
    "seconds": time.time() - start,
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--noise_scale", type=float, default=3.0)
  parser.add_argument("--chips", type=int, default=8)
  parser.add_argument("--steps", type=int, default=1000, help="noise-aware training steps")
  parser.add_argument("--hidden", type=int, default=128)
  args = parser.parse_args()
  r = run(args.noise_scale, args.chips, nat_steps=args.steps, hidden=args.hidden)
  pct = lambda v: f"{100 * v:.1f} %"
  print(f"float accuracy:                          {pct(r['float'])}")
  print(
    f"PCM x{args.noise_scale:g}, 1 day, {args.chips} chips, float-trained: "
    f"{pct(r['chip_before'][0])} +- {pct(r['chip_before'][1])}"
  )
  print(
    f"after {args.steps} noise-aware steps:        "
    f"{pct(r['chip_after'][0])} +- {pct(r['chip_after'][1])} (float {pct(r['float_after'])})"
  )
  print(f"wall time: {r['seconds']:.0f} s")


if __name__ == "__main__":
  main()
