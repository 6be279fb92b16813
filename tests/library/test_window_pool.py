"""jaxpool.window_pool: values and gradients against a numpy loop over the windows.

The reference walks every output position, collects its window in row-major order
(padding = pad_value, from the geometry of tests/reference.py), applies the numpy
form of the pool and, for the gradient, its closed-form derivative per window
(median: 1 or 1/2 at the middle elements; top-k mean: 1/k at the k largest;
log-sum-exp: the softmax weights), added onto the input elements (overlapping
windows add up, padding drops out).
"""

import doctest
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxpool
from jaxpool._src import pool as pool_module
from jaxpool._src import window_pool as window_pool_module
from tests import reference
from tests.helpers import ties

# (input shape channels-last, window, strides, padding, dilation, ceil_mode)
GEOMETRIES = [
  ((2, 7, 6, 3), (2, 2), (2, 2), "VALID", None, False),
  ((2, 7, 6, 3), (3, 3), (2, 2), "SAME", None, False),
  ((2, 8, 5, 2), (3, 2), (2, 1), ((1, 2), (0, 1)), None, False),
  ((2, 9, 8, 2), (3, 3), (2, 3), 1, (2, 1), True),
  ((3, 11, 2), (4,), (3,), 2, None, True),
  ((1, 5, 4, 6, 2), (2, 3, 2), (1, 2, 2), "SAME", None, False),
  ((2, 6, 6, 1), (2, 3), 1, ((2, 0), (1, 1)), (2, 1), False),
]


def geometry_id(g):
  shape, window, strides, padding, dilation, ceil = g
  return f"{shape}-w{window}-s{strides}-p{padding}-d{dilation}-{'ceil' if ceil else 'floor'}"


def numpy_windows(x, window, strides, padding, dilation, ceil_mode, pad_value):
  """(windows (B, *out, C, K) with pad_value in the padding, mask (*out, K),
  positions: per output position and k the input position or None)."""
  spatial = x.shape[1:-1]
  strides, dilation, pads, outs = reference.window_layout(
    spatial, window, strides, padding, dilation, ceil_mode
  )
  b, c = x.shape[0], x.shape[-1]
  K = int(np.prod(window))
  windows = np.full((b, *outs, c, K), pad_value, np.float64)
  mask = np.zeros((*outs, K), bool)
  positions = {}
  for o in itertools.product(*map(range, outs)):
    for k, off in enumerate(itertools.product(*map(range, window))):
      pos = tuple(
        oi * s - lo + ki * d for oi, s, (lo, _), ki, d in zip(o, strides, pads, off, dilation)
      )
      if all(0 <= p < L for p, L in zip(pos, spatial)):
        windows[(slice(None), *o, slice(None), k)] = x[(slice(None), *pos, slice(None))]
        mask[(*o, k)] = True
        positions[o, k] = pos
  return windows, mask, positions


def numpy_pool_and_grad(x, cot, geometry, pad_value, value_fn, grad_fn):
  """Values (B, *out, C) and the gradient of sum(cot * pool) by the loop over the
  windows (`value_fn`, `grad_fn` take one window of every (batch, channel):
  values (B, C, K) and the mask (K,) of its input elements)."""
  _, window, strides, padding, dilation, ceil = geometry
  x = np.asarray(x, np.float64)
  cot = np.asarray(cot, np.float64)
  w, mask, positions = numpy_windows(x, window, strides, padding, dilation, ceil, pad_value)
  outs = w.shape[1:-2]
  y = np.zeros(w.shape[:-1])
  grad = np.zeros_like(x)
  for o in itertools.product(*map(range, outs)):
    m = mask[o]
    values = w[(slice(None), *o)]  # (B, C, K)
    y[(slice(None), *o)] = value_fn(values, m)
    local = grad_fn(values, m) * cot[(slice(None), *o)][..., None]
    for k in range(values.shape[-1]):
      if m[k]:
        grad[(slice(None), *positions[o, k])] += local[..., k]
  return y, grad


def one_hot_of_sorted(values, ranks, weight):
  """weight at the elements of rank `ranks` (ascending order) of every window."""
  order = np.argsort(values, axis=-1, kind="stable")
  g = np.zeros_like(values)
  np.put_along_axis(g, order[..., ranks], weight, axis=-1)
  return g


