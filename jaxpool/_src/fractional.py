"""Fractional max pooling (Graham 2014), with PyTorch's random window sequence.

Two forms with the same values and indices. A forward-only call reads every window
from static candidate positions (`_candidate_starts`: the few starts the window
formula can give each window, exactly for float32/float64 samples) and selects by
an elementwise chain over them (`_stage`), faster than gathers and than PyTorch's
kernel (case: 2x2 windows, ratio 0.5, on a 2d_2x2s2 input). Under differentiation
(`jvp`, `grad`): where every dim's candidates are strided slices (ratio 1/2 on even
sizes, the common case), the same chain, whose derivative reads the cotangents at
the selected positions from the input side (`_selected_tangent`); otherwise the
per-plane gathers of `separable.separable_max`, whose selection JAX transposes into
one pass (the candidates' static takes would transpose into scatters).
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

from jaxpool._src.machinery import dtypes
from jaxpool._src.machinery import geometry
from jaxpool._src.machinery import keys
from jaxpool._src.machinery import separable
from jaxpool._src.machinery import views


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
    starts, so no two windows share an element. (Float rounding of the sequence can
    make :math:`s_{i+1} \le s_i` for a sample just below 1; that window keeps its
    first element, :math:`[s_i, s_i + 1)`.) With :math:`k \ge \lceil\alpha\rceil`
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
    values, index, _ = _by_candidates(x, u, config)
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
        following = jnp.concatenate(
          [starts[..., 1:], jnp.full(starts.shape[:-1] + (1,), size, jnp.int32)], axis=-1
        )
        # at least the window's first element where rounding makes the next start
        # equal to this one (or smaller)
        ends = jnp.minimum(ends, jnp.maximum(following, starts + 1))
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
  return _by_candidates(x, u, config)[:2]


@_fractional.defjvp
def _fractional_jvp(config, primals, tangents):
  x, u = primals
  stages = [_stage_of(config, d, u.dtype) for d in reversed(range(len(config.axes)))]
  if any(stage.step is None for stage in stages):
    # The per-plane gathers of `separable.separable_max`, whose selection JAX
    # transposes into a pass of its own: the candidates' static takes would
    # transpose into scatters, which XLA:CPU runs as one gather per take.
    return jax.jvp(lambda v: _by_separable(v, u, config), (x,), (tangents[0],))
  # Every dim's candidates are strided slices (e.g. ratio 1/2 on even sizes): the
  # tangent is read at each stage's selected positions (in memory once,
  # `views.materialize`, not recomputed by every reader) by `_selected_tangent`.
  values, index, selections = _by_candidates(x, u, config)
  values = views.pooled(values, x)
  t = tangents[0]
  for stage, selected in zip(stages, selections):
    t = _selected_tangent(t, views.materialize(selected, x), stage)
  return (values, index), (t, None if index is None else np.zeros(index.shape, jax.dtypes.float0))


def _stage_of(config: _Config, d: int, sample_dtype) -> _Stage:
  """The candidate windows of spatial dim `d` for samples of `sample_dtype`."""
  size, k, o = config.sizes[d], config.window[d], config.outs[d]
  lo, count = _candidate_starts(np.dtype(sample_dtype), size, o, k)
  return _Stage(
    axis=config.axes[d],
    lo=tuple(int(v) for v in lo),
    span=count + k - 1,
    size=size,
    stride=config.stride(d),
  )


def _by_candidates(x: jax.Array, u: jax.Array, config: _Config):
  """(values, flat indices or None, selections) from static candidate windows
  (`_stage`); selections: the selected position of every window of each stage."""
  # Half precision compared in float32 (exact; XLA:CPU's half-precision compares and
  # selects convert every operand; case: bfloat16 forward, 2x2, ratio 0.5).
  values, index, selections = x.astype(dtypes.compute_dtype(x.dtype)), None, []
  for d, starts, ends in config.stages(u):
    values, index, selected = _stage(
      values,
      index,
      config.per_window(starts, d),
      config.per_window(ends, d),
      _stage_of(config, d, u.dtype),
      config.with_indices,
    )
    selections.append(selected)
  values = dtypes.selected_back(values, x.dtype)
  return values, index, selections


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

  @property
  def step(self) -> int | None:
    """The common difference of `lo` when it is an arithmetic progression (then
    every candidate is a strided slice), else None."""
    steps = set(np.diff(self.lo).tolist())
    if len(self.lo) == 1:
      return 1
    return steps.pop() if len(steps) == 1 and min(steps) >= 1 else None

  def positions(self, j: int) -> np.ndarray:
    return np.asarray(self.lo, np.int64) + j

  def take(self, a: jax.Array, j: int) -> jax.Array:
    """Candidate j of every window along the axis (positions past the input read its
    last element: they are never inside a window)."""
    step = self.step
    if step is None:  # a static take: XLA:CPU runs it as a gather
      return jnp.take(a, np.minimum(self.positions(j), self.size - 1), axis=self.axis)
    # A strided slice: fuses into the selection's loop, and transposes into a pad.
    start, count = self.lo[0] + j, len(self.lo)
    inside = min(count, max(0, (self.size - 1 - start) // step + 1))
    parts = []
    if inside:
      parts.append(
        jax.lax.slice_in_dim(a, start, start + (inside - 1) * step + 1, step, axis=self.axis)
      )
    if inside < count:
      last = jax.lax.slice_in_dim(a, self.size - 1, self.size, axis=self.axis)
      shape = list(a.shape)
      shape[self.axis] = count - inside
      parts.append(jnp.broadcast_to(last, shape))
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=self.axis)

  def shaped(self, values: np.ndarray, ndim: int) -> jax.Array:
    shape = [1] * ndim
    shape[self.axis] = len(values)
    return jnp.asarray(values.reshape(shape), jnp.int32)


@functools.lru_cache(maxsize=256)
def _candidate_starts(dtype: np.dtype, size: int, out: int, window: int) -> tuple[np.ndarray, int]:
  """(lo, count): every start `fractional_starts` can give window i, for any sample u
  in [0, 1) of `dtype`, lies in [lo_i, lo_i + count).

  float32/float64: the exact range (`_exact_start_range`). Other dtypes, whose
  arithmetic XLA may carry out in float32 (excess precision), a bound: s_i =
  floor(fl((i + u) alpha)) - floor(fl(u alpha)) is floor(i alpha) or floor(i alpha)
  + 1 in exact arithmetic; each rounded product is off by less than (i + 1) alpha
  2^-(mantissa - 1), which moves each floor by at most `m` (1 while that is below
  1), and 0 <= s_i <= size - window.
  """
  if out == 1:
    return np.full((1,), size - window, np.int64), 1
  if np.dtype(dtype) in (np.dtype(np.float32), np.dtype(np.float64)):
    lo, hi = _exact_start_range(np.dtype(dtype), size, out, window)
  else:
    info = jnp.finfo(dtype)
    alpha = float(np.asarray(size - window, dtype) / np.asarray(out - 1, dtype))
    m = 1 + int(size * alpha * 2.0 ** -(info.nmant - 1))
    base = np.floor(np.arange(out - 1) * alpha).astype(np.int64)
    lo = np.clip(base - 2 * m, 0, size - window)
    hi = np.clip(base + 2 * m + 1, 0, size - window)
  lo = np.append(lo, size - window)  # the last window is fixed
  return lo, int((np.append(hi, size - window) - lo).max()) + 1


def _exact_start_range(dtype: np.dtype, size: int, out: int, window: int):
  """(min, max) over every u in [0, 1) of `dtype` of the starts s_i, i < out - 1, as
  `fractional_starts` computes them (IEEE arithmetic in `dtype`, as XLA runs it).

  s_i(u) = F_i(u) - G(u) with F_i(u) = floor(fl(fl(i + u) alpha)) and G(u) =
  floor(fl(u alpha)), both non-decreasing step functions of u (rounding is
  monotone), so s_i is constant between consecutive jumps of F_i and G: its values
  are those at u = 0 and at every jump. The jumps are found by bisection over the
  bit patterns of u, which order non-negative floats as their values.
  """
  bits_type = {4: np.uint32, 8: np.uint64}[dtype.itemsize]
  top = int(np.asarray(1, dtype).view(bits_type)) - 1  # the largest u below 1
  alpha = np.asarray(size - window, dtype) / np.asarray(out - 1, dtype)
  i_all = np.arange(out - 1)

  def u_of(b):
    return np.asarray(b, np.int64).astype(bits_type).view(dtype)

  def g(b):
    return np.floor(u_of(b) * alpha).astype(np.int64)

  def f(b, i):
    return np.floor((i.astype(dtype) + u_of(b)) * alpha).astype(np.int64)

  def first_reaching(h, targets):  # least b in [0, top] with h(b) >= target
    lo, hi = np.zeros(targets.shape, np.int64), np.full(targets.shape, top, np.int64)
    for _ in range(top.bit_length()):
      mid = (lo + hi) // 2
      reached = h(mid) >= targets
      lo, hi = np.where(reached, lo, mid + 1), np.where(reached, mid, hi)
    return hi

  g_jumps = first_reaching(g, np.arange(int(g(0)) + 1, int(g(top)) + 1))
  f_first, f_last = f(np.zeros_like(i_all), i_all), f(np.full_like(i_all, top), i_all)
  jumps = f_last - f_first  # F_i's jumps: to f_first + 1, ..., f_last
  owner = np.repeat(i_all, jumps)
  rank = np.arange(jumps.sum()) - np.repeat(np.cumsum(jumps) - jumps, jumps)
  f_jumps = first_reaching(lambda b: f(b, owner), f_first[owner] + rank + 1)
  at = np.concatenate([[0], g_jumps])
  s = f(at[None, :], i_all[:, None]) - g(at)[None, :]
  lo, hi = s.min(axis=1), s.max(axis=1)
  own = f(f_jumps, owner) - g(f_jumps)
  np.minimum.at(lo, owner, own)
  np.maximum.at(hi, owner, own)
  return lo, hi


def _stage(values, index, starts, ends, stage: _Stage, with_indices: bool):
  """(window maxima along the stage's axis, flat indices or None, the selected
  positions along the axis) for windows
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
    return value, None, selected
  inner = 0 if index is None else _gather_selected(index, selected, stage)
  return value, selected * stage.stride + inner, selected


