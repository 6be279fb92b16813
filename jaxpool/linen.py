"""Flax Linen modules for every jaxpool operation.

One module per pooling function, same CamelCase names as :mod:`jaxpool.nnx`. The
modules are thin: their attributes are the function's options, they hold the
learnable parameters and draw the random keys, and they call the function from
:mod:`jaxpool` for every piece of pooling math.

Conventions (as the rest of Flax Linen):

* Learnable parameters live in the ``"params"`` collection and are created lazily
  from the first input (so no ``num_features`` is needed).
* Random modules (:class:`StochasticPool`, :class:`FractionalMaxPool`,
  ``MixedPool(stochastic=True)``) draw keys from the rng stream ``"pooling"``:
  ``module.apply(variables, x, rngs={"pooling": key})``. Their ``deterministic``
  flag is an attribute or a ``deterministic=`` call argument, exactly one of the
  two (:func:`flax.linen.merge_param`, as :class:`flax.linen.Dropout`).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxpool import linen as jpl
  >>> x = jnp.ones((1, 4, 4, 3))
  >>> pool = jpl.MaxPool(window_shape=(2, 2), strides=(2, 2))
  >>> pool.apply({}, x).shape
  (1, 2, 2, 3)
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxpool
from jaxpool._src import geometry

RNG_STREAM = "pooling"
"""The rng stream that every random pooling module draws its keys from."""

Shape = Sequence[int]
Initializer = Callable[..., Any]


# --------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------


class _WindowPool(nn.Module):
  """Attributes shared by every window pool (see :func:`jaxpool.max_pool`).

  Attributes:
    window_shape: window size per spatial dim, e.g. ``(2, 2)``.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int, a sequence of ints or of ``(low, high)``.
    dilation: window dilation per spatial dim (PyTorch's ``dilation``).
    ceil_mode: PyTorch's ``ceil_mode``.
    channel_axis: -1 (channels last) or 1 (channels first).
  """

  window_shape: Shape
  strides: Optional[Any] = None
  padding: Any = "VALID"
  dilation: Optional[Any] = None
  ceil_mode: bool = False
  channel_axis: int = -1

  def _window(self) -> dict[str, Any]:
    """Arguments of the function after `inputs` and the op-specific positionals."""
    return dict(window_shape=self.window_shape, strides=self.strides,
                padding=self.padding, dilation=self.dilation,
                ceil_mode=self.ceil_mode, channel_axis=self.channel_axis)

  def _geometry(self, x, fn: str) -> geometry.PoolGeometry:
    return geometry.resolve(jnp.shape(x), self.window_shape, self.strides,
                            self.padding, dilation=self.dilation,
                            ceil_mode=self.ceil_mode, channel_axis=self.channel_axis,
                            fn=fn)


def _num_channels(x, channel_axis: int) -> int:
  return jnp.shape(x)[channel_axis]


def _check_choice(module: str, arg: str, value, allowed: Sequence[str]):
  if value not in allowed:
    raise ValueError(f"{module}: {arg} must be one of {tuple(allowed)}, got {value!r}.")


def _pooling_key(module: nn.Module, name: str) -> jax.Array:
  """A fresh key from the "pooling" stream, or a ValueError that says how to pass one."""
  if not module.has_rng(RNG_STREAM):
    raise ValueError(
        f"{name} needs a random key when deterministic=False: pass "
        f"rngs={{'{RNG_STREAM}': key}} to init/apply, or call it with "
        f"deterministic=True (eval).")
  return module.make_rng(RNG_STREAM)


def inverse_softplus_plus_one(p: float) -> float:
  """The raw value ``r`` with ``1 + softplus(r) = p`` (for ``p > 1``)."""
  return float(np.log(np.expm1(p - 1.0)))


# --------------------------------------------------------------------------------
# Classic window reductions
# --------------------------------------------------------------------------------


class MaxPool(_WindowPool):
  """Max pooling, :func:`jaxpool.max_pool` (largest element of every window).

  Attributes: as :class:`_WindowPool`. No parameters.

  Example:
    >>> MaxPool((2, 2), strides=(2, 2)).apply({}, jnp.ones((1, 4, 4, 1))).shape
    (1, 2, 2, 1)
  """

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.max_pool(inputs, **self._window())


class MinPool(_WindowPool):
  """Min pooling, :func:`jaxpool.min_pool`. Attributes as :class:`MaxPool`."""

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.min_pool(inputs, **self._window())


class SumPool(_WindowPool):
  """Sum pooling, :func:`jaxpool.sum_pool`. Attributes as :class:`MaxPool`."""

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.sum_pool(inputs, **self._window())


class AvgPool(_WindowPool):
  """Average pooling, :func:`jaxpool.avg_pool`.

  Attributes:
    count_include_pad: divide by the window size including the padding (default,
      as Flax and PyTorch) or only by the elements inside the input.
    divisor_override: a constant divisor (PyTorch).
    (and the window attributes of :class:`MaxPool`)
  """

  count_include_pad: bool = True
  divisor_override: Optional[int] = None

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.avg_pool(inputs, count_include_pad=self.count_include_pad,
                            divisor_override=self.divisor_override, **self._window())
