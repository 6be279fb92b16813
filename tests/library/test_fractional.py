"""fractional_max_pool."""

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


# (spatial, window, output size)
CONFIGS = [
  ((11,), (2,), (7,)),
  ((9, 12), (3, 2), (4, 8)),  # steps smaller than the window, and gaps
  ((13, 8), (2, 3), (3, 6)),  # steps larger than a 2-window: skipped elements
  ((6, 7, 5), (2, 2, 2), (4, 5, 3)),
]


def _matches_reference(x, window, out, samples, overlapping):
  """Values and indices of the jitted pool against the loop reference; returns the
  values and the reference's indices."""
  values, indices = J(
    jaxpool.fractional_max_pool,
    window,
    out,
    samples=samples,
    overlapping=overlapping,
    return_indices=True,
  )(x)
  ref_values, ref_indices = reference.fractional_max_pool(x, window, out, samples, overlapping)
  np.testing.assert_array_equal(values, ref_values)
  np.testing.assert_array_equal(indices, ref_indices)
  return values, ref_indices


@pytest.mark.parametrize("overlapping", [True, False])
@pytest.mark.parametrize("spatial,window,out", CONFIGS)
def test_matches_loop_reference(spatial, window, out, overlapping):
  rng = np.random.default_rng(sum(spatial) + overlapping)
  x = ties(rng, (2, *spatial, 3))
  samples = rng.uniform(size=(2, 3, len(spatial))).astype(np.float32)
  values, ref_indices = _matches_reference(x, window, out, samples, overlapping)
  # Gradient: to the selected element of each window.
  ct = rng.normal(size=values.shape).astype(np.float32)
  grad = jax.jit(
    jax.grad(
      lambda v: jnp.sum(
        jaxpool.fractional_max_pool(v, window, out, samples=samples, overlapping=overlapping) * ct
      )
    )
  )(x)
  np.testing.assert_allclose(
    grad, reference.scatter_grad(x.shape, ref_indices, ct), rtol=1e-5, atol=1e-6
  )


def test_sequence_properties():
  rng = np.random.default_rng(1)
  u = rng.uniform(size=(200,)).astype(np.float32)
  for L, k, o in ((25, 2, 17), (32, 2, 16), (20, 3, 9), (10, 2, 9), (7, 3, 1)):
    starts = np.asarray(jax.jit(lambda s: jaxpool._src.fractional.fractional_starts(s, L, o, k))(u))
    np.testing.assert_array_equal(starts, [reference.fractional_starts(v, L, o, k) for v in u])
    assert (starts[:, 0] == (0 if o > 1 else L - k)).all() and (starts[:, -1] == L - k).all()
    steps = np.diff(starts, axis=1)
    alpha = (L - k) / max(o - 1, 1)
    assert ((steps == np.floor(alpha)) | (steps == np.ceil(alpha))).all()


def test_ratio_half_on_even_sizes():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 8, 12, 3)).astype(np.float32)
  # Documented shape: int(L * ratio) per dim; with window 2 and steps of exactly 2,
  # both variants are the 2 x 2 max pool with stride 2.
  for overlapping in (True, False):
    y = J(
      jaxpool.fractional_max_pool,
      (2, 2),
      output_ratio=0.5,
      key=jax.random.key(0),
      overlapping=overlapping,
    )(x)
    assert y.shape == (2, 4, 6, 3)
    np.testing.assert_array_equal(y, J(jaxpool.max_pool, (2, 2), 2)(x))
  y = J(jaxpool.fractional_max_pool, (2, 2), output_ratio=(0.5, 0.75), key=jax.random.key(0))(x)
  assert y.shape == (2, 4, 9, 3)
  y = J(jaxpool.fractional_max_pool, (3,), output_ratio=0.7, key=jax.random.key(0))(x[:, 0])
  assert y.shape == (2, 8, 3)  # int(12 * 0.7)


def test_disjoint_regions_tile_the_input():
  # Window 2 and steps of 1 or 2: the disjoint regions partition the input, so
  # every element is selected by at most one window, and the max of the pooled
  # output is the max of the input.
  rng = np.random.default_rng(3)
  x = rng.normal(size=(3, 25, 4)).astype(np.float32)
  y, idx = J(
    jaxpool.fractional_max_pool, (2,), output_ratio=0.7, key=jax.random.key(1), return_indices=True
  )(x)
  for b in range(3):
    for c in range(4):
      assert len(set(idx[b, :, c].tolist())) == idx.shape[1]
  np.testing.assert_array_equal(y.max(axis=1), x.max(axis=1))
  # Overlapping windows cover at least as much: the outputs dominate the disjoint ones.
  yo = J(
    jaxpool.fractional_max_pool, (2,), output_ratio=0.7, key=jax.random.key(1), overlapping=True
  )(x)
  assert (yo >= y).all() and (yo > y).any()


