"""Input dtypes: which arrays the pools accept, and the dtype they compute in.

DESIGN.md: float32, float16, bfloat16 and float64 (under x64) everywhere, with sums
and means of half-precision inputs accumulated in float32; max/min-type pools also
take integers.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def compute_dtype(dtype):
  """float16/bfloat16 are computed in float32; other dtypes as they are."""
  if dtype in (jnp.float16, jnp.bfloat16):
    return jnp.float32
  return dtype


def as_array(value: Any, fn: str, name: str) -> jax.Array:
  """`value` (an array, a number or nested sequences of numbers) as a jax array.

  The one check of every array argument of the public functions (`inputs`,
  `indices`, `alpha`, `p`, weights, ...), so that None, strings and other
  non-arrays give a TypeError naming the function and the argument instead of
  JAX's own message.

  Raises:
    TypeError: naming `fn`, `name` and what was received.
  """
  if _holds_text_or_none(value):
    raise TypeError(_not_an_array(value, fn, name))
  try:
    a = jnp.asarray(value)
  except (TypeError, ValueError, OverflowError) as err:
    raise TypeError(_not_an_array(value, fn, name)) from err
  if not (jnp.issubdtype(a.dtype, jnp.number) or a.dtype == jnp.bool_):
    raise TypeError(_not_an_array(value, fn, name))
  return a


def _holds_text_or_none(value: Any) -> bool:
  """None or a string, also inside nested lists and tuples (where jnp.asarray would
  read a string as a dtype name)."""
  if value is None or isinstance(value, (str, bytes)):
    return True
  return isinstance(value, (list, tuple)) and any(_holds_text_or_none(v) for v in value)


def _not_an_array(value: Any, fn: str, name: str) -> str:
  text = repr(value)
  text = text if len(text) <= 60 else text[:57] + "..."
  return (
    f"{fn}: {name} must be an array (a jax or numpy array, a number or nested "
    f"sequences of numbers), got {text} of type {type(value).__name__}."
  )


def pool_input(inputs: Any, fn: str, *, integers: bool = False) -> jax.Array:
  """`inputs` as a jax array of a floating (or, if allowed, integer) dtype.

  Raises:
    TypeError: naming `fn`, for non-arrays (`as_array`) and the dtype received.
  """
  x = as_array(inputs, fn, "inputs")
  ok = jnp.issubdtype(x.dtype, jnp.floating) or (integers and jnp.issubdtype(x.dtype, jnp.integer))
  if not ok:
    allowed = "a floating or integer" if integers else "a floating"
    raise TypeError(f"{fn}: inputs must have {allowed} dtype, got {x.dtype}.")
  return x


def mean_dtype(dtype):
  """Dtype of a mean: floats keep theirs, integers give the default float (as Flax)."""
  return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.result_type(float)


def float32_by_bits(x: jax.Array) -> jax.Array:
  """bfloat16 `x` in float32 by moving its bits (exact); other dtypes converted to
  their `compute_dtype` by `astype`.

  Not a `convert` op: where a derivative rule converts the input that the forward
  pass converts too, XLA:CPU merges the two converts into one array shared by the
  forward's reduction and the backward's loop, and writes it to memory (case:
  bfloat16 global_lp_pool forward+backward on a 2d_3x3s2_same input).
  """
  if x.dtype != jnp.bfloat16:
    return x.astype(compute_dtype(x.dtype))
  bits = jax.lax.bitcast_convert_type(x, jnp.uint16).astype(jnp.uint32) << 16
  return jax.lax.bitcast_convert_type(bits, jnp.float32)


def selected_back(y: jax.Array, dtype) -> jax.Array:
  """float32 `y` whose values were selected from `dtype` values (a max or a min, not
  a sum), in `dtype`.

  For bfloat16 the high half of the bits, exactly the value selected: a float32
  holding a bfloat16 value has zero low bits, and every NaN that max/min return
  (one of their operands, or the default quiet NaN) keeps a nonzero mantissa bit in
  the high half. XLA:CPU rounds float32 to bfloat16 in software, which taking the
  bits skips (benchmark case: max_pool 2d_2x2s2 bfloat16 forward). Other dtypes:
  `astype`.
  """
  if dtype != jnp.bfloat16 or y.dtype != jnp.float32:
    return y.astype(dtype)
  high = jax.lax.bitcast_convert_type(y, jnp.uint32) >> 16
  return jax.lax.bitcast_convert_type(high.astype(jnp.uint16), jnp.bfloat16)
