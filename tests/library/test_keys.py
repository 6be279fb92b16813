"""The `key` argument of stochastic_pool and fractional_max_pool (keys.random_key)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpool
from jaxpool._src.machinery import keys

X = jnp.arange(2 * 6 * 6 * 3, dtype=jnp.float32).reshape(2, 6, 6, 3) % 7

POOLS = {
  "stochastic_pool": lambda x, key: jaxpool.stochastic_pool(x, (2, 2), 2, key=key),
  "fractional_max_pool": lambda x, key: jaxpool.fractional_max_pool(
    x, (2, 2), output_size=4, key=key
  ),
}


@pytest.mark.parametrize("name", POOLS)
@pytest.mark.parametrize(
  "bad,received",
  [
    (0, "got 0."),
    (1.5, "got 1.5."),
    ([0, 1], "got [0, 1]."),
    (jnp.zeros(2, jnp.float32), "dtype float32 and shape (2,)"),
    (jnp.zeros(3, jnp.uint32), "dtype uint32 and shape (3,)"),
    (jnp.zeros((2, 2), jnp.uint32), "dtype uint32 and shape (2, 2)"),  # raw key batch
  ],
)
def test_a_bad_key_raises_naming_the_argument_and_what_it_got(name, bad, received):
  with pytest.raises(TypeError) as info:
    POOLS[name](X, bad)
  message = str(info.value)
  assert message.startswith(f"{name}: key must be a jax.random key")
  assert received in message


@pytest.mark.parametrize("name", POOLS)
def test_a_batch_of_typed_keys_raises_and_points_to_vmap(name):
  batch = jax.random.split(jax.random.key(0), 2)
  with pytest.raises(ValueError, match=rf"{name}: key must be one key .*shape \(2,\).*vmap"):
    POOLS[name](X, batch)
  # ... and vmap over the same keys draws once per key, as calls one by one do
  # (both jitted: one compiled program each instead of op-by-op runs).
  together = jax.jit(jax.vmap(lambda k: POOLS[name](X, k)))(batch)
  one = jax.jit(lambda k: POOLS[name](X, k))
  for i in range(2):
    np.testing.assert_array_equal(together[i], one(batch[i]))


@pytest.mark.parametrize("name", POOLS)
def test_raw_and_typed_keys_of_one_seed_draw_the_same(name):
  typed = POOLS[name](X, jax.random.key(5))
  np.testing.assert_array_equal(POOLS[name](X, jax.random.PRNGKey(5)), typed)
  np.testing.assert_array_equal(POOLS[name](X, np.asarray(jax.random.PRNGKey(5))), typed)
  np.testing.assert_array_equal(jax.jit(POOLS[name])(X, jax.random.key(5)), typed)
  # different seeds draw differently somewhere (6 x 6 x 3 x 2 values, ties aside)
  assert not np.array_equal(
    POOLS[name](X + jnp.arange(X.size).reshape(X.shape) * 1e-3, jax.random.key(6)),
    POOLS[name](X + jnp.arange(X.size).reshape(X.shape) * 1e-3, jax.random.key(5)),
  )


def test_random_key_returns_one_typed_key():
  key = keys.random_key(jax.random.PRNGKey(3), "f")
  assert jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ()
  np.testing.assert_array_equal(jax.random.key_data(key), jax.random.PRNGKey(3))
  typed = jax.random.key(3)
  assert keys.random_key(typed, "f") is typed
