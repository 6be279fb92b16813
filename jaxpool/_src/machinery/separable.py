"""Max over box windows listed per spatial dimension, one dimension at a time.

Adaptive and fractional max pooling use windows whose starts are not an arithmetic
progression, so `lax.reduce_window` cannot express them. Each window is still a box:
the Cartesian product of one interval per spatial dim. So

    max_{(h, w) in I x J} x[h, w] = max_{h in I} ( max_{w in J} x[h, w] ),

and the pool is a chain of 1-d window maxima, innermost (last) spatial dim first.
For one dim with input length L, o windows and at most K elements per window, the
elements are gathered into a `(..., o, K, ...)` array (a reshape where the windows
tile the axis, a gather of static or per-plane positions otherwise) and reduced over
the K axis.

Selection rule (PyTorch's): each window selects the first maximal element in
row-major order, or the last NaN if it holds one. Reducing the innermost dim first
and keeping, at every step, the first maximal element (last NaN) of the 1-d window
selects exactly that element: the first row-major maximum lies in the first row
holding the maximum, at the first column of that row reaching it (and symmetrically
for the last NaN). The selection is a one-hot mask over K; values are the selected
elements, their derivative is routed to the selected element only (a custom JVP,
linear in the tangent, so JAX transposes it into the VJP: no scatter over K), and
the flat index of the selected element in the unpadded input plane is carried along
for `return_indices`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


@dataclasses.dataclass(frozen=True, eq=False)
class DimWindows:
  """The windows of one spatial dim.

  Attributes:
    axis: the axis of that spatial dim in the (partially reduced) array.
    gather: maps an array whose `axis` has the input length L to one where `axis`
      is replaced by two axes `(o, K)`: element k of window i.
    positions: int array broadcastable to the gathered shape: the input coordinate
      (along this dim) of every gathered element.
    valid: bool array broadcastable to the gathered shape marking the elements that
      belong to their window (windows shorter than K are padded by repeating an
      element of the window), or None if every gathered element belongs.
    stride: the flat-index stride of this dim in the row-major input plane.
  """

  axis: int
  gather: Callable[[jax.Array], jax.Array]
  positions: jax.Array | np.ndarray
  valid: jax.Array | np.ndarray | None
  stride: int


def lowest(dtype):
  """The identity of `max` for `dtype`."""
  if jnp.issubdtype(dtype, jnp.integer):
    return jnp.iinfo(dtype).min
  return -jnp.inf


def positions(dtype, x: jax.Array, axis: int) -> jax.Array:
  """0, 1, ... along `axis` of `x`, shaped to broadcast against it."""
  size = x.shape[axis]
  return lax.broadcasted_iota(dtype, (1,) * axis + (size,) + (1,) * (x.ndim - axis - 1), axis)


def first_max_index(x: jax.Array, value: jax.Array, axis: int, valid=None) -> jax.Array:
  """The index along `axis` (kept, size 1) of the first element equal to `value`
  (the maximum, keepdims), or of the last NaN if there is one: PyTorch's choice,
  in one max-reduction of a score. Only elements with `valid` true are candidates.

  Score: a NaN at k scores L + k (the last NaN wins, above every non-NaN), a maximal
  element L - 1 - k (the first one wins), any other -1. Float scores (exact below
  2^24) where they fit: XLA:CPU vectorizes their reduction, not an argmax (a
  variadic reduction; case: a global max pool's forward on a 2d_3x3s2_resnet input).
  """
  size = x.shape[axis]
  iota = positions(jnp.float32 if 2 * size < 2**24 else jnp.int32, x, axis)
  score = jnp.where(x == value, size - 1 - iota, -1)
  if jnp.issubdtype(x.dtype, jnp.floating):
    score = jnp.where(jnp.isnan(x), size + iota, score)
  if valid is not None:
    score = jnp.where(valid, score, -1)
  best = jnp.max(score, axis=axis, keepdims=True)
  return jnp.where(best >= size, best - size, size - 1 - best)


def first_max_mask(g: jax.Array, axis: int, valid=None) -> jax.Array:
  """One-hot bool mask over `axis`: the first maximal element, or the last NaN.

  Only elements with `valid` true are candidates (each window has at least one).
  """
  masked = g if valid is None else jnp.where(valid, g, jnp.asarray(lowest(g.dtype), g.dtype))
  # XLA:CPU's max may drop NaNs; first_max_index picks a window's NaN regardless.
  top = jnp.max(masked, axis=axis, keepdims=True)
  index = first_max_index(g, top, axis, valid)
  return positions(index.dtype, g, axis) == index


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def pick(g: jax.Array, selected: jax.Array, axis: int) -> jax.Array:
  """The element of `g` marked by the one-hot `selected` along `axis` (removed).

  The value is exact (NaN and -0.0 included); the derivative goes to the selected
  element only.
  """
  value = jnp.max(jnp.where(selected, g, jnp.asarray(lowest(g.dtype), g.dtype)), axis=axis)
  if not jnp.issubdtype(g.dtype, jnp.floating):
    return value
  # XLA's CPU max-reduction over an axis, vectorized across wide minor dims, drops
  # NaNs (max(-inf, NaN) = -inf); put back the NaN of a selected element.
  # A float sum: XLA:CPU vectorizes it, not a boolean any.
  picked_nan = jnp.sum(jnp.where(selected & jnp.isnan(g), 1.0, 0.0), axis=axis) > 0
  return jnp.where(picked_nan, jnp.asarray(np.nan, g.dtype), value)


@pick.defjvp
def _pick_jvp(axis, primals, tangents):
  g, selected = primals
  t = tangents[0]
  return pick(g, selected, axis), jnp.sum(jnp.where(selected, t, 0), axis=axis).astype(t.dtype)


def separable_max(
  x: jax.Array, dims: Sequence[DimWindows], *, with_indices: bool
) -> tuple[jax.Array, jax.Array | None]:
  """Max over the box windows given by `dims` (innermost spatial dim first).

  Returns the values and, if `with_indices`, the int32 flat row-major index of the
  selected element in each example's and channel's input plane.
  """
  values, index = x, None
  for dim in dims:
    gathered = dim.gather(values)
    k_axis = dim.axis + 1
    selected = first_max_mask(lax.stop_gradient(gathered), k_axis, dim.valid)
    values = pick(gathered, selected, k_axis)
    if with_indices:
      here = (
        jnp.sum(
          jnp.where(selected, jnp.asarray(dim.positions, jnp.int32), 0),
          axis=k_axis,
          dtype=jnp.int32,
        )
        * dim.stride
      )
      inner = (
        0
        if index is None
        else jnp.sum(jnp.where(selected, dim.gather(index), 0), axis=k_axis, dtype=jnp.int32)
      )
      index = here + inner
  return values, index


def _split_axis(a: jax.Array, axis: int, outer: int, inner: int) -> jax.Array:
  return a.reshape(a.shape[:axis] + (outer, inner) + a.shape[axis + 1 :])


def static_dim(
  axis: int, ndim: int, starts: np.ndarray, ends: np.ndarray, stride: int
) -> DimWindows:
  """Windows `[starts[i], ends[i])` along `axis`, the same for every plane.

  `ndim` is the rank of the array when this dim is reduced. Windows that tile the
  axis with a common length are a reshape; otherwise a gather of static positions
  (windows shorter than the longest repeat their last element, marked invalid).
  """
  starts, ends = np.asarray(starts), np.asarray(ends)
  sizes = ends - starts
  o, k = len(starts), int(sizes.max())
  trailing = (1,) * (ndim - axis - 1)
  offsets = np.arange(k)
  positions = np.minimum(starts[:, None] + offsets, ends[:, None] - 1)
  valid = offsets[None, :] < sizes[:, None]
  tiles = bool((sizes == k).all() and (starts == k * np.arange(o)).all())
  if tiles:
    length = o * k
    gather = lambda a: _split_axis(a[(slice(None),) * axis + (slice(0, length),)], axis, o, k)
  else:
    flat = positions.reshape(-1)
    gather = lambda a: _split_axis(jnp.take(a, flat, axis=axis, mode="clip"), axis, o, k)
  return DimWindows(
    axis=axis,
    gather=gather,
    positions=positions.reshape((o, k) + trailing).astype(np.int32),
    valid=None if valid.all() else valid.reshape((o, k) + trailing),
    stride=stride,
  )
