"""Optional: keep glibc's malloc from handing XLA:CPU's buffers back to the kernel.

XLA:CPU allocates a compiled program's temporary buffers on every call. With
glibc's default settings, large blocks are mmap-ed, and the top of the heap is
trimmed, when they are freed: the memory goes back to the kernel, and the next
call faults in fresh zero-filled pages. On this project's machine (2 cores,
Linux, glibc) that was 3,000-11,000 page faults per call of l2/lp/soft pooling
forward+backward on a (128, 28, 28, 64) float32 batch and a third to a half of
the call's time (3x3/2 SAME: l2 11.0 -> 5.6 ms, lp 13.7 -> 8.5, soft 22.6 -> 12.7),
and it made some kernels' times bimodal (max_pool 3x3/2: 3.3 or 10 ms, depending
on the heap's state). flax.linen.max_pool's gradient gains too (2x2/2: 72 -> 39 ms),
but a whole seed_cnn training step with jaxpool lost 13% (22k -> 19k images/s).

`retain_freed_memory` sets four malloc options so that freed blocks stay in the
process and are reused: one arena, no mmap-ed blocks, trim only above 1 GiB of
free memory at the top of the heap, grow the heap in 256 MiB steps. It is
process-wide and changes where memory comes from, not any result. Opt-in: the
benchmark calls `from_environment()` first thing, which applies it when
`JAXPOOL_MALLOC=retain`, and passes the same options to its Keras subprocess
(`environment`), so every candidate of a comparison runs under the same allocator.
An option already set in the environment (glibc's `MALLOC_*_` variables) is left
as it is.
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
SETTING_ENV = "JAXPOOL_MALLOC"  # "retain": `from_environment` applies the options
_applied: dict[str, int] | None = None  # what `retain_freed_memory` set (None: not called)


def environment() -> dict[str, str]:
  """The options this process set, as environment variables for a subprocess (glibc
  reads them at start-up); empty if `retain_freed_memory` set none."""
  return {env: str(value) for name, _, env, value in _OPTIONS if name in (_applied or {})}


def describe() -> str:
  """This process's malloc configuration, in words (for benchmark reports)."""
  if not _applied:
    return f"system default ({SETTING_ENV}=retain: keep freed memory)"
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
  """Set the options (module docstring) in this process, before JAX allocates.

  Returns the options it set, by mallopt name (empty: not glibc, or all of them
  already set in the environment). Raises RuntimeError if glibc rejects one.
  """
  global _applied
  _applied = {}
  mallopt = _glibc_mallopt()
  if mallopt is None:
    return {}
  for name, param, env, value in _OPTIONS:
    if env in os.environ:
      continue  # the user's setting, already applied by glibc at start-up
    if mallopt(param, value) != 1:
      raise RuntimeError(f"glibc's mallopt rejected {name}={value}.")
    _applied[name] = value
  return dict(_applied)


def from_environment() -> dict[str, int]:
  """`retain_freed_memory()` if `JAXPOOL_MALLOC=retain`, else nothing (glibc's
  defaults); any other value raises ValueError."""
  setting = os.environ.get(SETTING_ENV, "default")
  if setting == "retain":
    return retain_freed_memory()
  if setting != "default":
    raise ValueError(f"{SETTING_ENV} must be 'retain' or 'default', got {setting!r}.")
  return {}
