"""The bases of the jaxpool.nnx modules: their window options and their rngs.

How an NNX module keeps its options (as static, hashable attributes), and how a
random one keeps its key stream and ``deterministic`` flag, as ``nnx.Dropout`` does.
Imported by jaxpool.nnx after its Flax guard.
"""

from __future__ import annotations

from typing import Any
from typing import Optional

import jax
from flax import nnx

from jaxpool._src.layers import modules as _m
from jaxpool._src.layers.modules import RNG_STREAM


def freeze(value: Any) -> Any:
  """Lists (e.g. padding pairs from a config) as nested tuples: static and hashable."""
  if isinstance(value, (list, tuple)):
    return tuple(freeze(v) for v in value)
  return value


def fork_stream(rngs, module: str):
  """The module's own stream, as `nnx.Dropout` keeps it (None: no stream yet)."""
  if isinstance(rngs, nnx.Rngs):
    return rngs[RNG_STREAM].fork()
  if isinstance(rngs, nnx.RngStream):
    return rngs.fork()
  if rngs is None:
    return nnx.data(None)
  raise TypeError(
    f"{module}: rngs must be an nnx.Rngs, an nnx.RngStream or None, got {type(rngs).__name__}."
  )


class Random(nnx.Module):
  """Mixin of the random modules: the ``deterministic`` flag and the key stream."""

  deterministic: Optional[bool]
  rngs: Any

  def _resolve(self, deterministic: Optional[bool]) -> bool:
    if deterministic is not None:
      return bool(deterministic)
    if self.deterministic is None:
      raise ValueError(
        f"{type(self).__name__}: deterministic is None; call model.train() / "
        f"model.eval(), set deterministic= in the constructor, or pass "
        f"deterministic= to the call."
      )
    return bool(self.deterministic)

  def _key(self, rngs) -> jax.Array:
    """A key from the call's `rngs` (Rngs, RngStream or key), else the module's."""
    rngs = self.rngs if rngs is None else rngs
    name = type(self).__name__
    if rngs is None:
      raise ValueError(
        f"{name} needs random keys when deterministic=False: build it with "
        f"rngs=nnx.Rngs(...) (stream '{RNG_STREAM}' or the default stream), pass "
        f"rngs= to the call, or switch it to evaluation with model.eval()."
      )
    if isinstance(rngs, nnx.Rngs):
      return rngs[RNG_STREAM]()
    if isinstance(rngs, nnx.RngStream):
      return rngs()
    if isinstance(rngs, jax.Array):
      return rngs
    raise TypeError(
      f"{name}: rngs must be an nnx.Rngs, an nnx.RngStream or a key, got {type(rngs).__name__}."
    )


class Window(nnx.Module):
  """The window options of every window pool (see :func:`jaxpool.max_pool`)."""

  def _set_window(self, window_shape, strides, padding, dilation, ceil_mode, channel_axis):
    self.window_shape = freeze(window_shape)
    self.strides = freeze(strides)
    self.padding = freeze(padding)
    self.dilation = freeze(dilation)
    self.ceil_mode = ceil_mode
    self.channel_axis = channel_axis

  def _window(self) -> dict[str, Any]:
    """Arguments of the function after `inputs` and the op-specific positionals."""
    return _m.options(self, _m.WINDOW_OPTIONS)


def need_rngs(rngs, module: str):
  if not isinstance(rngs, nnx.Rngs):
    raise TypeError(
      f"{module}: rngs must be an nnx.Rngs (it initialises the "
      f"parameters), got {type(rngs).__name__}."
    )
