r"""Speed of every public jaxpool pool beside its baselines, measured in one run.

    python -m experiments.benchmark --config=configs/benchmark.py --workdir=runs/benchmark
    python -m experiments.benchmark --config=configs/benchmark.py:quick   # smoke test

For every case of the config (an input shape and a window), every dtype and every
pool in `jaxpool.__all__` that has an argument builder below (pools that are not
in this checkout yet are skipped, with the reason in the output), it times the
compiled forward pass and the compiled forward+backward pass (`jax.vjp` with a
random cotangent) beside, in the same interleaved rounds (experiments/timing.py):

* the baseline: flax.linen's pool, or a plain-autodiff version of the definition
  (e.g. `sqrt(sum_pool(x**2))` for l2, a patches-based stochastic pool);
* PyTorch's kernel (channels-last; on CUDA when JAX runs on a GPU), where torch
  is importable and has one, in rounds of its own beside jaxpool's forward+backward
  (its OpenMP threads spin after each call and would slow the JAX candidates);
* a streaming roofline: one compiled elementwise pass over the bytes that
  forward+backward must at least touch (read `x`, read the cotangent, write the
  gradient); for the forward, read `x` and write `y`.

First, if `experiments.models` exists, the training throughput (images/s) of the
seed CNN with jaxpool's max pool vs flax.linen.max_pool, and vs the same model in
Keras on TensorFlow (experiments/keras_throughput.py, in a subprocess whose rounds
interleave with the JAX ones) when `config.training.keras_python` (default: this
interpreter) can import tensorflow. Only the training table:

    python -m experiments.benchmark --config=configs/benchmark.py --workdir=/tmp/train \
        --config.cases="()" --config.training.keras_python=/path/to/tf-env/bin/python

With `JAXPOOL_MALLOC=retain` in the environment it first sets the malloc options
of experiments/allocator.py (XLA:CPU's temporary buffers are then reused instead
of page-faulted in afresh on every call), for every candidate alike, the Keras
subprocess included; the report names the setting.

Writes `benchmark.json` (every median, quartile and ratio, the device) and
`benchmark.md` (the tables) into `--workdir`, after every case. While it runs, a
progress bar on stderr counts the measurements and each one's line is printed
above it; `--quiet` prints the lines alone (for logs). Numbers are medians; on a
shared machine compare the ratios, which come from one interleaved measurement.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
import platform
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags
from jax import lax
from ml_collections import config_flags

import jaxpool
from experiments import allocator
from experiments import cli
from experiments import timing


def define_flags(flag_values=flags.FLAGS):
  """The command-line flags, defined only when run as a program (so that importing
  this module beside experiments.train or experiments.compare defines nothing)."""
  config_flags.DEFINE_config_file(
    "config", "configs/benchmark.py", "Benchmark configuration file.", flag_values=flag_values
  )
  flags.DEFINE_string(
    "workdir", "runs/benchmark", "Where the tables are written.", flag_values=flag_values
  )
  flags.DEFINE_bool("quiet", False, "Log lines instead of a progress bar.", flag_values=flag_values)
  return flag_values


# --------------------------------------------------------------------------------------
# Cases and pool builders
# --------------------------------------------------------------------------------------


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


def _flax():
  import flax.linen as nn  # noqa: PLC0415 - flax is an optional dependency

  return nn


# Each builder returns (jaxpool fn, baseline name, baseline fn or None, torch key).
# The fns take the input `x` (of the case's dtype) and return an array or a tuple.
def _classic(name):
  def build(case: Case, key):
    w, s, p = case.window_args()
    fn = getattr(jaxpool, name)
    nn = _flax()
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
  nn = _flax()
  naive = lambda x: 0.3 * nn.max_pool(x, w, s, p) + 0.7 * nn.avg_pool(x, w, s, p)
  return (lambda x: jaxpool.mixed_pool(x, 0.3, w, s, p)), "flax 0.3*max + 0.7*avg", naive, None


def _gated(case: Case, key):
  w, s, p = case.window_args()
  nn = _flax()
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
    nn = _flax()
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
  nn = _flax()
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
  return (lambda x: jaxpool.fractional_max_pool(x, w, output_ratio=0.5, key=key)), "", None, None


def _blur(case: Case, key):
  return (lambda x: jaxpool.blur_pool(x, case.strides)), "", None, None


def _pool(case: Case, key):
  w, s, p = case.window_args()
  nn = _flax()
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
      nn = _flax()
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
# window_pool's user function is jnp.max above, jnp.mean and jnp.median here.
VARIANTS: dict[str, tuple[str, ...]] = {"window_pool": ("window_pool[mean]", "window_pool[median]")}
BUILDERS["window_pool[mean]"] = _window_pool("mean")
BUILDERS["window_pool[median]"] = _window_pool("median")


def public_pools(selected=()) -> tuple[list[str], list[dict]]:
  """(names to run, skipped entries): every callable `jaxpool.__all__` entry with a builder."""
  names, skipped = [], []
  for name in sorted(getattr(jaxpool, "__all__", ())):
    if not callable(getattr(jaxpool, name, None)):
      continue
    for row in (name, *VARIANTS.get(name, ())):
      if selected and row not in selected:
        continue
      if row not in BUILDERS:
        skipped.append({"pool": row, "reason": "no argument builder in experiments/benchmark.py"})
        continue
      names.append(row)
  for name in selected:
    if name not in names and not any(s["pool"] == name for s in skipped):
      skipped.append({"pool": name, "reason": "not in jaxpool.__all__ of this checkout"})
  return names, skipped


# --------------------------------------------------------------------------------------
# Timed callables
# --------------------------------------------------------------------------------------


def _first(out):
  return out[0] if isinstance(out, tuple) else out


def _jax_callables(fn: Callable, x: jax.Array, key) -> tuple[Callable, Callable]:
  """Compiled forward and forward+backward (a VJP with a fixed random cotangent)."""
  fwd = jax.jit(lambda v: _first(fn(v)))
  y = jax.eval_shape(fwd, x)
  cot = jax.random.normal(key, y.shape, jnp.float32).astype(y.dtype)

  @jax.jit
  def fwd_bwd(v, c):
    out, vjp = jax.vjp(lambda u: _first(fn(u)), v)
    return out, vjp(c)[0]

  return (lambda: fwd(x)), (lambda: fwd_bwd(x, cot))


def _rooflines(x: jax.Array, y_shape, y_dtype) -> tuple[Callable, Callable]:
  """Streaming passes over the bytes the pool must touch at least.

  Forward: read `x`, write `y`. Forward+backward: read `x`, read the cotangent,
  write the gradient (the shape of `x`). Each is one elementwise XLA loop.
  """
  size = math.prod(y_shape)
  cot = jnp.ones(y_shape, y_dtype)
  two = jnp.asarray(2, x.dtype)

  @jax.jit
  def fwd(v):  # every element of x read once (a sum), y written once
    return jnp.broadcast_to(jnp.sum(v, dtype=jnp.float32).astype(y_dtype), y_shape)

  @jax.jit
  def fwd_bwd(v, c):  # c read (its sum), x read and the gradient written
    return v * two + jnp.sum(c, dtype=jnp.float32).astype(v.dtype)

  del size
  return (lambda: fwd(x)), (lambda: fwd_bwd(x, cot))


def _repeated(fn: Callable, calls: int) -> Callable:
  """`fn` called `calls` times back to back (its result: the last one's)."""
  if calls == 1:
    return fn

  def run():
    for _ in range(calls - 1):
      fn()
    return fn()

  return run


def _import_torch():
  """The torch module, or None where it is not installed.

  PyTorch's OpenMP threads would otherwise spin for a while after each call (GNU
  OpenMP's default), taking the cores from the JAX call timed next: passive
  waiting is set before torch loads its OpenMP runtime (a value already in the
  environment wins).
  """
  os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
  try:
    import torch  # noqa: PLC0415 - optional
  except ImportError:
    return None
  return torch


def torch_device() -> str:
  """Where PyTorch runs beside JAX: "cuda" when JAX runs on a GPU and torch sees one."""
  if jax.default_backend() != "gpu":
    return "cpu"
  torch = _import_torch()
  return "cuda" if torch is not None and torch.cuda.is_available() else "cpu"


def _torch_callables(torch_key: str | None, case: Case, threads: int, calls: int = 1):
  """PyTorch forward and forward+backward (channels-last), each `calls` times, or None.

  On `torch_device()`; CUDA work is synchronized after the last call, so a timed
  call measures the kernels, not only their launch.
  """
  if torch_key is None:
    return None
  torch = _import_torch()
  if torch is None:
    return None
  F = torch.nn.functional  # noqa: N806
  torch.set_num_threads(threads)
  device = torch_device()
  dtype = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
  }[case.dtype.name]
  b, *spatial, c = case.shape
  x = torch.randn(b, c, *spatial, dtype=dtype, device=device)
  if case.nd == 2:
    x = x.contiguous(memory_format=torch.channels_last)
  elif case.nd == 3:
    x = x.contiguous(memory_format=torch.channels_last_3d)
  x.requires_grad_(True)
  k, s, p = case.window, case.strides, case.torch_padding
  nd = case.nd
  if torch_key == "max":
    op = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
    fn = lambda v: op(v, k, s, p)
  elif torch_key == "avg":
    op = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
    fn = lambda v: op(v, k, s, p)
  elif torch_key.startswith("lp"):
    if p or nd == 3 and not hasattr(F, "lp_pool3d"):
      return None  # torch's lp_pool has no padding
    op = {1: F.lp_pool1d, 2: F.lp_pool2d, 3: getattr(F, "lp_pool3d", None)}[nd]
    norm = float(torch_key[2:])
    fn = lambda v: op(v, norm, k, s)
  else:
    return None
  with torch.no_grad():
    cot = torch.randn_like(fn(x))

  def fwd():
    with torch.no_grad():
      return fn(x)

  def fwd_bwd():
    x.grad = None
    out = fn(x)
    out.backward(cot)
    return x.grad

  def synchronized(f):
    def run():
      out = _repeated(f, calls)()
      if device == "cuda":
        torch.cuda.synchronize()
      return out

    return run

  return synchronized(fwd), synchronized(fwd_bwd)


