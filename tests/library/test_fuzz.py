"""Property-based fuzzing of every public function of jaxpool (issue 23).

Each example draws a function of `jaxpool.__all__` and a call of it: random ranks and
shapes (zero-size dims included), windows, strides, padding forms, dilation,
ceil_mode, channel_axis, dtypes (float16/bfloat16/float32, float64 under x64,
integers, bool, complex) and values (normal, huge, tiny, NaN, inf). The call must

* either return a result whose shape is the one written here from PyTorch's docs
  (`torch_output_size`, XLA's rule for "SAME") and whose values are finite wherever
  the input and the pooled quantity are (per window for the window pools, where the
  quantity is recomputed in float64 numpy; per input otherwise),
* or raise ValueError/TypeError whose message names the function;

and for the window pools a call that is valid by those rules must succeed.

Default: a few hundred examples, derandomized (the same ones on every run). More:

    JAXPOOL_FUZZ_EXAMPLES=5000 python -m pytest -p no:xdist tests/library/test_fuzz.py

Adding a public function is one entry in `FUNCTIONS` (a strategy for its call).
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import note
from hypothesis import settings
from hypothesis import strategies as st

import jaxpool

try:
  from tests.calls import CALLS
except ImportError:  # tests/ itself on sys.path
  from calls import CALLS

EXAMPLES = int(os.environ.get("JAXPOOL_FUZZ_EXAMPLES", "200"))
settings.register_profile(
  "jaxpool-fuzz",
  max_examples=EXAMPLES,
  deadline=None,
  derandomize=True,
  database=None,
  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("jaxpool-fuzz")


# --- PyTorch's output size, written from its docs ------------------------------------
def torch_output_size(L, k, s, lo, hi, d, ceil_mode):
  """floor or ceil((L + lo + hi - d (k - 1) - 1) / s) + 1; with ceil_mode the last
  window must start inside the input or the left padding (else one fewer)."""
  span = L + lo + hi - d * (k - 1) - 1
  if not ceil_mode:
    return span // s + 1
  out = -(-span // s) + 1
  if (out - 1) * s >= L + lo:
    out -= 1
  return out


def same_pads(L, k, s, d):
  """XLA's SAME: output ceil(L / s), the odd padding element high."""
  e = d * (k - 1) + 1
  total = max((-(-L // s) - 1) * s + e - L, 0)
  return total // 2, total - total // 2


# --- inputs --------------------------------------------------------------------------
FLOATS = [np.float32, np.float16, jnp.bfloat16]
INTS = [np.int32, np.int8, np.uint8]


@st.composite
def arrays(draw, shape, dtypes=None):
  dtypes = dtypes or (
    FLOATS * 3 + INTS + [np.bool_, np.complex64] + ([np.float64] if jax.config.x64_enabled else [])
  )
  dtype = draw(st.sampled_from(dtypes))
  rng = np.random.default_rng(draw(st.integers(0, 2**16)))
  size = int(np.prod(shape))
  if dtype in INTS:
    info = np.iinfo(dtype)
    extremes = draw(st.booleans())
    lo, hi = (info.min, info.max) if extremes else (max(info.min, -5), 5)
    return rng.integers(lo, int(hi) + 1, shape).astype(dtype)
  if dtype == np.bool_:
    return rng.random(shape) < 0.5
  values = rng.normal(size=shape)
  if dtype == np.complex64:
    return (values + 1j * rng.normal(size=shape)).astype(dtype)
  info = jnp.finfo(dtype)
  # huge: sums of up to 64 of them stay finite; tiny: still normal numbers
  scale = draw(st.sampled_from([1.0, 1.0, float(info.max) / 256, float(info.tiny) * 64]))
  values = np.clip(values * scale, -float(info.max) / 64, float(info.max) / 64)
  if size and draw(st.booleans()):
    special = draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), min_size=1, max_size=3))
    flat = values.reshape(-1)
    for v in special:
      flat[rng.integers(size)] = v
  return np.asarray(values).astype(dtype)


def as_float64(x):
  return np.asarray(jnp.asarray(x).astype(jnp.float32), np.float64)


