"""Tests of the pure S4D maths: the four evaluation paths agree, ZOH is exact, grads check."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax import test_util as jtu

from ssm_aimc import ssm

# float32 paths vs each other: relative tolerance on outputs of O(1) magnitude.
RTOL, ATOL = 2e-4, 2e-4


def _random_ssm(key, channels=3, n_modes=4, init="lin", discretization="zoh"):
  k1, k2, k3, k4, k5 = jax.random.split(key, 5)
  log_neg_re_a, im_a = ssm.init_a(n_modes, init)
  a = ssm.decode_a(log_neg_re_a, im_a)[None].repeat(channels, 0)
  # Perturb so that modes differ across channels.
  a = a + 0.1 * jax.random.normal(k1, a.shape)
  b = ssm.complex_from_pair(jax.random.normal(k2, (channels, n_modes, 2)))
  c = ssm.complex_from_pair(jax.random.normal(k3, (channels, n_modes, 2)) * 0.5**0.5)
  d = jax.random.normal(k4, (channels,))
  step = jnp.exp(ssm.init_log_step(k5, (channels, 1), 1e-2, 3e-1))
  a_bar, b_bar = ssm.discretize(a, b, step, discretization)
  return a_bar, b_bar, c, d


def _stream(a_bar, b_bar, c, d, u, state_fn=None):
  state = ssm.init_state(*a_bar.shape)
  ys = []
  for k in range(u.shape[0]):
    state, y = ssm.step(state, u[k], a_bar, b_bar, c, d, state_fn)
    ys.append(y)
  return jnp.stack(ys)


@pytest.mark.parametrize("length", [1, 7, 16, 33])
@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
def test_all_paths_agree(length, discretization):
  a_bar, b_bar, c, d = _random_ssm(jax.random.PRNGKey(length), discretization=discretization)
  u = jax.random.normal(jax.random.PRNGKey(100 + length), (length, a_bar.shape[0]))
  reference = ssm.apply_ssm(a_bar, b_bar, c, d, u, "sequential")
  for method in ("associative", "fft", "toeplitz", "auto"):
    np.testing.assert_allclose(
      ssm.apply_ssm(a_bar, b_bar, c, d, u, method), reference, rtol=RTOL, atol=ATOL
    )
  np.testing.assert_allclose(_stream(a_bar, b_bar, c, d, u), reference, rtol=RTOL, atol=ATOL)


def test_paths_agree_in_float64_tightly():
  """With x64 the paths agree to ~1e-10: the float32 tolerance above is rounding only."""
  with jax.enable_x64(True):
    a_bar, b_bar, c, d = _random_ssm(jax.random.PRNGKey(3))
    a_bar, b_bar, c = (x.astype(jnp.complex128) for x in (a_bar, b_bar, c))
    u = jax.random.normal(jax.random.PRNGKey(4), (50, 3), jnp.float64)
    y_seq = ssm.apply_ssm(a_bar, b_bar, c, d, u, "sequential")
    assert y_seq.dtype == jnp.float64
    for method in ("associative", "fft", "toeplitz"):
      np.testing.assert_allclose(ssm.apply_ssm(a_bar, b_bar, c, d, u, method), y_seq, rtol=1e-9)


def test_linear_recurrence_contract():
  """a_bar (P,) and (L, P) forms; real and complex; matches a numpy loop."""
  rng = np.random.default_rng(0)
  length, p = 9, 5
  bu = rng.normal(size=(length, p)) + 1j * rng.normal(size=(length, p))
  a_tv = 0.9 * np.exp(1j * rng.uniform(-3, 3, size=(length, p)))
  expected = np.zeros((length, p), complex)
  x = np.zeros(p, complex)
  for k in range(length):
    x = a_tv[k] * x + bu[k]
    expected[k] = x
  for method in ("associative", "sequential"):
    out = ssm.linear_recurrence(jnp.asarray(a_tv), jnp.asarray(bu), method)
    assert out.shape == (length, p) and out.dtype == jnp.complex64
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # Time-invariant real case.
    a_ti = np.linspace(0.1, 0.95, p)
    out = ssm.linear_recurrence(jnp.asarray(a_ti), jnp.asarray(bu.real), method)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(
      out[-1], sum(a_ti ** (length - 1 - k) * bu.real[k] for k in range(length)), rtol=1e-5
    )


def test_reverse_recurrence_is_flipped_forward():
  rng = np.random.default_rng(1)
  a = jnp.asarray(rng.uniform(0.2, 0.9, size=4))
  bu = jnp.asarray(rng.normal(size=(6, 4)))
  for method in ("associative", "sequential"):
    np.testing.assert_allclose(
      ssm.linear_recurrence(a, bu, method, reverse=True),
      ssm.linear_recurrence(a, bu[::-1], method)[::-1],
      rtol=1e-6,
    )


def test_state_fn_acts_on_every_state_of_the_sequential_path():
  """A state_fn (here rounding Re and Im to quarters) is applied before each state is fed
  back, as the streaming step does; the parallel paths have no state to apply it to."""
  a_bar, b_bar, c, d = _random_ssm(jax.random.PRNGKey(5))
  u = jax.random.normal(jax.random.PRNGKey(6), (12, 3))
  quarters = lambda x: jax.lax.complex(jnp.round(4 * x.real) / 4, jnp.round(4 * x.imag) / 4)
  y = ssm.apply_ssm(a_bar, b_bar, c, d, u, "sequential", state_fn=quarters)
  np.testing.assert_allclose(y, _stream(a_bar, b_bar, c, d, u, quarters), rtol=RTOL, atol=ATOL)
  assert not np.allclose(y, ssm.apply_ssm(a_bar, b_bar, c, d, u, "sequential"), atol=1e-2)
  states = ssm.linear_recurrence(
    a_bar.reshape(-1), jnp.ones((5, a_bar.size)), state_fn=quarters, method="sequential"
  )
  np.testing.assert_array_equal(states, quarters(states))
  for method in ("associative", "fft", "toeplitz"):
    with pytest.raises(ValueError, match="sequential"):
      ssm.apply_ssm(a_bar, b_bar, c, d, u, method, state_fn=quarters)
  with pytest.raises(ValueError, match="sequential"):
    ssm.linear_recurrence(a_bar.reshape(-1), jnp.ones((5, a_bar.size)), state_fn=quarters)


def test_bidirectional_paths_agree_and_match_definition():
  a_bar, b_bar, c, d = _random_ssm(jax.random.PRNGKey(7))
  c_rev = jnp.conj(c) * 0.5
  u = jax.random.normal(jax.random.PRNGKey(8), (12, 3))
  expected = (
    ssm.apply_ssm(a_bar, b_bar, c, d, u, "sequential")
    + ssm.apply_ssm(a_bar, b_bar, c_rev, 0 * d, u[::-1], "sequential")[::-1]
  )
  for method in ssm.METHODS:
    y = ssm.apply_ssm(a_bar, b_bar, c, d, u, method, c_reverse=c_rev)
    np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL)


def test_zoh_matches_matrix_exponential_float64():
  """ZOH of the complex mode equals expm of the augmented real system [[A, B], [0, 0]]."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    for _ in range(5):
      a = complex(-rng.uniform(0.1, 2.0), rng.uniform(-10, 10))
      b = complex(rng.normal(), rng.normal())
      step = rng.uniform(1e-3, 0.5)
      a_bar, b_bar = ssm.discretize(jnp.asarray(a), jnp.asarray(b), jnp.asarray(step), "zoh")
      # Real 2x2 block of the complex mode, and the input column [Re b, Im b].
      block = np.array([[a.real, -a.imag], [a.imag, a.real]])
      aug = np.zeros((3, 3))
      aug[:2, :2] = block
      aug[:2, 2] = [b.real, b.imag]
      m = scipy.linalg.expm(aug * step)
      np.testing.assert_allclose(
        np.array(
          [[complex(a_bar).real, -complex(a_bar).imag], [complex(a_bar).imag, complex(a_bar).real]]
        ),
        m[:2, :2],
        rtol=1e-12,
        atol=1e-14,
      )
      np.testing.assert_allclose(
        [complex(b_bar).real, complex(b_bar).imag], m[:2, 2], rtol=1e-10, atol=1e-14
      )