def test_key_determinism_and_per_plane_samples():
  x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 20, 20, 3)).astype(np.float32))
  f = jax.jit(
    lambda v, key: jaxpool.fractional_max_pool(v, (2, 2), (13, 13), key=key, return_indices=True)
  )
  y1, i1 = f(x, jax.random.key(7))
  y2, i2 = f(x, jax.random.key(7))
  np.testing.assert_array_equal(y1, y2)
  np.testing.assert_array_equal(i1, i2)
  _, i3 = f(x, jax.random.key(8))
  assert (i1 != i3).any()
  # Samples per example and channel: the same input in every plane, different windows.
  same = jnp.broadcast_to(x[:1, :, :, :1], (2, 20, 20, 3))
  _, i = f(same, jax.random.key(7))
  assert (i[0, ..., 0] != i[1, ..., 0]).any() and (i[0, ..., 0] != i[0, ..., 1]).any()
  # The key path equals the samples path with jax.random.uniform's draws.
  u = jax.random.uniform(jax.random.key(7), (2, 3, 2), jnp.float32)
  np.testing.assert_array_equal(J(jaxpool.fractional_max_pool, (2, 2), (13, 13), samples=u)(x), y1)
  # Channels first: the same samples, (N, C, n), give the transposed result.
  np.testing.assert_array_equal(
    J(jaxpool.fractional_max_pool, (2, 2), (13, 13), samples=u, channel_axis=1)(
      jnp.moveaxis(x, -1, 1)
    ),
    jnp.moveaxis(y1, -1, 1),
  )


def test_gradients_and_dtypes():
  rng = np.random.default_rng(5)
  x = (rng.permutation(2 * 9 * 8 * 2).reshape(2, 9, 8, 2) / 10).astype(np.float32)
  u = rng.uniform(size=(2, 2, 2)).astype(np.float32)
  for overlapping in (True, False):
    check_grads(
      J(jaxpool.fractional_max_pool, (2, 2), (6, 5), samples=u, overlapping=overlapping),
      (x,),
      order=1,
      modes=("fwd", "rev"),
      atol=1e-2,
      rtol=1e-2,
    )
  xi = rng.integers(0, 100, (2, 9, 8, 2)).astype(np.int32)
  yi = J(jaxpool.fractional_max_pool, (2, 2), (6, 5), samples=u)(xi)
  assert yi.dtype == jnp.int32
  np.testing.assert_array_equal(yi, reference.fractional_max_pool(xi, (2, 2), (6, 5), u, False)[0])
  xb = jnp.asarray(x, jnp.bfloat16)
  yb = J(jaxpool.fractional_max_pool, (2, 2), (6, 5), samples=u)(xb)
  assert yb.dtype == jnp.bfloat16
  np.testing.assert_array_equal(
    np.asarray(yb, np.float32),
    reference.fractional_max_pool(np.asarray(xb, np.float32), (2, 2), (6, 5), u, False)[0],
  )


def test_bad_arguments():
  x = jnp.zeros((2, 10, 10, 3))
  key = jax.random.key(0)
  f = jaxpool.fractional_max_pool
  with pytest.raises(ValueError, match="exactly one of output_size and output_ratio"):
    f(x, (2, 2), key=key)
  with pytest.raises(ValueError, match="exactly one of output_size and output_ratio"):
    f(x, (2, 2), (5, 5), output_ratio=0.5, key=key)
  with pytest.raises(ValueError, match="output_ratio"):
    f(x, (2, 2), output_ratio=1.0, key=key)
  with pytest.raises(TypeError, match="output_ratio"):
    f(x, (2, 2), output_ratio=(0.5,), key=key)
  with pytest.raises(TypeError, match="output_size"):
    f(x, (2, 2), (5.0, 5), key=key)
  with pytest.raises(ValueError, match=">= 1"):
    f(x, (2, 2), output_ratio=0.05, key=key)
  with pytest.raises(ValueError, match="too large"):
    f(x, (3, 3), (9, 9), key=key)  # PyTorch's check: output + window - 1 <= input
  with pytest.raises(ValueError, match="exactly one of key and samples"):
    f(x, (2, 2), (5, 5))
  with pytest.raises(ValueError, match="exactly one of key and samples"):
    f(x, (2, 2), (5, 5), key=key, samples=jnp.zeros((2, 3, 2)))
  with pytest.raises(ValueError, match=r"samples must have shape"):
    f(x, (2, 2), (5, 5), samples=jnp.zeros((2, 2, 3)))
  with pytest.raises(TypeError, match="samples"):
    f(x, (2, 2), (5, 5), samples=jnp.zeros((2, 3, 2), jnp.int32))
  with pytest.raises(TypeError, match="overlapping"):
    f(x, (2, 2), (5, 5), key=key, overlapping="yes")
  with pytest.raises(ValueError, match="window_shape"):
    f(x, (0, 2), (5, 5), key=key)
  with pytest.raises(ValueError, match="channel_axis"):
    f(x, (2, 2), (5, 5), key=key, channel_axis=2)


