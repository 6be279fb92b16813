"""Fractional max pooling (Graham 2014), with PyTorch's random window sequence."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxpool._src import dtypes
from jaxpool._src import geometry
from jaxpool._src import separable


def _per_dim(value, n: int, name: str, fn: str, kind) -> tuple:
  if isinstance(value, kind) and not isinstance(value, bool):
    return (value,) * n
  if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != n:
    raise TypeError(
        f"{fn}: {name} must be a number or a sequence of {n} numbers (one per spatial "
        f"dim), got {value!r}.")
  if not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
    raise TypeError(f"{fn}: {name} has an entry of the wrong type: {value!r}.")
  return tuple(value)


def _output_sizes(sizes, window, output_size, output_ratio, fn):
  n = len(sizes)
  if (output_size is None) == (output_ratio is None):
    raise ValueError(
        f"{fn}: give exactly one of output_size and output_ratio, got output_size="
        f"{output_size!r} and output_ratio={output_ratio!r}.")
  if output_size is not None:
    outs = _per_dim(output_size, n, "output_size", fn, numbers.Integral)
  else:
    ratios = _per_dim(output_ratio, n, "output_ratio", fn, numbers.Real)
    if not all(0 < r < 1 for r in ratios):
      raise ValueError(f"{fn}: output_ratio entries must lie in (0, 1), got {output_ratio!r}.")
    outs = tuple(int(L * float(r)) for L, r in zip(sizes, ratios))  # PyTorch: int(L * r)
  for L, k, o in zip(sizes, window, outs):
    if o < 1:
      raise ValueError(
          f"{fn}: the output size must be >= 1 in every spatial dim, got {outs} for "
          f"spatial shape {sizes} (output_size={output_size!r}, output_ratio={output_ratio!r}).")
    if o + k - 1 > L:  # PyTorch's check; it makes every step of the sequence >= 1
      raise ValueError(
          f"{fn}: window {k} too large for input size {L} and output size {o}: need "
          f"output + window - 1 <= input (window_shape={window}, spatial shape {sizes}, "
          f"output {outs}).")
  return tuple(int(o) for o in outs)


def fractional_starts(samples: jax.Array, size: int, out: int, window: int) -> jax.Array:
  """PyTorch's interval sequence for one spatial dim: window starts, shape `(..., out)`.

  `alpha = (size - window) / (out - 1)`, `start_i = floor((i + u) alpha) - floor(u
  alpha)` for `i < out - 1` and `start_{out-1} = size - window`, computed in the
  dtype of the samples `u` (float32 as PyTorch for float32 inputs).
  """
  u = samples[..., None]
  if out == 1:
    return jnp.full(samples.shape + (1,), size - window, jnp.int32)
  alpha = np.asarray(size - window, u.dtype) / np.asarray(out - 1, u.dtype)
  i = jnp.arange(out - 1, dtype=u.dtype)
  starts = jnp.floor((i + u) * alpha) - jnp.floor(u * alpha)
  last = jnp.full(samples.shape + (1,), size - window, u.dtype)
  return jnp.concatenate([starts, last], axis=-1).astype(jnp.int32)


def fractional_max_pool(inputs: Any, window_shape, output_size=None, *, output_ratio=None,
                        key: jax.Array | None = None, samples: jax.Array | None = None,
                        overlapping: bool = False, return_indices: bool = False,
                        channel_axis: int = -1):
  r"""Fractional max pooling: max over pseudo-random windows that shrink by any ratio.

  Graham 2014, "Fractional Max-Pooling" (arXiv:1412.6071), with the window sequence
  of PyTorch's `FractionalMaxPool2d/3d`. Along a spatial dim of input length
  :math:`L`, window size :math:`k` and output length :math:`o`, a sample
  :math:`u \in [0, 1)` gives the window starts

  .. math:: \alpha = \frac{L - k}{o - 1},\quad
            s_i = \lfloor (i + u)\alpha \rfloor - \lfloor u\alpha \rfloor
            \ (i < o - 1),\quad s_{o-1} = L - k,

  so :math:`s_0 = 0`, the steps :math:`s_{i+1} - s_i` are
  :math:`\lfloor\alpha\rfloor` or :math:`\lceil\alpha\rceil` (>= 1) in a random
  arrangement, and the windows span the input. An output takes the max over the box
  of its per-dim windows:

  * `overlapping=True`: window :math:`[s_i, s_i + k)` — PyTorch's rule exactly.
    Neighbours share elements wherever a step is smaller than :math:`k`: Graham's
    *overlapping* variant in PyTorch's fixed-window form (e.g. :math:`k = 2`,
    ratio :math:`1/\sqrt 2`).
  * `overlapping=False` (default): window :math:`[s_i, \min(s_i + k, s_{i+1}))`
    (the last one :math:`[L - k, L)`): the same windows cut where the next one
    starts, so no two windows share an element. With :math:`k \ge \lceil\alpha\rceil`
    (e.g. :math:`k = 2` and ratios in :math:`[1/2, 1)`) they tile the input: Graham's
    *disjoint* pooling regions :math:`[a_{i-1}, a_i - 1]` with :math:`a_i = s_i`.

  With :math:`k` smaller than a step, both variants skip the elements between
  windows (as PyTorch). Randomness: one sample per example, channel and spatial dim
  (PyTorch draws `_random_samples` of shape `(N, C, n)` the same way), drawn from
  `key` by `jax.random.uniform` in float32, so equal keys give equal windows; values
  differ from PyTorch's for the same seed because the generators differ. Passing the
  same `samples` reproduces PyTorch exactly (the sequence is computed in the samples'
  dtype, float32 as PyTorch for float32 inputs). Each window selects its first
  maximal element in row-major order, or its last NaN (PyTorch); the gradient goes
  to that element only. At test time Graham averages several draws (or fixes one);
  that is the caller's choice of key.

  Output size: `output_size`, or `int(L * ratio)` per dim from `output_ratio`
  (PyTorch); it must satisfy `output + window - 1 <= L`. So `output_ratio=0.5` on an
  even size :math:`L` gives :math:`L/2`, and with `window_shape` 2 every window is
  :math:`[2i, 2i + 2)` up to float rounding of the sequence: a 2 x 2 max pool.

  Args:
    inputs: `(*batch, *spatial, features)`, or `(N, C, *spatial)` with
      `channel_axis=1`; `len(window_shape)` spatial dims. Floating or integer dtype.
    window_shape: the window size :math:`k` per spatial dim, e.g. `(2, 2)`.
    output_size: output size per spatial dim (an int for all).
    output_ratio: output size / input size per spatial dim, in (0, 1) (a number
      for all). Exactly one of `output_size` and `output_ratio`.
    key: a `jax.random` key for the samples.
    samples: instead of `key`, the samples :math:`u \in [0, 1)` themselves, shape
      `(*batch, C, n)` in both layouts (batch dims of `inputs`, its channel count,
      one per spatial dim in order). PyTorch's `_random_samples` for 2-D inputs has
      the width sample first: pass `torch_samples[..., ::-1]` (3-D: the same order).
    overlapping: see above.
    return_indices: also return, as PyTorch, the int32 flat row-major index of each
      selected element in its example's and channel's input plane.
    channel_axis: -1 (channels last) or 1 (channels first, PyTorch layout).

  Returns:
    The pooled array (same dtype), or `(values, indices)` with `return_indices`.

  Example:
    >>> import jax, jax.numpy as jnp, jaxpool
    >>> x = jnp.ones((2, 25, 25, 3))
    >>> y = jaxpool.fractional_max_pool(x, (2, 2), output_ratio=0.7,
    ...                                 key=jax.random.key(0))
    >>> y.shape
    (2, 17, 17, 3)
  """
  fn = "fractional_max_pool"
  x = dtypes.pool_input(inputs, fn, integers=True)
  geom = geometry.resolve(x.shape, window_shape, channel_axis=channel_axis, fn=fn)
  if not isinstance(overlapping, (bool, np.bool_)):
    raise TypeError(f"{fn}: overlapping must be a bool, got {overlapping!r}.")
  if not isinstance(return_indices, (bool, np.bool_)):
    raise TypeError(f"{fn}: return_indices must be a bool, got {return_indices!r}.")
  axes, channel = geom.spatial_axes, geom.channel_axis
  sizes, window = geom.spatial_shape, geom.window_shape
  n = len(axes)
  outs = _output_sizes(sizes, window, output_size, output_ratio, fn)

  batch_shape = tuple(x.shape[a] for a in range(x.ndim) if a not in axes and a != channel)
  sample_shape = batch_shape + (x.shape[channel], n)
  if (key is None) == (samples is None):
    raise ValueError(f"{fn}: give exactly one of key and samples.")
  if key is not None:
    u = jax.random.uniform(key, sample_shape, jnp.float32)
  else:
    u = jnp.asarray(samples)
    if not jnp.issubdtype(u.dtype, jnp.floating):
      raise TypeError(f"{fn}: samples must have a floating dtype, got {u.dtype}.")
    if u.shape != sample_shape:
      raise ValueError(
          f"{fn}: samples must have shape (*batch, C, n) = {sample_shape} for inputs of "
          f"shape {x.shape}, got {u.shape}.")
  u = jax.lax.stop_gradient(u)

  def to_layout(a: jax.Array, d: int) -> jax.Array:
    """(*batch, C, o, K) -> broadcastable to the array gathered along spatial dim d."""
    if channel != 1:
      a = jnp.moveaxis(a, len(batch_shape), -1)  # (*batch, o, K, C)
    lead = len(batch_shape) + (1 if channel == 1 else 0)
    return a.reshape(a.shape[:lead] + (1,) * d + a.shape[lead:lead + 2] + (1,) * (n - 1 - d)
                     + a.shape[lead + 2:])

  strides = [int(np.prod(sizes[d + 1:])) for d in range(n)]
  dims = []
  for d in reversed(range(n)):  # innermost first: PyTorch's row-major selection
    L, k, o = sizes[d], window[d], outs[d]
    starts = fractional_starts(u[..., d], L, o, k)  # (*batch, C, o)
    positions = starts[..., None] + jnp.arange(k, dtype=jnp.int32)  # (*batch, C, o, K)
    valid = None
    if not overlapping and o > 1:
      ends = jnp.concatenate([starts[..., 1:], jnp.full(starts.shape[:-1] + (1,), L,
                                                          jnp.int32)], axis=-1)
      valid = to_layout(positions < ends[..., None], d)
    positions = to_layout(positions, d)
    index = positions.reshape(positions.shape[:axes[d]] + (o * k,) + positions.shape[axes[d] + 2:])

    def gather(a, index=index, axis=axes[d], o=o, k=k):
      g = jnp.take_along_axis(a, index, axis=axis, mode="clip")
      return g.reshape(g.shape[:axis] + (o, k) + g.shape[axis + 1:])

    dims.append(separable.DimWindows(axis=axes[d], gather=gather, positions=positions,
                                     valid=valid, stride=strides[d]))
  values, indices = separable.separable_max(x, dims, with_indices=return_indices)
  return (values, indices) if return_indices else values
