"""The classic window reductions: max_pool, min_pool, sum_pool, avg_pool.

`max_pool` and `min_pool` accept every call of `flax.linen.max_pool` / `min_pool`
and return the same values; their derivative is a custom JVP rule instead of XLA's
`select_and_gather_add` / `select_and_scatter_add`:

  * the window elements are visited as strided slices of the padded input, one per
    window offset (`PoolGeometry.window_element`);
  * each output selects the *first* maximal element in row-major window order, or,
    if the window holds a NaN, the *last* NaN (both exactly as PyTorch's kernels);
  * the tangent is the sum over offsets of `where(selected, tangent slice, 0)`.

That rule is linear in the tangent, so JAX transposes it into the VJP by itself
(slices become interior pads): one rule gives `jvp`, `grad`, `vmap` and higher
orders, works with window dilation (where `jax.grad` of `lax.reduce_window` raises
NotImplementedError) and avoids select-and-scatter, which is slow on CPUs.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxpool._src import geometry
from jaxpool._src.geometry import PaddingLike, PoolGeometry


def _as_array(inputs: Any, fn: str, *, integers: bool) -> jax.Array:
  """`inputs` as a jax array of an allowed dtype, or a TypeError."""
  x = jnp.asarray(inputs)
  ok = jnp.issubdtype(x.dtype, jnp.floating) or (
      integers and jnp.issubdtype(x.dtype, jnp.integer))
  if not ok:
    allowed = "a floating or integer" if integers else "a floating"
    raise TypeError(f"{fn}: inputs must have {allowed} dtype, got {x.dtype}.")
  return x


def _lowest(dtype, kind: str):
  """The identity of max (`kind='max'`) or min for `dtype`: the padding value."""
  if jnp.issubdtype(dtype, jnp.integer):
    info = jnp.iinfo(dtype)
    return info.min if kind == "max" else info.max
  return -np.inf if kind == "max" else np.inf


def _reduce_extremum(x: jax.Array, geom: PoolGeometry, kind: str) -> jax.Array:
  op = lax.max if kind == "max" else lax.min
  return geom.reduce_window(x, _lowest(x.dtype, kind), op)


def window_selections(x: jax.Array, y: jax.Array, geom: PoolGeometry,
                      kind: str) -> list[jax.Array]:
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


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _extremum_pool(x: jax.Array, geom: PoolGeometry, kind: str) -> jax.Array:
  return _reduce_extremum(x, geom, kind)


@_extremum_pool.defjvp
def _extremum_pool_jvp(geom, kind, primals, tangents):
  (x,), (t,) = primals, tangents
  # `y` through this rule again, not through lax: differentiating this rule (vjp of
  # jvp, check_grads order 2) would otherwise hit XLA's select_and_gather_add, whose
  # transpose raises NotImplementedError with window dilation.
  y = _extremum_pool(x, geom, kind)
  selections = window_selections(x, y, geom, kind)
  t_padded = geom.pad(t, 0)
  t_out = None
  for offset, selected in zip(geom.window_offsets(), selections):
    term = jnp.where(selected, geom.window_element(t_padded, offset), 0).astype(t.dtype)
    t_out = term if t_out is None else t_out + term
  return y, t_out


def _extremum(inputs, window_shape, strides, padding, dilation, ceil_mode, channel_axis,
              kind: str, fn: str) -> jax.Array:
  x = _as_array(inputs, fn, integers=True)
  geom = geometry.resolve(x.shape, window_shape, strides, padding, dilation=dilation,
                          ceil_mode=ceil_mode, channel_axis=channel_axis, fn=fn)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    return _reduce_extremum(x, geom, kind)  # integers have no derivative
  return _extremum_pool(x, geom, kind)


def max_pool(inputs: Any, window_shape, strides=None, padding: PaddingLike = "VALID", *,
             dilation=None, ceil_mode: bool = False, channel_axis: int = -1) -> jax.Array:
  r"""Max pooling: the largest element of every window.

  .. math:: y_{o} = \max_{k \in W} \tilde x_{s \cdot o - p_{lo} + d \cdot k}

  where :math:`\tilde x` is the input padded with :math:`-\infty` (the dtype's
  minimum for integers), :math:`s` the strides, :math:`d` the dilation and
  :math:`W` the window offsets.

  A drop-in replacement for `flax.linen.max_pool` (same calls, same values) with
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
    channel_axis: -1 (channels last) or 1 (channels first, PyTorch layout).

  Returns:
    The pooled array, same dtype, spatial dims replaced by the output sizes.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    >>> jaxpool.max_pool(x, (2, 2), strides=(2, 2))[..., 0]
    Array([[[ 5.,  7.],
            [13., 15.]]], dtype=float32)
  """
  return _extremum(inputs, window_shape, strides, padding, dilation, ceil_mode,
                   channel_axis, "max", "max_pool")


def min_pool(inputs: Any, window_shape, strides=None, padding: PaddingLike = "VALID", *,
             dilation=None, ceil_mode: bool = False, channel_axis: int = -1) -> jax.Array:
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
  return _extremum(inputs, window_shape, strides, padding, dilation, ceil_mode,
                   channel_axis, "min", "min_pool")


def _accumulation_dtype(dtype):
  """Sums of half-precision floats accumulate in float32 (DESIGN.md)."""
  if dtype in (jnp.float16, jnp.bfloat16):
    return jnp.float32
  return dtype


def _window_sum(x: jax.Array, geom: PoolGeometry) -> jax.Array:
  acc = x.astype(_accumulation_dtype(x.dtype))
  return geom.reduce_window(acc, 0, lax.add)


def sum_pool(inputs: Any, window_shape, strides=None, padding: PaddingLike = "VALID", *,
             dilation=None, ceil_mode: bool = False, channel_axis: int = -1) -> jax.Array:
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
  x = _as_array(inputs, "sum_pool", integers=True)
  geom = geometry.resolve(x.shape, window_shape, strides, padding, dilation=dilation,
                          ceil_mode=ceil_mode, channel_axis=channel_axis, fn="sum_pool")
  return _window_sum(x, geom).astype(x.dtype)


def avg_pool(inputs: Any, window_shape, strides=None, padding: PaddingLike = "VALID",
             count_include_pad: bool = True, *, divisor_override: int | None = None,
             dilation=None, ceil_mode: bool = False, channel_axis: int = -1) -> jax.Array:
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
  x = _as_array(inputs, "avg_pool", integers=True)
  if not isinstance(count_include_pad, (bool, np.bool_)):
    raise TypeError(f"avg_pool: count_include_pad must be a bool, got {count_include_pad!r}.")
  if divisor_override is not None and not geometry.is_int(divisor_override):
    raise TypeError(
        f"avg_pool: divisor_override must be None or a non-zero int, got {divisor_override!r}.")
  if divisor_override is not None and divisor_override == 0:
    raise ValueError(
        f"avg_pool: divisor_override must be None or a non-zero int, got {divisor_override!r}.")
  geom = geometry.resolve(x.shape, window_shape, strides, padding, dilation=dilation,
                          ceil_mode=ceil_mode, channel_axis=channel_axis, fn="avg_pool")
  out_dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.result_type(float)
  # Sum x * 2^-k with 2^k >= the window size, then divide by count * 2^-k: the same
  # quotient (scaling by a power of two is exact), but the sum of a window of huge
  # values (1e38 in float32) no longer overflows before the division.
  scale = 2.0 ** -int(np.ceil(np.log2(geom.window_size)))
  acc = x.astype(_accumulation_dtype(out_dtype))
  total = geom.reduce_window(acc * np.asarray(scale, acc.dtype), 0, lax.add)
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
