"""What the benchmark measures: the input cases and, per pool, its arguments and baseline."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxpool


class Case:
  """One input shape and window: `(B, *spatial, C)`, channels last."""

  def __init__(self, spec: dict, dtype: str):
    self.name = spec["name"]
    self.shape = tuple(int(s) for s in spec["shape"])
    self.window = tuple(int(w) for w in spec["window"])
    self.strides = tuple(int(s) for s in spec["strides"])
    self.nd = len(self.window)
    padding = spec["padding"]
    if isinstance(padding, str):
      self.padding = padding
      self.torch_padding = 1 if padding.upper() == "SAME" else 0  # same output size here
    else:
      self.padding = tuple((int(padding), int(padding)) for _ in self.window)
      self.torch_padding = int(padding)
    self.dtype = jnp.dtype(dtype)
    self.spatial_axes = tuple(range(1, 1 + self.nd))

  @property
  def channels(self) -> int:
    return self.shape[-1]

  def window_args(self):
    return self.window, self.strides, self.padding


def _reduce_window(x, init, op, case: Case):
  """Plain `lax.reduce_window` over the case's window (the autodiff baselines)."""
  dims = (1, *case.window, 1)
  strides = (1, *case.strides, 1)
  if isinstance(case.padding, str):
    pads = lax.padtype_to_pads(x.shape, dims, strides, case.padding)
  else:
    pads = ((0, 0), *case.padding, (0, 0))
  return lax.reduce_window(x, np.asarray(init, x.dtype), op, dims, strides, pads)


def _sum_window(x, case):
  return _reduce_window(x, 0, lax.add, case)


def _patches(x, case: Case):
  """`(B, *out, C, K)`: every window's elements (zero padding), for naive baselines."""
  n = case.nd
  b, c = x.shape[0], x.shape[-1]
  lhs = jnp.moveaxis(x, -1, 1).reshape(b * c, 1, *x.shape[1:-1])
  padding = case.padding if isinstance(case.padding, str) else list(case.padding)
  p = lax.conv_general_dilated_patches(lhs, case.window, case.strides, padding)
  p = p.reshape(b, c, p.shape[1], *p.shape[2:])  # (B, C, K, *out)
  return jnp.transpose(p, (0, *range(3, 3 + n), 1, 2))


def flax_linen():
  """flax.linen, imported on first use."""
  import flax.linen as nn  # noqa: PLC0415 - flax is an optional dependency

  return nn


# Each builder returns (jaxpool fn, baseline name, baseline fn or None, torch key).
# The fns take the input `x` (of the case's dtype) and return an array or a tuple.
# A new row of the benchmark: a builder here and its entry in BUILDERS (below);
# torch key: "max", "avg", "lp<p>" (torch_kernels.py) or None.
def _classic(name):
  def build(case: Case, key):
    w, s, p = case.window_args()
    fn = getattr(jaxpool, name)
    nn = flax_linen()
    baselines = {
      "max_pool": ("flax.linen.max_pool", lambda x: nn.max_pool(x, w, s, p)),
      "min_pool": ("-flax.linen.max_pool(-x)", lambda x: -nn.max_pool(-x, w, s, p)),
      "avg_pool": ("flax.linen.avg_pool", lambda x: nn.avg_pool(x, w, s, p)),
      "sum_pool": ("lax.reduce_window(add)", lambda x: _sum_window(x, case)),
    }
    base_name, base = baselines[name]
    torch_key = {"max_pool": "max", "avg_pool": "avg"}.get(name)
    return (lambda x: fn(x, w, s, p)), base_name, base, torch_key

  return build


def _lp(case: Case, key):
  w, s, p = case.window_args()
  naive = lambda x: _sum_window(jnp.abs(x) ** 3, case) ** (1 / 3)
  return (lambda x: jaxpool.lp_pool(x, 3.0, w, s, p)), "naive (sum|x|^3)^(1/3)", naive, "lp3"


def _l2(case: Case, key):
  w, s, p = case.window_args()
  naive = lambda x: jnp.sqrt(_sum_window(x * x, case))
  return (lambda x: jaxpool.l2_pool(x, w, s, p)), "naive sqrt(sum_pool(x^2))", naive, "lp2"


def _lp_learned_p(case: Case, key):
  w, s, p = case.window_args()
  exponent = jnp.float32(3.0)  # an array, as a learned p is: lp's general backward
  naive = lambda x: _sum_window(jnp.abs(x) ** exponent, case) ** (1 / exponent)
  fn = lambda x: jaxpool.lp_pool(x, exponent, w, s, p)
  return fn, "naive (sum|x|^p)^(1/p), p an array", naive, None


def _gem(case: Case, key):
  axes = case.spatial_axes
  naive = lambda x: jnp.mean(jnp.maximum(x, 1e-6) ** 3, axis=axes) ** (1 / 3)
  return (lambda x: jaxpool.gem_pool(x, 3.0)), "naive mean(clamp(x)^3)^(1/3)", naive, None