# --------------------------------------------------------------------------------------
# The measurement
# --------------------------------------------------------------------------------------


def calls_per_sample(config) -> int:
  """Calls per timed sample: `config.calls_per_sample`, or (0) 1 on CPU and 20 on an
  accelerator, where one call of a pooling kernel lasts about as long as its launch
  from Python: back-to-back calls keep the device busy, and the sample / calls is
  the kernels' time."""
  calls = int(config.get("calls_per_sample", 0))
  if calls < 0:
    raise ValueError(f"config.calls_per_sample must be >= 0, got {calls}.")
  return calls or (1 if jax.default_backend() == "cpu" else 20)


def _ratio(a, b):
  return None if a is None or b is None or not b else a / b


def benchmark_case(
  case: Case, names: list[str], config, log, done: Callable[[], None] = lambda: None
) -> tuple[list[dict], list[dict]]:
  """The rows (and skips) of every pool in `names` on `case`; `done()` after each
  pool, timed or skipped (the progress bar's step)."""
  rows, skipped = [], []
  key = jax.random.key(config.seed)
  x = jax.random.normal(key, case.shape, jnp.float32).astype(case.dtype)
  threads = config.torch_threads or os.cpu_count() or 1
  calls = calls_per_sample(config)
  for name in names:
    try:
      fn, base_name, base, torch_key = BUILDERS[name](case, jax.random.fold_in(key, 1))
      y = jax.eval_shape(lambda v, fn=fn: _first(fn(v)), x)
    except Exception as e:  # a pool whose signature or geometry does not fit this case
      skipped.append(
        {
          "case": case.name,
          "dtype": case.dtype.name,
          "pool": name,
          "reason": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}",
        }
      )
      log(f"  skip {name}: {skipped[-1]['reason']}")
      done()
      continue
    cands = {}
    cands["fwd"], cands["fwd_bwd"] = _jax_callables(fn, x, jax.random.fold_in(key, 2))
    if base is not None:
      try:
        jax.eval_shape(base, x)
        cands["base_fwd"], cands["base_fwd_bwd"] = _jax_callables(
          base, x, jax.random.fold_in(key, 2)
        )
      except Exception as e:  # noqa: BLE001 - a baseline that cannot run is reported
        log(f"  baseline of {name} failed: {type(e).__name__}: {e}")
        base_name = f"{base_name} (failed)"
    cands["roof_fwd"], cands["roof_fwd_bwd"] = _rooflines(x, y.shape, y.dtype)
    cands = {k: _repeated(f, calls) for k, f in cands.items()}
    torch_fns = None
    if config.torch:
      try:
        torch_fns = _torch_callables(torch_key, case, threads, calls)
      except Exception as e:  # noqa: BLE001 - e.g. a dtype torch's CPU kernel lacks
        log(f"  torch {torch_key} skipped: {type(e).__name__}: {str(e)[:120]}")
    per_call = lambda t: {
      k: {m: (v / calls if m.endswith("_ms") else v) for m, v in tk.items()} for k, tk in t.items()
    }
    try:
      t = per_call(
        timing.compare(cands, repeats=config.repeats, warmup=config.warmup, settle=config.settle)
      )
      if torch_fns is not None:
        # PyTorch in rounds of its own, beside jaxpool's forward+backward again: its
        # OpenMP threads keep spinning after each call and slow down whatever runs
        # next (on the 2-core CPU, jaxpool's l2 forward read 1.07 ms alone, 1.66 ms
        # in rounds with PyTorch's kernels).
        pair = {"fwd_bwd": cands["fwd_bwd"]}
        pair["torch_fwd"], pair["torch_fwd_bwd"] = torch_fns
        tt = per_call(
          timing.compare(pair, repeats=config.repeats, warmup=config.warmup, settle=config.settle)
        )
        t["torch_fwd"], t["torch_fwd_bwd"] = tt["torch_fwd"], tt["torch_fwd_bwd"]
        t["fwd_bwd_beside_torch"] = tt["fwd_bwd"]
    except Exception as e:  # compiled but failed at run time: report, go on
      skipped.append(
        {
          "case": case.name,
          "dtype": case.dtype.name,
          "pool": name,
          "reason": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}",
        }
      )
      log(f"  skip {name}: {skipped[-1]['reason']}")
      done()
      continue
    med = {k: v["median_ms"] for k, v in t.items()}
    row = {
      "case": case.name,
      "shape": list(case.shape),
      "window": list(case.window),
      "strides": list(case.strides),
      "padding": str(case.padding),
      "dtype": case.dtype.name,
      "pool": name,
      "baseline": base_name,
      "timings": t,
    }
    for k in (
      "fwd",
      "fwd_bwd",
      "base_fwd",
      "base_fwd_bwd",
      "torch_fwd",
      "torch_fwd_bwd",
      "fwd_bwd_beside_torch",
      "roof_fwd",
      "roof_fwd_bwd",
    ):
      row[f"{k}_ms"] = med.get(k)
    row["speedup_vs_baseline_fwd"] = _ratio(med.get("base_fwd"), med["fwd"])
    row["speedup_vs_baseline_fwd_bwd"] = _ratio(med.get("base_fwd_bwd"), med["fwd_bwd"])
    row["speedup_vs_torch_fwd_bwd"] = _ratio(
      med.get("torch_fwd_bwd"), med.get("fwd_bwd_beside_torch")
    )
    row["over_roofline_fwd_bwd"] = _ratio(med["fwd_bwd"], med["roof_fwd_bwd"])
    rows.append(row)
    log(
      f"  {name:22s} fwd {med['fwd']:8.2f} ms  fwd+bwd {med['fwd_bwd']:8.2f} ms"
      + (
        f"  baseline x{row['speedup_vs_baseline_fwd_bwd']:.1f}"
        if row["speedup_vs_baseline_fwd_bwd"]
        else ""
      )
      + (
        f"  torch x{row['speedup_vs_torch_fwd_bwd']:.2f}" if row["speedup_vs_torch_fwd_bwd"] else ""
      )
      + f"  roofline x{row['over_roofline_fwd_bwd']:.2f}"
    )
    done()
  # each pool's fwd+bwd relative to jaxpool's max_pool on the same case and dtype
  ref = next((r["fwd_bwd_ms"] for r in rows if r["pool"] == "max_pool"), None)
  for r in rows:
    r["fwd_bwd_over_max_pool"] = _ratio(r["fwd_bwd_ms"], ref)
  return rows, skipped