# --- window pools ----------------------------------------------------------------------
@st.composite
def window_call(draw):
  """(x, n, window, strides, padding, dilation, ceil_mode, channel_axis) and the
  resolved padding pairs (None where the padding argument is invalid)."""
  n = draw(st.sampled_from([1, 1, 2, 2, 3]))
  channels_first = draw(st.booleans())
  batch = draw(st.lists(st.integers(0, 2), min_size=1 if channels_first else 0, max_size=2))
  if channels_first:
    batch = batch[:1]
  spatial = draw(st.lists(st.integers(0, 5 if n < 3 else 3), min_size=n, max_size=n))
  c = draw(st.integers(0, 2))
  shape = (*batch, c, *spatial) if channels_first else (*batch, *spatial, c)
  window = tuple(draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)))
  strides = draw(st.one_of(st.none(), st.integers(1, 3), st.tuples(*[st.integers(1, 3)] * n)))
  dilation = draw(st.one_of(st.none(), st.integers(1, 2), st.tuples(*[st.integers(1, 2)] * n)))
  padding = draw(
    st.one_of(
      st.sampled_from(["VALID", "SAME", "same"]),
      st.integers(0, 2),
      st.tuples(*[st.integers(0, 2)] * n),
      st.tuples(*[st.tuples(st.integers(0, 2), st.integers(0, 2))] * n),
    )
  )
  ceil_mode = draw(st.booleans())
  channel_axis = 1 if channels_first else draw(st.sampled_from([-1, -1, len(shape) - 1]))
  return shape, window, strides, padding, dilation, ceil_mode, channel_axis


def per_dim(value, n, default=1):
  if value is None:
    return (default,) * n
  return (value,) * n if isinstance(value, int) else tuple(value)


def window_layout(shape, window, strides, padding, dilation, ceil_mode, channel_axis):
  """(spatial axes, pads, output sizes), or None where the call is invalid."""
  n, ndim = len(window), len(shape)
  if channel_axis == 1 and (ndim != n + 2):
    return None
  if channel_axis != 1 and ndim < n + 1:
    return None
  axes = tuple(range(2, ndim)) if channel_axis == 1 else tuple(range(ndim - 1 - n, ndim - 1))
  strides, dilation = per_dim(strides, n), per_dim(dilation, n)
  sizes = [shape[a] for a in axes]
  if isinstance(padding, str):
    if ceil_mode and padding.upper() != "VALID":
      return None
    pads = [
      (0, 0) if padding.upper() == "VALID" else same_pads(L, k, s, d)
      for L, k, s, d in zip(sizes, window, strides, dilation)
    ]
  elif isinstance(padding, int):
    pads = [(padding, padding)] * n
  else:
    pads = [p if isinstance(p, tuple) else (p, p) for p in padding]
  outs = [
    torch_output_size(L, k, s, lo, hi, d, ceil_mode)
    for L, k, s, (lo, hi), d in zip(sizes, window, strides, pads, dilation)
  ]
  if min(outs) < 1:
    return None
  return axes, strides, dilation, pads, outs


def window_values(x, layout, window, out_index):
  """The in-input elements of one window (float64, shape (K_in, ...)) and its count
  of elements in the input or declared padding."""
  axes, strides, dilation, pads, _ = layout
  inside, declared = [], 0
  for k in np.ndindex(*window):
    pos = [
      o * s - lo + ki * d for o, s, (lo, _), ki, d in zip(out_index, strides, pads, k, dilation)
    ]
    if all(0 <= p < x.shape[a] for p, a in zip(pos, axes)):
      index = [slice(None)] * x.ndim
      for a, p in zip(axes, pos):
        index[a] = p
      inside.append(x[tuple(index)])
    declared += all(-lo <= p < x.shape[a] + hi for p, a, (lo, hi) in zip(pos, axes, pads))
  return np.stack(inside) if inside else np.zeros((0,)), declared


def log_lp(v, p, count, mean):
  """log of the p-norm (power mean) of v over axis 0, in float64 logs."""
  a = np.abs(v)
  m = a.max(0)
  safe = np.where(m > 0, m, 1)
  if p == math.inf:
    return np.log(np.where(m > 0, m, 0))
  with np.errstate(divide="ignore"):
    return (
      np.log(np.where(m > 0, m, 0)) + np.log(((a / safe) ** p).sum(0) / (count if mean else 1)) / p
    )


