"""Keep glibc's malloc from handing XLA:CPU's buffers back to the kernel between calls.

XLA:CPU allocates a compiled program's temporary buffers on every call. With
glibc's default settings, large blocks are mmap-ed, and the top of the heap is
trimmed, when they are freed: the memory goes back to the kernel, and the next
call faults in fresh zero-filled pages. On this project's machine (2 cores,
Linux, glibc) that was 3,000-10,000 page faults per call of l2/lp/soft pooling
forward+backward on a (128, 28, 28, 64) float32 batch, a third of the call's
time (lp 3x3/2: 10.3 -> 6.9 ms, soft 24.6 -> 13.3 ms), and it made a kernel's time
bimodal (max_pool 3x3/2 read 5 or 10 ms depending on the heap's state).

`retain_freed_memory` sets four malloc options so that freed blocks stay in the
process and are reused: one arena, no mmap-ed blocks, trim only above 1 GiB of
free memory at the top of the heap, grow the heap in 256 MiB steps. It is
process-wide and only changes where memory comes from, not any result. The
experiments' entry points (benchmark, compare, train) call it first; the benchmark
passes the same options to the Keras subprocess (`environment`), so every
candidate of a comparison runs under the same allocator. An option already set in
the environment (glibc's `MALLOC_*_` variables) is left as it is;
`JAXPOOL_MALLOC=default` turns the whole thing off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# (mallopt parameter name, its number in glibc's malloc.h, environment variable, value)
_OPTIONS = (
    ("M_ARENA_MAX", -8, "MALLOC_ARENA_MAX", 1),
    ("M_MMAP_MAX", -4, "MALLOC_MMAP_MAX_", 0),
    ("M_TRIM_THRESHOLD", -1, "MALLOC_TRIM_THRESHOLD_", 1 << 30),
    ("M_TOP_PAD", -2, "MALLOC_TOP_PAD_", 256 << 20),
)
OPT_OUT_ENV = "JAXPOOL_MALLOC"
_applied: dict[str, int] | None = None  # what `retain_freed_memory` set (None: not called)


def environment() -> dict[str, str]:
  """The options this process set, as environment variables for a subprocess (glibc
  reads them at start-up); empty if `retain_freed_memory` set none."""
  return {env: str(value) for name, _, env, value in _OPTIONS if name in (_applied or {})}


def describe() -> str:
  """This process's malloc configuration, in words (for benchmark reports)."""
  if _applied is None:
    return "default (experiments.allocator not used)"
  if not _applied:
    return "default (" + (f"{OPT_OUT_ENV}=default" if os.environ.get(OPT_OUT_ENV) == "default"
                          else "no glibc, or options set in the environment") + ")"
  return "retain freed memory: " + ", ".join(f"{k}={v}" for k, v in _applied.items())


def _glibc_mallopt():
  """glibc's `mallopt`, or None (another C library, or not Linux)."""
  name = ctypes.util.find_library("c")
  if name is None:
    return None
  try:
    libc = ctypes.CDLL(name)
    libc.gnu_get_libc_version  # only glibc has it  # noqa: B018
    return libc.mallopt
  except (OSError, AttributeError):
    return None


def retain_freed_memory() -> dict[str, int]:
  """Set the options (module docstring) in this process, first thing in `main`.

  Returns the options it set, by mallopt name (empty: turned off, not glibc, or all
  of them already set in the environment). Raises RuntimeError if glibc rejects one.
  """
  global _applied
  _applied = {}
  if os.environ.get(OPT_OUT_ENV) == "default":
    return {}
  mallopt = _glibc_mallopt()
  if mallopt is None:
    return {}
  applied = _applied
  for name, param, env, value in _OPTIONS:
    if env in os.environ:
      continue  # the user's setting, already applied by glibc at start-up
    if mallopt(param, value) != 1:
      raise RuntimeError(f"glibc's mallopt rejected {name}={value}.")
    applied[name] = value
  return applied
