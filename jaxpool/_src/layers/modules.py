"""Shapes, checks and parameter transforms shared by jaxpool.linen and jaxpool.nnx.

No pooling math lives here (that is the functions' job) and no Flax: only the
small decisions both module APIs must make identically, so that a Linen module and
its NNX twin hold parameters of the same shapes and meaning, draw keys from the same
rng stream and fail the same way without Flax.
"""

from __future__ import annotations

from typing import Any
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxpool._src.machinery import geometry

RNG_STREAM = "pooling"
"""The rng stream that every random pooling module draws its keys from."""

WINDOW_OPTIONS = ("window_shape", "strides", "padding", "dilation", "ceil_mode", "channel_axis")
"""The options of every window pool, in the order of the functions' signatures."""

MIXED_GRANULARITIES = ("layer", "channel", "region")
GATED_GRANULARITIES = ("layer", "channel")


class flax_required:  # lower case as contextlib.suppress: read as `with flax_required(...):`
  """Around a module's ``import flax...``: without Flax, an ImportError naming the extra.

  Flax is an optional extra, so `jaxpool.linen` / `jaxpool.nnx` turn the
  ModuleNotFoundError of a missing Flax (and only that one) into an ImportError that
  says how to install it, with the original error as its cause.
  """

  def __init__(self, module: str):
    self.module = module

  def __enter__(self) -> None:
    return None

  # Returns None, never True: pyright then knows no error is swallowed, and the
  # names imported inside the block are bound after it.
  def __exit__(self, kind, err, traceback) -> None:
    if isinstance(err, ModuleNotFoundError) and (err.name or "").partition(".")[0] == "flax":
      raise ImportError(
        f'{self.module} needs Flax, which is not installed: pip install "jaxpool[flax]"'
      ) from err


def options(module: Any, names: Sequence[str]) -> dict[str, Any]:
  """The module's attributes `names`, as keywords of its pooling function."""
  return {name: getattr(module, name) for name in names}


def window_geometry(module: Any, x, fn: str) -> geometry.PoolGeometry:
  """The geometry of a window pool module on `x` (its output's spatial shape, ...)."""
  return geometry.resolve(jnp.shape(x), **options(module, WINDOW_OPTIONS), fn=fn)


def check_num_features(module: str, num_features) -> None:
  if not geometry.is_int(num_features) or num_features < 1:
    raise ValueError(
      f"{module}: num_features must be a positive int (the number of channels of "
      f"the inputs, needed because NNX creates per-channel parameters eagerly), "
      f"got {num_features!r}."
    )


def check_choice(module: str, arg: str, value, allowed: Sequence[str]) -> None:
  if value not in allowed:
    raise ValueError(f"{module}: {arg} must be one of {tuple(allowed)}, got {value!r}.")


def p_from_raw(raw: jax.Array) -> jax.Array:
  """The learnable exponent of LpPool: ``p = 1 + softplus(raw) > 1``."""
  return 1.0 + jax.nn.softplus(raw)


def raw_from_p(p, module: str = "LpPool") -> float:
  """The raw value with ``1 + softplus(raw) = p``; p must be a finite float > 1."""
  if not isinstance(p, (int, float, np.floating, np.integer)) or not np.isfinite(p) or p <= 1:
    raise ValueError(
      f"{module}: with learn_p=True, p (the initial exponent) must be "
      f"a finite number > 1, got {p!r}."
    )
  return float(np.log(np.expm1(float(p) - 1.0)))


def logit(alpha, module: str = "MixedPool") -> float:
  """``log(a / (1 - a))``: the stored value of a mixing weight ``a`` in (0, 1)."""
  if not isinstance(alpha, (int, float, np.floating, np.integer)) or not 0 < alpha < 1:
    raise ValueError(f"{module}: alpha_init must be a number in (0, 1), got {alpha!r}.")
  return float(np.log(alpha / (1.0 - alpha)))


