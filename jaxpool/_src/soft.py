r"""Softmax-weighted pooling: SoftPool and local importance pooling (LIP).

Stergiou, Poppe & Kalliatakis, "Refining activation downsampling with SoftPool",
ICCV 2021; Gao, Wang & Wu, "LIP: Local Importance-based Pooling", ICCV 2019.

Both are a weighted average of every window with weights :math:`e^{\ell_k}`:

.. math:: y_o = \frac{\sum_{k \in W_o} x_k e^{\ell_k}}{\sum_{k \in W_o} e^{\ell_k}}

Numerics: the exponentials are taken of :math:`\ell_k - m_o`, with :math:`m_o` the
window maximum of the logits (under `stop_gradient`: the ratio does not depend on
it), so the largest weight of every window is exactly 1, nothing overflows and the
denominator is at least 1. The windows are visited as strided slices of the padded
arrays (`PoolGeometry.window_element`), so the shift is exact per window; windows
that tile the input (stride = window, no dilation, no padding: the usual 2x2/2)
are instead axes of a reshaped input, which XLA handles faster, forward and
backward.
float16/bfloat16 are computed in float32 and the result cast back.

Padding: padded elements do not contribute at all (weight 0, i.e. logit
:math:`-\infty`): a padded window is the weighted average of its input elements
only. This is what the reference implementations get from zero-padded average
pools of :math:`x e^{\ell}` and :math:`e^{\ell}`. A window lying entirely in the
padding outputs 0.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxpool._src import dtypes
from jaxpool._src import geometry
from jaxpool._src.geometry import PaddingLike, PoolGeometry


def _floating(value: Any, name: str, fn: str) -> jax.Array:
  a = jnp.asarray(value)
  if not jnp.issubdtype(a.dtype, jnp.floating):
    raise TypeError(f"{fn}: {name} must have a floating dtype, got {a.dtype}.")
  return a


def _tiles(geom: PoolGeometry) -> bool:
  """The windows tile the input: stride = window, no dilation, no padding."""
  return (geom.strides == geom.window_shape and all(d == 1 for d in geom.dilation)
          and all(pad == (0, 0) for pad in geom.lax_padding))


def _blocks(a: jax.Array, geom: PoolGeometry) -> tuple[jax.Array, tuple[int, ...]]:
  """`a` with every spatial dim split into (output, window): the windows as axes.

  Only for tiling windows (`_tiles`). The elements past the last window (floor
  mode) are cropped. Returns the reshaped array and the window axes.
  """
  limit = list(a.shape)
  shape, window_axes = [], []
  for axis, size in enumerate(a.shape):
    if axis in geom.spatial_axes:
      i = geom.spatial_axes.index(axis)
      out, k = geom.output_spatial[i], geom.window_shape[i]
      limit[axis] = out * k
      window_axes.append(len(shape) + 1)
      shape += [out, k]
    else:
      shape.append(size)
  a = lax.slice(a, [0] * a.ndim, limit) if tuple(limit) != a.shape else a
  return a.reshape(shape), tuple(window_axes)


def _tiled_average(x: jax.Array, logits: jax.Array, geom: PoolGeometry) -> jax.Array:
  """`_weighted_average` for tiling windows: reductions over window axes.

  Same formula, with the windows as axes of a reshaped array instead of strided
  slices: XLA reduces and differentiates reshapes well (the strided slices' window
  scatter in the backward pass is the slow part of the general path).
  """
  x, axes = _blocks(x, geom)
  logits, _ = _blocks(logits, geom)
  m = lax.stop_gradient(jnp.max(logits, axis=axes, keepdims=True))
  m = jnp.where(jnp.isfinite(m), m, 0)  # all -inf windows: weights 0, output 0
  weight = jnp.exp(logits - m)
  numerator = jnp.sum(weight * x, axis=axes)
  denominator = jnp.sum(weight, axis=axes)
  positive = denominator > 0
  return jnp.where(positive, numerator / jnp.where(positive, denominator, 1), 0)


@functools.partial(jax.jit, static_argnums=2)  # one program per geometry, also eagerly
def _weighted_average(x: jax.Array, logits: jax.Array, geom: PoolGeometry) -> jax.Array:
  """sum_W x e^(l - m) / sum_W e^(l - m) per window, in the compute dtype."""
  dtype = jnp.promote_types(dtypes.compute_dtype(x.dtype), dtypes.compute_dtype(logits.dtype))
  x, logits = x.astype(dtype), logits.astype(dtype)
  if _tiles(geom):
    return _tiled_average(x, logits, geom)
  # Padding the logits with -inf gives padded elements the weight exp(-inf) = 0 with
  # a zero derivative (no where-masks, so no 0 * inf in the backward pass).
  padded_logits = geom.pad(logits, -np.inf)
  padded_x = geom.pad(x, 0)
  offsets = geom.window_offsets()
  # The window maximum of the logits, from the same strided slices as the sums.
  m = lax.stop_gradient(functools.reduce(
      jnp.maximum, [geom.window_element(padded_logits, k) for k in offsets]))
  m = jnp.where(jnp.isfinite(m), m, 0)  # all-padding windows (m = -inf) get weights 0
  numerator = denominator = None
  for offset in offsets:
    weight = jnp.exp(geom.window_element(padded_logits, offset) - m)
    term = weight * geom.window_element(padded_x, offset)
    numerator = term if numerator is None else numerator + term
    denominator = weight if denominator is None else denominator + weight
  # The denominator is >= 1 except for windows with no input element (0 there).
  positive = denominator > 0
  return jnp.where(positive, numerator / jnp.where(positive, denominator, 1), 0)


def lip_pool(inputs: Any, logits: Any, window_shape, strides=None,
             padding: PaddingLike = "VALID", *, dilation=None, ceil_mode: bool = False,
             channel_axis: int = -1) -> jax.Array:
  r"""Local importance pooling: a window average weighted by :math:`e^{\text{logits}}`.

  .. math:: y_o = \frac{\sum_{k \in W_o} x_k \, e^{\ell_k}}{\sum_{k \in W_o} e^{\ell_k}}

  Gao, Wang & Wu, "LIP: Local Importance-based Pooling", ICCV 2019. In the paper
  the logits :math:`\ell` are the output of a small learned network applied to the
  same features (the importance map is :math:`e^{\ell}`); this function takes them
  as an array, so any network (or none) can produce them. `logits = 0` gives the
  average of the input elements of each window (:func:`jaxpool.avg_pool` with
  `count_include_pad=False`); :func:`soft_pool` is `logits = inputs`.

  Stable for any finite logits (tested up to 1e4 in float32 and bfloat16): the
  window maximum of the logits is subtracted before the exponential. Padded
  elements do not contribute (weight 0), and a window entirely in the padding gives
  0. Differentiable in `inputs` and `logits` (plain autodiff, forward mode too,
  finite everywhere). The same in training and evaluation.

  Args:
    inputs: `(*batch, *spatial, C)`, or `(N, C, *spatial)` with `channel_axis=1`;
      a floating dtype.
    logits: the log-importance of every input element, an array broadcastable to
      the shape of `inputs` (e.g. one logit per position shared by all channels:
      `(*batch, *spatial, 1)`); a floating dtype.
    window_shape: window size per spatial dim, e.g. `(3, 3)`.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int, a sequence of ints or of `(low, high)` pairs.
    dilation: window dilation per spatial dim.
    ceil_mode: PyTorch's ceil_mode.
    channel_axis: -1 (channels last) or 1 (channels first).

  Returns:
    The pooled array in the dtype of `inputs` (computed in float32 for
    float16/bfloat16), shape of :func:`jaxpool.max_pool`'s output.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> x = jnp.array([[1.0], [3.0], [2.0], [6.0]])
    >>> logits = jnp.log(jnp.array([[1.0], [3.0], [1.0], [1.0]]))
    >>> jaxpool.lip_pool(x, logits, (2,), strides=2)[:, 0]   # (1 + 9) / 4, (2 + 6) / 2
    Array([2.5, 4. ], dtype=float32)
  """
  fn = "lip_pool"
  x = _floating(inputs, "inputs", fn)
  ell = _floating(logits, "logits", fn)
  try:
    ok = np.broadcast_shapes(ell.shape, x.shape) == x.shape
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(
        f"{fn}: logits must be broadcastable to the shape of inputs {x.shape}, got shape "
        f"{ell.shape}.")
  geom = geometry.resolve(x.shape, window_shape, strides, padding, dilation=dilation,
                          ceil_mode=ceil_mode, channel_axis=channel_axis, fn=fn)
  return _weighted_average(x, jnp.broadcast_to(ell, x.shape), geom).astype(x.dtype)


def soft_pool(inputs: Any, window_shape, strides=None, padding: PaddingLike = "VALID", *,
              dilation=None, ceil_mode: bool = False, channel_axis: int = -1) -> jax.Array:
  r"""SoftPool: every window's softmax-weighted sum of its own elements.

  .. math:: y_o = \sum_{k \in W_o} \frac{e^{x_k}}{\sum_{j \in W_o} e^{x_j}} \, x_k

  Stergiou, Poppe & Kalliatakis, "Refining activation downsampling with SoftPool",
  ICCV 2021. It lies between the window average (of the input elements) and the
  window maximum, is differentiable everywhere, and every element gets a gradient.
  It is :func:`lip_pool` with `logits = inputs`; stable for inputs up to 1e4 and
  beyond in float32 and bfloat16 (the window maximum is subtracted before the
  exponential). Padded elements do not contribute; a window entirely in the
  padding gives 0. The same in training and evaluation.

  Args:
    inputs: `(*batch, *spatial, C)`, or `(N, C, *spatial)` with `channel_axis=1`;
      a floating dtype.
    window_shape: window size per spatial dim, e.g. `(2, 2)`.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int, a sequence of ints or of `(low, high)` pairs.
    dilation: window dilation per spatial dim.
    ceil_mode: PyTorch's ceil_mode.
    channel_axis: -1 (channels last) or 1 (channels first).

  Returns:
    The pooled array in the dtype of `inputs`, shape of :func:`jaxpool.max_pool`'s
    output.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> x = jnp.array([[0.0], [0.0], [1e4], [-1e4]])
    >>> jaxpool.soft_pool(x, (2,), strides=2)[:, 0]
    Array([    0., 10000.], dtype=float32)
  """
  x = _floating(inputs, "inputs", "soft_pool")
  geom = geometry.resolve(x.shape, window_shape, strides, padding, dilation=dilation,
                          ceil_mode=ceil_mode, channel_axis=channel_axis, fn="soft_pool")
  return _weighted_average(x, x, geom).astype(x.dtype)
