"""Flax NNX modules for every jaxpool operation.

One module per pooling function, same CamelCase names as :mod:`jaxpool.linen`. The
modules are thin: their attributes are the function's options, they hold the
learnable parameters and the rng stream, and they call the function from
:mod:`jaxpool` for every piece of pooling math.

Conventions (as the rest of Flax NNX):

* Parameters are created eagerly in ``__init__``: a module with parameters takes
  ``rngs: nnx.Rngs`` as a keyword, and ``num_features`` where a parameter is per
  channel.
* Random modules (:class:`StochasticPool`, :class:`FractionalMaxPool`,
  ``MixedPool(stochastic=True)``) draw keys from the rng stream ``"pooling"`` of
  the ``rngs`` they were built with (``nnx.Rngs(0)`` falls back to its default
  stream, ``nnx.Rngs(pooling=0)`` names it), exactly as :class:`flax.nnx.Dropout`
  does with ``"dropout"``. Their ``deterministic`` attribute is switched by
  ``model.train()`` (False) / ``model.eval()`` (True), and a ``deterministic=`` or
  ``rngs=`` call argument takes precedence over the attribute.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from jaxpool import nnx as jpx
  >>> pool = jpx.MaxPool(window_shape=(2, 2), strides=(2, 2))
  >>> pool(jnp.ones((1, 4, 4, 3))).shape
  (1, 2, 2, 3)
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jaxpool
from jaxpool._src import geometry

RNG_STREAM = "pooling"
"""The rng stream that every random pooling module draws its keys from."""

Shape = Sequence[int]


def _freeze(value):
  """Lists (e.g. padding pairs from a config) as nested tuples: static and hashable."""
  if isinstance(value, (list, tuple)):
    return tuple(_freeze(v) for v in value)
  return value


def _check_choice(module: str, arg: str, value, allowed: Sequence[str]):
  if value not in allowed:
    raise ValueError(f"{module}: {arg} must be one of {tuple(allowed)}, got {value!r}.")


def _check_num_features(module: str, num_features):
  if not geometry.is_int(num_features) or num_features < 1:
    raise ValueError(
        f"{module}: num_features must be a positive int (the number of channels of "
        f"the inputs, needed because NNX creates per-channel parameters eagerly), "
        f"got {num_features!r}.")


def _fork_stream(rngs, module: str):
  """The module's own stream, as `nnx.Dropout` keeps it (None: no stream yet)."""
  if isinstance(rngs, nnx.Rngs):
    return rngs[RNG_STREAM].fork()
  if isinstance(rngs, nnx.RngStream):
    return rngs.fork()
  if rngs is None:
    return nnx.data(None)
  raise TypeError(f"{module}: rngs must be an nnx.Rngs, an nnx.RngStream or None, "
                  f"got {type(rngs).__name__}.")


class _Random(nnx.Module):
  """Mixin of the random modules: the ``deterministic`` flag and the key stream."""

  deterministic: bool
  rngs: Any

  def _resolve(self, deterministic: Optional[bool]) -> bool:
    if deterministic is not None:
      return bool(deterministic)
    if self.deterministic is None:
      raise ValueError(
          f"{type(self).__name__}: deterministic is None; call model.train() / "
          f"model.eval(), set deterministic= in the constructor, or pass "
          f"deterministic= to the call.")
    return bool(self.deterministic)

  def _key(self, rngs) -> jax.Array:
    """A key from the call's `rngs` (Rngs, RngStream or key), else the module's."""
    rngs = self.rngs if rngs is None else rngs
    name = type(self).__name__
    if rngs is None:
      raise ValueError(
          f"{name} needs random keys when deterministic=False: build it with "
          f"rngs=nnx.Rngs(...) (stream '{RNG_STREAM}' or the default stream), pass "
          f"rngs= to the call, or switch it to evaluation with model.eval().")
    if isinstance(rngs, nnx.Rngs):
      return rngs[RNG_STREAM]()
    if isinstance(rngs, nnx.RngStream):
      return rngs()
    if isinstance(rngs, jax.Array):
      return rngs
    raise TypeError(f"{name}: rngs must be an nnx.Rngs, an nnx.RngStream or a key, "
                    f"got {type(rngs).__name__}.")


