"""experiments/models.py: shapes, parameter counts (closed forms), the pool slot, the
custom-VJP convolution against lax's own autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("flax")
from flax import nnx  # noqa: E402

from experiments import models  # noqa: E402
from jaxpool import registry  # noqa: E402


def count(model):
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize("model", ["seed_cnn", "zeiler_fergus"])
def test_every_pool_starts_from_the_same_weights(model):
  """Same seed: the conv and dense layers start equal whatever the pool, also for
  pools with parameters of their own (a study's pools differ per seed in the pool)."""

  def weights(pool):
    m = models.build_model(model, pool=pool, pool_options={}, rngs=nnx.Rngs(params=3, pooling=4))
    state = nnx.to_pure_dict(nnx.state(m, nnx.Param))
    state.pop("pool", None)
    state.pop("pools", None)
    return jax.tree.leaves(state)

  reference = weights("max")
  for pool in ("gated", "tree", "mixed", "stochastic", "lip"):
    got = weights(pool)
    assert len(got) == len(reference)
    for a, b in zip(got, reference):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_seed_cnn_shapes_and_parameter_count():
  m = models.build_model("seed_cnn", pool="max", pool_options={}, rngs=nnx.Rngs(0))
  assert m(jnp.zeros((3, 28, 28, 1))).shape == (3, 10)
  # conv 3*3*1*32+32, dense 13*13*32*128+128, dense 128*10+10 (Keras: 693,962).
  assert count(m) == (9 * 32 + 32) + (13 * 13 * 32 * 128 + 128) + (128 * 10 + 10)


def test_zeiler_fergus_shapes_and_parameter_count():
  m = models.build_model("zeiler_fergus", pool="max", pool_options={}, rngs=nnx.Rngs(0))
  assert m(jnp.zeros((2, 28, 28, 1))).shape == (2, 10)
  # 28 -> 14 -> 7 -> 4 with 3x3 stride 2 SAME pools.
  convs = (25 * 1 * 64 + 64) + 2 * (25 * 64 * 64 + 64)
  assert count(m) == convs + (4 * 4 * 64 * 10 + 10)


def test_pool_options_change_the_flattened_size():
  m = models.build_model(
    "seed_cnn",
    pool="avg",
    pool_options={"window_shape": [3, 3], "strides": [3, 3]},
    rngs=nnx.Rngs(0),
  )
  assert m.dense1.in_features == 8 * 8 * 32  # floor((26 - 3) / 3) + 1 = 8.
  assert m(jnp.ones((1, 28, 28, 1))).shape == (1, 10)


def test_pool_slot_is_the_registry_module_and_computes_the_pool():
  m = models.build_model("seed_cnn", pool="max", pool_options={}, rngs=nnx.Rngs(0))
  assert type(m.pool) is type(registry.make("max", window_shape=(2, 2), strides=(2, 2)))
  x = np.random.default_rng(0).normal(size=(2, 26, 26, 32)).astype(np.float32)
  want = x.reshape(2, 13, 2, 13, 2, 32).max(axis=(2, 4))
  np.testing.assert_array_equal(np.asarray(m.pool(jnp.asarray(x))), want)


def test_unknown_pool_and_model_list_valid_names():
  with pytest.raises(ValueError, match="max"):
    models.build_model("seed_cnn", pool="nope", pool_options={}, rngs=nnx.Rngs(0))
  for name in ("max_argmax", "max_unpool"):
    if name in registry.names():
      with pytest.raises(ValueError, match="cannot fill a model's pooling slot"):
        models.build_model("seed_cnn", pool=name, pool_options={}, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="zeiler_fergus"):
    models.build_model("resnet", pool="max", pool_options={}, rngs=nnx.Rngs(0))


def test_bfloat16_compute_gives_float32_logits():
  m = models.build_model(
    "seed_cnn", pool="max", pool_options={}, compute_dtype="bfloat16", rngs=nnx.Rngs(0)
  )
  out = m(jnp.ones((1, 28, 28, 1)))
  assert out.dtype == jnp.float32
  assert m.conv.kernel[...].dtype == jnp.float32


def test_lip_pool_gets_the_fast_convolution_with_the_default_values_and_gradients():
  """make_pool hands LIP's logit network experiments.fast_conv: the parameters,
  values and gradients of jaxpool's default LIPPool (flax's own convolution)."""
  from experiments import fast_conv

  options = {"window_shape": (2, 2), "strides": (2, 2)}
  fast = models.make_pool("lip", options, num_features=3, rngs=nnx.Rngs(0))
  default = registry.make("lip", num_features=3, rngs=nnx.Rngs(0), **options)
  assert fast.logits.conv.conv_general_dilated is fast_conv.conv_general_dilated
  assert default.logits.conv.conv_general_dilated is jax.lax.conv_general_dilated
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 6, 3)), jnp.float32)
  loss = lambda m: jnp.sum(jnp.sin(m(x)))
  np.testing.assert_allclose(fast(x), default(x), rtol=1e-5, atol=1e-5)
  got, want = nnx.grad(loss)(fast), nnx.grad(loss)(default)
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
