"""One small call of every public function of jaxpool, its learnable float arguments
(p, alpha, gates, logits) passed as arrays after the input: the table shared by the
fixed-call tests of test_fuzz.py, the export test and the forward-mode test.

The window pools take overlapping 3x3/2 SAME windows, which reach the per-backend
derivative rules (tiling windows skip most of them). Adding a public function is
one entry in `CALLS`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

import jaxpool

W, S, PAD = (3, 3), (2, 2), "SAME"
KEY = jax.random.key(0)


@dataclasses.dataclass(frozen=True)
class Call:
  fn: Callable  # fn(x, *learnable) -> an array
  learnable: tuple = ()  # the float arguments one may differentiate, as numpy arrays

  def __call__(self, x):
    return self.fn(x, *self.learnable)


def _f32(*values):
  return tuple(np.asarray(v, np.float32) for v in values)


def _weights(seed, shape):
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def _unpool(x):
  indices = np.zeros(np.shape(x), np.int32) if np.ndim(x) else x
  return jaxpool.max_unpool(x, indices, (5, 5))


CALLS: dict[str, Call] = {
  "max_pool": Call(lambda x: jaxpool.max_pool(x, W, S, PAD)),
  "min_pool": Call(lambda x: jaxpool.min_pool(x, W, S, PAD)),
  "sum_pool": Call(lambda x: jaxpool.sum_pool(x, W, S, PAD)),
  "avg_pool": Call(lambda x: jaxpool.avg_pool(x, W, S, PAD)),
  "max_pool_with_argmax": Call(lambda x: jaxpool.max_pool_with_argmax(x, W, S, PAD)[0]),
  "lp_pool": Call(lambda x, p: jaxpool.lp_pool(x, p, W, S, PAD), _f32(3.0)),
  "l2_pool": Call(lambda x: jaxpool.l2_pool(x, W, S, PAD)),
  "stochastic_pool": Call(lambda x: jaxpool.stochastic_pool(x, W, S, PAD, key=KEY)),
  "mixed_pool": Call(lambda x, a: jaxpool.mixed_pool(x, a, W, S, PAD), _f32(0.3)),
  "gated_pool": Call(lambda x, g: jaxpool.gated_pool(x, g, W, S, PAD), (_weights(1, (3, 3, 1)),)),
  "tree_pool": Call(
    lambda x, leaves, gates: jaxpool.tree_pool(x, leaves, gates, W, S, PAD),
    (_weights(2, (2, 3, 3, 1)), _weights(3, (1, 3, 3, 1))),
  ),
  "lip_pool": Call(lambda x, logits: jaxpool.lip_pool(x, logits, W, S, PAD), _f32([[0.5]])),
  "soft_pool": Call(lambda x: jaxpool.soft_pool(x, W, S, PAD)),
  "adaptive_avg_pool": Call(lambda x: jaxpool.adaptive_avg_pool(x, 3)),
  "adaptive_max_pool": Call(lambda x: jaxpool.adaptive_max_pool(x, 3)),
  "global_avg_pool": Call(lambda x: jaxpool.global_avg_pool(x)),
  "global_max_pool": Call(lambda x: jaxpool.global_max_pool(x)),
  "global_lp_pool": Call(lambda x, p: jaxpool.global_lp_pool(x, p), _f32(2.5)),
  "gem_pool": Call(lambda x, p: jaxpool.gem_pool(x, p), _f32(3.0)),
  "spatial_pyramid_pool": Call(lambda x: jaxpool.spatial_pyramid_pool(x, (1, 2))),
  "fractional_max_pool": Call(lambda x: jaxpool.fractional_max_pool(x, (2, 2), 3, key=KEY)),
  "blur_pool": Call(lambda x: jaxpool.blur_pool(x, 2)),
  "pool": Call(lambda x: jaxpool.pool(x, -jnp.inf, jnp.logaddexp, W, S, PAD)),
  "window_pool": Call(lambda x: jaxpool.window_pool(jnp.max, x, W, S, PAD)),
  "max_unpool": Call(_unpool),
}


def inputs(shape=(2, 5, 5, 3), dtype=np.float32, seed=0) -> np.ndarray:
  """Normal values: no ties, no zeros (the kinks of max and |x| stay away)."""
  return np.random.default_rng(seed).normal(size=shape).astype(dtype)
