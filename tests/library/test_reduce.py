"""max_pool, min_pool, sum_pool, avg_pool against the numpy loop reference.

Values over a parameter grid and over seeded random configurations (padding kinds,
ceil_mode, dilation, strides, 1-3 spatial dims, channel_axis, 0-2 batch dims,
dtypes); gradients by `check_grads` on tie-free inputs and exactly, under ties,
NaNs and -inf, against `reference.max_pool_grad` / `reference.avg_pool_grad`;
composition with jit, vmap, grad, jvp; huge values.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxpool
from tests import reference

POOLS = ("max", "min", "sum", "avg")


def pool_fn(kind):
  return getattr(jaxpool, f"{kind}_pool")


# --- layouts: the reference is (B, *spatial, C) -----------------------------------
def to_layout(xr, batch_dims, channel_axis):
  """Reference layout (B, *spatial, C) -> the layout under test."""
  if channel_axis == 1:
    return np.moveaxis(xr, -1, 1)
  if batch_dims == 0:
    return xr[0]
  if batch_dims == 2:
    return xr.reshape((2, xr.shape[0] // 2) + xr.shape[1:])
  return xr


def from_layout(y, batch_dims, channel_axis):
  """Inverse of `to_layout`."""
  y = np.asarray(y)
  if channel_axis == 1:
    return np.moveaxis(y, 1, -1)
  if batch_dims == 0:
    return y[None]
  if batch_dims == 2:
    return y.reshape((-1,) + y.shape[2:])
  return y


def reference_pool(kind, xr, cfg, avg_options=None):
  window, strides, padding = cfg["window"], cfg["strides"], cfg["padding"]
  kw = dict(dilation=cfg["dilation"], ceil_mode=cfg["ceil_mode"])
  if kind == "avg":
    avg_options = avg_options or {}
    out = reference.avg_pool(xr, window, strides, padding, **avg_options, **kw)
    # jaxpool's documented choice: a window without input elements averages to 0.
    return np.nan_to_num(out, nan=0.0)
  return getattr(reference, f"{kind}_pool")(xr, window, strides, padding, **kw)


def call_options(cfg):
  return dict(
    window_shape=cfg["window"],
    strides=cfg["strides"],
    padding=cfg["padding"],
    dilation=cfg["dilation"],
    ceil_mode=cfg["ceil_mode"],
    channel_axis=cfg["channel_axis"],
  )


# --- random configurations ----------------------------------------------------------
def random_config(rng):
  """A random valid pooling configuration (window fits the padded input)."""
  while True:
    n = int(rng.integers(1, 4))
    max_size = {1: 9, 2: 7, 3: 5}[n]
    sizes = [int(v) for v in rng.integers(1, max_size + 1, n)]
    window = tuple(int(v) for v in rng.integers(1, 4, n))
    dilation = tuple(int(v) for v in rng.integers(1, 3, n)) if rng.random() < 0.4 else None
    d = dilation or (1,) * n
    effective = [dd * (k - 1) + 1 for k, dd in zip(window, d)]
    strides = (
      None
      if rng.random() < 0.2
      else int(rng.integers(1, 4))
      if rng.random() < 0.3
      else tuple(int(v) for v in rng.integers(1, 4, n))
    )
    kind = rng.choice(["VALID", "SAME", "int", "ints", "pairs"])
    if kind in ("VALID", "SAME"):
      padding = str(kind)
    elif kind == "int":
      padding = int(rng.integers(0, min(effective)))
    elif kind == "ints":
      padding = tuple(int(rng.integers(0, e)) for e in effective)
    else:
      padding = tuple((int(rng.integers(0, e)), int(rng.integers(0, e))) for e in effective)
    pads = reference.resolve_padding(padding, sizes, window, reference.per_dim(strides, n), d)
    if any(L + lo + hi < e for L, (lo, hi), e in zip(sizes, pads, effective)):
      continue
    ceil_mode = bool(kind != "SAME" and rng.random() < 0.5)
    batch_dims = int(rng.integers(0, 3))
    channel_axis = 1 if batch_dims == 1 and rng.random() < 0.4 else -1
    batch = {0: 1, 1: int(rng.integers(1, 3)), 2: 2 * int(rng.integers(1, 3))}[batch_dims]
    channels = int(rng.integers(1, 3))
    return dict(
      shape=(batch, *sizes, channels),
      window=window,
      strides=strides,
      padding=padding,
      dilation=dilation,
      ceil_mode=ceil_mode,
      batch_dims=batch_dims,
      channel_axis=channel_axis,
    )


FLOAT_TOLERANCE = {  # (rtol, atol) for sums and averages
  "float32": (1e-5, 1e-5),
  "float16": (2e-3, 2e-3),
  "bfloat16": (1e-2, 1e-2),
  "float64": (1e-12, 1e-12),
}


def random_input(rng, shape, dtype):
  if dtype in ("int8", "int32", "uint8"):
    low = 0 if dtype == "uint8" else -20
    return rng.integers(low, 21, shape).astype(dtype)
  return rng.normal(size=shape).astype(np.float32)


def check_config(cfg, dtype, rng, kinds=POOLS):
  """All `kinds` of pool under one jit against the reference, in `dtype`."""
  xr = random_input(rng, cfg["shape"], dtype)
  x = jnp.asarray(to_layout(xr, cfg["batch_dims"], cfg["channel_axis"])).astype(dtype)
  exact = np.asarray(x.astype(jnp.float64) if dtype == "float64" else x).astype(np.float64)
  xr = from_layout(exact, cfg["batch_dims"], cfg["channel_axis"])
  avg_options = dict(
    count_include_pad=bool(rng.random() < 0.6),
    divisor_override=int(rng.integers(1, 6)) if rng.random() < 0.2 else None,
  )
  options = call_options(cfg)

  def pools(x):
    out = []
    for kind in kinds:
      extra = avg_options if kind == "avg" else {}
      out.append(pool_fn(kind)(x, **options, **extra))
    return out

  outs = jax.jit(pools)(x)
  for kind, y in zip(kinds, outs):
    expected = reference_pool(kind, xr, cfg, avg_options)
    want_dtype = (
      x.dtype
      if (kind != "avg" or jnp.issubdtype(x.dtype, jnp.floating))
      else (jnp.result_type(float))
    )
    assert y.dtype == want_dtype, (kind, y.dtype)
    got = from_layout(
      np.asarray(y.astype(jnp.float64) if dtype == "float64" else y.astype(jnp.float32)),
      cfg["batch_dims"],
      cfg["channel_axis"],
    )
    assert got.shape == expected.shape, (kind, cfg, got.shape, expected.shape)
    if kind in ("max", "min") or (kind == "sum" and dtype.startswith(("int", "uint"))):
      np.testing.assert_array_equal(got, expected, err_msg=f"{kind} {dtype} {cfg}")
    else:
      rtol, atol = FLOAT_TOLERANCE.get(dtype, FLOAT_TOLERANCE["float32"])
      np.testing.assert_allclose(
        got, expected, rtol=rtol, atol=atol, err_msg=f"{kind} {dtype} {cfg} {avg_options}"
      )


@pytest.mark.parametrize("seed", range(5))
def test_random_configurations(seed):
  """40 random configurations, each dtype family covered, one jit per configuration."""
  rng = np.random.default_rng(1234 + seed)
  dtypes = ["float32", "float16", "bfloat16", "float64", "int32", "int8", "float32", "uint8"]
  for dtype in dtypes:
    cfg = random_config(rng)
    kinds = ("max", "min") if dtype in ("int8", "uint8") else POOLS
    if dtype == "float64":
      with jax.enable_x64(True):
        check_config(cfg, dtype, rng, kinds)
    else:
      check_config(cfg, dtype, rng, kinds)


GRID_2D = [  # every padding kind with and without ceil_mode; strides/dilation alternate
  dict(
    window=(2, 3),
    padding=padding,
    ceil_mode=ceil_mode,
    strides=(None, (2, 1))[i % 2],
    dilation=(None, (2, 1))[i // 2 % 2],
  )
  for i, (padding, ceil_mode) in enumerate(
    itertools.product(["VALID", "SAME", 1, (1, 0), ((0, 1), (2, 1))], [False, True])
  )
  if not (padding == "SAME" and ceil_mode)
]
GRID_ND = [
  dict(window=(3,), strides=2, padding=1, dilation=None, ceil_mode=True),
  dict(window=(2,), strides=3, padding="SAME", dilation=2, ceil_mode=False),
  dict(window=(4,), strides=None, padding=((3, 0),), dilation=None, ceil_mode=False),
  dict(window=(2, 2, 2), strides=2, padding=1, dilation=None, ceil_mode=True),
  dict(window=(3, 1, 2), strides=(1, 2, 2), padding="SAME", dilation=(1, 1, 2), ceil_mode=False),
  dict(
    window=(2, 3, 2),
    strides=(2, 1, 3),
    padding=((1, 0), (0, 2), (1, 1)),
    dilation=2,
    ceil_mode=True,
  ),
]


def test_parameter_grid():
  rng = np.random.default_rng(7)
  for spec in GRID_2D + GRID_ND:
    n = len(spec["window"])
    sizes = {1: (8,), 2: (6, 7), 3: (5, 4, 6)}[n]
    xr = rng.normal(size=(2, *sizes, 3)).astype(np.float32)
    options = dict(
      window_shape=spec["window"],
      strides=spec["strides"],
      padding=spec["padding"],
      dilation=spec["dilation"],
      ceil_mode=spec["ceil_mode"],
    )

    @jax.jit
    def pools(x):
      return [
        jaxpool.max_pool(x, **options),
        jaxpool.min_pool(x, **options),
        jaxpool.sum_pool(x, **options),
        jaxpool.avg_pool(x, **options, count_include_pad=True),
        jaxpool.avg_pool(x, **options, count_include_pad=False),
      ]

    cfg = dict(spec, batch_dims=1, channel_axis=-1)
    outs = pools(xr)
    kinds = POOLS + ("avg",)
    for kind, include, y in zip(kinds, (None, None, None, True, False), outs):
      expected = reference_pool(kind, xr.astype(np.float64), cfg, {"count_include_pad": include})
      if kind in ("max", "min"):
        np.testing.assert_array_equal(y, expected, err_msg=f"{kind} {spec}")
      else:
        np.testing.assert_allclose(
          y, expected, rtol=1e-5, atol=1e-5, err_msg=f"{kind} {include} {spec}"
        )


def test_divisor_override_and_count_include_pad_closed_form():
  # 1-D, x = [1, 2, 3, 4], window 3, stride 2, padding 1, ceil_mode:
  # windows [pad, 1, 2], [2, 3, 4], [4, pad, overhang].
  x = jnp.array([1.0, 2.0, 3.0, 4.0])[None, :, None]
  kw = dict(window_shape=(3,), strides=(2,), padding=1, ceil_mode=True)
  np.testing.assert_allclose(jaxpool.avg_pool(x, **kw)[0, :, 0], [3 / 3, 9 / 3, 4 / 2])
  np.testing.assert_allclose(
    jaxpool.avg_pool(x, **kw, count_include_pad=False)[0, :, 0], [3 / 2, 9 / 3, 4 / 1]
  )
  np.testing.assert_allclose(
    jaxpool.avg_pool(x, **kw, divisor_override=2)[0, :, 0], [3 / 2, 9 / 2, 4 / 2]
  )
  np.testing.assert_allclose(
    jaxpool.avg_pool(x, **kw, divisor_override=-4)[0, :, 0], [-3 / 4, -9 / 4, -1]
  )
  np.testing.assert_allclose(jaxpool.sum_pool(x, **kw)[0, :, 0], [3, 9, 4])


def test_windows_without_input_elements():
  x = jnp.ones((1, 3, 1))
  # padding 3 > window 2: the outer windows lie entirely in the padding.
  avg = jaxpool.avg_pool(x, (2,), padding=3, count_include_pad=False)[0, :, 0]
  np.testing.assert_array_equal(avg, [0, 0, 1, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(
    jaxpool.avg_pool(x, (2,), padding=3)[0, :, 0], [0, 0, 0.5, 1, 1, 0.5, 0, 0]
  )
  np.testing.assert_array_equal(
    jaxpool.max_pool(x, (2,), padding=3)[0, :, 0], [-np.inf, -np.inf, 1, 1, 1, 1, -np.inf, -np.inf]
  )
  g = jax.jit(
    jax.grad(lambda x: jaxpool.avg_pool(x, (2,), padding=3, count_include_pad=False).sum())
  )(x)
  np.testing.assert_array_equal(g[0, :, 0], [1.5, 1, 1.5])
  g = jax.jit(jax.grad(lambda x: jaxpool.max_pool(x, (2,), padding=3).sum()))(x)
  np.testing.assert_array_equal(g[0, :, 0], [2, 1, 1])


# --- dtypes ---------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [jnp.int8, jnp.uint8, jnp.int32])
def test_integer_extrema_pad_with_dtype_limits(dtype):
  info = jnp.iinfo(dtype)
  x = jnp.array([info.min, info.max, info.min], dtype)[None, :, None]
  assert jaxpool.max_pool(x, (2,), padding=1).dtype == dtype
  np.testing.assert_array_equal(
    jaxpool.max_pool(x, (2,), padding=1)[0, :, 0], [info.min, info.max, info.max, info.min]
  )
  np.testing.assert_array_equal(
    jaxpool.min_pool(x, (2,), padding=1)[0, :, 0], [info.min, info.min, info.min, info.min]
  )
  y = jnp.array([info.max, info.max], dtype)[None, :, None]
  np.testing.assert_array_equal(jaxpool.min_pool(y, (2,), padding=1)[0, :, 0], [info.max] * 3)


def test_integer_sum_and_avg_dtypes():
  x = jnp.arange(6, dtype=jnp.int32)[None, :, None]
  s = jaxpool.sum_pool(x, (3,), strides=(3,))
  assert s.dtype == jnp.int32
  np.testing.assert_array_equal(s[0, :, 0], [3, 12])
  a = jaxpool.avg_pool(x, (4,), strides=(2,))
  assert a.dtype == jnp.float32
  np.testing.assert_allclose(a[0, :, 0], [1.5, 3.5])


def test_half_precision_sums_accumulate_in_float32():
  # In float16, 2048 + 1 rounds back to 2048; accumulated in float32 the sum is exact.
  x = jnp.array([2048.0, 1.0, 1.0, 0.0], jnp.float16)[None, :, None]
  s = jaxpool.sum_pool(x, (4,))
  assert s.dtype == jnp.float16
  assert float(s[0, 0, 0]) == 2050.0
  a = jaxpool.avg_pool(jnp.array([256.0, 1.0], jnp.bfloat16)[None, :, None], (2,))
  assert a.dtype == jnp.bfloat16
  assert float(a[0, 0, 0]) == float(jnp.bfloat16(128.5))


HUGE_CASES = [
  dict(strides=None, padding="VALID"),
  dict(strides=2, padding=1),
  dict(strides=2, padding=1, ceil_mode=True),
]


@pytest.mark.parametrize(
  "dtype, value",
  [(jnp.float32, 1e38), (jnp.float32, -3e38), (jnp.float16, 6e4), (jnp.bfloat16, 3e38)],
)
def test_huge_values_average_without_overflow(dtype, value):
  x = jnp.full((1, 5, 5, 2), value, dtype)
  x = x.at[0, 0, 0, 0].set(value / 2)
  options = [(kw, include) for kw in HUGE_CASES for include in (True, False)]

  @jax.jit
  def averages_and_grads(x):
    outs = []
    for kw, include in options:
      f = lambda x: jaxpool.avg_pool(x, (3, 3), count_include_pad=include, **kw)
      y, vjp = jax.vjp(f, x)
      outs.append((y, vjp(jnp.ones_like(y))[0]))
    return outs

  for (kw, include), (y, g) in zip(options, averages_and_grads(x)):
    assert y.dtype == dtype
    assert bool(jnp.isfinite(y).all()), (dtype, value, kw)
    expected = reference.avg_pool(
      np.asarray(x.astype(jnp.float32), np.float64), (3, 3), count_include_pad=include, **kw
    )
    np.testing.assert_allclose(
      np.asarray(y.astype(jnp.float32)), expected, rtol=1e-2 if dtype == jnp.bfloat16 else 1e-3
    )
    assert bool(jnp.isfinite(g).all())
  assert bool(jnp.isfinite(jaxpool.max_pool(x, (2, 2))).all())


def test_float64_under_x64():
  with jax.enable_x64(True):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 6, 2)))
    assert x.dtype == jnp.float64
    ys = jax.jit(
      lambda x: [
        pool_fn(kind)(x, (3, 2), strides=(2, 1), padding=1, ceil_mode=True) for kind in POOLS
      ]
    )(x)
    for kind, y in zip(POOLS, ys):
      assert y.dtype == jnp.float64
      cfg = dict(window=(3, 2), strides=(2, 1), padding=1, dilation=None, ceil_mode=True)
      np.testing.assert_allclose(y, reference_pool(kind, np.asarray(x), cfg), rtol=1e-14)
    # Averages of float64 are exact to float64 (not accumulated in float32).
    z = jnp.array([1.0, 1e-12, 0.0])[None, :, None]
    assert float(jaxpool.avg_pool(z, (2,))[0, 0, 0]) == (1.0 + 1e-12) / 2
    g = jax.jit(jax.grad(lambda x: jaxpool.max_pool(x, (2, 2), dilation=2).sum()))(x)
    assert g.dtype == jnp.float64
    want = reference.max_pool_grad(np.asarray(x), np.ones((2, 3, 4, 2)), (2, 2), dilation=2)
    np.testing.assert_array_equal(g, want)


@pytest.mark.parametrize("kind", POOLS)
def test_rejects_non_numeric_inputs(kind):
  with pytest.raises(TypeError, match=rf"{kind}_pool: inputs .*bool"):
    pool_fn(kind)(jnp.zeros((1, 4, 1), bool), (2,))
  with pytest.raises(TypeError, match=rf"{kind}_pool: inputs .*complex"):
    pool_fn(kind)(jnp.zeros((1, 4, 1), jnp.complex64), (2,))


def test_avg_pool_argument_errors():
  x = jnp.zeros((1, 4, 1))
  with pytest.raises(TypeError, match="count_include_pad.*'yes'"):
    jaxpool.avg_pool(x, (2,), count_include_pad="yes")
  with pytest.raises(ValueError, match="divisor_override.*0"):
    jaxpool.avg_pool(x, (2,), divisor_override=0)
  with pytest.raises(TypeError, match="divisor_override.*1.5"):
    jaxpool.avg_pool(x, (2,), divisor_override=1.5)
  with pytest.raises(TypeError, match="divisor_override.*True"):
    jaxpool.avg_pool(x, (2,), divisor_override=True)
  with pytest.raises(TypeError):  # keyword-only options
    jaxpool.avg_pool(x, (2,), None, "VALID", True, 3)
  with pytest.raises(TypeError):
    jaxpool.max_pool(x, (2,), None, "VALID", 2)


# --- gradients: check_grads without ties ----------------------------------------
GRAD_CASES = [  # (options, order)
  (dict(window_shape=(3, 2), strides=(1, 2), padding=1, ceil_mode=True), 1),
  (dict(window_shape=(2, 3), strides=(2, 1), padding="SAME", dilation=(2, 1)), 2),
  (dict(window_shape=(2,), strides=(2,), padding=((1, 0),), ceil_mode=True, dilation=2), 1),
]


@pytest.mark.parametrize("kind", POOLS)
def test_check_grads_on_distinct_values(kind):
  rng = np.random.default_rng(3)
  for case, order in GRAD_CASES:
    n = len(case["window_shape"])
    shape = (1, *{1: (7,), 2: (5, 6), 3: (4, 3, 4)}[n], 2)
    # A permutation: distinct values spaced by 1, so eps never changes an argmax.
    x = jnp.asarray(rng.permutation(np.prod(shape)).reshape(shape), jnp.float32)
    f = jax.jit(functools.partial(pool_fn(kind), **case))
    # Second order only for max_pool: min_pool runs the same custom rule, and the
    # second derivatives of sum/avg are lax's own.
    order = order if kind == "max" else 1
    check_grads(f, (x,), order=order, modes=("fwd", "rev"), eps=1e-1, atol=1e-2, rtol=1e-2)


# --- gradients: exact routing under ties, NaN and -inf --------------------------
def extremum_grad(kind, x, ct, **options):
  f = pool_fn(kind)
  grad = jax.jit(jax.grad(lambda x: jnp.vdot(f(x, **options).astype(jnp.float32), ct)))(x)
  return np.asarray(grad, np.float64)


def reference_options(options):
  return dict(
    window=options["window_shape"],
    strides=options.get("strides"),
    padding=options.get("padding", "VALID"),
    dilation=options.get("dilation"),
    ceil_mode=options.get("ceil_mode", False),
  )


TIE_CASES = [
  dict(window_shape=(3, 3), strides=(1, 1), padding="VALID"),  # overlapping
  dict(window_shape=(3, 3), strides=(2, 2), padding=1),
  dict(window_shape=(2, 3), strides=(2, 2), padding=((1, 0), (0, 2)), ceil_mode=True),
  dict(window_shape=(3, 2), strides=(1, 2), padding="SAME", dilation=(2, 2)),
  dict(window_shape=(2, 2), strides=(3, 1), padding=(1, 1), ceil_mode=True, dilation=2),
  dict(window_shape=(3,), strides=(2,), padding=1, ceil_mode=True),
  dict(window_shape=(2, 2, 2), strides=(1, 2, 1), padding=1, ceil_mode=True),
]


def _shape_for(options):
  return (2, *{1: (9,), 2: (6, 7), 3: (4, 5, 4)}[len(options["window_shape"])], 2)


@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize("case", range(len(TIE_CASES)))
def test_gradient_routing_under_ties(kind, case):
  options = TIE_CASES[case]
  rng = np.random.default_rng(case)
  shape = _shape_for(options)
  # ReLU outputs (many exact zeros) for max, their negation for min: ties everywhere.
  x = np.maximum(rng.normal(size=shape), 0).astype(np.float32) * (1 if kind == "max" else -1)
  x[0, 0] = 0.0  # a whole row of zeros: all-equal windows
  ref = reference_options(options)
  y = pool_fn(kind)(jnp.asarray(x), **options)
  ct = rng.normal(size=y.shape).astype(np.float32)
  got = extremum_grad(kind, jnp.asarray(x), jnp.asarray(ct), **options)
  want = reference.max_pool_grad(
    x,
    ct,
    ref.pop("window"),
    ref.pop("strides"),
    ref.pop("padding"),
    sign=1 if kind == "max" else -1,
    **ref,
  )
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize(
  "options",
  [
    dict(window_shape=(2, 2), strides=(2, 2)),
    dict(window_shape=(3, 3), strides=(2, 2), padding="SAME"),
    dict(window_shape=(9, 8), strides=(9, 8)),
  ],
)  # > 64
@pytest.mark.parametrize("dtype", [np.float32, jnp.bfloat16])
def test_windows_holding_nans_give_nan_under_jit(kind, options, dtype):
  # XLA's CPU reduce-window of tiling windows (a reduction over window axes),
  # jitted over many channels, returns a number for windows holding NaNs;
  # PyTorch (and the reference) give NaN.
  rng = np.random.default_rng(12)
  x = rng.normal(size=(2, 10, 8, 1024)).astype(np.float32)
  x[0, 0, 0:2, :] = np.nan  # two NaNs in the first row of the first windows
  x[1, 1, 1:3, :7] = np.nan
  y = jax.jit(lambda v: pool_fn(kind)(v, **options))(jnp.asarray(x, dtype))
  x = np.asarray(jnp.asarray(x, dtype), np.float32)  # the values the pool saw
  ref = reference_options(options)
  window, strides, padding = ref.pop("window"), ref.pop("strides"), ref.pop("padding")
  expected = getattr(reference, f"{kind}_pool")(x, window, strides, padding, **ref)
  assert np.isnan(expected).sum() >= 1024
  np.testing.assert_array_equal(np.asarray(y, np.float32), expected)


@pytest.mark.parametrize("kind", ["max", "min"])
def test_gradient_with_nan_and_inf_windows(kind):
  rng = np.random.default_rng(11)
  sign = 1 if kind == "max" else -1
  x = rng.normal(size=(1, 7, 6, 2)).astype(np.float32)
  x[0, :3, :3, 0] = -sign * np.inf  # windows of only -inf (+inf for min) and padding
  x[0, 4, 1:4, 0] = np.nan  # windows with several NaNs: the last one wins
  x[0, 5, 2, 0] = np.nan
  x[0, 1:3, 4, 1] = sign * np.inf  # the extremum itself is infinite
  x[0, 3:5, 3:5, 1] = np.nan
  for options in [
    dict(window_shape=(3, 3), strides=(1, 1), padding=1),
    dict(window_shape=(2, 2), strides=(2, 1), padding=1, ceil_mode=True, dilation=2),
    dict(window_shape=(3, 2), strides=(2, 2), padding=((2, 0), (1, 1))),
  ]:
    ref = reference_options(options)
    window, strides, padding = ref.pop("window"), ref.pop("strides"), ref.pop("padding")
    y = pool_fn(kind)(jnp.asarray(x), **options)
    expected = getattr(reference, f"{kind}_pool")(x, window, strides, padding, **ref)
    np.testing.assert_array_equal(y, expected)  # NaN where the window holds one
    assert np.isnan(expected).any() and np.isinf(expected).any()
    ct = rng.normal(size=y.shape).astype(np.float32)
    got = extremum_grad(kind, jnp.asarray(x), jnp.asarray(ct), **options)
    want = reference.max_pool_grad(x, ct, window, strides, padding, sign=sign, **ref)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_gradient_routing_all_equal_and_all_inf():
  # Every window all-equal: each output's cotangent goes to its window's first element.
  x = jnp.ones((1, 4, 4, 1))
  g = jax.jit(jax.grad(lambda x: jaxpool.max_pool(x, (2, 2), strides=(2, 2)).sum()))(x)
  g = g[0, :, :, 0]
  np.testing.assert_array_equal(g, [[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
  # Overlapping windows of -inf with padding: the first in-input element of each window.
  x = jnp.full((1, 3, 1), -jnp.inf)
  g = jax.jit(jax.grad(lambda x: jaxpool.max_pool(x, (2,), padding=1).sum()))(x)
  np.testing.assert_array_equal(g[0, :, 0], [2, 1, 1])
  g = jax.jit(jax.grad(lambda x: jaxpool.min_pool(-x, (2,), padding=1).sum()))(x)
  np.testing.assert_array_equal(g[0, :, 0], [-2, -1, -1])


@pytest.mark.parametrize("seed", range(2))
def test_random_configuration_gradients(seed):
  """Exact gradients of all four pools under ties, 5 random configurations each."""
  rng = np.random.default_rng(99 + seed)
  for _ in range(5):
    cfg = random_config(rng)
    xr = np.maximum(rng.normal(size=cfg["shape"]), 0).astype(np.float32)
    x = jnp.asarray(to_layout(xr, cfg["batch_dims"], cfg["channel_axis"]))
    count_include_pad = bool(rng.random() < 0.5)
    options = call_options(cfg)

    def loss(x_max, x_min, x_sum, x_avg, cts):
      outs = [
        jaxpool.max_pool(x_max, **options),
        jaxpool.min_pool(x_min, **options),
        jaxpool.sum_pool(x_sum, **options),
        jaxpool.avg_pool(x_avg, **options, count_include_pad=count_include_pad),
      ]
      return sum(jnp.vdot(o, c) for o, c in zip(outs, cts))

    y_shape = jax.eval_shape(lambda x: jaxpool.max_pool(x, **options), x).shape
    cts = [rng.normal(size=y_shape).astype(np.float32) for _ in POOLS]
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(x, x, x, x, cts)
    ref = dict(dilation=cfg["dilation"], ceil_mode=cfg["ceil_mode"])
    args = (cfg["window"], cfg["strides"], cfg["padding"])
    for kind, ct, g in zip(POOLS, cts, grads):
      ct_r = from_layout(ct, cfg["batch_dims"], cfg["channel_axis"])
      if kind in ("max", "min"):
        want = reference.max_pool_grad(xr, ct_r, *args, sign=1 if kind == "max" else -1, **ref)
      else:
        want = reference.avg_pool_grad(
          xr,
          ct_r,
          *args,
          count_include_pad=count_include_pad,
          divisor_override=1 if kind == "sum" else None,
          **ref,
        )
      got = from_layout(g, cfg["batch_dims"], cfg["channel_axis"])
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"{kind} {cfg}")


# --- composition ----------------------------------------------------------------------
def test_jacobians_forward_and_reverse_agree_under_ties():
  x = jnp.asarray(np.maximum(np.random.default_rng(5).normal(size=(1, 5, 4, 1)), 0), jnp.float32)
  for kind in ("max", "min"):
    f = functools.partial(
      pool_fn(kind), window_shape=(3, 2), strides=(1, 2), padding=1, dilation=(1, 1), ceil_mode=True
    )
    jf = jax.jit(jax.jacfwd(f))(x)
    jr = jax.jit(jax.jacrev(f))(x)
    np.testing.assert_array_equal(jf, jr)
    y_shape = jf.shape[:4]
    # Row o of the Jacobian is the reference gradient of output o.
    for o in np.ndindex(*y_shape):
      ct = np.zeros(y_shape, np.float32)
      ct[o] = 1
      want = reference.max_pool_grad(
        np.asarray(x), ct, (3, 2), (1, 2), 1, ceil_mode=True, sign=1 if kind == "max" else -1
      )
      np.testing.assert_array_equal(jf[o], want)


@pytest.mark.parametrize("kind", POOLS)
def test_transformations_compose(kind):
  rng = np.random.default_rng(8)
  x = jnp.asarray(np.maximum(rng.normal(size=(3, 2, 5, 4, 2)), 0), jnp.float32)  # ties
  options = dict(window_shape=(3, 2), strides=(2, 1), padding=1, ceil_mode=True, dilation=(1, 2))
  f = functools.partial(pool_fn(kind), **options)
  f_nc = functools.partial(pool_fn(kind), **options, channel_axis=1)
  t = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  c = jnp.asarray(rng.normal(size=jax.eval_shape(f, x).shape), jnp.float32)
  loss = lambda x: jnp.sum(f(x) * c)

  @jax.jit
  def everything(x, t):
    lin_grad = jax.grad(loss)
    return dict(
      direct=f(x),
      vmap=jax.vmap(f)(x),  # over a leading axis
      vmap_middle=jax.vmap(f, in_axes=1, out_axes=1)(x),  # over a middle batch axis
      # channel_axis=1 under vmap: (3, 2, C, H, W) -> vmapped (N=2, C, H, W).
      vmap_nc=jnp.moveaxis(jax.vmap(f_nc)(jnp.moveaxis(x, -1, 2)), 2, -1),
      grad=lin_grad(x),
      value_and_grad=jax.value_and_grad(loss)(x),
      vmap_grad=jax.vmap(jax.grad(lambda x, c: jnp.sum(f(x) * c)))(x, c),
      jvp=jax.jvp(f, (x,), (t,)),
      vjp=jax.vjp(f, x)[1](c)[0],
      # Piecewise linear: the gradient of <grad f(x), x> is grad f(x) itself, and
      # the Hessian-vector product is 0.
      grad_of_grad=jax.grad(lambda x: jnp.vdot(lin_grad(x), x))(x),
      hvp=jax.jvp(lin_grad, (x,), (t,))[1],
    )

  out = everything(x, t)
  direct = out["direct"]
  np.testing.assert_array_equal(direct, f(x))  # jit == eager
  for name in ("vmap", "vmap_middle", "vmap_nc"):
    np.testing.assert_allclose(out[name], direct, rtol=1e-6, err_msg=name)
  g = out["grad"]
  value, g2 = out["value_and_grad"]
  np.testing.assert_allclose(value, jnp.sum(direct * c), rtol=1e-5)
  np.testing.assert_allclose(g2, g, rtol=1e-6)
  np.testing.assert_allclose(out["vmap_grad"], g, rtol=1e-6)
  np.testing.assert_allclose(out["vjp"], g, rtol=1e-6)
  y, ty = out["jvp"]
  np.testing.assert_allclose(y, direct, rtol=1e-6)
  # jvp is the transpose of vjp: <jvp(t), c> == <t, vjp(c)>.
  np.testing.assert_allclose(jnp.vdot(ty, c), jnp.vdot(t, g), rtol=1e-4)
  np.testing.assert_allclose(out["grad_of_grad"], g, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(out["hvp"], jnp.zeros_like(x))
  # The gradient itself, against the reference (ties routed by PyTorch's rule).
  flat = lambda a: np.asarray(a).reshape((-1,) + a.shape[2:])
  ref = reference_options(options)
  args = (ref.pop("window"), ref.pop("strides"), ref.pop("padding"))
  if kind in ("max", "min"):
    want = reference.max_pool_grad(flat(x), flat(c), *args, sign=1 if kind == "max" else -1, **ref)
  else:
    want = reference.avg_pool_grad(
      flat(x), flat(c), *args, divisor_override=1 if kind == "sum" else None, **ref
    )
  np.testing.assert_allclose(flat(g), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", POOLS)
@pytest.mark.parametrize(
  "length,window,stride,pad",
  [
    (4, 1, 1, (0, 1)),  # ceil_mode drops the window that would start in the high pad
    (5, 2, 2, (0, 3)),
    (6, 3, 2, (1, 4)),
  ],
)
def test_ceil_mode_with_high_padding_wider_than_the_window(kind, length, window, stride, pad):
  """Padding wider than PyTorch allows: the output size follows PyTorch's ceil rule."""
  rng = np.random.default_rng(7)
  xr = rng.permutation(2 * length * 3).reshape(2, length, 3).astype(np.float32)
  kwargs = dict(padding=(pad,), ceil_mode=True)
  got = pool_fn(kind)(xr, (window,), (stride,), **kwargs)
  size = reference.output_size(length, window, stride, *pad, 1, True)
  want = getattr(reference, f"{kind}_pool")(xr, (window,), (stride,), **kwargs)
  assert got.shape == (2, size, 3) == want.shape
  finite = np.isfinite(want)
  np.testing.assert_allclose(np.asarray(got)[finite], want[finite], rtol=1e-6)