def test_bilinear_is_stable_and_close_to_zoh_for_small_steps():
  log_neg_re_a, im_a = ssm.init_a(8, "inv")
  a = ssm.decode_a(log_neg_re_a, im_a)
  for step in (1e-3, 1e-1, 10.0):
    a_bar, _ = ssm.discretize(a, jnp.ones_like(a), step, "bilinear")
    assert jnp.all(jnp.abs(a_bar) < 1)
  a_zoh, b_zoh = ssm.discretize(a, jnp.ones_like(a), 1e-4, "zoh")
  a_bil, b_bil = ssm.discretize(a, jnp.ones_like(a), 1e-4, "bilinear")
  np.testing.assert_allclose(a_bil, a_zoh, rtol=1e-5)
  np.testing.assert_allclose(b_bil, b_zoh, rtol=1e-3)


def test_init_matches_s4d_formulas():
  log_neg_re_a, im_a = ssm.init_a(4, "lin")
  np.testing.assert_allclose(
    ssm.decode_a(log_neg_re_a, im_a), -0.5 + 1j * np.pi * np.arange(4), rtol=1e-6
  )
  log_neg_re_a, im_a = ssm.init_a(4, "inv")
  n = np.arange(4)
  np.testing.assert_allclose(im_a, 8 / np.pi * (8 / (2 * n + 1) - 1), rtol=1e-6)
  log_step = ssm.init_log_step(jax.random.PRNGKey(0), (1000,), 1e-3, 1e-1)
  assert np.exp(log_step).min() >= 1e-3 and np.exp(log_step).max() <= 1e-1
  with pytest.raises(ValueError, match="lin"):
    ssm.init_a(4, "bogus")


