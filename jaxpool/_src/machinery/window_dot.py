r"""Window dot products: a learned filter applied to every pooling window.

For a weight array `w` of shape `(M, *window_shape, C or 1)` and a pooling geometry,

.. math:: z_{m, o, c} = \sum_{k \in W} w_{m, k, c} \, \tilde x_{s \cdot o - p_{lo} + d \cdot k, c}

with :math:`\tilde x` the input padded with zeros (declared padding and the
`ceil_mode` overhang alike). This is a depthwise correlation; `gated_pool`,
`tree_pool` and `blur_pool` use it.

It is computed as a sum over window offsets of strided slices of the padded input
(`PoolGeometry.window_element`), never materialising the patches. On CPU this is
much faster than `lax.conv_general_dilated` with `feature_group_count=C` (grouped
convolutions, above all with a channel multiplier, have no fast CPU kernel in XLA);
case: forward + gradient on a (32, 28, 28, 32) float32 input with stride 2, one 2x2
filter and three 3x3 filters (figures: docs/benchmarks.md).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from jaxpool._src.machinery import dtypes
from jaxpool._src.machinery import views
from jaxpool._src.machinery.geometry import PoolGeometry


def check_weights(
  weights, geom: PoolGeometry, *, name: str, fn: str, leading: str | None = None
) -> jax.Array:
  """`weights` as a float array of shape `(*lead, *window_shape, 1 or C)`, or a ValueError
  (a TypeError for complex weights).

  `leading` names the one leading dim (e.g. "n_leaves"); None means there is none.
  """
  w = dtypes.as_array(weights, fn, name)
  if jnp.issubdtype(w.dtype, jnp.complexfloating):  # astype(float) would drop the imaginary part
    raise TypeError(f"{fn}: {name} must be real (a float, int or bool array), got dtype {w.dtype}.")
  if not jnp.issubdtype(w.dtype, jnp.floating):
    w = w.astype(jnp.result_type(float))
  channels = geom.input_shape[geom.channel_axis]
  window = tuple(geom.window_shape)
  n_lead = 0 if leading is None else 1
  ok = (
    w.ndim == n_lead + len(window) + 1
    and tuple(w.shape[n_lead:-1]) == window
    and w.shape[-1] in (1, channels)
  )
  if not ok:
    lead = "" if leading is None else f"{leading}, "
    raise ValueError(
      f"{fn}: {name} must have shape ({lead}*window_shape, 1) (shared by all channels) "
      f"or ({lead}*window_shape, C) (per channel), i.e. ({lead}{', '.join(map(str, window))}, "
      f"1 or {channels}) for window_shape={window} and C={channels} input channels; "
      f"got shape {tuple(w.shape)}."
    )
  return w


# Jitted with the geometry static: eager calls compile one program per geometry
# instead of dispatching one small op per window offset; under jit it is inlined.
@functools.partial(jax.jit, static_argnums=2)
def window_dot(x: jax.Array, weights: jax.Array, geom: PoolGeometry) -> jax.Array:
  """Depthwise window dot products, zero padding.

  Args:
    x: the inputs, shape `geom.input_shape`.
    weights: `(M, *window_shape, 1 or C)`.
    geom: the pooling geometry.

  Returns:
    `(M, *geom.output_shape)` in the common dtype of `x` and `weights` (float32 for
    half-precision inputs).
  """
  dtype = jnp.promote_types(dtypes.compute_dtype(x.dtype), dtypes.compute_dtype(weights.dtype))
  w = weights.astype(dtype)
  offsets = geom.window_offsets()
  if w.shape[0] > 1 and w.shape[-1] == 1 and views.is_tiling(geom):
    # Several filters shared by all channels (tree pooling's leaves and gates) on tiling
    # windows: `_tiled_shared`, whose derivative rule picks each gradient's form
    # (case: the training table, seed_cnn with tree). Overlapping windows keep the sum
    # below (case: tree_pool fwd+bwd 2d_3x3s2_same).
    filters = jnp.stack([w[(slice(None), *offset, 0)] for offset in offsets], axis=1)
    return _tiled_shared(x.astype(dtype), filters, geom)
  padded = geom.pad(x.astype(dtype), 0)
  elements = [geom.window_element(padded, offset) for offset in offsets]
  # Per offset, one filter's values (1 or C) broadcast along the channel axis.
  shape = [1] * geom.ndim
  shape[geom.channel_axis] = w.shape[-1]
  coefficients = [
    [jnp.reshape(w[(m, *offset)], shape) for offset in offsets] for m in range(len(w))
  ]
  return _weighted_sums(coefficients, elements)


def _weighted_sums(coefficients, elements: list[jax.Array]) -> jax.Array:
  """`out[m] = sum_k coefficients[m][k] * elements[k]`, stacked over m.

  One accumulation per m, stacked at the end: broadcasting the elements against all
  M coefficient sets at once makes XLA's CPU backward pass much slower.
  """
  outputs = []
  for row in coefficients:
    total = None
    for coefficient, element in zip(row, elements):
      term = coefficient * element
      total = term if total is None else total + term
    outputs.append(total)
  return jnp.stack(outputs)


def _views_sum(x: jax.Array, filters: jax.Array, geom: PoolGeometry, elements=None) -> jax.Array:
  """`z[m] = sum_k filters[m, k] * (element k of every window)`, by strided slices (or
  the given `elements`): one fused elementwise pass per filter, no stacked copy."""
  if elements is None:
    padded = geom.pad(x, 0)
    elements = [geom.window_element(padded, offset) for offset in geom.window_offsets()]
  m_filters, k_offsets = filters.shape
  rows = [[filters[m, k] for k in range(k_offsets)] for m in range(m_filters)]
  return _weighted_sums(rows, elements)


def _blocks_sum(x: jax.Array, filters: jax.Array, geom: PoolGeometry) -> jax.Array:
  """`_views_sum` from `views.window_blocks` (tiling windows): its transpose is one
  broadcast-multiply-add pass into the blocks and a reshape back, no interior pads."""
  blocks, window_axes = views.window_blocks(x, geom)
  shape = [1] * blocks.ndim
  for axis, k in zip(window_axes, geom.window_shape):
    shape[axis] = k
  return jnp.stack(
    [
      jnp.sum(blocks * filters[m].reshape(shape), axis=tuple(window_axes))
      for m in range(len(filters))
    ]
  )


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _tiled_shared(x: jax.Array, filters: jax.Array, geom: PoolGeometry) -> jax.Array:
  """`(M, *output_shape)` window dots of `x` with `filters` `(M, K)` shared by all
  channels, tiling windows. The value is `_views_sum`, written once when differentiated;
  the tangent in `x` is `_blocks_sum` (so the input gradient is one pass over the
  blocks instead of K interior pads), the tangent in the filters `_views_sum` of `x`
  (so the filter gradient is M * K sums of products with the views, without the
  `(K, P)` copy of the views that a matrix product needs). When the filters are
  differentiated, the K views are written once and read by the value and both sums,
  instead of XLA:CPU recomputing them (and whatever produced `x`) in each reader."""
  return _views_sum(x, filters, geom)


@functools.partial(_tiled_shared.defjvp, symbolic_zeros=True)
def _tiled_shared_jvp(geom, primals, tangents):
  (x, filters), (t_x, t_filters) = primals, tangents
  # Written once (`views.pooled`), else XLA:CPU redoes the views in each of its readers
  # (the tree's gates, its mix, the flatten into the next layer).
  elements = None
  if not isinstance(t_filters, SymbolicZero):
    padded = geom.pad(x, 0)
    elements = [
      views.materialize(geom.window_element(padded, offset), x) for offset in geom.window_offsets()
    ]
  z = views.pooled(_views_sum(x, filters, geom, elements), x)
  t_z = jnp.zeros_like(z)
  if not isinstance(t_x, SymbolicZero):
    t_z = _blocks_sum(t_x, filters, geom)
  if not isinstance(t_filters, SymbolicZero):  # `elements` are the written views
    t_z = t_z + _views_sum(x, t_filters, geom, elements)
  return z, t_z
