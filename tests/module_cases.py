"""The module test table shared by tests/library/test_linen.py and tests/library/test_nnx.py.

Each case names a registry entry, its constructor options and the expected output
computed *without the module*: the public jaxpool function called with the
parameters read back from the module (or closed forms of them), so a module that
forwards a wrong option, mis-shapes or mis-transforms a parameter fails.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxpool

WIN = dict(window_shape=(2, 2), strides=(2, 2))
SHAPE = (2, 6, 6, 3)  # (batch, H, W, C): output (2, 3, 3, 3) with WIN


def inputs(seed: int = 0, shape=SHAPE) -> jax.Array:
  return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def positive_inputs(seed: int = 0, shape=SHAPE) -> jax.Array:
  return jax.random.uniform(jax.random.key(seed), shape, jnp.float32, 0.1, 2.0)


@dataclasses.dataclass(frozen=True)
class Case:
  id: str
  name: str  # registry name
  options: dict
  expected: Callable[[Any, dict], Any]  # (x, params pure dict) -> output
  needs: tuple[str, ...] = ()  # jaxpool functions that the case calls
  learnable: bool = False
  positive: bool = False  # feed positive inputs (GeM clamps at eps)

  @property
  def marks(self):
    missing = [f for f in self.needs if not hasattr(jaxpool, f)]
    return [
      pytest.mark.skipif(bool(missing), reason=f"jaxpool.{missing} not merged into this branch yet")
    ]


def _sig(v):
  return jax.nn.sigmoid(jnp.asarray(v))


def lip_logits_reference(x, p, coeff=12.0):
  """Gao et al.'s simplified LIP logits from the parameters, without Flax:
  bias-free SAME conv, per-(example, channel) instance norm (eps 1e-6, as
  GroupNorm's default), affine, coeff * sigmoid."""
  k = p["logits"]["conv"]["kernel"]
  h = lax.conv_general_dilated(
    x,
    k,
    (1, 1),
    "SAME",
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    precision=lax.Precision.HIGHEST,
  )
  mean = h.mean(axis=(1, 2), keepdims=True)
  var = ((h - mean) ** 2).mean(axis=(1, 2), keepdims=True)
  h = (h - mean) / jnp.sqrt(var + 1e-6)
  h = h * p["logits"]["norm"]["scale"] + p["logits"]["norm"]["bias"]
  return coeff * jax.nn.sigmoid(h)


def _c(id, name, options, expected, needs, **kw):
  return Case(id, name, options, expected, tuple(needs), **kw)


CASES = [
  _c("max", "max", WIN, lambda x, p: jaxpool.max_pool(x, (2, 2), (2, 2)), ["max_pool"]),
  _c(
    "max_pad_dil",
    "max",
    dict(window_shape=(2, 2), padding=1, dilation=(2, 1), ceil_mode=True),
    lambda x, p: jaxpool.max_pool(x, (2, 2), None, 1, dilation=(2, 1), ceil_mode=True),
    ["max_pool"],
  ),
  _c("min", "min", WIN, lambda x, p: jaxpool.min_pool(x, (2, 2), (2, 2)), ["min_pool"]),
  _c("sum", "sum", WIN, lambda x, p: jaxpool.sum_pool(x, (2, 2), (2, 2)), ["sum_pool"]),
  _c("avg", "avg", WIN, lambda x, p: jaxpool.avg_pool(x, (2, 2), (2, 2)), ["avg_pool"]),
  _c(
    "avg_nopad",
    "avg",
    dict(window_shape=(3, 3), strides=2, padding=1, count_include_pad=False),
    lambda x, p: jaxpool.avg_pool(x, (3, 3), 2, 1, False),
    ["avg_pool"],
  ),
  _c(
    "avg_nchw",
    "avg",
    dict(window_shape=(2,), strides=(2,), channel_axis=1),
    lambda x, p: jaxpool.avg_pool(x, (2,), (2,), channel_axis=1),
    ["avg_pool"],
  ),
  _c(
    "lp", "lp", dict(WIN, p=3.0), lambda x, p: jaxpool.lp_pool(x, 3.0, (2, 2), (2, 2)), ["lp_pool"]
  ),
  _c(
    "lp_learn",
    "lp",
    dict(WIN, p=3.0, learn_p=True, mean=True),
    lambda x, p: jaxpool.lp_pool(x, 1 + jax.nn.softplus(p["raw_p"]), (2, 2), (2, 2), mean=True),
    ["lp_pool"],
    learnable=True,
  ),
  _c("l2", "l2", WIN, lambda x, p: jaxpool.l2_pool(x, (2, 2), (2, 2)), ["l2_pool"]),
  _c(
    "l2_mean",
    "l2",
    dict(WIN, mean=True),
    lambda x, p: jaxpool.l2_pool(x, (2, 2), (2, 2), mean=True),
    ["l2_pool"],
  ),
  _c(
    "gem",
    "gem",
    {},
    lambda x, p: jaxpool.gem_pool(x, p["p"]),
    ["gem_pool"],
    learnable=True,
    positive=True,
  ),
  _c(
    "gem_fixed",
    "gem",
    dict(p=2.5, learn_p=False, keepdims=True),
    lambda x, p: jaxpool.gem_pool(x, 2.5, keepdims=True),
    ["gem_pool"],
    positive=True,
  ),
  _c(
    "mixed_layer",
    "mixed",
    dict(WIN),
    lambda x, p: jaxpool.mixed_pool(x, _sig(p["alpha_logit"]), (2, 2), (2, 2)),
    ["mixed_pool"],
    learnable=True,
  ),
  _c(
    "mixed_pad",
    "mixed",
    dict(window_shape=(3, 3), strides=2, padding=1, count_include_pad=False, alpha_init=0.75),
    lambda x, p: jaxpool.mixed_pool(
      x, _sig(p["alpha_logit"]), (3, 3), 2, 1, count_include_pad=False
    ),
    ["mixed_pool"],
    learnable=True,
  ),
  _c(
    "mixed_channel",
    "mixed",
    dict(WIN, granularity="channel", alpha_init=0.25),
    lambda x, p: jaxpool.mixed_pool(x, _sig(p["alpha_logit"]), (2, 2), (2, 2)),
    ["mixed_pool"],
    learnable=True,
  ),
  _c(
    "mixed_region",
    "mixed",
    dict(WIN, granularity="region", region_shape=(3, 3)),
    lambda x, p: jaxpool.mixed_pool(x, _sig(p["alpha_logit"]), (2, 2), (2, 2)),
    ["mixed_pool"],
    learnable=True,
  ),
  _c(
    "mixed_region_nchw",
    "mixed",
    dict(window_shape=(2,), strides=(2,), granularity="region", region_shape=(4,), channel_axis=1),
    lambda x, p: jaxpool.mixed_pool(x, _sig(p["alpha_logit"]), (2,), (2,), channel_axis=1),
    ["mixed_pool"],
    learnable=True,
  ),
  _c(
    "gated_layer",
    "gated",
    dict(WIN),
    lambda x, p: jaxpool.gated_pool(x, p["gate"], (2, 2), (2, 2)),
    ["gated_pool"],
    learnable=True,
  ),
  _c(
    "gated_channel",
    "gated",
    dict(window_shape=(3, 3), strides=2, padding=1, granularity="channel", count_include_pad=False),
    lambda x, p: jaxpool.gated_pool(x, p["gate"], (3, 3), 2, 1, count_include_pad=False),
    ["gated_pool"],
    learnable=True,
  ),
  _c(
    "tree",
    "tree",
    dict(window_shape=(3, 3), strides=(3, 3)),
    lambda x, p: jaxpool.tree_pool(x, p["leaves"], p["gates"], (3, 3), (3, 3)),
    ["tree_pool"],
    learnable=True,
  ),
  _c(
    "tree_channel3",
    "tree",
    dict(WIN, levels=3, granularity="channel"),
    lambda x, p: jaxpool.tree_pool(x, p["leaves"], p["gates"], (2, 2), (2, 2)),
    ["tree_pool"],
    learnable=True,
  ),
  _c("soft", "soft", WIN, lambda x, p: jaxpool.soft_pool(x, (2, 2), (2, 2)), ["soft_pool"]),
  _c(
    "lip",
    "lip",
    dict(WIN),
    lambda x, p: jaxpool.lip_pool(x, lip_logits_reference(x, p), (2, 2), (2, 2)),
    ["lip_pool"],
    learnable=True,
  ),
  _c(
    "adaptive_avg",
    "adaptive_avg",
    dict(output_size=(4, 3)),
    lambda x, p: jaxpool.adaptive_avg_pool(x, (4, 3)),
    ["adaptive_avg_pool"],
  ),
  _c(
    "adaptive_max",
    "adaptive_max",
    dict(output_size=(4, None)),
    lambda x, p: jaxpool.adaptive_max_pool(x, (4, None)),
    ["adaptive_max_pool"],
  ),
  _c(
    "adaptive_max_idx",
    "adaptive_max",
    dict(output_size=3, return_indices=True, channel_axis=1),
    lambda x, p: jaxpool.adaptive_max_pool(x, 3, return_indices=True, channel_axis=1),
    ["adaptive_max_pool"],
  ),
  _c("global_avg", "global_avg", {}, lambda x, p: jaxpool.global_avg_pool(x), ["global_avg_pool"]),
  _c(
    "global_max",
    "global_max",
    dict(keepdims=True),
    lambda x, p: jaxpool.global_max_pool(x, keepdims=True),
    ["global_max_pool"],
  ),
  _c(
    "global_lp",
    "global_lp",
    dict(p=3.0),
    lambda x, p: jaxpool.global_lp_pool(x, 3.0),
    ["global_lp_pool"],
  ),
  _c(
    "spp",
    "spp",
    dict(levels=(1, 2), mode="avg"),
    lambda x, p: jaxpool.spatial_pyramid_pool(x, (1, 2), mode="avg"),
    ["spatial_pyramid_pool"],
  ),
  _c(
    "max_argmax",
    "max_argmax",
    WIN,
    lambda x, p: jaxpool.max_pool_with_argmax(x, (2, 2), (2, 2)),
    ["max_pool_with_argmax"],
  ),
  _c("blur", "blur", dict(strides=2), lambda x, p: jaxpool.blur_pool(x, 2), ["blur_pool"]),
  _c(
    "blur_avg5",
    "blur",
    dict(strides=(2, 1), filter_size=5, pool="avg", window_shape=(3, 3), padding="zero"),
    lambda x, p: jaxpool.blur_pool(
      x, (2, 1), filter_size=5, pool="avg", window_shape=(3, 3), padding="zero"
    ),
    ["blur_pool"],
  ),
]

# Cases run in deterministic (eval) mode: the random modules' eval output.
EVAL_CASES = [
  _c(
    "stochastic_eval",
    "stochastic",
    dict(WIN),
    lambda x, p: jaxpool.stochastic_pool(x, (2, 2), (2, 2), deterministic=True),
    ["stochastic_pool"],
    positive=True,
  ),
  _c(
    "mixed_stochastic_eval",
    "mixed",
    dict(WIN, stochastic=True),
    # Test-time rule: alpha = 1/2 (closed form, with the classic pools).
    lambda x, p: (
      0.5 * jaxpool.max_pool(x, (2, 2), (2, 2)) + 0.5 * jaxpool.avg_pool(x, (2, 2), (2, 2))
    ),
    ["mixed_pool"],
  ),
  _c(
    "fractional_eval",
    "fractional",
    dict(window_shape=(2, 2), output_size=(4, 4)),
    lambda x, p: jaxpool.fractional_max_pool(x, (2, 2), (4, 4), key=jax.random.key(0)),
    ["fractional_max_pool"],
  ),
  _c(
    "fractional_eval_idx",
    "fractional",
    dict(
      window_shape=(3, 2),
      output_ratio=(0.5, 0.75),
      overlapping=True,
      return_indices=True,
      eval_seed=3,
    ),
    lambda x, p: jaxpool.fractional_max_pool(
      x,
      (3, 2),
      output_ratio=(0.5, 0.75),
      overlapping=True,
      return_indices=True,
      key=jax.random.key(3),
    ),
    ["fractional_max_pool"],
  ),
]

# Random modules in training mode: (id, name, options, function, function kwargs).
RANDOM_CASES = [
  ("stochastic", "stochastic", dict(WIN), "stochastic_pool", ((2, 2), (2, 2)), {}),
  (
    "fractional",
    "fractional",
    dict(window_shape=(2, 2), output_size=(4, 4)),
    "fractional_max_pool",
    ((2, 2), (4, 4)),
    {},
  ),
]


def params_of_case(cases):
  return [pytest.param(c, id=c.id, marks=c.marks) for c in cases]


def input_for(case: Case, seed: int = 0):
  if case.id in ("avg_nchw", "mixed_region_nchw"):
    return inputs(seed, (2, 3, 8))
  if case.id == "adaptive_max_idx":
    return inputs(seed, (2, 3, 7, 5))
  return positive_inputs(seed) if case.positive else inputs(seed)


def tree_allclose(a, b, **kw):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb)
  for u, v in zip(la, lb):
    np.testing.assert_allclose(np.asarray(u), np.asarray(v), **kw)