def _stochastic(case: Case, key):
  w, s, p = case.window_args()

  def naive(x):  # patches, categorical draw, gather: plain autodiff
    patches = _patches(x, case)
    a = jnp.maximum(patches, 0).astype(jnp.float32)
    total = a.sum(-1, keepdims=True)
    logits = jnp.where(total > 0, jnp.log(a / jnp.where(total > 0, total, 1)), 0.0)
    draw = jax.random.categorical(key, logits, axis=-1)
    picked = jnp.take_along_axis(patches, draw[..., None], axis=-1)[..., 0]
    return jnp.where(total[..., 0] > 0, picked, 0).astype(x.dtype)

  return (
    (lambda x: jaxpool.stochastic_pool(x, w, s, p, key=key)),
    "naive patches + categorical",
    naive,
    None,
  )


def _mixed(case: Case, key):
  w, s, p = case.window_args()
  nn = flax_linen()
  naive = lambda x: 0.3 * nn.max_pool(x, w, s, p) + 0.7 * nn.avg_pool(x, w, s, p)
  return (lambda x: jaxpool.mixed_pool(x, 0.3, w, s, p)), "flax 0.3*max + 0.7*avg", naive, None


def _gated(case: Case, key):
  w, s, p = case.window_args()
  nn = flax_linen()
  gate = jax.random.normal(key, (*w, 1), jnp.float32) * 0.1

  def naive(x):
    g = jax.nn.sigmoid(_patches(x, case) @ gate.reshape(-1).astype(x.dtype))
    return g * nn.max_pool(x, w, s, p) + (1 - g) * nn.avg_pool(x, w, s, p)

  return (
    (lambda x: jaxpool.gated_pool(x, gate.astype(x.dtype), w, s, p)),
    "patches gate + flax max/avg",
    naive,
    None,
  )


def _tree(case: Case, key):
  w, s, p = case.window_args()
  k1, k2 = jax.random.split(key)
  leaves = jax.random.normal(k1, (2, *w, 1), jnp.float32) * 0.1
  gates = jax.random.normal(k2, (1, *w, 1), jnp.float32) * 0.1

  def naive(x):
    patches = _patches(x, case)
    v = [patches @ leaves[m].reshape(-1).astype(x.dtype) for m in range(2)]
    g = jax.nn.sigmoid(patches @ gates[0].reshape(-1).astype(x.dtype))
    return g * v[0] + (1 - g) * v[1]

  return (
    (lambda x: jaxpool.tree_pool(x, leaves.astype(x.dtype), gates.astype(x.dtype), w, s, p)),
    "patches 2-leaf tree",
    naive,
    None,
  )


def _soft(case: Case, key):
  w, s, p = case.window_args()

  def naive(x):
    e = jnp.exp(x - lax.stop_gradient(jnp.max(x)))
    return _sum_window(e * x, case) / _sum_window(e, case)

  return (lambda x: jaxpool.soft_pool(x, w, s, p)), "naive sum(e^x x)/sum(e^x)", naive, None


def _lip(case: Case, key):
  w, s, p = case.window_args()

  def naive(x):
    logits = 0.5 * x
    e = jnp.exp(logits - lax.stop_gradient(jnp.max(logits)))
    return _sum_window(e * x, case) / _sum_window(e, case)

  return (lambda x: jaxpool.lip_pool(x, 0.5 * x, w, s, p)), "naive sum(x e^l)/sum(e^l)", naive, None