class _WindowPool(nnx.Module):
  """Attributes shared by every window pool (see :func:`jaxpool.max_pool`).

  Args:
    window_shape: window size per spatial dim, e.g. ``(2, 2)``.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int, a sequence of ints or of ``(low, high)``.
    dilation: window dilation per spatial dim (PyTorch's ``dilation``).
    ceil_mode: PyTorch's ``ceil_mode``.
    channel_axis: -1 (channels last) or 1 (channels first).
  """

  def _set_window(self, window_shape, strides, padding, dilation, ceil_mode,
                  channel_axis):
    self.window_shape = _freeze(window_shape)
    self.strides = _freeze(strides)
    self.padding = _freeze(padding)
    self.dilation = _freeze(dilation)
    self.ceil_mode = ceil_mode
    self.channel_axis = channel_axis

  def _window(self) -> dict[str, Any]:
    return dict(window_shape=self.window_shape, strides=self.strides,
                padding=self.padding, dilation=self.dilation,
                ceil_mode=self.ceil_mode, channel_axis=self.channel_axis)

  def _geometry(self, x, fn: str) -> geometry.PoolGeometry:
    return geometry.resolve(jnp.shape(x), self.window_shape, self.strides,
                            self.padding, dilation=self.dilation,
                            ceil_mode=self.ceil_mode, channel_axis=self.channel_axis,
                            fn=fn)


# --------------------------------------------------------------------------------
# Classic window reductions
# --------------------------------------------------------------------------------


class MaxPool(_WindowPool):
  """Max pooling, :func:`jaxpool.max_pool`. No parameters, no rngs.

  Args: the window arguments of :class:`_WindowPool`.

  Example:
    >>> MaxPool((2, 2), strides=(2, 2))(jnp.ones((1, 4, 4, 1))).shape
    (1, 2, 2, 1)
  """

  def __init__(self, window_shape: Shape, strides=None, padding="VALID", *,
               dilation=None, ceil_mode: bool = False, channel_axis: int = -1):
    self._set_window(window_shape, strides, padding, dilation, ceil_mode, channel_axis)

  def __call__(self, inputs):
    return jaxpool.max_pool(inputs, **self._window())


class MinPool(MaxPool):
  """Min pooling, :func:`jaxpool.min_pool`. Arguments as :class:`MaxPool`."""

  def __call__(self, inputs):
    return jaxpool.min_pool(inputs, **self._window())


class SumPool(MaxPool):
  """Sum pooling, :func:`jaxpool.sum_pool`. Arguments as :class:`MaxPool`."""

  def __call__(self, inputs):
    return jaxpool.sum_pool(inputs, **self._window())


class AvgPool(_WindowPool):
  """Average pooling, :func:`jaxpool.avg_pool`.

  Args:
    count_include_pad: divide by the window size including the padding (default,
      as Flax and PyTorch) or only by the elements inside the input.
    divisor_override: a constant divisor (PyTorch).
    (and the window arguments of :class:`MaxPool`)
  """

  def __init__(self, window_shape: Shape, strides=None, padding="VALID",
               count_include_pad: bool = True, *, divisor_override=None,
               dilation=None, ceil_mode: bool = False, channel_axis: int = -1):
    self._set_window(window_shape, strides, padding, dilation, ceil_mode, channel_axis)
    self.count_include_pad = count_include_pad
    self.divisor_override = divisor_override

  def __call__(self, inputs):
    return jaxpool.avg_pool(inputs, count_include_pad=self.count_include_pad,
                            divisor_override=self.divisor_override, **self._window())
