"""Power-mean pooling: lp_pool, l2_pool and gem_pool.

Lp pooling (Hyvarinen & Koster 2007; Sermanet, Chintala & LeCun 2012) replaces the
max of a window by its p-norm, interpolating between sum pooling of magnitudes
(p = 1) and max pooling (p -> inf); with a learned p it is the learned-norm unit of
Gulcehre, Cho, Pascanu & Bengio 2014. GeM (Radenovic, Tolias & Chum 2018) is the
global power mean of the clamped activations with a learned p.

How it is computed (all of it in float32 for float16/bfloat16 inputs):

  * every window is scaled by its largest magnitude ``m`` before powering,
    ``y = m * (sum_k (|x_k| / m)^p)^(1/p)``, so no power overflows or underflows to
    a wrong result (|x| = 1e30 with p = 8 in float32, |x| = 1e4 with p = 8 in bf16);
    the scale is the power of two nearest below ``m`` (exact, and a multiplication
    instead of a division per element, which XLA would not fuse); for a small p
    (or a traced one) the root and the scale are combined in the exponent,
    ``y = 2^(log2(total) / p + log2(1/r))``, since ``total^(1/p)`` alone may leave
    the float range (``K^(1/p)``) where ``y`` does not (p = 0.001 in float64);
  * window elements are visited as strided slices of the unpadded input, one per
    window offset (``views.padded_views``), so no (window x output) patch tensor
    exists, the scaling by the per-window maximum is exact also for overlapping
    windows, and the forward pass is one fused loop over the output;
  * the derivative is a custom VJP whose only residuals are the inputs, the output
    and ``p``: with ``q_k = |x_k| / y`` (at most ``c^(1/p)``) and ``c`` the divisor
    (1, or the window count for ``mean=True``)::

        dy/dx_k = sign(x_k) q_k^(p-1) / c          dy/dp = y / (p c) sum_k q_k^p log q_k

    Both are finite everywhere: a window that is all zero gets gradient 0 (the naive
    ``sqrt(sum_pool(x**2))`` gives NaN there), and an element equal to 0 gets
    gradient 0 (``sign(0) = 0``; for p <= 1 this is the choice of subgradient);
  * for a fixed p and windows that tile the input (stride = window), the ratios
    ``q`` are computed on the (output, window) blocks of ``x``: one pass, exact;
  * for a fixed p >= 1 and overlapping windows the gradient in x is factorised,
    ``sign(x) |x|^(p-1)`` times the transposed window sum of ``g / (c y^(p-1))``:
    one pass over the input, like `sum_pool`'s gradient. It falls back to the
    ratios ``q`` above when some window's ``y^(p-1)`` or ``g / (c y^(p-1))`` is
    near the float range limits (huge or tiny magnitudes, non-finite cotangents):
    a `lax.cond` on CPU; on accelerators, where a data-dependent branch waits for
    the device, the ratios always (`fallback.fast_or_exact`). The ratios' pass
    is one transposed pass over the input (`_exact_grad`).

Forward-mode differentiation (``jax.jvp``) of `lp_pool` and `l2_pool` is not
supported (custom VJP); `gem_pool` (custom JVPs, `global_norm.py`) supports it.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

from jaxpool._src import reduce
from jaxpool._src.machinery import dtypes
from jaxpool._src.machinery import fallback
from jaxpool._src.machinery import geometry
from jaxpool._src.machinery import global_norm
from jaxpool._src.machinery import powers
from jaxpool._src.machinery import views
from jaxpool._src.machinery.geometry import PaddingLike
from jaxpool._src.machinery.geometry import PoolGeometry


def _check_p(p: Any, fn: str) -> float | jax.Array:
  """A Python float (static; inf allowed) or a scalar array (differentiable)."""
  if isinstance(p, bool) or isinstance(p, (str, bytes)):
    raise TypeError(f"{fn}: p must be a positive number or a scalar array, got {p!r}.")
  if isinstance(p, numbers.Real):
    p = float(p)
    if not p > 0:  # also catches NaN
      raise ValueError(f"{fn}: p must be > 0 (or inf for the max of |x|), got {p!r}.")
    return p
  arr = dtypes.as_array(p, fn, "p")
  if arr.shape != ():
    raise ValueError(f"{fn}: p must be a scalar, got an array of shape {arr.shape}.")
  if not jnp.issubdtype(arr.dtype, jnp.floating):
    raise TypeError(
      f"{fn}: p as an array must have a floating dtype (to be differentiable), got "
      f"{arr.dtype}; pass a Python number for a fixed p."
    )
  if not isinstance(arr, jax.core.Tracer):
    value = float(arr)
    if not 0 < value < math.inf:
      raise ValueError(
        f"{fn}: p as an array must be finite and > 0, got {value!r} (pass the Python "
        "float inf for the max of |x|)."
      )
  return arr


def _divisor(geom: PoolGeometry, mean: bool, dtype):
  """1, or the window count (padding counted, ceil_mode overhang not, as avg_pool)."""
  if not mean:
    return None
  counts = geom.window_counts(count_include_pad=True)
  if (counts == counts.flat[0]).all():
    return float(counts.flat[0])
  return jnp.asarray(geom.spatial_to_output(counts), dtype)


def _power_of_two_reciprocal(m: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(r, 1 / r): powers of two with ``m * r`` in [1, 2) for normal ``m`` (r normal).

  Multiplying by a power of two is exact, so ``e * r`` is the scaled element without
  a division per element (a division reused by an integer power is an "expensive
  duplicated producer" that XLA refuses to fuse: one extra pass per window offset).
  Read off the exponent bits. The biased exponent is clamped to [1, 2 * bias - 1]
  so that both ``r`` and ``1 / r`` are normal numbers (XLA:CPU flushes subnormals
  to zero): ``m = 0`` gives ``r = 2^(bias - 1)``, and the top binade (``m >=
  2^bias``, float32: 1.7e38) gives ``m * r`` in [2, 4).
  """
  info = jnp.finfo(m.dtype)
  uint = {32: jnp.uint32, 64: jnp.uint64}[info.bits]
  mant, bias = info.nmant, info.maxexp - 1
  biased = (jax.lax.bitcast_convert_type(m, uint) >> mant) & uint(2 * bias + 1)
  biased = jnp.clip(biased, uint(1), uint(2 * bias - 1))
  r = jax.lax.bitcast_convert_type((uint(2 * bias) - biased) << mant, m.dtype)
  inv_r = jax.lax.bitcast_convert_type(biased << mant, m.dtype)
  return r, inv_r