def median_grad(values, mask):
  n = values.shape[-1]
  if n % 2:
    return one_hot_of_sorted(values, [n // 2], 1.0)
  return one_hot_of_sorted(values, [n // 2 - 1, n // 2], 0.5)


def masked(fn):
  """`fn` of the window's input elements only; gradient 0 at the padding."""

  def value(values, mask):
    return fn[0](values[..., mask], None)

  def grad(values, mask):
    g = np.zeros_like(values)
    g[..., mask] = fn[1](values[..., mask], None)
    return g

  return value, grad


def top_k_mean(k):
  def value(values, mask):
    return np.sort(values, axis=-1)[..., -k:].mean(-1)

  def grad(values, mask):
    return one_hot_of_sorted(values, list(range(values.shape[-1] - k, values.shape[-1])), 1 / k)

  return value, grad


def smooth_max(t):
  def value(values, mask):
    v = values / t
    top = v.max(-1, keepdims=True)
    return t * (top[..., 0] + np.log(np.exp(v - top).sum(-1)))

  def grad(values, mask):
    e = np.exp(values / t - (values / t).max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)

  return masked((value, grad))


def jax_top2(windows):
  return jnp.mean(jax.lax.top_k(windows, 2)[0], axis=-1)


def jax_smooth_max(windows, mask):
  return 0.3 * jax.nn.logsumexp(windows / 0.3, axis=-1, where=mask)


POOLS = {
  # name: (jax fn, pad_value, numpy value, numpy grad)
  "median": (jnp.median, 0.0, lambda v, m: np.median(v, axis=-1), median_grad),
  "top2_mean": (jax_top2, 0.0, *top_k_mean(2)),
  "smooth_max": (jax_smooth_max, 0.0, *smooth_max(0.3)),
}


def channels_first(geometry):
  """The same geometry with the input as (N, C, *spatial)."""
  shape = geometry[0]
  return ((shape[0], shape[-1], *shape[1:-1]), *geometry[1:])


@pytest.mark.parametrize("name", sorted(POOLS))
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=geometry_id)
def test_values_and_gradients_equal_a_numpy_loop(name, geometry):
  fn, pad_value, value_fn, grad_fn = POOLS[name]
  shape, window, strides, padding, dilation, ceil = geometry
  rng = np.random.default_rng(abs(hash((name, geometry_id(geometry)))) % 2**32)
  x = rng.normal(size=shape).astype(np.float32)

  def pool(v):
    return jaxpool.window_pool(
      fn, v, window, strides, padding, pad_value=pad_value, dilation=dilation, ceil_mode=ceil
    )

  y = jax.jit(pool)(x)
  cot = rng.normal(size=y.shape).astype(np.float32)
  grad = jax.jit(lambda v, c: jax.vjp(pool, v)[1](c)[0])(x, cot)
  y_ref, grad_ref = numpy_pool_and_grad(x, cot, geometry, pad_value, value_fn, grad_fn)
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(grad, grad_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(POOLS))
def test_channels_first_equals_the_loop(name):
  fn, pad_value, value_fn, grad_fn = POOLS[name]
  geometry = GEOMETRIES[3]
  shape, window, strides, padding, dilation, ceil = channels_first(geometry)
  rng = np.random.default_rng(1)
  x = rng.normal(size=shape).astype(np.float32)

  def pool(v):
    return jaxpool.window_pool(
      fn,
      v,
      window,
      strides,
      padding,
      pad_value=pad_value,
      dilation=dilation,
      ceil_mode=ceil,
      channel_axis=1,
    )

  y = jax.jit(pool)(x)
  cot = rng.normal(size=y.shape).astype(np.float32)
  grad = jax.jit(lambda v, c: jax.vjp(pool, v)[1](c)[0])(x, cot)
  last = lambda a: np.moveaxis(a, 1, -1)
  y_ref, g_ref = numpy_pool_and_grad(last(x), last(cot), geometry, pad_value, value_fn, grad_fn)
  np.testing.assert_allclose(last(y), y_ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(last(grad), g_ref, rtol=1e-4, atol=1e-5)


def test_median_with_nan_padding_skips_the_padding():
  """pad_value=nan with jnp.nanmedian: a median of the input elements only."""
  geometry = GEOMETRIES[3]
  shape, window, strides, padding, dilation, ceil = geometry
  rng = np.random.default_rng(3)
  x = rng.normal(size=shape).astype(np.float32)

  def pool(v):
    return jaxpool.window_pool(
      jnp.nanmedian,
      v,
      window,
      strides,
      padding,
      pad_value=jnp.nan,
      dilation=dilation,
      ceil_mode=ceil,
    )

  y, vjp = jax.vjp(pool, jnp.asarray(x))
  cot = rng.normal(size=y.shape).astype(np.float32)
  median = masked((lambda v, m: np.median(v, axis=-1), median_grad))
  y_ref, g_ref = numpy_pool_and_grad(x, cot, geometry, np.nan, *median)
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(vjp(jnp.asarray(cot))[0], g_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("geometry", GEOMETRIES[:4], ids=geometry_id)
def test_mask_marks_the_input_elements(geometry):
  shape, window, strides, padding, dilation, ceil = geometry
  x = np.zeros(shape, np.float32)
  seen = {}

  def count(windows, mask):
    seen["shapes"] = (windows.shape, mask.shape, mask.dtype)
    return jnp.sum(mask, axis=-1).astype(windows.dtype)

  y = jaxpool.window_pool(count, x, window, strides, padding, dilation=dilation, ceil_mode=ceil)
  _, mask, _ = numpy_windows(x, window, strides, padding, dilation, ceil, 0.0)
  expected = np.broadcast_to(mask.sum(-1)[None, ..., None], y.shape)
  np.testing.assert_array_equal(y, expected)
  windows_shape, mask_shape, dtype = seen["shapes"]
  assert windows_shape == mask_shape == (*y.shape, int(np.prod(window)))
  assert dtype == jnp.bool_


def test_windows_are_row_major_with_pad_value():
  x = jnp.arange(12.0).reshape(1, 3, 4, 1)
  w = jaxpool.window_pool(
    lambda v: v[..., 1] * 100 + v[..., 2], x, (2, 2), 2, ((1, 0), (0, 0)), pad_value=-1.0
  )
  # window (0, 0) rows -1 (padding) and 0; offsets (0, 1) = pad, (1, 0) = x[0, 0] = 0
  np.testing.assert_array_equal(
    w[0, :, :, 0], [[-100.0 + 0.0, -100.0 + 2.0], [500.0 + 8.0, 700.0 + 10.0]]
  )


# ----------------------------------------------------------------------------
# jnp.max / min / sum / mean: the elementwise form equals the stacked form


def stacked(reduction):
  """The same reduction, not recognised: goes through the stacked windows."""
  return lambda windows, axis: reduction(windows, axis=axis)


# tiling (reshaped blocks), overlapping with padding, dilation and ceil_mode, 1-d, K = 36
FAST_GEOMETRIES = [GEOMETRIES[i] for i in (0, 1, 3, 4)] + [
  ((2, 13, 13, 2), (6, 6), (3, 3), 2, None, True)
]


def test_numpy_reductions_are_recognised():
  for fn in (jnp.max, jnp.amax, jnp.min, jnp.amin, jnp.sum, jnp.mean):
    assert fn in window_pool_module._VIEW_REDUCTIONS


@pytest.mark.parametrize("reduction", [jnp.max, jnp.min, jnp.sum, jnp.mean])
@pytest.mark.parametrize("geometry", FAST_GEOMETRIES, ids=geometry_id)
def test_numpy_reductions_equal_the_stacked_windows_with_ties(reduction, geometry):
  shape, window, strides, padding, dilation, ceil = geometry
  rng = np.random.default_rng(7)
  x = jnp.asarray(ties(rng, shape, magnitude=1))  # many ties, also with the padding 0
  pad = 0.0 if reduction in (jnp.sum, jnp.mean) else -1.0
  options = dict(pad_value=pad, dilation=dilation, ceil_mode=ceil)

  def fast(v):
    return jaxpool.window_pool(reduction, v, window, strides, padding, **options)

  def slow(v):
    return jaxpool.window_pool(stacked(reduction), v, window, strides, padding, **options)

  def derivatives(f, c, t):
    return jax.jit(lambda c, t: (jax.vjp(f, x)[1](c)[0], jax.jvp(f, (x,), (t,))[1]))(c, t)

  y, y_slow = fast(x), slow(x)
  np.testing.assert_allclose(y, y_slow, rtol=1e-6)
  cot = jnp.asarray(rng.normal(size=y.shape).astype(np.float32))
  t = jnp.asarray(rng.normal(size=shape).astype(np.float32))
  for a, b in zip(derivatives(fast, cot, t), derivatives(slow, cot, t)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_max_of_nan_windows_is_nan_with_nan_gradient_as_jnp_max():
  x = jnp.array([[1.0], [jnp.nan], [2.0], [3.0]])
  for fn in (jnp.max, stacked(jnp.max)):
    y, vjp = jax.vjp(lambda v: jaxpool.window_pool(fn, v, (2,), 2), x)
    g = vjp(jnp.ones_like(y))[0]
    assert np.isnan(y[0, 0]) and y[1, 0] == 3.0
    assert np.isnan(g[0, 0]) and np.isnan(g[1, 0]) and list(g[2:, 0]) == [0.0, 1.0]


def test_max_in_bfloat16():
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3)).astype(jnp.bfloat16)
  y = jaxpool.window_pool(jnp.max, x, (3, 3), 2, "SAME", pad_value=-jnp.inf)
  assert y.dtype == jnp.bfloat16
  np.testing.assert_array_equal(y, jaxpool.max_pool(x, (3, 3), 2, "SAME"))
  g = jax.grad(lambda v: jaxpool.window_pool(jnp.mean, v, (2, 2), 2).astype(jnp.float32).sum())(x)
  np.testing.assert_allclose(g.astype(np.float32), 0.25)


def test_higher_order_derivatives():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(1, 5, 5, 1)).astype(np.float32))
  for fn, pad in ((jax_smooth_max, 0.0), (jnp.max, -jnp.inf)):
    f = jax.jit(
      lambda v, fn=fn, pad=pad: jaxpool.window_pool(fn, v, (3, 3), 2, 1, pad_value=pad) ** 2
    )
    check_grads(f, (x,), order=2, modes=("fwd", "rev"), atol=2e-2, rtol=2e-2, eps=1e-3)


def test_learnt_parameter_closed_over_by_fn_gets_its_gradient():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 4, 4, 1)).astype(np.float32))

  def loss(t):
    fn = lambda w: t * jax.nn.logsumexp(w / t, axis=-1)
    return jaxpool.window_pool(fn, x, (2, 2), 2).sum()

  eps = 1e-3
  numeric = (loss(0.5 + eps) - loss(0.5 - eps)) / (2 * eps)
  np.testing.assert_allclose(jax.grad(loss)(0.5), numeric, rtol=1e-2)


