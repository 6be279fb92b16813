r"""`window_pool`: any function of the window elements, as a differentiable pool.

The window of every output is handed to a user's function `fn` as an array with a
trailing window axis of size ``K = prod(window_shape)``:

.. math:: y_o = f\bigl(\tilde x_{s \cdot o - p_{lo} + d \cdot k_0}, \dots,
          \tilde x_{s \cdot o - p_{lo} + d \cdot k_{K-1}}\bigr)

with :math:`\tilde x` the input padded with `pad_value` and :math:`k_0, \dots,
k_{K-1}` the window offsets in row-major order. Element `k` of every window is
one strided view of the unpadded input (`views.locate` / `of_input`), padded onto
the output grid with `pad_value` only where some windows hold padding there
(`views.on_windows`): the K views, stacked on a trailing axis, are the only
window-sized data (K output-sized arrays; no padded copy of the input, no patch
gather). Everything is plain JAX, so `jit`, `vmap`, `grad` and `jvp` work wherever
`fn` does: the derivative of a strided slice is a strided pad, so every input
element receives the cotangents of all windows that hold it, summed.

The numpy reductions `jnp.max`, `jnp.min` (and `amax`, `amin`), `jnp.sum` and
`jnp.mean` are recognised and evaluated as elementwise reductions over the K views
(`_view_reduction`): the same values, and for max/min the same derivative as JAX's
rule for `jnp.max` (ties share the cotangent equally), without a reduction over a
trailing axis of size K, which XLA:CPU runs several times slower than the
elementwise form (the backward pass of `jnp.max` over the stacked windows above all).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxpool._src.machinery import dtypes
from jaxpool._src.machinery import geometry
from jaxpool._src.machinery import views
from jaxpool._src.machinery.geometry import PaddingLike
from jaxpool._src.machinery.geometry import PoolGeometry

_VIEW_REDUCTIONS = {
  jnp.max: "max",
  jnp.amax: "max",
  jnp.min: "min",
  jnp.amin: "min",
  jnp.sum: "sum",
  jnp.mean: "mean",
}


def fn_keywords(fn: Callable) -> frozenset[str]:
  """Which of ``axis`` / ``mask`` `window_pool` passes to `fn` (the parameters its
  signature names; none for an uninspectable callable). Not cached: a `fn` made
  per call (a lambda closing over traced parameters) would be kept alive."""
  try:
    params = inspect.signature(fn).parameters
  except (TypeError, ValueError):  # builtins and other uninspectable callables
    return frozenset()
  return frozenset(
    name
    for name, p in params.items()
    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name in ("axis", "mask")
  )


def window_views(x: jax.Array, geom: PoolGeometry, pad_value: Any) -> list[jax.Array]:
  """Element `k` of every window for each of the K offsets (row-major), shape
  `geom.output_shape` each, `pad_value` where a window holds padding."""
  out = []
  for offset in geom.window_offsets():
    element = views.locate(geom, offset)
    if element is None:  # every window has padding at this offset
      out.append(jnp.full(geom.output_shape, pad_value, x.dtype))
    else:
      out.append(views.on_windows(views.of_input(x, element), element, geom, pad_value))
  return out


def window_mask(geom: PoolGeometry) -> np.ndarray:
  """Static mask of the real (not padded) window elements, broadcastable to
  ``output_shape + (K,)``: only the output's spatial dims and K are not 1."""
  shape = geom.spatial_to_output(np.zeros(geom.output_spatial, bool)).shape
  masks = []
  for offset in geom.window_offsets():
    inside = geom.in_bounds(offset)
    masks.append(np.ones(shape, bool) if inside is None else inside)
  return np.stack(masks, axis=-1)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _view_extremum(x: jax.Array, geom: PoolGeometry, pad, kind: str) -> jax.Array:
  """`jnp.max` (`jnp.min`) of the stacked windows, as an elementwise max of the views."""
  op = jnp.maximum if kind == "max" else jnp.minimum
  return functools.reduce(op, window_views(x, geom, pad))


def _tie_bits(x: jax.Array, y: jax.Array, geom: PoolGeometry, pad) -> jax.Array:
  """Bit `k` set where element `k` of the window equals its extremum `y`: one
  unsigned int per output (K <= 32), written to memory once."""
  dtype = next(
    d for d in (jnp.uint8, jnp.uint16, jnp.uint32) if np.iinfo(d).bits >= geom.window_size
  )
  bits = jnp.zeros(geom.output_shape, dtype)
  for k, v in enumerate(window_views(x, geom, pad)):
    bits = bits | jnp.where(v == y, dtype(1 << k), dtype(0))
  return views.materialize(bits, x)


