"""max_pool_with_argmax and max_unpool."""

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


# (spatial, window, strides, padding, options)
CONFIGS = [
  ((9,), (3,), 2, "VALID", {}),
  ((8, 7), (2, 2), 2, "VALID", {}),
  ((7, 8), (3, 3), 2, 1, {"ceil_mode": True}),
  ((8, 9), (2, 3), (1, 2), ((1, 0), (2, 1)), {"dilation": (2, 1)}),
  ((6, 7), (3, 2), 1, "SAME", {}),
  ((4, 5, 6), (2, 3, 2), (2, 1, 2), 1, {"ceil_mode": True}),
]


@pytest.mark.parametrize("spatial,window,strides,padding,options", CONFIGS)
def test_argmax_matches_loop_reference(spatial, window, strides, padding, options):
  rng = np.random.default_rng(sum(spatial))
  x = ties(rng, (2, *spatial, 3))
  values, indices = J(jaxpool.max_pool_with_argmax, window, strides, padding, **options)(x)
  np.testing.assert_array_equal(values, reference.max_pool(x, window, strides, padding, **options))
  ref_indices = reference.max_pool_argmax(x, window, strides, padding, **options)
  np.testing.assert_array_equal(indices, ref_indices)
  assert indices.dtype == jnp.int32
  # The values' gradient is max_pool's: to the selected element.
  ct = rng.normal(size=values.shape).astype(np.float32)
  grad = jax.jit(
    jax.grad(
      lambda v: jnp.sum(
        jaxpool.max_pool_with_argmax(v, window, strides, padding, **options)[0] * ct
      )
    )
  )(x)
  np.testing.assert_allclose(
    grad, reference.scatter_grad(x.shape, ref_indices, ct), rtol=1e-5, atol=1e-6
  )


def test_argmax_layouts_nan_integers():
  rng = np.random.default_rng(1)
  x = ties(rng, (2, 6, 5, 3))
  values, indices = J(jaxpool.max_pool_with_argmax, (2, 2), 2, 1)(x)
  # Channels first: the same indices (they index the spatial plane only).
  vt, it = J(jaxpool.max_pool_with_argmax, (2, 2), 2, 1, channel_axis=1)(np.moveaxis(x, -1, 1))
  np.testing.assert_array_equal(it, np.moveaxis(indices, -1, 1))
  np.testing.assert_array_equal(vt, np.moveaxis(values, -1, 1))
  # No batch dim, and two batch dims.
  _, i0 = J(jaxpool.max_pool_with_argmax, (2, 2), 2, 1)(x[0])
  np.testing.assert_array_equal(i0, indices[0])
  _, i2 = J(jaxpool.max_pool_with_argmax, (2, 2), 2, 1)(x[None])
  np.testing.assert_array_equal(i2[0], indices)
  # NaN: the last NaN of the window.
  x = np.array([np.nan, 1.0, np.nan, 5.0, 2.0, 2.0], np.float32).reshape(1, 6, 1)
  values, indices = J(jaxpool.max_pool_with_argmax, (3,), 3)(x)
  assert np.isnan(values[0, 0, 0]) and values[0, 1, 0] == 5
  np.testing.assert_array_equal(indices[0, :, 0], [2, 3])
  # Integers.
  xi = np.array([3, 7, 7, 1], np.int32).reshape(1, 4, 1)
  values, indices = J(jaxpool.max_pool_with_argmax, (2,), 1)(xi)
  assert values.dtype == jnp.int32
  np.testing.assert_array_equal(indices[0, :, 0], [1, 1, 2])


def test_window_entirely_in_padding():
  x = np.array([1.0, 2.0], np.float32).reshape(1, 2, 1)
  values, indices = J(jaxpool.max_pool_with_argmax, (2,), 2, ((3, 0),))(x)
  np.testing.assert_array_equal(values[0, :, 0], [-np.inf, 1.0])  # windows [-3, -1), [-1, 1)
  np.testing.assert_array_equal(indices[0, :, 0], [-1, 0])
  # max_unpool drops the -1.
  np.testing.assert_array_equal(J(jaxpool.max_unpool, (2,))(values, indices)[0, :, 0], [1, 0])


