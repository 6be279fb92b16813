"""Parity with torch.nn.functional's max_pool1d/2d/3d and avg_pool1d/2d/3d.

PyTorch is the reference for values, shapes, gradients, tie-breaking (first maximal
element in row-major window order) and NaN propagation (the last NaN of a window
gets the gradient). Skipped when torch is not installed.
"""

import functools
import itertools

import jax
import numpy as np
import pytest

import jaxpool

torch = pytest.importorskip("torch")
F = torch.nn.functional


def torch_pool(kind, x, ct, cfg):
  """Value and gradient of a torch pool on a float32 (N, C, *spatial) array."""
  n = x.ndim - 2
  xt = torch.tensor(x, requires_grad=True)
  if kind == "max":
    fn = getattr(F, f"max_pool{n}d")
    y = fn(
      xt,
      cfg["kernel"],
      cfg["stride"],
      cfg["padding"],
      dilation=cfg["dilation"],
      ceil_mode=cfg["ceil_mode"],
    )
  else:
    fn = getattr(F, f"avg_pool{n}d")
    extra = {} if n == 1 else {"divisor_override": cfg["divisor_override"]}
    y = fn(
      xt,
      cfg["kernel"],
      cfg["stride"],
      cfg["padding"],
      ceil_mode=cfg["ceil_mode"],
      count_include_pad=cfg["count_include_pad"],
      **extra,
    )
  if ct is None:
    return y.detach().numpy(), None
  y.backward(torch.tensor(ct))
  return y.detach().numpy(), xt.grad.numpy()


def jax_options(kind, cfg):
  options = dict(
    window_shape=cfg["kernel"],
    strides=cfg["stride"],
    padding=cfg["padding"],
    ceil_mode=cfg["ceil_mode"],
  )
  if kind == "max":
    options["dilation"] = cfg["dilation"]
  else:
    options["count_include_pad"] = cfg["count_include_pad"]
    options["divisor_override"] = cfg["divisor_override"]
  return options


def jax_value_and_grad(kind, x, ct, cfg, channels_last):
  """jaxpool's value and gradient, in torch's (N, C, *spatial) layout."""
  pool = functools.partial(getattr(jaxpool, f"{kind}_pool"), **jax_options(kind, cfg))
  if channels_last:
    x, ct = np.moveaxis(x, 1, -1), np.moveaxis(ct, 1, -1)
  else:
    pool = functools.partial(pool, channel_axis=1)
  y, g = jax.jit(lambda x, ct: (lambda y, vjp: (y, vjp(ct)[0]))(*jax.vjp(pool, x)))(x, ct)
  y, g = np.asarray(y), np.asarray(g)
  if channels_last:
    y, g = np.moveaxis(y, -1, 1), np.moveaxis(g, -1, 1)
  return y, g


def random_torch_config(rng, kind):
  """A random configuration that torch accepts (pad <= kernel // 2, output >= 1)."""
  while True:
    n = int(rng.integers(1, 4))
    sizes = tuple(int(v) for v in rng.integers(2, {1: 10, 2: 8, 3: 6}[n] + 1, n))
    kernel = tuple(int(v) for v in rng.integers(1, 4, n))
    stride = tuple(int(v) for v in rng.integers(1, 4, n))
    padding = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
    dilation = (
      tuple(int(v) for v in rng.integers(1, 3, n))
      if kind == "max" and rng.random() < 0.5
      else (1,) * n
    )
    effective = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    if any(L + 2 * p < e for L, p, e in zip(sizes, padding, effective)):
      continue
    divisor_override = (
      int(rng.integers(1, 7)) if kind == "avg" and n > 1 and rng.random() < 0.3 else None
    )
    return dict(
      shape=(int(rng.integers(1, 3)), int(rng.integers(1, 3))) + sizes,
      kernel=kernel,
      stride=stride,
      padding=padding,
      dilation=dilation,
      ceil_mode=bool(rng.random() < 0.5),
      count_include_pad=bool(rng.random() < 0.5),
      divisor_override=divisor_override,
    )


