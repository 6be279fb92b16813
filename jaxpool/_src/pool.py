r"""`pool`: `flax.linen.pool` (a window reduction by a binary function), differentiable.

`flax.linen.pool(inputs, init, reduce_fn, window_shape, strides, padding)` is
`lax.reduce_window`, whose derivative JAX knows only for the reductions it
recognises (add, max, min with their identities). `jaxpool.pool` takes the same
arguments and returns the same values, computed instead as

.. math:: y_o = \mathrm{init} \oplus x_{o, k_0} \oplus \dots \oplus x_{o, k_{K-1}}

over the window elements inside the input (padding adds nothing, as in JAX's
`reduce_window`), with :math:`\oplus` = `reduce_fn` applied elementwise to one
strided view of the input per window offset (`views.of_input`; where some windows
hold padding at that offset, a select keeps their running value): differentiable
wherever `reduce_fn` is. The monoids of Flax's own pools go to jaxpool's pools with their
fast derivatives: `lax.add` with init 0 to :func:`jaxpool.sum_pool`, `lax.max`
with init -inf (or the integer minimum) to :func:`jaxpool.max_pool`, `lax.min`
with +inf (the maximum) to :func:`jaxpool.min_pool`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxpool._src import reduce
from jaxpool._src.machinery import dtypes
from jaxpool._src.machinery import geometry
from jaxpool._src.machinery import views
from jaxpool._src.machinery.geometry import PaddingLike

# reduce_fn -> (its identity for a dtype, the jaxpool pool for that monoid)
_MONOIDS = {
  lax.add: ("sum", lambda dtype: 0),
  jnp.add: ("sum", lambda dtype: 0),
  lax.max: ("max", lambda dtype: reduce._lowest(dtype, "max")),
  jnp.maximum: ("max", lambda dtype: reduce._lowest(dtype, "max")),
  lax.min: ("min", lambda dtype: reduce._lowest(dtype, "min")),
  jnp.minimum: ("min", lambda dtype: reduce._lowest(dtype, "min")),
}


def _monoid(reduce_fn: Callable, init: Any, dtype) -> str | None:
  """The kind ("sum", "max", "min") of `(reduce_fn, init)`: a monoid with its identity."""
  try:
    kind, identity = _MONOIDS[reduce_fn]
  except (KeyError, TypeError):  # unknown or unhashable reducer
    return None
  if isinstance(init, jax.core.Tracer):
    return None
  value = np.asarray(init)
  if value.shape != () or value.astype(dtype) != np.asarray(identity(dtype), dtype):
    return None
  return kind


def pool(
  inputs: Any,
  init: Any,
  reduce_fn: Callable,
  window_shape,
  strides=None,
  padding: PaddingLike = "VALID",
  *,
  dilation=None,
  ceil_mode: bool = False,
  channel_axis: int = -1,
) -> jax.Array:
  r"""A window reduction by a binary function: a drop-in for `flax.linen.pool`.

  .. math:: y_o = \mathrm{init} \oplus \bigoplus_{k \in W_o} x_{s \cdot o - p_{lo} + d \cdot k}

  with :math:`\oplus` = `reduce_fn` and :math:`W_o` the offsets of window `o`
  that lie inside the input: `init` enters once and padding not at all, as in
  `lax.reduce_window`, which Flax calls. Same arguments, same batch
  dimensions (`(*batch, *spatial, features)`, any number of batch dims including
  none) and the same values as `flax.linen.pool` for any monoid (`lax.add`,
  `lax.max`, `lax.min`, ...; sums may differ in the last bits, being summed in
  another order), plus jaxpool's keyword options.

  Unlike Flax's, the result is differentiable wherever `reduce_fn` is: `reduce_fn`
  is applied elementwise to one strided view of the input per window offset, and
  JAX differentiates that. (`lax.add`/`lax.max`/`lax.min` with their identity as
  `init` are :func:`jaxpool.sum_pool`/`max_pool`/`min_pool`, with their fast
  gradients; max/min then give NaN for a window holding NaN, as PyTorch.)

  Args:
    inputs: `(*batch, *spatial, features)`, or `(N, C, *spatial)` with
      `channel_axis=1`. Floating or integer dtype.
    init: the initial value of the reduction (a scalar).
    reduce_fn: `(a, b) -> a ⊕ b`, applied to whole arrays (a `lax` or `jnp`
      elementwise function, or any function of two arrays of the same shape).
    window_shape: window size per spatial dim, e.g. `(2, 2)`.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int, a sequence of ints or of `(low, high)`
      pairs (see :func:`jaxpool.max_pool`).
    dilation, ceil_mode, channel_axis: as :func:`jaxpool.max_pool`.

  Returns:
    The reduction of every window, the inputs' dtype, spatial dims replaced by the
    output sizes.

  Example:
    >>> import jax, jax.numpy as jnp, jaxpool
    >>> from jax import lax
    >>> x = jnp.array([[1.0], [2.0], [3.0], [4.0]])
    >>> jaxpool.pool(x, 0.0, lax.add, (2,), (2,))[:, 0]
    Array([3., 7.], dtype=float32)
    >>> # A reducer Flax's pool cannot differentiate: log(e^a + e^b), a smooth max.
    >>> g = jax.grad(lambda v: jaxpool.pool(v, -jnp.inf, jnp.logaddexp, (2,), (2,)).sum())(x)
    >>> [round(float(v), 4) for v in g[:, 0]]  # softmax weights of every window
    [0.2689, 0.7311, 0.2689, 0.7311]
  """
  x = dtypes.pool_input(inputs, "pool", integers=True)
  if not callable(reduce_fn):
    raise TypeError(f"pool: reduce_fn must be a callable (a, b) -> a ⊕ b, got {reduce_fn!r}.")
  options: dict[str, Any] = dict(
    strides=strides,
    padding=padding,
    dilation=dilation,
    ceil_mode=ceil_mode,
    channel_axis=channel_axis,
  )
  geom = geometry.resolve(x.shape, window_shape, fn="pool", **options)  # errors name `pool`
  kind = _monoid(reduce_fn, init, x.dtype)
  if kind is not None:
    fn = {"sum": reduce.sum_pool, "max": reduce.max_pool, "min": reduce.min_pool}[kind]
    return fn(x, window_shape, **options)
  if not isinstance(init, jax.core.Tracer):
    init = np.asarray(init, x.dtype)
    if init.shape != ():
      raise ValueError(f"pool: init must be a scalar, got shape {init.shape}.")
  else:
    init = init.astype(x.dtype)
  y = jnp.full(geom.output_shape, init, x.dtype)
  for offset in geom.window_offsets():
    element = views.locate(geom, offset)
    if element is None:  # padding in every window: nothing to add
      continue
    value = reduce_fn(y, views.on_windows(views.of_input(x, element), element, geom, init))
    inside = geom.in_bounds(offset)
    y = value if inside is None else jnp.where(inside, value, y)
  return y.astype(x.dtype)
