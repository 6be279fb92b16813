"""Window geometry: every validation error, output shapes and SAME padding.

Output sizes are checked against `reference.output_size` (PyTorch's written rule)
and SAME padding against XLA's own rule (`jax.lax.padtype_to_pads`), both
independent of `jaxpool._src.machinery.geometry`.
"""

import itertools

import jax
import numpy as np
import pytest

from jaxpool._src.machinery import geometry
from tests import reference

resolve = geometry.resolve


# --- validation errors -------------------------------------------------------------
# (input_shape, window_shape, strides, padding, options, exception, fragments that
# the message must contain: the argument's name and the value received).
ERRORS = [
  # wrong rank
  ((4, 4), (2, 2), None, "VALID", {}, ValueError, ["inputs", "(4, 4)", "rank"]),
  ((4,), (2,), None, "VALID", {}, ValueError, ["inputs", "(4,)", "rank"]),
  # window_shape: type, emptiness, non-int entries, zero/negative entries
  ((1, 4, 4, 1), 2, None, "VALID", {}, TypeError, ["window_shape", "2"]),
  ((1, 4, 4, 1), "22", None, "VALID", {}, TypeError, ["window_shape", "'22'"]),
  ((1, 4, 4, 1), (), None, "VALID", {}, ValueError, ["window_shape", "()"]),
  ((1, 4, 4, 1), (2.0, 2), None, "VALID", {}, TypeError, ["window_shape", "(2.0, 2)"]),
  ((1, 4, 4, 1), (True, 2), None, "VALID", {}, TypeError, ["window_shape", "(True, 2)"]),
  ((1, 4, 4, 1), (0, 2), None, "VALID", {}, ValueError, ["window_shape", "(0, 2)", ">= 1"]),
  ((1, 4, 4, 1), (2, -1), None, "VALID", {}, ValueError, ["window_shape", "(2, -1)"]),
  # strides
  ((1, 4, 4, 1), (2, 2), 0, "VALID", {}, ValueError, ["strides", "(0, 0)", ">= 1"]),
  ((1, 4, 4, 1), (2, 2), (1, -2), "VALID", {}, ValueError, ["strides", "(1, -2)"]),
  ((1, 4, 4, 1), (2, 2), 2.0, "VALID", {}, TypeError, ["strides", "2.0"]),
  ((1, 4, 4, 1), (2, 2), True, "VALID", {}, TypeError, ["strides", "True"]),
  ((1, 4, 4, 1), (2, 2), (2, 2.0), "VALID", {}, TypeError, ["strides", "(2, 2.0)"]),
  ((1, 4, 4, 1), (2, 2), (2, 2, 2), "VALID", {}, ValueError, ["strides", "(2, 2, 2)", "2"]),
  ((1, 4, 4, 1), (2, 2), "2", "VALID", {}, TypeError, ["strides", "'2'"]),
  # dilation
  ((1, 4, 4, 1), (2, 2), None, "VALID", {"dilation": 0}, ValueError, ["dilation", "(0, 0)"]),
  ((1, 4, 4, 1), (2, 2), None, "VALID", {"dilation": (1, 0)}, ValueError, ["dilation", "(1, 0)"]),
  ((1, 4, 4, 1), (2, 2), None, "VALID", {"dilation": 1.5}, TypeError, ["dilation", "1.5"]),
  ((1, 4, 4, 1), (2, 2), None, "VALID", {"dilation": (1,)}, ValueError, ["dilation", "(1,)"]),
  # window larger than the padded input (dilation counts)
  ((1, 4, 4, 1), (5, 2), None, "VALID", {}, ValueError, ["window_shape=(5, 2)", "(4, 4)"]),
  (
    (1, 4, 4, 1),
    (3, 2),
    None,
    "VALID",
    {"dilation": 2},
    ValueError,
    ["window_shape=(3, 2)", "dilation=(2, 2)", "(4, 4)"],
  ),
  ((1, 3, 1), (6,), None, ((1, 1),), {}, ValueError, ["window_shape=(6,)", "((1, 1),)"]),
  # with ceil_mode a larger window is allowed only while one window starts in the input
  ((1, 2, 1), (6,), 3, 0, {"ceil_mode": True}, ValueError, ["window_shape=(6,)", "ceil_mode"]),
  ((1, 2, 1), (5,), 2, 0, {"ceil_mode": True}, ValueError, ["window_shape=(5,)", "(2,)"]),
  # padding: unknown string, wrong type, wrong length, non-int, negative, bad pairs
  ((1, 4, 4, 1), (2, 2), None, "FULL", {}, ValueError, ["padding", "'FULL'", "VALID"]),
  ((1, 4, 4, 1), (2, 2), None, 1.0, {}, TypeError, ["padding", "1.0"]),
  ((1, 4, 4, 1), (2, 2), None, True, {}, TypeError, ["padding", "True"]),
  ((1, 4, 4, 1), (2, 2), None, None, {}, TypeError, ["padding", "None"]),
  ((1, 4, 4, 1), (2, 2), None, (1, 1, 1), {}, ValueError, ["padding", "(1, 1, 1)"]),
  ((1, 4, 1), (2,), None, (1, 2), {}, ValueError, ["padding", "(1, 2)", "((1, 2),)"]),
  ((1, 4, 4, 1), (2, 2), None, (1, 1.0), {}, TypeError, ["padding", "(1, 1.0)"]),
  ((1, 4, 4, 1), (2, 2), None, -1, {}, ValueError, ["padding", "-1", "non-negative"]),
  ((1, 4, 4, 1), (2, 2), None, (0, -1), {}, ValueError, ["padding", "(0, -1)"]),
  ((1, 4, 4, 1), (2, 2), None, ((0, 0), (-1, 0)), {}, ValueError, ["padding", "((0, 0), (-1, 0))"]),
  ((1, 4, 4, 1), (2, 2), None, ((1, 1),), {}, ValueError, ["padding", "((1, 1),)"]),
  (
    (1, 4, 4, 1),
    (2, 2),
    None,
    ((1, 1, 1), (1, 1)),
    {},
    TypeError,
    ["padding", "((1, 1, 1), (1, 1))"],
  ),
  (
    (1, 4, 4, 1),
    (2, 2),
    None,
    ((1, 1.5), (1, 1)),
    {},
    TypeError,
    ["padding", "((1, 1.5), (1, 1))"],
  ),
  ((1, 4, 4, 1), (2, 2), None, ((1, 1), 1), {}, TypeError, ["padding", "((1, 1), 1)"]),
  ((1, 4, 4, 1), (2, 2), None, ("ab", (1, 1)), {}, TypeError, ["padding", "('ab', (1, 1))"]),
  (
    (1, 4, 4, 1),
    (2, 2),
    None,
    ((True, 0), (0, 0)),
    {},
    TypeError,
    ["padding", "((True, 0), (0, 0))"],
  ),
  # ceil_mode
  ((1, 4, 4, 1), (2, 2), None, "SAME", {"ceil_mode": True}, ValueError, ["ceil_mode", "'SAME'"]),
  (
    (1, 4, 4, 1),
    (2, 2),
    None,
    "same_lower",
    {"ceil_mode": True},
    ValueError,
    ["ceil_mode", "'same_lower'"],
  ),
  ((1, 4, 4, 1), (2, 2), None, "VALID", {"ceil_mode": 1}, TypeError, ["ceil_mode", "1"]),
  # channel_axis
  (
    (1, 4, 4, 1),
    (2, 2),
    None,
    "VALID",
    {"channel_axis": 2},
    ValueError,
    ["channel_axis", "2", "(1, 4, 4, 1)"],
  ),
  ((1, 4, 4, 1), (2, 2), None, "VALID", {"channel_axis": 0}, ValueError, ["channel_axis", "0"]),
  ((1, 4, 4, 1), (2, 2), None, "VALID", {"channel_axis": -2}, ValueError, ["channel_axis", "-2"]),
  ((1, 4, 4, 1), (2, 2), None, "VALID", {"channel_axis": 1.0}, ValueError, ["channel_axis", "1.0"]),
  (
    (1, 4, 4, 1),
    (2, 2),
    None,
    "VALID",
    {"channel_axis": True},
    ValueError,
    ["channel_axis", "True"],
  ),
  (
    (3, 4, 4),
    (2, 2),
    None,
    "VALID",
    {"channel_axis": 1},
    ValueError,
    ["channel_axis=1", "(3, 4, 4)", "rank 4"],
  ),
  (
    (2, 3, 4, 4, 4),
    (2, 2),
    None,
    "VALID",
    {"channel_axis": 1},
    ValueError,
    ["channel_axis=1", "(2, 3, 4, 4, 4)"],
  ),
  # rank 2 with channel_axis=1: index 1 is also the last axis; refused, not read as
  # (L, C) (issue 23), as (C, H, W) is refused for 2-d windows above
  (
    (2, 6),
    (3,),
    None,
    "VALID",
    {"channel_axis": 1},
    ValueError,
    ["channel_axis=1", "(2, 6)", "inputs[None]", "channel_axis=-1"],
  ),
]