def mixed_alpha_shape(
  granularity: str, *, num_features, region_shape, channel_axis: int, module: str = "MixedPool"
) -> tuple[int, ...]:
  """Shape of MixedPool's alpha for the inputs' layout.

  "layer": ``()``; "channel": ``(C,)``; "region": one weight per output location
  shared by the channels, broadcastable to the output: ``(*region_shape, 1)``
  channels-last, ``region_shape`` channels-first. Checks the options it uses.
  """
  check_choice(module, "granularity", granularity, MIXED_GRANULARITIES)
  if granularity == "layer":
    return ()
  if granularity == "channel":
    check_num_features(module, num_features)
    return (int(num_features),)
  if region_shape is None:
    raise ValueError(
      f"{module}: granularity='region' needs region_shape (the output spatial shape), got None."
    )
  region = tuple(int(r) for r in region_shape)
  return region + (1,) if channel_axis == -1 else region


def gate_shape(
  window_shape: Sequence[int], granularity: str, num_features, module: str
) -> tuple[int, ...]:
  """``window_shape + (1,)`` shared by the channels, ``+ (C,)`` per channel; checks both."""
  check_choice(module, "granularity", granularity, GATED_GRANULARITIES)
  if granularity == "channel":
    check_num_features(module, num_features)
  c = 1 if granularity == "layer" else int(num_features)
  return tuple(int(w) for w in window_shape) + (c,)


def tree_leaves(levels, module: str = "TreePool") -> int:
  """Number of leaves of a complete binary tree with `levels` levels (>= 2)."""
  if not geometry.is_int(levels) or levels < 2:
    raise ValueError(
      f"{module}: levels must be an int >= 2 (2 levels: 2 leaves and 1 gate), got {levels!r}."
    )
  return 2 ** (int(levels) - 1)


def channels_last(x: jax.Array, channel_axis: int) -> jax.Array:
  """Move the channel axis to the end (the layout of flax's Conv/GroupNorm)."""
  return x if channel_axis == -1 else jnp.moveaxis(x, channel_axis, -1)


def channels_back(x: jax.Array, channel_axis: int) -> jax.Array:
  return x if channel_axis == -1 else jnp.moveaxis(x, -1, channel_axis)


def eval_key(seed: int) -> jax.Array:
  """The fixed key of FractionalMaxPool in evaluation (same windows every call)."""
  return jax.random.key(seed)


def yu_alpha(key: jax.Array) -> jax.Array:
  """Yu et al. 2014's random mixing weight: 0 or 1 with probability 1/2 each."""
  return jax.random.bernoulli(key, 0.5).astype(jnp.float32)


def instance_norm(
  x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float = 1e-6
) -> jax.Array:
  r"""Instance norm of channels-last `x` (N, *S, C): flax's GroupNorm, one group per channel.

  :math:`y = (x - \mu) / \sqrt{\sigma^2 + \epsilon} \cdot \text{scale} + \text{bias}`,
  :math:`\mu, \sigma^2` per image and channel over the spatial dims, with flax's
  fast variance :math:`\max(E[x^2] - \mu^2, 0)`, statistics in at least float32.
  The same values as ``GroupNorm(num_groups=C)`` (LIP's logit network); written as
  ``x * a + b`` with per-(image, channel) ``a, b``, which XLA:CPU runs faster,
  forward and backward, than flax's grouped reshape (case: LIP training step).
  """
  out_dtype = jnp.result_type(x, scale, bias)
  dtype = jnp.promote_types(x.dtype, jnp.float32)
  h = x.astype(dtype)
  axes = tuple(range(1, x.ndim - 1))
  mean = jnp.mean(h, axis=axes, keepdims=True)
  var = jnp.maximum(jnp.mean(h * h, axis=axes, keepdims=True) - mean * mean, 0)
  a = jax.lax.rsqrt(var + epsilon) * scale.astype(dtype)
  return (h * a + (bias.astype(dtype) - mean * a)).astype(out_dtype)
