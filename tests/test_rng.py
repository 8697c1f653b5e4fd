"""The counter-hash Gaussian of the chip simulator: deterministic, standard normal, and
without correlation between neighbouring counters or nearby keys."""

import jax
import numpy as np
import pytest
import scipy.stats

from ssm_aimc.hardware import rng

N = 200_000


def test_same_key_same_numbers_other_key_other_numbers():
  key = jax.random.PRNGKey(0)
  a = rng.hash_normal(key, (3, 5))
  assert a.shape == (3, 5) and a.dtype == np.float32
  np.testing.assert_array_equal(a, rng.hash_normal(key, (3, 5)))
  assert not np.allclose(a, rng.hash_normal(jax.random.fold_in(key, 1), (3, 5)))


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_hash_normal_is_standard_normal(seed):
  z = np.asarray(rng.hash_normal(jax.random.PRNGKey(seed), (N,)), np.float64)
  # Moments within ~5 standard errors.
  assert abs(z.mean()) < 5 / np.sqrt(N)
  assert abs(z.var() - 1) < 5 * np.sqrt(2 / N)
  assert abs(scipy.stats.skew(z)) < 5 * np.sqrt(6 / N)
  assert abs(scipy.stats.kurtosis(z)) < 5 * np.sqrt(24 / N)
  assert scipy.stats.kstest(z, "norm").pvalue > 1e-3
  # Tails: the 24-bit uniform reaches beyond 5 sigma; the fraction beyond 3 sigma is right.
  beyond = np.mean(np.abs(z) > 3)
  assert abs(beyond - 2 * scipy.stats.norm.sf(3)) < 5 * np.sqrt(0.0027 / N)


def test_no_correlation_between_neighbours_or_nearby_keys():
  key = jax.random.PRNGKey(7)
  z = np.asarray(rng.hash_normal(key, (N,)), np.float64)
  limit = 5 / np.sqrt(N)
  for lag in (1, 2, 256):
    assert abs(np.corrcoef(z[:-lag], z[lag:])[0, 1]) < limit
  # The chip folds the step, array and piece into the key: consecutive folds are unrelated.
  for i in range(1, 4):
    other = np.asarray(rng.hash_normal(jax.random.fold_in(key, i), (N,)), np.float64)
    assert abs(np.corrcoef(z, other)[0, 1]) < limit


def test_normal_dispatch():
  key = jax.random.PRNGKey(0)
  np.testing.assert_array_equal(rng.normal(key, (4,), rng="threefry"), jax.random.normal(key, (4,)))
  np.testing.assert_array_equal(rng.normal(key, (4,), rng="hash"), rng.hash_normal(key, (4,)))
  with pytest.raises(ValueError):
    rng.normal(key, (4,), rng="mt19937")