# --------------------------------------------------------------------------------------
# Training throughput
# --------------------------------------------------------------------------------------


def training_throughput(config, log) -> dict:
  """Images/s of seed_cnn training (adam): jaxpool's vs flax.linen's max pool vs Keras.

  Needs `experiments.models` (the seed CNN); skipped with a message otherwise. Each
  timed call is one compiled `lax.scan` of `config.training.steps` train steps on
  random data already on the device, after one untimed call of the same candidate.
  With `config.training.keras`, the same model in Keras on TensorFlow runs in a
  subprocess (`_KerasProcess`, experiments/keras_throughput.py) that answers one
  round (every Keras variant: an untimed epoch, then a timed one, of the same
  `steps` steps) after each round of the JAX candidates, so that all of them share
  the machine's load alike; its result, or why it was skipped, is in the output.
  """
  cfg = config.training
  if not cfg.enabled:
    return {"skipped": "config.training.enabled is False"}
  try:
    from experiments import models  # noqa: PLC0415 - written on another branch
  except ImportError as e:
    return {
      "skipped": f"experiments.models is not available in this checkout ({e}); "
      "the training benchmark runs once it is merged."
    }
  try:
    import optax  # noqa: PLC0415
    from flax import nnx  # noqa: PLC0415
  except ImportError as e:
    return {"skipped": f"needs flax.nnx and optax ({e})."}

  nn = _flax()

  class FlaxMaxPool(nnx.Module):
    """flax.linen.max_pool 2x2/2 in the seed CNN's pooling slot (the baseline)."""

    def __call__(self, x):
      return nn.max_pool(x, (2, 2), (2, 2), "VALID")

  def build(flax_pool: bool):
    rngs = nnx.Rngs(params=0, pooling=1)
    if hasattr(models, "build_model"):
      model = models.build_model("seed_cnn", pool="max", pool_options=None, rngs=rngs)
    else:
      model = models.SeedCNN(pool="max", rngs=rngs)
    if flax_pool:
      model.pool = FlaxMaxPool()
    return model

  keras, keras_result = None, None
  if cfg.get("keras", True):  # started first: it traces while JAX compiles
    keras, keras_result = _KerasProcess.start(config, log)
  try:
    return _training_rounds(config, log, build, optax, keras, keras_result)
  finally:
    if keras is not None:
      keras.close()