def bound_of(kind, options):
  """log of a bound on |output| of one window from its values v and count, or None
  where nothing is promised (a window holding no input element for max/min)."""

  def bound(v, count):
    if v.shape[0] == 0:
      return None if kind in ("max", "argmax") else np.full(v.shape[1:], -np.inf)
    top = np.abs(v).max(0)
    with np.errstate(divide="ignore"):
      if kind == "sum":
        return np.log(np.abs(v).sum(0))
      if kind == "avg" and options.get("divisor_override"):
        return np.log(np.abs(v).sum(0) / abs(options["divisor_override"]))
      if kind == "lp":
        return log_lp(v, options["p"], count, options.get("mean", False))
      if kind == "mixed":
        a = options["alpha"]
        return np.log((abs(a) + abs(1 - a)) * top)
      if kind in ("gated", "tree"):
        return np.log(v.shape[0] * top)  # weights in [-1, 1], a sigmoid mix
      return np.log(top)

  return bound


def window_entry(fn, kind, *, ints=False, extra=None):
  """A FUNCTIONS entry for a window pool: `extra(draw, x, n, c)` draws its own
  arguments (positional before the window, keyword) and options for the bound."""

  @st.composite
  def strategy(draw):
    shape, window, strides, padding, dilation, ceil_mode, channel_axis = draw(window_call())
    x = draw(arrays(shape))
    n = len(window)
    c = shape[1] if channel_axis == 1 else shape[-1]
    args, kwargs, options = extra(draw, x, n, c, window) if extra else ((), {}, {})

    def call():
      return fn(
        x,
        *args,
        window,
        strides,
        padding,
        dilation=dilation,
        ceil_mode=ceil_mode,
        channel_axis=channel_axis,
        **kwargs,
      )

    def check(result):
      layout = window_layout(shape, window, strides, padding, dilation, ceil_mode, channel_axis)
      assert layout is not None, "accepted a call that PyTorch's output size rule refuses"
      axes, _, _, _, outs = layout
      values = result[0] if isinstance(result, tuple) else result
      want = list(shape)
      for a, o in zip(axes, outs):
        want[a] = o
      assert values.shape == tuple(want)
      if isinstance(result, tuple):
        assert result[1].shape == tuple(want)
      if not jnp.issubdtype(values.dtype, jnp.inexact):
        return
      xf = as_float64(x)
      if kind == "lip":
        finite_input = np.isfinite(xf) & np.isfinite(as_float64(args[0]))
      else:
        finite_input = np.isfinite(xf)
      y = np.asarray(values.astype(jnp.float32), np.float64)
      limit = math.log(float(jnp.finfo(values.dtype).max)) - 1e-3
      bound = bound_of(kind, options)
      for o in np.ndindex(*outs):
        v, count = window_values(xf, layout, window, o)
        ok, _ = window_values(finite_input.astype(np.float64), layout, window, o)
        b = bound(v, count)
        if b is None:
          continue
        promised = (ok.min(0) if ok.shape[0] else 1) * (b < limit) > 0
        index = [slice(None)] * y.ndim
        for a, oi in zip(axes, o):
          index[a] = oi
        got = y[tuple(index)]
        assert np.isfinite(got[promised]).all(), (o, v, got)

    valid = window_layout(shape, window, strides, padding, dilation, ceil_mode, channel_axis)
    dtype_ok = jnp.issubdtype(x.dtype, jnp.floating) or (
      ints and jnp.issubdtype(x.dtype, jnp.integer)
    )
    return call, check, (valid is not None and dtype_ok and not (channel_axis == 1 and x.ndim == 2))

  return strategy


def _lp(draw, x, n, c, window):
  p = draw(st.sampled_from([0.5, 1.0, 2.0, 3.0, 2.5, math.inf, 0.01]))
  mean = draw(st.booleans())
  return (p,), {"mean": mean}, {"p": p, "mean": mean}


def _l2(draw, x, n, c, window):
  mean = draw(st.booleans())
  return (), {"mean": mean}, {"p": 2.0, "mean": mean}


def _mixed(draw, x, n, c, window):
  a = draw(st.sampled_from([0.0, 0.3, 1.0, 1.5, -0.5]))
  return (a,), {}, {"alpha": a}


