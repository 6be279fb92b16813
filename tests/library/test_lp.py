"""lp_pool, l2_pool, gem_pool against numpy loops, closed forms and PyTorch."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxpool
from tests import reference


def lp_reference(x, p, window, strides=None, padding="VALID", mean=False, **kw):
  """(sum |x|^p / c)^(1/p) per window in float64, by plain loops."""

  def reduce(v, inside, declared):
    mag = np.abs(v.astype(np.float64))
    if p == math.inf:
      return mag.max(axis=0)
    total = (mag**p).sum(axis=0)
    if mean:
      total = total / declared.sum()
    return total ** (1 / p)

  return reference.window_pool(x, window, strides, padding, **kw, reduce=reduce)


def gem_reference(x, p, eps, axes):
  c = np.maximum(np.asarray(x, np.float64), eps)
  return np.mean(c**p, axis=axes) ** (1 / p)


def signed_away_from_zero(rng, shape, low=0.5, high=2.0):
  """Random signs and magnitudes in [low, high]: smooth points for finite differences."""
  return (rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)).astype(np.float32)


CONFIGS = [
  # (spatial shape, window, strides, padding, extra kwargs)
  ((7,), (3,), 2, "VALID", {}),
  ((6, 5), (2, 2), 2, "VALID", {}),
  ((6, 5), (3, 3), 2, "SAME", {}),
  ((5, 6), (3, 2), (1, 2), ((1, 0), (2, 1)), {}),
  ((7, 7), (2, 3), 2, 1, {"ceil_mode": True}),
  ((8, 6), (2, 2), 1, "VALID", {"dilation": (2, 1)}),
  ((4, 4, 5), (2, 2, 3), (2, 1, 2), "VALID", {}),
]


@pytest.mark.parametrize("spatial,window,strides,padding,kw", CONFIGS)
@pytest.mark.parametrize(
  "p,mean", [(2, False), (3, True), (4, True), (7, False), (1.5, False), (math.inf, False)]
)
def test_values_match_numpy(spatial, window, strides, padding, kw, p, mean):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, *spatial, 3)).astype(np.float32)
  got = jax.jit(lambda x: jaxpool.lp_pool(x, p, window, strides, padding, mean=mean, **kw))(x)
  want = lp_reference(x, p, window, strides, padding, mean=mean, **kw)
  assert got.shape == want.shape and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


def test_traced_p_values_and_layouts():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 3, 6, 5)).astype(np.float32)  # (N, C, H, W)
  want = lp_reference(np.moveaxis(x, 1, -1), 2.5, (2, 2), 2, "VALID", mean=True)
  got = jax.jit(lambda x, p: jaxpool.lp_pool(x, p, (2, 2), 2, mean=True, channel_axis=1))(
    x, jnp.float32(2.5)
  )
  np.testing.assert_allclose(np.moveaxis(got, 1, -1), want, rtol=2e-5)
  # Two batch dims and no batch dim, channels last.
  xl = np.moveaxis(x, 1, -1)
  got2 = jaxpool.lp_pool(xl.reshape(1, 2, 6, 5, 3), 2.5, (2, 2), 2, mean=True)
  np.testing.assert_allclose(got2[0], want, rtol=2e-5)
  np.testing.assert_allclose(jaxpool.lp_pool(xl[0], 2.5, (2, 2), 2, mean=True), want[0], rtol=2e-5)


def test_l2_pool_and_closed_forms():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 6, 6, 2)).astype(np.float32)
  np.testing.assert_array_equal(
    jaxpool.l2_pool(x, (3, 3), 2, 1), jaxpool.lp_pool(x, 2.0, (3, 3), 2, 1)
  )
  # mean=True with p=1 is avg_pool of |x| (count_include_pad, as avg_pool's default).
  np.testing.assert_allclose(
    jaxpool.lp_pool(x, 1, (3, 3), 2, 1, mean=True),
    jaxpool.avg_pool(np.abs(x), (3, 3), 2, 1),
    rtol=1e-6,
  )
  # p=inf is max_pool of |x|.
  np.testing.assert_array_equal(
    jaxpool.lp_pool(x, math.inf, (3, 3), 2), jaxpool.max_pool(np.abs(x), (3, 3), 2)
  )


@pytest.mark.parametrize(
  "p,mean,window,strides,padding,kw",
  [
    (2.0, False, (3, 3), 2, "SAME", {}),
    (3.0, True, (2, 2), 1, 1, {}),
    (1.5, False, (2, 3), (2, 1), "VALID", {"dilation": (1, 2)}),
    (0.7, True, (2, 2), 2, "VALID", {"ceil_mode": True}),
  ],
)
def test_check_grads_in_x(p, mean, window, strides, padding, kw):
  x = signed_away_from_zero(np.random.default_rng(3), (1, 5, 7, 2))
  f = jax.jit(lambda x: jaxpool.lp_pool(x, p, window, strides, padding, mean=mean, **kw))
  check_grads(f, (x,), order=1, modes=["rev"], atol=5e-3, rtol=5e-3)


def test_check_grads_in_x_and_p_and_second_order():
  x = signed_away_from_zero(np.random.default_rng(4), (1, 6, 5, 2))
  f = jax.jit(lambda x, p: jaxpool.lp_pool(x, p, (3, 2), 2, "SAME", mean=True))
  check_grads(f, (x, jnp.float32(2.7)), order=1, modes=["rev"], atol=5e-3, rtol=5e-3)
  g = jax.jit(lambda x, p: jaxpool.lp_pool(x, p, (2, 2), 1))
  check_grads(g, (x, jnp.float32(1.3)), order=1, modes=["rev"], atol=5e-3, rtol=5e-3)
  # Reverse-over-reverse differentiates the custom backward pass: the tiled one, and
  # for overlapping windows the factorised pass (p = 3, on CPU) and the exact
  # transposed one (p = 0.5 everywhere; p = 3 on accelerators).
  for p, window, strides, padding in [
    (3.0, (2, 2), 2, "VALID"),
    (3.0, (3, 3), 2, "SAME"),
    (0.5, (3, 3), 2, "SAME"),
  ]:
    h = jax.jit(lambda x, p=p, w=window, s=strides, pad=padding: jaxpool.lp_pool(x, p, w, s, pad))
    check_grads(h, (x,), order=2, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_grad_in_p_closed_form():
  # One window [a, b]: y = (a^p + b^p)^(1/p), dy/dp from the textbook derivative.
  a, b, p = 1.5, 2.5, 3.0
  y = (a**p + b**p) ** (1 / p)
  dydp = y * (
    -math.log(a**p + b**p) / p**2 + (a**p * math.log(a) + b**p * math.log(b)) / (p * (a**p + b**p))
  )
  x = jnp.array([[a], [-b]])
  got = jax.grad(lambda p: jaxpool.lp_pool(x, p, (2,))[0, 0])(jnp.float32(p))
  np.testing.assert_allclose(got, dydp, rtol=1e-5)


def test_zero_windows_have_zero_finite_gradient():
  x = np.zeros((1, 4, 4, 1), np.float32)
  x[0, :2, :2, 0] = [[1.0, -2.0], [0.5, 3.0]]  # one window non-zero, three all zero
  cot = np.arange(1.0, 5.0, dtype=np.float32).reshape(1, 2, 2, 1)

  def grads(pool, jit=True):
    grad = jax.grad(lambda x: jnp.sum(pool(x) * cot))
    return (jax.jit(grad) if jit else grad)(jnp.asarray(x))

  # The naive formula is NaN on the all-zero windows ...
  naive = grads(lambda x: jnp.sqrt(jaxpool.sum_pool(x**2, (2, 2), 2)), jit=False)
  assert np.isnan(naive[0, 2:, 2:]).all()
  # ... lp_pool is exactly 0 there and equal to x / y * cot in the non-zero window.
  for p, mean in [(2.0, False), (3.0, True), (0.5, False), (math.inf, False)]:
    g = grads(lambda x: jaxpool.lp_pool(x, p, (2, 2), 2, mean=mean))
    assert np.isfinite(g).all()
    assert (g[0, 2:, :] == 0).all() and (g[0, :, 2:] == 0).all()
  g2 = grads(lambda x: jaxpool.l2_pool(x, (2, 2), 2))
  np.testing.assert_allclose(g2[0, :2, :2, 0], x[0, :2, :2, 0] / math.sqrt(14.25), rtol=1e-6)
  # A traced p: finite gradients in x and p, exactly 0 for an all-zero input.
  gx, gp = jax.grad(lambda x, p: jnp.sum(jaxpool.lp_pool(x, p, (2, 2), 2)), (0, 1))(
    jnp.zeros((1, 4, 4, 1)), jnp.float32(2.0)
  )
  assert (gx == 0).all() and gp == 0
  # Zero elements inside a non-zero window get 0, also for p < 1 (no 0 ** negative).
  gx = jax.grad(lambda x: jaxpool.lp_pool(x, 0.5, (2,))[0, 0])(jnp.array([[0.0], [2.0]]))
  np.testing.assert_array_equal(gx, [[0.0], [1.0]])


def test_p_inf_gradient_goes_to_first_largest_magnitude_with_sign():
  x = jnp.array([[1.0], [-3.0], [3.0], [2.0]])
  g = jax.grad(lambda x: jnp.sum(jaxpool.lp_pool(x, math.inf, (3,), 1)))(x)
  # Windows [1,-3,3] and [-3,3,2]: both pick -3 (first of magnitude 3) -> -1 each.
  np.testing.assert_array_equal(g[:, 0], [0.0, -2.0, 0.0, 0.0])


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_half_precision_large_values_do_not_overflow(dtype):
  rng = np.random.default_rng(5)
  x = rng.uniform(0.1, 1.0, (2, 4, 4, 2)) * rng.choice([-1e4, 1e4], (2, 4, 4, 2))
  x = np.asarray(jnp.asarray(x, dtype).astype(jnp.float32))  # exactly representable
  xh = jnp.asarray(x, dtype)
  for p in (2.0, 8.0):
    got = jax.jit(lambda x: jaxpool.lp_pool(x, p, (2, 2), 2))(xh)
    assert got.dtype == dtype
    np.testing.assert_allclose(got.astype(np.float32), lp_reference(x, p, (2, 2), 2), rtol=1e-2)
  g = jax.jit(
    jax.grad(lambda x, p: jnp.sum(jaxpool.lp_pool(x, p, (2, 2), 2).astype(jnp.float32)), (0, 1))
  )(xh, jnp.float32(8.0))
  assert g[0].dtype == dtype and np.isfinite(np.asarray(g[0], np.float32)).all()
  assert np.isfinite(g[1])


def test_float32_extreme_magnitudes_are_scaled_per_window():
  # 1e30 ** 8 overflows and 1e-30 ** 8 underflows float32; each window is scaled by
  # its own largest magnitude, also in overlapping windows of different scales.
  x = np.array([1e30, -2e30, 1e-30, 3e-30, -1e-30], np.float32).reshape(1, 5, 1)
  for p in (8.0, 3.0, 7.0):  # 3 and 7: the root by Newton's iteration (powers.root)
    got = jaxpool.lp_pool(x, p, (2,), 1)
    np.testing.assert_allclose(got, lp_reference(x.astype(np.float64), p, (2,), 1), rtol=1e-5)
  g = jax.grad(lambda x: jnp.sum(jaxpool.lp_pool(x, 8.0, (2,), 1)))(x)
  assert np.isfinite(g).all()


def test_infinite_nan_and_zero_windows():
  # Per window: an infinite element gives inf, a NaN gives NaN, all zeros give 0; for
  # every root form (square root, Newton's iteration for p = 3 and 5, exp/log).
  x = jnp.asarray([np.inf, 1.0, 0.0, 0.0, -np.inf, 2.0, np.nan, 1.0], jnp.float32)
  for p in (2.0, 3.0, 5.0, 2.5):
    got = np.asarray(jaxpool.lp_pool(x.reshape(1, 8, 1), p, (2,), 2))[0, :, 0]
    assert got[0] == np.inf and got[1] == 0 and got[2] == np.inf and np.isnan(got[3]), (p, got)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def value_and_vjp(x, cot, p, window, stride):
  y, vjp = jax.vjp(lambda x: jaxpool.lp_pool(x, p, window, stride, channel_axis=1), x)
  return y, vjp(cot)[0]


def test_pytorch_parity_values_and_gradients():
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  rng = np.random.default_rng(6)
  cases = [  # (torch fn, spatial, kernel, stride)
    (F.lp_pool1d, (9,), 3, 2),
    (F.lp_pool2d, (7, 6), (2, 3), (2, 1)),
    (F.lp_pool3d, (4, 5, 4), 2, 2),
  ]
  for fn, spatial, kernel, stride in cases:
    n = len(spatial)
    window = (kernel,) * n if isinstance(kernel, int) else kernel
    signed = signed_away_from_zero(rng, (2, 3, *spatial))
    for p, x in [(2.0, signed), (3.0, np.abs(signed)), (1.7, np.abs(signed))]:
      xt = torch.tensor(x, requires_grad=True)
      yt = fn(xt, p, kernel, stride)
      cot = rng.normal(size=tuple(yt.shape)).astype(np.float32)
      (yt * torch.tensor(cot)).sum().backward()
      y, g = value_and_vjp(x, cot, p, window, stride)
      np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
  "p,err",
  [
    (0, ValueError),
    (-1.0, ValueError),
    (float("nan"), ValueError),
    (True, TypeError),
    ("2", TypeError),
    (np.ones(2, np.float32), ValueError),
    (np.int32(2), None),
    (jnp.array(2), TypeError),
    (jnp.float32(-1.0), ValueError),
    (jnp.float32(np.inf), ValueError),
  ],
)
def test_p_validation(p, err):
  x = jnp.ones((1, 4, 1))
  if err is None:
    np.testing.assert_allclose(jaxpool.lp_pool(x, p, (2,)), math.sqrt(2.0), rtol=1e-6)
    return
  with pytest.raises(err, match="lp_pool: p"):
    jaxpool.lp_pool(x, p, (2,))


def test_other_argument_errors():
  with pytest.raises(TypeError, match="lp_pool: mean"):
    jaxpool.lp_pool(jnp.ones((4, 1)), 2, (2,), mean=1)
  with pytest.raises(TypeError, match="floating"):
    jaxpool.lp_pool(jnp.ones((4, 1), jnp.int32), 2, (2,))
  with pytest.raises(ValueError, match="lp_pool: .*strides"):
    jaxpool.lp_pool(jnp.ones((4, 1)), 2, (2,), strides=0)


def test_jit_vmap_grad_compose():
  rng = np.random.default_rng(7)
  x = signed_away_from_zero(rng, (3, 6, 6, 2))
  ps = jnp.array([1.5, 2.0, 4.0])

  def loss(x, p):
    return jnp.sum(jaxpool.lp_pool(x, p, (2, 2), 2) ** 2)

  # vmap over examples and their own p, inside jit, differentiated in x and p.
  gx, gp = jax.jit(jax.grad(lambda x, ps: jnp.sum(jax.vmap(loss)(x, ps)), (0, 1)))(x, ps)
  for i in range(3):
    gxi, gpi = jax.grad(loss, (0, 1))(x[i], ps[i])
    np.testing.assert_allclose(gx[i], gxi, rtol=1e-5)
    np.testing.assert_allclose(gp[i], gpi, rtol=1e-5)
  with pytest.raises(TypeError):  # documented: custom VJP, no forward mode
    jax.jvp(lambda x: jaxpool.lp_pool(x, 2.0, (2, 2)), (x,), (x,))


# --- GeM --------------------------------------------------------------------------


def test_gem_values_layouts_keepdims():
  rng = np.random.default_rng(8)
  x = rng.normal(size=(2, 5, 4, 3)).astype(np.float32)
  want = gem_reference(x, 3.0, 1e-6, (1, 2))
  got = jaxpool.gem_pool(x, 3.0)
  assert got.shape == (2, 3)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  kept = jaxpool.gem_pool(x, 3.0, keepdims=True)
  assert kept.shape == (2, 1, 1, 3)
  np.testing.assert_allclose(kept[:, 0, 0], want, rtol=1e-5)
  got_nchw = jaxpool.gem_pool(np.moveaxis(x, -1, 1), jnp.float32(3.0), channel_axis=1)
  np.testing.assert_allclose(got_nchw, want, rtol=1e-5)
  # num_spatial_dims: two batch dims in front of two spatial dims.
  got_b = jaxpool.gem_pool(x.reshape(1, 2, 5, 4, 3), 3.0, num_spatial_dims=2)
  np.testing.assert_allclose(got_b[0], want, rtol=1e-5)
  # p = 1 on positive inputs is the mean; eps clamps negative values.
  pos = np.abs(x) + 0.1
  np.testing.assert_allclose(jaxpool.gem_pool(pos, 1), pos.mean(axis=(1, 2)), rtol=1e-5)
  np.testing.assert_allclose(
    jaxpool.gem_pool(-np.abs(x), 2.0, eps=0.5), np.full((2, 3), 0.5), rtol=1e-6
  )


def test_gem_gradients_in_x_and_p():
  rng = np.random.default_rng(9)
  x = rng.uniform(0.5, 2.0, (2, 3, 4, 2)).astype(np.float32)
  check_grads(
    jax.jit(jaxpool.gem_pool),
    (x, jnp.float32(3.0)),
    order=1,
    modes=["fwd", "rev"],
    atol=5e-3,
    rtol=5e-3,
  )
  # Zeros and negatives: finite, 0 where clamped.
  z = jnp.asarray(x).at[0].set(0.0).at[1, 0].set(-1.0)
  gx, gp = jax.grad(lambda x, p: jnp.sum(jaxpool.gem_pool(x, p)), (0, 1))(z, jnp.float32(3.0))
  assert np.isfinite(gx).all() and np.isfinite(gp)
  assert (gx[0] == 0).all() and (gx[1, 0] == 0).all()


def test_gem_large_values_and_half_precision():
  x = np.full((1, 3, 3, 1), 1e4, np.float32)
  x[0, 0, 0, 0] = 2e4
  want = gem_reference(x, 8.0, 1e-6, (1, 2))
  for dtype in (jnp.float32, jnp.bfloat16):
    got = jaxpool.gem_pool(jnp.asarray(x, dtype), 8.0)
    assert got.dtype == dtype
    np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=1e-2)
  np.testing.assert_allclose(jaxpool.gem_pool(x * 1e26, 8.0), want * 1e26, rtol=1e-5)


def test_gem_errors():
  x = jnp.ones((2, 3, 3, 4))
  with pytest.raises(ValueError, match="gem_pool: eps"):
    jaxpool.gem_pool(x, 3.0, eps=0.0)
  with pytest.raises(ValueError, match="gem_pool: p"):
    jaxpool.gem_pool(x, -3.0)
  with pytest.raises(ValueError, match="gem_pool: p must be finite"):
    jaxpool.gem_pool(x, math.inf)
  with pytest.raises(ValueError, match="gem_pool: channel_axis"):
    jaxpool.gem_pool(x, 3.0, channel_axis=2)
  with pytest.raises(ValueError, match="gem_pool: inputs of shape"):
    jaxpool.gem_pool(jnp.ones((2, 4)), 3.0)
  with pytest.raises(ValueError, match="gem_pool: num_spatial_dims"):
    jaxpool.gem_pool(x, 3.0, num_spatial_dims=0)
  with pytest.raises(ValueError, match="gem_pool: with channel_axis=1"):
    jaxpool.gem_pool(x, 3.0, channel_axis=1, num_spatial_dims=1)


def test_nan_cotangent_stays_in_its_window():
  # The backward pass must not mix cotangents of different windows (e.g. through a
  # reduction over all of them): a NaN cotangent poisons only its own window.
  x = signed_away_from_zero(np.random.default_rng(10), (1, 4, 4, 1))
  cot = np.ones((1, 2, 2, 1), np.float32)
  cot[0, 0, 1, 0] = np.nan
  for p in (2.0, 3.5):
    g = jax.jit(lambda x, cot: jax.vjp(lambda x: jaxpool.lp_pool(x, p, (2, 2), 2), x)[1](cot)[0])(
      x, cot
    )
    nan = np.isnan(np.asarray(g))[0, :, :, 0]
    want = np.zeros((4, 4), bool)
    want[:2, 2:] = True
    np.testing.assert_array_equal(nan, want)


# --- the factorised backward pass (issue 8) -----------------------------------------


def _random_geometry(rng, nd):
  """Window, strides, dilation, padding, ceil_mode: overlapping, tiling and gapped."""
  window = tuple(int(v) for v in rng.integers(1, 4, nd))
  strides = tuple(int(v) for v in rng.integers(1, 4, nd))
  dilation = tuple(int(v) for v in rng.integers(1, 3, nd))
  spatial = tuple(d * (w - 1) + 1 + int(rng.integers(1, 4)) for w, d in zip(window, dilation))
  padding = tuple((int(rng.integers(0, w)), int(rng.integers(0, w))) for w in window)
  return (
    spatial,
    window,
    strides,
    padding,
    {"dilation": dilation, "ceil_mode": bool(rng.integers(0, 2))},
  )


FAST_GEOMETRIES = [  # the benchmark's two cases, tiling with padding / ceil_mode, 1-D, 3-D
  ((8, 8), (2, 2), 2, "VALID", {}),
  ((7, 8), (3, 3), 2, "SAME", {}),
  ((7, 5), (2, 2), 2, 1, {"ceil_mode": True}),
  ((9,), (3,), 3, ((2, 1),), {}),
  ((4, 5, 4), (2, 3, 2), (1, 2, 2), "SAME", {}),
]


def _lp_vjp(x, cot, p, window, strides, padding, mean, kw):
  f = lambda x: jaxpool.lp_pool(x, p, window, strides, padding, mean=mean, **kw)
  return jax.jit(lambda x, c: jax.vjp(f, x)[1](c)[0])(x, cot)


def _geometry_case(rng, index):
  """FAST_GEOMETRIES[index], or a random geometry past them, and an input for it
  with all-zero windows (channel 0 of example 0: gradient 0)."""
  if index < len(FAST_GEOMETRIES):
    spatial, window, strides, padding, kw = FAST_GEOMETRIES[index]
  else:
    spatial, window, strides, padding, kw = _random_geometry(rng, int(rng.integers(1, 4)))
  x = signed_away_from_zero(rng, (2, *spatial, 2))
  x[0, ..., 0] = 0.0
  return (window, strides, padding, kw), x


@pytest.mark.parametrize("seed", range(6))
def test_gradients_match_numpy_on_random_geometries(seed):
  rng = np.random.default_rng(100 + seed)
  (window, strides, padding, kw), x = _geometry_case(rng, seed)
  combos = [(2.0, False), (3.0, True), (1.0, False), (2.5, True)]
  for p, mean in combos[seed % 2 :: 2]:  # two of them per geometry: compiling is the cost
    y = jax.eval_shape(
      lambda x: jaxpool.lp_pool(x, p, window, strides, padding, mean=mean, **kw), x
    )
    cot = rng.normal(size=y.shape).astype(np.float32)
    got = _lp_vjp(x, cot, p, window, strides, padding, mean, kw)
    want = reference.lp_pool_grad(x, cot, p, window, strides, padding, mean=mean, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"p={p} mean={mean}")


@pytest.mark.parametrize("seed", range(6))
def test_exact_backward_forms_match_numpy_on_random_geometries(seed):
  """Both range-free forms of the gradient for a fixed p, called directly: the
  transposed pass every backend takes (`_exact_grad`) and the per-offset one of a
  traced p (`_general_backward`), on the geometries above, with all-zero windows,
  tiny magnitudes (beyond the factorised pass's range) and p < 1."""
  from jaxpool._src import lp
  from jaxpool._src.machinery import geometry

  rng = np.random.default_rng(200 + seed)
  (window, strides, padding, kw), x = _geometry_case(rng, seed)
  x[1, ..., 1] *= np.float32(1e-30)
  geom = geometry.resolve(x.shape, window, strides, padding, **kw)
  combos = [(2.0, False), (3.0, True), (0.5, False), (2.5, True)]
  for p, mean in combos[seed % 2 :: 2]:
    y = jaxpool.lp_pool(x, p, window, strides, padding, mean=mean, **kw)
    cot = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    want = reference.lp_pool_grad(x, cot, p, window, strides, padding, mean=mean, **kw)
    forms = {
      "exact": lp._exact_grad(jnp.asarray(x), y, cot, p, geom, mean),
      "general": lp._general_backward(jnp.asarray(x), y, p, cot, geom, mean, False)[0],
    }
    for name, got in forms.items():
      np.testing.assert_allclose(
        got, want, rtol=1e-4, atol=1e-5, err_msg=f"{name} p={p} mean={mean}"
      )


def test_factorised_and_exact_backward_each_taken_where_they_should(monkeypatch):
  # Replacing the exact pass by NaNs shows which branch was taken: on CPU the
  # factorised pass for ordinary inputs (on accelerators never), the exact one for
  # magnitudes whose y^(p-1) leaves [2^-90, 2^90] (lp_pool is 1-homogeneous, so the
  # gradient at s * x equals the gradient at x: the two branches must agree).
  from jaxpool._src import lp

  rng = np.random.default_rng(7)
  x = signed_away_from_zero(rng, (2, 7, 8, 2))
  cot = rng.normal(size=(2, 4, 4, 2)).astype(np.float32)
  args = ((3, 3), 2, "SAME", False, {})
  want = reference.lp_pool_grad(x, cot, 3.0, *args[:3])
  exact = lp._exact_grad
  monkeypatch.setattr(lp, "_exact_grad", lambda xc, *a: jnp.full_like(xc, np.nan))
  if jax.default_backend() == "cpu":
    np.testing.assert_allclose(_lp_vjp(x, cot, 3.0, *args), want, rtol=1e-4, atol=1e-5)
  else:  # accelerators take the exact pass always (fallback.fast_or_exact)
    assert np.isnan(_lp_vjp(x, cot, 3.0, *args)).all()
  assert np.isnan(_lp_vjp(x * np.float32(1e30), cot, 3.0, *args)).all()
  monkeypatch.setattr(lp, "_exact_grad", exact)
  for scale in (1e30, 1e-30):
    np.testing.assert_allclose(
      _lp_vjp(x * np.float32(scale), cot, 3.0, *args), want, rtol=1e-4, atol=1e-5
    )


def test_factorised_backward_under_vmap_and_bfloat16():
  rng = np.random.default_rng(8)
  x = signed_away_from_zero(rng, (3, 2, 7, 8, 2))
  cot = rng.normal(size=(3, 2, 4, 4, 2)).astype(np.float32)
  x[1, 0] *= np.float32(1e30)  # one vmapped example takes the general branch
  f = lambda x, c: jax.vjp(lambda x: jaxpool.l2_pool(x, (3, 3), 2, "SAME"), x)[1](c)[0]
  got = jax.jit(jax.vmap(f))(x, cot)
  for i in range(3):
    np.testing.assert_allclose(
      got[i], reference.lp_pool_grad(x[i], cot[i], 2.0, (3, 3), 2, "SAME"), rtol=1e-4, atol=1e-5
    )
  xb = jnp.asarray(x[0], jnp.bfloat16)
  gb = jax.jit(f)(xb, jnp.asarray(cot[0], jnp.bfloat16))
  assert gb.dtype == jnp.bfloat16
  want = reference.lp_pool_grad(
    np.asarray(xb, np.float32),
    np.asarray(jnp.asarray(cot[0], jnp.bfloat16), np.float32),
    2.0,
    (3, 3),
    2,
    "SAME",
  )
  np.testing.assert_allclose(np.asarray(gb, np.float32), want, rtol=2e-2, atol=2e-2)


def _log_lp_reference(x, p, k, mean):
  """log of lp_pool over windows k (stride k, 1-d, channels last) in float64, as
  log m + log(sum (|x| / m)^p / c) / p: finite even where y^p would overflow."""
  w = np.abs(np.asarray(x, np.float64)[0, :, 0]).reshape(-1, k)
  m = w.max(1)
  return np.log(m) + np.log(((w / m[:, None]) ** p).sum(1) / (k if mean else 1)) / p


@pytest.mark.parametrize("p", [0.001, 0.00097, 0.0005, 0.02])
def test_small_p_gives_the_representable_value(p):
  """Issue 23: with p = 0.001 in float64, total^(1/p) overflowed where m total^(1/p)
  is finite (~1e301), so lp_pool returned inf. Any finite input whose pooled value
  is representable now gives it (relative error ~|log y| ulp, the conditioning of
  the 1/p power); values past the float range are inf. Reference: the log-domain
  formula in float64 (numpy)."""
  rng = np.random.default_rng(int(p * 1e5))
  with jax.enable_x64(True):
    for k, mean, scale in ((2, False, 1.0), (2, False, 0.01), (3, True, 1.0), (4, True, 1e-3)):
      x = rng.normal(size=(1, 300 * k, 1)) * scale
      y = np.asarray(jaxpool.lp_pool(jnp.asarray(x), p, (k,), k, mean=mean))[0, :, 0]
      log_y = _log_lp_reference(x, p, k, mean)
      representable = log_y < np.log(np.finfo(np.float64).max)
      np.testing.assert_array_equal(np.isinf(y), ~representable)
      np.testing.assert_allclose(np.log(y[representable]), log_y[representable], atol=1e-11)
  # float32 (bfloat16 computes in it): the range ends at 2^128
  x = rng.normal(size=(1, 400, 1)).astype(np.float32)
  y = np.asarray(jaxpool.lp_pool(x, 1 / 128, (2,), 2), np.float64)[0, :, 0]
  log_y = _log_lp_reference(x, 1 / 128, 2, False)
  representable = log_y < np.log(np.finfo(np.float32).max) - 1e-4
  assert representable.sum() > 20 and (~representable).sum() > 20
  np.testing.assert_array_equal(np.isinf(y), ~representable)
  np.testing.assert_allclose(np.log(y[representable]), log_y[representable], atol=1e-4)
