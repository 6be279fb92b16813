"""How one case is timed: compiled candidates, rooflines and interleaved rounds."""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp

from experiments import timing
from experiments.benchmarks.cases import BUILDERS
from experiments.benchmarks.cases import Case
from experiments.benchmarks.torch_kernels import torch_callables


def first_output(out):
  """The array a pool returns, or the first of a tuple (e.g. max_pool_with_argmax's values)."""
  return out[0] if isinstance(out, tuple) else out


def _jax_callables(fn: Callable, x: jax.Array, key) -> tuple[Callable, Callable]:
  """Compiled forward and forward+backward (a VJP with a fixed random cotangent)."""
  fwd = jax.jit(lambda v: first_output(fn(v)))
  y = jax.eval_shape(fwd, x)
  cot = jax.random.normal(key, y.shape, jnp.float32).astype(y.dtype)

  @jax.jit
  def fwd_bwd(v, c):
    out, vjp = jax.vjp(lambda u: first_output(fn(u)), v)
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


def calls_per_sample(config) -> int:
  """Calls per timed sample: `config.calls_per_sample`, or (0) 1 on CPU and 20 on an
  accelerator, where one call of a pooling kernel lasts about as long as its launch
  from Python: back-to-back calls keep the device busy, and the sample / calls is
  the kernels' time."""
  calls = int(config.get("calls_per_sample", 0))
  if calls < 0:
    raise ValueError(f"config.calls_per_sample must be >= 0, got {calls}.")
  return calls or (1 if jax.default_backend() == "cpu" else 20)


def ratio(a, b):
  """a / b, or None where either is missing (or b is 0)."""
  return None if a is None or b is None or not b else a / b


# The timings of a row, each also as `<name>_ms` (its median) in the row.
TIMED = (
  "fwd",
  "fwd_bwd",
  "base_fwd",
  "base_fwd_bwd",
  "torch_fwd",
  "torch_fwd_bwd",
  "fwd_bwd_beside_torch",
  "roof_fwd",
  "roof_fwd_bwd",
)


def _skip(case: Case, name: str, e: Exception, log) -> dict:
  """The skip entry of a pool that could not be timed on `case`, logged."""
  reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
  log(f"  skip {name}: {reason}")
  return {"case": case.name, "dtype": case.dtype.name, "pool": name, "reason": reason}


def _candidates(name, fn, base, base_name, x, y, key, log) -> tuple[dict, str]:
  """The compiled JAX candidates of one pool (jaxpool's, its baseline's where that
  runs, the rooflines) and the baseline's name ("(failed)" added where it does not)."""
  cands = {}
  cands["fwd"], cands["fwd_bwd"] = _jax_callables(fn, x, jax.random.fold_in(key, 2))
  if base is not None:
    try:
      jax.eval_shape(base, x)
      cands["base_fwd"], cands["base_fwd_bwd"] = _jax_callables(base, x, jax.random.fold_in(key, 2))
    except Exception as e:  # noqa: BLE001 - a baseline that cannot run is reported
      log(f"  baseline of {name} failed: {type(e).__name__}: {e}")
      base_name = f"{base_name} (failed)"
  cands["roof_fwd"], cands["roof_fwd_bwd"] = _rooflines(x, y.shape, y.dtype)
  return cands, base_name


def _torch_fns(config, torch_key, case: Case, calls: int, log):
  """PyTorch's forward and forward+backward for this pool and case, or None."""
  if not config.torch:
    return None
  threads = config.torch_threads or os.cpu_count() or 1
  try:
    return torch_callables(torch_key, case, threads, calls)
  except Exception as e:  # noqa: BLE001 - e.g. a dtype torch's CPU kernel lacks
    log(f"  torch {torch_key} skipped: {type(e).__name__}: {str(e)[:120]}")
    return None


