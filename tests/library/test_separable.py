"""separable.py (first_max_index/mask, pick, separable_max over static_dim windows)
against numpy loops applying PyTorch's rule: the first maximum, or the last NaN."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

try:
  from tests.helpers import J
  from tests.helpers import ties
except ImportError:  # tests/ itself on sys.path
  from helpers import J
  from helpers import ties
from jaxpool._src.machinery import separable

nan, inf = np.nan, np.inf


def _select(values, valid=None):
  """Position of the first maximal candidate, or of the last NaN (v != v), by a loop."""
  best, best_k = None, None
  for k, v in enumerate(values):
    if valid is not None and not valid[k]:
      continue
    if best is None or v != v or (best == best and v > best):
      best, best_k = v, k
  return best_k


def _ref_index(x, axis, valid=None):
  """`_select` along `axis` of every column, keepdims."""
  moved = np.moveaxis(np.asarray(x, np.float64), axis, -1)
  ok = None if valid is None else np.moveaxis(np.broadcast_to(valid, x.shape), axis, -1)
  out = np.empty(moved.shape[:-1] + (1,), np.int64)
  for idx in np.ndindex(moved.shape[:-1]):
    out[idx] = _select(moved[idx], None if ok is None else ok[idx])
  return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize(
  "row,want",
  [
    ([1, 3, 3, 2], 1),
    ([nan, 5, nan, 1], 2),
    ([-inf, -inf, -inf], 0),
    ([1, inf, inf], 1),
    ([inf, nan, inf], 1),
    ([-0.0, 0.0], 0),
    ([0.0, -0.0], 0),
    ([-inf, 2, nan], 2),
  ],
)
def test_first_max_hand_rows(row, want):
  """Ties -> first, NaN -> last NaN, +-inf and signed zeros, on written-out rows."""
  x = np.array(row, np.float32)[:, None]
  assert _ref_index(x, 0)[0, 0] == want  # the reference agrees with the written answer
  assert int(separable.first_max_index(x, jnp.max(x, 0, keepdims=True), 0)[0, 0]) == want
  np.testing.assert_array_equal(separable.first_max_mask(x, 0)[:, 0], np.arange(len(row)) == want)


def _input(rng, dtype, shape):
  if dtype == np.uint8:
    return rng.integers(0, 3, shape).astype(dtype)
  x = ties(rng, shape)
  if np.issubdtype(dtype, np.floating) or dtype == jnp.bfloat16:
    x[rng.random(shape) < 0.1] = nan
    x[rng.random(shape) < 0.05] = -inf
    x[rng.random(shape) < 0.05] = inf
  return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, jnp.bfloat16, np.int32, np.uint8])
@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("masked", [False, True])
def test_first_max_index_and_mask(dtype, axis, masked):
  """first_max_index/mask pick the first maximal valid element, or the last valid NaN."""
  rng = np.random.default_rng(axis + 10 * masked)
  x = _input(rng, dtype, (5, 6, 7))
  valid = None
  if masked:
    valid = rng.random(x.shape) < 0.6
    keep = rng.integers(0, x.shape[axis], x.shape[:axis] + (1,) + x.shape[axis + 1 :])
    np.put_along_axis(valid, keep, True, axis)  # every column keeps a candidate
  want = _ref_index(x, axis, valid)
  xj, cand = jnp.asarray(x), np.asarray(x, np.float32)
  cand = cand if valid is None else np.where(valid, cand, -inf)
  top = np.max(cand, axis, keepdims=True)
  for value in (top, np.max(np.where(np.isnan(cand), -inf, cand), axis, keepdims=True)):
    # The max as numpy gives it (NaN) and as a NaN-dropping XLA max would: same index.
    got = separable.first_max_index(xj, jnp.asarray(value).astype(x.dtype), axis, valid)
    np.testing.assert_array_equal(got, want)
  mask = separable.first_max_mask(xj, axis, valid)
  np.testing.assert_array_equal(
    mask, np.arange(x.shape[axis]).reshape((-1,) + (1,) * (2 - axis)) == want
  )


def test_first_max_index_long_axis():
  """Past 2^23 elements the scores leave float32's exact range: indices stay exact."""
  size = 2**24 + 3
  for marks, fill, want in (
    ([5, size - 4, size - 1], 2.0, 5),  # tied maxima: the first
    ([size - 3, size - 2], nan, size - 2),
  ):  # NaNs: the last
    x = np.zeros(size, np.float32)
    x[marks] = fill
    value = jnp.asarray([np.max(x)])
    assert int(separable.first_max_index(jnp.asarray(x), value, 0)[0]) == want


@pytest.mark.parametrize("fill", [0.0, -0.0, nan, -inf])
def test_pick_value_and_cotangent_only_to_marked(fill):
  """pick returns the marked element exactly; its gradient is ct at the mark, 0 elsewhere."""
  rng = np.random.default_rng(3)
  g = rng.normal(size=(3, 5, 4)).astype(np.float32)
  g[rng.random(g.shape) < 0.3] = nan  # unmarked NaNs must not leak into values or grads
  k = rng.integers(0, 5, (3, 1, 4))
  np.put_along_axis(g, k, fill, 1)
  sel = np.arange(5)[None, :, None] == k
  got = J(separable.pick, 1)(g, sel)
  want = np.take_along_axis(g, k, 1)[:, 0]
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
  ct = rng.normal(size=want.shape).astype(np.float32)
  grad = jax.jit(jax.grad(lambda v: jnp.sum(separable.pick(v, sel, 1) * ct)))(g)
  np.testing.assert_array_equal(grad, np.where(sel, ct[:, None], 0))


