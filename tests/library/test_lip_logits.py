"""The LIP logit network's instance norm equals flax's GroupNorm(num_groups=C)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpool import linen as jl
from jaxpool import nnx as jn
from jaxpool._src.layers import modules


@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (3, 7, 2), (1, 3, 2, 2, 4)])
def test_instance_norm_matches_groupnorm_values_and_grads(shape):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=shape) * 3 + 1, jnp.float32)
  c = shape[-1]
  gn = nnx.GroupNorm(c, num_groups=c, rngs=nnx.Rngs(0))
  gn.scale[...] = jnp.asarray(rng.normal(size=c), jnp.float32)
  gn.bias[...] = jnp.asarray(rng.normal(size=c), jnp.float32)
  w = jnp.asarray(rng.normal(size=shape), jnp.float32)
  ref = lambda x, s, b: jnp.sum(jnp.sin(_with(gn, s, b)(x)) * w)
  new = lambda x, s, b: jnp.sum(jnp.sin(modules.instance_norm(x, s, b, gn.epsilon)) * w)
  args = (x, gn.scale[...], gn.bias[...])
  np.testing.assert_allclose(modules.instance_norm(x, *args[1:]), gn(x), rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.grad(new, argnums=(0, 1, 2))(*args), jax.grad(ref, argnums=(0, 1, 2))(*args)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def _with(gn, scale, bias):
  gn = nnx.clone(gn)
  gn.scale = nnx.Param(scale)
  gn.bias = nnx.Param(bias)
  return gn


def test_linen_and_nnx_logits_keep_groupnorm_parameters_and_values():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 6, 6, 4)), jnp.float32)
  pool = jl.LIPPool((2, 2), 2)
  params = pool.init(jax.random.key(0), x)["params"]
  want = jax.tree.map(jnp.shape, nn.GroupNorm(num_groups=4).init(jax.random.key(0), x)["params"])
  assert jax.tree.map(jnp.shape, params["logits"]["norm"]) == want
  # Same logits as conv -> flax GroupNorm -> 12 sigmoid with the same parameters.
  h = nn.Conv(4, (3, 3), padding="SAME", use_bias=False).apply(
    {"params": params["logits"]["conv"]}, x
  )
  h = nn.GroupNorm(num_groups=4).apply({"params": params["logits"]["norm"]}, h)
  want = 12 * jax.nn.sigmoid(h)
  got = jl.LIPLogits(2).apply({"params": params["logits"]}, x)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  m = jn.LIPPool((2, 2), 2, num_features=4, rngs=nnx.Rngs(0))
  assert isinstance(m.logits.norm, nnx.GroupNorm)
  want = 12 * jax.nn.sigmoid(m.logits.norm(m.logits.conv(x)))
  np.testing.assert_allclose(m.logits(x), want, rtol=1e-5, atol=1e-5)


def test_linen_lip_pool_hands_its_convolution_to_flax_conv():
  """conv_general_dilated reaches nn.Conv (called, same parameter tree and values)."""
  calls = []

  def conv(*args, **kwargs):
    calls.append(args[0].shape)
    return jax.lax.conv_general_dilated(*args, **kwargs)

  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 6, 6, 4)), jnp.float32)
  params = jl.LIPPool((2, 2), 2).init(jax.random.key(0), x)
  pool = jl.LIPPool((2, 2), 2, conv_general_dilated=conv)
  assert jax.tree.map(jnp.shape, pool.init(jax.random.key(0), x)) == jax.tree.map(jnp.shape, params)
  calls.clear()
  np.testing.assert_array_equal(pool.apply(params, x), jl.LIPPool((2, 2), 2).apply(params, x))
  assert calls == [(2, 6, 6, 4)]