def tie_heavy_input(rng, shape, nan_fraction=0.0):
  """ReLU of a normal (half the entries exactly 0), with some -inf and NaN."""
  x = np.maximum(rng.normal(size=shape), 0).astype(np.float32)
  x[rng.random(shape) < 0.05] = -np.inf
  if nan_fraction:
    x[rng.random(shape) < nan_fraction] = np.nan
  return x


@pytest.mark.parametrize("kind, seed", [("max", 0), ("max", 1), ("avg", 0), ("avg", 1)])
def test_random_configurations(kind, seed):
  """10 random torch-valid configurations per case: values, shapes and gradients."""
  rng = np.random.default_rng(100 * seed + (kind == "avg"))
  for i in range(10):
    cfg = random_torch_config(rng, kind)
    if kind == "max":
      x = tie_heavy_input(rng, cfg["shape"], nan_fraction=0.05 if i % 2 else 0.0)
    else:
      x = rng.normal(size=cfg["shape"]).astype(np.float32)
    y_t, _ = torch_pool(kind, x, None, cfg)
    ct = rng.normal(size=y_t.shape).astype(np.float32)
    y_t, g_t = torch_pool(kind, x, ct, cfg)
    y_j, g_j = jax_value_and_grad(kind, x, ct, cfg, channels_last=bool(i % 3 == 0))
    assert y_j.shape == y_t.shape, cfg
    if kind == "max":
      np.testing.assert_array_equal(y_j, y_t, err_msg=str(cfg))
      np.testing.assert_allclose(g_j, g_t, rtol=1e-6, atol=1e-6, err_msg=str(cfg))
    else:
      np.testing.assert_allclose(y_j, y_t, rtol=1e-5, atol=1e-6, err_msg=str(cfg))
      np.testing.assert_allclose(g_j, g_t, rtol=1e-5, atol=1e-6, err_msg=str(cfg))


CASES = [
  # Overlapping windows with ties, the ceil_mode last window starting in the input
  # and overhanging the padding, dilation.
  (
    "max",
    dict(
      shape=(2, 2, 9, 8),
      kernel=(3, 3),
      stride=(2, 2),
      padding=(1, 1),
      dilation=(1, 1),
      ceil_mode=True,
    ),
  ),
  (
    "max",
    dict(shape=(1, 3, 10), kernel=(3,), stride=(3,), padding=(1,), dilation=(2,), ceil_mode=True),
  ),
  (
    "max",
    dict(
      shape=(1, 2, 5, 6, 5),
      kernel=(2, 3, 2),
      stride=(2, 1, 2),
      padding=(1, 1, 0),
      dilation=(2, 1, 1),
      ceil_mode=True,
    ),
  ),
  (
    "avg",
    dict(
      shape=(2, 2, 7, 8),
      kernel=(3, 2),
      stride=(2, 3),
      padding=(1, 1),
      ceil_mode=True,
      count_include_pad=True,
      divisor_override=None,
    ),
  ),
  (
    "avg",
    dict(
      shape=(2, 2, 7, 8),
      kernel=(3, 2),
      stride=(2, 3),
      padding=(1, 1),
      ceil_mode=True,
      count_include_pad=False,
      divisor_override=None,
    ),
  ),
  (
    "avg",
    dict(
      shape=(1, 2, 5, 4, 6),
      kernel=(2, 3, 3),
      stride=(2, 2, 2),
      padding=(1, 1, 1),
      ceil_mode=True,
      count_include_pad=True,
      divisor_override=5,
    ),
  ),
  (
    "avg",
    dict(
      shape=(1, 2, 11),
      kernel=(4,),
      stride=(3,),
      padding=(2,),
      ceil_mode=True,
      count_include_pad=True,
      divisor_override=None,
    ),
  ),
]


@pytest.mark.parametrize("kind, cfg", CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CASES)])
def test_named_cases(kind, cfg):
  rng = np.random.default_rng(5)
  cfg = dict(dict(dilation=(1,) * len(cfg["kernel"])), **cfg)
  x = (
    tie_heavy_input(rng, cfg["shape"], nan_fraction=0.03)
    if kind == "max"
    else (rng.normal(size=cfg["shape"]).astype(np.float32))
  )
  y_t, _ = torch_pool(kind, x, None, cfg)
  ct = rng.normal(size=y_t.shape).astype(np.float32)
  y_t, g_t = torch_pool(kind, x, ct, cfg)
  for channels_last in (False, True):
    y_j, g_j = jax_value_and_grad(kind, x, ct, cfg, channels_last)
    assert y_j.shape == y_t.shape
    np.testing.assert_allclose(y_j, y_t, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g_j, g_t, rtol=1e-6, atol=1e-6)