def _forward(x: jax.Array, p, geom: PoolGeometry, mean: bool) -> jax.Array:
  """The pooled values in the compute dtype (see the module docstring)."""
  xc = x.astype(dtypes.compute_dtype(x.dtype))
  # One fused loop over strided views of the unpadded input: the maximum of |x|
  # over views of |x|, the sum over views of the signed x (abs after the view). Two
  # sets of views, so that XLA shares no padded view between the two reductions: a
  # shared view, like a padded copy of |x|, is written to memory first. For
  # bfloat16, |x| is widened by its bits, not by the `convert` of the sums: XLA
  # would merge the two converts and write the float32 copy. Benchmark case:
  # l2_pool 2d_3x3s2_same fwd+bwd on CPU (configs/benchmark.py:targets).
  wide = dtypes.float32_by_bits(x)
  magnitudes = views.view_arrays(jnp.abs(wide), geom, 0)
  if not magnitudes:  # every window lies in the padding
    return jnp.zeros(geom.output_shape, xc.dtype)
  m = functools.reduce(jnp.maximum, magnitudes)
  if isinstance(p, float) and p == math.inf:
    return m
  # An all-zero window: every scaled element is 0, y = 0.
  r, inv_r = _power_of_two_reciprocal(m)
  total = functools.reduce(
    jnp.add, [powers.power(jnp.abs(e) * r, p) for e in views.view_arrays(xc, geom, 0)]
  )
  c = _divisor(geom, mean, total.dtype)
  if c is not None:
    total = total / c
  # total lies in [1/c, K 2^p] (K 4^p in the top binade), where `powers.root` is
  # accurate
  if _root_in_range(p, geom, mean, total.dtype):
    y = powers.root(total, p) * inv_r
  else:
    # total^(1/p) may overflow (K^(1/p)) or underflow ((1/c)^(1/p)) for a small p
    # although y is representable: the exponents of the root and of 1/r are added
    # before exponentiating, y = 2^(log2(total) / p + log2(1/r)) (1/r is a power of
    # two, so its log2 is exact; the relative error of y is ~|log2 y| ulp, as for
    # exp(log(total) / p) itself).
    exponent = jnp.log2(total) / jnp.asarray(p, total.dtype) + jnp.log2(inv_r)
    y = jnp.exp2(exponent)
  # |x| = inf makes the scaled elements NaN; the norm is inf there.
  return jnp.where(jnp.isinf(m), m, y)