# --- PyTorch parity ---------------------------------------------------------------------


@pytest.mark.parametrize(
  "spatial,window,out",
  [((10, 9), (2, 2), (6, 5)), ((11, 12), (3, 2), (5, 8)), ((7, 6, 8), (2, 3, 2), (4, 3, 5))],
)
def test_torch_parity(spatial, window, out):
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  n = len(spatial)
  rng = np.random.default_rng(6)
  x = ties(rng, (2, 3, *spatial))
  x[0, 0, 0] = np.nan
  samples = rng.uniform(size=(2, 3, n)).astype(np.float32)
  pool = getattr(F, f"fractional_max_pool{n}d")
  ref_values, ref_indices = pool(
    torch.tensor(x),
    window,
    output_size=out,
    return_indices=True,
    _random_samples=torch.tensor(samples),
  )
  # PyTorch's 2-d samples list the width first; its 3-d samples are in (T, H, W) order.
  ours = samples[..., ::-1].copy() if n == 2 else samples
  values, indices = J(
    jaxpool.fractional_max_pool,
    window,
    out,
    samples=ours,
    overlapping=True,
    return_indices=True,
    channel_axis=1,
  )(x)
  np.testing.assert_array_equal(values, ref_values.numpy())
  np.testing.assert_array_equal(indices, ref_indices.numpy())
  x = ties(rng, (2, 3, *spatial))
  ct = rng.normal(size=ref_values.shape).astype(np.float32)
  tx = torch.tensor(x, requires_grad=True)
  (
    pool(tx, window, output_size=out, _random_samples=torch.tensor(samples)) * torch.tensor(ct)
  ).sum().backward()
  grad = jax.jit(
    jax.grad(
      lambda v: jnp.sum(
        jaxpool.fractional_max_pool(v, window, out, samples=ours, overlapping=True, channel_axis=1)
        * ct
      )
    )
  )(x)
  np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_torch_parity_output_ratio():
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  rng = np.random.default_rng(7)
  x = rng.normal(size=(1, 2, 13, 11)).astype(np.float32)
  samples = rng.uniform(size=(1, 2, 2)).astype(np.float32)
  ref = F.fractional_max_pool2d(
    torch.tensor(x), (2, 3), output_ratio=(0.7, 0.6), _random_samples=torch.tensor(samples)
  ).numpy()
  ours = J(
    jaxpool.fractional_max_pool,
    (2, 3),
    output_ratio=(0.7, 0.6),
    samples=samples[..., ::-1].copy(),
    overlapping=True,
    channel_axis=1,
  )(x)
  np.testing.assert_array_equal(ours, ref)


def test_static_candidates_hold_every_start():
  """The forward pass reads each window from static candidate positions
  (`_candidate_starts`): every start that the float32 formula gives, for any sample,
  must lie among them."""
  from jaxpool._src import fractional

  rng = np.random.default_rng(11)
  u = np.concatenate([rng.uniform(size=4000), [0.0, np.nextafter(1.0, 0.0), 0.5]])
  u = jnp.asarray(u, jnp.float32)
  for L, k, o in (
    (28, 2, 14),
    (25, 2, 17),
    (1000, 3, 611),
    (97, 5, 13),
    (7, 3, 1),
    (4096, 2, 2897),
    (30, 2, 29),
  ):
    starts = np.asarray(jax.jit(lambda s: fractional.fractional_starts(s, L, o, k))(u))
    lo, count = fractional._candidate_starts(jnp.float32, L, o, k)
    assert ((starts >= lo) & (starts < lo + count)).all(), (L, k, o)


