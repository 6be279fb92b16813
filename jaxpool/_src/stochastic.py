"""Stochastic pooling (Zeiler & Fergus 2013).

Training: in every window of ``a = max(x, 0)`` (zero padding) one element is drawn
with probability ``a_k / sum_W a`` and output; a window whose ``a`` is all zero
outputs 0. Evaluation: the probabilistic weighting ``sum_W a^2 / sum_W a``.

How a draw is made, without a (window x output) patches tensor:

  * one uniform ``u`` in [0, 1) per output (so windows draw independently of each
    other, also where they overlap) and the threshold ``t = u * sum_W a``. The
    uniforms are the top 24 bits of counter-mode Threefry-2x32 words of the key
    (``_uniforms``): two words per hash, half the hashes of ``jax.random.uniform``,
    and the cipher written out as one fused pass (XLA:CPU runs JAX's as a loop
    over memory); other key implementations use ``jax.random.bits``. A draw is
    a function of the key alone, but not the one ``jax.random.uniform`` would make:
    drawing ``u`` with ``jax.random.uniform`` instead makes the seed CNN's
    stochastic training step 1.2-1.3x slower on CPU (case: the benchmark's
    training table, pool "stochastic" against the written-out cipher), more than
    the 10% that jax.random's draws would be worth;
  * the window offsets are visited in row-major order as strided slices of ``a``,
    keeping the running sums ``C_k = a_0 + ... + a_k``; the drawn offset is the
    number of ``C_k <= t``, i.e. the ``k`` with ``C_{k-1} <= t < C_k``: probability
    ``a_k / sum_W a`` (and ``a_k > 0``). Where rounding makes ``u * sum`` equal
    ``sum`` it is the last offset that increased the running sum (for a window
    whose sum is infinite, the element that made it infinite);
  * this walk is one fused pass that writes one small integer per output (the drawn
    offset ``k``, ``K`` for an all-zero window, ``K + 1`` for a window holding a
    NaN); the output is the drawn element, picked by a select per offset.

Gradient (custom VJP): the drawn offsets (a uint8 per output for windows of fewer
than 127 elements) are the only residual; the backward pass is the transpose of
`jaxpool`'s max-pool tangent gather (`reduce.gather_selected`) with the drawn
offsets in place of the maxima: a select and a reshape for windows that tile the
input, a sum of strided, padded terms otherwise, so overlapping windows that drew
the same element add up. Memory stays a small multiple of the input; nothing of
size (window x output) is built. Forward-mode (``jax.jvp``) is not supported in
training mode; the ``deterministic=True`` formula is plain JAX and supports it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxpool._src import lp
from jaxpool._src import reduce
from jaxpool._src.machinery import dtypes
from jaxpool._src.machinery import geometry
from jaxpool._src.machinery import keys
from jaxpool._src.machinery import views
from jaxpool._src.machinery.geometry import PaddingLike
from jaxpool._src.machinery.geometry import PoolGeometry


def _positive_part(x: jax.Array) -> jax.Array:
  """max(x, 0) with gradient 0 at x = 0 (as relu) and NaN kept as NaN."""
  return jnp.where(x <= 0, jnp.zeros((), x.dtype), x)


def _rotate_left(v: jax.Array, r: int) -> jax.Array:
  return lax.shift_left(v, np.uint32(r)) | lax.shift_right_logical(v, np.uint32(32 - r))


def _threefry_2x32(k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array):
  """The Threefry-2x32 block cipher with 20 rounds (Salmon, Moraes, Dror & Shaw,
  "Parallel random numbers: as easy as 1, 2, 3", SC 2011): key `(k0, k1)`, counter
  words `(x0, x1)` -> two random words, all uint32.

  The function JAX's threefry keys are built on, written out round by round: on CPU,
  XLA runs `jax.extend.random.threefry_2x32` as a loop over memory (4 rounds per
  pass), this as one fused pass; the words are the same bits (tested).
  """
  keys = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
  rotations = ((13, 15, 26, 6), (17, 29, 16, 24))
  x0, x1 = x0 + keys[0], x1 + keys[1]
  for i in range(5):
    for r in rotations[i % 2]:
      x0 = x0 + x1
      x1 = _rotate_left(x1, r) ^ x0
    x0 = x0 + keys[(i + 1) % 3]
    x1 = x1 + keys[(i + 2) % 3] + np.uint32(i + 1)
  return x0, x1


def _uniforms(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """float32 uniforms in [0, 1) on a 2^-24 grid, one per element of `shape` (`key`: one
  typed key, `keys.random_key`).

  For threefry keys (JAX's default), the words `jax.extend.random.threefry_2x32`
  gives for the counters `0, 1, ..., n - 1` (each hash makes two words, of the
  counters `i` and `i + n/2`): half the hashes of `jax.random.uniform`, whose
  partitionable counters hash once per word. Other key implementations use
  `jax.random.bits`. The top 24 bits of each word, scaled by 2^-24, are exact in
  float32.
  """
  size = int(np.prod(shape))
  if jax.random.key_impl(key) == "threefry2x32":
    data = jax.random.key_data(key)
    half = (size + 1) // 2
    first = lax.iota(jnp.uint32, half)
    second = first + np.uint32(half)
    if size % 2:  # as threefry_2x32: an odd count is padded with a 0 counter
      second = jnp.where(second < size, second, np.uint32(0))
    words = _threefry_2x32(data[0], data[1], first, second)
    bits = jnp.concatenate(words)[:size]
  else:
    bits = jax.random.bits(key, (size,), jnp.uint32)
  # Written to memory once: fused into the draw, the flat halves are re-indexed per
  # element, which costs far more than the draw itself.
  bits = views.materialize(bits.reshape(shape), jax.random.key_data(key))
  return lax.shift_right_logical(bits, jnp.uint32(8)).astype(jnp.float32) * np.float32(2.0**-24)


def _elements(x: jax.Array, geom: PoolGeometry) -> list[jax.Array]:
  """Element k of every window (0 in the padding), one output-shaped array per offset.

  Strided slices of the unpadded input, padded onto the windows that reach them:
  XLA fuses them into their consumer (a padded copy of the input would be one more
  pass). Each list feeds one consumer only: an element read by two fusions is
  written to memory by a fusion of its own.
  """
  # Offsets where every window has padding: zeros, so list index == offset index.
  out = [jnp.zeros(geom.output_shape, x.dtype)] * geom.window_size
  for k, view in views.padded_views(x, geom, 0):
    out[k] = view
  return out


def _draw(elements: list[jax.Array], u: jax.Array, geom: PoolGeometry) -> jax.Array:
  """The drawn offset code per output: k in [0, K), K (all-zero window) or K + 1 (NaN).

  With the running sums ``C_k = a_0 + ... + a_k`` and ``t = u * C_{K-1}``, the drawn
  offset is the number of ``C_k <= t`` (the ``k`` with ``C_{k-1} <= t < C_k``, which
  has ``a_k > 0``). Where ``t < C_{K-1}`` fails (rounding made ``u * sum == sum``, an
  all-zero window, an infinite sum) it is the last ``k`` whose ``a_k`` increased the
  running sum, or K if none did. Each element is read once, so XLA fuses the walk
  into one loop (reading an element twice makes it write every padded slice to
  memory first). The codes are materialized once: the gathers of
  the forward and backward passes read them up to K times per output.
  """
  size = len(elements)
  code_dtype = reduce.index_dtype(geom)  # uint8 up to 126 window elements
  sums, running = [], None
  for e in elements:
    running = e if running is None else running + e
    sums.append(running)
  total = sums[-1]
  threshold = u.astype(total.dtype) * total
  below = functools.reduce(jnp.add, [(c <= threshold).astype(code_dtype) for c in sums])
  last = jnp.full(geom.output_shape, size, code_dtype)
  before = jnp.zeros(geom.output_shape, total.dtype)
  for k, c in enumerate(sums):
    last = jnp.where(c > before, code_dtype(k), last)
    before = c
  drawn = jnp.where(threshold < total, below, last)
  drawn = jnp.where(jnp.isnan(total), code_dtype(size + 1), drawn)
  return views.materialize(drawn, u)


def _forward(x: jax.Array, u: jax.Array, geom: PoolGeometry):
  """(the drawn element of each window in the input dtype, the drawn offset codes)."""
  a = _positive_part(x.astype(dtypes.compute_dtype(x.dtype)))
  drawn = _draw(_elements(a, geom), u, geom)
  # The drawn element (a_k = x_k there) by a select per offset: no arithmetic, so
  # exact and cheap in half precision too.
  # In float32 for half precision inputs too: XLA's CPU code rounds every half
  # precision select back and forth.
  value = jnp.where(drawn == geom.window_size + 1, np.nan, 0).astype(a.dtype)
  for k, e in enumerate(_elements(x.astype(a.dtype), geom)):
    value = jnp.where(drawn == k, e, value)
  return dtypes.selected_back(value, x.dtype), drawn


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _sample(x, u, geom):
  return _forward(x, u, geom)[0]


def _sample_fwd(x, u, geom):
  value, drawn = _forward(x, u, geom)
  return views.pooled(value, x), drawn


def _sample_bwd(geom, drawn, g):
  # The transpose of the gather: each cotangent goes to its drawn element (a select
  # and a reshape for tiling windows, a sum of padded terms for overlapping ones).
  gather = lambda t: reduce.gather_selected(t, drawn, geom)
  (dx,) = jax.linear_transpose(gather, jax.ShapeDtypeStruct(geom.input_shape, g.dtype))(g)
  return dx, None


_sample.defvjp(_sample_fwd, _sample_bwd)


def _weighted(x: jax.Array, geom: PoolGeometry) -> jax.Array:
  """Probabilistic weighting sum a^2 / sum a, 0 where sum a = 0, finite gradient.

  Every window is scaled by a power of two near its maximum ``m`` first (as lp_pool,
  `lp._power_of_two_reciprocal`), ``y = (1/r) sum (a r)^2 / sum (a r)`` with ``a r``
  in [0, 4): no square overflows (a = 1e30 in float32) or underflows. The scale is
  under stop_gradient: y is homogeneous of degree 1 in ``a``, so the derivative of
  the scaled form with ``r`` held fixed is the derivative of y.
  """
  a = _positive_part(x.astype(dtypes.compute_dtype(x.dtype)))
  zero = np.zeros((), a.dtype)
  elements = views.view_arrays(a, geom, 0)  # strided views: the scale is per window
  if not elements:  # every window lies in the padding
    return jnp.zeros(geom.output_shape, x.dtype)
  m = lax.stop_gradient(functools.reduce(jnp.maximum, elements))
  r, inv_r = lax.stop_gradient(lp._power_of_two_reciprocal(m))
  scaled = [e * r for e in elements]
  total = functools.reduce(jnp.add, scaled)
  squares = functools.reduce(jnp.add, [s * s for s in scaled])
  empty = total == 0
  # The inner where keeps the unused branch's gradient finite (no 0 / 0).
  y = jnp.where(empty, zero, squares / jnp.where(empty, 1, total) * inv_r)
  # An infinite element: the weighting tends to inf (the scaled form gives inf / inf).
  y = jnp.where(jnp.isposinf(m), m, y)
  return y.astype(x.dtype)


def stochastic_pool(
  inputs: Any,
  window_shape: Sequence[int],
  strides=None,
  padding: PaddingLike = "VALID",
  *,
  key: jax.Array | None = None,
  deterministic: bool = False,
  dilation=None,
  ceil_mode: bool = False,
  channel_axis: int = -1,
) -> jax.Array:
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
    ValueError: ``key`` is None with ``deterministic=False``, or a batch of keys
      (vmap over them instead), and every window argument the geometry rejects.
    TypeError: non-floating inputs, a non-bool ``deterministic``, a ``key`` that is
      neither a typed key nor the uint32 data of one.

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
    raise TypeError(f"{fn}: deterministic must be a Python bool, got {deterministic!r}.")
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
  if deterministic:
    return _weighted(x, geom)
  if key is None:
    raise ValueError(
      f"{fn}: key is None with deterministic=False; pass key=jax.random.key(seed) "
      "for the training draw, or deterministic=True for the evaluation formula."
    )
  u = _uniforms(keys.random_key(key, fn), geom.output_shape)
  return _sample(x, u, geom)