def _root_in_range(p, geom: PoolGeometry, mean: bool, dtype) -> bool:
  """Whether total^(1/p), for every total in [1/c, K 4^p], is a normal number with
  room to spare (then root * (1/r) is y up to rounding): false for a small p, and
  for a traced one, which cannot be checked."""
  if not isinstance(p, float):
    return False
  info = jnp.finfo(dtype)
  top = math.log2(geom.window_size) / p + 2  # log2 of the largest root
  bottom = -math.log2(geom.window_counts(True).max()) / p if mean else 0.0
  return top < info.maxexp - 2 and bottom > info.minexp + 2


# The factorised backward pass (`_factorised_grad`) is used when every window's
# y^(p-1) lies in [2^-_SAFE_EXP, 2^_SAFE_EXP] and every h = w / y^(p-1) in
# [2^-_SAFE_H, 2^_SAFE_H]: then no factor overflows, and none that matters
# underflows (see `_backward`).
_SAFE_EXP = 90
_SAFE_H = 120


def _factorised_grad(x, h, p, geom: PoolGeometry):
  """sign(x) |x|^(p-1) * sum over the windows o holding x of h_o, for p >= 1.

  The window sum's transpose is one fused pass (a broadcast for tiling windows, a
  sum of interior-padded views otherwise, as in `sum_pool`'s gradient), reading
  the output-sized `h` and `x` once.
  """
  spread = jax.linear_transpose(
    lambda t: views.window_sum_by_views(t, geom), jax.ShapeDtypeStruct(geom.input_shape, h.dtype)
  )
  (total,) = spread(h)
  if p == 1:
    factor = jnp.sign(x)
  else:
    factor = jnp.sign(x) * powers.power(jnp.abs(x), p - 1)
  return factor * total


