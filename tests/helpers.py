"""Small helpers shared by the test files (inputs, jitting, lowering), not references."""

import jax
import numpy as np


def J(fn, *args, **kwargs):
  """`fn` with its options fixed, jitted: one compilation instead of one per op."""
  return jax.jit(lambda *arrays: fn(*arrays, *args, **kwargs))


def ties(rng: np.random.Generator, shape, magnitude: int = 2) -> np.ndarray:
  """Small integers in [-magnitude, magnitude] as float32: many ties, exact sums."""
  return rng.integers(-magnitude, magnitude + 1, shape).astype(np.float32)


def lowered_text(fn, platform: str, *args) -> str:
  """The StableHLO text of `jax.jit(fn)` lowered for `platform` ("cpu", "cuda",
  "rocm", "tpu"), which needs no such device: what a per-backend rule emits there."""
  return jax.jit(fn).trace(*args).lower(lowering_platforms=(platform,)).as_text()