def _adaptive(kind):
  def build(case: Case, key):
    out = tuple(max(1, d // st) for d, st in zip(case.shape[1:-1], case.strides))
    fn = getattr(jaxpool, f"adaptive_{kind}_pool")
    nn = flax_linen()
    divisible = all(d % o == 0 for d, o in zip(case.shape[1:-1], out))
    window = tuple(d // o for d, o in zip(case.shape[1:-1], out))
    base = None
    if divisible:
      pool = nn.max_pool if kind == "max" else nn.avg_pool
      base = lambda x: pool(x, window, window, "VALID")
    return (lambda x: fn(x, out)), f"flax.linen.{kind}_pool (divisible)", base, None

  return build


def _global(kind):
  def build(case: Case, key):
    axes = case.spatial_axes
    if kind == "lp":
      fn = lambda x: jaxpool.global_lp_pool(x, 2.0)
      base = lambda x: jnp.sqrt(jnp.sum(x * x, axis=axes))
    else:
      fn = getattr(jaxpool, f"global_{kind}_pool")
      base = functools.partial(jnp.mean if kind == "avg" else jnp.max, axis=axes)
    return fn, f"jnp.{'sqrt(sum(x^2))' if kind == 'lp' else kind} over space", base, None

  return build


def _pyramid(case: Case, key):
  return (lambda x: jaxpool.spatial_pyramid_pool(x, (1, 2, 4))), "", None, None


def _argmax(case: Case, key):
  w, s, p = case.window_args()
  nn = flax_linen()
  return (
    (lambda x: jaxpool.max_pool_with_argmax(x, w, s, p)[0]),
    "flax.linen.max_pool",
    (lambda x: nn.max_pool(x, w, s, p)),
    "max",
  )


def _unpool(case: Case, key):
  w, s, p = case.window_args()

  def fn(x):
    values, indices = jaxpool.max_pool_with_argmax(lax.stop_gradient(x), w, s, p)
    return jaxpool.max_unpool(values + 0 * jnp.sum(x), indices, case.shape[1:-1])

  return fn, "", None, None


def _fractional(case: Case, key):
  w = tuple(2 for _ in case.window)
  return (
    (lambda x: jaxpool.fractional_max_pool(x, w, output_ratio=0.5, key=key)),
    "",
    None,
    "fractional",
  )


def _blur(case: Case, key):
  return (lambda x: jaxpool.blur_pool(x, case.strides)), "", None, None


def _pool(case: Case, key):
  w, s, p = case.window_args()
  nn = flax_linen()
  init = -jnp.inf
  return (
    (lambda x: jaxpool.pool(x, init, lax.max, w, s, p)),
    "flax.linen.pool(lax.max)",
    (lambda x: nn.pool(x, init, lax.max, w, s, p)),
    "max",
  )


def _window_pool(kind):
  """window_pool with fn=jnp.max (baseline: flax's max_pool), jnp.mean (jaxpool's
  avg_pool) or jnp.median (a plain median of `_patches`, zero padding alike)."""

  def build(case: Case, key):
    w, s, p = case.window_args()
    if kind == "max":
      nn = flax_linen()
      fn = lambda x: jaxpool.window_pool(jnp.max, x, w, s, p, pad_value=-jnp.inf)
      return fn, "flax.linen.max_pool", (lambda x: nn.max_pool(x, w, s, p)), "max"
    if kind == "mean":
      fn = lambda x: jaxpool.window_pool(jnp.mean, x, w, s, p)
      return fn, "jaxpool.avg_pool", (lambda x: jaxpool.avg_pool(x, w, s, p)), "avg"
    fn = lambda x: jaxpool.window_pool(jnp.median, x, w, s, p)
    return fn, "jnp.median of patches", (lambda x: jnp.median(_patches(x, case), -1)), None

  return build


BUILDERS: dict[str, Callable] = {
  "max_pool": _classic("max_pool"),
  "min_pool": _classic("min_pool"),
  "avg_pool": _classic("avg_pool"),
  "sum_pool": _classic("sum_pool"),
  "lp_pool": _lp,
  "l2_pool": _l2,
  "gem_pool": _gem,
  "stochastic_pool": _stochastic,
  "mixed_pool": _mixed,
  "gated_pool": _gated,
  "tree_pool": _tree,
  "soft_pool": _soft,
  "lip_pool": _lip,
  "adaptive_avg_pool": _adaptive("avg"),
  "adaptive_max_pool": _adaptive("max"),
  "global_avg_pool": _global("avg"),
  "global_max_pool": _global("max"),
  "global_lp_pool": _global("lp"),
  "spatial_pyramid_pool": _pyramid,
  "max_pool_with_argmax": _argmax,
  "max_unpool": _unpool,
  "fractional_max_pool": _fractional,
  "blur_pool": _blur,
  "pool": _pool,
  "window_pool": _window_pool("max"),
}

# More rows of a public function, each timed as a pool of its own, after it:
# window_pool's user function is jnp.max above, jnp.mean and jnp.median here; lp_pool
# with p an array (a learned p) takes its general backward.
VARIANTS: dict[str, tuple[str, ...]] = {
  "window_pool": ("window_pool[mean]", "window_pool[median]"),
  "lp_pool": ("lp_pool[learned p]",),
}
BUILDERS["lp_pool[learned p]"] = _lp_learned_p
BUILDERS["window_pool[mean]"] = _window_pool("mean")
BUILDERS["window_pool[median]"] = _window_pool("median")


def public_pools(selected=()) -> tuple[list[str], list[dict]]:
  """(names to run, skipped entries): every callable `jaxpool.__all__` entry with a builder."""
  names, skipped = [], []
  for name in sorted(getattr(jaxpool, "__all__", ())):
    if not callable(getattr(jaxpool, name, None)):
      continue
    for row in (name, *VARIANTS.get(name, ())):
      if selected and name not in selected:  # a selected pool brings its variants
        continue
      if row not in BUILDERS:
        skipped.append(
          {"pool": row, "reason": "no argument builder in experiments/benchmarks/cases.py"}
        )
        continue
      names.append(row)
  for name in selected:
    if name not in names and not any(s["pool"] == name for s in skipped):
      skipped.append({"pool": name, "reason": "not in jaxpool.__all__ of this checkout"})
  return names, skipped


DTYPES = ("float32", "bfloat16", "float16", "float64")
CASE_KEYS = ("name", "shape", "window", "strides", "padding")