@pytest.mark.parametrize(
  "shape, window, strides, padding, options, error, fragments",
  ERRORS,
  ids=[f"error{i}" for i in range(len(ERRORS))],
)
def test_validation_errors(shape, window, strides, padding, options, error, fragments):
  with pytest.raises(error) as info:
    resolve(shape, window, strides, padding, fn="my_pool", **options)
  message = str(info.value)
  assert message.startswith("my_pool: "), message
  for fragment in fragments:
    assert fragment in message, (fragment, message)


def test_errors_are_raised_by_the_public_functions_at_trace_time():
  import jax.numpy as jnp

  import jaxpool

  x = jnp.zeros((1, 4, 4, 1))
  for name in ("max_pool", "min_pool", "sum_pool", "avg_pool"):
    pool = getattr(jaxpool, name)
    with pytest.raises(ValueError, match=rf"^{name}: .*window_shape"):
      jax.jit(lambda x: pool(x, (5, 5))).lower(x)
    with pytest.raises(TypeError, match=rf"^{name}: strides"):
      jax.eval_shape(lambda x: pool(x, (2, 2), strides=1.0), x)


# --- output shapes -----------------------------------------------------------------
def test_output_shape_grid_matches_pytorch_rule():
  checked = larger = 0
  for size, window, stride, lo, hi, dilation, ceil_mode in itertools.product(
    range(1, 9), range(1, 5), range(1, 4), range(0, 3), range(0, 3), range(1, 3), (False, True)
  ):
    effective = dilation * (window - 1) + 1
    expected = reference.output_size(size, window, stride, lo, hi, dilation, ceil_mode)
    if expected < 1:  # PyTorch: "Output size is too small"
      with pytest.raises(ValueError, match="^pool: the window .* no output"):
        resolve(
          (2, size, 3), (window,), stride, ((lo, hi),), dilation=dilation, ceil_mode=ceil_mode
        )
      continue
    geom = resolve(
      (2, size, 3), (window,), stride, ((lo, hi),), dilation=dilation, ceil_mode=ceil_mode
    )
    assert geom.output_spatial == (expected,), (size, window, stride, lo, hi, dilation, ceil_mode)
    assert geom.output_shape == (2, expected, 3)
    # The change to the high padding makes the last window end at the padded end,
    # and lax.reduce_window's floor rule on lax_padding gives the same size.
    assert geom.ceil_extra[0] == (expected - 1) * stride + effective - (size + lo + hi)
    lax_lo, lax_hi = geom.lax_padding[1]
    assert (lax_lo, lax_hi) == (lo, max(hi + geom.ceil_extra[0], 0))
    assert (size + lax_lo + lax_hi - effective) // stride + 1 == expected
    if not ceil_mode:
      assert geom.ceil_extra[0] <= 0
    checked += 1
    larger += size + lo + hi < effective
  assert checked > 1000
  assert larger > 50  # ceil_mode windows larger than the padded input (PyTorch allows them)


