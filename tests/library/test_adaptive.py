"""adaptive_avg_pool, adaptive_max_pool, global_*_pool, spatial_pyramid_pool."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxpool

try:
  from tests import reference
  from tests.helpers import J
  from tests.helpers import ties
except ImportError:  # tests/ itself on sys.path
  import reference
  from helpers import J
  from helpers import ties


def _perm(rng, shape):
  """Distinct values: no ties, so numerical gradients of max pools are valid."""
  return (rng.permutation(int(np.prod(shape))).reshape(shape) / 7.0).astype(np.float32)


# Spatial shape -> output_size, channels-last inputs (B, *spatial, C).
CONFIGS = [
  ((7,), (3,)),  # 1-d, not divisible
  ((5,), (8,)),  # output larger than input
  ((7, 9), (3, 4)),
  ((6, 10), (None, 3)),  # None keeps a dim
  ((5, 4), (7, 2)),  # larger in one dim, divisible in the other
  ((4, 5, 6), (3, 2, 4)),  # 3-d
]


@pytest.mark.parametrize("spatial,out", CONFIGS)
def test_adaptive_matches_loop_reference(spatial, out):
  rng = np.random.default_rng(len(spatial) * 100 + sum(spatial))
  x = ties(rng, (2, *spatial, 3), magnitude=3)
  full = tuple(L if o is None else o for L, o in zip(spatial, out))
  np.testing.assert_allclose(
    J(jaxpool.adaptive_avg_pool, out)(x), reference.adaptive_avg_pool(x, full), rtol=1e-6, atol=1e-6
  )
  values, indices = J(jaxpool.adaptive_max_pool, out, return_indices=True)(x)
  ref_values, ref_indices = reference.adaptive_max_pool(x, full)
  np.testing.assert_array_equal(values, ref_values)
  np.testing.assert_array_equal(indices, ref_indices)
  assert indices.dtype == jnp.int32


@pytest.mark.parametrize(
  "spatial,out",
  [
    ((12, 8), (3, 2)),  # divisible: max_pool path
    ((16, 16), (1, 1)),
  ],
)  # divisible, big window
def test_adaptive_divisible_paths(spatial, out):
  rng = np.random.default_rng(1)
  x = ties(rng, (2, *spatial, 2), magnitude=3)
  np.testing.assert_allclose(
    J(jaxpool.adaptive_avg_pool, out)(x), reference.adaptive_avg_pool(x, out), rtol=1e-6, atol=1e-6
  )
  ref_values, ref_indices = reference.adaptive_max_pool(x, out)
  np.testing.assert_array_equal(J(jaxpool.adaptive_max_pool, out)(x), ref_values)
  ct = rng.normal(size=ref_values.shape).astype(np.float32)
  grad = jax.jit(jax.grad(lambda v: jnp.sum(jaxpool.adaptive_max_pool(v, out) * ct)))(x)
  np.testing.assert_allclose(grad, reference.scatter_grad(x.shape, ref_indices, ct), rtol=1e-6)


def test_adaptive_identity_and_layouts():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 5, 7, 3)).astype(np.float32)
  for out in ((5, 7), (None, 7), (5, None)):
    np.testing.assert_array_equal(J(jaxpool.adaptive_avg_pool, out)(x), x)
    np.testing.assert_array_equal(J(jaxpool.adaptive_max_pool, out)(x), x)
  # Channels first gives the transposed result; extra batch dims are allowed.
  xt = np.moveaxis(x, -1, 1)
  for fn in (jaxpool.adaptive_avg_pool, jaxpool.adaptive_max_pool):
    y = J(fn, (3, 4))(x)
    np.testing.assert_allclose(J(fn, (3, 4), channel_axis=1)(xt), np.moveaxis(y, -1, 1), rtol=1e-6)
    np.testing.assert_allclose(J(fn, (3, 4))(x[None])[0], y, rtol=1e-6)
    np.testing.assert_allclose(
      J(fn, 3)(x[:, :, :4]), J(fn, (3, 3))(x[:, :, :4]), rtol=1e-6
    )  # an int: every spatial dim


def test_adaptive_gradients():
  rng = np.random.default_rng(3)
  x = _perm(rng, (1, 7, 5, 2))
  check_grads(
    J(jaxpool.adaptive_avg_pool, (3, 4)), (x,), order=1, modes=("fwd", "rev"), atol=1e-2, rtol=1e-2
  )
  check_grads(
    J(jaxpool.adaptive_max_pool, (3, 4)), (x,), order=1, modes=("fwd", "rev"), atol=1e-2, rtol=1e-2
  )
  # Ties: the first maximal element in row-major order gets the whole cotangent.
  x = ties(rng, (2, 7, 5, 3), magnitude=3)
  ct = rng.normal(size=(2, 3, 4, 3)).astype(np.float32)
  grad = jax.jit(jax.grad(lambda v: jnp.sum(jaxpool.adaptive_max_pool(v, (3, 4)) * ct)))(x)
  _, ref_indices = reference.adaptive_max_pool(x, (3, 4))
  np.testing.assert_allclose(grad, reference.scatter_grad(x.shape, ref_indices, ct), rtol=1e-6)
  # The average's gradient is exact: each window spreads its cotangent evenly.
  grad = jax.jit(jax.grad(lambda v: jnp.sum(jaxpool.adaptive_avg_pool(v, (3, 4)) * ct)))(x)
  expected = np.zeros_like(x, np.float64)
  for i, hs in enumerate(reference.adaptive_windows(7, 3)):
    for j, ws in enumerate(reference.adaptive_windows(5, 4)):
      for h in hs:
        for w in ws:
          expected[:, h, w] += ct[:, i, j] / (len(hs) * len(ws))
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


def test_adaptive_nan_inf_dtypes():
  x = np.array([1.0, np.nan, 3.0, np.nan, 2.0, -np.inf], np.float32).reshape(1, 6, 1)
  values, indices = J(jaxpool.adaptive_max_pool, (2,), return_indices=True)(x)
  np.testing.assert_array_equal(np.isnan(values[0, :, 0]), [True, True])
  np.testing.assert_array_equal(indices[0, :, 0], [1, 3])  # the last NaN of each window
  grad = jax.jit(jax.grad(lambda v: jnp.sum(jaxpool.adaptive_max_pool(v, (2,)))))(x)
  np.testing.assert_array_equal(grad[0, :, 0], [0, 1, 0, 1, 0, 0])
  x = np.full((1, 6, 1), -np.inf, np.float32)
  values, indices = J(jaxpool.adaptive_max_pool, (2,), return_indices=True)(x)
  np.testing.assert_array_equal(indices[0, :, 0], [0, 3])  # all -inf: the first
  # Integers: max keeps the dtype, the average gives a float.
  xi = np.arange(10, dtype=np.int32).reshape(1, 5, 2)
  yi = J(jaxpool.adaptive_max_pool, (2,))(xi)
  assert yi.dtype == jnp.int32
  np.testing.assert_array_equal(yi[0, :, 0], [4, 8])
  np.testing.assert_allclose(J(jaxpool.adaptive_avg_pool, (3,))(xi)[0, :, 0], [1, 4, 7])
  # bfloat16: sums in float32, result in bfloat16, close to the float32 result.
  rng = np.random.default_rng(4)
  x = jnp.asarray((rng.normal(size=(2, 9, 7, 3)) * 100).astype(np.float32), jnp.bfloat16)
  for fn in (jaxpool.adaptive_avg_pool, jaxpool.adaptive_max_pool):
    y = J(fn, (4, 3))(x)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(
      np.asarray(y, np.float32),
      reference.adaptive_avg_pool(np.asarray(x, np.float32), (4, 3))
      if fn is jaxpool.adaptive_avg_pool
      else reference.adaptive_max_pool(np.asarray(x, np.float32), (4, 3))[0],
      rtol=1e-2,
    )


def test_max_pools_over_wide_channels_propagate_nan():
  # XLA's CPU max-reduction, vectorized over a wide channel dim, drops NaNs
  # (max(-inf, NaN) = -inf); the values must still be NaN where a window holds one.
  rng = np.random.default_rng(6)
  x = rng.normal(size=(2, 9, 8, 1024)).astype(np.float32)
  x[0, 0, 0:2, :] = np.nan
  x[1, 5, 3, :9] = np.nan
  want, _ = reference.adaptive_max_pool(x, (2, 3))
  np.testing.assert_array_equal(J(jaxpool.adaptive_max_pool, (2, 3))(x), want)
  want_global = np.max(x, axis=(1, 2))  # numpy's max propagates NaN
  assert np.isnan(want_global).sum() == 1024 + 9
  np.testing.assert_array_equal(J(jaxpool.global_max_pool)(x), want_global)


def test_adaptive_jit_vmap():
  rng = np.random.default_rng(5)
  x = rng.normal(size=(3, 2, 7, 5, 2)).astype(np.float32)
  for fn in (jaxpool.adaptive_avg_pool, jaxpool.adaptive_max_pool):
    np.testing.assert_allclose(jax.jit(jax.vmap(J(fn, (3, 2))))(x), J(fn, (3, 2))(x), rtol=1e-6)


def test_adaptive_bad_arguments():
  x = jnp.zeros((2, 6, 6, 3))
  with pytest.raises(ValueError, match="output_size"):
    jaxpool.adaptive_avg_pool(x, (0, 3))
  with pytest.raises(TypeError, match="output_size"):
    jaxpool.adaptive_max_pool(x, (2.5, 3))
  with pytest.raises(TypeError, match="output_size"):
    jaxpool.adaptive_max_pool(x, "3")
  with pytest.raises(ValueError, match="rank"):
    jaxpool.adaptive_avg_pool(x, (2, 2, 2, 2))
  with pytest.raises(ValueError, match="channel_axis"):
    jaxpool.adaptive_avg_pool(x, (2, 2), channel_axis=2)
  with pytest.raises(ValueError, match="channel_axis=1"):
    jaxpool.adaptive_max_pool(x, (2,), channel_axis=1)
  with pytest.raises(TypeError, match="return_indices"):
    jaxpool.adaptive_max_pool(x, (2, 2), return_indices=1)
  with pytest.raises(TypeError, match="dtype"):
    jaxpool.adaptive_avg_pool(x.astype(bool), (2, 2))
  with pytest.raises(ValueError, match="no spatial"):
    jaxpool.adaptive_avg_pool(jnp.zeros((2, 3)), 2)


# --- global pools -------------------------------------------------------------------


def test_global_pools_match_numpy():
  rng = np.random.default_rng(6)
  x = rng.normal(size=(2, 5, 4, 3)).astype(np.float32)
  np.testing.assert_allclose(J(jaxpool.global_avg_pool)(x), x.mean(axis=(1, 2)), rtol=1e-6)
  np.testing.assert_array_equal(J(jaxpool.global_max_pool)(x), x.max(axis=(1, 2)))
  lp = jax.jit(jaxpool.global_lp_pool)  # a traced p: one compilation for every p
  for p in (1.0, 2.0, 3.5, 0.5):
    expected = (np.abs(x.astype(np.float64)) ** p).sum(axis=(1, 2)) ** (1 / p)
    np.testing.assert_allclose(lp(x, p), expected, rtol=1e-5)
    np.testing.assert_allclose(J(jaxpool.global_lp_pool, p)(x), expected, rtol=1e-5)
  np.testing.assert_array_equal(J(jaxpool.global_lp_pool, np.inf)(x), np.abs(x).max(axis=(1, 2)))
  # keepdims, channels first, explicit num_spatial_dims with more or fewer batch dims.
  xt = np.moveaxis(x, -1, 1)
  for fn, args in (
    (jaxpool.global_avg_pool, ()),
    (jaxpool.global_max_pool, ()),
    (jaxpool.global_lp_pool, (3.0,)),
  ):
    y = J(fn, *args)(x)
    kept = J(fn, *args, keepdims=True)(x)
    assert kept.shape == (2, 1, 1, 3)
    np.testing.assert_array_equal(kept[:, 0, 0], y)
    kept = J(fn, *args, channel_axis=1, keepdims=True)(xt)
    assert kept.shape == (2, 3, 1, 1)
    np.testing.assert_allclose(kept[:, :, 0, 0], y, rtol=1e-6)
    np.testing.assert_allclose(J(fn, *args, num_spatial_dims=2)(x[0]), y[0], rtol=1e-6)
    # num_spatial_dims=1: the first spatial dim is another batch dim.
    np.testing.assert_allclose(
      J(fn, *args, num_spatial_dims=1)(x)[:, 0], J(fn, *args)(x[:, 0]), rtol=1e-6
    )


def test_global_max_gradient_first_tie():
  x = np.array([[1.0, 3.0], [3.0, 0.0]], np.float32).reshape(1, 2, 2, 1)
  grad = jax.jit(jax.grad(lambda v: jnp.sum(jaxpool.global_max_pool(v))))(x)
  np.testing.assert_array_equal(grad[0, :, :, 0], [[0, 1], [0, 0]])
  grad = jax.jit(jax.grad(lambda v: jnp.sum(jaxpool.global_lp_pool(v, np.inf))))(-x)
  np.testing.assert_array_equal(grad[0, :, :, 0], [[0, -1], [0, 0]])


def test_global_lp_numerics():
  rng = np.random.default_rng(7)
  x = rng.normal(size=(2, 4, 3, 2)).astype(np.float32)
  check_grads(
    J(jaxpool.global_lp_pool, 1.5), (x,), order=1, modes=("fwd", "rev"), atol=2e-2, rtol=2e-2
  )
  # Gradient in closed form: sign(x) (|x| / y)^(p - 1), for several p in one compilation.
  grad_fn = jax.jit(jax.grad(lambda v, q: jnp.sum(jaxpool.global_lp_pool(v, q))))
  for p in (0.5, 1.0, 3.0):
    y = (np.abs(x.astype(np.float64)) ** p).sum(axis=(1, 2), keepdims=True) ** (1 / p)
    np.testing.assert_allclose(grad_fn(x, p), np.sign(x) * (np.abs(x) / y) ** (p - 1), rtol=1e-4)
  # Huge and tiny magnitudes: no overflow or underflow of |x|^p.
  f = J(jaxpool.global_lp_pool, 4.0)
  for scale in (1e30, 1e-30):
    np.testing.assert_allclose(f(x * np.float32(scale)) / np.float32(scale), f(x), rtol=1e-5)
  # All-zero input: value 0, finite gradient 0 (also in p and for p <= 1).
  zeros = jnp.zeros((1, 3, 3, 2))
  np.testing.assert_array_equal(J(jaxpool.global_lp_pool, 2.0)(zeros), 0)
  for q in (0.5, 1.0, 2.0):
    np.testing.assert_array_equal(grad_fn(zeros, q), 0)
  dp = jax.jit(jax.grad(lambda q: jnp.sum(jaxpool.global_lp_pool(zeros, q))))(2.0)
  assert dp == 0
  # p < 1 with some zeros: finite gradient, 0 at the zeros.
  xz = jnp.array([0.0, 2.0, 0.0, 1.0]).reshape(1, 4, 1)
  grad = jax.jit(jax.grad(lambda v: jnp.sum(jaxpool.global_lp_pool(v, 0.5))))(xz)
  assert np.isfinite(grad).all() and grad[0, 0, 0] == 0 and grad[0, 2, 0] == 0
  # Traced p: the derivative in p matches finite differences (float64 for accuracy).
  with jax.enable_x64(True):
    x64 = jnp.asarray(x, jnp.float64)
    check_grads(
      jax.jit(lambda q: jnp.sum(jaxpool.global_lp_pool(x64, q))),
      (jnp.float64(2.5),),
      order=1,
      modes=("fwd", "rev"),
    )
  # bfloat16 computes in float32, no overflow at 1e4.
  xb = jnp.asarray(x * 1e4, jnp.bfloat16)
  y = J(jaxpool.global_lp_pool, 2.0)(xb)
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(
    np.asarray(y, np.float32),
    np.sqrt((np.asarray(xb, np.float64) ** 2).sum(axis=(1, 2))),
    rtol=1e-2,
  )


def test_global_bad_arguments():
  x = jnp.zeros((2, 4, 4, 3))
  with pytest.raises(ValueError, match="p must be > 0"):
    jaxpool.global_lp_pool(x, 0.0)
  with pytest.raises(ValueError, match="p must be > 0"):
    jaxpool.global_lp_pool(x, float("nan"))
  with pytest.raises(TypeError, match="p must be"):
    jaxpool.global_lp_pool(x, "2")
  with pytest.raises(TypeError, match="keepdims"):
    jaxpool.global_avg_pool(x, keepdims=None)
  with pytest.raises(ValueError, match="num_spatial_dims"):
    jaxpool.global_max_pool(x, num_spatial_dims=0)
  with pytest.raises(ValueError, match="rank"):
    jaxpool.global_max_pool(x, num_spatial_dims=4)
  with pytest.raises(ValueError, match="no spatial"):
    jaxpool.global_avg_pool(jnp.zeros((2, 3)))


# --- spatial pyramid ------------------------------------------------------------------


def test_spatial_pyramid_pool():
  rng = np.random.default_rng(8)
  x = ties(rng, (2, 7, 6, 3), magnitude=3)
  y = J(jaxpool.spatial_pyramid_pool, (1, 2, 3))(x)
  assert y.shape == (2, 3 * (1 + 4 + 9))
  # Channel-major flatten per level: feature offset_l + c * l * l + i * l + j.
  offset = 0
  for level in (1, 2, 3):
    ref, _ = reference.adaptive_max_pool(x, (level, level))
    block = np.moveaxis(ref, -1, 1).reshape(2, -1)
    np.testing.assert_array_equal(y[:, offset : offset + block.shape[1]], block)
    offset += block.shape[1]
  avg = J(jaxpool.spatial_pyramid_pool, (2, (1, 3)), mode="avg")(x)
  np.testing.assert_allclose(
    avg,
    np.concatenate(
      [
        np.moveaxis(reference.adaptive_avg_pool(x, g), -1, 1).reshape(2, -1)
        for g in ((2, 2), (1, 3))
      ],
      axis=1,
    ),
    rtol=1e-6,
  )
  xt = np.moveaxis(x, -1, 1)
  np.testing.assert_array_equal(J(jaxpool.spatial_pyramid_pool, (1, 2, 3), channel_axis=1)(xt), y)
  # Any input size gives the same length.
  shape = jax.eval_shape(
    J(jaxpool.spatial_pyramid_pool, (1, 2, 3)), jax.ShapeDtypeStruct((2, 3, 11, 3), jnp.float32)
  ).shape
  assert shape == y.shape
  with pytest.raises(ValueError, match="mode"):
    jaxpool.spatial_pyramid_pool(x, mode="min")
  with pytest.raises(ValueError, match="level"):
    jaxpool.spatial_pyramid_pool(x, (1, 0))
  with pytest.raises(TypeError, match="levels"):
    jaxpool.spatial_pyramid_pool(x, 4)


# --- PyTorch parity ---------------------------------------------------------------------

TORCH_CONFIGS = [
  ((9,), (4,)),
  ((5,), (7,)),
  ((7, 9), (3, 5)),
  ((5, 6), (8, 4)),
  ((4, 5, 7), (3, 2, 3)),
]


@pytest.mark.parametrize("spatial,out", TORCH_CONFIGS)
def test_torch_parity(spatial, out):
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  n = len(spatial)
  rng = np.random.default_rng(9)
  x = ties(rng, (2, 3, *spatial), magnitude=3)
  x[0, 0, 0] = np.nan  # NaN propagation and the last-NaN index
  avg = getattr(F, f"adaptive_avg_pool{n}d")
  mx = getattr(F, f"adaptive_max_pool{n}d")
  np.testing.assert_allclose(
    J(jaxpool.adaptive_avg_pool, out, channel_axis=1)(x),
    avg(torch.tensor(x), out).numpy(),
    rtol=1e-6,
    atol=1e-6,
  )
  ref_values, ref_indices = mx(torch.tensor(x), out, return_indices=True)
  values, indices = J(jaxpool.adaptive_max_pool, out, return_indices=True, channel_axis=1)(x)
  np.testing.assert_array_equal(values, ref_values.numpy())
  np.testing.assert_array_equal(indices, ref_indices.numpy())
  # Gradients on a NaN-free input with ties.
  x = ties(rng, (2, 3, *spatial), magnitude=3)
  ct = rng.normal(size=ref_values.shape).astype(np.float32)
  tx = torch.tensor(x, requires_grad=True)
  (mx(tx, out) * torch.tensor(ct)).sum().backward()
  grad = jax.jit(
    jax.grad(lambda v: jnp.sum(jaxpool.adaptive_max_pool(v, out, channel_axis=1) * ct))
  )(x)
  np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-6)
  tx = torch.tensor(x, requires_grad=True)
  (avg(tx, out) * torch.tensor(ct)).sum().backward()
  grad = jax.jit(
    jax.grad(lambda v: jnp.sum(jaxpool.adaptive_avg_pool(v, out, channel_axis=1) * ct))
  )(x)
  np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_torch_parity_pyramid_and_global():
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  rng = np.random.default_rng(10)
  x = rng.normal(size=(2, 3, 9, 7)).astype(np.float32)
  expected = torch.cat(
    [F.adaptive_max_pool2d(torch.tensor(x), level).flatten(1) for level in (1, 2, 4)], 1
  ).numpy()
  np.testing.assert_array_equal(J(jaxpool.spatial_pyramid_pool, channel_axis=1)(x), expected)
  lp = F.lp_pool2d(torch.tensor(np.abs(x)), 3.0, (9, 7)).numpy()[:, :, 0, 0]
  np.testing.assert_allclose(J(jaxpool.global_lp_pool, 3.0, channel_axis=1)(x), lp, rtol=1e-5)


def test_zero_size_batch_and_channels_give_empty_results():
  """Issue 23: spatial_pyramid_pool, global_max_pool and global_lp_pool(p=inf) raised
  ZeroDivisionError on an empty batch or channel dim. PyTorch's adaptive and global
  pools return empty results for an empty batch (shapes checked against it) and
  refuse zero channels (shapes (N, C * 5) and (N, C) there)."""
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  for n, c in ((0, 3), (2, 0)):
    xt = torch.zeros((n, c, 5, 4))
    x = np.moveaxis(xt.numpy(), 1, -1)
    if n == 0:
      levels = torch.cat([F.adaptive_max_pool2d(xt, level).flatten(1) for level in (1, 2)], 1)
      want, glob = tuple(levels.shape), tuple(F.adaptive_max_pool2d(xt, 1).flatten(1).shape)
    else:
      want, glob = (n, c * (1 + 4)), (n, c)
    # Each call jitted: one compiled program instead of an op-by-op run; the shape
    # arithmetic that divided by zero runs as before, when the call is traced.
    pyramid = lambda **kw: jax.jit(functools.partial(jaxpool.spatial_pyramid_pool, **kw))
    for mode in ("max", "avg"):
      assert pyramid(levels=(1, 2), mode=mode)(x).shape == want
      first = pyramid(levels=(1, 2), mode=mode, channel_axis=1)(xt.numpy())
      assert first.shape == want
    assert jax.jit(jaxpool.global_max_pool)(x).shape == glob
    assert jax.jit(lambda v: jaxpool.global_lp_pool(v, float("inf")))(x).shape == glob
    assert jax.jit(lambda v: jaxpool.global_max_pool(v, channel_axis=1))(xt.numpy()).shape == glob
    grad = jax.grad(lambda v: jnp.sum(jaxpool.spatial_pyramid_pool(v, (1, 2))))
    assert jax.jit(grad)(jnp.asarray(x)).shape == x.shape


def test_spatial_pyramid_pool_errors_name_it():
  """Its errors used to name adaptive_max_pool, which it calls."""
  with pytest.raises(
    ValueError, match=r"^spatial_pyramid_pool: every spatial dim .*\(2, 0, 4, 2\)"
  ):
    jaxpool.spatial_pyramid_pool(jnp.zeros((2, 0, 4, 2)))
  with pytest.raises(ValueError, match=r"^spatial_pyramid_pool: every spatial dim"):
    jaxpool.spatial_pyramid_pool(jnp.zeros((2, 2, 4, 0)), mode="avg", channel_axis=1)
  with pytest.raises(TypeError, match=r"^spatial_pyramid_pool: inputs must be an array"):
    jaxpool.spatial_pyramid_pool(None)
  with pytest.raises(ValueError, match=r"^spatial_pyramid_pool: channel_axis"):
    jaxpool.spatial_pyramid_pool(jnp.zeros((2, 4, 4, 2)), channel_axis=2)


def test_global_pools_refuse_empty_spatial_dims_naming_themselves():
  """Found by tests/library/test_fuzz.py: gem_pool of an input with a zero-size spatial dim
  raised numpy's "zero-size array to reduction operation max". PyTorch's adaptive
  pools refuse empty planes; the global pools now do too, with their own names."""
  x = jnp.zeros((2, 0, 4, 3))
  calls = {
    "gem_pool": lambda: jaxpool.gem_pool(x, 3.0),
    "global_lp_pool": lambda: jaxpool.global_lp_pool(x, 2.5),
    "global_max_pool": lambda: jaxpool.global_max_pool(x),
    "global_avg_pool": lambda: jaxpool.global_avg_pool(x, keepdims=True),
  }
  for name, call in calls.items():
    with pytest.raises(ValueError, match=rf"^{name}: every spatial dim .*\(2, 0, 4, 3\)"):
      call()
  with pytest.raises(ValueError, match=r"^gem_pool: every spatial dim"):
    jaxpool.gem_pool(jnp.zeros((2, 3, 5, 0)), 3.0, channel_axis=1)


def test_averages_of_huge_values_do_not_overflow():
  """global_avg_pool and adaptive_avg_pool's gathered path summed before dividing,
  so 3e38 in float32 gave inf; they sum pre-scaled by a power of two, as avg_pool.
  Reference: numpy float64 means over the same windows."""
  rng = np.random.default_rng(21)
  x = (3e38 * rng.uniform(0.5, 1.0, size=(2, 8, 7, 3))).astype(np.float32)
  want = x.astype(np.float64).mean(axis=(1, 2))
  np.testing.assert_allclose(jaxpool.global_avg_pool(x), want, rtol=1e-6)
  ref = reference.adaptive_avg_pool(x.astype(np.float64), (3, 5))
  got = jaxpool.adaptive_avg_pool(x, (3, 5))
  assert np.isfinite(got).all()
  np.testing.assert_allclose(got, ref, rtol=1e-6)
  # ordinary values: unchanged up to rounding
  y = rng.normal(size=(2, 8, 7, 3)).astype(np.float32)
  np.testing.assert_allclose(
    jaxpool.adaptive_avg_pool(y, (3, 5)),
    reference.adaptive_avg_pool(y, (3, 5)),
    rtol=1e-5,
    atol=1e-6,
  )
