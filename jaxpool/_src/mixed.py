r"""Learned mixtures of max and average pooling: mixed, gated and tree pooling.

Lee, Gallagher & Tu, "Generalizing Pooling Functions in Convolutional Neural
Networks: Mixed, Gated, and Tree", AISTATS 2016; Yu, Wang, Chen & Wei, "Mixed
Pooling for Convolutional Neural Networks", RSKT 2014.

Shared conventions of the three functions:

* The max part equals :func:`jaxpool.max_pool` (its value is computed by it, its
  gradient goes to the first maximal element, as PyTorch) and the average part
  :func:`jaxpool.avg_pool` (the same additions). The average counts the padding by
  default (`count_include_pad=True`, as `avg_pool`, Flax and PyTorch); pass
  `count_include_pad=False` to average over the input elements only. A window lying
  entirely in the padding (possible only with padding larger than the window) has
  max and average 0 here (instead of -inf and 0/0), so the mixtures stay finite.
* The learned dot products :math:`w \cdot x_W` of gates and tree nodes see the
  padding as zeros (declared padding and the `ceil_mode` overhang alike), as a
  zero-padded convolution would.
* float16/bfloat16 inputs are pooled and mixed in float32 (the average is not
  rounded to the input dtype before mixing) and the result cast back to the input
  dtype. The learned parameters may have any float dtype; gradients flow to all of
  them and to the inputs.
* Speed: `mixed_pool` and `gated_pool` have one custom JVP rule each (below) whose
  transpose, the gradient, is a single pass over the input; `tree_pool` is plain
  autodiff of `window_dot`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from jaxpool._src import reduce
from jaxpool._src.machinery import dtypes
from jaxpool._src.machinery import geometry
from jaxpool._src.machinery import views
from jaxpool._src.machinery.geometry import PaddingLike
from jaxpool._src.machinery.geometry import PoolGeometry
from jaxpool._src.machinery.window_dot import check_weights
from jaxpool._src.machinery.window_dot import window_dot


def _check_count_include_pad(count_include_pad, fn: str):
  if not isinstance(count_include_pad, (bool, np.bool_)):
    raise TypeError(f"{fn}: count_include_pad must be a bool, got {count_include_pad!r}.")


def _max_value(x: jax.Array, geom: PoolGeometry) -> jax.Array:
  """max_pool(x) in the compute dtype, through max_pool's own rule (for the higher
  derivatives of the rules below, which give the first one themselves)."""
  return reduce.extremum_pool(x, geom, "max").astype(dtypes.compute_dtype(x.dtype))


def _written_once(
  a: jax.Array, x: jax.Array, geom: PoolGeometry, *, for_overlaps: bool = False
) -> jax.Array:
  """`a`, written to memory once if the geometry pads, for a value with several readers.

  XLA computes an elementwise value inside each fusion that reads it; where the
  window views of the input are padded, it also writes each padded view to memory
  first (benchmark case 2d_3x3s2_same). Without padding, recomputing from plain
  strided views is cheaper than the extra pass (benchmark case 2d_2x2s2).

  `for_overlaps`: also where an input element lies in two or more windows on
  average (`views.overlaps_twice`). Gated pooling's per-window factors (max, gate,
  gate derivative; then also the average) enter the term of each of an element's
  windows in the transpose, and recomputing them there from K views each costs more
  than writing them (case: gated_pool 3x3/2 VALID fwd+bwd). Not for mixed pooling's
  one factor, nor for 1-D 3/2 windows (benchmark case 1d_3s2) or stride 1, whose
  output is as large as the input: there writing costs more than recomputing.
  """
  if geom.has_padding or (for_overlaps and views.overlaps_twice(geom)):
    return views.materialize(a, x)
  return a


# --- one rule for the derivative of every mixture of max and average ------------------
#
# With m the weight of the max (alpha, or the gate g), k* the offset of the first
# maximal element (`reduce.selected_offset`) and c_o the divisor of the average, the
# derivative of y = avg + m (max - avg) in the inputs is
#
#     dy_o = sum_k (m_o [k = k*_o] + (1 - m_o) / c_o + r_o w_k) dx_{o,k}
#
# where the last term is the gate's (r = (max - avg) g (1 - g), w the gating mask; 0
# for mixed pooling). Written as ONE weighted sum over the window elements, its
# transpose (the VJP) is one pass over the input: a select-multiply-reshape for
# windows that tile the input, K padded terms otherwise. Composing the rules of
# max_pool, avg_pool and the window dot instead gives 3K terms, and XLA recomputes
# the sigmoid and the window sums inside each of them.


def _mix(big: jax.Array, mean: jax.Array, weight: jax.Array) -> jax.Array:
  """weight * max + (1 - weight) * avg."""
  return mean + weight * (big - mean)


def _window_elements(x: jax.Array, geom: PoolGeometry, dtype, factor=None):
  """(k, element k of every window in `dtype` times `factor(k)`), 0 in the padding;
  offsets all in padding are left out.

  Strided slices of the unpadded input, converted, scaled and padded onto the windows
  that reach them: no padded or converted copy of the input is written, and XLA
  fuses them into their one consumer. (Scaled before padding, the views of two
  window sums are different values to XLA: shared padded views would be written to
  memory first.)
  """
  for k, offset in enumerate(geom.window_offsets()):
    element = views.locate(geom, offset)
    if element is not None:
      view = views.of_input(x, element).astype(dtype)
      if factor is not None:
        view = view * factor(k)
      yield k, views.on_windows(view, element, geom, 0)


def _gate_logits(x: jax.Array, w: jax.Array, geom: PoolGeometry, dtype) -> jax.Array:
  """window_dot(x, w[None])[0] in `dtype`, without the padded copy of `x` it writes."""
  shape = [1] * geom.ndim
  shape[geom.channel_axis] = w.shape[-1]
  offsets = geom.window_offsets()
  weight = lambda k: jnp.reshape(w[offsets[k]].astype(dtype), shape)
  terms = [e for _, e in _window_elements(x, geom, dtype, weight)]
  return functools.reduce(jnp.add, terms) if terms else jnp.zeros(geom.output_shape, dtype)


def _average(x: jax.Array, geom: PoolGeometry, count_include_pad: bool):
  """(avg of every window in the compute dtype, 1 / divisor as a numpy array)."""
  dtype = dtypes.compute_dtype(x.dtype)
  scale = reduce.average_scale(geom)  # as avg_pool: no overflow for huge values
  counts = np.maximum(geom.window_counts(count_include_pad), 1)
  divisor = geom.spatial_to_output(counts * scale).astype(dtype)
  # The additions of avg_pool's sum of strided views, in the same order, so the
  # averages equal avg_pool's (for inputs in the compute dtype).
  total = jnp.zeros(geom.output_shape, dtype)
  for _, element in _window_elements(x, geom, dtype, lambda k: np.asarray(scale, dtype)):
    total = total + element
  return total / divisor, geom.spatial_to_output(1.0 / counts).astype(dtype)


def _weighted_elements(t: jax.Array, index: jax.Array, p, q, r, w, geom: PoolGeometry):
  """sum_k (p [k = index] + q + r w_k) t_{o,k}: linear in `t`, the others broadcast."""
  dtype = q.dtype
  t = t.astype(dtype)
  out = geom.output_shape
  p, q = jnp.broadcast_to(p, out), jnp.broadcast_to(q, out)
  r = None if r is None else jnp.broadcast_to(r, out)
  shape = [1] * geom.ndim  # one gate weight per channel (or shared) on the channel axis
  if w is not None:
    shape[geom.channel_axis] = w.shape[-1]
  if views.is_tiling(geom):
    blocks, window_axes = views.window_blocks(t, geom)
    expand = lambda a: jnp.expand_dims(a, window_axes)
    selected = views.selected_in_blocks(index, blocks.ndim, window_axes, geom)
    coef = jnp.where(selected, expand(p), 0) + expand(q)
    if r is not None:  # w (*window, 1 or C) on the block's window and channel axes
      assert w is not None  # r and w are given together
      channel = geom.channel_axis + sum(a < geom.channel_axis for a in geom.spatial_axes)
      w_shape = [1] * blocks.ndim
      w_shape[channel] = w.shape[-1]
      for axis, k in zip(window_axes, geom.window_shape):
        w_shape[axis] = k
      w_ordered = w if channel > window_axes[-1] else jnp.moveaxis(w, -1, 0)
      coef = coef + expand(r) * jnp.reshape(w_ordered, w_shape)
    return jnp.sum(blocks * coef, axis=tuple(window_axes))
  # `views.linear_views`: from the stride phases of `t`, so that the transpose
  # computes every input element from the offsets of its own phase only.
  offsets = geom.window_offsets()
  total = None
  for k, view in views.linear_views(t, geom):
    coef = jnp.where(index == k, p, 0) + q
    if r is not None:
      assert w is not None  # r and w are given together
      coef = coef + r * jnp.reshape(w[offsets[k]], shape)
    term = view * coef
    total = term if total is None else total + term
  return jnp.zeros(out, dtype) if total is None else total


def _parts(
  x: jax.Array,
  geom: PoolGeometry,
  count_include_pad: bool,
  dtype,
  *,
  differentiated: bool = False,
  for_overlaps: bool = False,
):
  """(max in the compute dtype, then max, avg and 1 / divisor in `dtype`); max and avg
  0 on windows holding no input in the latter. `for_overlaps`: see `_written_once`."""
  # Not differentiated: the max of `x` converted to the compute dtype. For bfloat16,
  # max_pool's own output (bfloat16, converted back) fused into the mixture's loop
  # slows the forward (same values: the max of bfloat16 numbers is one of them).
  # Benchmark case: mixed/gated 2d_3x3s2_same bfloat16 forward.
  raw = _max_value(x if differentiated else x.astype(dtypes.compute_dtype(x.dtype)), geom)
  if differentiated:  # the mixture and `selected_offset` both read it
    raw = _written_once(raw, x, geom, for_overlaps=for_overlaps)
  mean, inverse = _average(x, geom, count_include_pad)
  big, mean = raw.astype(dtype), mean.astype(dtype)
  empty = geom.empty_windows()
  if empty is not None:  # max -inf (and avg 0 / 0 without padding counted) there
    big = jnp.where(empty, jnp.zeros((), dtype), big)
    mean = jnp.where(empty, jnp.zeros((), dtype), mean)
  return raw, big, mean, inverse.astype(dtype)


def _is_zero(tangent) -> bool:
  return isinstance(tangent, SymbolicZero)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _mixed(x, alpha, geom, count_include_pad):
  """alpha * max + (1 - alpha) * avg."""
  dtype = jnp.promote_types(alpha.dtype, dtypes.compute_dtype(x.dtype))
  _, big, mean, _ = _parts(x, geom, count_include_pad, dtype)
  return _mix(big, mean, alpha.astype(dtype))


@functools.partial(_mixed.defjvp, symbolic_zeros=True)
def _mixed_jvp(geom, count_include_pad, primals, tangents):
  (x, alpha), (t_x, t_alpha) = primals, tangents
  dtype = jnp.promote_types(alpha.dtype, dtypes.compute_dtype(x.dtype))
  big, big_c, mean, inverse = _parts(x, geom, count_include_pad, dtype, differentiated=True)
  a = alpha.astype(dtype)
  y = views.pooled(_mix(big_c, mean, a), x)
  t_y = jnp.zeros(y.shape, dtype)
  if not _is_zero(t_x):
    index = reduce.selected_offset(x, big, geom, "max")
    t_y = t_y + _weighted_elements(t_x, index, a, (1 - a) * inverse, None, None, geom)
  if not _is_zero(t_alpha):
    t_y = t_y + (big_c - mean) * t_alpha.astype(dtype)
  return y, t_y


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _gated(x, w, geom, count_include_pad):
  """g * max + (1 - g) * avg with g = sigmoid(window_dot(x, w))."""
  dtype = _gate_dtype(x, w)
  _, big, mean, _ = _parts(x, geom, count_include_pad, dtype)
  return _mix(big, mean, jax.nn.sigmoid(_gate_logits(x, w, geom, dtype)))


def _gate_dtype(x: jax.Array, w: jax.Array):
  return jnp.promote_types(dtypes.compute_dtype(x.dtype), dtypes.compute_dtype(w.dtype))


@functools.partial(_gated.defjvp, symbolic_zeros=True)
def _gated_jvp(geom, count_include_pad, primals, tangents):
  (x, w), (t_x, t_w) = primals, tangents
  dtype = _gate_dtype(x, w)
  once = functools.partial(_written_once, x=x, geom=geom, for_overlaps=True)
  big, big_c, mean, inverse = _parts(
    x, geom, count_include_pad, dtype, differentiated=True, for_overlaps=True
  )
  # y, dy/dz and the K terms of the transpose all read g. The average is read by y
  # only (fused there): dy/dz = (max - avg) g (1 - g) = g (max - y), as
  # max - y = (1 - g) (max - avg). Written for dy/dz too, it costs a pass of its own
  # (benchmark cases: gated_pool fwd+bwd 2d_3x3s2_same, 1d_3s2, 2d_2x2s2).
  g = once(jax.nn.sigmoid(_gate_logits(x, w, geom, dtype)))
  y = views.pooled(_mix(big_c, mean, g), x)
  r = once(g * (big_c - y))  # dy/dz
  t_y = jnp.zeros(y.shape, dtype)
  if not _is_zero(t_x):
    index = reduce.selected_offset(x, big, geom, "max")
    t_y = t_y + _weighted_elements(t_x, index, g, (1 - g) * inverse, r, w.astype(dtype), geom)
  if not _is_zero(t_w):
    t_y = t_y + r * _gate_logits(x, t_w, geom, dtype)
  return y, t_y


def _alpha(alpha: Any, geom: PoolGeometry) -> jax.Array:
  """alpha as an array broadcastable to the output (a (C,) vector goes on the channel axis)."""
  a = dtypes.as_array(alpha, "mixed_pool", "alpha")
  if jnp.issubdtype(a.dtype, jnp.complexfloating):  # astype(float) would drop the imaginary part
    raise TypeError(
      f"mixed_pool: alpha must be real (a float, int or bool array or number), got dtype {a.dtype}."
    )
  if not jnp.issubdtype(a.dtype, jnp.floating):
    a = a.astype(jnp.result_type(float))
  out = geom.output_shape
  channels = out[geom.channel_axis]
  if a.ndim == 1 and a.shape[0] == channels:
    shape = [1] * len(out)
    shape[geom.channel_axis] = channels
    return jnp.reshape(a, shape)
  try:
    ok = np.broadcast_shapes(a.shape, out) == out
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(
      f"mixed_pool: alpha must be a scalar, a per-channel vector of shape ({channels},) "
      f"or per region, broadcastable to the output shape {out}; got shape {a.shape}."
    )
  return a


def mixed_pool(
  inputs: Any,
  alpha: Any,
  window_shape,
  strides=None,
  padding: PaddingLike = "VALID",
  *,
  count_include_pad: bool = True,
  dilation=None,
  ceil_mode: bool = False,
  channel_axis: int = -1,
) -> jax.Array:
  r"""Mixed pooling: a convex combination of max and average pooling.

  .. math:: y_o = \alpha \max_{k \in W_o} x_k + (1 - \alpha) \frac{1}{c_o} \sum_{k \in W_o} x_k

  :math:`\alpha` may be one scalar (one mixture per layer), one value per channel or
  one value per output region (and channel). Lee et al. (2016) learn
  :math:`\alpha` (`jaxpool.linen.MixedPool` keeps it in :math:`[0, 1]` through a
  sigmoid); Yu et al. (2014) draw :math:`\alpha \in \{0, 1\}` at random per region
  during training, which is this function with a Bernoulli-sampled per-region
  `alpha` (see the example). Values outside :math:`[0, 1]` extrapolate and are
  not rejected. Differentiable in `inputs` and `alpha` (also forward mode); the max
  part routes its gradient as :func:`jaxpool.max_pool` (first maximal element).
  Deterministic: training and evaluation differ only in the `alpha` you pass.

  Args:
    inputs: `(*batch, *spatial, C)`, or `(N, C, *spatial)` with `channel_axis=1`;
      a floating dtype.
    alpha: the weight of the max: a scalar, a vector of shape `(C,)` (per channel,
      placed on the channel axis whatever the layout), or an array broadcastable to
      the output shape (per region, e.g. `(H_out, W_out, 1)` channels-last). May be
      a traced value.
    window_shape: window size per spatial dim, e.g. `(2, 2)`.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int, a sequence of ints or of `(low, high)` pairs.
    count_include_pad: whether the average counts padding elements (default True,
      as :func:`jaxpool.avg_pool`).
    dilation: window dilation per spatial dim.
    ceil_mode: PyTorch's ceil_mode.
    channel_axis: -1 (channels last) or 1 (channels first).

  Returns:
    The pooled array, dtype of `inputs`, shape of :func:`jaxpool.max_pool`'s output.

  Example:
    >>> import jax, jax.numpy as jnp, jaxpool
    >>> x = jnp.array([[1.0], [3.0], [2.0], [6.0]])
    >>> jaxpool.mixed_pool(x, 0.5, (2,), strides=2)[:, 0]
    Array([2.5, 5. ], dtype=float32)
    >>> # Yu et al. 2014: max or avg at random, per region and channel.
    >>> a = jax.random.bernoulli(jax.random.key(0), 0.5, (2, 1)).astype(jnp.float32)
    >>> jaxpool.mixed_pool(x, a, (2,), strides=2).shape
    (2, 1)
  """
  fn = "mixed_pool"
  x = dtypes.pool_input(inputs, fn)
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
  a = _alpha(alpha, geom)
  _check_count_include_pad(count_include_pad, fn)
  return _mixed(x, a, geom, bool(count_include_pad)).astype(x.dtype)


def gated_pool(
  inputs: Any,
  gate: Any,
  window_shape,
  strides=None,
  padding: PaddingLike = "VALID",
  *,
  count_include_pad: bool = True,
  dilation=None,
  ceil_mode: bool = False,
  channel_axis: int = -1,
) -> jax.Array:
  r"""Gated pooling: max and average mixed by a learned, input-dependent gate.

  .. math::

      g_o = \sigma\Big(\sum_{k \in W} \omega_k \, x_{o,k}\Big), \qquad
      y_o = g_o \max_{k \in W_o} x_k + (1 - g_o) \frac{1}{c_o} \sum_{k \in W_o} x_k

  where :math:`x_{o,k}` is element :math:`k` of window :math:`o` (zero in the
  padding) and :math:`\sigma` the logistic sigmoid. One gating mask
  :math:`\omega` is shared by all channels, or there is one per channel
  (Lee, Gallagher & Tu, AISTATS 2016, "gated" pooling). The dot products are a sum
  over window offsets of strided slices (no patches are materialised).
  Differentiable in `inputs` and `gate` (also forward mode). The same in training
  and evaluation.

  Args:
    inputs: `(*batch, *spatial, C)`, or `(N, C, *spatial)` with `channel_axis=1`;
      a floating dtype.
    gate: the gating mask :math:`\omega`, shape `window_shape + (1,)` (shared by all
      channels) or `window_shape + (C,)` (one per channel), e.g. `(3, 3, 1)`.
    window_shape: window size per spatial dim.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int, a sequence of ints or of `(low, high)` pairs.
    count_include_pad: whether the average counts padding elements (default True).
    dilation: window dilation per spatial dim (the mask is dilated with the window).
    ceil_mode: PyTorch's ceil_mode.
    channel_axis: -1 (channels last) or 1 (channels first).

  Returns:
    The pooled array, dtype of `inputs`, shape of :func:`jaxpool.max_pool`'s output.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> x = jnp.array([[1.0], [3.0], [2.0], [6.0]])
    >>> gate = jnp.zeros((2, 1))   # sigmoid(0) = 1/2: (max + avg) / 2
    >>> jaxpool.gated_pool(x, gate, (2,), strides=2)[:, 0]
    Array([2.5, 5. ], dtype=float32)
  """
  fn = "gated_pool"
  x = dtypes.pool_input(inputs, fn)
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
  w = check_weights(gate, geom, name="gate", fn=fn)
  _check_count_include_pad(count_include_pad, fn)
  return _gated(x, w, geom, bool(count_include_pad)).astype(x.dtype)


def tree_pool(
  inputs: Any,
  leaves: Any,
  gates: Any,
  window_shape,
  strides=None,
  padding: PaddingLike = "VALID",
  *,
  dilation=None,
  ceil_mode: bool = False,
  channel_axis: int = -1,
) -> jax.Array:
  r"""Tree pooling: learned pooling filters at the leaves of a binary tree of gates.

  For window :math:`o` with elements :math:`x_{o,k}` (zero in the padding), leaf
  :math:`m` is a learned pooling filter and internal node :math:`n` mixes its two
  children with a learned gate:

  .. math::

      f_m(x_o) = \sum_{k \in W} v_{m,k} \, x_{o,k}, \qquad
      f_n(x_o) = \sigma(\omega_n \cdot x_o) \, f_{\mathrm{left}(n)}(x_o)
               + \big(1 - \sigma(\omega_n \cdot x_o)\big) \, f_{\mathrm{right}(n)}(x_o)

  and :math:`y_o` is the value of the root (Lee, Gallagher & Tu, AISTATS 2016,
  "tree" pooling). The tree is complete: `n_leaves` is a power of two, the internal
  nodes are numbered breadth-first (node 0 is the root, the children of node
  :math:`n` are :math:`2n + 1` (left) and :math:`2n + 2` (right)) and `gates[n]`
  belongs to internal node :math:`n`; the leaves, left to right, are `leaves[0]`,
  `leaves[1]`, ... The paper's 2-level tree has 2 leaves and 1 gate (27 parameters
  for a 3x3 window shared by all channels). `n_leaves = 1` (no gates) is a single
  learned linear pooling filter. Differentiable in `inputs`, `leaves` and `gates`
  (also forward mode). The same in training and evaluation.

  Args:
    inputs: `(*batch, *spatial, C)`, or `(N, C, *spatial)` with `channel_axis=1`;
      a floating dtype.
    leaves: the leaf filters :math:`v`, shape `(n_leaves, *window_shape, 1)` (shared
      by all channels) or `(n_leaves, *window_shape, C)` (per channel).
    gates: the gating masks :math:`\omega`, shape `(n_leaves - 1, *window_shape, 1)`
      or `(n_leaves - 1, *window_shape, C)`.
    window_shape: window size per spatial dim.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int, a sequence of ints or of `(low, high)` pairs.
    dilation: window dilation per spatial dim.
    ceil_mode: PyTorch's ceil_mode.
    channel_axis: -1 (channels last) or 1 (channels first).

  Returns:
    The pooled array, dtype of `inputs`, shape of :func:`jaxpool.max_pool`'s output.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> x = jnp.array([[1.0], [3.0], [2.0], [6.0]])
    >>> leaves = jnp.array([[[1.0], [0.0]], [[0.0], [1.0]]])  # first, second element
    >>> gates = jnp.zeros((1, 2, 1))                          # sigmoid(0) = 1/2
    >>> jaxpool.tree_pool(x, leaves, gates, (2,), strides=2)[:, 0]
    Array([2., 4.], dtype=float32)
  """
  fn = "tree_pool"
  x = dtypes.pool_input(inputs, fn)
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
  v = check_weights(leaves, geom, name="leaves", fn=fn, leading="n_leaves")
  w = check_weights(gates, geom, name="gates", fn=fn, leading="n_leaves - 1")
  n_leaves = v.shape[0]
  if n_leaves < 1 or n_leaves & (n_leaves - 1):
    raise ValueError(
      f"{fn}: a complete binary tree needs a power of two of leaves (1, 2, 4, ...), "
      f"got leaves of shape {tuple(v.shape)} ({n_leaves} leaves)."
    )
  if w.shape[0] != n_leaves - 1:
    raise ValueError(
      f"{fn}: a tree with {n_leaves} leaves has {n_leaves - 1} gates, so gates must "
      f"have shape ({n_leaves - 1}, *window_shape, 1 or C); got shape {tuple(w.shape)}."
    )
  if v.shape[-1] != w.shape[-1]:  # one pass over the windows needs one channel layout
    channels = geom.input_shape[geom.channel_axis]
    v = jnp.broadcast_to(v, v.shape[:-1] + (channels,))
    w = jnp.broadcast_to(w, w.shape[:-1] + (channels,))
  dtype = jnp.promote_types(v.dtype, w.dtype)
  z = window_dot(x, jnp.concatenate([v.astype(dtype), w.astype(dtype)]), geom)
  # One row per filter by a split, whose transpose (the backward) concatenates the rows'
  # cotangents; slices of `z` would transpose into pads summed in one slow loop fusion
  # (case: the training table, seed_cnn with tree).
  rows = jnp.split(z, z.shape[0], axis=0)
  values, gate_logits = rows[:n_leaves], rows[n_leaves:]
  # Bottom-up, one tree level at a time: the internal nodes at depth d are the
  # breadth-first indices 2^d - 1 ... 2^(d+1) - 2, their children the level below.
  depth = n_leaves.bit_length() - 1
  for d in reversed(range(depth)):
    gates_d = gate_logits[2**d - 1 : 2 ** (d + 1) - 1]
    values = [
      _mix(values[2 * i], values[2 * i + 1], jax.nn.sigmoid(g)) for i, g in enumerate(gates_d)
    ]
  return values[0][0].astype(x.dtype)
