"""Wall-clock timing of compiled JAX (and other) callables, robust to a busy machine.

`compare` runs several candidates in interleaved rounds (each round calls every
candidate once, in a rotating order), so a burst of load from other processes hits
all of them alike, and reports per-candidate medians. Ratios between candidates
of one `compare` call are the numbers to trust on a shared machine; absolute
milliseconds move with the load.

Each timed call follows `settle` untimed calls of the same candidate, so it runs
in the steady state of a loop (a training step calling the same kernel): its
buffers allocated and in cache, the thread pool awake. Without them a candidate
timed right after another one pays for that one's cache pollution and sleeping
threads: on the 2-core CPU this project was built on, a 3 ms pooling kernel timed
right after a 70 ms one measured 6-10 ms, and 3-4 ms after three settle calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from collections.abc import Mapping

import numpy as np


def _block(value):
  """Wait for `value`'s computation: jax arrays (any pytree) or plain values."""
  try:
    import jax  # noqa: PLC0415 - keep this module importable without jax loaded

    return jax.block_until_ready(value)
  except ImportError:  # pragma: no cover
    return value


def compare(
  candidates: Mapping[str, Callable[[], object]],
  *,
  repeats: int = 15,
  warmup: int = 1,
  settle: int = 0,
  min_round_s: float = 0.0,
) -> dict[str, dict[str, float]]:
  """Median / min / quartiles (milliseconds) of each zero-argument callable.

  Args:
    candidates: name -> callable that runs the work once and returns its result
      (jax results are waited on with `jax.block_until_ready`).
    repeats: timed rounds; every round times every candidate once.
    warmup: untimed calls of each candidate first (compilation, caches).
    settle: untimed calls of a candidate right before each of its timed calls.
    min_round_s: stop early once this much time has passed and at least 5 rounds
      ran (0 disables the budget).

  Returns:
    name -> {"median_ms", "min_ms", "q1_ms", "q3_ms", "repeats"}.
  """
  names = list(candidates)
  for name in names:
    for _ in range(warmup):
      _block(candidates[name]())
  times = {name: [] for name in names}
  start = time.perf_counter()
  for r in range(repeats):
    order = names[r % len(names) :] + names[: r % len(names)]
    for name in order:
      for _ in range(settle):
        _block(candidates[name]())
      t0 = time.perf_counter()
      _block(candidates[name]())
      times[name].append(time.perf_counter() - t0)
    if min_round_s and r >= 4 and time.perf_counter() - start > min_round_s:
      break
  out = {}
  for name, ts in times.items():
    ms = np.asarray(ts) * 1e3
    out[name] = {
      "median_ms": float(np.median(ms)),
      "min_ms": float(ms.min()),
      "q1_ms": float(np.percentile(ms, 25)),
      "q3_ms": float(np.percentile(ms, 75)),
      "repeats": int(ms.size),
    }
  return out


def repeated(fn: Callable, calls: int) -> Callable:
  """`fn` called `calls` times back to back (its result: the last one's)."""
  if calls == 1:
    return fn

  def run():
    for _ in range(calls - 1):
      fn()
    return fn()

  return run