def test_unpool_round_trip():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 6, 8, 3)).astype(np.float32)
  values, indices = J(jaxpool.max_pool_with_argmax, (2, 2), 2)(x)
  restored = J(jaxpool.max_unpool, (6, 8))(values, indices)
  # Every maximum back in its place, zeros elsewhere; pooling again gives the values.
  mask = reference.scatter_grad(x.shape, indices, np.ones(values.shape)) > 0
  np.testing.assert_array_equal(restored, np.where(mask, x, 0))
  np.testing.assert_array_equal(J(jaxpool.max_pool, (2, 2), 2)(restored), np.maximum(values, 0))
  assert mask.sum() == values.size
  # Channels first.
  vt, it = J(jaxpool.max_pool_with_argmax, (2, 2), 2, channel_axis=1)(np.moveaxis(x, -1, 1))
  np.testing.assert_array_equal(
    J(jaxpool.max_unpool, (6, 8), channel_axis=1)(vt, it), np.moveaxis(restored, -1, 1)
  )
  # A larger output plane (PyTorch's output_size): indices keep their flat meaning.
  big = J(jaxpool.max_unpool, (7, 9))(values, indices)
  np.testing.assert_array_equal(big, reference.max_unpool(values, indices, (7, 9)))


def test_unpool_reference_duplicates_and_gradient():
  rng = np.random.default_rng(3)
  values = rng.normal(size=(2, 3, 4, 2)).astype(np.float32)
  indices = rng.integers(-2, 14, values.shape).astype(np.int32)  # duplicates, out of range
  out = J(jaxpool.max_unpool, (3, 4))(values, indices)
  np.testing.assert_array_equal(out, reference.max_unpool(values, indices, (3, 4)))
  # Gradient: each written position's cotangent goes to the value written there.
  ct = rng.normal(size=out.shape).astype(np.float32)
  grad = jax.jit(jax.grad(lambda v: jnp.sum(jaxpool.max_unpool(v, indices, (3, 4)) * ct)))(values)
  winners = reference.max_unpool(
    np.arange(values.size, dtype=np.float64).reshape(values.shape) + 1, indices, (3, 4)
  )
  expected = np.zeros(values.size)
  expected[winners[winners > 0].astype(int) - 1] = ct[winners > 0]
  np.testing.assert_array_equal(grad, expected.reshape(values.shape))
  # Unique indices: check_grads in both modes.
  perm = np.stack([rng.permutation(12)[:6] for _ in range(4)]).reshape(2, 2, 3, 2)
  perm = np.moveaxis(perm, 1, -1).astype(np.int32)  # (B, 3, 2, C): 6 distinct per plane
  v = rng.normal(size=perm.shape).astype(np.float32)
  check_grads(J(jaxpool.max_unpool, perm, (3, 4)), (v,), order=1, modes=("fwd", "rev"))


def test_unpool_bad_arguments():
  v = jnp.zeros((2, 3, 3, 4))
  i = jnp.zeros((2, 3, 3, 4), jnp.int32)
  with pytest.raises(TypeError, match="indices must have an integer dtype"):
    jaxpool.max_unpool(v, i.astype(jnp.float32), (6, 6))
  with pytest.raises(ValueError, match="shape of values"):
    jaxpool.max_unpool(v, i[:, :2], (6, 6))
  with pytest.raises(ValueError, match="output_shape"):
    jaxpool.max_unpool(v, i, 6)
  with pytest.raises(ValueError, match="output_shape"):
    jaxpool.max_unpool(v, i, (6, 0))
  with pytest.raises(ValueError, match="channel_axis"):
    jaxpool.max_unpool(v, i, (6, 6), channel_axis=0)
  with pytest.raises(ValueError, match="rank"):
    jaxpool.max_unpool(v, i, (2, 6, 6, 4, 1))
  with pytest.raises(TypeError, match="values"):
    jaxpool.max_unpool(v.astype(bool), i, (6, 6))
  with pytest.raises(ValueError, match="rank >= 6"):
    jaxpool.max_pool_with_argmax(v, (2, 2, 2, 2, 2))
  with pytest.raises(ValueError, match="window_shape"):
    jaxpool.max_pool_with_argmax(v, (2, 0))
  with pytest.raises(TypeError, match="dtype"):
    jaxpool.max_pool_with_argmax(v.astype(bool), (2, 2))


# --- PyTorch parity ---------------------------------------------------------------------

# (window, stride, padding, dilation, ceil_mode), valid for torch on a (9, 8) input.
TORCH_CONFIGS = [
  ((2, 2), (2, 2), 0, 1, False),
  ((3, 3), (2, 2), 1, 1, True),
  ((3, 2), (2, 1), (1, 0), (2, 1), False),
  ((2, 3), (3, 2), (1, 1), (1, 2), True),
]


