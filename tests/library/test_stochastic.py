"""stochastic_pool: draw statistics, independence, gradient routing, eval formula.

Statistical tests use fixed seeds, so they are deterministic; the thresholds are the
chi-square quantiles at 1 - 1e-6, i.e. with a correct implementation and a fresh
seed each would fail with probability 1e-6 (per test).
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import stats

import jaxpool
from tests import reference

FALSE_FAILURE = 1e-6


def chi_square(counts, expected):
  counts, expected = np.asarray(counts, float).ravel(), np.asarray(expected, float).ravel()
  assert expected.min() >= 5, "too few expected draws for the chi-square approximation"
  return float(np.sum((counts - expected) ** 2 / expected))


def draws_over_keys(x, n, seed, window, strides=None, padding="VALID", **kw):
  """Outputs of `n` independent keys, shape (n, *output_shape)."""
  keys = jax.random.split(jax.random.key(seed), n)
  f = lambda k: jaxpool.stochastic_pool(x, window, strides, padding, key=k, **kw)
  return np.asarray(jax.jit(jax.vmap(f))(keys))


def test_key_none_raises_with_advice():
  with pytest.raises(ValueError, match="pass key=.*or deterministic=True"):
    jaxpool.stochastic_pool(jnp.ones((1, 4, 4, 1)), (2, 2))
  with pytest.raises(TypeError, match="stochastic_pool: deterministic"):
    jaxpool.stochastic_pool(jnp.ones((1, 4, 4, 1)), (2, 2), deterministic=1)
  with pytest.raises(TypeError, match="floating"):
    jaxpool.stochastic_pool(jnp.ones((1, 4, 4, 1), jnp.int32), (2, 2), deterministic=True)
  with pytest.raises(ValueError, match="stochastic_pool: .*strides"):
    jaxpool.stochastic_pool(jnp.ones((1, 4, 4, 1)), (2, 2), (1, 2, 3), key=jax.random.key(0))


def test_draw_frequencies_match_probabilities():
  # One 2x3 window (with a zero and a negative element) and a second one that holds
  # the values 5 and 6 and four elements of zero padding.
  x = np.array([[1.0, 2.0, 0.0, 5.0], [3.0, -1.0, 4.0, 6.0]], np.float32)
  x = x.reshape(1, 2, 4, 1)
  n = 20000
  y = draws_over_keys(x, n, seed=0, window=(2, 3), strides=(2, 3), padding=((0, 0), (0, 2)))
  assert y.shape == (n, 1, 1, 2, 1)
  first, second = y[:, 0, 0, 0, 0], y[:, 0, 0, 1, 0]
  values, probs = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 4.0]) / 10
  assert np.isin(first, values).all()  # never the zero, the negative or another window's
  counts = [(first == v).sum() for v in values]
  assert chi_square(counts, n * probs) < stats.chi2.ppf(1 - FALSE_FAILURE, df=3)
  assert np.isin(second, [5.0, 6.0]).all()  # never the padding
  counts = [(second == v).sum() for v in (5.0, 6.0)]
  assert chi_square(counts, n * np.array([5, 6]) / 11) < stats.chi2.ppf(1 - FALSE_FAILURE, 1)


def test_one_key_draws_independently_across_many_windows():
  # 4000 identical windows [1, 3] under a single key: frequencies as for many keys.
  x = np.tile(np.array([1.0, 3.0], np.float32), 4000).reshape(1, 8000, 1)
  y = np.asarray(jaxpool.stochastic_pool(x, (2,), 2, key=jax.random.key(1)))
  counts = [(y == 1.0).sum(), (y == 3.0).sum()]
  assert sum(counts) == 4000
  assert chi_square(counts, [1000, 3000]) < stats.chi2.ppf(1 - FALSE_FAILURE, df=1)


def test_overlapping_windows_draw_independently():
  # Windows [1, 2, 3] and [3, 4, 5] (window 3, stride 2) share the element 3: the
  # joint frequencies must be the product of the marginals (a shared uniform, or a
  # draw per input element, would correlate them).
  x = np.arange(1.0, 6.0, dtype=np.float32).reshape(1, 5, 1)
  n = 20000
  y = draws_over_keys(x, n, seed=2, window=(3,), strides=2)[:, 0, :, 0]
  left, right = np.array([1.0, 2.0, 3.0]), np.array([3.0, 4.0, 5.0])
  joint = np.array([[np.sum((y[:, 0] == a) & (y[:, 1] == b)) for b in right] for a in left])
  assert joint.sum() == n
  expected = n * np.outer(left / left.sum(), right / right.sum())
  assert chi_square(joint, expected) < stats.chi2.ppf(1 - FALSE_FAILURE, df=8)


def test_overlapping_3x3_stride_2_windows_draw_independently():
  # Two 3x3 windows with stride 2 share a column; the events "drew from the shared
  # column" must be independent.
  x = np.arange(1.0, 16.0, dtype=np.float32).reshape(1, 3, 5, 1)
  n = 20000
  y = draws_over_keys(x, n, seed=3, window=(3, 3), strides=2)[:, 0, 0, :, 0]
  shared = x[0, :, 2, 0]
  p_left = shared.sum() / x[0, :, 0:3, 0].sum()
  p_right = shared.sum() / x[0, :, 2:5, 0].sum()
  a, b = np.isin(y[:, 0], shared), np.isin(y[:, 1], shared)
  joint = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
  expected = n * np.outer([p_left, 1 - p_left], [p_right, 1 - p_right])
  assert chi_square(joint, expected) < stats.chi2.ppf(1 - FALSE_FAILURE, df=3)


def signed(rng, shape):
  return (rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)).astype(np.float32)


def test_expected_training_output_is_the_eval_formula():
  # Magnitudes in [0.5, 2]: no element so small that its draws are too rare to see.
  x = signed(np.random.default_rng(4), (1, 4, 4, 2))
  n = 4000
  y = draws_over_keys(x, n, seed=4, window=(2, 2), strides=2).astype(np.float64)
  ev = np.asarray(jaxpool.stochastic_pool(x, (2, 2), 2, deterministic=True))
  stderr = y.std(axis=0) / np.sqrt(n)
  assert np.all(np.abs(y.mean(axis=0) - ev) <= 6 * stderr + 1e-6)


def drawn_positions(x, y):
  """For 2-D windows 3x3 stride 2, VALID: the input position each output drew."""
  positions = {}
  for b, i, j, c in itertools.product(*map(range, y.shape)):
    if y[b, i, j, c] == 0:
      continue
    window = x[b, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, c]
    hits = np.argwhere(window == y[b, i, j, c])
    assert len(hits) == 1, "values are distinct, so the drawn element is identified"
    positions[(b, i, j, c)] = (b, 2 * i + hits[0][0], 2 * j + hits[0][1], c)
  return positions


def test_gradient_goes_to_drawn_elements_and_adds_up():
  rng = np.random.default_rng(5)
  x = rng.permutation(2 * 7 * 7 * 3).reshape(2, 7, 7, 3).astype(np.float32) - 30.0
  x[0, :3, :3, 0] = -1.0  # an all-negative window: outputs 0, no gradient
  key = jax.random.key(5)
  pool = lambda x: jaxpool.stochastic_pool(x, (3, 3), 2, key=key)
  y = np.asarray(jax.jit(pool)(x))
  assert y[0, 0, 0, 0] == 0
  cot = rng.normal(size=y.shape).astype(np.float32)
  got = jax.jit(lambda x, cot: jax.vjp(pool, x)[1](cot)[0])(x, cot)
  want = np.zeros_like(x)
  for out, pos in drawn_positions(x, y).items():
    assert x[pos] > 0
    want[pos] += cot[out]
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # Overlapping windows that must draw the same element (the only positive one in
  # both) receive the sum of both cotangents.
  z = -np.ones((1, 3, 5, 1), np.float32)
  z[0, 1, 2, 0] = 2.0
  g = jax.jit(
    jax.grad(
      lambda z: jnp.sum(
        jaxpool.stochastic_pool(z, (3, 3), 2, key=key) * jnp.array([3.0, 4.0])[:, None]
      )
    )
  )(z)
  want = np.zeros_like(z)
  want[0, 1, 2, 0] = 7.0
  np.testing.assert_array_equal(g, want)


def test_same_key_same_draws():
  rng = np.random.default_rng(6)
  x = rng.uniform(0.1, 1.0, (2, 8, 8, 4)).astype(np.float32)
  pool = jax.jit(lambda x, k: jaxpool.stochastic_pool(x, (2, 2), 2, key=k))
  a, b = pool(x, jax.random.key(7)), pool(x, jax.random.key(7))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, pool(x, jax.random.key(8)))
  # Raw uint32 keys work as well, deterministically.
  raw = pool(x, jax.random.PRNGKey(7))
  np.testing.assert_array_equal(raw, pool(x, jax.random.PRNGKey(7)))
  assert not np.array_equal(raw, pool(x, jax.random.PRNGKey(8)))


def weighted_reference(x, window, strides=None, padding="VALID", **kw):
  def reduce(v, inside, declared):
    a = np.maximum(v.astype(np.float64), 0)
    s = a.sum(axis=0)
    return np.where(s > 0, (a * a).sum(axis=0) / np.where(s > 0, s, 1), 0)

  return reference.window_pool(x, window, strides, padding, **kw, reduce=reduce)


@pytest.mark.parametrize(
  "spatial,window,strides,padding,kw",
  [
    ((7,), (3,), 2, "VALID", {}),
    ((6, 5), (3, 3), 2, "SAME", {}),
    ((7, 7), (2, 3), 2, 1, {"ceil_mode": True}),
    ((8, 6), (2, 2), 1, "VALID", {"dilation": (2, 1)}),
    ((4, 4, 5), (2, 2, 3), (2, 1, 2), "VALID", {}),
  ],
)
def test_eval_formula_matches_numpy(spatial, window, strides, padding, kw):
  rng = np.random.default_rng(7)
  x = rng.normal(size=(2, *spatial, 3)).astype(np.float32)
  got = jax.jit(
    lambda x: jaxpool.stochastic_pool(x, window, strides, padding, deterministic=True, **kw)
  )(x)
  np.testing.assert_allclose(
    got, weighted_reference(x, window, strides, padding, **kw), rtol=1e-5, atol=1e-7
  )


def test_eval_gradient_finite_on_all_zero_windows_and_jvp():
  x = np.zeros((1, 4, 4, 1), np.float32)
  x[0, :2, :2, 0] = [[1.0, 2.0], [0.0, -3.0]]
  x[0, 2:, :2, 0] = -1.0  # all negative: a = 0
  f = lambda x: jaxpool.stochastic_pool(x, (2, 2), 2, deterministic=True)
  g = jax.jit(jax.grad(lambda x: jnp.sum(f(x))))(x)
  assert np.isfinite(g).all()
  assert (g[0, 2:] == 0).all() and (g[0, :, 2:] == 0).all()
  # d/da_k (sum a^2 / sum a) = (2 a_k S - Q) / S^2 with S = 3, Q = 5; 0 where a_k = 0.
  np.testing.assert_allclose(g[0, :2, :2, 0], [[1 / 9, 7 / 9], [0.0, 0.0]], rtol=1e-6)
  positive = np.random.default_rng(8).uniform(0.5, 2.0, (1, 5, 5, 2)).astype(np.float32)
  check_grads(
    jax.jit(lambda x: jaxpool.stochastic_pool(x, (3, 3), 2, 1, deterministic=True)),
    (positive,),
    order=1,
    modes=["fwd", "rev"],
    atol=5e-3,
    rtol=5e-3,
  )
  with pytest.raises(TypeError):  # documented: training mode has a custom VJP only
    jax.jvp(lambda x: jaxpool.stochastic_pool(x, (2, 2), key=jax.random.key(0)), (x,), (x,))


def test_training_edge_cases():
  x = jnp.array([[0.0], [0.0], [-1.0], [-2.0], [1.0], [np.nan], [2.0], [0.0]])
  pool = lambda x: jaxpool.stochastic_pool(x, (2,), 2, key=jax.random.key(0))
  y, vjp = jax.jit(lambda x: jax.vjp(pool, x))(x)
  assert y[0, 0] == 0 and y[1, 0] == 0  # all-zero and all-negative windows
  assert np.isnan(y[2, 0])  # a NaN in the window
  assert y[3, 0] == 2.0
  (g,) = vjp(jnp.ones_like(y))
  np.testing.assert_array_equal(g[:, 0], [0, 0, 0, 0, 0, 0, 1, 0])


def test_jit_vmap_grad_compose():
  rng = np.random.default_rng(9)
  x = rng.normal(size=(3, 6, 6, 2)).astype(np.float32)
  keys = jax.random.split(jax.random.key(10), 3)

  def loss(x, k):
    return jnp.sum(jaxpool.stochastic_pool(x, (3, 3), 2, "SAME", key=k) ** 2)

  batched = jax.jit(jax.grad(lambda x, ks: jnp.sum(jax.vmap(loss)(x, ks))))(x, keys)
  single = jax.jit(jax.grad(loss))
  for i in range(3):
    np.testing.assert_allclose(batched[i], single(x[i], keys[i]), rtol=1e-6)
  # Second order differentiates the custom backward pass: the scatter keeps sums, so
  # d/dx sum(grad loss) = d/dx sum(2 y) = 2 grad(sum y).
  second = jax.jit(jax.grad(lambda x, k: jnp.sum(jax.grad(loss)(x, k))))(x[0], keys[0])
  first = jax.jit(
    jax.grad(lambda x, k: jnp.sum(jaxpool.stochastic_pool(x, (3, 3), 2, "SAME", key=k)))
  )(x[0], keys[0])
  np.testing.assert_allclose(second, 2 * first, rtol=1e-6)


def test_bfloat16_and_channels_first():
  rng = np.random.default_rng(11)
  x32 = rng.permutation(2 * 3 * 8 * 8).reshape(2, 3, 8, 8).astype(np.float32) / 8 - 20
  x = jnp.asarray(x32, jnp.bfloat16)  # values exactly representable
  key = jax.random.key(12)
  pool = jax.jit(
    lambda x, deterministic: jaxpool.stochastic_pool(
      x, (2, 2), 2, key=key, deterministic=deterministic, channel_axis=1
    ),
    static_argnums=1,
  )
  y = pool(x, False)
  assert y.dtype == jnp.bfloat16 and y.shape == (2, 3, 4, 4)
  # The same draws as float32 (sampling is in float32 for both), and each output
  # is an element of its window.
  y32 = pool(x32, False)
  np.testing.assert_array_equal(np.asarray(y, np.float32), y32)
  windows = x32.reshape(2, 3, 4, 2, 4, 2)
  assert np.all(
    (windows == np.asarray(y32)[:, :, :, None, :, None]).any(axis=(3, 5)) | (np.asarray(y32) == 0)
  )
  g = jax.jit(jax.grad(lambda x: jnp.sum(pool(x, False)).astype(jnp.float32)))(x)
  assert g.dtype == jnp.bfloat16
  ev = pool(x, True)
  assert ev.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(ev, np.float32), pool(x32, True), rtol=1e-2)


@pytest.mark.parametrize("window,strides", [((2, 2), 2), ((3, 3), 2)])
def test_training_step_memory_is_a_small_multiple_of_the_input(window, strides):
  # A float32 (window x output) patches tensor is window_size / stride^2 times the
  # input (1x for 2x2/2, 2.25x for 3x3/2). The compiled value-and-gradient, less what
  # jax.random needs for one uniform per output, must stay within 1.5 inputs of
  # scratch memory (measured on CPU: 1.0x for both).
  x = jnp.ones((4, 32, 32, 16))
  key = jax.random.key(0)
  step = jax.jit(
    jax.value_and_grad(lambda x: jnp.sum(jaxpool.stochastic_pool(x, window, strides, key=key)))
  )
  out_shape = jax.eval_shape(lambda x: jaxpool.stochastic_pool(x, window, strides, key=key), x)
  draw = jax.jit(lambda k: jax.random.uniform(k, out_shape.shape))
  pool_stats = step.lower(x).compile().memory_analysis()
  draw_stats = draw.lower(key).compile().memory_analysis()
  if pool_stats is None or draw_stats is None:
    pytest.skip("this backend reports no memory analysis")
  scratch = pool_stats.temp_size_in_bytes - draw_stats.temp_size_in_bytes
  assert scratch <= 1.5 * x.nbytes


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_every_key_type_draws_with_the_right_frequencies(impl):
  # An odd number of windows (the threefry words come in pairs) under one key of each
  # implementation: the frequencies of [1, 3] windows are 1/4 and 3/4.
  x = np.tile(np.array([1.0, 3.0], np.float32), 3999).reshape(1, 7998, 1)
  key = jax.random.key(13, impl=impl)
  y = np.asarray(jax.jit(lambda x, k: jaxpool.stochastic_pool(x, (2,), 2, key=k))(x, key))
  counts = [(y == 1.0).sum(), (y == 3.0).sum()]
  assert sum(counts) == 3999
  assert chi_square(counts, [3999 / 4, 3 * 3999 / 4]) < stats.chi2.ppf(1 - FALSE_FAILURE, 1)
  np.testing.assert_array_equal(y, jaxpool.stochastic_pool(x, (2,), 2, key=key))


def test_one_key_draws_3x3_windows_with_the_right_frequencies():
  # 2000 copies of one 3x3 window holding 0, 1, ..., 8 under a single key: the
  # value k is drawn with probability k / 36 in every window.
  tile = np.arange(9.0, dtype=np.float32).reshape(3, 3)
  x = np.tile(tile, (1, 2000))[None, :, :, None]  # (1, 3, 6000, 1), windows at stride 3
  y = np.asarray(jaxpool.stochastic_pool(x, (3, 3), 3, key=jax.random.key(14)))
  counts = [(y == v).sum() for v in range(1, 9)]
  assert sum(counts) == 2000
  expected = 2000 * np.arange(1, 9) / 36
  assert chi_square(counts, expected) < stats.chi2.ppf(1 - FALSE_FAILURE, df=7)


def test_a_window_with_an_infinite_element_draws_it():
  # P(k) = a_k / sum a tends to 1 for the infinite element; finite elements after it
  # (here the 2) must not be drawn.
  x = jnp.array([[1.0], [np.inf], [2.0], [3.0], [-1.0], [0.5]])
  keys = jax.random.split(jax.random.key(15), 64)
  f = jax.jit(
    jax.vmap(
      lambda k: jax.vjp(lambda x: jaxpool.stochastic_pool(x, (3,), 3, key=k), x)[1](
        jnp.ones((2, 1))
      )[0]
    )
  )
  grads = np.asarray(f(keys))[:, :, 0]
  ys = np.asarray(jax.vmap(lambda k: jaxpool.stochastic_pool(x, (3,), 3, key=k))(keys))
  assert np.all(ys[:, 0, 0] == np.inf)
  np.testing.assert_array_equal(grads[:, :3], np.tile([0.0, 1.0, 0.0], (64, 1)))
  assert set(np.unique(ys[:, 1, 0])) == {3.0, 0.5}


@pytest.mark.parametrize("size", [1, 6, 1001])
def test_uniforms_are_the_threefry_words_of_the_key(size):
  # The unrolled Threefry-2x32 of the draw gives the same words as JAX's own
  # threefry_2x32 of the counters 0..n-1 (odd n padded as JAX does); uniforms are
  # their top 24 bits.
  from jax import lax
  from jax.extend import random as jax_random

  from jaxpool._src import stochastic

  key = jax.random.key(16)
  data = jax.random.key_data(key)
  words = np.asarray(jax_random.threefry_2x32((data[0], data[1]), lax.iota(jnp.uint32, size)))
  u = np.asarray(jax.jit(lambda k: stochastic._uniforms(k, (size,)))(key))
  np.testing.assert_array_equal(u, (words >> 8).astype(np.float64) * 2.0**-24)
  assert u.min() >= 0 and u.max() < 1


@pytest.mark.parametrize("scale", [1e30, 3e37, 1e-30])
def test_eval_formula_is_exact_for_huge_and_tiny_values(scale):
  """Issue 23: sum a^2 / sum a overflowed to inf for a = 1e30 in float32 (and
  underflowed to 0 for tiny a); every window is now scaled by its maximum. The
  reference is the formula in float64 (numpy loop). Gradient: finite, and the
  formula's derivative (2 a_k S1 - S2) / S1^2 (scale-invariant) at those values."""
  rng = np.random.default_rng(11)
  unit = rng.normal(size=(2, 7, 6, 3))
  x = (unit * scale).astype(np.float32)
  got = jax.jit(
    lambda x: jaxpool.stochastic_pool(x, (3, 2), 2, 1, deterministic=True, ceil_mode=True)
  )(x)
  want = weighted_reference(x, (3, 2), 2, 1, ceil_mode=True)
  assert np.isfinite(got).all()
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=np.abs(want).max() * 1e-6 + 1e-45)
  grad = jax.grad(lambda x: jnp.sum(jaxpool.stochastic_pool(x, (2, 2), 2, deterministic=True)))(x)
  unit_grad = jax.grad(
    lambda x: jnp.sum(jaxpool.stochastic_pool(x, (2, 2), 2, deterministic=True))
  )(unit.astype(np.float32))
  if True:  # x = unit * scale up to rounding, and the derivative is scale-invariant
    np.testing.assert_allclose(grad, unit_grad, rtol=1e-4, atol=1e-5)
  assert np.isfinite(grad).all()