def test_forward_and_differentiated_forms_agree():
  """Forward-only calls take the static candidates; differentiated ones the per-plane
  gathers of separable.separable_max: same values and indices, NaNs and ties included."""
  rng = np.random.default_rng(12)
  x = ties(rng, (2, 23, 19, 4))
  x[0, 3, 4, 1] = np.nan
  u = rng.uniform(size=(2, 4, 2)).astype(np.float32)
  for overlapping in (False, True):
    f = lambda v: jaxpool.fractional_max_pool(
      v, (3, 2), (9, 13), samples=u, overlapping=overlapping, return_indices=True
    )
    forward = jax.jit(f)(jnp.asarray(x))
    (values, index), _ = jax.jit(lambda v: jax.jvp(f, (v,), (jnp.ones_like(v),)))(jnp.asarray(x))
    np.testing.assert_array_equal(forward[0], values)
    np.testing.assert_array_equal(forward[1], index)


@pytest.mark.parametrize("channels", [1, 2, 3, 6])
def test_unbatched_1d_input(channels):
  """`(L, C)`, no batch dim (issue 23): the (6, 1) input came out (3, 3), (6, 3) gave
  wrong values and (6, 2) failed inside JAX, because channels at index 1 were taken
  for PyTorch's channels-first layout. The reference loops over `x[None]`."""
  rng = np.random.default_rng(channels)
  x = ties(rng, (11, channels))
  u = rng.uniform(size=(channels, 1)).astype(np.float32)
  ref_values, ref_indices = reference.fractional_max_pool(x[None], (3,), (5,), u[None], False)
  f = lambda v: jaxpool.fractional_max_pool(v, (3,), 5, samples=u, return_indices=True)
  values, indices = jax.jit(f)(x)
  np.testing.assert_array_equal(values, ref_values[0])
  np.testing.assert_array_equal(indices, ref_indices[0])
  (values, indices), _ = jax.jvp(f, (jnp.asarray(x),), (jnp.ones(x.shape, jnp.float32),))
  np.testing.assert_array_equal(values, ref_values[0])
  np.testing.assert_array_equal(indices, ref_indices[0])
  # The reproducer: windows [0, 2), [2, 4), [4, 6) whatever the key.
  y = jaxpool.fractional_max_pool(
    jnp.arange(6.0 * channels).reshape(6, channels), (2,), 3, key=jax.random.key(0)
  )
  np.testing.assert_array_equal(y, np.arange(6.0 * channels).reshape(3, 2, channels)[:, 1])


# --- the strided form: every dim's candidate starts an arithmetic progression ----------

# (spatial, window, output size) whose windows start at multiples of an integer alpha,
# up to float rounding of the sequence: alpha 2 (ratio 1/2 on even sizes, and with
# window 3 overlapping windows), 3 (skipped elements), 1 (window 2 on L = o + 1).
STRIDED = [
  ((12,), (2,), (6,)),
  ((10, 14), (2, 2), (5, 7)),
  ((11, 14), (3, 2), (5, 5)),
  ((8, 6), (2, 2), (7, 3)),
  ((6, 8, 4), (2, 2, 2), (3, 4, 2)),
]


