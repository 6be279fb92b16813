"""The fast max/min pool gradients (jaxpool/_src/reduce.py) against two references.

* `tests/reference.max_pool_grad`: numpy loops with PyTorch's routing rule (first
  maximum in row-major window order, last NaN, padding never), on random
  geometries (1-D to 3-D, padding, dilation, ceil_mode, overlapping and tiling
  windows) with ties: ReLU-like integer inputs, all-equal windows, NaN windows,
  -inf, windows entirely in the padding.
* XLA's own rule: `jax.grad` of `flax.linen.max_pool` (select-and-scatter), which
  is a valid reference on inputs without ties.

Plus: jvp is the transpose of the VJP, second order behaves as documented (the
Hessian of a piecewise-linear pool is zero; Hessians of losses match XLA's), and
the compiled gradient has no select-and-scatter.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpool
from jaxpool._src import reduce
from jaxpool._src.machinery import geometry

try:
  from tests import reference
except ImportError:  # tests/ itself on sys.path
  import reference

nn = pytest.importorskip("flax.linen")


def _pool_and_grad(pool, x, cotangent, **kw):
  """Pool and VJP, compiled as one program (much cheaper than op-by-op dispatch)."""

  def run(v, c):
    y, vjp = jax.vjp(lambda u: pool(u, **kw), v)
    return y, vjp(c.astype(y.dtype))[0]

  y, grad = jax.jit(run)(jnp.asarray(x), jnp.asarray(cotangent))
  return np.asarray(y), np.asarray(grad)


def _random_geometry(rng, nd):
  window = tuple(int(v) for v in rng.integers(1, 4, nd))
  strides = tuple(int(v) for v in rng.integers(1, 4, nd))
  dilation = tuple(int(v) for v in rng.integers(1, 3, nd))
  spatial = tuple(
    d * (w - 1) + 1 + int(rng.integers(1, 4 if nd < 3 else 3)) for w, d in zip(window, dilation)
  )
  padding = tuple((int(rng.integers(0, w)), int(rng.integers(0, w))) for w in window)
  ceil_mode = bool(rng.random() < 0.4)
  return dict(
    window_shape=window, strides=strides, padding=padding, dilation=dilation, ceil_mode=ceil_mode
  ), spatial


def _tied_input(rng, shape):
  """ReLU-like small integers (many ties and zero windows), some NaN, -inf, +inf."""
  x = np.maximum(rng.integers(-3, 3, shape), 0).astype(np.float32)
  flat = x.reshape(-1)
  idx = rng.permutation(flat.size)
  flat[idx[:2]] = np.nan
  flat[idx[2:4]] = -np.inf
  flat[idx[4]] = np.inf
  x[0, ..., 0] = 1.0  # one all-equal plane: every window a full tie
  return x


@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_random_geometries_with_ties_match_reference(kind, nd):
  rng = np.random.default_rng(100 * nd + (kind == "min"))
  pool = jaxpool.max_pool if kind == "max" else jaxpool.min_pool
  sign = 1 if kind == "max" else -1
  for _ in range(4 if nd < 3 else 2):
    kw, spatial = _random_geometry(rng, nd)
    x = _tied_input(rng, (2, *spatial, 2))
    if kind == "min":
      x = -x
    ref_pool = reference.max_pool if kind == "max" else reference.min_pool
    args = (kw["window_shape"], kw["strides"], kw["padding"])
    opts = dict(dilation=kw["dilation"], ceil_mode=kw["ceil_mode"])
    y_ref = ref_pool(x, *args, **opts)
    cotangent = rng.standard_normal(y_ref.shape).astype(np.float32)
    y, grad = _pool_and_grad(pool, x, cotangent, **kw)
    np.testing.assert_array_equal(y, y_ref.astype(np.float32), err_msg=str(kw))
    expected = reference.max_pool_grad(x, cotangent, *args, sign=sign, **opts)
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-6, err_msg=str(kw))


@pytest.mark.parametrize(
  "kw",
  [
    dict(window_shape=(2, 2), strides=(2, 2)),  # tiling
    dict(window_shape=(2, 3), strides=(2, 3), padding=((1, 0), (0, 2))),
    dict(window_shape=(3, 3), strides=(3, 3), ceil_mode=True),  # tiling + overhang
    dict(window_shape=(3, 3), strides=(2, 2), padding="SAME"),  # overlapping
    dict(window_shape=(2, 2), strides=(1, 1), padding=((4, 0), (0, 0))),  # all-pad windows
  ],
)
def test_named_geometries_with_ties_match_reference(kw):
  rng = np.random.default_rng(7)
  x = _tied_input(rng, (3, 7, 8, 2))
  pad = kw.get("padding", "VALID")
  opts = dict(ceil_mode=kw.get("ceil_mode", False))
  y_ref = reference.max_pool(x, kw["window_shape"], kw["strides"], pad, **opts)
  cotangent = rng.standard_normal(y_ref.shape).astype(np.float32)
  _, grad = _pool_and_grad(jaxpool.max_pool, x, cotangent, **kw)
  expected = reference.max_pool_grad(x, cotangent, kw["window_shape"], kw["strides"], pad, **opts)
  np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
  "window, strides, padding",
  [
    ((2, 2), (2, 2), "VALID"),
    ((3, 3), (2, 2), "SAME"),
    ((3, 3), (1, 1), ((1, 1), (1, 1))),
    ((2, 3), (2, 1), "VALID"),
    ((3,), (2,), "SAME"),
  ],
)
def test_matches_xla_rule_without_ties(window, strides, padding):
  rng = np.random.default_rng(3)
  shape = (2, *(7 for _ in window), 3)
  x = rng.permutation(np.prod(shape)).reshape(shape).astype(np.float32)  # no ties
  ours = lambda v: jaxpool.max_pool(v, window, strides, padding)
  xla = lambda v: nn.max_pool(v, window, strides, padding)
  cotangent = jnp.asarray(rng.standard_normal(xla(x).shape), jnp.float32)
  t = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  both = lambda f: jax.jit(lambda v, c, t: (jax.vjp(f, v)[1](c)[0], jax.jvp(f, (v,), (t,))[1]))
  g_ours, jvp_ours = both(ours)(x, cotangent, t)
  g_xla, jvp_xla = both(xla)(x, cotangent, t)
  overlapping = any(s < w for s, w in zip(strides, window))
  if overlapping:
    # An element selected by several windows sums their cotangents, in an order that
    # differs between XLA's scatter (atomics on GPU) and ours: equal up to the
    # rounding of at most one addition per window holding the element.
    bound = np.prod(window) * np.finfo(np.float32).eps * np.max(np.abs(cotangent))
    np.testing.assert_allclose(np.asarray(g_ours), np.asarray(g_xla), rtol=0, atol=bound)
    # ...and the same elements receive gradient (a wrong selection moves a whole cotangent)
    np.testing.assert_array_equal(np.asarray(g_ours) != 0, np.asarray(g_xla) != 0)
  else:
    np.testing.assert_array_equal(np.asarray(g_ours), np.asarray(g_xla))
  # forward mode too: the jvp picks the same element as XLA's select-and-gather
  np.testing.assert_array_equal(np.asarray(jvp_ours), np.asarray(jvp_xla))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_with_ties(dtype):
  rng = np.random.default_rng(5)
  x = _tied_input(rng, (2, 6, 6, 2))
  for kw in (
    dict(window_shape=(2, 2), strides=(2, 2)),
    dict(window_shape=(3, 3), strides=(2, 2), padding="SAME"),
  ):
    pad = kw.get("padding", "VALID")
    y_ref = reference.max_pool(x, kw["window_shape"], kw["strides"], pad)
    cotangent = rng.integers(-4, 5, y_ref.shape).astype(np.float32)  # exact in bf16
    _, grad = _pool_and_grad(jaxpool.max_pool, x.astype(dtype), cotangent, **kw)
    assert grad.dtype == dtype
    expected = reference.max_pool_grad(x, cotangent, kw["window_shape"], kw["strides"], pad)
    np.testing.assert_array_equal(grad.astype(np.float32), expected.astype(np.float32))


def test_float64_under_x64():
  rng = np.random.default_rng(6)
  with jax.enable_x64(True):
    x = _tied_input(rng, (2, 6, 5, 2)).astype(np.float64)
    y_ref = reference.max_pool(x, (3, 2), (2, 1), "SAME")
    cotangent = rng.standard_normal(y_ref.shape)
    y, grad = _pool_and_grad(
      jaxpool.max_pool, x, cotangent, window_shape=(3, 2), strides=(2, 1), padding="SAME"
    )
    assert grad.dtype == np.float64
    np.testing.assert_allclose(
      grad, reference.max_pool_grad(x, cotangent, (3, 2), (2, 1), "SAME"), rtol=1e-12
    )


def test_layouts_and_batch_dims():
  rng = np.random.default_rng(8)
  x = _tied_input(rng, (2, 6, 6, 3))
  y_ref = reference.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
  cotangent = rng.standard_normal(y_ref.shape).astype(np.float32)
  expected = reference.max_pool_grad(x, cotangent, (3, 3), (2, 2), ((1, 1), (1, 1)))
  kw = dict(window_shape=(3, 3), strides=(2, 2), padding=1)
  # channels first (PyTorch layout)
  _, g = _pool_and_grad(
    jaxpool.max_pool, np.moveaxis(x, -1, 1), np.moveaxis(cotangent, -1, 1), channel_axis=1, **kw
  )
  np.testing.assert_allclose(np.moveaxis(g, 1, -1), expected, rtol=1e-6)
  # no batch dim, and two batch dims
  _, g = _pool_and_grad(jaxpool.max_pool, x[1], cotangent[1], **kw)
  np.testing.assert_allclose(g, expected[1], rtol=1e-6)
  _, g = _pool_and_grad(jaxpool.max_pool, x[None], cotangent[None], **kw)
  np.testing.assert_allclose(g[0], expected, rtol=1e-6)
  # vmap over the batch
  g = jax.jit(jax.vmap(lambda v, c: jax.vjp(lambda u: jaxpool.max_pool(u, **kw), v)[1](c)[0]))(
    jnp.asarray(x), jnp.asarray(cotangent)
  )
  np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-6)


@pytest.mark.parametrize(
  "kw",
  [
    dict(window_shape=(2, 2), strides=(2, 2)),
    dict(window_shape=(3, 3), strides=(2, 2), padding="SAME", dilation=(1, 2)),
  ],
)
def test_jvp_is_the_transpose_of_the_vjp_with_ties(kw):
  rng = np.random.default_rng(9)
  x = jnp.asarray(_tied_input(rng, (2, 8, 8, 2)))
  f = lambda v: jaxpool.max_pool(v, **kw)
  t = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
  c = jnp.asarray(rng.standard_normal(f(x).shape), jnp.float32)
  jvp_out, vjp_out = jax.jit(lambda x, t, c: (jax.jvp(f, (x,), (t,))[1], jax.vjp(f, x)[1](c)[0]))(
    x, t, c
  )
  np.testing.assert_allclose(float(jnp.vdot(jvp_out, c)), float(jnp.vdot(t, vjp_out)), rtol=1e-5)


def test_second_order():
  rng = np.random.default_rng(10)
  x = jnp.asarray(rng.permutation(2 * 5 * 5).reshape(2, 5, 5, 1).astype(np.float32))
  kw = dict(window_shape=(3, 3), strides=(2, 2), padding="SAME")
  c = jnp.asarray(rng.standard_normal((2, 3, 3, 1)), jnp.float32)
  # the pool is piecewise linear: the gradient of a gradient is zero
  inner = lambda v: jax.grad(lambda u: jnp.vdot(jaxpool.max_pool(u, **kw), c))(v)
  outer = jax.jit(jax.grad(lambda v: jnp.sum(inner(v) * jnp.arange(v.size).reshape(v.shape))))(x)
  np.testing.assert_array_equal(np.asarray(outer), 0.0)
  # the Hessian of a smooth loss of it equals XLA's (no ties here)
  loss = lambda pool: lambda v: jnp.sum(pool(v, **kw) ** 2)
  ours = jax.jit(jax.hessian(loss(jaxpool.max_pool)))(x[:1])
  xla = jax.jit(
    jax.hessian(loss(lambda v, **k: nn.max_pool(v, k["window_shape"], k["strides"], k["padding"])))
  )(x[:1])
  np.testing.assert_allclose(np.asarray(ours), np.asarray(xla), rtol=1e-6)


@pytest.mark.parametrize(
  "kw",
  [
    dict(window_shape=(2, 2), strides=(2, 2)),
    dict(window_shape=(3, 3), strides=(2, 2), padding="SAME"),
  ],
)
def test_no_select_and_scatter_in_the_compiled_gradient(kw):
  x = jnp.zeros((2, 8, 8, 3))
  grad = jax.jit(jax.grad(lambda v: jnp.sum(jaxpool.max_pool(v, **kw) ** 2)))
  hlo = grad.lower(x).compile().as_text()
  assert "select-and-scatter" not in hlo and "scatter(" not in hlo


def test_selected_offset_packs_the_first_maximum():
  x = jnp.asarray([[3.0], [5.0], [5.0], [1.0], [np.nan], [2.0], [np.nan], [0.0]])
  geom = geometry.resolve(x.shape, (4,), 2, ((0, 2),), fn="test")
  y = reduce._reduce_extremum(x, geom, "max")
  index = reduce.selected_offset(x, y, geom, "max")
  # windows [3 5 5 1], [5 1 nan 2], [nan 2 nan 0], [nan 0 pad pad]
  np.testing.assert_array_equal(np.asarray(index)[:, 0], [1, 2, 2, 0])
  assert index.dtype == jnp.uint8


@pytest.mark.parametrize(
  "kw",
  [
    dict(window_shape=(2, 2), strides=(2, 2)),
    dict(window_shape=(3, 3), strides=(2, 2), padding="SAME"),
    dict(window_shape=(3, 2), strides=(1, 2), padding=((1, 1), (0, 1))),
  ],
)
def test_sum_and_avg_pool_gradients_match_xla(kw):
  rng = np.random.default_rng(11)
  x = jnp.asarray(rng.standard_normal((2, 7, 6, 3)), jnp.float32)
  w, s, p = kw["window_shape"], kw["strides"], kw.get("padding", "VALID")
  for ours, xla in (
    (lambda v: jaxpool.avg_pool(v, **kw), lambda v: nn.avg_pool(v, w, s, p)),
    (lambda v: jaxpool.sum_pool(v, **kw), lambda v: nn.pooling.pool(v, 0.0, jax.lax.add, w, s, p)),
  ):
    c = jnp.asarray(rng.standard_normal(xla(x).shape), jnp.float32)
    g_ours = jax.jit(lambda v, c: jax.vjp(ours, v)[1](c)[0])(x, c)
    g_xla = jax.jit(lambda v, c: jax.vjp(xla, v)[1](c)[0])(x, c)
    np.testing.assert_allclose(np.asarray(g_ours), np.asarray(g_xla), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
  "kw",
  [
    dict(window_shape=(3, 2), strides=(2, 2), padding=1, ceil_mode=True, count_include_pad=False),
    dict(window_shape=(2, 3), strides=(2, 1), padding=((0, 1), (1, 1)), dilation=(2, 1)),
  ],
)
def test_avg_pool_vjp_is_the_transpose_of_the_reference(kw):
  """avg_pool is linear: <avg_pool(t), c> = <t, vjp(c)>, with the numpy reference."""
  rng = np.random.default_rng(12)
  t = rng.standard_normal((2, 7, 6, 2))
  opts = {k: v for k, v in kw.items() if k in ("dilation", "ceil_mode")}
  forward = reference.avg_pool(
    t,
    kw["window_shape"],
    kw["strides"],
    kw["padding"],
    count_include_pad=kw.get("count_include_pad", True),
    **opts,
  )
  c = rng.standard_normal(forward.shape)
  g = jax.jit(lambda v, c: jax.vjp(lambda u: jaxpool.avg_pool(u, **kw), v)[1](c)[0])(
    jnp.asarray(t, jnp.float32), jnp.asarray(c, jnp.float32)
  )
  np.testing.assert_allclose(
    float(np.vdot(forward, c)), float(np.vdot(t, np.asarray(g))), rtol=1e-5
  )


@pytest.mark.parametrize(
  "kw",
  [
    dict(window_shape=(3,), strides=(1,), padding=1),
    dict(window_shape=(3,), strides=(2,), padding=1, ceil_mode=True),
    dict(window_shape=(2,), strides=(3,), padding=((0, 2),), dilation=(2,)),
  ],
)
def test_one_dimensional_sum_pool_vjp_is_the_transpose_of_the_reference(kw):
  """1-D sum_pool (XLA's own rule without dilation, `reduce._xla_rule_faster`), per
  entry of the Jacobian: <sum_pool(e_i), c> = vjp(c)_i, against the numpy loop."""
  rng = np.random.default_rng(13)
  n = 9
  opts = {k: v for k, v in kw.items() if k in ("dilation", "ceil_mode")}
  basis = np.eye(n).reshape(n, 1, n, 1)  # n one-hot inputs of shape (1, 9, 1)
  jacobian = np.stack(
    [
      reference.sum_pool(e, kw["window_shape"], kw["strides"], kw["padding"], **opts)[0, :, 0]
      for e in basis
    ],
    axis=1,
  )
  c = rng.standard_normal((1, jacobian.shape[0], 1))
  x = jnp.asarray(rng.standard_normal((1, n, 1)), jnp.float32)
  g = jax.jit(lambda v, c: jax.vjp(lambda u: jaxpool.sum_pool(u, **kw), v)[1](c)[0])(
    x, jnp.asarray(c, jnp.float32)
  )
  np.testing.assert_allclose(np.asarray(g)[0, :, 0], jacobian.T @ c[0, :, 0], rtol=1e-5, atol=1e-6)