def _training_rounds(config, log, build, optax, keras, keras_result) -> dict:
  from flax import nnx  # noqa: PLC0415

  cfg = config.training
  b, steps = cfg.batch_size, cfg.steps
  key = jax.random.key(config.seed)
  images = jax.random.uniform(key, (steps, b, 28, 28, 1), jnp.float32)
  labels = jax.random.randint(jax.random.fold_in(key, 1), (steps, b), 0, 10)
  runners = {}
  try:
    for name, flax_pool in (("jaxpool.max_pool", False), ("flax.linen.max_pool", True)):
      model = build(flax_pool)
      graphdef, params, rest = nnx.split(model, nnx.Param, ...)
      tx = optax.adam(1e-3)

      def step(carry, batch, graphdef=graphdef, rest=rest, tx=tx):
        params, opt_state = carry

        def loss_fn(p):
          logits = nnx.merge(graphdef, p, rest)(batch[0])
          return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

      epoch = jax.jit(lambda carry, xs, ys, step=step: lax.scan(step, carry, (xs, ys)))
      carry = (params, tx.init(params))
      runners[name] = functools.partial(epoch, carry, images, labels)
  except Exception as e:  # the models module changed its interface
    return {"skipped": f"could not build seed_cnn from experiments.models: {type(e).__name__}: {e}"}
  names = list(runners)
  for name in names:  # compile (while the Keras process traces its variants)
    jax.block_until_ready(runners[name]())
  timeout = cfg.get("keras_timeout_s", 900)
  if keras is not None:
    keras_result = keras.ready(timeout)
  ms = {name: [] for name in names}
  for r in range(cfg.repeats):
    order = names[r % len(names) :] + names[: r % len(names)]
    t = timing.compare({n: runners[n] for n in order}, repeats=1, warmup=0, settle=1)
    for name in names:
      ms[name].append(t[name]["median_ms"])
    if keras is not None and keras_result is None:  # one Keras round per JAX round
      keras_result = keras.round(timeout)
  if keras is not None and keras_result is None:
    keras_result = keras.finish(timeout)
  t = {
    name: {
      "median_ms": float(np.median(v)),
      "min_ms": float(np.min(v)),
      "q1_ms": float(np.percentile(v, 25)),
      "q3_ms": float(np.percentile(v, 75)),
      "repeats": len(v),
    }
    for name, v in ms.items()
  }
  result = {"batch_size": b, "steps_per_call": steps, "timings": t}
  for name, v in t.items():
    result[f"{name} images/s"] = b * steps / (v["median_ms"] / 1e3)
  result["jaxpool_over_flax"] = (
    result["jaxpool.max_pool images/s"] / result["flax.linen.max_pool images/s"]
  )
  if keras_result is not None:
    result.update(keras_result)
    if "keras images/s" in keras_result:
      keras_ips = keras_result["keras images/s"]
      result["jaxpool_over_keras"] = result["jaxpool.max_pool images/s"] / keras_ips
      result["flax_over_keras"] = result["flax.linen.max_pool images/s"] / keras_ips
  log(
    "  training: " + ", ".join(f"{k} {v:.0f}" for k, v in result.items() if k.endswith("images/s"))
  )
  return result


