"""The classic window reductions: max_pool, min_pool, sum_pool, avg_pool.

`max_pool` and `min_pool` accept every call of `flax.linen.max_pool` / `min_pool`
and return the same values, except that a window holding a NaN always gives NaN
(PyTorch's rule; XLA's vectorized CPU reduce-window behind Flax may return a
number for a window holding NaNs). Windows of up to 64 elements are reduced as an
elementwise max over strided views of the input (one fused pass, faster than
XLA's CPU reduce-window). Their derivative is a custom JVP rule instead of
XLA's `select_and_gather_add` / `select_and_scatter_add` (which costs many
streaming passes on CPUs):

  * each window selects the *first* maximal element in row-major window order or,
    if it holds a NaN, the *last* NaN (exactly as PyTorch's kernels); padding never;
  * `selected_offset` packs that choice into one uint8 per output (the offset `k`
    in the window), computed once from strided slices of the unpadded input;
  * the tangent rule is `t_out[o] = t[window o, offset k[o]]` (`gather_selected`):
    for windows that tile the input (stride == window, no dilation) a reshape to
    `(out, k)` blocks and a compare with the broadcast offset code; otherwise the
    sum over offsets of `where(k == offset, view k of t, 0)`, the views taken
    from the stride phases of `t` (`views.linear_views`).

The rule is linear in the tangent, so JAX transposes it into the VJP by itself: a
single select over the input for tiling windows (reshape back, no pad, no scatter),
one pass for overlapping ones (a concatenate of per-phase sums: every input
element computed from the offsets of its stride phase only). One rule gives
`jvp`, `grad`, `vmap` and higher orders (the second derivative is zero almost
everywhere, as for every piecewise-linear function), and it works with window
dilation, where `jax.grad` of `lax.reduce_window` raises NotImplementedError.

Speed: the same max/min rule is used on every backend, as it was never slower than
XLA's select-and-scatter rule on any benchmark case (max_pool fwd+bwd, all cases of
configs/benchmark.py, CPU and GPU; figures: docs/benchmarks.md). Sum/avg pooling
takes XLA's rule for overlapping windows off CPU (`_window_sum_tangent`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxpool._src.machinery import dtypes
from jaxpool._src.machinery import geometry
from jaxpool._src.machinery import views
from jaxpool._src.machinery.geometry import PaddingLike
from jaxpool._src.machinery.geometry import PoolGeometry


def _lowest(dtype, kind: str):
  """The identity of max (`kind='max'`) or min for `dtype`: the padding value."""
  if jnp.issubdtype(dtype, jnp.integer):
    info = jnp.iinfo(dtype)
    return info.min if kind == "max" else info.max
  return -np.inf if kind == "max" else np.inf


def _reduce_extremum(x: jax.Array, geom: PoolGeometry, kind: str) -> jax.Array:
  """The max (min) of every window, padding = the identity of the reduction.

  Windows of at most `_VIEW_MAX_WINDOW` elements: an elementwise max over one strided
  view of the input per window offset (`_extremum_by_views`), one fused pass that
  propagates NaN. Larger windows: XLA's reduce-window, whose vectorized CPU code
  may return a number for a window holding NaNs, so NaN windows are marked by a
  second reduce-window (of `isnan`) and set to NaN.
  """
  if geom.window_size <= _VIEW_MAX_WINDOW:
    if x.dtype in (jnp.bfloat16, jnp.float16):
      # Exact in float32; XLA's CPU code for a half-float max is slower (benchmark
      # case: max_pool bfloat16 forward, configs/benchmark.py:targets).
      y = _extremum_by_views(x.astype(jnp.float32), geom, kind)
      return dtypes.selected_back(y, x.dtype)
    return _extremum_by_views(x, geom, kind)
  op = lax.max if kind == "max" else lax.min
  if x.dtype in (jnp.bfloat16, jnp.float16) and not views.is_tiling(geom):
    # Exact in float32; XLA's CPU reduce-window over overlapping half-float windows
    # is slower than converting once and reducing in float32.
    y = dtypes.selected_back(
      geom.reduce_window(x.astype(jnp.float32), _lowest(x.dtype, kind), op), x.dtype
    )
  else:
    y = geom.reduce_window(x, _lowest(x.dtype, kind), op)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    return y
  nan_windows = geom.reduce_window(jnp.isnan(x).astype(jnp.uint8), np.uint8(0), lax.max)
  return jnp.where(nan_windows > 0, jnp.asarray(np.nan, x.dtype), y)


def window_selections(x: jax.Array, y: jax.Array, geom: PoolGeometry, kind: str) -> list[jax.Array]:
  """One boolean mask per window offset: which element each window selected.

  Exactly one offset is selected per output (PyTorch's rule): the first element
  equal to the extremum `y` in row-major window order, or the last NaN of a window
  that holds one. Padding is never selected. A window lying entirely in the
  padding selects nothing.
  """
  padded = geom.pad(x, _lowest(x.dtype, kind))
  offsets = geom.window_offsets()
  elements = [geom.window_element(padded, offset) for offset in offsets]
  bounds = [geom.in_bounds(offset) for offset in offsets]

  def first_hits(hits):
    taken, firsts = None, []
    for hit in hits:
      firsts.append(hit if taken is None else hit & ~taken)
      taken = hit if taken is None else taken | hit
    return firsts

  def in_input(hit, mask):
    return hit if mask is None else hit & mask

  selections = first_hits([in_input(v == y, m) for v, m in zip(elements, bounds)])
  if jnp.issubdtype(x.dtype, jnp.floating):
    # NaN != NaN, so NaN windows selected nothing above; take their last NaN.
    nan_hits = [in_input(jnp.isnan(v), m) for v, m in zip(elements, bounds)]
    last_nans = first_hits(nan_hits[::-1])[::-1]
    selections = [s | n for s, n in zip(selections, last_nans)]
  return selections


# Windows of at most this many elements are reduced as elementwise ops over strided
# views (max/min forward and selected offset, sum forward). On CPU one fused pass
# over the views beats XLA's reduce-window (benchmark cases: max_pool 2d_2x2s2,
# avg_pool 2d_3x3s2_same).
_VIEW_MAX_WINDOW = 64


def _extremum_by_views(x: jax.Array, geom: PoolGeometry, kind: str) -> jax.Array:
  """`max_k view_k` (min): the window extremum over one strided view per offset.

  Views are padded back to the output shape with the reduction's identity where
  their element lies in the padding. lax.max/min propagate NaN (PyTorch's rule):
  a window holding a NaN gives NaN. (XLA's CPU reduce-window does not always: its
  vectorized max of a window with NaNs may return a number.)
  """
  fill = _lowest(x.dtype, kind)
  op = lax.max if kind == "max" else lax.min
  elements = views.view_arrays(x, geom, fill)
  if not elements:  # every window lies in the padding
    return jnp.full(geom.output_shape, fill, x.dtype)
  return functools.reduce(op, elements)


def index_dtype(geom: PoolGeometry):
  """Smallest unsigned dtype holding every code of `selected_offset` (up to 2K)."""
  return jnp.uint8 if 2 * geom.window_size < 255 else jnp.int32


def selected_offset(x: jax.Array, y: jax.Array, geom: PoolGeometry, kind: str) -> jax.Array:
  """Row-major window offset of the element each window selected, shape `output_shape`.

  The same choice as `window_selections` (first element equal to the extremum `y`,
  or the last NaN of a window holding one; padding never), packed into one small
  integer per output: `k` in `[0, K)` for offset `window_offsets()[k]`, or `K =
  window_size` where a window lies entirely in the padding and selects nothing.

  It is the only residual the gradient keeps (a uint8 per output for windows of
  fewer than 127 elements), computed once as a minimum over the window: offset `k`
  scores `K + k` if it equals `y` and `K - 1 - k` if it is NaN (both never occur in
  one window: NaN windows have `y = NaN`), else `2K`. The minimum is the first
  maximum or the last NaN. Being a reduction, it is materialized once instead of
  being fused into, and recomputed by, every term of the transposed gradient.
  """
  # Integer-valued and piecewise constant: no derivative flows through it, which
  # also keeps second-order autodiff away from the integer reduce-window below.
  x, y = lax.stop_gradient(x), lax.stop_gradient(y)
  if x.dtype in (jnp.bfloat16, jnp.float16):
    # Exact, and XLA's CPU code compares half floats element by element in software;
    # the float32 copy is shared with the forward reduce-window, which makes it too.
    x, y = x.astype(jnp.float32), y.astype(jnp.float32)
  offsets = geom.window_offsets()
  size = len(offsets)
  dtype = index_dtype(geom)
  floating = jnp.issubdtype(x.dtype, jnp.floating)
  best = None
  # Only slices of the input: padding never matches (its score is the "no" 2K), so
  # no padded copy of `x` is written and no bounds mask is needed.
  for k, offset in enumerate(offsets):
    element = views.locate(geom, offset)
    if element is None:
      continue
    v, y_k = views.of_input(x, element), views.of_windows(y, element)
    score = jnp.where(v == y_k, dtype(size + k), dtype(2 * size))
    if floating:
      score = jnp.where(jnp.isnan(v), dtype(size - 1 - k), score)
    score = views.on_windows(score, element, geom, dtype(2 * size))
    best = score if best is None else jnp.minimum(best, score)
  if best is None:  # every window lies in the padding
    return jnp.full(geom.output_shape, size, dtype)
  return views.materialize(jnp.where(best >= size, best - dtype(size), dtype(size - 1) - best), x)


def _gather_tiled(t: jax.Array, index: jax.Array, geom: PoolGeometry) -> jax.Array:
  """`t_out[o] = t[window o, offset index[o]]` for tiling windows, by reshapes.

  The selected element of each block is picked by comparing the offset code of
  every block position with `index`. No strided slices, no interior pads: the
  transpose (the VJP) is one broadcast-select-reshape pass over the input.
  """
  blocks, window_axes = views.window_blocks(t, geom)
  selected = views.selected_in_blocks(index, blocks.ndim, window_axes, geom)
  picked = jnp.where(selected, blocks, jnp.zeros((), t.dtype))
  return jnp.sum(picked, axis=tuple(window_axes), dtype=t.dtype)


def _gather_by_views(t: jax.Array, index: jax.Array, geom: PoolGeometry) -> jax.Array:
  """`t_out[o] = t[window o, offset index[o]]` for any geometry, from
  `views.linear_views` (from the stride phases of `t`: the transpose computes
  every input element from the offsets of its own phase only)."""
  t_out = jnp.zeros(geom.output_shape, t.dtype)
  for k, view in views.linear_views(t, geom):
    t_out = t_out + jnp.where(index == k, view, jnp.zeros((), t.dtype))
  return t_out


def gather_selected(t: jax.Array, index: jax.Array, geom: PoolGeometry) -> jax.Array:
  """The tangent rule of max/min pooling: the tangent of each selected element.

  Linear in `t`; JAX transposes it into the VJP (select, then reshape or pad back),
  so the gradient never goes through select-and-scatter.
  """
  if views.is_tiling(geom):
    return _gather_tiled(t, index, geom)
  if t.dtype in (jnp.bfloat16, jnp.float16):
    # Exact either way (one nonzero term per window), but XLA's CPU code for a sum
    # of padded half-precision terms converts every term, where one conversion of
    # the input suffices.
    return _gather_by_views(t.astype(jnp.float32), index, geom).astype(t.dtype)
  return _gather_by_views(t, index, geom)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def extremum_pool(x: jax.Array, geom: PoolGeometry, kind: str) -> jax.Array:
  return _reduce_extremum(x, geom, kind)


@extremum_pool.defjvp
def _extremum_pool_jvp(geom, kind, primals, tangents):
  (x,), (t,) = primals, tangents
  # `y` through this rule again, not through lax: differentiating this rule (vjp of
  # jvp, check_grads order 2) would otherwise hit XLA's select_and_gather_add, whose
  # transpose raises NotImplementedError with window dilation. Written to memory
  # once (`views.pooled`), which the offset pass below also wants: it re-reads y
  # through padded views (benchmark case: max_pool 2d_3x3s2_same fwd+bwd).
  y = views.pooled(extremum_pool(x, geom, kind), x)
  index = selected_offset(x, y, geom, kind)  # the only residual of the VJP
  return y, gather_selected(t, index, geom)


def _extremum(
  inputs, window_shape, strides, padding, dilation, ceil_mode, channel_axis, kind: str, fn: str
) -> jax.Array:
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
  if not jnp.issubdtype(x.dtype, jnp.floating):
    return _reduce_extremum(x, geom, kind)  # integers have no derivative
  return extremum_pool(x, geom, kind)


def max_pool(
  inputs: Any,
  window_shape,
  strides=None,
  padding: PaddingLike = "VALID",
  *,
  dilation=None,
  ceil_mode: bool = False,
  channel_axis: int = -1,
) -> jax.Array:
  r"""Max pooling: the largest element of every window.

  .. math:: y_{o} = \max_{k \in W} \tilde x_{s \cdot o - p_{lo} + d \cdot k}

  where :math:`\tilde x` is the input padded with :math:`-\infty` (the dtype's
  minimum for integers), :math:`s` the strides, :math:`d` the dilation and
  :math:`W` the window offsets.

  A drop-in replacement for `flax.linen.max_pool` (same calls, same values; a
  window holding a NaN gives NaN, as in PyTorch, where Flax on CPU may not) with
  PyTorch's `max_pool1d/2d/3d` options. Gradient: the cotangent of each output goes
  to the first maximal element of its window in row-major order, or to the last NaN
  of a window holding NaNs (PyTorch's rule); overlapping windows add up. It is a
  custom JVP rule without select-and-scatter (see the module docstring), so `jvp`,
  `grad`, `vmap` and higher derivatives all work, with dilation too.

  Args:
    inputs: `(*batch, *spatial, features)`, or `(N, C, *spatial)` with
      `channel_axis=1`. Floating or integer dtype.
    window_shape: window size per spatial dim, e.g. `(2, 2)`.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int (both sides of every dim, as PyTorch), a
      sequence of ints (per dim) or a sequence of `(low, high)` pairs (tuples,
      lists or a numpy array, as Flax); never negative.
    dilation: window dilation per spatial dim (PyTorch's `dilation`).
    ceil_mode: PyTorch's ceil_mode: the output size rounds up, the last window
      starting inside the input or the low padding.
    channel_axis: -1 (channels last) or 1 (channels first: PyTorch's batched
      `(N, C, *spatial)` layout). PyTorch's unbatched `(C, *spatial)` is refused
      with a ValueError (add the batch dim), also a rank-2 `(C, L)` input with
      `channel_axis=1`, although index 1 is its last axis too.

  Returns:
    The pooled array, same dtype, spatial dims replaced by the output sizes.

  Raises:
    ValueError, TypeError: naming the argument, for inputs or window arguments that
      are not allowed (`geometry.resolve`), e.g. a window larger than the padded
      input (unless `ceil_mode` still gives an output, as PyTorch).

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    >>> jaxpool.max_pool(x, (2, 2), strides=(2, 2))[..., 0]
    Array([[[ 5.,  7.],
            [13., 15.]]], dtype=float32)
  """
  return _extremum(
    inputs, window_shape, strides, padding, dilation, ceil_mode, channel_axis, "max", "max_pool"
  )


def min_pool(
  inputs: Any,
  window_shape,
  strides=None,
  padding: PaddingLike = "VALID",
  *,
  dilation=None,
  ceil_mode: bool = False,
  channel_axis: int = -1,
) -> jax.Array:
  r"""Min pooling: the smallest element of every window.

  .. math:: y_{o} = \min_{k \in W} \tilde x_{s \cdot o - p_{lo} + d \cdot k}

  with :math:`\tilde x` padded with :math:`+\infty` (the dtype's maximum for
  integers). The mirror image of :func:`max_pool` (same arguments, same tie and NaN
  rules: first minimal element, last NaN) and a drop-in replacement for
  `flax.linen.min_pool`.

  Args:
    inputs: `(*batch, *spatial, features)`, or `(N, C, *spatial)` with
      `channel_axis=1`. Floating or integer dtype.
    window_shape, strides, padding, dilation, ceil_mode, channel_axis: as
      :func:`max_pool`.

  Returns:
    The pooled array, same dtype, spatial dims replaced by the output sizes.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> jaxpool.min_pool(jnp.array([[3.0], [1.0], [2.0]]), (2,))[:, 0]
    Array([1., 1.], dtype=float32)
  """
  return _extremum(
    inputs, window_shape, strides, padding, dilation, ceil_mode, channel_axis, "min", "min_pool"
  )


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _linear_window_sum(x: jax.Array, geom: PoolGeometry) -> jax.Array:
  if geom.window_size <= _VIEW_MAX_WINDOW:
    # Strided views in the forward for tiling windows too: the reshape-and-sum of
    # the tangent rule is fast to transpose but slower than views forward.
    return views.strided_window_sum(x, geom)
  return geom.reduce_window(x, 0, lax.add)  # XLA's reduce-window: never fused into readers


def _window_sum_tangent(t: jax.Array, geom: PoolGeometry) -> jax.Array:
  """The tangent rule of sum/avg pooling, chosen per backend where that pays.

  Tiling windows: `views.window_sum_by_views` everywhere (its transpose, a broadcast of
  the cotangent, beats XLA's rule on a GPU too; benchmark case: avg_pool 2d_2x2s2
  fwd+bwd). Overlapping windows: the views on CPU; elsewhere XLA's reduce-window,
  whose transpose (pad + reduce-window) is never slower than
  `flax.linen.avg_pool`'s, which is that rule (benchmark cases: avg_pool
  2d_3x3s2_same and 2d_3x3s2_resnet fwd+bwd on a GPU, where neither form wins both).
  """
  if views.is_tiling(geom):
    return views.window_sum_by_views(t, geom)
  return lax.platform_dependent(
    t,
    cpu=lambda t: views.window_sum_by_views(t, geom),
    default=lambda t: geom.reduce_window(t, 0, lax.add),
  )


@_linear_window_sum.defjvp
def _linear_window_sum_jvp(geom, primals, tangents):
  (x,), (t,) = primals, tangents
  return views.pooled(_linear_window_sum(x, geom), x), _window_sum_tangent(t, geom)


def _xla_rule_faster(geom: PoolGeometry) -> bool:
  """Whether sum_pool is faster with XLA's reduce-window and JAX's own derivative.

  One spatial dim, no dilation: there XLA's rule was never the slower against the
  views (benchmark case: sum_pool 1d_3s2 fwd+bwd, and windows 3/1 and 2/2 on that
  input). Not for half precision (its float32 copy would be written to memory
  before XLA's reduce-window), and not avg_pool (its pre-scaled input likewise).
  """
  return len(geom.window_shape) == 1 and geom.dilation == (1,)


def _window_sum(x: jax.Array, geom: PoolGeometry) -> jax.Array:
  acc = x.astype(dtypes.compute_dtype(x.dtype))
  if not jnp.issubdtype(acc.dtype, jnp.floating) or (
    acc.dtype == x.dtype and _xla_rule_faster(geom)
  ):
    return geom.reduce_window(acc, 0, lax.add)  # JAX's derivative (none for integers)
  return _linear_window_sum(acc, geom)


def sum_pool(
  inputs: Any,
  window_shape,
  strides=None,
  padding: PaddingLike = "VALID",
  *,
  dilation=None,
  ceil_mode: bool = False,
  channel_axis: int = -1,
) -> jax.Array:
  r"""Sum pooling: the sum of every window (zero padding).

  .. math:: y_{o} = \sum_{k \in W} \tilde x_{s \cdot o - p_{lo} + d \cdot k}

  float16/bfloat16 inputs are summed in float32 and the result cast back; integer
  inputs are summed in their own dtype (wrapping on overflow, as XLA). The
  gradient sends each output's cotangent to every input element of its window.

  Args:
    inputs: `(*batch, *spatial, features)`, or `(N, C, *spatial)` with
      `channel_axis=1`. Floating or integer dtype.
    window_shape, strides, padding, dilation, ceil_mode, channel_axis: as
      :func:`max_pool`.

  Returns:
    The window sums, same dtype, spatial dims replaced by the output sizes.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> jaxpool.sum_pool(jnp.ones((4, 1)), (2,), strides=(2,))[:, 0]
    Array([2., 2.], dtype=float32)
  """
  x = dtypes.pool_input(inputs, "sum_pool", integers=True)
  geom = geometry.resolve(
    x.shape,
    window_shape,
    strides,
    padding,
    dilation=dilation,
    ceil_mode=ceil_mode,
    channel_axis=channel_axis,
    fn="sum_pool",
  )
  return _window_sum(x, geom).astype(x.dtype)


def average_scale(geom: PoolGeometry) -> float:
  """2^-k with 2^k >= the window size: averages sum x * 2^-k, then divide by
  count * 2^-k. The same quotient (scaling by a power of two is exact), but the sum
  of a window of huge values (1e38 in float32) no longer overflows before the
  division."""
  return sum_scale(geom.window_size)


def sum_scale(count: int) -> float:
  """2^-k with 2^k >= `count` (1 for 0): see `average_scale`."""
  return 2.0 ** -int(np.ceil(np.log2(max(count, 1))))


def avg_pool(
  inputs: Any,
  window_shape,
  strides=None,
  padding: PaddingLike = "VALID",
  count_include_pad: bool = True,
  *,
  divisor_override: int | None = None,
  dilation=None,
  ceil_mode: bool = False,
  channel_axis: int = -1,
) -> jax.Array:
  r"""Average pooling.

  .. math:: y_{o} = \frac{1}{c_o} \sum_{k \in W} \tilde x_{s \cdot o - p_{lo} + d \cdot k}

  with zero padding and divisor :math:`c_o`:

  * `count_include_pad=True` (default, as Flax and PyTorch): the number of window
    elements inside the input or its declared padding; the `ceil_mode` overhang past
    the high padding is not counted (PyTorch);
  * `count_include_pad=False`: the number of window elements inside the input;
  * `divisor_override=c`: the constant `c` (PyTorch).

  With `count_include_pad=False`, a window that holds no input element (padding
  wider than the window reaches, which PyTorch forbids) outputs 0, not 0/0 = NaN
  as in Flax.

  Sums accumulate in float32 for float16/bfloat16 and the result has the input
  dtype; integer inputs give jnp's default float dtype. The window sum is
  accumulated pre-scaled by a power of two, so averages of huge finite values
  (1e38 in float32) stay finite and otherwise equal the plain `sum / count`
  (float32/float64 inputs within a factor of the window size of the smallest
  normal number lose some precision). A drop-in replacement for
  `flax.linen.avg_pool` (`count_include_pad` is its fifth positional argument
  there too). The gradient sends `cotangent / c_o` to every input element of a
  window.

  Args:
    inputs: `(*batch, *spatial, features)`, or `(N, C, *spatial)` with
      `channel_axis=1`. Floating or integer dtype.
    window_shape, strides, padding: as :func:`max_pool`.
    count_include_pad: whether padding elements count in the divisor.
    divisor_override: a non-zero int that replaces the divisor (PyTorch).
    dilation, ceil_mode, channel_axis: as :func:`max_pool`.

  Returns:
    The window averages, spatial dims replaced by the output sizes.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> x = jnp.array([[1.0], [2.0], [3.0]])
    >>> jaxpool.avg_pool(x, (2,), padding=((0, 1),), count_include_pad=False)[:, 0]
    Array([1.5, 2.5, 3. ], dtype=float32)
  """
  x = dtypes.pool_input(inputs, "avg_pool", integers=True)
  if not isinstance(count_include_pad, (bool, np.bool_)):
    raise TypeError(f"avg_pool: count_include_pad must be a bool, got {count_include_pad!r}.")
  if divisor_override is not None and not geometry.is_int(divisor_override):
    raise TypeError(
      f"avg_pool: divisor_override must be None or a non-zero int, got {divisor_override!r}."
    )
  if divisor_override is not None and divisor_override == 0:
    raise ValueError(
      f"avg_pool: divisor_override must be None or a non-zero int, got {divisor_override!r}."
    )
  geom = geometry.resolve(
    x.shape,
    window_shape,
    strides,
    padding,
    dilation=dilation,
    ceil_mode=ceil_mode,
    channel_axis=channel_axis,
    fn="avg_pool",
  )
  out_dtype = dtypes.mean_dtype(x.dtype)
  scale = average_scale(geom)
  acc = x.astype(dtypes.compute_dtype(out_dtype))
  total = _linear_window_sum(acc * np.asarray(scale, acc.dtype), geom)  # fast VJP
  if divisor_override is not None:
    divisor = divisor_override * scale
  else:
    # A window holding no input element (count_include_pad=False with padding as
    # large as the window) has sum 0; dividing by 1 keeps it 0 instead of 0/0 = NaN.
    counts = np.maximum(geom.window_counts(count_include_pad), 1)
    if (counts == counts.flat[0]).all():
      divisor = int(counts.flat[0]) * scale
    else:
      divisor = jnp.asarray(geom.spatial_to_output(counts * scale), total.dtype)
  return (total / divisor).astype(out_dtype)