@pytest.mark.parametrize(
  "shape, window, channel_axis, spatial_axes, channel, out",
  [
    ((5, 6, 3), (2, 3), -1, (0, 1), 2, (4, 4, 3)),  # no batch dim
    ((2, 5, 6, 3), (2, 3), -1, (1, 2), 3, (2, 4, 4, 3)),  # one batch dim
    ((4, 2, 5, 6, 3), (2, 3), -1, (2, 3), 4, (4, 2, 4, 4, 3)),  # two batch dims
    ((4, 2, 5, 6, 3), (2, 3), 4, (2, 3), 4, (4, 2, 4, 4, 3)),  # last axis by index
    ((2, 3, 5, 6), (2, 3), 1, (2, 3), 1, (2, 3, 4, 4)),  # PyTorch layout
    ((2, 3, 5), (2,), 1, (2,), 1, (2, 3, 4)),
    ((2, 3, 5, 6, 7), (2, 3, 4), 1, (2, 3, 4), 1, (2, 3, 4, 4, 4)),
    ((7, 3), (2,), -1, (0,), 1, (6, 3)),
  ],
)
def test_layouts(shape, window, channel_axis, spatial_axes, channel, out):
  geom = resolve(shape, window, channel_axis=channel_axis)
  assert geom.spatial_axes == spatial_axes
  assert geom.channel_axis == channel
  assert geom.output_shape == out
  assert geom.window_dimensions == tuple(
    window[spatial_axes.index(a)] if a in spatial_axes else 1 for a in range(len(shape))
  )