def _backward(x, y, p, g, geom: PoolGeometry, mean: bool, want_p: bool):
  """Cotangents of x (and of p if `want_p`) from the residuals (x, y, p).

  For a fixed p >= 1 the derivative factorises,
  ``dy_o/dx_k = sign(x_k) |x_k|^(p-1) y_o^(1-p) / c``, so the gradient is one pass
  over the input: ``sign(x) |x|^(p-1)`` times the transposed window sum of ``h =
  g / (c y^(p-1))`` (`_factorised_grad`). It is exact up to rounding as long as
  ``y^(p-1)`` and ``h`` are far from the float range limits (checked for every
  window; a tiny ``|x_k|^(p-1)`` may underflow to 0, an error below 2^-30 of the
  window's cotangent). Otherwise (e.g. |x| = 1e30 with p = 8, a NaN cotangent),
  and always on accelerators (`fallback.fast_or_exact`), a pass with the bounded
  ratios ``q = |x| / y`` (`_exact_grad`); for a traced p or p = inf, the general
  pass (`_general_backward`), which also gives the gradient in p.
  """
  dtype = dtypes.compute_dtype(x.dtype)
  yc, gc = y.astype(dtype), g.astype(dtype)
  if isinstance(p, float) and p < math.inf and not want_p and views.is_tiling(geom):
    return _tiled_grad(x, yc, gc, p, geom, mean), None
  if isinstance(p, float) and 1 <= p < math.inf and not want_p:
    c = _divisor(geom, mean, dtype)

    def scaled_cotangent(yc, gc):
      """(h, whether h and y^(p-1) are in range, per window)."""
      weight = gc if c is None else gc / c
      positive = yc > 0
      y_pow = powers.power(jnp.where(positive, yc, 1), p - 1)
      h = jnp.where(positive, weight / y_pow, 0)
      big_exp, big_h = 2.0**_SAFE_EXP, 2.0**_SAFE_H
      ok = (
        ~positive
        | (weight == 0)
        | (
          (y_pow >= 1 / big_exp)
          & (y_pow <= big_exp)
          & (jnp.abs(h) >= 1 / big_h)
          & (jnp.abs(h) <= big_h)
        )
      )
      return h, ok

    # h is computed twice, for the check and inside the fast branch, where it fuses
    # into the transposed window sum: as an operand of the cond it would be written
    # to memory. Likewise `x`, `y` and `g` enter the branches in their own dtype and
    # the gradient leaves in it: float32 copies made outside (for bfloat16) would be
    # written. Benchmark cases: l2/lp fwd+bwd 1d_3s2 and 2d_3x3s2_same.
    def factorised(x, y, g):
      h, _ = scaled_cotangent(y.astype(dtype), g.astype(dtype))
      return _factorised_grad(x.astype(dtype), h, p, geom).astype(x.dtype), None

    def exact(x, y, g):
      return _exact_grad(x, y.astype(dtype), g.astype(dtype), p, geom, mean), None

    return fallback.fast_or_exact(
      fallback.all_true(scaled_cotangent(yc, gc)[1]), factorised, exact, x, y, g
    )
  if isinstance(p, float) and p < math.inf and not want_p:
    return _exact_grad(x, yc, gc, p, geom, mean), None
  return _general_backward(x, yc, p, gc, geom, mean, want_p)


def _exact_grad(x, yc, gc, p, geom: PoolGeometry, mean: bool) -> jax.Array:
  """The gradient in x for a fixed finite p, exact everywhere (no range limits).

  ``grad_i = sign(x_i) sum_o w_o q_io^(p-1)`` over the windows ``o`` holding
  ``x_i``, with ``q_io = |x_i| r_o s_o <= 1`` (`_window_factors`: ``r_o`` a power
  of two, ``s_o = 1 / (y_o r_o)``). Computed as the transpose, applied to ``w``,
  of the linear map ``t -> sum_k c_k view_k(t)`` with the per-window-offset
  coefficients ``c_k = sign(x_k) q_k^(p-1)`` on the output grid: JAX turns it into
  one pass over the input in which every element evaluates the terms of the
  windows holding it, from the stride phases where they pay (`views.linear_views`);
  nothing per offset is written, and each element reads only its own phase's
  windows. Benchmark cases: l2_pool fwd+bwd 2d_3x3s2_same (float32, bfloat16),
  1d_3s2 and 3-D 3x3x3/2, on CPU and GPU (figures: docs/benchmarks.md).
  """
  dtype = yc.dtype
  positive, r, s, weight = _window_factors(yc, gc, geom, mean)
  coefficients = {
    k: _ratio_terms(view, positive, r, s, 1.0, p, sign=True)
    for k, view in views.padded_views(x.astype(dtype), geom, 0)
  }
  if not powers.is_integral(p - 1):
    # Powers by exp and log written once per offset on CPU: fused into the
    # transposed loop, XLA:CPU evaluates them there unvectorised; multiplications
    # (integral p - 1) stay fused, where writing them costs more. Benchmark case:
    # lp_pool p = 0.5 and l2_pool, 2d_3x3s2_same fwd+bwd on CPU.
    coefficients = {k: views.materialize_on_cpu(c, x) for k, c in coefficients.items()}
  if not coefficients:  # every window lies in the padding
    return jnp.zeros(x.shape, x.dtype)

  def tangent(t):
    return functools.reduce(
      jnp.add, [coefficients[k] * view for k, view in views.linear_views(t, geom)]
    )

  transpose = jax.linear_transpose(tangent, jax.ShapeDtypeStruct(geom.input_shape, dtype))
  (grad_x,) = transpose(weight)
  return grad_x.astype(x.dtype)


