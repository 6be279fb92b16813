"""Max pooling that reports where each maximum came from, and its inverse.

* `max_pool_with_argmax`: `max_pool` plus PyTorch's `return_indices`.
* `max_unpool`: scatters pooled values back to those positions (PyTorch's
  `max_unpool1d/2d/3d`), as in SegNet's decoder (Badrinarayanan, Kendall & Cipolla
  2017) and Zeiler & Fergus's deconvnet "switches" (2014).

Index convention (PyTorch's): for every example and channel, the int32 flat
row-major index of the selected element in that example's and channel's
*unpadded* spatial plane, i.e. `sum_d pos_d * prod(L_{d+1:})`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxpool._src import reduce as reduce_lib
from jaxpool._src.machinery import dtypes
from jaxpool._src.machinery import geometry
from jaxpool._src.machinery.geometry import PaddingLike


def max_pool_with_argmax(
  inputs: Any,
  window_shape,
  strides=None,
  padding: PaddingLike = "VALID",
  *,
  dilation=None,
  ceil_mode: bool = False,
  channel_axis: int = -1,
) -> tuple[jax.Array, jax.Array]:
  r"""Max pooling and the position of every maximum (PyTorch's `return_indices`).

  .. math:: y_o = \max_{k \in W} \tilde x_{p(o, k)},\qquad
            i_o = \mathrm{flat}\big(p(o, k^*_o)\big),\quad
            p(o, k) = s \cdot o - p_{lo} + d \cdot k

  where :math:`k^*_o` is the first window offset (row-major) holding the maximum,
  or the last one holding a NaN (PyTorch's kernels), and
  :math:`\mathrm{flat}(p) = \sum_d p_d \prod_{e > d} L_e` indexes the unpadded input
  plane. The values are exactly :func:`jaxpool.max_pool` (same arguments, same
  gradient: to the selected element); the indices are int32 and not
  differentiable. Padding is never selected; a window lying entirely in the padding
  (possible with padding larger than PyTorch allows) has value `-inf` (the dtype's
  minimum for integers) and index -1.

  Args:
    inputs: `(*batch, *spatial, features)`, or `(N, C, *spatial)` with
      `channel_axis=1`. Floating or integer dtype.
    window_shape: window size per spatial dim, e.g. `(2, 2)`.
    strides: stride per spatial dim, an int, or None for 1 (as Flax; PyTorch's
      default is the window size).
    padding: "VALID", "SAME", an int, a sequence of ints or of `(low, high)` pairs.
    dilation: window dilation per spatial dim.
    ceil_mode: PyTorch's ceil_mode.
    channel_axis: -1 (channels last) or 1 (channels first, PyTorch layout).

  Returns:
    `(values, indices)`, both of the pooled shape; `indices` is int32.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> x = jnp.array([[0.0, 5.0, 1.0, 1.0], [2.0, 3.0, 4.0, 0.0]]).reshape(1, 2, 4, 1)
    >>> y, i = jaxpool.max_pool_with_argmax(x, (2, 2), strides=2)
    >>> y[0, :, :, 0], i[0, :, :, 0]
    (Array([[5., 4.]], dtype=float32), Array([[1, 6]], dtype=int32))
  """
  fn = "max_pool_with_argmax"
  x = dtypes.pool_input(inputs, fn, integers=True)
  geom = geometry.resolve(
    x.shape,
    window_shape,
    strides,
    padding,
    dilation=dilation,
    ceil_mode=ceil_mode,
    channel_axis=channel_axis,
    fn=fn,
  )
  values = reduce_lib.max_pool(
    x,
    window_shape,
    strides,
    padding,
    dilation=dilation,
    ceil_mode=ceil_mode,
    channel_axis=channel_axis,
  )
  frozen = lax.stop_gradient(x)
  selections = reduce_lib.window_selections(frozen, lax.stop_gradient(values), geom, "max")
  plane_strides = [int(np.prod(geom.spatial_shape[d + 1 :])) for d in range(len(geom.spatial_axes))]
  indices = jnp.full(geom.output_shape, -1, jnp.int32)
  for offset, selected in zip(geom.window_offsets(), selections):
    flat = sum(_axis_term(geom, d, k, plane_strides[d]) for d, k in enumerate(offset))
    assert isinstance(flat, np.ndarray)  # a sum over >= 1 spatial dims, not sum's start 0
    indices = jnp.where(selected, jnp.asarray(geom.spatial_to_output(flat), jnp.int32), indices)
  return values, indices


def _axis_term(geom, d: int, k: int, stride: int) -> np.ndarray:
  """Flat-index contribution of dim `d` for window element `k`, broadcastable to output_spatial."""
  term = geom._positions(d, k) * stride
  shape = [1] * len(geom.spatial_axes)
  shape[d] = term.shape[0]
  return term.reshape(shape)


def max_unpool(
  values: Any, indices: Any, output_shape: Sequence[int], *, channel_axis: int = -1
) -> jax.Array:
  r"""The partial inverse of max pooling: values back at their argmax positions.

  .. math:: z_{b,c}[\,j\,] = y_{b,c}[\,o\,]\ \text{ if } i_{b,c}[o] = j,
            \text{ else } 0

  with `z` of spatial shape `output_shape` and `j` a flat row-major index into it
  (PyTorch's `max_unpool1d/2d/3d`, given its `output_size`). Zero everywhere no
  index points to. The derivative with respect to `values` is exact (the cotangent
  at each written position goes to the value written there); `indices` are not
  differentiable.

  Duplicates and out-of-range indices (PyTorch's behaviour differs here):

  * several outputs with the same index (overlapping windows that selected the same
    element — then their values are equal — or hand-made indices): the *last* in
    row-major order of the pooled positions is written, deterministically. PyTorch
    documents the result as undefined; its CPU kernel usually writes the last one.
    Only the written value receives a gradient (PyTorch's backward gathers the
    cotangent for every duplicate);
  * an index outside `[0, prod(output_shape))` (for instance -1 from a window lying
    entirely in padding) is dropped. PyTorch raises an error; a traced index
    cannot raise in JAX.

  Args:
    values: pooled values `(*batch, *spatial_in, features)`, or `(N, C,
      *spatial_in)` with `channel_axis=1`; `len(output_shape)` spatial dims.
    indices: integer array of the shape of `values`, e.g. from
      :func:`max_pool_with_argmax`.
    output_shape: the spatial shape of the result, a sequence of ints (PyTorch's
      `output_size`; for `max_pool_with_argmax(x, ...)` usually x's spatial shape).
    channel_axis: -1 (channels last) or 1 (channels first, PyTorch layout).

  Returns:
    `values` with the spatial dims replaced by `output_shape`, same dtype.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> x = jnp.array([[0.0, 5.0, 1.0, 1.0], [2.0, 3.0, 4.0, 0.0]]).reshape(1, 2, 4, 1)
    >>> y, i = jaxpool.max_pool_with_argmax(x, (2, 2), strides=2)
    >>> jaxpool.max_unpool(y, i, (2, 4))[0, :, :, 0]
    Array([[0., 5., 0., 0.],
           [0., 0., 4., 0.]], dtype=float32)
  """
  fn = "max_unpool"
  v = dtypes.as_array(values, fn, "values")
  idx = dtypes.as_array(indices, fn, "indices")
  if not (jnp.issubdtype(v.dtype, jnp.floating) or jnp.issubdtype(v.dtype, jnp.integer)):
    raise TypeError(f"{fn}: values must have a floating or integer dtype, got {v.dtype}.")
  if not jnp.issubdtype(idx.dtype, jnp.integer):
    raise TypeError(f"{fn}: indices must have an integer dtype, got {idx.dtype}.")
  if idx.shape != v.shape:
    raise ValueError(f"{fn}: indices must have the shape of values {v.shape}, got {idx.shape}.")
  if (
    isinstance(output_shape, (str, bytes))
    or not isinstance(output_shape, Sequence)
    or not output_shape
    or not all(geometry.is_int(s) and s >= 1 for s in output_shape)
  ):
    raise ValueError(
      f"{fn}: output_shape must be a non-empty sequence of ints >= 1 (the spatial shape "
      f"of the result), got {output_shape!r}."
    )
  output_shape = tuple(int(s) for s in output_shape)
  n = len(output_shape)
  if not geometry.is_int(channel_axis) or channel_axis not in (-1, 1, v.ndim - 1):
    raise ValueError(
      f"{fn}: channel_axis must be -1 (values (*batch, *spatial, features)) or 1 "
      f"(values (N, C, *spatial)), got {channel_axis!r} for values of shape {v.shape}."
    )
  axes, channel = geometry.spatial_axes(v.shape, n, channel_axis, fn)

  # Work on (planes, positions): planes = batch and channel dims, row-major.
  order = [a for a in range(v.ndim) if a not in axes] + list(axes)
  planes_shape = tuple(v.shape[a] for a in order[: v.ndim - n])
  planes = int(np.prod(planes_shape))
  # Sizes written out, not -1: reshape cannot infer -1 next to a zero-size dim (an
  # empty batch or channel dim gives an empty result, as PyTorch).
  positions = int(np.prod([v.shape[a] for a in axes]))
  v2 = jnp.transpose(v, order).reshape(planes, positions)
  i2 = jnp.transpose(idx, order).reshape(planes, positions).astype(jnp.int32)
  size = int(np.prod(output_shape))
  i2 = jnp.where((i2 >= 0) & (i2 < size), i2, size)  # out of range -> dropped below
  rows = jnp.arange(planes, dtype=jnp.int32)[:, None]
  # Deterministic duplicates: the last pooled position writing to an index wins.
  source = jnp.broadcast_to(jnp.arange(i2.shape[1], dtype=jnp.int32), i2.shape)
  winner = jnp.full((planes, size), -1, jnp.int32).at[rows, i2].max(source, mode="drop")
  wins = jnp.take_along_axis(winner, jnp.minimum(i2, size - 1), axis=1) == source
  target = jnp.where(wins, i2, size)
  out = jnp.zeros((planes, size), v.dtype).at[rows, target].set(v2, mode="drop")

  out = out.reshape(planes_shape + output_shape)
  return jnp.transpose(out, np.argsort(order).tolist())
