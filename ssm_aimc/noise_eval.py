"""Accuracy of a trained model on the simulated analog substrate, over many noise seeds.

One noise seed is one chip: its programming key is drawn once and reused for every batch of
the split (the programming error is frozen), while every batch gets fresh read noise. The
seeds of a call are evaluated together with `jax.vmap` over the keys, in chunks of
`seeds_per_call` so that memory stays bounded; the analog spec is a traced argument, so a
sweep over noise scales reuses one compiled program.

`at_prog_noise_scales` evaluates a list of programming-noise scales and `plot_noise_sweep`
draws accuracy against the scale (mean and std over seeds).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ssm_aimc import data, figures, layers, models, quant
from ssm_aimc import progress as progress_lib
from ssm_aimc.hardware import analog as analog_lib


def correct_counts(
  apply_fn: Callable,
  spec: quant.QuantSpec | None,
  params,
  x: jax.Array,
  y: jax.Array,
  mask: jax.Array,
  analog: analog_lib.AnalogSpec,
  keys_program: jax.Array,
  keys_read: jax.Array,
  batch_index: jax.Array,
  batch_stats=None,
) -> jax.Array:
  """Correct predictions of one padded batch on S chips: (S,) from keys (S, 2) each.

  The read key of chip s on this batch is fold_in(keys_read[s], batch_index): fresh read
  noise for every batch, the same programming for all of them. BatchNorm runs on the
  running statistics `batch_stats` (digital periphery: no noise).
  """

  def one_chip(key_program, key_read):
    key_read = jax.random.fold_in(key_read, batch_index)
    logits = apply_fn(
      models.variables(params, batch_stats),
      x,
      train=False,
      spec=spec,
      analog=analog,
      rngs={layers.PROGRAM_RNG: key_program, layers.READ_RNG: key_read},
    )
    return jnp.sum((jnp.argmax(logits, -1) == y) * mask)

  return jax.vmap(one_chip)(keys_program, keys_read)


def make_eval_fn(apply_fn: Callable, spec: quant.QuantSpec | None) -> Callable:
  """The jitted `correct_counts` of one model and quantization spec."""
  return jax.jit(functools.partial(correct_counts, apply_fn, spec))


def chip_keys(seed: int, n_seeds: int) -> tuple[jax.Array, jax.Array]:
  """(programming keys, read base keys), each (n_seeds, 2): chip s is the same in every call."""
  base = jax.random.PRNGKey(seed)
  program = jax.vmap(lambda s: jax.random.fold_in(jax.random.fold_in(base, 0), s))
  read = jax.vmap(lambda s: jax.random.fold_in(jax.random.fold_in(base, 1), s))
  seeds = jnp.arange(n_seeds)
  return program(seeds), read(seeds)


def chip_accuracies(
  eval_fn: Callable,
  params,
  split: data.Split,
  batch_size: int,
  analog: analog_lib.AnalogSpec,
  n_seeds: int,
  seed: int = 0,
  seeds_per_call: int = 20,
  progress: str | progress_lib.Bar | None = None,
  fetch: Callable = np.asarray,
) -> np.ndarray:
  """Test accuracy on each of `n_seeds` simulated chips: (..., n_seeds) float64.

  `eval_fn(params, x, y, mask, analog, keys_program, keys_read, batch_index)` returns the
  correct counts (..., S) of S chips (a population's evaluation adds a leading member
  axis); `fetch` brings them to the host. `progress`: a label shows the vmapped calls'
  progress (a bar on a terminal, else log lines; ssm_aimc.progress), or a `progress.Bar`
  of a longer stage that these calls advance (`n_calls` of them) and leave open.
  """
  if n_seeds < 1:
    raise ValueError(f"n_seeds must be >= 1, got {n_seeds}.")
  keys_program, keys_read = chip_keys(seed, n_seeds)
  correct, count = None, 0.0
  own_bar = not isinstance(progress, progress_lib.Bar)
  bar = progress
  if own_bar:
    total = n_calls(len(split), batch_size, n_seeds, seeds_per_call)
    bar = progress_lib.bar(total, progress or "", unit="calls", enabled=progress is not None)
  for index, (x, y, mask) in enumerate(data.padded_batches(split, batch_size)):
    count += float(mask.sum())
    for start in range(0, n_seeds, seeds_per_call):
      chips = slice(start, min(start + seeds_per_call, n_seeds))
      out = fetch(
        eval_fn(params, x, y, mask, analog, keys_program[chips], keys_read[chips], jnp.int32(index))
      )
      if correct is None:
        correct = np.zeros(out.shape[:-1] + (n_seeds,))
      correct[..., chips] += out
      bar.update()
  if own_bar:
    bar.close()
  return correct / max(count, 1.0)


def at_noise_levels(
  apply_fn: Callable,
  spec: quant.QuantSpec | None,
  params,
  split: data.Split,
  batch_size: int,
  analog: analog_lib.AnalogSpec,
  levels,
  n_seeds: int,
  seed: int = 0,
  seeds_per_call: int = 20,
  batch_stats=None,
  progress: str | None = None,
) -> np.ndarray:
  """Accuracy at every relative-noise level of `levels` (`AnalogSpec.a_noise`, the QS4D
  authors' weight noise) on `n_seeds` noise seeds each: (len(levels), n_seeds).

  The levels are one vmapped axis of one compiled program (with the seeds' axis inside
  it); seed s is the same stream at every level, so the curves differ by the level alone.
  Other terms of `analog` stay as they are (on the ideal device there are none).
  """
  levels = jnp.asarray(levels, jnp.float32)
  if levels.ndim != 1 or not bool(jnp.all(levels >= 0)):
    raise ValueError(f"levels must be a 1-d sequence of numbers >= 0, got {levels}.")
  one = functools.partial(correct_counts, apply_fn, spec, batch_stats=batch_stats)

  @jax.jit
  def eval_fn(params, x, y, mask, analog, keys_program, keys_read, index):
    def at(level):
      return one(params, x, y, mask, analog.with_a_noise(level), keys_program, keys_read, index)

    return jax.vmap(at)(analog.a_noise)

  return chip_accuracies(
    eval_fn,
    params,
    split,
    batch_size,
    analog.with_a_noise(levels),
    n_seeds,
    seed,
    seeds_per_call,
    progress=progress,
  )


def n_calls(n_examples: int, batch_size: int, n_seeds: int, seeds_per_call: int) -> int:
  """The number of vmapped calls (progress units) of one `chip_accuracies`."""
  n_batches = -(-n_examples // min(batch_size, max(n_examples, 1)))
  return n_batches * -(-n_seeds // seeds_per_call)


def summary(accuracies: np.ndarray) -> dict:
  """The results keys of one model's chip accuracies (n_seeds,): mean, std (ddof 0)."""
  return {
    "analog_accuracy_mean": float(np.mean(accuracies)),
    "analog_accuracy_std": float(np.std(accuracies)),
    "noise_seeds": int(len(accuracies)),
    "analog_accuracies": [float(a) for a in accuracies],
  }


def at_prog_noise_scales(
  evaluate_at: Callable, analog: analog_lib.AnalogSpec, scales
) -> list[dict]:
  """One row per programming-noise scale: `evaluate_at(spec)` (a results dict) with the
  spec's programming noise at that scale (other terms as in `analog`)."""
  rows = []
  for scale in scales:
    spec = dataclasses.replace(analog, prog_noise_scale=jnp.asarray(scale, jnp.float32))
    rows.append({"prog_noise_scale": float(scale), **evaluate_at(spec)})
  return rows


def plot_noise_sweep(curves: dict[str, list[dict]], path: str, title: str = "") -> str:
  """Accuracy (mean +- std over chips) against programming-noise scale, one line per model.

  Args:
    curves: {label: rows of `noise_sweep`}.
    path: PNG to write (written to a temporary name first, then moved into place).
    title: figure title.
  """
  # The object-oriented API: no pyplot state, no backend switch (notebooks keep theirs).
  from matplotlib.figure import Figure  # noqa: PLC0415

  fig = Figure(figsize=(5.5, 3.8))
  ax = fig.subplots()
  for label, rows in curves.items():
    scales = [r["prog_noise_scale"] for r in rows]
    mean = np.array([100 * r["analog_accuracy_mean"] for r in rows])
    std = np.array([100 * r["analog_accuracy_std"] for r in rows])
    ax.errorbar(scales, mean, yerr=std, marker="o", capsize=3, label=label)
  ax.set_xlabel("programming-noise scale (x device preset)")
  ax.set_ylabel("test accuracy on the simulated chip (%)")
  ax.grid(alpha=0.3)
  ax.legend()
  if title:
    ax.set_title(title)
  return figures.save(fig, path)
