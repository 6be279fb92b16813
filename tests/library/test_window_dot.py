"""jaxpool._src.machinery.window_dot: window dot products and the weights check, against numpy
loops over every window (values and both transposes) and check_grads."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxpool._src.machinery import geometry
from jaxpool._src.machinery.window_dot import check_weights
from jaxpool._src.machinery.window_dot import window_dot

try:
  from tests import reference
except ImportError:  # tests/ itself on sys.path
  import reference


def window_pairs(spatial, window, strides, padding, options):
  """(output sizes, [(o, k, pos)] for every window o and element k inside the input):
  elements in the padding or the ceil_mode overhang are left out, i.e. read as 0."""
  strides, dilation, pads, outs = reference.window_layout(
    spatial, window, strides, padding, options.get("dilation"), options.get("ceil_mode", False)
  )
  pairs = []
  for o in itertools.product(*map(range, outs)):
    for k in itertools.product(*map(range, window)):
      pos = tuple(
        oi * s - lo + ki * d for oi, s, (lo, _), ki, d in zip(o, strides, pads, k, dilation)
      )
      if all(0 <= p < L for p, L in zip(pos, spatial)):
        pairs.append((o, k, pos))
  return outs, pairs


def ref_window_dot(x, w, *layout):
  """x (B, *spatial, C), w (M, *window, 1 or C) -> (M, B, *out, C), float64."""
  outs, pairs = window_pairs(x.shape[1:-1], *layout)
  z = np.zeros((w.shape[0], x.shape[0], *outs, x.shape[-1]))
  for o, k, pos in pairs:  # (M, 1, 1 or C) * (1, B, C)
    z[(slice(None), slice(None), *o)] += w[(slice(None), *k)][:, None] * x[(slice(None), *pos)]
  return z


def ref_transpose(x, w, cot, *layout):
  """(d/dx, d/dw) of sum(cot * ref_window_dot(x, w)): each window's cotangent times the
  weights added onto its input elements; the elements times the cotangent into w."""
  _, pairs = window_pairs(x.shape[1:-1], *layout)
  dx, dw = np.zeros(x.shape), np.zeros(w.shape)
  for o, k, pos in pairs:
    c = cot[(slice(None), slice(None), *o)]  # (M, B, C)
    dx[(slice(None), *pos)] += (c * w[(slice(None), *k)][:, None]).sum(axis=0)
    per_channel = (c * x[(slice(None), *pos)]).sum(axis=1)  # (M, C)
    dw[(slice(None), *k)] += per_channel.sum(-1, keepdims=True) if w.shape[-1] == 1 else per_channel
  return dx, dw


CASES = [  # spatial, window, strides, padding, options, n_filters
  ((9,), (3,), 1, "VALID", {}, 1),
  ((8,), (2,), 3, ((2, 1),), dict(dilation=2, ceil_mode=True), 2),  # overhang past hi
  ((6, 7), (2, 2), 2, "VALID", {}, 1),
  ((6, 7), (2, 2), 2, "VALID", {}, 3),  # tiling, several filters: one matrix product if shared
  ((6, 5), (3, 3), 2, "SAME", {}, 2),
  ((5, 6), (3, 2), (1, 2), ((1, 0), (1, 1)), dict(dilation=(1, 2)), 3),
  ((7, 6), (3, 3), 2, 1, dict(ceil_mode=True), 1),  # overhang in the last dim
]


def setup(case, channel_axis, shared, seed=0):
  """Channels-last x, weights, cotangent (float32 values) and the geometry of the layout."""
  spatial, window, strides, padding, options, m = case
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(2, *spatial, 3)).astype(np.float32).astype(np.float64)
  w = rng.normal(size=(m, *window, 1 if shared else 3)).astype(np.float32).astype(np.float64)
  shape = x.shape if channel_axis == -1 else np.moveaxis(x, -1, 1).shape
  geom = geometry.resolve(shape, window, strides, padding, channel_axis=channel_axis, **options)
  outs, _ = window_pairs(spatial, window, strides, padding, options)
  cot = rng.normal(size=(m, 2, *outs, 3)).astype(np.float32).astype(np.float64)
  return x, w, cot, geom, (window, strides, padding, options)


def to_layout(a, channel_axis, lead=0):
  """Channels-last array -> the layout of `channel_axis` (`lead` leading filter dims)."""
  return jnp.asarray(a if channel_axis == -1 else np.moveaxis(a, -1, lead + 1), jnp.float32)


def from_layout(a, channel_axis, lead=0):
  return np.asarray(a) if channel_axis == -1 else np.moveaxis(np.asarray(a), lead + 1, -1)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("channel_axis", [-1, 1])
@pytest.mark.parametrize("shared", [True, False])
def test_values_are_the_dot_of_each_window_with_the_weights(case, channel_axis, shared):
  x, w, _, geom, layout = setup(case, channel_axis, shared)
  z = window_dot(to_layout(x, channel_axis), jnp.asarray(w, jnp.float32), geom)
  assert z.dtype == jnp.float32
  expected = ref_window_dot(x, w, *layout)
  assert z.shape == (w.shape[0], *geom.output_shape)
  np.testing.assert_allclose(from_layout(z, channel_axis, 1), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("channel_axis", [-1, 1])
@pytest.mark.parametrize("shared", [True, False])
def test_vjp_in_inputs_and_weights_is_the_transpose_loop(case, channel_axis, shared):
  x, w, cot, geom, layout = setup(case, channel_axis, shared, seed=1)
  _, vjp = jax.vjp(
    lambda x, w: window_dot(x, w, geom), to_layout(x, channel_axis), jnp.asarray(w, jnp.float32)
  )
  dx, dw = vjp(to_layout(cot, channel_axis, 1))
  want_dx, want_dw = ref_transpose(x, w, cot, *layout)
  np.testing.assert_allclose(from_layout(dx, channel_axis), want_dx, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dw, want_dw, rtol=1e-5, atol=1e-5)


def test_padding_and_ceil_overhang_read_as_zero_by_hand():
  # x = [1, 2, 3] (no batch dim, one channel), w = [10, 100, 1000], padding (2, 0):
  # windows [0, 0, 1], [0, 1, 2], [1, 2, 3].
  x, w = jnp.array([[1.0], [2.0], [3.0]]), jnp.array([[[10.0], [100.0], [1000.0]]])
  geom = geometry.resolve(x.shape, (3,), 1, ((2, 0),))
  np.testing.assert_allclose(window_dot(x, w, geom)[0, :, 0], [1000.0, 2100.0, 3210.0])
  # L=5, window 2, stride 2, ceil_mode: the last window is [x4, overhang].
  x = jnp.arange(1.0, 6.0)[:, None] + 100  # large values: a non-zero fill would show
  geom = geometry.resolve(x.shape, (2,), 2, "VALID", ceil_mode=True)
  np.testing.assert_allclose(
    window_dot(x, jnp.array([[[1.0], [10.0]]]), geom)[0, :, 0], [101 + 1020, 103 + 1040, 105]
  )


def test_check_grads_first_and_second_order():
  with jax.enable_x64(True):
    rng = np.random.default_rng(2)
    x, w = jnp.asarray(rng.normal(size=(1, 4, 4, 2))), jnp.asarray(rng.normal(size=(2, 2, 2, 2)))
    geom = geometry.resolve(x.shape, (2, 2), (1, 2), ((1, 0), (0, 1)), dilation=(2, 1))
    check_grads(lambda x, w: window_dot(x, w, geom), (x, w), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize(
  "x_dtype,w_dtype",
  [(jnp.bfloat16, jnp.float32), (jnp.bfloat16, jnp.bfloat16), (jnp.float16, jnp.float32)],
)
def test_half_precision_is_computed_and_returned_in_float32(x_dtype, w_dtype):
  x, w, cot, geom, layout = setup(CASES[3], -1, False, seed=3)
  xh, wh = jnp.asarray(x, x_dtype), jnp.asarray(w, w_dtype)
  z, vjp = jax.vjp(lambda x, w: window_dot(x, w, geom), xh, wh)
  assert z.dtype == jnp.float32
  # Loose against the unrounded float32 reference; tight against the reference of the
  # rounded values (a half-precision accumulation would miss the latter).
  np.testing.assert_allclose(z, ref_window_dot(x, w, *layout), rtol=3e-2, atol=3e-2)
  rounded = ref_window_dot(np.asarray(xh, np.float64), np.asarray(wh, np.float64), *layout)
  np.testing.assert_allclose(z, rounded, rtol=1e-5, atol=1e-5)
  dx, dw = vjp(jnp.asarray(cot, jnp.float32))
  assert (dx.dtype, dw.dtype) == (x_dtype, w_dtype)
  want_dx, want_dw = ref_transpose(x, w, cot, *layout)
  np.testing.assert_allclose(np.asarray(dx, np.float32), want_dx, rtol=5e-2, atol=5e-2)
  np.testing.assert_allclose(np.asarray(dw, np.float32), want_dw, rtol=5e-2, atol=1e-1)


# --- check_weights ----------------------------------------------------------------

GEOM = geometry.resolve((2, 6, 6, 3), (3, 2), 2, "VALID")  # C = 3
GEOM_FIRST = geometry.resolve((2, 3, 6, 5), (3, 2), 2, "VALID", channel_axis=1)  # C = 3


@pytest.mark.parametrize("geom", [GEOM, GEOM_FIRST])
@pytest.mark.parametrize(
  "shape,leading",
  [((3, 2, 1), None), ((3, 2, 3), None), ((4, 3, 2, 1), "n_leaves"), ((1, 3, 2, 3), "n")],
)
def test_check_weights_accepts_shared_and_per_channel_shapes(geom, shape, leading):
  w = check_weights(np.ones(shape, np.float16), geom, name="kernel", fn="my_fn", leading=leading)
  assert w.shape == shape and w.dtype == jnp.float16  # float dtypes are kept
  ints = check_weights(np.full(shape, 2), geom, name="kernel", fn="my_fn", leading=leading)
  assert jnp.issubdtype(ints.dtype, jnp.floating) and np.all(np.asarray(ints) == 2.0)


@pytest.mark.parametrize("geom", [GEOM, GEOM_FIRST])
@pytest.mark.parametrize(
  "shape,leading",
  [
    ((), None),  # a scalar
    ((3, 2), None),  # no channel dim
    ((2, 3, 1), None),  # window dims swapped
    ((3, 2, 2), None),  # neither 1 nor C channels
    ((3, 2, 6), None),  # a spatial size, not C, as the channel count
    ((3, 2, 1), "n_leaves"),  # the leading dim missing
    ((1, 3, 2, 1), None),  # a leading dim where none is expected
    ((2, 1, 3, 2, 1), "n"),  # two leading dims
  ],
)
def test_check_weights_rejects_bad_shapes_naming_the_function_and_argument(geom, shape, leading):
  with pytest.raises(ValueError, match=r"^my_fn: kernel must have shape") as err:
    check_weights(np.zeros(shape), geom, name="kernel", fn="my_fn", leading=leading)
  assert f"got shape {shape}" in str(err.value)
  assert "C=3 input channels" in str(err.value)
  if leading is not None:
    assert f"({leading}, 3, 2, 1 or 3)" in str(err.value)


def test_check_weights_rejects_complex_weights_instead_of_dropping_the_imaginary_part():
  with pytest.raises(TypeError, match=r"my_fn: kernel must be real .*complex64"):
    check_weights(np.ones((3, 2, 1), np.complex64), GEOM, name="kernel", fn="my_fn")
  # bool weights are a valid 0/1 mask
  w = check_weights(np.ones((3, 2, 1), bool), GEOM, name="kernel", fn="my_fn")
  assert jnp.issubdtype(w.dtype, jnp.floating) and float(w.sum()) == 6