def test_lin_quarter_init_is_s4d_lin_at_a_quarter_of_the_frequencies():
  log_neg_re_a, im_a = ssm.init_a(5, "lin_quarter")
  np.testing.assert_allclose(im_a, np.pi / 4 * np.arange(5), rtol=1e-7)
  np.testing.assert_allclose(ssm.decode_a(log_neg_re_a, im_a).real, -0.5, rtol=1e-7)


def test_kernel_is_impulse_response():
  a_bar, b_bar, c, d = _random_ssm(jax.random.PRNGKey(11))
  impulse = jnp.zeros((10, 3)).at[0].set(1.0)
  y = ssm.apply_ssm(a_bar, b_bar, c, 0 * d, impulse, "sequential")
  np.testing.assert_allclose(ssm.ssm_kernel(a_bar, b_bar, c, 10), y, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("method", ssm.METHODS)
def test_gradients_of_the_ssm_map(method):
  """Reverse- and forward-mode derivatives against finite differences (float64)."""
  with jax.enable_x64(True):
    u = jax.random.normal(jax.random.PRNGKey(0), (6, 2), jnp.float64)
    log_neg_re_a, im_a = ssm.init_a(3, "lin")
    params = (
      jnp.tile(log_neg_re_a, (2, 1)).astype(jnp.float64),
      jnp.tile(im_a, (2, 1)).astype(jnp.float64),
      jnp.full((2, 1), np.log(0.1)),
      jax.random.normal(jax.random.PRNGKey(1), (2, 3, 2), jnp.float64),
    )

    def f(log_neg_re_a, im_a, log_step, c_pair):
      a = ssm.decode_a(log_neg_re_a, im_a)
      a_bar, b_bar = ssm.discretize(a, jnp.ones_like(a), jnp.exp(log_step))
      return ssm.apply_ssm(a_bar, b_bar, ssm.complex_from_pair(c_pair), jnp.ones(2), u, method)

    jtu.check_grads(f, params, order=1, modes=("rev", "fwd"), atol=1e-6, rtol=1e-6)


def test_select_method():
  assert ssm.select_method(784, "cpu") == "fft"
  assert ssm.select_method(784, "gpu") == "associative"
  with pytest.raises(ValueError, match="valid"):
    ssm.apply_ssm(*_random_ssm(jax.random.PRNGKey(0)), jnp.zeros((4, 3)), "bogus")
