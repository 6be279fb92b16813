"""Pools that fix the output size instead of the window: adaptive, global, pyramid.

* `adaptive_avg_pool`, `adaptive_max_pool`: PyTorch's adaptive pooling for any
  number of spatial dims and any input and output sizes.
* `global_avg_pool`, `global_max_pool`, `global_lp_pool`: one window covering all
  spatial positions.
* `spatial_pyramid_pool`: adaptive pools at several output sizes, flattened and
  concatenated (He et al. 2014).

Adaptive windows (PyTorch's rule): along a spatial dim of input length `L` pooled
to `o` outputs, output `i` covers the input positions

    [floor(i * L / o), ceil((i + 1) * L / o))

so neighbouring windows may share one element, every window holds at least one
element, and `o > L` (upsampling) repeats elements. Windows are boxes, so the pools
are computed one spatial dim at a time (see `separable.py`): a reshape where
`L % o == 0`, a gather of static positions (at most `ceil(L / o) + 1` per window)
otherwise; nothing loops over output positions in Python.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np

from jaxpool._src import reduce as reduce_lib
from jaxpool._src.machinery import axis_max
from jaxpool._src.machinery import dtypes
from jaxpool._src.machinery import geometry
from jaxpool._src.machinery import global_norm
from jaxpool._src.machinery import separable

# Where every dim divides evenly, adaptive max is `max_pool` with window = stride =
# L // o. Its derivative slices the input once per window element, so it is used only
# for windows up to this many elements; larger windows take the reshape path.
_MAX_POOL_WINDOW_LIMIT = 64


# --- arguments --------------------------------------------------------------------


def _output_sizes(output_size: Any, shape, channel_axis, fn: str):
  """(spatial axes, channel axis, input sizes, output sizes) for an output_size argument."""
  if geometry.is_int(output_size):
    n = geometry.default_num_spatial_dims(shape, channel_axis, fn)
    output_size = (output_size,) * n
  elif isinstance(output_size, (str, bytes)) or not isinstance(output_size, Sequence):
    raise TypeError(
      f"{fn}: output_size must be an int or a sequence of ints or None (one per spatial "
      f"dim), got {output_size!r}."
    )
  output_size = tuple(output_size)
  if not output_size:
    raise ValueError(f"{fn}: output_size must name at least one spatial dim, got ().")
  if not all(o is None or geometry.is_int(o) for o in output_size):
    raise TypeError(f"{fn}: output_size entries must be ints or None, got {output_size!r}.")
  if any(o is not None and o < 1 for o in output_size):
    raise ValueError(f"{fn}: output_size entries must be >= 1, got {output_size!r}.")
  axes, channel = geometry.spatial_axes(shape, len(output_size), channel_axis, fn)
  sizes = tuple(shape[a] for a in axes)
  if any(L < 1 for L in sizes):
    raise ValueError(f"{fn}: every spatial dim must be non-empty, got inputs of shape {shape}.")
  outs = tuple(L if o is None else int(o) for L, o in zip(sizes, output_size))
  return axes, channel, sizes, outs


def adaptive_windows(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
  """PyTorch's adaptive windows: starts floor(i L / o), ends ceil((i + 1) L / o)."""
  i = np.arange(out)
  return (i * size) // out, -((-(i + 1) * size) // out)


def _plane_strides(sizes: Sequence[int]) -> list[int]:
  return [int(np.prod(sizes[d + 1 :])) for d in range(len(sizes))]


# --- adaptive pools ----------------------------------------------------------------


