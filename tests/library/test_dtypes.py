"""dtypes: the input checks' dtype rules and bfloat16 widened and narrowed by bits."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxpool._src.machinery import dtypes


def test_float32_by_bits_is_astype_for_every_bfloat16():
  # All 65536 bit patterns: zeros of both signs, subnormals, infinities, NaNs.
  bits = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
  x = jnp.asarray(bits).view(jnp.bfloat16)
  got, want = np.asarray(dtypes.float32_by_bits(x)), np.asarray(x.astype(jnp.float32))
  assert got.dtype == np.float32
  nan = np.isnan(want)
  np.testing.assert_array_equal(np.isnan(got), nan)
  np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))


def test_float32_by_bits_other_dtypes_as_compute_dtype():
  for dtype, want in ((jnp.float16, jnp.float32), (jnp.float32, jnp.float32)):
    x = jnp.asarray([1.5, -2.0], dtype)
    got = dtypes.float32_by_bits(x)
    assert got.dtype == want
    np.testing.assert_array_equal(got, [1.5, -2.0])


def test_selected_back_returns_every_bfloat16_bit_pattern():
  """Every bfloat16 (NaN payloads, infinities, -0.0, subnormals) in float32 comes back
  bit for bit, also through a jitted max, as `astype` would give it."""
  patterns = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
  x = jnp.asarray(patterns.view(jnp.bfloat16))
  wide = x.astype(jnp.float32)  # an independent widening: XLA's convert
  back = dtypes.selected_back(wide, jnp.bfloat16)
  assert back.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(back).view(np.uint16), patterns)
  # through a max against -inf, which returns its NaN operand or a quiet NaN (and,
  # where a backend flushes subnormals, may flush those: left out here)
  maxed = jax.jit(lambda w: dtypes.selected_back(jnp.maximum(w, -jnp.inf), jnp.bfloat16))(wide)
  values = np.asarray(x, np.float32)
  is_nan = np.isnan(values)
  assert np.isnan(np.asarray(maxed, np.float32))[is_nan].all()
  kept = ~is_nan & ((np.abs(values) >= jnp.finfo(jnp.bfloat16).tiny) | (values == 0))
  np.testing.assert_array_equal(np.asarray(maxed)[kept].view(np.uint16), patterns[kept])


def test_selected_back_is_astype_for_other_dtypes():
  y = jnp.asarray([1.5, -2.25, np.nan], jnp.float32)
  for dtype in (jnp.float16, jnp.float32):
    got = dtypes.selected_back(y, dtype)
    assert got.dtype == dtype
    np.testing.assert_array_equal(np.asarray(got), np.asarray(y.astype(dtype)))