def test_all_equal_and_nan_windows_route_like_torch():
  cfg = dict(kernel=(2, 2), stride=(1, 1), padding=(1, 1), dilation=(1, 1), ceil_mode=False)
  x1 = np.zeros((1, 1, 3, 3), np.float32)  # every window all-equal
  x2 = np.array([[[[1, np.nan, 2], [np.nan, 3, np.nan], [4, 5, np.nan]]]], np.float32)
  x3 = np.full((1, 1, 3, 3), -np.inf, np.float32)
  for x in (x1, x2, x3):
    ct = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4) + 1
    y_t, g_t = torch_pool("max", x, ct, cfg)
    y_j, g_j = jax_value_and_grad("max", x, ct, cfg, channels_last=False)
    np.testing.assert_array_equal(y_j, y_t)
    np.testing.assert_array_equal(g_j, g_t)


# --- ceil_mode windows larger than the (padded) input (issue 23) -------------------
# PyTorch accepts them when one window starts inside the input or its low padding;
# that window holds the whole input (its overhang is neither selected nor counted).
LARGER_WINDOW_CASES = [
  # the reproducers: avg_pool1d(len 2, 4, 3, 0), max_pool1d(len 2, 3, 2, 0),
  # avg_pool2d((1, 1, 1, 6), 2, (2, 1)), max_pool1d(len 2, 2, 3, dilation 2)
  ("avg", dict(shape=(1, 1, 2), kernel=(4,), stride=(3,), padding=(0,))),
  ("max", dict(shape=(1, 1, 2), kernel=(3,), stride=(2,), padding=(0,))),
  ("avg", dict(shape=(1, 1, 1, 6), kernel=(2, 2), stride=(2, 1), padding=(0, 0))),
  ("max", dict(shape=(1, 1, 2), kernel=(2,), stride=(3,), padding=(0,), dilation=(2,))),
  ("max", dict(shape=(2, 3, 3, 2), kernel=(4, 3), stride=(3, 2), padding=(1, 0))),
  ("avg", dict(shape=(2, 3, 3, 2), kernel=(4, 3), stride=(3, 2), padding=(1, 0))),
  ("max", dict(shape=(1, 2, 2, 3, 1), kernel=(3, 4, 2), stride=(2, 2, 2), padding=(0, 1, 0))),
]


def larger_window_configs():
  """The named cases, then every small 1-d case where the window exceeds the padded
  input and PyTorch still gives an output."""
  for kind, cfg in LARGER_WINDOW_CASES:
    n = len(cfg["kernel"])
    base = dict(dilation=(1,) * n, ceil_mode=True, count_include_pad=True, divisor_override=None)
    yield kind, dict(base, **cfg)
    if kind == "avg":
      yield kind, dict(base, **cfg, **{"count_include_pad": False})
  grid = itertools.product((1, 2), range(2, 6), range(1, 4), (0, 1), (1, 2))
  for i, (L, k, s, p, d) in enumerate(grid):
    e = d * (k - 1) + 1
    if L + 2 * p >= e or 2 * p > k:
      continue
    yield (
      "avg" if d == 1 and i % 2 else "max",  # one compilation per case: half of each
      dict(
        shape=(1, 2, L),
        kernel=(k,),
        stride=(s,),
        padding=(p,),
        dilation=(d,),
        ceil_mode=True,
        count_include_pad=bool(L % 2),
        divisor_override=None,
      ),
    )