KERAS_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "keras_throughput.py")


def _last_json_object(text: str) -> dict | None:
  """The last line of `text` that is a JSON object (TensorFlow may print before it)."""
  for line in reversed(text.strip().splitlines()):
    line = line.strip()
    if line.startswith("{"):
      try:
        value = json.loads(line)
      except ValueError:
        continue
      if isinstance(value, dict):
        return value
  return None


def _keras_result(out: dict) -> dict:
  """The benchmark's view of keras_throughput.py's final JSON (see its docstring)."""
  if "skipped" in out:
    return {"keras": f"skipped: {out['skipped']}"}
  try:
    result = {"keras images/s": float(out["images/s"])}
    for name, v in out["variants"].items():
      result[f"keras {name} images/s"] = float(v["images/s"])
    result["keras_best"] = str(out["best"])
  except (KeyError, TypeError, ValueError, AttributeError) as e:
    return {
      "keras": f"failed: unexpected output of keras_throughput.py "
      f"({type(e).__name__}: {e}): {json.dumps(out)[:300]}"
    }
  result["keras_run"] = out
  return result


class _KerasProcess:
  """experiments/keras_throughput.py --serve in a subprocess, one round on request.

  TensorFlow and JAX in one process fight over threads and memory, hence a process
  of its own, under `config.training.keras_python` ("" = this interpreter, and then
  only if it can import tensorflow, checked without importing it). Every method
  that ends the Keras measurement returns `{"keras": "skipped: ..."}` /
  `{"keras": "failed: ..."}` or the final result (`_keras_result`); `round` returns
  None while all is well.
  """

  def __init__(self, cmd: list[str]):
    self.cmd = cmd
    self._stderr = tempfile.TemporaryFile(mode="w+")
    # The allocator options of this process (experiments.allocator): same for all.
    env = {**os.environ, **allocator.environment()}
    self.proc = subprocess.Popen(
      cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env
    )
    self._lines: queue.Queue = queue.Queue()
    threading.Thread(target=self._read, daemon=True).start()

  @classmethod
  def start(cls, config, log) -> tuple[_KerasProcess | None, dict | None]:
    cfg = config.training
    python = cfg.get("keras_python", "")
    how = "set --config.training.keras_python to the python of an environment that has tensorflow"
    if not python:
      if importlib.util.find_spec("tensorflow") is None:
        return None, {"keras": f"skipped: tensorflow is not importable by {sys.executable}; {how}"}
      python = sys.executable
    elif shutil.which(python) is None:
      return None, {
        "keras": f"skipped: config.training.keras_python={python!r} is not an executable; {how}"
      }
    cmd = [
      python,
      KERAS_SCRIPT,
      "--serve",
      "--batch-size",
      str(cfg.batch_size),
      "--steps",
      str(cfg.steps),
      "--settle",
      str(cfg.get("keras_settle", 1)),
      "--seed",
      str(config.seed),
      "--variants",
      cfg.get("keras_variants", "default"),
    ]
    log(f"  keras: {' '.join(cmd)}")
    try:
      return cls(cmd), None
    except OSError as e:
      return None, {"keras": f"failed: could not run {python}: {e}"}

  def _read(self):
    for line in self.proc.stdout:
      self._lines.put(line)
    self._lines.put(None)

  def _failed(self, why: str) -> dict:
    self._stderr.seek(0)
    tail = " | ".join(self._stderr.read().strip().splitlines()[-3:])[-500:]
    self.close(kill=True)
    return {
      "keras": f"failed: {os.path.basename(KERAS_SCRIPT)} {why}" + (f": {tail}" if tail else "")
    }

  def _receive(self, timeout: float) -> dict | str:
    """The next JSON object the script prints, or why there is none (a str)."""
    deadline = time.monotonic() + timeout
    while True:
      try:
        line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
      except queue.Empty:
        return f"gave no answer within {timeout} s (config.training.keras_timeout_s)"
      if line is None:
        return f"exited {self.proc.wait()} early"
      obj = _last_json_object(line)
      if obj is not None:
        return obj

  def _send(self, command: str) -> bool:
    try:
      self.proc.stdin.write(command + "\n")
      self.proc.stdin.flush()
      return True
    except (BrokenPipeError, OSError, ValueError):
      return False

  def ready(self, timeout: float) -> dict | None:
    """Wait until every variant is built and traced (None), or say why not."""
    obj = self._receive(timeout)
    if isinstance(obj, str):
      return self._failed(obj)
    if "ready" not in obj:
      self.close()
      return _keras_result(obj)  # {"skipped": ...} (no tensorflow) or unexpected
    return None

  def round(self, timeout: float) -> dict | None:
    if not self._send("round"):
      return self._failed(f"exited {self.proc.wait()} early")
    obj = self._receive(timeout)
    if isinstance(obj, str):
      return self._failed(obj)
    if "round" not in obj:
      self.close()
      return _keras_result(obj)
    return None

  def finish(self, timeout: float) -> dict:
    if not self._send("done"):
      return self._failed(f"exited {self.proc.wait()} early")
    obj = self._receive(timeout)
    if isinstance(obj, str):
      return self._failed(obj)
    self.close()
    return _keras_result(obj)

  def close(self, kill: bool = False):
    """End the process: EOF on its stdin (it prints its summary and exits), or kill."""
    if self.proc.poll() is None:
      if kill:
        self.proc.kill()
      try:
        self.proc.stdin.close()
      except OSError:
        pass
      try:
        self.proc.wait(timeout=30)
      except subprocess.TimeoutExpired:
        self.proc.kill()
        self.proc.wait()
    if not self._stderr.closed:
      self._stderr.close()


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def device_info() -> dict:
  dev = jax.devices()[0]
  cpu = platform.processor() or ""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  try:
    load = os.getloadavg()
  except OSError:
    load = None
  return {
    "platform": dev.platform,
    "device_kind": dev.device_kind,
    "device_count": jax.device_count(),
    "cpu_model": cpu,
    "cpu_count": os.cpu_count(),
    "load_average": load,
    "jax": jax.__version__,
    "python": sys.version.split()[0],
    "torch_device": torch_device(),
    "malloc": allocator.describe(),
  }