@_view_extremum.defjvp
def _view_extremum_jvp(geom, pad, kind, primals, tangents):
  """JAX's rule for `jnp.max`: the tangents of the elements equal to the extremum,
  averaged (padding has tangent 0 and counts as a tie, as in the stacked form).

  The extremum is written to memory once (`views.pooled`), and which elements tie
  with it as the bits of one small int per window (`_tie_bits`, as max_pool's
  selected offset): the transposed views read them for every window offset.
  """
  (x,), (t,) = primals, tangents
  y = views.pooled(_view_extremum(x, geom, pad, kind), x)
  x = lax.stop_gradient(x)
  if geom.window_size <= 32:
    bits = _tie_bits(x, y, geom, pad)
    count = lax.population_count(bits).astype(t.dtype)
    if views.is_tiling(geom):  # reshaped blocks: their transpose is a reshape back
      blocks, window_axes = views.window_blocks(t, geom)
      code_shape = [1] * blocks.ndim
      for axis, k in zip(window_axes, geom.window_shape):
        code_shape[axis] = k
      code = np.arange(geom.window_size, dtype=bits.dtype).reshape(code_shape)
      hit = ((jnp.expand_dims(bits, window_axes) >> code) & 1).astype(t.dtype)
      picked = blocks * hit
      return y, jnp.sum(picked, axis=tuple(window_axes), dtype=t.dtype) / count
    hits = [((bits >> k) & 1).astype(t.dtype) for k in range(geom.window_size)]
  else:
    hits = [(v == y).astype(t.dtype) for v in window_views(x, geom, pad)]
    count = views.materialize(functools.reduce(jnp.add, hits), x)
  # Multiplied by the 0/1 hits, not selected, as jnp.max's rule: where y is NaN
  # (no hits) the forward 0/0 and the backward inf * 0 are NaN there too.
  t_out = jnp.zeros(geom.output_shape, t.dtype)
  for k, view in views.linear_views(t, geom):
    t_out = t_out + hits[k] * view
  return y, t_out / count


def _view_reduction(kind: str, x: jax.Array, geom: PoolGeometry, pad) -> jax.Array:
  """`jnp.<kind>(windows, axis=-1)` as an elementwise reduction over the K views."""
  if kind in ("max", "min"):
    return _view_extremum(x, geom, pad, kind)
  acc = dtypes.compute_dtype(x.dtype)  # half precision summed in float32, as jnp.sum
  total = functools.reduce(jnp.add, [v.astype(acc) for v in window_views(x, geom, pad)])
  if kind == "mean":
    total = total / np.asarray(geom.window_size, acc)
  return total.astype(x.dtype)


def _hashable(fn: Any) -> bool:
  try:
    hash(fn)
  except TypeError:
    return False
  return True


def _check_fn(fn: Any) -> None:
  if not callable(fn):
    raise TypeError(
      f"window_pool: fn must be a callable (windows[, mask]) -> one value per window, got {fn!r}."
    )


def apply_to_windows(
  fn: Callable, x: jax.Array, geom: PoolGeometry, pad_value: Any, name: str = "window_pool"
) -> jax.Array:
  """`fn` of the stacked window views of `x` (see `window_pool`), shape-checked."""
  try:
    pad = np.asarray(pad_value, x.dtype) if not isinstance(pad_value, jax.core.Tracer) else None
  except (TypeError, ValueError, OverflowError) as e:
    raise ValueError(
      f"{name}: pad_value={pad_value!r} cannot be represented in the inputs' dtype {x.dtype} ({e})."
    ) from None
  if pad is not None and jnp.issubdtype(x.dtype, jnp.integer) and pad != pad_value:
    raise ValueError(
      f"{name}: pad_value={pad_value!r} is not a value of the inputs' integer dtype {x.dtype}."
    )
  fill = pad_value if pad is None else pad
  kind = _VIEW_REDUCTIONS.get(fn) if _hashable(fn) else None
  if kind is not None and pad is not None and jnp.issubdtype(x.dtype, jnp.floating):
    return _view_reduction(kind, x, geom, pad.item())
  windows = jnp.stack(window_views(x, geom, fill), axis=-1)
  keywords = fn_keywords(fn)
  kwargs = {}
  if "axis" in keywords:
    kwargs["axis"] = -1
  if "mask" in keywords:
    kwargs["mask"] = jnp.broadcast_to(window_mask(geom), windows.shape)
  y = fn(windows, **kwargs)
  shape = getattr(y, "shape", None)
  if shape is None:
    y = jnp.asarray(y)
    shape = y.shape
  if tuple(shape) != geom.output_shape:
    raise ValueError(
      f"{name}: fn must reduce the trailing window axis (size {geom.window_size}) of its "
      f"input of shape {windows.shape} to one value per window, shape {geom.output_shape}; "
      f"it returned shape {tuple(shape)}. Reduce with axis=-1 (a fn with an `axis` "
      "parameter is called with axis=-1)."
    )
  return y