def _weights(draw, shape):
  rng = np.random.default_rng(draw(st.integers(0, 1000)))
  return rng.uniform(-1, 1, shape).astype(np.float32)


def _gated(draw, x, n, c, window):
  per_channel = draw(st.booleans())
  return (_weights(draw, (*window, c if per_channel else 1)),), {}, {}


def _tree(draw, x, n, c, window):
  leaves = draw(st.sampled_from([1, 2, 4]))
  return (
    (_weights(draw, (leaves, *window, 1)), _weights(draw, (leaves - 1, *window, 1))),
    {},
    {},
  )


def _lip(draw, x, n, c, window):
  logits = np.random.default_rng(0).normal(size=x.shape).astype(np.float32)
  return (logits,), {}, {}


def _stochastic(draw, x, n, c, window):
  if draw(st.booleans()):
    return (), {"deterministic": True}, {}
  return (), {"key": jax.random.key(draw(st.integers(0, 100)))}, {}


def _avg(draw, x, n, c, window):
  kwargs = {"count_include_pad": draw(st.booleans())}
  if draw(st.booleans()):
    kwargs["divisor_override"] = draw(st.sampled_from([1, 3, -2]))
  return (), kwargs, dict(kwargs)


# --- the other functions ---------------------------------------------------------------
@st.composite
def plane_input(draw, min_spatial=1):
  """(x, channel_axis, spatial axes): one batch dim, 1-3 spatial dims."""
  n = draw(st.integers(min_spatial, 3))
  spatial = draw(st.lists(st.integers(0, 5 if n < 3 else 3), min_size=n, max_size=n))
  b, c = draw(st.integers(0, 2)), draw(st.integers(0, 2))
  first = draw(st.booleans())
  shape = (b, c, *spatial) if first else (b, *spatial, c)
  axes = tuple(range(2, 2 + n)) if first else tuple(range(1, 1 + n))
  return draw(arrays(shape)), (1 if first else -1), axes


def other_entry(make):
  """A FUNCTIONS entry from `make(draw)` -> (call, expected shape or None for
  "unknown", bounded): `bounded` promises finite outputs for finite inputs."""

  @st.composite
  def strategy(draw):
    call, x, shape, bounded = make(draw)

    def check(result):
      values = result[0] if isinstance(result, tuple) else result
      if shape is not None:
        assert values.shape == shape
      if bounded and jnp.issubdtype(values.dtype, jnp.inexact):
        if np.isfinite(as_float64(x)).all():
          assert np.isfinite(np.asarray(values.astype(jnp.float32))).all()

    return call, check, None

  return strategy


def _replace(shape, axes, sizes):
  shape = list(shape)
  for a, s in zip(axes, sizes):
    shape[a] = s
  return tuple(shape)


def _adaptive(fn):
  def make(draw):
    x, ca, axes = draw(plane_input())
    outs = tuple(
      draw(
        st.lists(st.one_of(st.none(), st.integers(1, 4)), min_size=len(axes), max_size=len(axes))
      )
    )
    sizes = [x.shape[a] if o is None else o for a, o in zip(axes, outs)]
    ok = all(x.shape[a] > 0 for a in axes)
    return (
      (lambda: fn(x, outs, channel_axis=ca)),
      x,
      (_replace(x.shape, axes, sizes) if ok else None),
      True,
    )

  return make


def _global(fn, with_p=None):
  def make(draw):
    x, ca, axes = draw(plane_input())
    keep = draw(st.booleans())
    args = (draw(st.sampled_from(with_p)),) if with_p else ()
    out = _replace(x.shape, axes, [1] * len(axes))
    if not keep:
      out = tuple(s for i, s in enumerate(out) if i not in axes)
    return (lambda: fn(x, *args, keepdims=keep, channel_axis=ca)), x, out, True

  return make


def _spp(draw):
  x, ca, axes = draw(plane_input())
  levels = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=3)))
  mode = draw(st.sampled_from(["max", "avg"]))
  c = x.shape[1] if ca == 1 else x.shape[-1]
  out = (x.shape[0], c * sum(level ** len(axes) for level in levels))
  ok = all(x.shape[a] > 0 for a in axes)
  return (
    (lambda: jaxpool.spatial_pyramid_pool(x, levels, mode=mode, channel_axis=ca)),
    x,
    (out if ok else None),
    True,
  )