@pytest.mark.parametrize("window,stride,padding,dilation,ceil_mode", TORCH_CONFIGS)
def test_torch_parity_2d(window, stride, padding, dilation, ceil_mode):
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  rng = np.random.default_rng(4)
  x = ties(rng, (2, 3, 9, 8))
  x[0, 0, 1, 1] = x[1, 2, 4, 4] = np.nan
  ref_values, ref_indices = F.max_pool2d(
    torch.tensor(x), window, stride, padding, dilation, ceil_mode=ceil_mode, return_indices=True
  )
  pad = padding if isinstance(padding, int) else tuple(padding)
  values, indices = J(
    jaxpool.max_pool_with_argmax,
    window,
    stride,
    pad,
    dilation=dilation,
    ceil_mode=ceil_mode,
    channel_axis=1,
  )(x)
  np.testing.assert_array_equal(values, ref_values.numpy())
  np.testing.assert_array_equal(indices, ref_indices.numpy())
  # max_unpool2d, with the pooled plane as output (duplicates from overlapping windows
  # carry equal values, so PyTorch's result is well defined).
  # (torch's kernel directly: F.max_unpool2d limits output_size around its default.)
  ref_out = torch.ops.aten.max_unpool2d(ref_values, ref_indices, [9, 8])
  np.testing.assert_array_equal(
    J(jaxpool.max_unpool, (9, 8), channel_axis=1)(values, indices), ref_out.numpy()
  )


def test_torch_parity_1d_3d_and_unpool_gradient():
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  rng = np.random.default_rng(5)
  x = ties(rng, (2, 3, 11))
  rv, ri = F.max_pool1d(torch.tensor(x), 3, 2, 1, return_indices=True)
  v, i = J(jaxpool.max_pool_with_argmax, (3,), 2, 1, channel_axis=1)(x)
  np.testing.assert_array_equal(i, ri.numpy())
  x = ties(rng, (1, 2, 5, 6, 7))
  rv, ri = F.max_pool3d(torch.tensor(x), 2, 2, 1, ceil_mode=True, return_indices=True)
  v, i = J(jaxpool.max_pool_with_argmax, (2, 2, 2), 2, 1, ceil_mode=True, channel_axis=1)(x)
  np.testing.assert_array_equal(v, rv.numpy())
  np.testing.assert_array_equal(i, ri.numpy())
  # Unique indices (non-overlapping windows): unpool gradient equals PyTorch's.
  x = rng.normal(size=(2, 3, 6, 8)).astype(np.float32)
  rv, ri = F.max_pool2d(torch.tensor(x), 2, 2, return_indices=True)
  ct = rng.normal(size=x.shape).astype(np.float32)
  tv = rv.clone().requires_grad_(True)
  (F.max_unpool2d(tv, ri, 2, 2, output_size=(6, 8)) * torch.tensor(ct)).sum().backward()
  grad = jax.jit(
    jax.grad(
      lambda v: jnp.sum(
        jaxpool.max_unpool(v, ri.numpy().astype(np.int32), (6, 8), channel_axis=1) * ct
      )
    )
  )(rv.numpy())
  np.testing.assert_allclose(grad, tv.grad.numpy(), rtol=1e-6)


def test_zero_size_batch_and_channels_give_empty_results_as_torch():
  """Issue 23: max_unpool of an empty batch or channel dim raised ZeroDivisionError
  (a reshape inferring -1 next to a 0). PyTorch returns an empty result for an
  empty batch (and refuses zero channels: the shape is (N, 0, 4, 4) there)."""
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  for n, c in ((0, 2), (2, 0)):
    x = np.zeros((n, c, 4, 4), np.float32)
    v, i = jaxpool.max_pool_with_argmax(x, (2, 2), 2, channel_axis=1)
    got = jaxpool.max_unpool(v, i, (4, 4), channel_axis=1)
    assert got.shape == (n, c, 4, 4)
    if n == 0:
      rv, ri = F.max_pool2d(torch.tensor(x), 2, 2, return_indices=True)
      want = F.max_unpool2d(rv, ri, 2, 2, output_size=(4, 4)).numpy()
      assert v.shape == rv.shape and i.shape == ri.shape and got.shape == want.shape
    channels_last = jaxpool.max_unpool(
      jnp.zeros((n, 2, 2, c)), jnp.zeros((n, 2, 2, c), jnp.int32), (4, 4)
    )
    assert channels_last.shape == (n, 4, 4, c)
    grad = jax.grad(lambda v: jnp.sum(jaxpool.max_unpool(v, i, (4, 4), channel_axis=1)))(v)
    assert grad.shape == v.shape


def test_non_array_arguments_name_the_function_and_argument():
  values, indices = jnp.zeros((1, 2, 1)), jnp.zeros((1, 2, 1), jnp.int32)
  for bad in (None, "idx", {"a": 1}, [1, "a"], object()):
    with pytest.raises(TypeError, match=r"^max_unpool: indices must be an array"):
      jaxpool.max_unpool(values, bad, (4,))
    with pytest.raises(TypeError, match=r"^max_unpool: values must be an array"):
      jaxpool.max_unpool(bad, indices, (4,))
    with pytest.raises(TypeError, match=r"^max_pool_with_argmax: inputs must be an array"):
      jaxpool.max_pool_with_argmax(bad, (2,))
