"""axis_max.first_max (the global max pool's kernel) against PyTorch's selection loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxpool._src.machinery import axis_max
from tests import reference
from tests.helpers import ties


def _expected(x, axis, absolute=False):
  """(values, gradient of sum(values * w)) by reference.select_max per column."""
  moved = np.moveaxis(np.asarray(x, np.float64), axis, -1)
  values = np.empty(moved.shape[:-1])
  grad = np.zeros(moved.shape)
  w = np.arange(1.0, values.size + 1).reshape(values.shape)
  for idx in np.ndindex(values.shape):
    column = np.abs(moved[idx]) if absolute else moved[idx]
    values[idx], k = reference.select_max(list(column))
    grad[idx + (k,)] = w[idx] * (np.sign(moved[idx + (k,)]) if absolute else 1)
  return values, np.moveaxis(grad, -1, axis), w


def _run(x, axis, absolute=False):
  w_shape = np.delete(np.array(x.shape), axis)
  w = jnp.arange(1.0, np.prod(w_shape) + 1).reshape(tuple(w_shape))
  f = lambda v: axis_max.first_max(v, axis, absolute)
  values = jax.jit(f)(x)
  grad = jax.jit(jax.grad(lambda v: jnp.sum(f(v).astype(jnp.float32) * w)))(x)
  return values, grad


@pytest.mark.parametrize("absolute", [False, True])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_first_max_ties_nan_inf(axis, absolute):
  rng = np.random.default_rng(axis)
  x = ties(rng, (5, 7, 6))
  moved = np.moveaxis(x, axis, -1)  # a view: edits below land in x
  moved[0, 0, :] = np.nan  # all NaN: the last one
  moved[0, 1, [1, 3]] = np.nan  # two NaNs among ties
  moved[1, 0, :] = [np.inf, -np.inf] * (moved.shape[-1] // 2) + [0] * (moved.shape[-1] % 2)
  moved[1, 1, :] = -np.inf  # every element -inf
  moved[1, 2, :] = 0.0  # all zeros
  moved[2, 0, :] = np.float32(3e38)  # sums overflow both ways
  moved[2, 0, ::2] = np.float32(-3e38)
  values, grad = _run(x, axis, absolute)
  want_values, want_grad, _ = _expected(x, axis, absolute)
  np.testing.assert_array_equal(values, want_values.astype(np.float32))
  np.testing.assert_array_equal(grad, want_grad.astype(np.float32))


def test_first_max_wide_columns_and_nan_only_where_present():
  # Wide minor dims: XLA:CPU's vectorized max drops NaNs there.
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, 50, 1024)).astype(np.float32)
  x[0, 7, 5] = np.nan
  x[2, 49, 1023] = np.nan
  values, grad = _run(x, 1)
  want_values, want_grad, _ = _expected(x, 1)
  assert np.isnan(values).sum() == 2
  np.testing.assert_array_equal(values, want_values.astype(np.float32))
  np.testing.assert_array_equal(grad, want_grad.astype(np.float32))


def test_first_max_integers_and_bfloat16():
  rng = np.random.default_rng(2)
  xi = rng.integers(-3, 4, (4, 9, 3)).astype(np.int32)
  got = jax.jit(lambda v: axis_max.first_max(v, 1))(xi)
  np.testing.assert_array_equal(got, xi.max(axis=1))
  assert got.dtype == np.int32
  xb = ties(rng, (4, 9, 3)).astype(jnp.bfloat16)
  values, grad = _run(xb, 1)
  want_values, want_grad, _ = _expected(np.asarray(xb, np.float32), 1)
  assert values.dtype == jnp.bfloat16 and grad.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(values, np.float32), want_values)
  np.testing.assert_array_equal(np.asarray(grad, np.float32), want_grad)


def test_first_max_long_axis_uses_exact_index():
  # 2 * length >= 2^24: float scores would no longer be exact; the index must still
  # be the first maximum, far along the axis.
  n = 2**23 + 5
  x = np.zeros((1, n, 1), np.float32)
  x[0, [n - 4, n - 2], 0] = 1.0
  _, grad = _run(x, 1)
  assert grad[0, n - 4, 0] == 1 and grad.sum() == 1


def test_first_max_gradients_and_second_order():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(3, 8, 4)).astype(np.float32)  # no ties: the max is differentiable
  for absolute in (False, True):
    # Jitted: one compiled program per derivative rather than an op-by-op run.
    f = jax.jit(lambda v, absolute=absolute: axis_max.first_max(v, 1, absolute))
    check_grads(f, (x,), order=2, modes=("fwd", "rev"))