def test_padding_forms_are_equivalent():
  shape, window = (1, 6, 7, 2), (3, 2)
  as_pairs = resolve(shape, window, padding=((1, 1), (2, 2))).padding
  assert resolve(shape, window, padding=(1, 2)).padding == as_pairs
  assert resolve(shape, window, padding=[[1, 1], [2, 2]]).padding == as_pairs
  assert resolve(shape, window, padding=np.array([[1, 1], [2, 2]])).padding == as_pairs
  assert resolve(shape, window, padding=np.array([1, 2])).padding == as_pairs
  assert resolve(shape, window, padding=[np.array([1, 1]), (2, np.int64(2))]).padding == as_pairs
  assert resolve(shape, window, padding=jax.numpy.array([[1, 1], [2, 2]])).padding == as_pairs
  assert resolve(shape, window, padding=1).padding == ((1, 1), (1, 1))
  assert resolve(shape, window, padding=np.int64(1)).padding == ((1, 1), (1, 1))
  assert resolve(shape, window, padding="valid").padding == ((0, 0), (0, 0))
  assert (
    resolve(shape, window, padding="same").padding == resolve(shape, window, padding="SAME").padding
  )


def test_integer_like_arguments():
  geom = resolve((1, 6, 6, 1), (np.int32(2), 3), np.int64(2), dilation=(1, np.int8(2)))
  assert geom.window_shape == (2, 3) and geom.strides == (2, 2) and geom.dilation == (1, 2)
  assert all(type(v) is int for v in geom.window_shape + geom.strides + geom.dilation)
  assert resolve((1, 6, 6, 1), [2, 2], [1, 2]).output_spatial == (5, 3)
  assert resolve((1, 6, 6, 1), np.array([2, 2])).output_spatial == (5, 5)


