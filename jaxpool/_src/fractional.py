"""Fractional max pooling (Graham 2014), with PyTorch's random window sequence.

Two forms with the same values and indices. A forward-only call reads every window
from static candidate positions (`_candidate_starts`: the few starts the float32
window formula can give each window) and selects by an elementwise chain over
them (`_stage`), faster than gathers and than PyTorch's kernel (case: 2x2 windows,
ratio 0.5, on a 2d_2x2s2 input). Under differentiation (`jvp`, `grad`)
the per-plane gathers of `separable.separable_max`, whose selection JAX transposes
into one pass; the candidates' static takes would transpose into scatters.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxpool._src import dtypes
from jaxpool._src import geometry
from jaxpool._src import keys
from jaxpool._src import separable


def _per_dim(value, n: int, name: str, fn: str, kind) -> tuple:
  if isinstance(value, kind) and not isinstance(value, bool):
    return (value,) * n
  if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != n:
    raise TypeError(
      f"{fn}: {name} must be a number or a sequence of {n} numbers (one per spatial "
      f"dim), got {value!r}."
    )
  if not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
    raise TypeError(f"{fn}: {name} has an entry of the wrong type: {value!r}.")
  return tuple(value)


def _output_sizes(sizes, window, output_size, output_ratio, fn):
  n = len(sizes)
  if (output_size is None) == (output_ratio is None):
    raise ValueError(
      f"{fn}: give exactly one of output_size and output_ratio, got output_size="
      f"{output_size!r} and output_ratio={output_ratio!r}."
    )
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
        f"spatial shape {sizes} (output_size={output_size!r}, output_ratio={output_ratio!r})."
      )
    if o + k - 1 > L:  # PyTorch's check; it makes every step of the sequence >= 1
      raise ValueError(
        f"{fn}: window {k} too large for input size {L} and output size {o}: need "
        f"output + window - 1 <= input (window_shape={window}, spatial shape {sizes}, "
        f"output {outs})."
      )
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


def fractional_max_pool(
  inputs: Any,
  window_shape,
  output_size=None,
  *,
  output_ratio=None,
  key: jax.Array | None = None,
  samples: jax.Array | None = None,
  overlapping: bool = False,
  return_indices: bool = False,
  channel_axis: int = -1,
):
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
    key: one `jax.random` key for the samples (typed, or the uint32 data of one;
      vmap over a batch of keys).
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
    u = jax.random.uniform(keys.random_key(key, fn), sample_shape, jnp.float32)
  else:
    u = dtypes.as_array(samples, fn, "samples")
    if not jnp.issubdtype(u.dtype, jnp.floating):
      raise TypeError(f"{fn}: samples must have a floating dtype, got {u.dtype}.")
    if u.shape != sample_shape:
      raise ValueError(
        f"{fn}: samples must have shape (*batch, C, n) = {sample_shape} for inputs of "
        f"shape {x.shape}, got {u.shape}."
      )
  u = jax.lax.stop_gradient(u)
  config = _Config(
    axes=tuple(axes),
    channel=channel,
    sizes=tuple(sizes),
    window=tuple(window),
    outs=outs,
    overlapping=bool(overlapping),
    with_indices=bool(return_indices),
    batch_ndim=len(batch_shape),
  )
  if jnp.issubdtype(x.dtype, jnp.floating):
    values, index = _fractional(x, u, config)
  else:  # integers have no derivative
    values, index = _by_candidates(x, u, config)
  return (values, index) if return_indices else values


@dataclasses.dataclass(frozen=True)
class _Config:
  """The static arguments of a fractional pool (see `fractional_max_pool`)."""

  axes: tuple[int, ...]
  channel: int
  sizes: tuple[int, ...]
  window: tuple[int, ...]
  outs: tuple[int, ...]
  overlapping: bool
  with_indices: bool
  batch_ndim: int

  def stages(self, u: jax.Array):
    """Per spatial dim, innermost first (PyTorch's row-major selection): (d, starts,
    ends), the windows [starts, ends) of every example and channel, (*batch, C, o)."""
    for d in reversed(range(len(self.axes))):
      size, k, o = self.sizes[d], self.window[d], self.outs[d]
      starts = fractional_starts(u[..., d], size, o, k)
      ends = starts + k
      if not self.overlapping and o > 1:
        ends = jnp.minimum(
          ends,
          jnp.concatenate(
            [starts[..., 1:], jnp.full(starts.shape[:-1] + (1,), size, jnp.int32)], axis=-1
          ),
        )
      yield d, starts, ends

  def stride(self, d: int) -> int:
    return int(np.prod(self.sizes[d + 1 :]))

  def per_window(self, a: jax.Array, d: int) -> jax.Array:
    """(*batch, C, o, ...) -> broadcastable against the array pooled along dim d,
    trailing axes of `a` after o kept after it."""
    n, lead = len(self.axes), self.batch_ndim
    # Channels first by position, not by index: a rank-2 (L, C) input has its
    # channels last at index 1.
    if self.channel < self.axes[0]:  # (N, C, 1.., o, ..., 1..)
      return a.reshape(a.shape[: lead + 1] + (1,) * d + a.shape[lead + 1 :] + (1,) * (n - 1 - d))
    a = jnp.moveaxis(a, lead, -1)  # (*batch, o, ..., C) -> (*batch, 1.., o, ..., 1.., C)
    return a.reshape(
      a.shape[:lead] + (1,) * d + a.shape[lead:-1] + (1,) * (n - 1 - d) + a.shape[-1:]
    )


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _fractional(x: jax.Array, u: jax.Array, config: _Config):
  return _by_candidates(x, u, config)


@_fractional.defjvp
def _fractional_jvp(config, primals, tangents):
  # Differentiated: the per-plane gathers of `separable.separable_max`, whose
  # selection is linear in the tangent and transposes into a pass of its own (the
  # candidates' static takes transpose into scatters, slower even with a custom
  # transpose reading the cotangents from the input side, where XLA:CPU writes every
  # take as a gather of its own; case: fractional_max_pool fwd+bwd, 2x2, ratio 0.5).
  x, u = primals
  return jax.jvp(lambda v: _by_separable(v, u, config), (x,), (tangents[0],))


def _by_candidates(x: jax.Array, u: jax.Array, config: _Config):
  """(values, flat indices or None) from static candidate windows (`_stage`)."""
  # Half precision compared in float32 (exact; XLA:CPU's half-precision compares and
  # selects convert every operand; case: bfloat16 forward, 2x2, ratio 0.5).
  values, index = x.astype(dtypes.compute_dtype(x.dtype)), None
  for d, starts, ends in config.stages(u):
    size, k, o = config.sizes[d], config.window[d], config.outs[d]
    lo, count = _candidate_starts(u.dtype, size, o, k)
    stage = _Stage(
      axis=config.axes[d],
      lo=tuple(int(v) for v in lo),
      span=count + k - 1,
      size=size,
      stride=config.stride(d),
    )
    values, index = _stage(
      values,
      index,
      config.per_window(starts, d),
      config.per_window(ends, d),
      stage,
      config.with_indices,
    )
  return dtypes.selected_back(values, x.dtype), index


def _by_separable(x: jax.Array, u: jax.Array, config: _Config):
  """(values, flat indices or None) by `separable.separable_max` over per-plane gathers."""
  dims = []
  for d, starts, ends in config.stages(u):
    k, o, axis = config.window[d], config.outs[d], config.axes[d]
    positions = starts[..., None] + jnp.arange(k, dtype=jnp.int32)  # (*batch, C, o, K)
    valid = (
      None if config.overlapping or o == 1 else config.per_window(positions < ends[..., None], d)
    )
    positions = config.per_window(positions, d)
    index = positions.reshape(positions.shape[:axis] + (o * k,) + positions.shape[axis + 2 :])

    def gather(a, index=index, axis=axis, o=o, k=k):
      g = jnp.take_along_axis(a, index, axis=axis, mode="clip")
      return g.reshape(g.shape[:axis] + (o, k) + g.shape[axis + 1 :])

    dims.append(
      separable.DimWindows(
        axis=axis, gather=gather, positions=positions, valid=valid, stride=config.stride(d)
      )
    )
  return separable.separable_max(x, dims, with_indices=config.with_indices)


@dataclasses.dataclass(frozen=True)
class _Stage:
  """The windows along one spatial dim: window i starts in [lo[i], lo[i] + span - window
  + 1) and ends by lo[i] + span (`_candidate_starts`); `axis` in the array, input
  length `size`, `stride` of the dim in the flat row-major plane."""

  axis: int
  lo: tuple[int, ...]
  span: int
  size: int
  stride: int

  def positions(self, j: int) -> np.ndarray:
    return np.asarray(self.lo, np.int64) + j

  def take(self, a: jax.Array, j: int) -> jax.Array:
    """Candidate j of every window: a static take along the axis (clipped in range)."""
    return jnp.take(a, np.minimum(self.positions(j), self.size - 1), axis=self.axis)

  def shaped(self, values: np.ndarray, ndim: int) -> jax.Array:
    shape = [1] * ndim
    shape[self.axis] = len(values)
    return jnp.asarray(values.reshape(shape), jnp.int32)


def _candidate_starts(dtype, size: int, out: int, window: int) -> tuple[np.ndarray, int]:
  """(lo, count): every start `fractional_starts` can give window i lies in [lo_i, lo_i +
  count), for any sample u in [0, 1).

  s_i = floor(fl((i + u) alpha)) - floor(fl(u alpha)) is floor(i alpha) or floor(i
  alpha) + 1 in exact arithmetic; each rounded product is off by less than
  (i + 1) alpha 2^-(mantissa - 1), which moves each floor by at most `m` (1 while
  that is below 1), and 0 <= s_i <= size - window.
  """
  if out == 1:
    return np.full((1,), size - window, np.int64), 1
  info = jnp.finfo(dtype)
  alpha = float(np.asarray(size - window, dtype) / np.asarray(out - 1, dtype))
  m = 1 + int(size * alpha * 2.0 ** -(info.nmant - 1))
  base = np.floor(np.arange(out) * alpha).astype(np.int64)
  lo = np.clip(base - 2 * m, 0, size - window)
  hi = np.clip(base + 1 + 2 * m, 0, size - window)
  lo[-1] = hi[-1] = size - window
  return lo, int((hi - lo).max()) + 1


def _stage(values, index, starts, ends, stage: _Stage, with_indices: bool):
  """(window maxima along the stage's axis, flat indices or None) for windows
  [starts, ends) (per example, channel and window, broadcast against `values`):
  each window's first maximal element or its last NaN (PyTorch's rule).

  The windows' elements are the static candidates of `_Stage.take`, and the selection
  is an elementwise chain over them: no gather with per-plane indices, no reduction
  (gathers and reductions over (o, K) windows took most of the forward's time; case:
  2x2 windows, ratio 0.5, on a 2d_2x2s2 input).
  """
  floating = jnp.issubdtype(values.dtype, jnp.floating)
  best = best_pos = nan = nan_pos = None
  for j in range(stage.span):
    candidate = stage.take(values, j)
    pos = stage.shaped(stage.positions(j), values.ndim)
    inside = (starts <= pos) & (pos < ends)
    if best is None:
      best, best_pos = candidate, jnp.where(inside, pos, -1)
    else:
      assert best_pos is not None  # set with best
      # the first maximal element: a later one only if strictly larger, or the first
      # one inside the window
      better = inside & ((candidate > best) | (best_pos < 0))
      best = jnp.where(better, candidate, best)
      best_pos = jnp.where(better, pos, best_pos)
    if floating:  # the last NaN, kept with its own bits
      is_nan = inside & jnp.isnan(candidate)
      nan = candidate if nan is None else jnp.where(is_nan, candidate, nan)
      nan_pos = jnp.where(is_nan, pos, -1 if nan_pos is None else nan_pos)
  assert best is not None and best_pos is not None  # stage.span >= 1: the loop ran
  if nan_pos is None:
    value, selected = best, best_pos
  else:
    assert nan is not None  # set with nan_pos
    has_nan = nan_pos >= 0
    value, selected = jnp.where(has_nan, nan, best), jnp.where(has_nan, nan_pos, best_pos)
  if not with_indices:
    return value, None
  inner = 0 if index is None else _gather_selected(index, selected, stage)
  return value, selected * stage.stride + inner


def _gather_selected(a: jax.Array, selected: jax.Array, stage: _Stage) -> jax.Array:
  """`a` at the selected position of every window along the stage's axis."""
  out = None
  for j in range(stage.span):
    candidate = stage.take(a, j)
    hit = selected == stage.shaped(stage.positions(j), a.ndim)
    out = candidate if out is None else jnp.where(hit, candidate, out)
  assert out is not None  # stage.span >= 1: the loop ran
  return out