def _timings(cands: dict, torch_fns, config, calls: int) -> dict:
  """Per-call timings of every candidate, interleaved; PyTorch's in rounds of their own."""
  per_call = lambda t: {
    k: {m: (v / calls if m.endswith("_ms") else v) for m, v in tk.items()} for k, tk in t.items()
  }
  rounds = dict(repeats=config.repeats, warmup=config.warmup, settle=config.settle)
  t = per_call(timing.compare(cands, **rounds))
  if torch_fns is not None:
    # PyTorch in rounds of its own, beside jaxpool's forward+backward again: its
    # OpenMP threads keep spinning after each call and slow down whatever runs
    # next (on the 2-core CPU, jaxpool's l2 forward read 1.07 ms alone, 1.66 ms
    # in rounds with PyTorch's kernels).
    pair = {"fwd_bwd": cands["fwd_bwd"]}
    pair["torch_fwd"], pair["torch_fwd_bwd"] = torch_fns
    tt = per_call(timing.compare(pair, **rounds))
    t["torch_fwd"], t["torch_fwd_bwd"] = tt["torch_fwd"], tt["torch_fwd_bwd"]
    t["fwd_bwd_beside_torch"] = tt["fwd_bwd"]
  return t


def _row(case: Case, name: str, base_name: str, t: dict) -> dict:
  """One pool's row of benchmark.json: the case, every timing, medians and ratios."""
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
  for k in TIMED:
    row[f"{k}_ms"] = med.get(k)
  row["speedup_vs_baseline_fwd"] = ratio(med.get("base_fwd"), med["fwd"])
  row["speedup_vs_baseline_fwd_bwd"] = ratio(med.get("base_fwd_bwd"), med["fwd_bwd"])
  row["speedup_vs_torch_fwd_bwd"] = ratio(med.get("torch_fwd_bwd"), med.get("fwd_bwd_beside_torch"))
  row["over_roofline_fwd_bwd"] = ratio(med["fwd_bwd"], med["roof_fwd_bwd"])
  return row


def _log_line(row: dict) -> str:
  """The progress line of a timed pool."""
  base, torch = row["speedup_vs_baseline_fwd_bwd"], row["speedup_vs_torch_fwd_bwd"]
  return (
    f"  {row['pool']:22s} fwd {row['fwd_ms']:8.2f} ms  fwd+bwd {row['fwd_bwd_ms']:8.2f} ms"
    + (f"  baseline x{base:.1f}" if base else "")
    + (f"  torch x{torch:.2f}" if torch else "")
    + f"  roofline x{row['over_roofline_fwd_bwd']:.2f}"
  )


def benchmark_case(
  case: Case, names: list[str], config, log, done: Callable[[], None] = lambda: None
) -> tuple[list[dict], list[dict]]:
  """The rows (and skips) of every pool in `names` on `case`; `done()` after each
  pool, timed or skipped (the progress bar's step)."""
  rows, skipped = [], []
  key = jax.random.key(config.seed)
  x = jax.random.normal(key, case.shape, jnp.float32).astype(case.dtype)
  calls = calls_per_sample(config)
  for name in names:
    try:
      fn, base_name, base, torch_key = BUILDERS[name](case, jax.random.fold_in(key, 1))
      y = jax.eval_shape(lambda v, fn=fn: first_output(fn(v)), x)
    except Exception as e:  # a pool whose signature or geometry does not fit this case
      skipped.append(_skip(case, name, e, log))
      done()
      continue
    cands, base_name = _candidates(name, fn, base, base_name, x, y, key, log)
    cands = {k: timing.repeated(f, calls) for k, f in cands.items()}
    torch_fns = _torch_fns(config, torch_key, case, calls, log)
    try:
      t = _timings(cands, torch_fns, config, calls)
    except Exception as e:  # compiled but failed at run time: report, go on
      skipped.append(_skip(case, name, e, log))
      done()
      continue
    rows.append(_row(case, name, base_name, t))
    log(_log_line(rows[-1]))
    done()
  # each pool's fwd+bwd relative to jaxpool's max_pool on the same case and dtype
  ref = next((r["fwd_bwd_ms"] for r in rows if r["pool"] == "max_pool"), None)
  for r in rows:
    r["fwd_bwd_over_max_pool"] = ratio(r["fwd_bwd_ms"], ref)
  return rows, skipped