def test_same_padding_equals_xla():
  for size, window, stride, dilation in itertools.product(
    range(1, 10), range(1, 6), range(1, 4), range(1, 3)
  ):
    effective = dilation * (window - 1) + 1
    for kind in ("SAME", "SAME_LOWER"):
      geom = resolve((1, size, 1), (window,), stride, kind, dilation=dilation)
      expected = jax.lax.padtype_to_pads((size,), (effective,), (stride,), kind)
      assert geom.padding == tuple(map(tuple, expected)), (size, window, stride, dilation)
      assert geom.output_spatial == (-(-size // stride),)
      assert geom.lax_padding[1] == geom.padding[0]
    assert resolve((1, size, 1), (window,), stride, "SAME", dilation=dilation).padding == (
      reference.same_padding(size, window, stride, dilation),
    )


def test_same_padding_equals_lax_reduce_window_shape():
  x = np.zeros((2, 7, 5, 3), np.float32)
  for window, stride, dilation in [
    ((3, 2), (2, 2), (1, 1)),
    ((4, 3), (3, 1), (2, 2)),
    ((7, 5), (1, 4), (1, 1)),
  ]:
    geom = resolve(x.shape, window, stride, "SAME", dilation=dilation)
    y = jax.eval_shape(
      lambda x: jax.lax.reduce_window(
        x,
        0.0,
        jax.lax.add,
        (1, *window, 1),
        (1, *stride, 1),
        "SAME",
        window_dilation=(1, *dilation, 1),
      ),
      x,
    )
    assert geom.output_shape == y.shape
    assert geom.lax_padding[1:3] == geom.padding


def test_geometry_is_hashable_and_value_equal():
  a = resolve((2, 8, 8, 3), (3, 3), 2, 1, ceil_mode=True)
  b = resolve((2, 8, 8, 3), [3, 3], (2, 2), ((1, 1), (1, 1)), ceil_mode=True)
  assert a == b and hash(a) == hash(b)
  assert a != resolve((2, 8, 8, 3), (3, 3), 2, 1)


def test_window_counts_and_bounds():
  # size 5, window 3, stride 2, padding (1, 1), ceil_mode: windows start at -1, 1, 3,
  # and the last one ends at 5 = size + hi: no overhang. With window 2 and
  # ceil_mode the last window [5, 6] starts at size + lo - 1 ... checked numerically.
  for size, window, stride, lo, hi, ceil_mode in itertools.product(
    range(2, 7), range(1, 4), range(1, 3), range(2), range(2), (False, True)
  ):
    if size + lo + hi < window:
      continue
    geom = resolve((1, size, 1), (window,), stride, ((lo, hi),), ceil_mode=ceil_mode)
    starts = np.arange(geom.output_spatial[0]) * stride - lo
    pos = starts[:, None] + np.arange(window)[None, :]
    np.testing.assert_array_equal(geom.window_counts(False), ((pos >= 0) & (pos < size)).sum(1))
    np.testing.assert_array_equal(
      geom.window_counts(True), ((pos >= -lo) & (pos < size + hi)).sum(1)
    )
    assert geom.has_padding == bool(((pos < 0) | (pos >= size)).any())
    for k in range(window):
      mask = geom.in_bounds((k,))
      inside = (pos[:, k] >= 0) & (pos[:, k] < size)
      if inside.all():
        assert mask is None
      else:
        np.testing.assert_array_equal(mask.reshape(-1), inside)


# --- every pool that takes ceil_mode: windows larger than the input (issue 23) ----
def _by_window(fn):
  """A `reference.window_pool` of `fn(values, count)`: one window's in-input values
  (float64, (K_in, B, C)) and its element count including the declared padding."""

  def pool(x, window, strides, padding, **kw):
    reduce = lambda v, inside, declared: fn(v[inside].astype(np.float64), declared.sum())
    return reference.window_pool(x, window, strides, padding, **kw, reduce=reduce)

  return pool


def _weighted(v, count):
  a = np.maximum(v, 0)
  total = a.sum(0)
  return np.where(total > 0, (a * a).sum(0) / np.where(total > 0, total, 1), 0)


def _soft(v, count):
  w = np.exp(v - v.max(0))
  return (w * v).sum(0) / w.sum(0)


_RNG = np.random.default_rng(3)
_GATE = _RNG.normal(size=(4, 3, 1))
_LEAVES, _GATES = _RNG.normal(size=(2, 4, 3, 2)), _RNG.normal(size=(1, 4, 3, 1))


def _ceil_pools():
  """(name, jaxpool call, numpy reference), both `f(x, window, strides, padding, **kw)`."""
  import jaxpool

  return [
    ("max_pool", jaxpool.max_pool, reference.max_pool),
    ("min_pool", jaxpool.min_pool, reference.min_pool),
    ("sum_pool", jaxpool.sum_pool, reference.sum_pool),
    ("avg_pool", jaxpool.avg_pool, reference.avg_pool),
    (
      "lp_pool",
      lambda x, *a, **k: jaxpool.lp_pool(x, 3.0, *a, **k),
      _by_window(lambda v, c: (np.abs(v) ** 3).sum(0) ** (1 / 3)),
    ),
    ("l2_pool", jaxpool.l2_pool, _by_window(lambda v, c: np.sqrt((v * v).sum(0)))),
    (
      "stochastic_pool",
      lambda x, *a, **k: jaxpool.stochastic_pool(x, *a, deterministic=True, **k),
      _by_window(_weighted),
    ),
    ("soft_pool", jaxpool.soft_pool, _by_window(_soft)),
    (
      "mixed_pool",
      lambda x, *a, **k: jaxpool.mixed_pool(x, 0.3, *a, **k),
      _by_window(lambda v, c: 0.3 * v.max(0) + 0.7 * v.sum(0) / c),
    ),
    (
      "gated_pool",
      lambda x, *a, **k: jaxpool.gated_pool(x, _GATE, *a, **k),
      lambda x, *a, **k: reference.gated_pool(x, _GATE, *a, **k),
    ),
    (
      "tree_pool",
      lambda x, *a, **k: jaxpool.tree_pool(x, _LEAVES, _GATES, *a, **k),
      lambda x, *a, **k: reference.tree_pool(x, _LEAVES, _GATES, *a, **k),
    ),
    (
      "lip_pool",
      lambda x, *a, **k: jaxpool.lip_pool(x, 0.5 * x, *a, **k),
      lambda x, *a, **k: reference.lip_pool(x, 0.5 * x, *a, **k),
    ),
    (
      "max_pool_with_argmax",
      lambda x, *a, **k: jaxpool.max_pool_with_argmax(x, *a, **k)[0],
      reference.max_pool,
    ),
  ]


@pytest.mark.parametrize(
  "name, pool, ref", _ceil_pools(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_ceil_mode_pool_takes_windows_larger_than_the_input(name, pool, ref):
  """Spatial (2, 3), window (4, 3), strides (3, 2), ceil_mode: the first dim's window
  exceeds the input (span -2 > -3), the second ends at it; one output each (with
  dilation 2 in the second dim and stride 3 it exceeds it there too). The
  reference's output size is PyTorch's rule, its windows plain loops."""
  x = np.random.default_rng(4).normal(size=(2, 2, 3, 2)).astype(np.float32)
  cases = (((0, 0), None, (3, 2)), (((1, 0), (0, 1)), None, (3, 2)), ((0, 0), (1, 2), (3, 3)))
  for padding, dilation, strides in cases:
    kw = dict(dilation=dilation, ceil_mode=True)
    want = ref(x, (4, 3), strides, padding, **kw)
    got = jax.jit(lambda x: pool(x, (4, 3), strides, padding, **kw))(x)
    assert got.shape == want.shape, (name, padding, dilation)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{name} {padding}")
