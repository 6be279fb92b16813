"""Stochastic pooling (Zeiler & Fergus 2013).

Training: in every window of ``a = max(x, 0)`` (zero padding) one element is drawn
with probability ``a_k / sum_W a`` and output; a window whose ``a`` is all zero
outputs 0. Evaluation: the probabilistic weighting ``sum_W a^2 / sum_W a``.

How a draw is made, without a (window x output) patches tensor:

  * one uniform ``u`` in [0, 1) per output (so windows draw independently of each
    other, also where they overlap) and the threshold ``t = u * sum_W a``;
  * the window offsets are visited in row-major order as strided slices of the padded
    ``a`` (``PoolGeometry.window_element``), keeping the running sum ``C_{<k}`` of the
    offsets before ``k``; the drawn offset is the last ``k`` with ``a_k > 0`` and
    ``C_{<k} <= t``, i.e. the ``k`` with ``C_{<k} <= t < C_{<k} + a_k``: probability
    ``a_k / sum_W a``. (Taking the *last* such offset, rather than the first with
    ``t < C_{<k+1}``, stays correct when rounding makes ``u * sum`` equal ``sum``.)

Gradient (custom VJP): the residual is the drawn offset per output (int8 for
windows of at most 127 elements); the backward pass sends each output's cotangent
to its drawn element by the transposes of the same strided slices, so overlapping
windows that drew the same element add up. Memory stays a small multiple of the
input; nothing of size (window x output) is built. Forward-mode (``jax.jvp``) is not
supported in training mode; the ``deterministic=True`` formula is plain JAX and
supports it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxpool._src import dtypes
from jaxpool._src import geometry
from jaxpool._src.geometry import PaddingLike, PoolGeometry


def _index_dtype(window_size: int):
  """The smallest signed int that holds every offset and -1 (nothing drawn)."""
  if window_size <= np.iinfo(np.int8).max:
    return jnp.int8
  if window_size <= np.iinfo(np.int16).max:
    return jnp.int16
  return jnp.int32


def _positive_part(x: jax.Array) -> jax.Array:
  """max(x, 0) with gradient 0 at x = 0 (as relu) and NaN kept as NaN."""
  return jnp.where(x <= 0, jnp.zeros((), x.dtype), x)


def _draw(x: jax.Array, u: jax.Array, geom: PoolGeometry):
  """(output in the input dtype, drawn offset per output or -1)."""
  a = _positive_part(x.astype(dtypes.compute_dtype(x.dtype)))
  padded = geom.pad(a, 0)
  elements = [geom.window_element(padded, k) for k in geom.window_offsets()]
  total = functools.reduce(jnp.add, elements)
  threshold = u.astype(total.dtype) * total
  index_dtype = _index_dtype(len(elements))
  drawn = jnp.full(geom.output_shape, -1, index_dtype)
  value = jnp.zeros(geom.output_shape, a.dtype)
  before = jnp.zeros(geom.output_shape, a.dtype)  # C_{<k}
  for k, e in enumerate(elements):
    hit = (e > 0) & (before <= threshold)
    drawn = jnp.where(hit, jnp.asarray(k, index_dtype), drawn)
    value = jnp.where(hit, e, value)
    before = before + e
  value = jnp.where(jnp.isnan(total), total, value)  # a NaN in the window gives NaN
  return value.astype(x.dtype), drawn


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _sample(x, u, geom):
  return _draw(x, u, geom)[0]


def _sample_fwd(x, u, geom):
  y, drawn = _draw(x, u, geom)
  return y, drawn


def _sample_bwd(geom, drawn, g):
  dtype = dtypes.compute_dtype(g.dtype)
  gc = g.astype(dtype)
  per_offset = [jnp.where(drawn == k, gc, 0) for k in range(geom.window_size)]
  return geom.window_scatter(per_offset, dtype).astype(g.dtype), None


_sample.defvjp(_sample_fwd, _sample_bwd)


def _weighted(x: jax.Array, geom: PoolGeometry) -> jax.Array:
  """Probabilistic weighting sum a^2 / sum a, 0 where sum a = 0, finite gradient."""
  a = _positive_part(x.astype(dtypes.compute_dtype(x.dtype)))
  zero = np.zeros((), a.dtype)  # concrete: lax picks its differentiable window sum
  total = geom.reduce_window(a, zero, jax.lax.add)
  squares = geom.reduce_window(a * a, zero, jax.lax.add)
  empty = total == 0
  # The inner where keeps the unused branch's gradient finite (no 0 / 0).
  y = jnp.where(empty, zero, squares / jnp.where(empty, 1, total))
  return y.astype(x.dtype)


def stochastic_pool(inputs: Any, window_shape: Sequence[int], strides=None,
                    padding: PaddingLike = "VALID", *, key: jax.Array | None = None,
                    deterministic: bool = False, dilation=None, ceil_mode: bool = False,
                    channel_axis: int = -1) -> jax.Array:
  r"""Stochastic pooling (Zeiler & Fergus 2013, "Stochastic pooling for regularization
  of deep convolutional neural networks").

  With :math:`a = \max(x, 0)` (zero padding) and the window :math:`W_o` of output
  :math:`o`:

  * training (``deterministic=False``): draw one :math:`k \in W_o` with

    .. math:: P(k) = \frac{a_k}{\sum_{j \in W_o} a_j}, \qquad y_o = a_k,

    and :math:`y_o = 0` when :math:`\sum_{W_o} a = 0`. Every output window draws
    independently, also where windows overlap (e.g. 3x3 windows with stride 2); the
    same ``key`` gives the same draws. Sampling is in float32 for half precision
    inputs (the output is the drawn element itself, in the input dtype). A window
    holding a NaN outputs NaN.
  * evaluation (``deterministic=True``): probabilistic weighting

    .. math:: y_o = \frac{\sum_{k \in W_o} a_k^2}{\sum_{k \in W_o} a_k}
              = \mathbb{E}[\text{training output}],

    0 for a window whose ``a`` is all zero; no key needed.

  Gradient: in training, the cotangent of :math:`y_o` goes to the drawn element only
  (custom VJP), summed where overlapping windows drew the same element; ``jax.jvp``
  is not supported there. In evaluation, ordinary autodiff of the formula, finite
  everywhere (0 on all-zero windows, 0 for elements equal to 0, as ``relu``); ``jvp``
  works. Both work under ``jit``, ``vmap`` (vmap over keys to draw per example with
  different keys; one key for the whole batch already draws independently per
  window) and ``grad``.

  Args:
    inputs: ``(*batch, *spatial, features)``, or ``(N, C, *spatial)`` with
      ``channel_axis=1``; a floating dtype.
    window_shape: window size per spatial dim, e.g. ``(2, 2)``.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int, a sequence of ints or ``(low, high)`` pairs;
      zero padding (padding is never drawn).
    key: a ``jax.random`` key (typed or raw uint32), required when
      ``deterministic=False``.
    deterministic: False for the training draw, True for the evaluation formula.
    dilation: window dilation per spatial dim (PyTorch's ``dilation``).
    ceil_mode: PyTorch's rule for rounding the output size up.
    channel_axis: -1 (channels last) or 1 (channels first, PyTorch layout).

  Returns:
    The pooled array, the dtype of ``inputs``, spatial dims replaced by the output
    sizes. Non-negative (or NaN).

  Raises:
    ValueError: ``key`` is None with ``deterministic=False``, and every window
      argument the geometry rejects.
    TypeError: non-floating inputs, a non-bool ``deterministic``.

  Example:
    >>> import jax, jax.numpy as jnp, jaxpool
    >>> x = jnp.array([[1.0], [3.0], [0.0], [-2.0]])
    >>> jaxpool.stochastic_pool(x, (2,), strides=2, deterministic=True)[:, 0]
    Array([2.5, 0. ], dtype=float32)
    >>> y = jaxpool.stochastic_pool(x, (2,), strides=2, key=jax.random.key(0))
    >>> bool(y[0, 0] in (1.0, 3.0)), float(y[1, 0])
    (True, 0.0)
  """
  fn = "stochastic_pool"
  x = dtypes.pool_input(inputs, fn)
  if not isinstance(deterministic, (bool, np.bool_)):
    raise TypeError(
        f"{fn}: deterministic must be a Python bool, got {deterministic!r}.")
  geom = geometry.resolve(x.shape, window_shape, strides, padding, dilation=dilation,
                          ceil_mode=ceil_mode, channel_axis=channel_axis, fn=fn)
  if deterministic:
    return _weighted(x, geom)
  if key is None:
    raise ValueError(
        f"{fn}: key is None with deterministic=False; pass key=jax.random.key(seed) "
        "for the training draw, or deterministic=True for the evaluation formula.")
  u = jax.random.uniform(key, geom.output_shape, jnp.float32)
  return _sample(x, u, geom)
