r"""Which a_bar parameterisation keeps a float model's accuracy at few bits (BENCHMARKS.md).

  .venv/bin/python bench/a_bar_param.py --workdir=runs/qat_table/digits/seed0/float

Loads the best checkpoint of a float run and quantizes ONLY the recurrent coefficient
a_bar (every other group off, post-training, no retraining), for each parameterisation
("polar": log-radius and angle grids; "cartesian": Re/Im grid pulled back inside the unit
circle), per-tensor or per-channel grids, and a range of bit widths. One compiled
evaluation serves all bit widths of a parameterisation (bits are traced arrays).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
from absl import app, flags

from ssm_aimc import data, experiment, quant, steps, train, workdir

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a trained float run.")
_BITS = flags.DEFINE_list("bits", ["3", "4", "5", "6", "8"], "a_bar bit widths.")
flags.mark_flag_as_required("workdir")


def _accuracy(run, step, spec) -> float:
  """Test accuracy of the checkpoint under `spec` (a traced argument: one compile)."""
  correct = count = 0.0
  for x, y, mask in data.padded_batches(run.setup.dataset.test, run.exp.eval_batch_size):
    out = step(spec, run.params, x, y, mask)
    correct, count = correct + float(out["correct"]), count + float(out["count"])
  return correct / max(count, 1.0)


def main(_):
  config = workdir.read_json(os.path.join(_WORKDIR.value, workdir.CONFIG))
  rows = []
  for param in ("polar", "cartesian"):
    for mode in ("tensor", "channel"):
      exp = experiment.override(
        experiment.from_config(config),
        {"quant.enabled": True, "quant.a_bar_param": param, "quant.mode": mode},
      )
      run = train.load_for_inference(exp, _WORKDIR.value)
      step = jax.jit(functools.partial(steps.eval_step, run.setup.model.apply))
      off = quant.TensorQuant.off()
      base = quant.QuantSpec.off(a_bar_param=param)
      for bits in _BITS.value:
        a_bar = quant.TensorQuant(jnp.float32(int(bits)), quant.ScaleMode(mode))
        spec = dataclasses.replace(base, a_bar=a_bar, activations=off)
        acc = _accuracy(run, step, spec)
        rows.append((param, mode, int(bits), acc))
        print(f"{param:9s} {mode:7s} a_bar {bits} bits: test accuracy {100 * acc:.2f}", flush=True)
  float_acc = _accuracy(run, step, None)
  print(f"\nfloat: {100 * float_acc:.2f}\n")
  header = "| a_bar grid | " + " | ".join(f"{b} bits" for b in _BITS.value) + " |"
  print(header)
  print("|---" * (len(_BITS.value) + 1) + "|")
  for param in ("polar", "cartesian"):
    for mode in ("tensor", "channel"):
      accs = [f"{100 * a:.1f}" for p, m, _, a in rows if p == param and m == mode]
      print(f"| {param}, per {mode} | " + " | ".join(accs) + " |")


if __name__ == "__main__":
  app.run(main)