def window_pool(
  fn: Callable,
  inputs: Any,
  window_shape,
  strides=None,
  padding: PaddingLike = "VALID",
  *,
  pad_value: Any = 0,
  dilation=None,
  ceil_mode: bool = False,
  channel_axis: int = -1,
) -> jax.Array:
  r"""Pool with any function of the window elements, differentiable wherever `fn` is.

  .. math:: y_o = f\bigl(w_o\bigr), \qquad
            w_{o,k} = \tilde x_{s \cdot o - p_{lo} + d \cdot k}, \quad k = 0 \dots K-1

  where :math:`\tilde x` is the input padded with `pad_value`, :math:`s` the
  strides, :math:`d` the dilation, and the :math:`K` window offsets :math:`k` run
  over `window_shape` in row-major order (PyTorch's order).

  How `fn` is called: ``fn(windows)``, with `windows` of shape ``output_shape +
  (K,)`` (the output's shape, channels included, then the window axis), in the
  inputs' dtype. Two optional keywords, passed when `fn`'s signature names them:

  * ``axis=-1``: so that numpy-style reductions (`jnp.max`, `jnp.mean`,
    `jnp.median`, `jax.nn.logsumexp`) can be passed as they are;
  * ``mask=``: a boolean array of the same shape as `windows`, True at the
    window elements inside the input, False at padded ones (the declared padding
    and the `ceil_mode` overhang), for a `fn` that must ignore padding.

  `fn` must return one value per window (shape ``output_shape``); any dtype.

  Derivatives are JAX's own, through `fn` and the views: each window element is a
  strided slice of the unpadded input, so the gradient of every input element is
  the sum of the cotangents of the window elements it is (overlapping windows add
  up; padded elements drop out). `jit`, `vmap`, `grad`, `jvp` and higher orders
  work wherever `fn` supports them. Memory: the K views of `windows` (K
  output-sized arrays), no padded copy of the input.

  Args:
    fn: ``(windows[, axis][, mask]) -> per-window values``, see above.
    inputs: `(*batch, *spatial, features)`, or `(N, C, *spatial)` with
      `channel_axis=1`. Floating or integer dtype.
    window_shape: window size per spatial dim, e.g. `(2, 2)`.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int, a sequence of ints or of `(low, high)`
      pairs (see :func:`jaxpool.max_pool`).
    pad_value: the value of padded window elements (e.g. `-jnp.inf` for a max,
      `jnp.nan` for a `jnp.nanmedian`); a scalar of the inputs' dtype.
    dilation: window dilation per spatial dim (PyTorch's `dilation`).
    ceil_mode: PyTorch's ceil_mode (the last window may overhang the input; its
      overhang holds `pad_value` and is masked out).
    channel_axis: -1 (channels last) or 1 (channels first, PyTorch layout).

  Returns:
    `fn`'s values, shape: the inputs' with the spatial dims replaced by the output
    sizes.

  Raises:
    TypeError: `fn` is not callable, or the inputs are not numeric.
    ValueError: a bad geometry (as :func:`jaxpool.max_pool`), a `pad_value` the
      dtype cannot hold, or `fn` not returning one value per window.

  Examples:
    A median pool (rank-order statistics are robust to outliers); padding as NaN,
    which `jnp.nanmedian` skips:

    >>> import jax, jax.numpy as jnp, jaxpool
    >>> x = jnp.array([[1.0], [9.0], [2.0], [3.0], [-7.0]])
    >>> jaxpool.window_pool(jnp.nanmedian, x, (3,), padding=1, pad_value=jnp.nan)[:, 0]
    Array([ 5.,  2.,  3.,  2., -2.], dtype=float32)

    A top-k average pool (ordinal pooling: the mean of the k largest elements of
    every window), with its gradient (1/k at each selected element):

    >>> def top2_mean(windows):
    ...   return jnp.mean(jax.lax.top_k(windows, 2)[0], axis=-1)
    >>> x = jnp.arange(16.0).reshape(4, 4, 1)
    >>> jaxpool.window_pool(top2_mean, x, (2, 2), strides=2)[..., 0]
    Array([[ 4.5,  6.5],
           [12.5, 14.5]], dtype=float32)
    >>> g = jax.grad(lambda v: jaxpool.window_pool(top2_mean, v, (2, 2), strides=2).sum())(x)
    >>> g[:2, :2, 0]
    Array([[0. , 0. ],
           [0.5, 0.5]], dtype=float32)

    A smooth max, :math:`t \log \sum_k e^{w_k / t}` (log-sum-exp with temperature
    `t`: the max as t -> 0), that ignores padding through the mask:

    >>> def smooth_max(windows, mask, t=0.5):
    ...   return t * jax.nn.logsumexp(windows / t, axis=-1, where=mask)
    >>> x = jnp.array([[0.0], [1.0], [3.0]])
    >>> y = jaxpool.window_pool(smooth_max, x, (2,), padding=((0, 1),))
    >>> [round(float(v), 3) for v in y[:, 0]]  # the last window is (3, padding)
    [1.063, 3.009, 3.0]
  """
  _check_fn(fn)
  x = dtypes.pool_input(inputs, "window_pool", integers=True)
  geom = geometry.resolve(
    x.shape,
    window_shape,
    strides,
    padding,
    dilation=dilation,
    ceil_mode=ceil_mode,
    channel_axis=channel_axis,
    fn="window_pool",
  )
  return apply_to_windows(fn, x, geom, pad_value)