def _fmt(v, digits=2, suffix=""):
  return "" if v is None else f"{v:.{digits}f}{suffix}"


def to_markdown(result: dict) -> str:
  d = result["device"]
  lines = [
    "# jaxpool benchmark",
    "",
    f"Device: {d['platform']} / {d['device_kind']} x{d['device_count']}; CPU: "
    f"{d['cpu_model']} ({d['cpu_count']} cores); jax {d['jax']}. "
    f"Load average at start/end: {d.get('load_average')} / "
    f"{result.get('load_average_end')}. malloc: {d.get('malloc', 'default')} "
    "(experiments/allocator.py).",
    "",
    f"Medians of interleaved rounds (experiments/timing.py), each timed call "
    f"after {result['config'].get('settle', 0)} untimed ones of the same candidate, "
    f"milliseconds per call ({result.get('calls_per_sample', 1)} back-to-back calls "
    f"per timed sample). PyTorch on {d.get('torch_device', 'cpu')}, in rounds of its "
    "own beside jaxpool's fwd+bwd (`x torch` compares those two). "
    "`xN` = baseline time / jaxpool time (higher is better); `/roof` = jaxpool "
    "fwd+bwd time / a streaming pass over the same bytes; `/max` = fwd+bwd time / "
    "jaxpool max_pool fwd+bwd on the same case.",
    "",
  ]
  by_case: dict[tuple, list] = {}
  for r in result["rows"]:
    by_case.setdefault((r["case"], str(r["shape"]), r["dtype"]), []).append(r)
  for (case, shape, dtype), rows in by_case.items():
    r0 = rows[0]
    lines += [
      f"## {case} {shape} window {r0['window']} strides {r0['strides']} "
      f"padding {r0['padding']}, {dtype}",
      "",
      "| pool | fwd | fwd+bwd | baseline | base fwd | base fwd+bwd | x fwd | "
      "x fwd+bwd | torch fwd | torch fwd+bwd | x torch | roof fwd+bwd | /roof | /max |",
      "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
      lines.append(
        f"| {r['pool']} | {_fmt(r['fwd_ms'])} | {_fmt(r['fwd_bwd_ms'])} | {r['baseline']} "
        f"| {_fmt(r['base_fwd_ms'])} | {_fmt(r['base_fwd_bwd_ms'])} "
        f"| {_fmt(r['speedup_vs_baseline_fwd'], 1, 'x')} "
        f"| {_fmt(r['speedup_vs_baseline_fwd_bwd'], 1, 'x')} "
        f"| {_fmt(r['torch_fwd_ms'])} | {_fmt(r['torch_fwd_bwd_ms'])} "
        f"| {_fmt(r['speedup_vs_torch_fwd_bwd'], 2, 'x')} | {_fmt(r['roof_fwd_bwd_ms'])} "
        f"| {_fmt(r['over_roofline_fwd_bwd'], 2)} | {_fmt(r['fwd_bwd_over_max_pool'], 2)} |"
      )
    lines.append("")
  tr = result.get("training", {})
  lines += ["## Training throughput (seed_cnn, adam)", ""]
  if "skipped" in tr:
    lines.append(f"Skipped: {tr['skipped']}")
  else:
    keras = tr.get("keras images/s")
    lines += ["| model | images/s | / keras |", "|---|---:|---:|"]
    for k, v in tr.items():
      if k.endswith("images/s"):
        name = k[: -len(" images/s")]
        if name == "keras":
          name = f"keras (fastest: {tr.get('keras_best')})"
        lines.append(f"| {name} | {v:.0f} | {_fmt(_ratio(v, keras), 2, 'x')} |")
    lines.append("")
    lines.append(
      f"jaxpool / flax: {_fmt(tr.get('jaxpool_over_flax'), 2, 'x')}"
      + (
        f"; jaxpool / keras: {_fmt(tr.get('jaxpool_over_keras'), 2, 'x')}"
        f"; flax / keras: {_fmt(tr.get('flax_over_keras'), 2, 'x')}"
        if tr.get("jaxpool_over_keras")
        else f"; keras: {tr.get('keras', '')}"
      )
    )
    run = tr.get("keras_run")
    if run:
      rounds = next(iter(tr.get("timings", {}).values()), {}).get("repeats")
      lines += [
        "",
        f"Batch {tr.get('batch_size')}, {tr.get('steps_per_call')} steps per timed "
        "call. JAX: one jitted `lax.scan` per call, jaxpool and flax interleaved. "
        f"Keras {run.get('keras')} on TensorFlow {run.get('tensorflow')} (python "
        f"{run.get('python')}, threads {run.get('threads')}), in a subprocess "
        "(experiments/keras_throughput.py) that runs one round of its variants "
        "after each JAX round: one epoch of "
        f"{run.get('steps_per_call')} steps per timed call, after "
        f"{run.get('settle')} untimed. Medians of {rounds} rounds.",
      ]
  lines.append("")
  if result["skipped"]:
    lines += ["## Skipped", ""]
    for s in result["skipped"]:
      where = f" ({s['case']}, {s['dtype']})" if "case" in s else ""
      lines.append(f"- {s['pool']}{where}: {s['reason']}")
    lines.append("")
  return "\n".join(lines)


def run(config, workdir: str, log=print, progress_bar: bool = False) -> dict:
  """Run the whole benchmark and write benchmark.json / benchmark.md into `workdir`.

  `log(line)` reports each measurement as it is made; with `progress_bar`, a tqdm
  bar on stderr counts the measurements (the training table, then every pool of
  every case and dtype) and the lines are written above it.
  """
  os.makedirs(workdir, exist_ok=True)
  names, skipped = public_pools(tuple(config.pools))
  from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top

  # The measurements in the order they are made; the bar names the one under way.
  steps = ["training"] * bool(config.training.enabled) + [
    f"{spec['name']} {dtype} {name}"
    for spec in config.cases
    for dtype in config.dtypes
    for name in names
  ]
  bar = tqdm.tqdm(
    total=len(steps),
    desc="benchmark",
    unit="measurement",
    disable=not progress_bar,
    dynamic_ncols=True,
    file=sys.stderr,
  )
  if progress_bar:
    log = functools.partial(_write_above, bar)

  def done():
    bar.update(1)
    if bar.n < len(steps):
      bar.set_postfix_str(steps[bar.n])

  if steps:
    bar.set_postfix_str(steps[0])

  result = {
    "device": device_info(),
    "config": config.to_dict(),
    "pools": names,
    "calls_per_sample": calls_per_sample(config),
    "rows": [],
    "skipped": skipped,
  }
  log(f"device: {result['device']}")

  def write():  # after every case, so a long run that is stopped keeps its tables
    try:
      result["load_average_end"] = os.getloadavg()
    except OSError:
      pass
    with open(os.path.join(workdir, "benchmark.json"), "w") as f:
      json.dump(result, f, indent=1, default=str)
    with open(os.path.join(workdir, "benchmark.md"), "w") as f:
      f.write(to_markdown(result))

  result["training"] = {"skipped": "not run yet"}
  if config.training.enabled:  # first: it is the shortest, and the most asked-for
    result["training"] = training_throughput(config, log)
    done()
  else:
    result["training"] = {"skipped": "config.training.enabled is False"}
  if "skipped" in result["training"]:
    log(f"training benchmark skipped: {result['training']['skipped']}")
  for spec in config.cases:
    for dtype in config.dtypes:
      case = Case(dict(spec), dtype)
      log(f"{case.name} {case.shape} {dtype}")
      rows, skip = benchmark_case(case, names, config, log, done)
      result["rows"] += rows
      result["skipped"] += skip
      write()
  write()
  bar.close()
  return result


def _write_above(bar, *parts, **unused_print_kwargs):
  """`print` for the log lines while the progress bar is shown: above the bar."""
  bar.write(" ".join(str(p) for p in parts), file=sys.stdout)


DTYPES = ("float32", "bfloat16", "float16", "float64")
CASE_KEYS = ("name", "shape", "window", "strides", "padding")


def check_config(config) -> None:
  """Raises `cli.ConfigError` naming an unknown key, pool (of `jaxpool.__all__`),
  dtype or case field of a benchmark config, with the valid ones."""
  from configs import benchmark as benchmark_config  # pylint: disable=g-import-not-at-top

  cli.check_keys(config, benchmark_config.get_config())
  known = sorted(n for n in getattr(jaxpool, "__all__", ()) if callable(getattr(jaxpool, n, None)))
  for name in config.pools:
    cli.check_choice("pool", name, known, where="config.pools")
  for dtype in config.dtypes:
    cli.check_choice("dtype", dtype, DTYPES, where="config.dtypes")
  for spec in config.cases:
    for key in dict(spec):
      cli.check_choice("case field", key, CASE_KEYS, where="config.cases")


def main(argv, flag_values=flags.FLAGS):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  check_config(flag_values.config)
  run(
    flag_values.config,
    flag_values.workdir,
    functools.partial(print, flush=True),
    progress_bar=not flag_values.quiet,
  )
  print(os.path.join(flag_values.workdir, "benchmark.md"))
  print(os.path.join(flag_values.workdir, "benchmark.json"))


if __name__ == "__main__":
  allocator.from_environment()  # JAXPOOL_MALLOC=retain: before JAX allocates anything
  cli.run(main, prog="benchmark", define_flags=define_flags, config_default="configs/benchmark.py")