def _selected_tangent(t: jax.Array, selected: jax.Array, stage: _Stage) -> jax.Array:
  """`t` at the selected position of every window along the stage's axis (linear in
  `t`), written as the transpose of `_add_at_selected`.

  So JAX's transpose of it, the backward pass, is `_add_at_selected` itself, which
  reads the cotangents from the input side; the transpose of the direct form (strided
  slices and selects, `_gather_selected`) adds interior pads that XLA:CPU fuses
  poorly (case: fractional_max_pool fwd+bwd, 2x2, ratio 0.5).
  """
  out = jax.ShapeDtypeStruct(selected.shape, t.dtype)
  (tangent,) = jax.linear_transpose(lambda g: _add_at_selected(g, selected, stage), out)(t)
  return tangent


def _add_at_selected(g: jax.Array, selected: jax.Array, stage: _Stage) -> jax.Array:
  """Per input position p along the stage's axis (whose candidates are strided
  slices, `_Stage.step`), the sum of `g` over the windows that selected p.

  Position p = lo_0 + q step + r can only be candidate j = r + m step of window
  q - m, so each residue r adds up a few shifted copies of `g` masked by
  `selected == p`; the residues are interleaved back into the axis.
  """
  axis, step, span, size, lo0 = stage.axis, stage.step, stage.span, stage.size, stage.lo[0]
  assert step is not None  # only for strided candidates
  rows = -(-(size - lo0) // step)  # q in [0, rows)
  q = jax.lax.broadcasted_iota(
    jnp.int32, tuple(rows if d == axis else 1 for d in range(g.ndim)), axis
  )
  zero = jnp.zeros((), g.dtype)
  residues = []
  for r in range(step):
    total = jnp.zeros(g.shape[:axis] + (rows,) + g.shape[axis + 1 :], g.dtype)
    for m in range(0, (span - 1 - r) // step + 1) if r < span else ():
      hit = _shifted(selected, m, rows, axis, -1) == lo0 + q * step + r
      total = total + jnp.where(hit, _shifted(g, m, rows, axis, 0), zero)
    residues.append(total)
  out = jnp.stack(residues, axis=axis + 1).reshape(
    g.shape[:axis] + (rows * step,) + g.shape[axis + 1 :]
  )
  return _padded(out, lo0, size - lo0 - rows * step, axis, 0)


def _shifted(a: jax.Array, m: int, length: int, axis: int, fill) -> jax.Array:
  """`a[q - m]` along `axis` for q in [0, length), `fill` outside `a`."""
  return _padded(a, m, length - a.shape[axis] - m, axis, fill)


def _padded(a: jax.Array, low: int, high: int, axis: int, fill) -> jax.Array:
  """`a` padded (negative: cropped) by `low`/`high` elements along `axis`."""
  config = [(0, 0, 0)] * a.ndim
  config[axis] = (low, high, 0)
  return jax.lax.pad(a, jnp.asarray(fill, a.dtype), config)


def _gather_selected(a: jax.Array, selected: jax.Array, stage: _Stage) -> jax.Array:
  """`a` at the selected position of every window along the stage's axis."""
  out = None
  for j in range(stage.span):
    candidate = stage.take(a, j)
    hit = selected == stage.shaped(stage.positions(j), a.ndim)
    out = candidate if out is None else jnp.where(hit, candidate, out)
  assert out is not None  # stage.span >= 1: the loop ran
  return out
