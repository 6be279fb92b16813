"""The `key` argument of the random pools (stochastic_pool, fractional_max_pool)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def random_key(key: Any, fn: str) -> jax.Array:
  """`key` as one typed `jax.random` key, or a `TypeError`/`ValueError` naming it.

  Accepted: a typed key (`jax.random.key(seed)`), or the raw uint32 data of one key
  of the default implementation (`jax.random.PRNGKey(seed)`). One key, not a batch:
  one key already draws independently for every window and example; `vmap` over a
  batch of keys to draw with a key per example.
  """
  if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    if key.shape != ():
      raise ValueError(
        f"{fn}: key must be one key (shape ()), got a batch of keys of shape "
        f"{key.shape}; vmap over the keys to use one per example."
      )
    return key
  raw_shape = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))).shape
  allowed = (
    f"a jax.random key (jax.random.key(seed)) or the uint32 data of one "
    f"(jax.random.PRNGKey(seed), shape {raw_shape})"
  )
  if not isinstance(key, (jax.Array, np.ndarray)):
    raise TypeError(f"{fn}: key must be {allowed}, got {key!r}.")
  if key.dtype != np.uint32 or key.shape != raw_shape:
    raise TypeError(
      f"{fn}: key must be {allowed}, got an array of dtype {key.dtype} and shape {key.shape}."
    )
  return jax.random.wrap_key_data(jnp.asarray(key))
