"""Why an analog a_bar breaks a digits model: how far device noise moves each mode's decay.

  .venv/bin/python bench/recurrence_diagnose.py --workdir=OUT/float [--chips=10]

For a trained digits checkpoint (configs/default.py; pass --config for another), per device
(PCM-like, RRAM-like) and per way of holding a_bar on the arrays, over `--chips` draws:
- training's analog model (`analog.analog_ssm`, what noise-aware training perturbs: a_bar - 1
  mapped per channel, programming noise, drift and one read per forward pass): the share of
  modes pushed to |a_bar| > 1, the largest |a_bar|^L, and the median of
  | |a_bar_noisy| - |a_bar| | / (1 - |a_bar|), the error in units of the mode's own decay;
- the step-mode chip (`chip.measured_transitions` of the programmed recurrence array, each
  mode's column mapped on its own, programming noise and drift; read noise is fresh at every
  step there, so it is left out): the same three numbers for the spectral radius of each
  mode's programmed 2 x 2 block.
Prints one markdown table (README "The recurrence on the crossbar").
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from ssm_aimc import chip, data, deploy, experiment, train
from ssm_aimc.configs import default
from ssm_aimc.hardware import analog, devices


def _stats(radius: np.ndarray, a_abs: np.ndarray, length: int) -> tuple[float, float, float]:
  """(share of modes with radius > 1, max radius^L, median |radius - |a|| / (1 - |a|))."""
  grow = float(np.mean(radius > 1))
  worst = float(np.max(radius) ** length)
  rel = float(np.median(np.abs(radius - a_abs) / np.maximum(1 - a_abs, 1e-12)))
  return grow, worst, rel


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--chips", type=int, default=10)
  parser.add_argument("--devices", default="pcm_like,rram_taox")
  args = parser.parse_args()

  config = default.get_config()
  exp = train.as_experiment(config)
  run = train.load_for_inference(config, args.workdir)
  manifest, tensors = deploy._exported(run, None)
  x_cal, _ = next(data.batches(run.setup.dataset.train, exp.batch_size, seed=exp.seed, epoch=0))
  length = run.setup.dataset.seq_len
  n_layers = int(manifest["arch"]["n_layers"])
  rows = []
  for recurrence in ("residual", "direct"):
    ranges = chip.calibrate(manifest, tensors, jnp.asarray(x_cal), recurrence)
    arrays = chip.ideal_arrays(manifest, tensors, ranges, recurrence)
    for name in args.devices.split(","):
      hw = experiment.override(exp, {"hardware.recurrence": recurrence}).hardware
      spec = hw.spec_on(devices.get_device(name))
      train_r, chip_r, a_all = [], [], []
      for s in range(args.chips):
        key = jax.random.PRNGKey(s)
        programmed = chip.program_arrays(key, arrays, spec)
        for i in range(n_layers):
          path = f"block_{i}/s4d"
          p = {k: tensors[f"{path}/{k}"] for k in ("a_bar", "b_bar", "c", "d")}
          noisy = analog.analog_ssm(
            jax.random.fold_in(key, i), jax.random.fold_in(key, 99), p, spec
          )
          train_r.append(np.abs(np.asarray(noisy["a_bar"])).ravel())
          t = chip.measured_transitions(
            key, programmed[f"{path}/recurrence"], ranges[f"{path}/state"], recurrence, spec
          )
          chip_r.append(np.asarray(chip.spectral_radius_2x2(t)).ravel())
          a_all.append(np.abs(np.asarray(p["a_bar"])).ravel())
      a_abs = np.concatenate(a_all)
      for model, radius in (("training (analog_ssm)", train_r), ("step-mode chip", chip_r)):
        grow, worst, rel = _stats(np.concatenate(radius), a_abs, length)
        rows.append((name, recurrence, model, grow, worst, rel))
  print(f"{args.chips} draws; median trained decay 1 - |a_bar| = {np.median(1 - a_abs):.3g}")
  print(
    "| device | a_bar held as | noise model | modes with abs(a_bar) > 1 | max abs(a_bar)^L "
    "| median error of abs(a_bar) / (1 - abs(a_bar)) |"
  )
  print("|---|---|---|---|---|---|")
  for name, recurrence, model, grow, worst, rel in rows:
    print(f"| {name} | {recurrence} | {model} | {100 * grow:.1f} % | {worst:.3g} | {rel:.3g} |")


if __name__ == "__main__":
  main()
