"""blur_pool against numpy loops, the binomial filter, shift equivariance and check_grads."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxpool
from tests import reference

RTOL = ATOL = 2e-5


def distinct(shape, seed=0, scale=1.0):
  rng = np.random.default_rng(seed)
  return (rng.permutation(int(np.prod(shape))).reshape(shape) - np.prod(shape) / 2) * scale


@pytest.mark.parametrize(
  "filter_size,pool,padding,strides",
  [
    (3, "max", "reflect", 2),
    (1, "none", "reflect", 2),
    (4, "avg", "replicate", (2, 3)),
    (5, "max", "zero", 2),
    (7, "none", "reflect", 3),
    (2, "max", "reflect", 1),
    (6, "avg", "reflect", (3, 2)),
  ],
)
def test_matches_reference(filter_size, pool, padding, strides):
  x = distinct((2, 11, 10, 3), scale=0.01)
  y = jaxpool.blur_pool(
    x.astype(np.float32), strides, filter_size=filter_size, pool=pool, padding=padding
  )
  expected = reference.blur_pool(x, strides, filter_size, pool, padding=padding)
  assert y.shape == expected.shape
  np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("filter_size", range(1, 8))
def test_filter_is_the_normalised_binomial(filter_size):
  # The impulse response (stride 1, no dense pool, zero padding) is the filter itself.
  x = np.zeros((1, 9, 9, 1), np.float32)
  x[0, 4, 4, 0] = 1
  y = np.asarray(jaxpool.blur_pool(x, 1, filter_size=filter_size, pool="none", padding="zero"))
  row = np.array([math.comb(filter_size - 1, i) for i in range(filter_size)]) / 2 ** (
    filter_size - 1
  )
  lo = (filter_size - 1) // 2  # the filter's centre sits at offset lo
  window = y[0, 4 - (filter_size - 1 - lo) : 4 + lo + 1, 4 - (filter_size - 1 - lo) : 4 + lo + 1, 0]
  np.testing.assert_allclose(window, np.outer(row, row)[::-1, ::-1], rtol=1e-6, atol=1e-8)
  np.testing.assert_allclose(y.sum(), 1.0, rtol=1e-6)


@pytest.mark.parametrize("pool", ["max", "avg", "none"])
@pytest.mark.parametrize("padding", ["reflect", "replicate"])
def test_constant_image_stays_constant(pool, padding):
  x = jnp.full((2, 9, 8, 3), 2.5, jnp.float32)
  for filter_size in (2, 3, 5, 7):
    y = jaxpool.blur_pool(x, 2, filter_size=filter_size, pool=pool, padding=padding)
    np.testing.assert_allclose(y, 2.5, rtol=1e-6)


@pytest.mark.parametrize("pool", ["max", "none"])
def test_shift_by_the_stride_shifts_the_output(pool):
  stride, f = 2, 5
  x = np.random.default_rng(1).normal(size=(1, 24, 22, 2)).astype(np.float32)
  blur = jax.jit(lambda x: jaxpool.blur_pool(x, stride, filter_size=f, pool=pool))
  y1 = np.asarray(blur(x[:, :-stride]))
  y2 = np.asarray(blur(x[:, stride:]))  # the same image shifted up by one stride
  margin = f  # rows whose filter reaches into the padding differ
  np.testing.assert_allclose(
    y2[:, margin:-margin], y1[:, margin + 1 : -margin + 1], rtol=1e-6, atol=1e-6
  )
  y3 = np.asarray(blur(x[:, :, stride:]))
  y4 = np.asarray(blur(x[:, :, :-stride]))
  np.testing.assert_allclose(
    y3[:, :, margin:-margin], y4[:, :, margin + 1 : -margin + 1], rtol=1e-6, atol=1e-6
  )


def test_filter_size_one_without_pool_is_subsampling():
  x = np.random.default_rng(2).normal(size=(2, 7, 9, 3)).astype(np.float32)
  np.testing.assert_array_equal(
    jaxpool.blur_pool(x, (2, 3), filter_size=1, pool="none"), x[:, ::2, ::3]
  )
  first = jaxpool.blur_pool(np.moveaxis(x, -1, 1), 2, filter_size=1, pool="none", channel_axis=1)
  np.testing.assert_array_equal(first, np.moveaxis(x, -1, 1)[:, :, ::2, ::2])


def test_channels_first_layouts_and_other_ranks():
  x = distinct((2, 10, 9, 3), scale=0.01).astype(np.float32)
  last = jaxpool.blur_pool(x, 2)
  first = jaxpool.blur_pool(np.moveaxis(x, -1, 1), 2, channel_axis=1)
  np.testing.assert_allclose(np.moveaxis(first, 1, -1), last, rtol=1e-6)
  # Two batch dims need tuple strides; no batch dim either.
  two = jaxpool.blur_pool(x.reshape(1, 2, 10, 9, 3), (2, 2))
  np.testing.assert_allclose(two[0], last, rtol=1e-6)
  np.testing.assert_allclose(jaxpool.blur_pool(x[0], (2, 2)), last[0], rtol=1e-6)
  # 1-D, window 3 for the dense max.
  x1 = distinct((2, 13, 2), seed=3, scale=0.01)
  y1 = jaxpool.blur_pool(x1.astype(np.float32), 3, filter_size=4, window_shape=(3,))
  np.testing.assert_allclose(
    y1, reference.blur_pool(x1, 3, 4, "max", window=(3,)), rtol=RTOL, atol=ATOL
  )


def test_grads():
  with jax.enable_x64(True):
    x = jnp.asarray(distinct((1, 7, 6, 2)), jnp.float64)
    for pool, padding in [("max", "reflect"), ("avg", "zero"), ("none", "replicate")]:
      f = jax.jit(lambda x: jaxpool.blur_pool(x, 2, filter_size=3, pool=pool, padding=padding))
      check_grads(f, (x,), order=1, modes=("fwd", "rev"))


def test_bfloat16():
  x = np.random.default_rng(4).normal(size=(2, 8, 8, 3)).astype(np.float32)
  y16 = jaxpool.blur_pool(jnp.asarray(x, jnp.bfloat16), 2)
  assert y16.dtype == jnp.bfloat16
  np.testing.assert_allclose(
    np.asarray(y16, np.float32), jaxpool.blur_pool(x, 2), rtol=2e-2, atol=2e-2
  )


def test_bad_arguments_raise_clear_errors():
  x = jnp.zeros((1, 8, 8, 3))
  for bad in (0, 8, 2.5, "3"):
    with pytest.raises(
      ValueError, match=f"blur_pool: filter_size must be an int from 1 to 7, got {bad!r}"
    ):
      jaxpool.blur_pool(x, 2, filter_size=bad)
  with pytest.raises(
    ValueError, match=r"blur_pool: pool must be one of \('max', 'avg', 'none'\), got 'min'"
  ):
    jaxpool.blur_pool(x, 2, pool="min")
  with pytest.raises(ValueError, match="blur_pool: padding must be one of .*got 'circular'"):
    jaxpool.blur_pool(x, 2, padding="circular")
  with pytest.raises(ValueError, match="blur_pool: with an int strides"):
    jaxpool.blur_pool(jnp.zeros((8, 3)), 2)
  with pytest.raises(TypeError, match="blur_pool: strides must be an int or a sequence"):
    jaxpool.blur_pool(x, 2.0)
  with pytest.raises(ValueError, match="blur_pool: .*strides"):
    jaxpool.blur_pool(x, (2, 0))
  with pytest.raises(ValueError, match="blur_pool: .*window_shape"):
    jaxpool.blur_pool(x, 2, window_shape=(2, 2, 2))
  with pytest.raises(TypeError, match="blur_pool: inputs must have a floating dtype"):
    jaxpool.blur_pool(jnp.zeros((1, 8, 8, 3), jnp.int32), 2)


def test_under_vmap_and_jit():
  x = np.random.default_rng(5).normal(size=(3, 8, 8, 2)).astype(np.float32)
  f = jax.jit(jax.vmap(lambda x: jaxpool.blur_pool(x, (2, 2), pool="avg")))
  np.testing.assert_allclose(f(x), reference.blur_pool(x, 2, 3, "avg"), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("padding", ["reflect", "replicate"])
def test_padding_wider_than_the_image(padding):
  # Filter 7 pads 3 on each side of dims of size 1 to 4: numpy.pad's repeated reflection.
  x = distinct((2, 4, 3, 2), seed=6, scale=0.01)
  for pool, strides in [("none", (1, 2)), ("max", 1), ("avg", (2, 1))]:
    y = jaxpool.blur_pool(x.astype(np.float32), strides, filter_size=7, pool=pool, padding=padding)
    expected = reference.blur_pool(x, strides, 7, pool, padding=padding)
    np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL)


def test_output_shapes_over_random_configurations():
  rng = np.random.default_rng(12)
  for _ in range(6):
    n = int(rng.integers(1, 4))
    spatial = tuple(int(v) for v in rng.integers(3, 9, size=n))
    strides = tuple(int(v) for v in rng.integers(1, 4, size=n))
    pool = str(rng.choice(["max", "avg", "none"]))
    filter_size = int(rng.integers(1, 8))
    y = jaxpool.blur_pool(jnp.ones((1, *spatial, 2)), strides, filter_size=filter_size, pool=pool)
    k = 1 if pool == "none" else 2
    assert y.shape == (1, *[(L - k) // s + 1 for L, s in zip(spatial, strides)], 2)
    np.testing.assert_allclose(y, 1.0, rtol=1e-6)  # reflection keeps constants constant


def test_integer_arrays_as_strides():
  """Issue 23: np.array([1]) was refused as strides, which every other pool accepts;
  integer arrays (numpy or jax, any int dtype, 0-d for all dims) now work."""
  rng = np.random.default_rng(9)
  x = rng.normal(size=(2, 9, 7, 3))
  expected = reference.blur_pool(x, (2, 1), 3, "max")
  for strides in (np.array([2, 1]), jnp.array([2, 1], jnp.int32), [np.int64(2), np.int8(1)]):
    y = jaxpool.blur_pool(x.astype(np.float32), strides)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
  y = jaxpool.blur_pool(x.astype(np.float32), np.array(2), pool="avg")
  np.testing.assert_allclose(y, reference.blur_pool(x, 2, 3, "avg"), rtol=1e-5, atol=1e-6)
  y = jaxpool.blur_pool(x[0, :, 0].astype(np.float32), np.array([1]))  # (L, C)
  np.testing.assert_allclose(y[None], reference.blur_pool(x[:1, :, 0], 1, 3), rtol=1e-5, atol=1e-6)
  with pytest.raises(TypeError, match="blur_pool: strides must contain only ints"):
    jaxpool.blur_pool(x.astype(np.float32), np.array([2.0, 1.0]))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("window", [(2, 2), (3, 2)])
def test_max_gradient_with_ties_goes_to_the_first_maximum_in_row_major_order(dtype, window):
  # The dense max runs one spatial dim at a time; a numpy loop over the 2-D windows
  # routes each window's cotangent to its first maximum in row-major order (PyTorch).
  rng = np.random.default_rng(7)
  x = jnp.asarray(rng.integers(0, 3, size=(2, 9, 8, 3)), dtype)  # many ties
  cot = jnp.asarray(rng.normal(size=(2, 4, 4, 3)), dtype)
  y, vjp = jax.vjp(lambda x: jaxpool.blur_pool(x, 2, window_shape=window), x)
  (dx,) = vjp(cot)
  kh, kw = window
  xs = np.asarray(x, np.float32)
  dense = np.zeros((2, 9 - kh + 1, 8 - kw + 1, 3), np.float32)
  for i in range(dense.shape[1]):
    for j in range(dense.shape[2]):
      dense[:, i, j] = xs[:, i : i + kh, j : j + kw].max(axis=(1, 2))
  _, blur_vjp = jax.vjp(lambda z: jaxpool.blur_pool(z, 2, pool="none"), jnp.asarray(dense))
  (dz,) = blur_vjp(jnp.asarray(cot, jnp.float32))
  dz = np.asarray(dz)
  expected = np.zeros(xs.shape, np.float32)
  for n in range(2):
    for c in range(3):
      for i in range(dense.shape[1]):
        for j in range(dense.shape[2]):
          window_values = xs[n, i : i + kh, j : j + kw, c]
          a, b = np.unravel_index(np.argmax(window_values), window)  # first in row-major order
          expected[n, i + a, j + b, c] += dz[n, i, j, c]
  tol = 2e-2 if dtype == jnp.bfloat16 else 1e-5
  assert y.shape == (2, 4, 4, 3)
  np.testing.assert_allclose(np.asarray(dx, np.float32), expected, rtol=tol, atol=tol)
