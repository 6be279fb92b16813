"""Strided views of pooling windows: the building blocks of the fused pooling passes.

A pooling window of K elements is visited as K *views*, one per window offset k:
element k of every window. Each view is a strided slice of the unpadded input
(`of_input`), padded onto the output grid (`on_windows`) where element k of some
windows lies in the padding; `padded_views` returns all of them. An elementwise
expression over the views (their max, a weighted sum, a draw) is one loop over the
output that XLA fuses completely, and its transpose (the VJP) is one pass over the
input: no (window x output) patch tensor, no padded copy of the input, no
select-and-scatter. Where windows tile the input (stride == window, no
dilation; `is_tiling`), `window_blocks` reshapes the input into (output, window)
blocks instead, whose transpose is a plain reshape. Linear maps of the views
whose transpose matters (the max-pool tangent gather, mixed, gated and soft
pooling's tangents, lp's exact gradient) take them from the stride phases of the
input instead (`phase_views`, `linear_views`): the transpose then evaluates only
the offsets of each element's own phase.

`materialize` and `pooled` are fusion barriers: XLA fuses an elementwise producer
into every reader, and for a view-based value with several readers (or a reader
that flattens it) recomputing it costs more than writing it once.

Used by reduce (max/min/sum/avg), lp, soft, mixed and stochastic pooling.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxpool._src.machinery.geometry import PoolGeometry


@dataclasses.dataclass(frozen=True)
class Element:
  """Where element `offset` of the windows lies inside the input (no padding).

  The windows `out_start:out_limit` (per dim, of the output) have this element
  inside the input, at `x[in_start:in_limit:strides]`; the other windows see
  padding there.
  """

  in_start: tuple[int, ...]
  in_limit: tuple[int, ...]
  in_strides: tuple[int, ...]
  out_start: tuple[int, ...]
  out_limit: tuple[int, ...]


def locate(geom: PoolGeometry, offset) -> Element | None:
  """The `Element` of `offset`, or None if every window has padding there."""
  in_start, in_limit = [0] * geom.ndim, list(geom.input_shape)
  in_strides, out_start, out_limit = [1] * geom.ndim, [0] * geom.ndim, list(geom.output_shape)
  for i, axis in enumerate(geom.spatial_axes):
    size, out, s = geom.input_shape[axis], geom.output_spatial[i], geom.strides[i]
    first = offset[i] * geom.dilation[i] - geom.padding[i][0]  # in window 0
    lo = -(first // s) if first < 0 else 0  # first window with first + o*s >= 0
    hi = min(out - 1, (size - 1 - first) // s)  # last window with first + o*s < size
    if hi < lo:
      return None
    in_start[axis], in_limit[axis], in_strides[axis] = first + lo * s, first + hi * s + 1, s
    out_start[axis], out_limit[axis] = lo, hi + 1
  return Element(
    tuple(in_start), tuple(in_limit), tuple(in_strides), tuple(out_start), tuple(out_limit)
  )


def on_windows(values: jax.Array, element: Element, geom: PoolGeometry, fill) -> jax.Array:
  """Pad `values` (on the windows `element` covers) to `output_shape` with `fill`."""
  config = [
    (lo, out - hi, 0)
    for lo, hi, out in zip(element.out_start, element.out_limit, geom.output_shape)
  ]
  if all(c == (0, 0, 0) for c in config):
    return values
  return lax.pad(values, jnp.asarray(fill, values.dtype), config)


def of_windows(values: jax.Array, element: Element) -> jax.Array:
  """The windows `element` covers, of an output-shaped array."""
  return lax.slice(values, element.out_start, element.out_limit)


def of_input(x: jax.Array, element: Element) -> jax.Array:
  """Element `offset` of the windows `element` covers, a strided slice of `x`."""
  return lax.slice(x, element.in_start, element.in_limit, element.in_strides)


def padded_views(x: jax.Array, geom: PoolGeometry, fill) -> list[tuple[int, jax.Array]]:
  """`(k, element k of every window)` for each offset `k` some window holds inside
  the input: a strided slice of the unpadded `x`, padded with `fill` onto the
  output grid where the window has padding there. No padded copy of `x` is
  written; XLA fuses each view into its consumer."""
  out = []
  for k, offset in enumerate(geom.window_offsets()):
    element = locate(geom, offset)
    if element is not None:
      out.append((k, on_windows(of_input(x, element), element, geom, fill)))
  return out


def view_arrays(x: jax.Array, geom: PoolGeometry, fill) -> list[jax.Array]:
  """The views of `padded_views` without their offsets: for uses that treat every
  offset alike (a max, a sum, a weighted average)."""
  return [view for _, view in padded_views(x, geom, fill)]


def phase_views(t: jax.Array, geom: PoolGeometry) -> list[tuple[int, jax.Array]]:
  """`padded_views(t, geom, 0)` taken from the stride phases of `t`: for linear uses.

  Along a dim with stride `s`, element `k` of window `o` sits at padded position
  `o * s + k * d = (o + q) * s + a` with `(q, a) = divmod(k * d, s)`: phase `a`
  (the positions `a, a + s, a + 2s, ...`) shifted by `q` windows. `t` is padded
  with zeros, reshaped to `(P, s)` per spatial dim and split (`lax.split`) into
  its phases; each view is a plain slice of one phase. Same values as
  `padded_views(t, geom, 0)`, but the transpose differs: JAX transposes a split
  into a concatenate, so the VJP of a linear map of these views computes every
  input element from the terms of its own phase only (4 of 9 at most for 3x3/2),
  where the transposed strided slices evaluate all K interior-padded terms per
  element (benchmark case: max_pool 2d_3x3s2_same fwd+bwd).
  The forward evaluation is slower than strided slices (index arithmetic of the
  pad and reshape), so forward passes keep `padded_views`.
  """
  pads, blocks_shape, phase_axis, phase_len = [], [], {}, {}
  for axis, size in enumerate(t.shape):
    if axis not in geom.spatial_axes:
      pads.append((0, 0, 0))
      blocks_shape.append(size)
      continue
    i = geom.spatial_axes.index(axis)
    s, d, k = geom.strides[i], geom.dilation[i], geom.window_shape[i]
    length = geom.output_spatial[i] + (k - 1) * d // s  # phase length P
    low = geom.padding[i][0]
    pads.append((low, length * s - low - size, 0))  # a negative high crops
    phase_axis[axis], phase_len[axis] = len(blocks_shape) + 1, length
    blocks_shape += [length, s]
  padded = lax.pad(t, jnp.zeros((), t.dtype), pads)
  phases = {(): padded.reshape(blocks_shape)}
  for axis in geom.spatial_axes:  # split every stride axis into its phases
    s = blocks_shape[phase_axis[axis]]
    phases = {
      key + (a,): piece
      for key, whole in phases.items()
      for a, piece in enumerate(lax.split(whole, (1,) * s, axis=phase_axis[axis]))
    }
  phase_shape = [phase_len.get(axis, size) for axis, size in enumerate(t.shape)]
  phases = {key: piece.reshape(phase_shape) for key, piece in phases.items()}
  out = []
  for k, offset in enumerate(geom.window_offsets()):
    if locate(geom, offset) is None:
      continue
    key, start = [], [0] * t.ndim
    for i, axis in enumerate(geom.spatial_axes):
      q, a = divmod(offset[i] * geom.dilation[i], geom.strides[i])
      key.append(a)
      start[axis] = q
    limit = [b + n for b, n in zip(start, geom.output_shape)]
    out.append((k, lax.slice(phases[tuple(key)], start, limit)))
  return out


def overlaps_twice(geom: PoolGeometry) -> bool:
  """Every input element lies in two or more windows on average, stride > 1: a
  window's K elements over the prod(strides) input elements each window adds
  (3x3/2 in 2-D and up; not 1-D 3/2, not stride 1)."""
  phases = math.prod(geom.strides)
  return phases > 1 and geom.window_size >= 2 * phases


def linear_views(t: jax.Array, geom: PoolGeometry) -> list[tuple[int, jax.Array]]:
  """`padded_views(t, geom, 0)` for a map linear in `t` whose transpose (VJP) matters.

  `phase_views`, whose transpose (a concatenate of per-phase sums) computes every
  input element from the terms of its own stride phase only, where the transposed
  strided slices evaluate all K interior-padded terms per element. Benchmark case:
  max/min, mixed, gated and soft_pool fwd+bwd 2d_3x3s2_same (CPU: :targets, GPU:
  :accelerator) and 3-D 3x3x3/2 pad 1.
  Only where a window has at least twice as many elements as there are phases
  (`prod(strides)`): for 1-D 3/2 windows (1.5 terms per element instead of 3) the
  concatenate costs more than it saves on CPU (benchmark case 1d_3s2), and with
  stride 1 both forms are the same shifted slices. And only where every spatial size
  is a multiple of its stride: otherwise the phases differ in length, the transpose
  crops the concatenate, and XLA:CPU's loop for that is slower than the strided
  views' (case: max_pool and mixed_pool 3x3/2 VALID fwd+bwd on odd sizes).
  """
  whole_phases = all(
    geom.input_shape[axis] % s == 0 for axis, s in zip(geom.spatial_axes, geom.strides)
  )
  if not overlaps_twice(geom) or not whole_phases:
    return padded_views(t, geom, 0)
  return phase_views(t, geom)


def materialize(a: jax.Array, source: jax.Array) -> jax.Array:
  """`a`, computed once into memory rather than fused into (and redone by) its users.

  XLA fuses an elementwise producer into each consumer loop, even one that reads
  every element several times (the transposed slices of an overlapping pool), and
  drops a bare `lax.optimization_barrier` on CPU before fusing. Nothing is fused
  across a conditional, though: on CPU `a` is returned by a `lax.cond` whose
  branches both return it (`_through_a_conditional`), which costs the producer's
  own write and nothing more. Elsewhere, where a conditional waits for its
  predicate on the host, `a` goes through a reduce-window of the identity
  (`_through_a_reduce_window`), which XLA does not fuse into its readers either.
  Exact, differentiable, any dtype.

  `source`: an array that `a` is computed from (the pool's input), whose first
  element the conditional's predicate reads. Not `a` itself: XLA would recompute
  that element of `a` in a second fusion, and what both fusions read (the padded
  views of gated pooling's gate) would be written to memory first.
  """
  if a.size == 0:
    return a
  if source.size == 0:
    source = a
  return lax.platform_dependent(
    a, source, cpu=_through_a_conditional, default=lambda a, source: _through_a_reduce_window(a)
  )


@jax.custom_jvp
def _through_a_conditional(a: jax.Array, source: jax.Array) -> jax.Array:
  """`a` as the output of a `lax.cond` both of whose branches return it.

  XLA removes a conditional whose branches are the same or whose predicate it
  knows, so one branch passes `a` through `lax.optimization_barrier` (also the
  identity), and the predicate is ``(b | 1) == 0`` for the bits ``b`` of the first
  element of `source`: never true, but only known when the program runs. The
  branch taken returns its operand's buffer (no copy), where a copy would cost a
  pass over the array (benchmark case: gated_pool and max_pool 2d_3x3s2_same fwd+bwd).

  Derivative: the identity on `a`'s tangent (no barrier there); `source` has
  none. Under `vmap` the whole batch goes through one conditional
  (`_batched_conditional`): JAX turns a `lax.cond` with a batched predicate into a
  select of both branches, which XLA fuses away, and with it the barrier (case: vmap
  of gated_pool's gradient, 3x3/2 SAME).
  """
  return _conditional(a, source)


@_through_a_conditional.defjvp
def _through_a_conditional_jvp(primals, tangents):
  a, source = primals
  return _through_a_conditional(a, source), tangents[0]


@jax.custom_batching.custom_vmap
def _conditional(a: jax.Array, source: jax.Array) -> jax.Array:
  first = jnp.ravel(source)[0]
  if jnp.issubdtype(first.dtype, jnp.complexfloating):
    first = jnp.real(first)
  if jnp.issubdtype(first.dtype, jnp.floating):
    first = lax.bitcast_convert_type(first, np.dtype(f"uint{8 * first.dtype.itemsize}"))
  elif first.dtype == jnp.bool_:
    first = first.astype(jnp.uint8)
  never = (first | 1) == 0
  return lax.cond(never, lax.optimization_barrier, lambda v: v, a)


@_conditional.def_vmap
def _batched_conditional(axis_size, in_batched, a, source):
  """The batch of `a` through one conditional, its predicate from all of `source`."""
  if not in_batched[0]:
    a = jnp.broadcast_to(a, (axis_size, *a.shape))
  return _conditional(a, source), True


def _through_a_reduce_window(a: jax.Array) -> jax.Array:
  """`a` as a reduce-window over a window of two (the element and one padding
  element): a min with the dtype's maximum as padding for integers, an `and` with
  True for booleans, a sum with 0 for inexact dtypes (x + 0 = x; -0.0 becomes
  0.0, which compares equal)."""
  if jnp.issubdtype(a.dtype, jnp.integer):
    init, op = np.asarray(np.iinfo(a.dtype).max, a.dtype), lax.min
  elif a.dtype == jnp.bool_:
    init, op = np.asarray(True), lax.bitwise_and
  else:
    init, op = np.asarray(0, a.dtype), lax.add
  out = lax.reduce_window(
    a[..., None],
    init,
    op,
    (1,) * a.ndim + (2,),
    (1,) * (a.ndim + 1),
    ((0, 0),) * a.ndim + ((0, 1),),
  )
  return out[..., 0]


def materialize_on_cpu(a: jax.Array, source: jax.Array) -> jax.Array:
  """`materialize(a, source)` on CPU; elsewhere `a` itself, left for XLA to fuse.

  For per-offset coefficients (an exponential of a window view) read by a
  transposed view: XLA:CPU would evaluate a fused coefficient for every input
  element and offset, while a GPU does that arithmetic for free and saves writing
  and re-reading K output-sized arrays (`lax.platform_dependent`, resolved when the
  program is lowered).
  """
  return lax.platform_dependent(a, source, cpu=materialize, default=lambda a, source: a)


def pooled(y: jax.Array, source: jax.Array) -> jax.Array:
  """A pool's output as its rules return it: written to memory once (`materialize`;
  `source` is the pool's input).

  Pools whose forward pass is a fusion of strided views (max/min, sum/avg, lp,
  soft, mixed, gated, stochastic) call this on their output inside their custom
  derivative rule, i.e. when they are differentiated (no derivative goes through
  it). Without it, XLA:CPU fuses the views into whatever reads the output, and a
  flatten there (pool -> dense, as in most CNNs) makes the fusion compute every
  view in the flattened index space (benchmark case: the training table, seed_cnn
  with max, avg, l2 and soft pooling, 2x2/2). Not in the plain
  forward pass, where the barrier of the time (a copy) made the forward of
  max/avg/l2 slower than flax's and the naive l2.

  On CPU only (`lax.platform_dependent`): on a GPU the barrier is an extra pass
  that buys nothing (benchmark case: 2d_2x2s2 fwd+bwd, configs/benchmark.py:
  accelerator, and the training table).
  """
  return materialize_on_cpu(y, source)


def is_tiling(geom: PoolGeometry) -> bool:
  """Windows tile the (padded) input: stride == window and no dilation, every dim."""
  return all(
    s == k and (d == 1 or k == 1) for k, s, d in zip(geom.window_shape, geom.strides, geom.dilation)
  )


def window_blocks(t: jax.Array, geom: PoolGeometry) -> tuple[jax.Array, list[int]]:
  """Tiling windows as blocks: `t` padded, trimmed and reshaped to `(..., O, k, ...)`.

  Each spatial dim of size `O * k` (after padding and trimming the rows no window
  reaches) is split into `(O, k)`. Returns the blocks and the positions of the `k`
  axes. Only pads, a slice and a reshape: their transposes fuse into one pass.
  """
  t = geom.pad(t, 0)
  limits = list(t.shape)
  for axis, out, k in zip(geom.spatial_axes, geom.output_spatial, geom.window_shape):
    limits[axis] = out * k
  if tuple(limits) != t.shape:
    t = lax.slice(t, [0] * t.ndim, limits)
  blocks, window_axes = [], []
  for axis, size in enumerate(t.shape):
    if axis in geom.spatial_axes:
      i = geom.spatial_axes.index(axis)
      blocks += [geom.output_spatial[i], geom.window_shape[i]]
      window_axes.append(len(blocks) - 1)
    else:
      blocks.append(size)
  return t.reshape(blocks), window_axes


def selected_in_blocks(index: jax.Array, ndim: int, window_axes, geom: PoolGeometry):
  """Boolean mask over `window_blocks`: the block position whose offset code
  (row-major in the window) equals `index` of its window."""
  code_shape = [1] * ndim
  for axis, k in zip(window_axes, geom.window_shape):
    code_shape[axis] = k
  code = np.arange(geom.window_size, dtype=index.dtype).reshape(code_shape)
  return jnp.expand_dims(index, window_axes) == code


def strided_window_sum(t: jax.Array, geom: PoolGeometry) -> jax.Array:
  """The window sum as a sum of strided views of `t` (padded back where needed).

  One fused elementwise pass, also for tiling windows: on CPU faster than XLA's
  reduce-window (benchmark cases: avg_pool 2d_2x2s2 and 2d_3x3s2_same forward).
  """
  if t.dtype in (jnp.bfloat16, jnp.float16):
    # Exact either way, but XLA's CPU code for a sum of padded half-precision terms
    # converts every term, where one conversion of the input suffices.
    return strided_window_sum(t.astype(jnp.float32), geom).astype(t.dtype)
  total = jnp.zeros(geom.output_shape, t.dtype)
  for view in view_arrays(t, geom, 0):
    total = total + view
  return total


def window_sum_by_views(t: jax.Array, geom: PoolGeometry) -> jax.Array:
  """The window sum written with reshapes (tiling windows) or strided slices.

  Equal to `geom.reduce_window(t, 0, lax.add)`; the tangent rule of sum/avg pooling
  on CPU (`reduce._window_sum_tangent`) and of lp's and soft's factorised forms,
  because its transpose (the VJP) is one fused broadcast pass (a reshape back for
  tiling windows, a sum of interior pads otherwise) instead of XLA's pad +
  reduce-window over the cotangent followed by full-size rescaling. Not
  `phase_views`: its K terms are shifts of one array, which XLA shares between
  the phases and writes to memory (benchmark case: 2d_3x3s2_same fwd+bwd).
  """
  if is_tiling(geom):
    blocks, window_axes = window_blocks(t, geom)
    return jnp.sum(blocks, axis=tuple(window_axes), dtype=t.dtype)
  return strided_window_sum(t, geom)
