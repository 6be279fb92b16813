"""views: strided window views, tiling blocks, window sums and fusion barriers,
against the plain numpy window loops of tests/reference.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxpool._src.machinery import geometry
from jaxpool._src.machinery import views
from tests import reference

_GEOMETRIES = [  # (spatial, window, strides, padding, dilation, ceil_mode)
  ((7, 8), (3, 3), (2, 2), "SAME", None, False),
  ((7, 8), (2, 3), (2, 1), ((1, 0), (2, 1)), None, False),
  ((9,), (3,), (2,), 1, 2, False),
  ((7, 6), (3, 2), (2, 2), 1, None, True),
  ((5, 5), (2, 2), (2, 2), "VALID", None, False),
  ((4, 4), (3, 3), (1, 1), ((3, 0), (0, 3)), None, False),  # offsets fully in padding
]


def _geom(x, window, strides, padding, dilation, ceil_mode):
  return geometry.resolve(x.shape, window, strides, padding, dilation=dilation, ceil_mode=ceil_mode)


def _random_case(seed, spatial, *args):
  """A random (2, *spatial, 3) float32 input and its geometry."""
  x = np.random.default_rng(seed).normal(size=(2, *spatial, 3)).astype(np.float32)
  return x, _geom(x, *args)


@pytest.mark.parametrize("spatial, window, strides, padding, dilation, ceil_mode", _GEOMETRIES)
def test_padded_views_are_the_window_elements(
  spatial, window, strides, padding, dilation, ceil_mode
):
  x, geom = _random_case(0, spatial, window, strides, padding, dilation, ceil_mode)
  fill = -7.0
  got = dict(views.padded_views(jnp.asarray(x), geom, fill))
  for k in range(int(np.prod(window))):
    pick = lambda values, inside, _, k=k: values[k] if inside[k] else np.full(values[k].shape, fill)
    want = reference.window_pool(
      x, window, strides, padding, dilation=dilation, ceil_mode=ceil_mode, reduce=pick
    )
    if k in got:
      np.testing.assert_array_equal(np.asarray(got[k]), want.astype(np.float32))
    else:  # left out only where every window has padding at offset k
      np.testing.assert_array_equal(want, fill)


@pytest.mark.parametrize(
  "spatial, window, strides, padding, dilation, ceil_mode",
  _GEOMETRIES + [((5, 4, 6), (2, 3, 2), (3, 1, 2), 1, (1, 2, 1), True)],
)
def test_phase_views_are_the_window_elements(
  spatial, window, strides, padding, dilation, ceil_mode
):
  """The same values (and offsets) as the strided padded views with fill 0, and in
  channels-first layout too."""
  x, geom = _random_case(5, spatial, window, strides, padding, dilation, ceil_mode)
  for layout in ("last", "first"):
    xl = jnp.asarray(x if layout == "last" else np.moveaxis(x, -1, 1))
    g = (
      geom
      if layout == "last"
      else geometry.resolve(
        xl.shape, window, strides, padding, dilation=dilation, ceil_mode=ceil_mode, channel_axis=1
      )
    )
    got, want = views.phase_views(xl, g), views.padded_views(xl, g, 0)
    assert [k for k, _ in got] == [k for k, _ in want]
    for (_, a), (_, b) in zip(got, want):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _scatter_to_windows(coef, x_shape, window, strides, padding, dilation, ceil_mode):
  """numpy loop: input element i gets sum over (window o, offset k) holding i of coef[k][o]."""
  spatial = x_shape[1:-1]
  strides, dilation, pads, outs = reference.window_layout(
    spatial, window, strides, padding, dilation, ceil_mode
  )
  out = np.zeros(x_shape, np.float64)
  for k, offset in enumerate(np.ndindex(*window)):
    for o in np.ndindex(*outs):
      pos = [
        oi * s - lo + ki * d for oi, s, (lo, _), ki, d in zip(o, strides, pads, offset, dilation)
      ]
      if all(0 <= p < n for p, n in zip(pos, spatial)):
        out[(slice(None), *pos, slice(None))] += coef[k][(slice(None), *o, slice(None))]
  return out


@pytest.mark.parametrize("spatial, window, strides, padding, dilation, ceil_mode", _GEOMETRIES)
def test_phase_views_transpose_scatters_to_the_window_elements(
  spatial, window, strides, padding, dilation, ceil_mode
):
  """The VJP of t -> sum_k c_k * view_k(t) (the concatenate of per-phase sums) puts
  c_k[o] on the element at offset k of window o, and nothing on elements no
  window reaches."""
  x, geom = _random_case(6, spatial, window, strides, padding, dilation, ceil_mode)
  rng = np.random.default_rng(7)
  coef = rng.normal(size=(geom.window_size, *geom.output_shape)).astype(np.float32)
  linear = lambda t: sum(coef[k] * view for k, view in views.phase_views(t, geom))
  (got,) = jax.linear_transpose(linear, jnp.asarray(x))(jnp.ones(geom.output_shape))
  want = _scatter_to_windows(coef, x.shape, window, strides, padding, dilation, ceil_mode)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spatial, window, strides, padding, dilation, ceil_mode", _GEOMETRIES)
def test_window_sums_equal_the_reference(spatial, window, strides, padding, dilation, ceil_mode):
  x, geom = _random_case(1, spatial, window, strides, padding, dilation, ceil_mode)
  want = reference.sum_pool(x, window, strides, padding, dilation=dilation, ceil_mode=ceil_mode)
  for fn in (views.strided_window_sum, views.window_sum_by_views):
    np.testing.assert_allclose(np.asarray(fn(jnp.asarray(x), geom)), want, rtol=1e-5, atol=1e-5)
  # half precision: summed in float32, rounded once
  xb = jnp.asarray(x, jnp.bfloat16)
  wantb = reference.sum_pool(
    np.asarray(xb, np.float32), window, strides, padding, dilation=dilation, ceil_mode=ceil_mode
  )
  got = views.strided_window_sum(xb, geom)
  assert got.dtype == jnp.bfloat16
  np.testing.assert_array_equal(
    np.asarray(got, np.float32),
    np.asarray(jnp.asarray(wantb, jnp.float32).astype(jnp.bfloat16), np.float32),
  )


def test_window_blocks_of_tiling_windows():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 5, 7, 3)).astype(np.float32)
  geom = _geom(x, (2, 3), (2, 3), ((1, 0), (0, 2)), None, False)
  assert views.is_tiling(geom)
  assert not views.is_tiling(_geom(x, (3, 3), (2, 2), "SAME", None, False))
  blocks, axes = views.window_blocks(jnp.asarray(x), geom)
  assert axes == [2, 4] and blocks.shape == (2, 3, 2, 3, 3, 3)
  for k, (i, j) in enumerate(np.ndindex(2, 3)):
    pick = lambda values, inside, _, k=k: values[k] if inside[k] else np.zeros(values[k].shape)
    want = reference.window_pool(x, (2, 3), (2, 3), ((1, 0), (0, 2)), reduce=pick)
    np.testing.assert_array_equal(np.asarray(blocks[:, :, i, :, j]), want.astype(np.float32))


@pytest.mark.parametrize(
  "dtype",
  [np.float32, np.float16, jnp.bfloat16, np.int8, np.uint8, np.int32, np.complex64, np.bool_],
)
def test_barriers_are_the_identity(dtype):
  if np.issubdtype(dtype, np.integer):
    info = np.iinfo(dtype)
    values = np.array([info.min, info.max, 0, 1, info.max - 1], dtype)
  elif dtype == np.complex64:
    values = np.array([1 + 2j, -0.0, np.inf, 3.5 - 1j, 0], dtype)
  elif dtype == np.bool_:
    values = np.array([True, False, False, True, True])
  else:
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 1.5], np.float32)
  x = jnp.asarray(np.tile(values, (3, 1)), dtype)
  as_numpy = lambda a: np.asarray(a.astype(jnp.float32) if a.dtype == jnp.bfloat16 else a)
  # Both forms, whatever this machine's backend: the conditional (CPU) and the
  # reduce-window (elsewhere); eagerly and compiled, with `x` as its own source and
  # with another array as the source.
  forms = [
    lambda a: views.materialize(a, a),
    lambda a: views.materialize(a, jnp.ones(3)),
    lambda a: views.pooled(a, a),
    views._through_a_reduce_window,
    lambda a: views._through_a_conditional(a, a),
  ]
  for form in forms:
    for run in (form, jax.jit(form)):
      out = run(x)
      assert out.dtype == x.dtype and out.shape == x.shape
      np.testing.assert_array_equal(as_numpy(out), as_numpy(x))  # NaN == NaN here
  if dtype in (np.float32, np.float16, jnp.bfloat16):  # the conditional keeps -0.0's sign
    out = jax.jit(lambda a: views._through_a_conditional(a, a))(x)
    np.testing.assert_array_equal(np.signbit(as_numpy(out)), np.signbit(as_numpy(x)))


def test_barrier_predicate_takes_a_source_of_any_dtype():
  """The conditional's predicate, ``(b | 1) == 0`` for the bits of the source's first
  element (floats bitcast, booleans widened), is never true, whatever the source;
  the branch it would take (an optimization barrier) is the identity too, checked
  by calling it directly."""
  x = jnp.asarray(np.arange(12.0).reshape(3, 4))
  np.testing.assert_array_equal(np.asarray(jax.lax.optimization_barrier(x)), np.asarray(x))
  for source in (
    jnp.zeros(2),
    jnp.asarray([-0.0]),
    jnp.asarray([np.nan]),
    jnp.asarray([0], jnp.uint8),
    jnp.asarray([False]),
  ):
    np.testing.assert_array_equal(np.asarray(jax.jit(views.materialize)(x, source)), np.asarray(x))


def test_barriers_survive_xla_on_cpu():
  """On CPU the barrier must stay a conditional in the optimized program (XLA
  removes one whose predicate it knows or whose branches are the same), and the
  value behind it is computed once: its producer is not fused into the readers."""
  cpu = jax.devices("cpu")[0]  # also where another backend is the default
  x = jax.device_put(np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype(np.float32), cpu)

  def program(v):
    y = views.materialize(jnp.maximum(v[:, ::2], v[:, 1::2]) * 2.0, v)
    return y.reshape(4, -1).sum(1), y + 1.0

  text = jax.jit(program).lower(x).compile().as_text()
  entry = text[text.index("ENTRY") :]
  assert "conditional(" in entry
  assert sum("maximum" in line and "fusion(" in line for line in entry.splitlines()) <= 1
  np.testing.assert_allclose(
    np.asarray(jax.jit(program)(x)[1]),
    np.maximum(np.asarray(x)[:, ::2], np.asarray(x)[:, 1::2]) * 2 + 1,
  )


def test_barriers_under_vmap_and_derivatives():
  """The barrier's derivative is the identity (to second order, both modes), and
  under `vmap` (batched value, source or both) the batch goes through one
  conditional: JAX's rule for a batched predicate would select between the
  branches, which XLA fuses away."""
  cpu = jax.devices("cpu")[0]
  x = jax.device_put(np.random.default_rng(1).normal(size=(3, 5, 4)).astype(np.float32), cpu)
  for in_axes in [(0, 0), (0, None), (None, 0)]:
    a = x if in_axes[0] == 0 else x[0]
    source = x if in_axes[1] == 0 else x[0]
    out = jax.vmap(views.materialize, in_axes=in_axes)(a, source)
    np.testing.assert_array_equal(np.asarray(out), np.broadcast_to(np.asarray(a), out.shape))
  f = lambda v: jnp.sum(jnp.sin(views.materialize(v * 2.0, v)))
  check_grads(f, (x[0],), order=2, modes=("fwd", "rev"), atol=1e-2, rtol=1e-2)
  np.testing.assert_allclose(
    np.asarray(jax.grad(f)(x[0])), 2 * np.cos(2 * np.asarray(x[0])), rtol=1e-6
  )
  per_example = jax.jit(jax.vmap(jax.grad(f)))
  np.testing.assert_allclose(np.asarray(per_example(x)), 2 * np.cos(2 * np.asarray(x)), rtol=1e-6)
  text = per_example.lower(x).compile().as_text()
  assert text[text.index("ENTRY") :].count("conditional(") == 1


@pytest.mark.parametrize(
  "spatial,window,strides,expected",
  [
    ((60, 60), (3, 3), (2, 2), True),  # 2.25 windows per element
    ((60, 60, 60), (3, 3, 3), (2, 2, 2), True),
    ((60,), (3,), (2,), False),  # 1.5
    ((60, 60), (2, 2), (2, 2), False),  # 1: tiling
    ((60, 60), (3, 3), (1, 1), False),  # stride 1
    ((60, 60), (4, 4), (2, 2), True),  # 4
  ],
)
def test_overlaps_twice_counts_windows_per_element(spatial, window, strides, expected):
  # Windows per input element counted from the windows' elements (numpy loop over
  # the windows of a VALID geometry, away from the borders).
  geom = geometry.resolve((1, *spatial, 1), window, strides, "VALID", fn="t")
  counts = np.zeros(spatial, int)
  for o in np.ndindex(*geom.output_spatial):
    for k in np.ndindex(*window):
      counts[tuple(oi * s + ki for oi, s, ki in zip(o, strides, k))] += 1
  inner = counts[tuple(slice(w, n - w) for w, n in zip(window, spatial))]
  many = inner.mean() >= 2 and np.prod(strides) > 1
  assert views.overlaps_twice(geom) == many == expected
