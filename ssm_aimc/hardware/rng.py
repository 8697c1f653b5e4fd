"""A cheap counter-based Gaussian source for the per-step read noise of the chip simulator.

Step-mode simulation draws one standard normal per array output per step per chip (the
exact per-product read noise), and on a CPU `jax.random.normal` (threefry2x32 + erfinv)
is most of the cost of a step (BENCHMARKS.md "Chip simulation"). `hash_normal` replaces
threefry by an integer hash of (counter, seed): two rounds of the 32-bit "triple32" mixer
found by C. Wellons' hash-prospector (a bijection of 32-bit words with very low bias),
keyed by two words drawn with threefry from the JAX key once per call. The uniform in
(0, 1) keeps the top 24 bits; the Gaussian is sqrt(2) erfinv(2u - 1), the same transform
`jax.random.normal` uses. This is a simulation-quality generator, not a cryptographic one:
tests/test_rng.py checks moments, the Gaussian shape (Kolmogorov-Smirnov), independence of
neighbouring counters, and of draws with nearby keys.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

RNGS = ("threefry", "hash")


def _triple32(x: jax.Array) -> jax.Array:
  """C. Wellons' triple32 mixer on uint32 (bijective)."""
  x = x ^ (x >> 17)
  x = x * jnp.uint32(0xED5AD4BB)
  x = x ^ (x >> 11)
  x = x * jnp.uint32(0xAC4C1B51)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x31848BAB)
  return x ^ (x >> 14)


def hash_uniform(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Uniforms in (0, 1), float32, 24-bit resolution, from a key and a counter."""
  seed = jax.random.bits(key, (2,), jnp.uint32)
  counter = jnp.arange(math.prod(shape), dtype=jnp.uint32).reshape(shape)
  bits = _triple32(_triple32(counter ^ seed[0]) + seed[1])
  return ((bits >> 8).astype(jnp.float32) + 0.5) * jnp.float32(2.0**-24)


def hash_normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
  """Standard normals of `shape` from `hash_uniform` (see the module docstring)."""
  u = hash_uniform(key, tuple(shape))
  return (jnp.float32(math.sqrt(2.0)) * jax.lax.erf_inv(2.0 * u - 1.0)).astype(dtype)


def normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32, rng: str = "threefry"):
  """Standard normals from `jax.random.normal` ("threefry") or `hash_normal` ("hash")."""
  if rng == "hash":
    return hash_normal(key, shape, dtype)
  if rng == "threefry":
    return jax.random.normal(key, shape, dtype)
  raise ValueError(f"Unknown rng {rng!r}; valid: {RNGS}.")


# The primitives that run the generator in a traced program: one draw of bits each, or one
# key derivation (split, fold_in), each compiled into its own copy of the generator's code.
_RNG_PRIMITIVES = frozenset(
  ("random_bits", "random_split", "random_fold_in", "threefry2x32", "rng_bit_generator")
)


def count_calls(fn, *args) -> int:
  """How many random-generator calls (draws and key derivations) tracing fn(*args) makes.

  A diagnostic of compile cost: XLA compiles the generator's code once per call, so an
  analog model that draws its noise in many small calls compiles for much longer than one
  that draws it in a few large ones (BENCHMARKS.md "Compile time of the analog model").
  """

  def count(jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
      total += eqn.primitive.name in _RNG_PRIMITIVES
      for value in eqn.params.values():
        for sub in value if isinstance(value, (tuple, list)) else (value,):
          inner = getattr(sub, "jaxpr", sub)
          if hasattr(inner, "eqns"):
            total += count(inner)
    return total

  return count(jax.make_jaxpr(fn)(*args).jaxpr)
