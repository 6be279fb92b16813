"""dtypes: the input checks' dtype rules and the bfloat16 widening by bits."""

import jax.numpy as jnp
import numpy as np

from jaxpool._src import dtypes


def test_float32_by_bits_is_astype_for_every_bfloat16():
  # All 65536 bit patterns: zeros of both signs, subnormals, infinities, NaNs.
  bits = np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16)
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