def test_pick_check_grads():
  """pick's custom JVP/VJP agrees with finite differences, to second order."""
  rng = np.random.default_rng(4)
  g = rng.normal(size=(4, 6)).astype(np.float32)
  sel = np.arange(6) == rng.integers(0, 6, (4, 1))
  check_grads(lambda v: separable.pick(v, sel, 1), (g,), order=2, modes=("fwd", "rev"))


# [start, end) windows per dim: overlapping of mixed lengths, tiling (a reshape that
# drops the tail), disjoint of mixed lengths.
W_OVERLAP = ([0, 1, 3, 4, 6], [3, 2, 7, 6, 7])
W_TILE = ([0, 3], [3, 6])
W_DISJOINT = ([0, 2, 5], [2, 5, 7])
H_OVERLAP = ([0, 1, 2], [4, 3, 6])
H_TILE = ([0, 2, 4], [2, 4, 6])
H_DISJOINT = ([0, 1], [1, 6])
CASES = [
  ((7,), [W_OVERLAP]),
  ((7,), [W_TILE]),
  ((7,), [W_DISJOINT]),
  ((6, 7), [H_OVERLAP, W_OVERLAP]),
  ((6, 7), [H_TILE, W_DISJOINT]),
  ((6, 7), [H_DISJOINT, W_TILE]),
  ((6, 7), [H_OVERLAP, W_TILE]),
]


def _dims(spatial, windows):
  """static_dim per spatial dim of a (B, *spatial, C) array, innermost first."""
  n = len(spatial)
  return [
    separable.static_dim(
      1 + d, n + 2, np.array(windows[d][0]), np.array(windows[d][1]), int(np.prod(spatial[d + 1 :]))
    )
    for d in reversed(range(n))
  ]


def _ref_box_max(x, windows, ct):
  """(values, flat indices, gradient of sum(values * ct)) by a loop over every window."""
  B, spatial, C = x.shape[0], x.shape[1:-1], x.shape[-1]
  outs = [len(s) for s, _ in windows]
  values, index = np.zeros((B, *outs, C)), np.zeros((B, *outs, C), np.int64)
  grad = np.zeros(x.shape)
  for b, c, o in itertools.product(range(B), range(C), itertools.product(*map(range, outs))):
    ranges = [range(windows[d][0][i], windows[d][1][i]) for d, i in enumerate(o)]
    members = list(itertools.product(*ranges))  # row-major window order
    k = _select([x[(b, *p, c)] for p in members])
    values[(b, *o, c)] = x[(b, *members[k], c)]
    index[(b, *o, c)] = np.ravel_multi_index(members[k], spatial)
    grad[(b, *members[k], c)] += ct[(b, *o, c)]
  return values, index, grad


@pytest.mark.parametrize("special", [None, "nan_inf"])
@pytest.mark.parametrize("spatial,windows", CASES)
def test_separable_max_values_indices_grad(spatial, windows, special):
  """Values, flat indices and VJP of separable_max match the per-window loop."""
  rng = np.random.default_rng(sum(spatial) + len(windows[0][0]))
  x = _input(rng, np.float32, (2, *spatial, 3)) if special else ties(rng, (2, *spatial, 3))
  dims = _dims(spatial, windows)
  ct = rng.normal(size=(2, *[len(s) for s, _ in windows], 3)).astype(np.float32)
  want_values, want_index, want_grad = _ref_box_max(x, windows, ct)
  values, index = J(separable.separable_max, dims, with_indices=True)(x)
  np.testing.assert_array_equal(values, want_values.astype(np.float32))
  np.testing.assert_array_equal(index, want_index)
  assert index.dtype == jnp.int32

  def values_and_grad(v, c):
    out, vjp = jax.vjp(lambda u: separable.separable_max(u, dims, with_indices=False), v)
    assert out[1] is None
    return out[0], vjp((c, None))[0]

  plain, grad = jax.jit(values_and_grad)(x, ct)
  np.testing.assert_array_equal(plain, values)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, np.int32])
def test_separable_max_other_dtypes(dtype):
  """bfloat16 (with NaN/inf) and int32 inputs keep their dtype and the selection rule."""
  rng = np.random.default_rng(5)
  x = _input(rng, dtype, (2, 6, 7, 2))
  dims = _dims((6, 7), [H_OVERLAP, W_OVERLAP])
  want_values, want_index, _ = _ref_box_max(
    np.asarray(x, np.float64), [H_OVERLAP, W_OVERLAP], np.zeros((2, 3, 5, 2))
  )
  values, index = J(separable.separable_max, dims, with_indices=True)(x)
  assert values.dtype == dtype
  np.testing.assert_array_equal(np.asarray(values, np.float64), want_values)
  np.testing.assert_array_equal(index, want_index)
