"""The pure, jittable steps of training and evaluation, for one model (vmap them for many).

`train_step` and `eval_step` take the quantization spec and the analog spec as ordinary
traced arguments: one compiled step serves every bit width and noise scale of the same
structure, and `jax.vmap` over stacked specs trains a population (ssm_aimc.population).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from ssm_aimc import layers, models, prune, quant
from ssm_aimc.hardware import analog as analog_lib


class TrainState(train_state.TrainState):
  """Flax TrainState (step, params, opt_state, apply_fn, tx) and `batch_stats`, the model's
  BatchNorm running statistics ({} for a model without BatchNorm)."""

  batch_stats: Any = flax.struct.field(default_factory=dict)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy, (B, C), (B,) -> (B,)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def train_step(
  state: TrainState,
  x: jax.Array,
  y: jax.Array,
  key: jax.Array,
  spec: quant.QuantSpec | None,
  analog: analog_lib.AnalogSpec | None = None,
  masks=None,
):
  """One optimizer step on a batch; dropout key = fold_in(key, step). Returns (state, metrics).

  `masks` (a 0/1 tree shaped like the params, `ssm_aimc.prune.model_masks`) holds pruned
  entries fixed: the optimizer's updates are multiplied by it. With `analog`, every step
  programs a fresh chip (noise-aware training). BatchNorm normalises with the batch's
  statistics and the state's running averages move towards them.
  """
  step_key = jax.random.fold_in(key, state.step)
  rngs = {"dropout": step_key}
  if analog is not None:
    rngs[layers.PROGRAM_RNG] = jax.random.fold_in(step_key, 1)
    rngs[layers.READ_RNG] = jax.random.fold_in(step_key, 2)

  def loss_fn(params):
    logits, updated = state.apply_fn(
      models.variables(params, state.batch_stats),
      x,
      train=True,
      spec=spec,
      analog=analog,
      rngs=rngs,
      mutable=[models.BATCH_STATS],
    )
    return jnp.mean(cross_entropy(logits, y)), (logits, updated.get(models.BATCH_STATS, {}))

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.replace(batch_stats=batch_stats)
  if masks is None:
    state = state.apply_gradients(grads=grads)
  else:
    # Masked updates (not only masked gradients): weight decay and momentum would otherwise
    # move pruned entries away from zero.
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, prune.mask_updates(updates, masks))
    params = prune.fill_pruned_modes(params, masks)
    state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
  metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}
  return state, metrics


def eval_step(
  apply_fn: Callable, spec: quant.QuantSpec | None, params, x, y, mask, batch_stats=None
):
  """Summed loss, correct count and example count of a padded batch: x (B, L, d_input),
  y (B,) labels, mask (B,) of 0/1; BatchNorm on the running statistics `batch_stats`."""
  logits = apply_fn(models.variables(params, batch_stats), x, train=False, spec=spec)
  correct = (jnp.argmax(logits, -1) == y) * mask
  return {
    "loss_sum": jnp.sum(cross_entropy(logits, y) * mask),
    "correct": jnp.sum(correct),
    "count": jnp.sum(mask),
  }
