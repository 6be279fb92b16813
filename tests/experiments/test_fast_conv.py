"""experiments.fast_conv: the models' convolution equals lax.conv_general_dilated,
values and gradients (its kernel and input gradients are written differently)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from experiments import fast_conv as conv

DIMS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


@pytest.mark.parametrize(
  "shape,kernel,padding",
  [
    ((2, 9, 3), (3, 3, 4), "SAME"),
    ((2, 6, 5, 3), (3, 3, 3, 2), "SAME"),
    ((2, 6, 5, 3), (2, 3, 3, 2), "VALID"),
    ((1, 6, 5, 2), (3, 2, 2, 3), ((2, 0), (1, 1))),
    ((1, 4, 5, 3, 2), (3, 3, 3, 2, 2), "SAME"),
    ((2, 9, 9, 1), (3, 3, 1, 4), "VALID"),  # one input channel: the patches product
    ((2, 7, 6, 1), (4, 3, 1, 2), "SAME"),
    ((3, 10, 1), (4, 1, 5), ((1, 2),)),
  ],
)
def test_values_and_gradients_match_lax(shape, kernel, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  k = jnp.asarray(rng.normal(size=kernel), jnp.float32)
  dims = DIMS[len(shape) - 2]
  ones = (1,) * (len(shape) - 2)
  ref = lambda x, k: lax.conv_general_dilated(x, k, ones, padding, dimension_numbers=dims)
  new = lambda x, k: conv.conv_general_dilated(x, k, ones, padding, dimension_numbers=dims)
  np.testing.assert_allclose(new(x, k), ref(x, k), rtol=1e-5, atol=1e-5)
  g = jnp.asarray(rng.normal(size=ref(x, k).shape), jnp.float32)
  loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)) * g)
  want = jax.grad(loss(ref), argnums=(0, 1))(x, k)
  got = jax.jit(jax.grad(loss(new), argnums=(0, 1)))(x, k)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
  "shape,kernel,padding",
  [
    ((3, 9, 8, 1), (3, 3, 1, 5), "VALID"),  # one input channel: bias from the patches product
    ((2, 7, 6, 1), (2, 3, 1, 2), ((1, 0), (2, 1))),
    ((2, 6, 5, 3), (3, 3, 3, 2), "SAME"),
    ((3, 10, 1), (4, 1, 3), "SAME"),
  ],
)
def test_biased_conv_matches_lax_plus_bias(shape, kernel, padding):
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=shape), jnp.float32)
  k = jnp.asarray(rng.normal(size=kernel), jnp.float32)
  b = jnp.asarray(rng.normal(size=kernel[-1:]), jnp.float32)
  dims = DIMS[len(shape) - 2]
  ones = (1,) * (len(shape) - 2)
  ref = lambda x, k, b: lax.conv_general_dilated(x, k, ones, padding, dimension_numbers=dims) + b
  np.testing.assert_allclose(conv.biased_conv(x, k, b, padding), ref(x, k, b), rtol=1e-5, atol=1e-5)
  g = jnp.asarray(rng.normal(size=ref(x, k, b).shape), jnp.float32)
  loss = lambda f: lambda *a: jnp.sum(jnp.sin(f(*a)) * g)
  want = jax.grad(loss(ref), argnums=(0, 1, 2))(x, k, b)
  got = jax.jit(
    jax.grad(loss(lambda x, k, b: conv.biased_conv(x, k, b, padding)), argnums=(0, 1, 2))
  )(x, k, b)
  for a, w in zip(got, want):
    np.testing.assert_allclose(a, w, rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match="bias"):
    conv.biased_conv(x, k, b[:1] if kernel[-1] > 1 else jnp.ones(2), padding)


def test_inside_scan_and_fallback_for_strides():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, 6, 6, 2)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(3, 3, 2, 2)), jnp.float32)
  dims = DIMS[2]

  def descend(f):
    def body(k, _):
      return k - 0.1 * jax.grad(lambda k: jnp.sum(f(x, k) ** 2))(k), None

    return jax.jit(lambda k: lax.scan(body, k, None, length=3)[0])(k)

  for strides in [(1, 1), (2, 1)]:  # (2, 1) takes lax's own path
    ref = descend(
      lambda x, k: lax.conv_general_dilated(x, k, strides, "SAME", dimension_numbers=dims)
    )
    new = descend(
      lambda x, k: conv.conv_general_dilated(x, k, strides, "SAME", dimension_numbers=dims)
    )
    np.testing.assert_allclose(new, ref, rtol=1e-4, atol=1e-4)