@pytest.mark.parametrize("overlapping", [True, False])
@pytest.mark.parametrize("spatial,window,out", STRIDED)
def test_strided_form_matches_loop_reference(spatial, window, out, overlapping):
  """Where every dim's candidates are strided slices, the derivative reads the
  selected positions (`_selected_tangent`, `_add_at_selected`): values, indices,
  the gradient (to the selected element, summed where windows overlap) and the
  forward-mode tangent against the loop reference, ties and NaNs included."""
  from jaxpool._src import fractional

  rng = np.random.default_rng(sum(spatial) + 7 * overlapping)
  x = ties(rng, (2, *spatial, 3))
  x[1, (0,) * len(spatial)] = np.nan
  # one sample just below 1, where the float32 sequence can step off the multiples
  samples = rng.uniform(size=(2, 3, len(spatial))).astype(np.float32)
  samples[0, 0] = np.nextafter(np.float32(1), np.float32(0))
  config = fractional._Config(
    axes=tuple(range(1, len(spatial) + 1)),
    channel=len(spatial) + 1,
    sizes=spatial,
    window=window,
    outs=out,
    overlapping=overlapping,
    with_indices=False,
    batch_ndim=1,
  )
  assert all(
    fractional._stage_of(config, d, jnp.float32).step is not None for d in range(len(spatial))
  )
  pool = lambda v: jaxpool.fractional_max_pool(
    v, window, out, samples=samples, overlapping=overlapping
  )
  values, ref_indices = _matches_reference(x, window, out, samples, overlapping)
  ct = rng.normal(size=values.shape).astype(np.float32)
  grad = jax.jit(jax.grad(lambda v: jnp.sum(pool(v) * ct)))(x)
  np.testing.assert_allclose(
    grad, reference.scatter_grad(x.shape, ref_indices, ct), rtol=1e-6, atol=1e-6
  )
  tangent = rng.normal(size=x.shape).astype(np.float32)
  _, out_tangent = jax.jit(lambda v, t: jax.jvp(pool, (v,), (t,)))(x, tangent)
  flat = tangent.reshape(2, -1, 3)
  expected = np.take_along_axis(flat, np.asarray(ref_indices).reshape(2, -1, 3), axis=1)
  np.testing.assert_array_equal(out_tangent, expected.reshape(values.shape))


def test_strided_form_bfloat16_and_channels_first():
  """bfloat16 inputs and the (N, C, H, W) layout through the strided derivative:
  the gradient lands on the selected elements (PyTorch's indices)."""
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(21)
  x = ties(rng, (2, 3, 10, 14), magnitude=50)
  samples = rng.uniform(size=(2, 3, 2)).astype(np.float32)
  ref_values, ref_indices = torch.nn.functional.fractional_max_pool2d(
    torch.tensor(x),
    2,
    output_size=(5, 7),
    return_indices=True,
    _random_samples=torch.tensor(samples),
  )
  ours = samples[..., ::-1].copy()
  ct = ties(rng, ref_values.shape)
  for dtype in (jnp.float32, jnp.bfloat16):
    pool = lambda v: jaxpool.fractional_max_pool(
      v, (2, 2), (5, 7), samples=ours, overlapping=True, channel_axis=1
    )
    xv = jnp.asarray(x, dtype)
    np.testing.assert_array_equal(np.asarray(jax.jit(pool)(xv), np.float32), ref_values.numpy())
    grad = jax.jit(jax.grad(lambda v: jnp.sum(pool(v).astype(jnp.float32) * ct)))(xv)
    assert grad.dtype == dtype
    expected = np.zeros((2, 3, 140), np.float32)
    np.put_along_axis(expected, ref_indices.numpy().reshape(2, 3, -1), ct.reshape(2, 3, -1), 2)
    np.testing.assert_array_equal(np.asarray(grad, np.float32), expected.reshape(x.shape))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_start_range_holds_every_start(dtype):
  """`_exact_start_range` bounds the starts for every sample of the dtype: checked
  against the float formula on a grid of bit patterns, the top of [0, 1) and the
  neighbourhood of 1/2, in numpy arithmetic of that dtype (IEEE, as XLA runs it)."""
  from jaxpool._src import fractional

  if dtype == np.float32:
    bits = np.concatenate(
      [
        np.arange(0, 0x3F800000, 7919),
        np.arange(0x3F800000 - 50000, 0x3F800000),
        np.arange(0x3F000000 - 20000, 0x3F000000 + 20000),
      ]
    ).astype(np.uint32)
  else:
    top = 0x3FF0000000000000
    bits = np.concatenate([np.arange(0, top, top // 300000), np.arange(top - 50000, top)]).astype(
      np.uint64
    )
  u = bits.view(dtype)
  for L, k, o in ((28, 2, 14), (25, 2, 17), (97, 5, 13), (1000, 3, 611), (30, 2, 29)):
    alpha = np.asarray(L - k, dtype) / np.asarray(o - 1, dtype)
    i = np.arange(o - 1).astype(dtype)[:, None]
    starts = np.floor((i + u[None]) * alpha) - np.floor(u * alpha)[None]
    lo, hi = fractional._exact_start_range(np.dtype(dtype), L, o, k)
    assert (starts.min(axis=1) >= lo).all() and (starts.max(axis=1) <= hi).all(), (L, k, o)
    # and it is the few starts the formula can give: floor(i alpha) or one more
    base = np.floor(np.arange(o - 1) * ((L - k) / (o - 1)))
    assert (lo >= base - 1).all() and (hi <= base + 1).all(), (L, k, o)