# ----------------------------------------------------------------------------
# jit, vmap


@pytest.mark.parametrize("fn", [jnp.median, jax_top2, jax_smooth_max, jnp.max])
def test_jit_and_vmap(fn):
  rng = np.random.default_rng(5)
  xs = jnp.asarray(rng.normal(size=(3, 2, 7, 6, 2)).astype(np.float32))
  pool = lambda v: jaxpool.window_pool(fn, v, (3, 3), 2, "SAME", pad_value=-2.0)
  eager = jnp.stack([pool(v) for v in xs])
  np.testing.assert_allclose(jax.jit(jax.vmap(pool))(xs), eager, rtol=1e-6)
  loss = lambda v: jnp.sum(pool(v) ** 2)
  grads = jnp.stack([jax.grad(loss)(v) for v in xs])
  np.testing.assert_allclose(jax.jit(jax.vmap(jax.grad(loss)))(xs), grads, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# errors


def test_errors_name_the_function_and_the_argument():
  x = jnp.ones((1, 4, 4, 1))
  with pytest.raises(TypeError, match="window_pool: fn must be a callable"):
    jaxpool.window_pool("median", x, (2, 2))
  with pytest.raises(ValueError, match=r"window_pool: fn must reduce .* returned shape \(\)"):
    jaxpool.window_pool(lambda w: jnp.sum(w), x, (2, 2))
  with pytest.raises(ValueError, match="window_pool: pad_value=-inf"):
    jaxpool.window_pool(
      jnp.max, jnp.ones((1, 4, 4, 1), jnp.int32), (2, 2), padding=1, pad_value=-jnp.inf
    )
  with pytest.raises(ValueError, match="window_pool: every entry of strides"):
    jaxpool.window_pool(jnp.max, x, (2, 2), strides=0)
  with pytest.raises(TypeError, match="window_pool: inputs must have"):
    jaxpool.window_pool(jnp.max, jnp.ones((1, 4, 4, 1), bool), (2, 2))


def test_integer_inputs():
  x = jnp.arange(16, dtype=jnp.int32).reshape(1, 4, 4, 1)
  y = jaxpool.window_pool(jnp.max, x, (2, 2), 2)
  assert y.dtype == jnp.int32
  np.testing.assert_array_equal(y[0, :, :, 0], [[5, 7], [13, 15]])


@pytest.mark.parametrize("module", [window_pool_module, pool_module])
def test_docstring_examples(module):
  failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
  assert tried > 0 and failures == 0
