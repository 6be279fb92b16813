r"""Learned mixtures of max and average pooling: mixed, gated and tree pooling.

Lee, Gallagher & Tu, "Generalizing Pooling Functions in Convolutional Neural
Networks: Mixed, Gated, and Tree", AISTATS 2016; Yu, Wang, Chen & Wei, "Mixed
Pooling for Convolutional Neural Networks", RSKT 2014.

Shared conventions of the three functions:

* The max part is :func:`jaxpool.max_pool` and the average part
  :func:`jaxpool.avg_pool` (so their fast gradients are reused). The average counts
  the padding by default (`count_include_pad=True`, as `avg_pool`, Flax and
  PyTorch); pass `count_include_pad=False` to average over the input elements only.
  A window lying entirely in the padding (possible only with padding larger than the
  window) has max and average 0 here (instead of -inf and 0/0), so the mixtures
  stay finite.
* The learned dot products :math:`w \cdot x_W` of gates and tree nodes see the
  padding as zeros (declared padding and the `ceil_mode` overhang alike), as a
  zero-padded convolution would.
* float16/bfloat16 inputs are mixed in float32 and the result cast back to the input
  dtype. The learned parameters may have any float dtype; gradients flow to all of
  them and to the inputs (plain autodiff on top of the pools' own rules).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxpool._src import dtypes
from jaxpool._src import geometry
from jaxpool._src.geometry import PaddingLike, PoolGeometry
from jaxpool._src.reduce import avg_pool
from jaxpool._src.reduce import max_pool
from jaxpool._src.window_dot import check_weights
from jaxpool._src.window_dot import window_dot


def _max_and_avg(x: jax.Array, geom: PoolGeometry, window_shape, strides, padding,
                 dilation, ceil_mode, channel_axis, count_include_pad, fn: str):
  """(max, avg) of every window in the compute dtype; both 0 on all-padding windows."""
  if not isinstance(count_include_pad, (bool, np.bool_)):
    raise TypeError(f"{fn}: count_include_pad must be a bool, got {count_include_pad!r}.")
  options = dict(dilation=dilation, ceil_mode=ceil_mode, channel_axis=channel_axis)
  dtype = dtypes.compute_dtype(x.dtype)
  big = max_pool(x, window_shape, strides, padding, **options).astype(dtype)
  mean = avg_pool(x, window_shape, strides, padding, count_include_pad,
                  **options).astype(dtype)
  empty = geom.window_counts(False) == 0
  if empty.any():  # windows with no input element: max -inf, avg 0/0 without padding
    empty = geom.spatial_to_output(empty)
    big = jnp.where(empty, jnp.zeros((), dtype), big)
    mean = jnp.where(empty, jnp.zeros((), dtype), mean)
  return big, mean


def _mix(big: jax.Array, mean: jax.Array, weight: jax.Array) -> jax.Array:
  """weight * max + (1 - weight) * avg."""
  return mean + weight * (big - mean)


def _alpha(alpha: Any, geom: PoolGeometry) -> jax.Array:
  """alpha as an array broadcastable to the output (a (C,) vector goes on the channel axis)."""
  a = jnp.asarray(alpha)
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
        f"or per region, broadcastable to the output shape {out}; got shape {a.shape}.")
  return a


def mixed_pool(inputs: Any, alpha: Any, window_shape, strides=None,
               padding: PaddingLike = "VALID", *, count_include_pad: bool = True,
               dilation=None, ceil_mode: bool = False, channel_axis: int = -1) -> jax.Array:
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
  geom = geometry.resolve(x.shape, window_shape, strides, padding, dilation=dilation,
                          ceil_mode=ceil_mode, channel_axis=channel_axis, fn=fn)
  a = _alpha(alpha, geom)
  big, mean = _max_and_avg(x, geom, window_shape, strides, padding, dilation, ceil_mode,
                           channel_axis, count_include_pad, fn)
  return _mix(big, mean, a.astype(jnp.promote_types(a.dtype, big.dtype))).astype(x.dtype)


def gated_pool(inputs: Any, gate: Any, window_shape, strides=None,
               padding: PaddingLike = "VALID", *, count_include_pad: bool = True,
               dilation=None, ceil_mode: bool = False, channel_axis: int = -1) -> jax.Array:
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
  geom = geometry.resolve(x.shape, window_shape, strides, padding, dilation=dilation,
                          ceil_mode=ceil_mode, channel_axis=channel_axis, fn=fn)
  w = check_weights(gate, geom, name="gate", fn=fn)
  g = jax.nn.sigmoid(window_dot(x, w[None], geom)[0])
  big, mean = _max_and_avg(x, geom, window_shape, strides, padding, dilation, ceil_mode,
                           channel_axis, count_include_pad, fn)
  return _mix(big, mean, g).astype(x.dtype)


def tree_pool(inputs: Any, leaves: Any, gates: Any, window_shape, strides=None,
              padding: PaddingLike = "VALID", *, dilation=None, ceil_mode: bool = False,
              channel_axis: int = -1) -> jax.Array:
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
  geom = geometry.resolve(x.shape, window_shape, strides, padding, dilation=dilation,
                          ceil_mode=ceil_mode, channel_axis=channel_axis, fn=fn)
  v = check_weights(leaves, geom, name="leaves", fn=fn, leading="n_leaves")
  w = check_weights(gates, geom, name="gates", fn=fn, leading="n_leaves - 1")
  n_leaves = v.shape[0]
  if n_leaves < 1 or n_leaves & (n_leaves - 1):
    raise ValueError(
        f"{fn}: a complete binary tree needs a power of two of leaves (1, 2, 4, ...), "
        f"got leaves of shape {tuple(v.shape)} ({n_leaves} leaves).")
  if w.shape[0] != n_leaves - 1:
    raise ValueError(
        f"{fn}: a tree with {n_leaves} leaves has {n_leaves - 1} gates, so gates must "
        f"have shape ({n_leaves - 1}, *window_shape, 1 or C); got shape {tuple(w.shape)}.")
  if v.shape[-1] != w.shape[-1]:  # one pass over the windows needs one channel layout
    channels = geom.input_shape[geom.channel_axis]
    v = jnp.broadcast_to(v, v.shape[:-1] + (channels,))
    w = jnp.broadcast_to(w, w.shape[:-1] + (channels,))
  dtype = jnp.promote_types(v.dtype, w.dtype)
  z = window_dot(x, jnp.concatenate([v.astype(dtype), w.astype(dtype)]), geom)
  values, gate_logits = z[:n_leaves], z[n_leaves:]
  # Bottom-up, one tree level at a time: the internal nodes at depth d are the
  # breadth-first indices 2^d - 1 ... 2^(d+1) - 2, their children the level below.
  depth = n_leaves.bit_length() - 1
  for d in reversed(range(depth)):
    g = jax.nn.sigmoid(gate_logits[2**d - 1:2**(d + 1) - 1])
    values = _mix(values[0::2], values[1::2], g)
  return values[0].astype(x.dtype)