def _window_factors(yc, gc, geom: PoolGeometry, mean: bool):
  """Per window, what the gradient's ratio terms need: (y > 0, r, s, w) with ``r`` a
  power of two and ``s = 1 / (y r)`` (`_power_of_two_reciprocal`: both normal
  numbers, ``y r`` in [1, 4)) and the weight ``w = g / c`` (0 where y = 0)."""
  positive = yc > 0
  r, _ = _power_of_two_reciprocal(yc)
  s = 1 / jnp.where(positive, yc * r, 1)
  c = _divisor(geom, mean, yc.dtype)
  weight = jnp.where(positive, gc if c is None else gc / c, 0)
  return positive, r, s, weight


def _ratio_terms(x, positive, r, s, weight, p, sign: bool = False):
  """``w q^(p-1)`` with ``q = |x| r s <= 1``, 0 where the window's y or `x` is 0
  (times sign(x) inside the same select with `sign`); the window factors
  (`_window_factors`) broadcast against `x`."""
  a = jnp.abs(x)
  nonzero = positive & (a > 0)
  q = jnp.where(nonzero, a * r * s, 1)  # 1 where unused: no 0 ** negative
  term = powers.power(q, p - 1) * weight
  return jnp.where(nonzero, jnp.sign(x) * term if sign else term, 0)


def _tiled_grad(x, yc, gc, p, geom: PoolGeometry, mean: bool) -> jax.Array:
  """The gradient in x for windows that tile the input, in one pass, for any fixed p.

  Every element lies in one window, so ``q = |x| / y`` is computed on the (output,
  window) blocks of `x` (`views.window_blocks`) with the window's values
  broadcast: exact, no range check needed. The division is two multiplications by
  per-window factors, ``|x| * r * (1 / (y r))`` with ``r`` a power of two and ``y
  r`` in [1, 4) (`_power_of_two_reciprocal`): XLA fuses them, a division reused by
  the power it would not, and both factors stay normal numbers.
  """
  dtype = yc.dtype
  blocks, axes = views.window_blocks(x.astype(dtype), geom)
  factors = (jnp.expand_dims(v, axes) for v in _window_factors(yc, gc, geom, mean))
  grad = _ratio_terms(blocks, *factors, p=p, sign=True)
  unblock = jax.linear_transpose(
    lambda t: views.window_blocks(t, geom)[0], jax.ShapeDtypeStruct(geom.input_shape, dtype)
  )
  (grad_x,) = unblock(grad)
  return grad_x.astype(x.dtype)


def _general_backward(x, yc, p, gc, geom: PoolGeometry, mean: bool, want_p: bool):
  """`_backward` for any p (and the gradient in p) from the bounded ratios |x| / y.

  The gradient in x has the dtype of `x`; everything else the compute dtype.
  """
  dtype = yc.dtype
  xc = x.astype(dtype)
  a = jnp.abs(xc)
  offsets = geom.window_offsets()
  padded = geom.pad(a, 0)
  if isinstance(p, float) and p == math.inf:
    # The max of |x|: the first maximal element in row-major order (as max_pool).
    selections = reduce.window_selections(a, yc, geom, "max")
    per_offset = [jnp.where(s, gc, 0) for s in selections]
    return (geom.window_scatter(per_offset, dtype) * jnp.sign(xc)).astype(x.dtype), None
  positive = yc > 0
  safe_y = jnp.where(positive, yc, 1)
  c = _divisor(geom, mean, dtype)
  weight = gc if c is None else gc / c
  per_offset, dp_sum = [], None
  p_minus_1 = p - 1 if isinstance(p, float) else jnp.asarray(p, dtype) - 1
  for k in offsets:
    e = geom.window_element(padded, k)
    nonzero = positive & (e > 0)
    q = jnp.where(nonzero, e / safe_y, 1)  # 1 where unused: no 0 ** negative
    q_pow = powers.power(q, p_minus_1)
    per_offset.append(jnp.where(nonzero, q_pow * weight, 0))
    if want_p:
      term = jnp.where(nonzero, q_pow * q * jnp.log(q), 0)  # q^p log q
      dp_sum = term if dp_sum is None else dp_sum + term
  # XLA would fuse each offset's powers into the scatter's pads and re-evaluate them
  # (and the forward pass they depend on) for every input element: each is written
  # once instead (benchmark case: lp_pool with a learned p, fwd+bwd 2d_3x3s2_same).
  per_offset = [views.materialize(v, x) for v in per_offset]
  grad_x = (geom.window_scatter(per_offset, dtype) * jnp.sign(xc)).astype(x.dtype)
  grad_p = None
  if want_p:
    grad_p = jnp.sum(weight * yc * dp_sum) / jnp.asarray(p, dtype)
  return grad_x, grad_p


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _lp_static(x, geom, p, mean):
  return _forward(x, p, geom, mean).astype(x.dtype)


