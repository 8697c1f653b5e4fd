"""Differentiable device non-idealities on conductances (docs/design.md §1, "Analog in-memory
computing"), as pure functions with an explicit PRNG key.

Every random term is a reparameterisation G_noisy = f(G) + sigma(G) * eps with eps drawn
from the key, so gradients flow to the target conductances (and through the mapping to the
weights); a noise scale of 0 gives G exactly, and its gradient is the noiseless one. All
conductances are in microsiemens (uS), times in seconds.

The life of one device, in the order `ssm_aimc.hardware.analog` applies these:
  1. `quantize_levels`      the target is rounded onto the device's conductance levels (STE);
  2. `program_conductances` programming error, sampled once at write time, then frozen;
  3. `stuck_at`             a fraction of devices stuck at g_min or g_max (write failures);
  4. `drift` with `drift_exponents`: G(t) = G_prog (t / t0)^(-nu) for t >= t0;
  5. `drift_compensation`   one global factor per array that restores the programmed sum;
  6. read noise at every read, with std `read_noise_std` (grows with t for PCM).

No flax here; `ssm_aimc.quant` supplies the straight-through estimator.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssm_aimc import quant
from ssm_aimc.hardware import devices as devices_lib


def program_conductances(
  key: jax.Array, g_target: jax.Array, device: devices_lib.Device, scale=1.0
) -> jax.Array:
  """Conductances (uS) after programming `g_target` (uS) once: mean(g) + scale std(g) eps.

  The programming error follows the device's statistics at the target (for PCM the
  polynomial of Joshi et al. 2020). A conductance cannot be negative, so the result is
  clipped at 0 (as aihwkit does). `scale` (traced) multiplies the std: 0 returns the
  device's programmed mean, which for the presets is g_target itself.

  Args:
    key: PRNG key; the same key gives the same devices.
    g_target: target conductances, any shape.
    device: a preset from `devices` (static).
    scale: programming-noise scale, scalar (traced or concrete), >= 0.

  Returns:
    programmed conductances, same shape and dtype as g_target.
  """
  mean = device.programmed_mean_us(g_target)
  if not device.has_prog_noise:
    return mean
  eps = jax.random.normal(key, g_target.shape, g_target.dtype)
  std = device.prog_noise_std_us(g_target)
  return jnp.maximum(mean + scale * std * eps, 0.0)


def drift_exponents(
  key: jax.Array, g_target: jax.Array, device: devices_lib.Device, scale=1.0
) -> jax.Array:
  """Per-device drift exponents nu ~ N(mean(g), std(g)) clipped at 0, times `scale`.

  Sampled once at programming time, like the programming error. Zeros for a device
  without drift.
  """
  if not device.has_drift:
    return jnp.zeros_like(g_target)
  mean, std = device.drift_nu(g_target)
  eps = jax.random.normal(key, g_target.shape, g_target.dtype)
  return scale * jnp.maximum(mean + std * eps, 0.0)


def drift(g_prog: jax.Array, nu: jax.Array, t, device: devices_lib.Device) -> jax.Array:
  """G(t) = G_prog (t / t0)^(-nu) for t >= t0; G_prog before t0 (programming is read at t0).

  Monotone non-increasing in t for nu >= 0. `t` may be traced.
  """
  if not device.has_drift:
    return g_prog
  ratio = jnp.maximum(jnp.asarray(t, g_prog.dtype), device.t0_s) / device.t0_s
  return g_prog * ratio ** (-nu)


def drift_compensation(g_reference: jax.Array, g_drifted: jax.Array) -> jax.Array:
  """The global drift-compensation factor alpha = sum(G_ref) / sum(G(t)) of one array.

  A chip measures this by reading the array with a known input right after programming
  (G_ref) and again at inference time, then scales every output of the array by alpha
  (aihwkit's GlobalDriftCompensation does the same with its calibration input). It makes
  the mean conductance of the array equal to the programmed one. Returns 1 where nothing
  drifted, and 1 for an all-zero array.
  """
  total = jnp.sum(g_drifted)
  return jnp.where(total > 0, jnp.sum(g_reference) / jnp.where(total > 0, total, 1.0), 1.0)


def read_noise_std(
  g_target: jax.Array, g_t: jax.Array, t, device: devices_lib.Device, scale=1.0
) -> jax.Array:
  """Std (uS) of one read at time t of devices programmed at g_target now at g_t."""
  if not device.has_read_noise:
    return jnp.zeros_like(g_t)
  return scale * device.read_noise_std_us(g_target, g_t, jnp.asarray(t, g_t.dtype))


def stuck_at(
  key: jax.Array, g: jax.Array, fraction_min, fraction_max, device: devices_lib.Device
) -> jax.Array:
  """Devices stuck at g_min (probability fraction_min) or g_max (fraction_max).

  The stuck devices pass no gradient (their value does not depend on the target).
  """
  u = jax.random.uniform(key, g.shape, g.dtype)
  g = jnp.where(u < fraction_min, jnp.asarray(device.g_min_us, g.dtype), g)
  return jnp.where(
    (u >= fraction_min) & (u < fraction_min + fraction_max),
    jnp.asarray(device.g_max_us, g.dtype),
    g,
  )


def quantize_levels(g: jax.Array, levels, device: devices_lib.Device) -> jax.Array:
  """Rounds g onto `levels` equally spaced conductances in [g_min, g_max] (STE backward).

  `levels` may be traced (>= 2). Values outside the range are clipped to it.
  """
  span = device.g_max_us - device.g_min_us
  step = span / (jnp.asarray(levels, g.dtype) - 1.0)
  q = device.g_min_us + jnp.clip(jnp.round((g - device.g_min_us) / step) * step, 0.0, span)
  return quant.straight_through(g, q.astype(g.dtype))


def relative_noise(key: jax.Array, x: jax.Array, sigma) -> jax.Array:
  """x + sigma (max - min)(x) eps, eps ~ N(0, 1): Gaussian noise relative to the range of x.

  The QS4D authors' weight noise (applied to the continuous-time A of every layer, a fresh
  draw at every forward pass): the std is `sigma` times the spread max(x) - min(x) over the
  whole array. For complex x the real and imaginary parts are treated separately, each
  with its own range and its own draw. `sigma` may be traced (vmap over noise levels);
  sigma = 0 returns x exactly. The range is held constant under differentiation
  (stop_gradient), so the gradient with respect to x is the identity, as for any additive
  noise.

  Args:
    key: PRNG key of this draw.
    x: real or complex array (e.g. A of one layer, (H, n)).
    sigma: relative noise level, >= 0 (0.01 is 1 % of the range).
  """

  def one(k, part):
    spread = jax.lax.stop_gradient(jnp.max(part) - jnp.min(part))
    eps = jax.random.normal(k, part.shape, part.dtype)
    return part + sigma * spread * eps

  if jnp.iscomplexobj(x):
    k_re, k_im = jax.random.split(key)
    return jax.lax.complex(one(k_re, jnp.real(x)), one(k_im, jnp.imag(x)))
  return one(key, x)