def adaptive_avg_pool(inputs: Any, output_size, *, channel_axis: int = -1) -> jax.Array:
  r"""Adaptive average pooling: the mean of PyTorch's adaptive windows.

  Along a spatial dim of length :math:`L` pooled to :math:`o` outputs, output
  :math:`i` averages the window

  .. math:: [\lfloor iL/o \rfloor,\ \lceil (i+1)L/o \rceil),

  and a multi-dim output averages the box of its per-dim windows (divisor: the
  number of elements in the box). Exactly PyTorch's `adaptive_avg_pool1d/2d/3d`,
  for any input and output sizes, including outputs larger than the input (windows
  then repeat elements). Where every dim divides (`L % o == 0`) this is
  :func:`jaxpool.avg_pool` with window = stride = `L // o`; otherwise the sums are
  taken one dim at a time over gathered windows and divided once by the box sizes.

  Args:
    inputs: `(*batch, *spatial, features)`, or `(N, C, *spatial)` with
      `channel_axis=1`; the number of spatial dims is `len(output_size)`. Floating
      dtypes (float16/bfloat16 sum in float32); integers give the default float.
    output_size: the output size per spatial dim, e.g. `(7, 7)`; `None` entries
      keep that dim's size. An int applies to every spatial dim, whose number is
      then `inputs.ndim - 2` (one batch dim and the channel dim).
    channel_axis: -1 (channels last) or 1 (channels first, PyTorch layout).

  Returns:
    `inputs` with the spatial dims replaced by `output_size`.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> x = jnp.arange(5.0).reshape(1, 5, 1)
    >>> jaxpool.adaptive_avg_pool(x, (3,))[0, :, 0]   # windows [0,2) [1,4) [3,5)
    Array([0.5, 2. , 3.5], dtype=float32)
  """
  fn = "adaptive_avg_pool"
  x = dtypes.pool_input(inputs, fn, integers=True)
  axes, _, sizes, outs = _output_sizes(output_size, x.shape, channel_axis, fn)
  out_dtype = dtypes.mean_dtype(x.dtype)
  if all(L % o == 0 for L, o in zip(sizes, outs)):
    window = tuple(L // o for L, o in zip(sizes, outs))
    return reduce_lib.avg_pool(x.astype(out_dtype), window, window, channel_axis=channel_axis)
  acc = x.astype(dtypes.compute_dtype(out_dtype))
  # Summed pre-scaled by a power of two, as avg_pool: a box of huge values (1e38 in
  # float32) does not overflow before the division.
  largest = np.prod([max(e - s) for s, e in (adaptive_windows(L, o) for L, o in zip(sizes, outs))])
  scale = reduce_lib.sum_scale(int(largest))
  acc = acc * np.asarray(scale, acc.dtype)
  counts = np.ones((), np.int64)
  for axis, L, o in reversed(list(zip(axes, sizes, outs))):
    starts, ends = adaptive_windows(L, o)
    dim = separable.static_dim(axis, acc.ndim, starts, ends, stride=1)
    gathered = dim.gather(acc)
    if dim.valid is not None:
      gathered = jnp.where(dim.valid, gathered, 0)
    acc = jnp.sum(gathered, axis=axis + 1)
    counts = np.multiply.outer(ends - starts, counts)
  divisor = np.ones(acc.ndim, int)
  divisor[list(axes)] = outs
  return (acc / jnp.asarray(counts.reshape(divisor) * scale, acc.dtype)).astype(out_dtype)


def adaptive_max_pool(
  inputs: Any, output_size, *, return_indices: bool = False, channel_axis: int = -1
):
  r"""Adaptive max pooling: the maximum of PyTorch's adaptive windows.

  .. math:: y_{i} = \max_{j \in W_i} x_j,\qquad
            W_i = \prod_d [\lfloor i_d L_d/o_d \rfloor,\ \lceil (i_d+1)L_d/o_d \rceil)

  Exactly PyTorch's `adaptive_max_pool1d/2d/3d` (values, `return_indices`,
  gradient), for any input and output sizes, outputs larger than the input too.
  Each window selects its first maximal element in row-major order, or its last NaN
  (PyTorch's kernels); the gradient goes to that element only. Computed one spatial
  dim at a time (innermost first, which preserves the row-major selection): a
  reshape where `L % o == 0` (or :func:`jaxpool.max_pool` for small windows), a
  gather of static positions otherwise.

  Args:
    inputs: `(*batch, *spatial, features)`, or `(N, C, *spatial)` with
      `channel_axis=1`; the number of spatial dims is `len(output_size)`. Floating
      or integer dtype.
    output_size: the output size per spatial dim; `None` entries keep that dim's
      size. An int applies to every spatial dim, whose number is then
      `inputs.ndim - 2`.
    return_indices: also return, as PyTorch, the int32 flat row-major index of each
      selected element in its example's and channel's input plane.
    channel_axis: -1 (channels last) or 1 (channels first, PyTorch layout).

  Returns:
    The pooled array (same dtype), or `(values, indices)` with `return_indices`.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> x = jnp.array([1.0, 3.0, 3.0, 0.0, 2.0]).reshape(1, 5, 1)
    >>> y, i = jaxpool.adaptive_max_pool(x, (2,), return_indices=True)
    >>> y[0, :, 0], i[0, :, 0]   # windows [0,3) [2,5)
    (Array([3., 3.], dtype=float32), Array([1, 2], dtype=int32))
  """
  fn = "adaptive_max_pool"
  x = dtypes.pool_input(inputs, fn, integers=True)
  if not isinstance(return_indices, (bool, np.bool_)):
    raise TypeError(f"{fn}: return_indices must be a bool, got {return_indices!r}.")
  axes, _, sizes, outs = _output_sizes(output_size, x.shape, channel_axis, fn)
  window = tuple(L // o for L, o in zip(sizes, outs))
  if (
    not return_indices
    and all(L % o == 0 for L, o in zip(sizes, outs))
    and int(np.prod(window)) <= _MAX_POOL_WINDOW_LIMIT
  ):
    return reduce_lib.max_pool(x, window, window, channel_axis=channel_axis)
  strides = _plane_strides(sizes)
  dims = []
  for axis, L, o, stride in reversed(list(zip(axes, sizes, outs, strides))):
    starts, ends = adaptive_windows(L, o)
    dims.append(separable.static_dim(axis, x.ndim, starts, ends, stride))
  values, indices = separable.separable_max(x, dims, with_indices=return_indices)
  return (values, indices) if return_indices else values


# --- global pools ------------------------------------------------------------------


def _check_keepdims(keepdims, fn):
  if not isinstance(keepdims, (bool, np.bool_)):
    raise TypeError(f"{fn}: keepdims must be a bool, got {keepdims!r}.")


def global_avg_pool(
  inputs: Any,
  *,
  keepdims: bool = False,
  num_spatial_dims: int | None = None,
  channel_axis: int = -1,
) -> jax.Array:
  r"""Global average pooling: the mean over all spatial positions.

  .. math:: y_{b,c} = \frac{1}{|S|} \sum_{s \in S} x_{b,s,c}

  Lin, Chen & Yan 2014 ("Network in Network"). float16/bfloat16 sum in float32;
  integer inputs give the default float dtype.

  Args:
    inputs: `(*batch, *spatial, features)`, or `(N, C, *spatial)` with
      `channel_axis=1`.
    keepdims: keep the spatial dims with size 1 (as `adaptive_avg_pool(x, 1)`).
    num_spatial_dims: how many dims are spatial (those just before the features, or
      all after `C` with `channel_axis=1`). Default: all but one leading batch dim
      and the channel dim, i.e. `inputs.ndim - 2`.
    channel_axis: -1 (channels last) or 1 (channels first, PyTorch layout).

  Returns:
    `(*batch, features)` (`(N, C)`), or with `keepdims` the spatial dims as 1s.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> jaxpool.global_avg_pool(jnp.arange(8.0).reshape(1, 2, 2, 2))
    Array([[3., 4.]], dtype=float32)
  """
  fn = "global_avg_pool"
  x = dtypes.pool_input(inputs, fn, integers=True)
  _check_keepdims(keepdims, fn)
  axes = geometry.global_spatial_axes(x.shape, num_spatial_dims, channel_axis, fn)
  out_dtype = dtypes.mean_dtype(x.dtype)
  acc = x.astype(dtypes.compute_dtype(out_dtype))
  # Summed pre-scaled by a power of two, as avg_pool: no overflow of huge values.
  count = math.prod(x.shape[a] for a in axes)
  scale = reduce_lib.sum_scale(count)
  total = jnp.sum(acc * np.asarray(scale, acc.dtype), axis=axes, keepdims=keepdims)
  return (total / np.asarray(count * scale, acc.dtype)).astype(out_dtype)


def _flatten_spatial(x, axes):
  """Merge the contiguous spatial `axes` into one axis at `axes[0]`."""
  # The size written out: -1 cannot be inferred where a batch or channel dim is 0.
  merged = int(np.prod([x.shape[a] for a in axes]))
  return x.reshape(x.shape[: axes[0]] + (merged,) + x.shape[axes[-1] + 1 :])


def _restore(y, x, axes, keepdims):
  """`y` with the merged spatial axis removed (or kept as 1s)."""
  if keepdims:
    return y.reshape(x.shape[: axes[0]] + (1,) * len(axes) + x.shape[axes[-1] + 1 :])
  return y.reshape(x.shape[: axes[0]] + x.shape[axes[-1] + 1 :])


def global_max_pool(
  inputs: Any,
  *,
  keepdims: bool = False,
  num_spatial_dims: int | None = None,
  channel_axis: int = -1,
) -> jax.Array:
  r"""Global max pooling: the maximum over all spatial positions.

  .. math:: y_{b,c} = \max_{s \in S} x_{b,s,c}

  The gradient goes to the first maximal position in row-major order, or the last
  NaN (as `adaptive_max_pool(x, 1)` and PyTorch), not split among ties as
  `jnp.max`'s derivative does; a window holding a NaN gives NaN (XLA:CPU's
  `jnp.max` drops it). Floating or integer dtype. The forward pass is `jnp.max`
  and a sum (the NaN check); the selected position is searched only when
  differentiated (`axis_max.py`). A zero maximum has the sign `jnp.max` gives it
  (PyTorch returns the first zero's; -0.0 == 0.0).

  Args:
    inputs: `(*batch, *spatial, features)`, or `(N, C, *spatial)` with
      `channel_axis=1`.
    keepdims: keep the spatial dims with size 1.
    num_spatial_dims: how many dims are spatial; default `inputs.ndim - 2`.
    channel_axis: -1 (channels last) or 1 (channels first, PyTorch layout).

  Returns:
    `(*batch, features)` (`(N, C)`), or with `keepdims` the spatial dims as 1s.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> jaxpool.global_max_pool(jnp.arange(8.0).reshape(1, 2, 2, 2))
    Array([[6., 7.]], dtype=float32)
  """
  fn = "global_max_pool"
  x = dtypes.pool_input(inputs, fn, integers=True)
  _check_keepdims(keepdims, fn)
  axes = geometry.global_spatial_axes(x.shape, num_spatial_dims, channel_axis, fn)
  flat = _flatten_spatial(x, axes)
  return _restore(axis_max.first_max(flat, axes[0]), x, axes, keepdims)


def global_lp_pool(
  inputs: Any,
  p: float | jax.Array,
  *,
  keepdims: bool = False,
  num_spatial_dims: int | None = None,
  channel_axis: int = -1,
) -> jax.Array:
  r"""Global power-norm pooling: the :math:`L_p` norm over all spatial positions.

  .. math:: y_{b,c} = \Big(\sum_{s \in S} |x_{b,s,c}|^p\Big)^{1/p}
             = m \Big(\sum_{s} (|x_{b,s,c}| / m)^p\Big)^{1/p},\quad m = \max_s |x_{b,s,c}|

  (Boureau, Ponce & LeCun 2010; PyTorch's LPPool over the whole plane, for
  non-negative inputs and for even `p`.) For a fixed integral `p` from 1 to 64 the
  first form is summed directly (one pass, as the naive ``sqrt(sum(x**2))``) where
  that is exact up to rounding, checked per call; otherwise, and for every other
  `p`, the scaled second form, so no power overflows or underflows (inputs up to
  the dtype's maximum, any `p`). Both have their own custom JVP (`global_norm.py`):
  :math:`\partial y/\partial x_s = \mathrm{sign}(x_s) (|x_s|/y)^{p-1}`, taken as 0
  where :math:`x_s = 0` (so an all-zero input has a finite gradient 0, and
  `p <= 1` has no infinite gradient at zeros), and
  :math:`\partial y/\partial p` when `p` is traced. `p = inf` gives the max of
  :math:`|x|` (gradient to the first maximal position, times the sign).
  float16/bfloat16 compute in float32. This is independent of `jaxpool.lp_pool`
  (the window version), and equal to it with one window over the whole plane.

  Args:
    inputs: `(*batch, *spatial, features)`, or `(N, C, *spatial)` with
      `channel_axis=1`. Floating dtype (integers are converted to the default float).
    p: the exponent: a Python number > 0 or `inf`, or a traced scalar (then the
      result is differentiable in `p`; it must be finite and > 0).
    keepdims: keep the spatial dims with size 1.
    num_spatial_dims: how many dims are spatial; default `inputs.ndim - 2`.
    channel_axis: -1 (channels last) or 1 (channels first, PyTorch layout).

  Returns:
    `(*batch, features)` (`(N, C)`), or with `keepdims` the spatial dims as 1s.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> x = jnp.array([3.0, -4.0]).reshape(1, 2, 1)
    >>> jaxpool.global_lp_pool(x, 2.0)
    Array([[5.]], dtype=float32)
  """
  fn = "global_lp_pool"
  x = dtypes.pool_input(inputs, fn, integers=True)
  _check_keepdims(keepdims, fn)
  out_dtype = dtypes.mean_dtype(x.dtype)
  static_p = isinstance(p, numbers.Real) and not isinstance(p, bool)
  if static_p:
    if not p > 0:  # also rejects NaN
      raise ValueError(f"{fn}: p must be > 0 (or inf), got {p!r}.")
  elif isinstance(p, bool) or not (
    hasattr(p, "dtype") and jnp.ndim(p) == 0 and jnp.issubdtype(jnp.result_type(p), jnp.floating)
  ):
    raise TypeError(f"{fn}: p must be a Python number or a floating scalar array, got {p!r}.")
  axes = geometry.global_spatial_axes(x.shape, num_spatial_dims, channel_axis, fn)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(out_dtype)
  if static_p and np.isinf(p):
    flat = _flatten_spatial(x, axes)
    y = _restore(axis_max.first_max(flat, axes[0], True), x, axes, keepdims)
  else:
    # Over the spatial axes as they are, in x's dtype: the norm converts inside its
    # kernels (a flattened or converted copy passed to them would be written out).
    y = global_norm.lp_norm(x, float(p) if static_p else p, axes)
    if not keepdims:
      y = jnp.squeeze(y, axis=axes)
  return y.astype(out_dtype)


# --- spatial pyramid ----------------------------------------------------------------


def spatial_pyramid_pool(
  inputs: Any, levels=(1, 2, 4), *, mode: str = "max", channel_axis: int = -1
) -> jax.Array:
  r"""Spatial pyramid pooling (SPP-net): adaptive pools at several sizes, flattened.

  He, Zhang, Ren & Sun 2014, "Spatial Pyramid Pooling in Deep Convolutional Networks
  for Visual Recognition". For each level :math:`l`, the input is pooled to an
  :math:`l \times \dots \times l` grid by :func:`adaptive_max_pool` (or
  :func:`adaptive_avg_pool`), which gives a fixed-length vector for any input size:

  .. math:: y_b = \mathrm{concat}_{l}\ \mathrm{flatten}(\mathrm{pool}_l(x_b)),
            \quad \text{length } C \sum_l l^{n}

  (:math:`n` spatial dims). The bins are PyTorch's adaptive windows (the paper uses
  windows :math:`\lceil L/l \rceil` with stride :math:`\lfloor L/l \rfloor`, which can
  give fewer bins; adaptive bins always give exactly :math:`l`).

  Flatten order (PyTorch-style, channel-major within a level, in both layouts):
  level after level, in the order of `levels`; within a level, feature
  `offset_l + c * l^n + row-major bin index`, i.e. the `(C, l, ..., l)` block
  flattened, as `torch.cat([F.adaptive_max_pool2d(x, l).flatten(1) for l in
  levels], 1)` gives for `(N, C, H, W)` inputs.

  Args:
    inputs: `(N, *spatial, features)`, or `(N, C, *spatial)` with
      `channel_axis=1`: one leading batch dim, `inputs.ndim - 2` spatial dims.
    levels: the grid sizes, ints >= 1 (e.g. `(1, 2, 4)`: 21 bins per channel in
      2-D), or per-dim sequences such as `(2, 3)` for a 2 x 3 grid.
    mode: "max" (the paper) or "avg".
    channel_axis: -1 (channels last) or 1 (channels first, PyTorch layout).

  Returns:
    `(N, C * sum(prod(level)))`.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> jaxpool.spatial_pyramid_pool(jnp.ones((2, 13, 9, 8)), (1, 2, 4)).shape
    (2, 168)
  """
  fn = "spatial_pyramid_pool"
  x = dtypes.pool_input(inputs, fn, integers=True)
  if mode not in ("max", "avg"):
    raise ValueError(f"{fn}: mode must be 'max' or 'avg', got {mode!r}.")
  n = geometry.default_num_spatial_dims(x.shape, channel_axis, fn)
  if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence) or not levels:
    raise TypeError(f"{fn}: levels must be a non-empty sequence of grid sizes, got {levels!r}.")
  grids = []
  for level in levels:
    grid = (level,) * n if geometry.is_int(level) else level
    if (
      isinstance(grid, (str, bytes))
      or not isinstance(grid, Sequence)
      or len(grid) != n
      or not all(geometry.is_int(g) and g >= 1 for g in grid)
    ):
      raise ValueError(
        f"{fn}: each level must be an int >= 1 or a sequence of {n} ints >= 1, got "
        f"{level!r} in levels={levels!r}."
      )
    grids.append(tuple(grid))
  pool = adaptive_max_pool if mode == "max" else adaptive_avg_pool
  axes, channel = geometry.spatial_axes(x.shape, n, channel_axis, fn)
  # Everything the adaptive pools below would refuse is checked here, so that every
  # error names spatial_pyramid_pool.
  if any(x.shape[a] < 1 for a in axes):
    raise ValueError(f"{fn}: every spatial dim must be non-empty, got inputs of shape {x.shape}.")
  features = []
  for grid in grids:
    y = cast(jax.Array, pool(x, grid, channel_axis=channel_axis))  # no return_indices
    if channel != 1:
      y = jnp.moveaxis(y, channel, 1)  # (N, C, *grid): channel-major flatten
    features.append(y.reshape(y.shape[0], int(np.prod(y.shape[1:]))))  # not -1: N may be 0
  return jnp.concatenate(features, axis=1)