def _fractional(draw):
  x, ca, axes = draw(plane_input())
  n = len(axes)
  window = tuple(draw(st.lists(st.integers(1, 3), min_size=n, max_size=n)))
  if draw(st.booleans()):
    size = tuple(draw(st.lists(st.integers(1, 4), min_size=n, max_size=n)))
    kw, outs = {"output_size": size}, size
  else:
    ratio = draw(st.sampled_from([0.5, 0.7]))
    kw, outs = {"output_ratio": ratio}, [int(x.shape[a] * ratio) for a in axes]
  kw["return_indices"] = draw(st.booleans())
  kw["overlapping"] = draw(st.booleans())
  call = lambda: jaxpool.fractional_max_pool(
    x, window, key=jax.random.key(1), channel_axis=ca, **kw
  )
  return call, x, _replace(x.shape, axes, outs), True


def _blur(draw):
  x, ca, axes = draw(plane_input())
  n = len(axes)
  strides = draw(st.one_of(st.integers(1, 3), st.tuples(*[st.integers(1, 3)] * n)))
  pool = draw(st.sampled_from(["max", "avg", "none"]))
  f = draw(st.integers(1, 4))
  padding = draw(st.sampled_from(["reflect", "replicate", "zero"]))
  s = per_dim(strides, n)
  sizes = [x.shape[a] for a in axes]
  outs = [-(-L // si) if pool == "none" else (L - 2) // si + 1 for L, si in zip(sizes, s)]
  call = lambda: jaxpool.blur_pool(
    x, strides, filter_size=f, pool=pool, padding=padding, channel_axis=ca
  )
  return call, x, _replace(x.shape, axes, outs), True


def _unpool(draw):
  x, ca, axes = draw(plane_input())
  n = len(axes)
  out = tuple(draw(st.lists(st.integers(1, 6), min_size=n, max_size=n)))
  rng = np.random.default_rng(draw(st.integers(0, 100)))
  idx = rng.integers(-1, int(np.prod(out)) + 1, x.shape).astype(np.int32)
  return (
    (lambda: jaxpool.max_unpool(x, idx, out, channel_axis=ca)),
    x,
    _replace(x.shape, axes, out),
    True,
  )


def _gem(draw):
  x, ca, axes = draw(plane_input())
  p = draw(st.sampled_from([0.5, 1.0, 3.0, 2.5]))
  out = tuple(s for i, s in enumerate(x.shape) if i not in axes)
  return (lambda: jaxpool.gem_pool(x, p, channel_axis=ca)), x, out, True


# name -> strategy of (call, check(result), must_succeed or None)
def _logaddexp(draw, x, n, c, window):
  # log(sum e^v) <= max v + log K: within the bound's margin wherever max v is.
  return (-jnp.inf, jnp.logaddexp), {}, {}


def _window_max(x, window, strides, padding, **kwargs):
  return jaxpool.window_pool(jnp.max, x, window, strides, padding, **kwargs)


FUNCTIONS = {
  "max_pool": window_entry(jaxpool.max_pool, "max", ints=True),
  "min_pool": window_entry(jaxpool.min_pool, "max", ints=True),
  "sum_pool": window_entry(jaxpool.sum_pool, "sum", ints=True),
  "avg_pool": window_entry(jaxpool.avg_pool, "avg", ints=True, extra=_avg),
  "max_pool_with_argmax": window_entry(jaxpool.max_pool_with_argmax, "argmax", ints=True),
  "lp_pool": window_entry(jaxpool.lp_pool, "lp", extra=_lp),
  "l2_pool": window_entry(jaxpool.l2_pool, "lp", extra=_l2),
  "stochastic_pool": window_entry(jaxpool.stochastic_pool, "bounded", extra=_stochastic),
  "mixed_pool": window_entry(jaxpool.mixed_pool, "mixed", extra=_mixed),
  "gated_pool": window_entry(jaxpool.gated_pool, "gated", extra=_gated),
  "tree_pool": window_entry(jaxpool.tree_pool, "tree", extra=_tree),
  "lip_pool": window_entry(jaxpool.lip_pool, "lip", extra=_lip),
  "soft_pool": window_entry(jaxpool.soft_pool, "bounded"),
  "adaptive_avg_pool": other_entry(_adaptive(jaxpool.adaptive_avg_pool)),
  "adaptive_max_pool": other_entry(_adaptive(jaxpool.adaptive_max_pool)),
  "global_avg_pool": other_entry(_global(jaxpool.global_avg_pool)),
  "global_max_pool": other_entry(_global(jaxpool.global_max_pool)),
  "global_lp_pool": other_entry(_global(jaxpool.global_lp_pool, [0.5, 1.0, 2.0, 2.5, math.inf])),
  "gem_pool": other_entry(_gem),
  "spatial_pyramid_pool": other_entry(_spp),
  "fractional_max_pool": other_entry(_fractional),
  "blur_pool": other_entry(_blur),
  "max_unpool": other_entry(_unpool),
  # The generic pools: a reducer and a window function that no built-in pool routes
  # (pool's logaddexp) and one that takes window_pool's fast path (jnp.max).
  "pool": window_entry(jaxpool.pool, "max", extra=_logaddexp),
  "window_pool": window_entry(_window_max, "max", ints=True),
}


def describe(call) -> str:
  """The arguments of a drawn call (its closure), for hypothesis's failure report."""
  parts = []
  for name, cell in zip(call.__code__.co_freevars, call.__closure__ or ()):
    value = cell.cell_contents
    if isinstance(value, np.ndarray | jax.Array):
      flat = np.asarray(value).reshape(-1)[:6]
      value = f"array{value.shape} {value.dtype} {flat}"
    parts.append(f"{name}={value!r}" if not isinstance(value, str) else f"{name}={value}")
  return ", ".join(parts)


def test_every_public_function_is_fuzzed():
  assert sorted(FUNCTIONS) == sorted(jaxpool.__all__)


@FUZZ
@given(st.data())
def test_fuzz(data):
  name = data.draw(st.sampled_from(sorted(FUNCTIONS)), label="function")
  call, check, must_succeed = data.draw(FUNCTIONS[name](), label="call")
  note(describe(call))
  try:
    result = call()
  except (TypeError, ValueError) as err:
    assert str(err).startswith(f"{name}: "), f"{name} raised {type(err).__name__}: {err}"
    assert not must_succeed, f"{name} refused a valid call: {err}"
    return
  check(result)


# --- fixed calls of every function: empty batches and non-array inputs -----------------
def _fixed_calls():
  """name -> f(x) for a (N, 4, 4, C) input: the shared table of calls (tests/calls.py),
  learnable arguments fixed; x is also passed where the function takes other arrays
  shaped like it."""
  return dict(CALLS)


def test_fixed_calls_cover_every_public_function():
  assert sorted(_fixed_calls()) == sorted(jaxpool.__all__)


@pytest.mark.parametrize("name", sorted(jaxpool.__all__))
def test_empty_batch_or_channels_give_empty_results(name):
  """Issue 23: every pool maps a zero-size batch (or channel) dim to a zero-size
  result of the shape it gives a non-empty one, and differentiates through it."""
  f = _fixed_calls()[name]
  for shape in ((0, 4, 4, 2), (2, 4, 4, 0)):
    full = jax.eval_shape(f, jax.ShapeDtypeStruct((3, 4, 4, shape[-1] or 2), jnp.float32))
    y = f(jnp.zeros(shape, jnp.float32))
    assert 0 in y.shape and y.ndim == full.ndim
    if shape[0] == 0:
      assert y.shape[0] == 0 and y.shape[1:] == full.shape[1:]
      grad = jax.grad(lambda x: jnp.sum(f(x).astype(jnp.float32)))(jnp.zeros(shape, jnp.float32))
      assert grad.shape == shape


@pytest.mark.parametrize("name", sorted(jaxpool.__all__))
def test_non_array_inputs_raise_a_type_error_naming_function_and_argument(name):
  """Issue 23: None, strings and other non-arrays reached JAX's own messages."""
  f = _fixed_calls()[name]
  argument = "values" if name == "max_unpool" else "inputs"
  for bad in (None, "abc", b"x", {"a": 1}, [1.0, None], object()):
    with pytest.raises(TypeError, match=rf"^{name}: {argument} must be an array"):
      f(bad)
