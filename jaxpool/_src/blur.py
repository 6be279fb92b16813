r"""Anti-aliased downsampling: BlurPool.

Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019.

A strided pool aliases: it evaluates densely, then subsamples without a low-pass
filter. BlurPool separates the two: a dense pool (stride 1), then a fixed binomial
low-pass filter applied per channel with the stride,

.. math::

    \mathrm{MaxPool}_{k,s} \to \mathrm{Blur}_{f,s} \circ \mathrm{Max}_{k,1}, \qquad
    \mathrm{AvgPool}_{k,s} \to \mathrm{Blur}_{f,s} \circ \mathrm{Avg}_{k,1}, \qquad
    \text{strided conv} \to \mathrm{Blur}_{f,s} \circ \mathrm{Conv}_{k,1}

(the last with `pool="none"`: blur and subsample only, applied after a stride-1
convolution of your own). The filter of size :math:`f` is the outer product over
the spatial dims of the binomial row :math:`\binom{f-1}{i}`, :math:`i = 0..f-1`
(`[1]`, `[1, 1]`, `[1, 2, 1]`, `[1, 3, 3, 1]`, ...), normalised to sum to 1.

Padding of the blur, as Zhang's reference implementation: `floor((f - 1) / 2)`
before and `ceil((f - 1) / 2)` after every spatial dim, by reflection by default
(the edge element is not repeated, as `numpy.pad(mode="reflect")` and PyTorch's
`ReflectionPad`), so a constant image stays constant up to the border. The dense
pool itself has no padding (PyTorch's `MaxPool2d(kernel_size=2, stride=1)` in the
reference), so the output size is that of the strided pool :math:`k, s` without
padding: `floor((L - k) / s) + 1`, and `ceil(L / s)` for `pool="none"`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxpool._src.machinery import dtypes
from jaxpool._src.machinery import geometry
from jaxpool._src.machinery.window_dot import window_dot
from jaxpool._src.reduce import avg_pool
from jaxpool._src.reduce import max_pool

_POOLS = ("max", "avg", "none")
_PADDINGS = {"reflect": "reflect", "replicate": "edge", "zero": "constant"}
_MAX_FILTER_SIZE = 7  # the sizes of Zhang's reference: [1] ... [1, 6, 15, 20, 15, 6, 1]


def binomial_filter(filter_size: int, ndim: int) -> np.ndarray:
  """The normalised binomial low-pass filter of shape `(filter_size,) * ndim`."""
  row = np.array([math.comb(filter_size - 1, i) for i in range(filter_size)], np.float64)
  kernel = row
  for _ in range(ndim - 1):
    kernel = np.multiply.outer(kernel, row)
  return kernel / kernel.sum()


def _spatial_dims(x: jax.Array, strides: Any, channel_axis: Any) -> int:
  """How many spatial dims: len(strides), or all dims but batch and channel for an int."""
  if isinstance(strides, Sequence) and not isinstance(strides, (str, bytes)):
    return len(strides)
  if not geometry.is_int(strides):
    raise TypeError(
      f"blur_pool: strides must be an int or a sequence of ints (one per spatial "
      f"dimension), got {strides!r}."
    )
  if x.ndim < 3:
    raise ValueError(
      f"blur_pool: with an int strides the inputs must be (N, *spatial, C) or "
      f"(N, C, *spatial) of rank >= 3, got shape {x.shape}; pass strides as a tuple "
      "with one entry per spatial dimension for other layouts."
    )
  return x.ndim - 2


def _source(j: int, size: int, padding: str) -> int:
  """The input index that position `j` (outside [0, size)) of the padded axis copies."""
  if padding == "replicate":
    return min(max(j, 0), size - 1)
  if size == 1:
    return 0
  period = 2 * (size - 1)  # reflection without repeating the edge, as numpy.pad
  j %= period
  return j if j < size else period - j


def _blur_axis(
  y: jax.Array,
  row: np.ndarray,
  axis_index: int,
  stride: int,
  padding: str,
  base: geometry.PoolGeometry,
) -> jax.Array:
  """One separable pass: the 1-D filter `row` with `stride` along spatial dim `axis_index`.

  The value is `_blur_axis_direct`'s; the tangent is the transpose of
  `_blur_axis_adjoint` (`_blur_axis_by_adjoint`), so JAX's transpose of it, the
  backward pass, is the adjoint itself: per stride phase a few contiguous shifts of
  the cotangent, interleaved by a reshape, and the border rows folded back. The
  transpose of the direct form (strided slices and border fixes) is interior pads and
  row pads that XLA:CPU writes one by one (case: the training table, seed_cnn with
  blur); the plain forward keeps the direct form (case: blur_pool bfloat16 forward).
  """
  return _blur_pass(y, tuple(float(r) for r in row), axis_index, stride, padding, base)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3, 4, 5))
def _blur_pass(y, row, axis_index, stride, padding, base):
  return _blur_axis_direct(y, np.asarray(row), axis_index, stride, padding, base)


@_blur_pass.defjvp
def _blur_pass_jvp(row, axis_index, stride, padding, base, primals, tangents):
  (y,), (t,) = primals, tangents
  out = _blur_pass(y, row, axis_index, stride, padding, base)
  return out, _blur_axis_by_adjoint(
    t, np.asarray(row), base.spatial_axes[axis_index], stride, padding
  )


def _blur_axis_by_adjoint(
  y: jax.Array, row: np.ndarray, axis: int, stride: int, padding: str
) -> jax.Array:
  """The pass as `jax.linear_transpose` of `_blur_axis_adjoint` (linear in `y`)."""
  size = y.shape[axis]
  out_len = (size - 1) // stride + 1
  out_shape = y.shape[:axis] + (out_len,) + y.shape[axis + 1 :]
  adjoint = functools.partial(
    _blur_axis_adjoint, row=row, axis=axis, stride=stride, padding=padding, size=size
  )
  (out,) = jax.linear_transpose(adjoint, jax.ShapeDtypeStruct(out_shape, y.dtype))(y)
  return out


def _blur_axis_adjoint(
  g: jax.Array, *, row: np.ndarray, axis: int, stride: int, padding: str, size: int
) -> jax.Array:
  """The transpose of one blur pass, from the input side: `g` (the pass's output
  cotangent) to the cotangent of the `size` input rows.

  Padded row `p = j s + a` (phase `a`) gets `row[t] g[j - q]` from every tap
  `t = q s + a`; the phases are interleaved by a stack and a reshape, and the padded
  rows outside the input are added to the rows they copy (`_source`).
  """
  f, s, out_len = len(row), stride, g.shape[axis]
  lo, hi = (f - 1) // 2, f // 2
  phase_len = out_len + (f - 1) // s
  phases = []
  for a in range(s):
    total = None
    for t in range(a, f, s):
      q = t // s
      config = [(0, 0, 0)] * g.ndim
      config[axis] = (q, phase_len - out_len - q, 0)
      term = lax.pad(jnp.asarray(row[t], g.dtype) * g, jnp.zeros((), g.dtype), config)
      total = term if total is None else total + term
    if total is None:
      shape = list(g.shape)
      shape[axis] = phase_len
      total = jnp.zeros(shape, g.dtype)
    phases.append(total)
  stacked = jnp.stack(phases, axis=axis + 1)
  padded = stacked.reshape(g.shape[:axis] + (phase_len * s,) + g.shape[axis + 1 :])
  length = size + lo + hi
  if padded.shape[axis] >= length:
    padded = lax.slice_in_dim(padded, 0, length, axis=axis)
  else:
    config = [(0, 0, 0)] * g.ndim
    config[axis] = (0, length - padded.shape[axis], 0)
    padded = lax.pad(padded, jnp.zeros((), g.dtype), config)
  inside = lax.slice_in_dim(padded, lo, lo + size, axis=axis)
  if padding == "zero":
    return inside
  extra: dict[int, list[int]] = {}
  for j in [*range(-lo, 0), *range(size, size + hi)]:
    extra.setdefault(_source(j, size, padding), []).append(j + lo)
  pieces, start = [], 0
  for k in sorted(extra):
    if start < k:
      pieces.append(lax.slice_in_dim(inside, start, k, axis=axis))
    fixed = lax.slice_in_dim(inside, k, k + 1, axis=axis)
    for j in extra[k]:
      fixed = fixed + lax.slice_in_dim(padded, j, j + 1, axis=axis)
    pieces.append(fixed)
    start = k + 1
  if start < size:
    pieces.append(lax.slice_in_dim(inside, start, size, axis=axis))
  return lax.concatenate(pieces, axis)


def _blur_axis_direct(
  y: jax.Array,
  row: np.ndarray,
  axis_index: int,
  stride: int,
  padding: str,
  base: geometry.PoolGeometry,
) -> jax.Array:
  """One separable pass: the 1-D filter `row` with `stride` along spatial dim `axis_index`.

  The pass runs with zero padding (`window_dot`), then the few outputs whose window
  reaches into the padding get the reflected (or replicated) elements added: a
  handful of row slices instead of padding the whole array, whose gradient is
  several times slower on CPU. `base` gives the layout (spatial and channel axes).
  """
  f = len(row)
  n = len(base.spatial_axes)
  window = tuple(f if j == axis_index else 1 for j in range(n))
  steps = tuple(stride if j == axis_index else 1 for j in range(n))
  pads = tuple(((f - 1) // 2, f // 2) if j == axis_index else (0, 0) for j in range(n))
  # -1 for channels last: index 1 of a rank-2 (L, C) input would mean (N, C, L).
  channel_axis = -1 if base.channel_axis == base.ndim - 1 else 1
  geom = geometry.resolve(y.shape, window, steps, pads, channel_axis=channel_axis, fn="blur_pool")
  kernel = jnp.asarray(row.reshape((1,) + window + (1,)), y.dtype)
  out = window_dot(y, kernel, geom)[0]
  if padding == "zero":
    return out
  axis = geom.spatial_axes[axis_index]
  size, lo = y.shape[axis], pads[axis_index][0]
  pieces, start = [], 0  # rows of `out`, with corrections at the borders
  for o in range(geom.output_spatial[axis_index]):
    outside = [
      (float(row[t]), o * stride + t - lo) for t in range(f) if not 0 <= o * stride + t - lo < size
    ]
    if not outside:
      continue
    if start < o:
      pieces.append(lax.slice_in_dim(out, start, o, axis=axis))
    fix = sum(
      weight * lax.slice_in_dim(y, k, k + 1, axis=axis)
      for weight, k in ((w, _source(j, size, padding)) for w, j in outside)
    )
    pieces.append(lax.slice_in_dim(out, o, o + 1, axis=axis) + fix)
    start = o + 1
  if start < out.shape[axis]:
    pieces.append(lax.slice_in_dim(out, start, out.shape[axis], axis=axis))
  return lax.concatenate(pieces, axis)


def blur_pool(
  inputs: Any,
  strides,
  *,
  filter_size: int = 3,
  pool: str = "max",
  window_shape=None,
  padding: str = "reflect",
  channel_axis: int = -1,
) -> jax.Array:
  r"""BlurPool: a dense max (or avg) pool, then a binomial blur with the stride.

  .. math::

      z = \mathrm{pool}_{k, 1}(x), \qquad
      y_{o,c} = \sum_{j} b_j \, \tilde z_{s \cdot o + j, c}, \qquad
      b = \frac{r \otimes \dots \otimes r}{\sum r \otimes \dots \otimes r}, \quad
      r_i = \binom{f - 1}{i}

  where :math:`\tilde z` is :math:`z` padded by `floor((f-1)/2)` before and
  `ceil((f-1)/2)` after (reflection by default). Zhang, "Making Convolutional
  Networks Shift-Invariant Again", ICML 2019 (`MaxBlurPool`, `BlurPool`); the
  defaults are the reference implementation's (`MaxPool2d(kernel_size=2, stride=1)`,
  `filt_size=3`, reflection padding). Shifting the input by a multiple of the
  stride shifts the output by the quotient (away from the border); shifts by other
  amounts change the output much less than they change a strided max pool's.
  Differentiable in `inputs` (the max part routes its gradient as
  :func:`jaxpool.max_pool`). Same in training and evaluation.

  Args:
    inputs: `(*batch, *spatial, C)`, or `(N, C, *spatial)` with `channel_axis=1`;
      a floating dtype (float16/bfloat16 are filtered in float32).
    strides: the downsampling factor per spatial dim, or an int for all of them
      (then the inputs must have exactly one batch dim: `(N, *spatial, C)` or
      `(N, C, *spatial)`).
    filter_size: size :math:`f` of the binomial filter, 1 to 7 (1: no blur, plain
      subsampling; 2: `[1, 1] / 2`; 3: `[1, 2, 1] / 4` (default); ...).
    pool: the dense pool before the blur: "max" (default, MaxBlurPool), "avg", or
      "none" (blur and subsample only, BlurPool after a stride-1 convolution).
    window_shape: the window of the dense pool, default 2 in every spatial dim
      (Zhang's reference, whatever the strides). Ignored with `pool="none"`.
    padding: how the blur pads: "reflect" (default, Zhang's reference),
      "replicate" (repeat the edge) or "zero".
    channel_axis: -1 (channels last) or 1 (channels first).

  Returns:
    The downsampled array, dtype of `inputs`; spatial size `floor((L - k) / s) + 1`
    per dim (`ceil(L / s)` for `pool="none"`).

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> x = jnp.ones((1, 8, 8, 3))
    >>> y = jaxpool.blur_pool(x, 2)
    >>> y.shape, bool(jnp.allclose(y, 1.0))
    ((1, 4, 4, 3), True)
  """
  fn = "blur_pool"
  x = dtypes.pool_input(inputs, fn)
  if not geometry.is_int(filter_size) or not 1 <= filter_size <= _MAX_FILTER_SIZE:
    raise ValueError(
      f"{fn}: filter_size must be an int from 1 to {_MAX_FILTER_SIZE}, got {filter_size!r}."
    )
  if not isinstance(pool, str) or pool not in _POOLS:
    raise ValueError(f"{fn}: pool must be one of {_POOLS}, got {pool!r}.")
  if not isinstance(padding, str) or padding not in _PADDINGS:
    raise ValueError(f"{fn}: padding must be one of {tuple(_PADDINGS)}, got {padding!r}.")
  strides = geometry.from_numpy(strides)  # integer arrays, as the window pools take them
  n = _spatial_dims(x, strides, channel_axis)
  if window_shape is None:
    window_shape = (2,) * n

  dense = x
  if pool != "none":
    # Validates window_shape and channel_axis against the inputs, naming blur_pool.
    window = geometry.resolve(
      x.shape, window_shape, 1, "VALID", channel_axis=channel_axis, fn=fn
    ).window_shape
    if pool == "max":
      # The dense max one spatial dim at a time, the last first: each pass has k_i
      # views instead of prod(k) and the same values and gradient (the first maximum
      # in row-major order wins either way; case: the training table, seed_cnn with blur).
      dense = x
      for i in reversed(range(n)):
        window_i = tuple(k if j == i else 1 for j, k in enumerate(window))
        dense = max_pool(dense, window_i, 1, "VALID", channel_axis=channel_axis)
    else:
      dense = avg_pool(x, window_shape, 1, "VALID", channel_axis=channel_axis)

  y = dense.astype(dtypes.compute_dtype(dense.dtype))
  # Validates strides against the inputs, naming blur_pool.
  geom = geometry.resolve(y.shape, (1,) * n, strides, "VALID", channel_axis=channel_axis, fn=fn)
  # The binomial filter is separable: one 1-D pass (f taps, stride s_i) per spatial
  # dim costs n * f slices instead of f ** n (14 instead of 49 for f = 7 in 2-D). Padding one
  # dim at a time is exact: padding commutes with filtering along another dim.
  row = binomial_filter(filter_size, 1)
  for i in range(n):
    y = _blur_axis(y, row, i, geom.strides[i], padding, geom)
  return y.astype(x.dtype)