def _lp_static_fwd(x, geom, p, mean):
  y = views.pooled(_lp_static(x, geom, p, mean), x)
  return y, (x, y)


def _lp_static_bwd(geom, p, mean, res, g):
  x, y = res
  grad_x, _ = _backward(x, y, p, g, geom, mean, want_p=False)
  return (grad_x.astype(x.dtype),)


_lp_static.defvjp(_lp_static_fwd, _lp_static_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _lp_traced(x, p, geom, mean):
  return _forward(x, p, geom, mean).astype(x.dtype)


def _lp_traced_fwd(x, p, geom, mean):
  y = views.pooled(_lp_traced(x, p, geom, mean), x)
  return y, (x, y, p)


def _lp_traced_bwd(geom, mean, res, g):
  x, y, p = res
  grad_x, grad_p = _backward(x, y, p, g, geom, mean, want_p=True)
  assert grad_p is not None  # want_p=True
  return grad_x.astype(x.dtype), grad_p.astype(p.dtype)


_lp_traced.defvjp(_lp_traced_fwd, _lp_traced_bwd)


def lp_pool(
  inputs: Any,
  p,
  window_shape: Sequence[int],
  strides=None,
  padding: PaddingLike = "VALID",
  *,
  mean: bool = False,
  dilation=None,
  ceil_mode: bool = False,
  channel_axis: int = -1,
) -> jax.Array:
  r"""Lp pooling: the p-norm (or power mean) of the magnitudes in every window.

  .. math::

      y_o = \Big(\frac{1}{c_o} \sum_{k \in W} |\tilde x_{s \cdot o - p_{lo} + d \cdot k}|^p
            \Big)^{1/p},
      \qquad y_o = \max_{k \in W} |\tilde x_{\dots}| \text{ for } p = \infty,

  with zero padding :math:`\tilde x`, :math:`c_o = 1` (``mean=False``) or the window
  count :math:`c_o` (``mean=True``: elements in the input or the declared padding,
  not the ``ceil_mode`` overhang, as :func:`avg_pool`), so that ``mean=True`` is the
  power mean and ``lp_pool(x, 1, w, mean=True) == avg_pool(abs(x), w)``.

  p = 1 is sum pooling of magnitudes, p = 2 is L2 pooling (Hyvarinen & Koster 2007;
  Sermanet, Chintala & LeCun 2012, "Convolutional neural networks applied to house
  numbers digit classification"), p -> inf tends to max pooling of ``|x|``. A learned
  ``p`` gives the learned-norm pooling of Gulcehre, Cho, Pascanu & Bengio 2014
  ("Learned-norm pooling for deep feedforward and recurrent neural networks").

  Equals PyTorch's ``lp_pool1d/2d/3d`` for p = 2 on any input and any p on
  non-negative input (PyTorch raises odd powers of negative numbers without ``|.|``).
  One deliberate difference: with ``ceil_mode`` PyTorch scales a window that overhangs
  the input by ``window_size / elements_inside``; here every window is the plain sum.

  Gradient (custom VJP, see the module docstring): finite everywhere, 0 for a window
  that is all zero and for elements equal to 0, correct signs for negative inputs,
  and also with respect to ``p`` when ``p`` is an array. For ``p = inf`` the gradient
  goes to the first element of largest magnitude in row-major window order (times its
  sign), as :func:`max_pool`. ``jax.jvp`` is not supported; ``grad``, ``vjp``,
  ``vmap``, ``jit`` and higher-order reverse derivatives are.

  float16/bfloat16 inputs are computed in float32 and the result cast back; each
  window is scaled by its largest magnitude first, so large or small magnitudes (e.g.
  ``|x| = 1e4`` with ``p = 8`` in bfloat16) neither overflow nor underflow.

  Args:
    inputs: ``(*batch, *spatial, features)``, or ``(N, C, *spatial)`` with
      ``channel_axis=1``; a floating dtype.
    p: the exponent. A Python number > 0 or ``math.inf`` (fixed), or a scalar
      floating array (differentiable: the gradient in ``p`` is returned too). A traced
      ``p`` must be finite and > 0; it cannot be checked at trace time.
    window_shape: window size per spatial dim, e.g. ``(2, 2)``.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int, a sequence of ints or ``(low, high)`` pairs;
      zero padding (padding adds nothing to the sum).
    mean: divide the sum by the window count before the root (power mean).
    dilation: window dilation per spatial dim (PyTorch's ``dilation``).
    ceil_mode: PyTorch's rule for rounding the output size up.
    channel_axis: -1 (channels last) or 1 (channels first, PyTorch layout).

  Returns:
    The pooled array, the dtype of ``inputs``, spatial dims replaced by the output
    sizes. Non-negative.

  Raises:
    ValueError, TypeError: ``p`` not > 0, not a number or not a scalar; non-floating
      inputs; any window argument rejected by the geometry.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> x = jnp.array([[3.0], [-4.0], [0.0], [0.0]])
    >>> jaxpool.lp_pool(x, 2, (2,), strides=2)[:, 0]
    Array([5., 0.], dtype=float32)
  """
  return _lp_pool(
    inputs, p, window_shape, strides, padding, mean, dilation, ceil_mode, channel_axis, "lp_pool"
  )


def _lp_pool(
  inputs, p, window_shape, strides, padding, mean, dilation, ceil_mode, channel_axis, fn: str
) -> jax.Array:
  """`lp_pool`, its errors naming `fn` (the public function called)."""
  x = dtypes.pool_input(inputs, fn)
  p = _check_p(p, fn)
  if not isinstance(mean, (bool, np.bool_)):
    raise TypeError(f"{fn}: mean must be a bool, got {mean!r}.")
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
  if not isinstance(p, jax.Array):  # _check_p: a float, or an array to differentiate
    return _lp_static(x, geom, p, bool(mean))
  return _lp_traced(
    x, p.astype(jnp.promote_types(p.dtype, dtypes.compute_dtype(x.dtype))), geom, bool(mean)
  ).astype(x.dtype)  # pyright: ignore[reportAttributeAccessIssue]  # partial(custom_vjp) hides it


def l2_pool(
  inputs: Any,
  window_shape: Sequence[int],
  strides=None,
  padding: PaddingLike = "VALID",
  *,
  mean: bool = False,
  dilation=None,
  ceil_mode: bool = False,
  channel_axis: int = -1,
) -> jax.Array:
  r"""L2 pooling: :func:`lp_pool` with ``p = 2``.

  .. math:: y_o = \sqrt{\textstyle\frac{1}{c_o}\sum_{k \in W} \tilde x_{\dots}^2}

  (Hyvarinen & Koster 2007; Sermanet, Chintala & LeCun 2012). Unlike the naive
  ``sqrt(sum_pool(x ** 2))``, whose gradient is NaN on a window that is all zero,
  the gradient is ``x_k / (c_o y_o)`` and 0 on such windows. Dtypes and gradient
  rules as :func:`lp_pool`; ``jax.jvp`` is not supported.

  Args:
    inputs: ``(*batch, *spatial, features)``, or ``(N, C, *spatial)`` with
      ``channel_axis=1``; a floating dtype.
    window_shape: window size per spatial dim, e.g. ``(2, 2)``.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int, a sequence of ints or ``(low, high)`` pairs;
      zero padding.
    mean: divide the sum of squares by the window count :math:`c_o` before the root
      (the root mean square; else :math:`c_o = 1`).
    dilation: window dilation per spatial dim.
    ceil_mode: PyTorch's rule for rounding the output size up.
    channel_axis: -1 (channels last) or 1 (channels first, PyTorch layout).

  Returns:
    The pooled array, the dtype of ``inputs``, spatial dims replaced by the output
    sizes. Non-negative.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> jaxpool.l2_pool(jnp.array([[3.0], [4.0]]), (2,))[:, 0]
    Array([5.], dtype=float32)
  """
  return _lp_pool(
    inputs, 2.0, window_shape, strides, padding, mean, dilation, ceil_mode, channel_axis, "l2_pool"
  )


def gem_pool(
  inputs: Any,
  p,
  *,
  eps: float = 1e-6,
  keepdims: bool = False,
  channel_axis: int = -1,
  num_spatial_dims: int | None = None,
) -> jax.Array:
  r"""Generalized-mean (GeM) pooling over all spatial dims, with a learnable ``p``.

  .. math:: y = \Big(\frac{1}{|S|} \sum_{i \in S} \max(x_i, \epsilon)^p\Big)^{1/p}

  over the spatial positions :math:`S`, per example and channel (Radenovic, Tolias &
  Chum 2018, "Fine-tuning CNN image retrieval with no human annotation"). p = 1 is
  average pooling of the clamped input, p -> inf tends to global max pooling; the
  paper learns p (initialised at 3).

  Computed as :math:`|S|^{-1/p} \lVert \max(x, \epsilon) \rVert_p`, the norm as
  :func:`global_lp_pool` evaluates it (in float32 for float16/bfloat16): for a fixed
  integral ``p`` one fused pass where that is exact up to rounding, else scaled by
  the largest clamped value, so large values or large ``p`` do not overflow. Custom
  JVP rules (every base is >= eps > 0, so the gradients in ``x`` and in ``p`` are
  finite); ``jvp`` works too. The gradient in ``x`` is 0 where ``x < eps``.

  Args:
    inputs: ``(batch, *spatial, features)``, or ``(N, C, *spatial)`` with
      ``channel_axis=1``; a floating dtype. By default every dim but the leading
      batch dim and the channel dim is spatial; with ``num_spatial_dims=n`` and
      channels last, the ``n`` dims before the channel dim are spatial and all
      leading dims are batch dims.
    p: the exponent, a Python number > 0 or a scalar floating array (learnable; a
      traced ``p`` must be > 0).
    eps: the clamp, > 0; keeps every base positive so that ``log`` (for the
      gradient in ``p``) and powers < 1 stay finite.
    keepdims: keep the spatial dims with size 1.
    channel_axis: -1 (channels last) or 1 (channels first, PyTorch layout).
    num_spatial_dims: the number of spatial dims, or None (see ``inputs``).

  Returns:
    ``(batch, features)`` (``(N, C)`` for channels first), or with the spatial dims
    kept as size 1 when ``keepdims``; the dtype of ``inputs``.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> x = jnp.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 2, 1)
    >>> jaxpool.gem_pool(x, 1.0)
    Array([[2.5]], dtype=float32)
  """
  fn = "gem_pool"
  x = dtypes.pool_input(inputs, fn)
  p = _check_p(p, fn)
  if isinstance(p, float) and p == math.inf:
    raise ValueError(f"{fn}: p must be finite (use a global max pool for p = inf), got {p}.")
  if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
    raise ValueError(f"{fn}: eps must be a number > 0, got {eps!r}.")
  if not isinstance(keepdims, (bool, np.bool_)):
    raise TypeError(f"{fn}: keepdims must be a bool, got {keepdims!r}.")
  axes = geometry.global_spatial_axes(x.shape, num_spatial_dims, channel_axis, fn)
  dtype = dtypes.compute_dtype(x.dtype)
  exponent = p.astype(dtype) if isinstance(p, jax.Array) else p
  count = math.prod(x.shape[a] for a in axes)
  # (mean c^p)^(1/p) = |S|^(-1/p) ||c||_p, the norm as global_lp_pool computes it.
  norm = global_norm.lp_norm(x, exponent, axes, floor=float(eps))
  y = norm * count ** (-1 / exponent)
  if not keepdims:
    y = jnp.squeeze(y, axis=axes)
  return y.astype(x.dtype)