def test_ceil_mode_windows_larger_than_the_input():
  rng = np.random.default_rng(23)
  compared = refused = 0
  for kind, cfg in larger_window_configs():
    x = rng.normal(size=cfg["shape"]).astype(np.float32)
    try:
      y_t, _ = torch_pool(kind, x, None, cfg)
    except RuntimeError:  # PyTorch: "Output size is too small"; we refuse it too
      with pytest.raises(ValueError, match=rf"^{kind}_pool: the window .* no output"):
        jaxpool.max_pool(
          x,
          cfg["kernel"],
          cfg["stride"],
          cfg["padding"],
          ceil_mode=True,
          dilation=cfg["dilation"],
          channel_axis=1,
        ) if kind == "max" else (
          jaxpool.avg_pool(
            x, cfg["kernel"], cfg["stride"], cfg["padding"], ceil_mode=True, channel_axis=1
          )
        )
      refused += 1
      continue
    ct = rng.normal(size=y_t.shape).astype(np.float32)
    y_t, g_t = torch_pool(kind, x, ct, cfg)
    # A dilated window may hold no input element at all: PyTorch gives -inf (max)
    # there and writes its gradient past the channel's plane; its documented
    # choices are -inf (max) and 0 (avg without padding counted) here.
    holds_input = np.isfinite(y_t).all()
    for channels_last in (False, True):
      y_j, g_j = jax_value_and_grad(kind, x, ct, cfg, channels_last)
      assert y_j.shape == y_t.shape, cfg
      if holds_input:
        np.testing.assert_allclose(y_j, y_t, rtol=1e-6, atol=1e-6, err_msg=str(cfg))
        np.testing.assert_allclose(g_j, g_t, rtol=1e-6, atol=1e-6, err_msg=str(cfg))
      else:
        np.testing.assert_array_equal(y_j, np.where(np.isnan(y_t), 0, y_t), err_msg=str(cfg))
    compared += holds_input
  assert compared > 15 and refused > 5


def test_ceil_mode_larger_windows_argmax_and_lp_match_torch():
  """max_pool_with_argmax against return_indices; lp_pool against lp_pool1d on
  non-negative inputs where the one window holds the whole input (PyTorch scales a
  window overhanging the input by K / count, so compare with count == K undone)."""
  x = np.abs(np.random.default_rng(1).normal(size=(2, 3, 2))).astype(np.float32)
  y_t, i_t = F.max_pool1d(torch.tensor(x), 3, 2, 0, ceil_mode=True, return_indices=True)
  y_j, i_j = jaxpool.max_pool_with_argmax(x, (3,), 2, 0, ceil_mode=True, channel_axis=1)
  np.testing.assert_array_equal(y_j, y_t.numpy())
  np.testing.assert_array_equal(i_j, i_t.numpy())
  # torch: (avg_pool1d(x^p) * K)^(1/p), avg over the 2 elements inside -> times 2 / K
  p, k = 3.0, 4
  lp_t = F.lp_pool1d(torch.tensor(x), p, k, 3, ceil_mode=True).numpy() * (2 / k) ** (1 / p)
  lp_j = jaxpool.lp_pool(x, p, (k,), 3, 0, ceil_mode=True, channel_axis=1)
  np.testing.assert_allclose(lp_j, lp_t, rtol=1e-5)


def test_rank_2_channels_first_is_refused_and_batched_matches_torch_unbatched():
  """PyTorch reads a rank-2 input of max_pool1d as unbatched (C, L). jaxpool's
  channel_axis=1 is the batched (N, C, L) layout only: the rank-2 call is refused
  (it was silently read as channels-last (L, C)), and with the batch dim added the
  values are PyTorch's."""
  x = np.arange(12.0, dtype=np.float32).reshape(2, 6)
  for pool in (jaxpool.max_pool, jaxpool.avg_pool, jaxpool.soft_pool, jaxpool.l2_pool):
    name = pool.__name__
    with pytest.raises(ValueError, match=rf"^{name}: channel_axis=1 .* \(2, 6\)"):
      pool(x, (3,), (2,), 1, channel_axis=1)
  want = F.max_pool1d(torch.tensor(x), 3, 2, 1).numpy()
  assert want.shape == (2, 3)
  np.testing.assert_array_equal(jaxpool.max_pool(x[None], (3,), (2,), 1, channel_axis=1)[0], want)
  np.testing.assert_array_equal(jaxpool.max_pool(x.T, (3,), (2,), 1).T, want)  # (L, C)
