r"""The p-norm over whole axes, for `global_lp_pool` and `gem_pool`.

.. math:: r = \Big(\sum_i |x_i|^p\Big)^{1/p} = m \Big(\sum_i (|x_i| / m)^p\Big)^{1/p},
          \quad m = \max_i |x_i|

Two forms, each with its own derivative rule (custom JVPs):

  * scaled (the second form): exact for every input, any p > 0, traced p (with
    :math:`\partial r / \partial p`); it reads the input for m (`_largest_magnitude`)
    and again for the scaled powers, and raises to a float power.
  * unscaled (the first form), for a fixed integral p in [1, 64]: one fused pass of
    integer powers, like the naive ``sqrt(sum(x**2))``. It is exact up to rounding
    while no power overflows and the sum is far above the smallest normal number
    (underflowed powers are then below one rounding of it); checked per call on the
    sums, and otherwise the scaled form is used (`fallback.fast_or_exact`: a
    `lax.cond` on CPU, the scaled form always on accelerators). A sum of 0 (an
    all-zero plane, or powers that all underflow) also takes the scaled form.

Derivative (both forms): :math:`\partial r/\partial x_i = \mathrm{sign}(x_i)
(|x_i|/r)^{p-1}`, taken as 0 where :math:`x_i = 0` (exact for p > 1, the choice of
subgradient for p <= 1) and for an all-zero input (no NaN from 0/0).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxpool._src.machinery import dtypes
from jaxpool._src.machinery import fallback
from jaxpool._src.machinery import powers


def lp_norm(
  x: jax.Array, p: float | jax.Array, axes: Sequence[int], floor: float | None = None
) -> jax.Array:
  """The p-norm of `x` (of `max(x, floor)` if `floor` is given) over `axes`, kept
  as size 1.

  `p`: a Python float > 0 (fixed; inf is not handled here) or a floating scalar
  array (differentiable). `x`: any floating dtype; the norm is computed and
  returned in `dtypes.compute_dtype(x.dtype)` (float32 for float16/bfloat16). The
  conversion and the clamp are applied inside the kernels, not to their operand,
  which XLA would then write to memory; the clamp's derivative is 0 where
  `x < floor`.
  """
  axes = tuple(axes)
  if isinstance(p, float) and p.is_integer() and 1 <= p <= 64:
    return _integral_norm(x, int(p), axes, floor)
  return _scaled_norm(x, jnp.asarray(p, dtypes.compute_dtype(x.dtype)), axes, floor)


def _clamp(x, floor):
  """`x` in its compute dtype, clamped below at `floor` if given."""
  x = x.astype(dtypes.compute_dtype(x.dtype))
  return x if floor is None else jnp.maximum(x, jnp.asarray(floor, x.dtype))


def _clamp_derivative(dx, x, floor):
  return dx if floor is None else jnp.where(x < floor, 0, dx)


# --- scaled form: any p ---------------------------------------------------------------


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _scaled_norm(x: jax.Array, p: jax.Array, axes: tuple[int, ...], floor) -> jax.Array:
  return _scaled_parts(x, p, axes, floor)[0]


def _largest_magnitude(x, axes, floor):
  """max |max(x, floor)| (max |x| without a floor) over `axes`, kept, in the compute
  dtype. With a floor, max(max(x), floor): one plain reduction of `x`. Without, on
  CPU max(max(x), -min(x)): XLA:CPU runs plain max and min reductions as library
  kernels, not a max with |.| fused before it (case: global_lp_pool and gem_pool
  forward on a 2d_3x3s2_same input); elsewhere the one reduction of |x|."""
  dtype = dtypes.compute_dtype(x.dtype)
  if floor is not None:  # max(x, floor) >= floor > 0 is its own magnitude
    hi = jnp.max(x, axis=axes, keepdims=True).astype(dtype)
    return jnp.maximum(hi, jnp.asarray(floor, dtype))
  return jax.lax.platform_dependent(
    x,
    cpu=lambda x: jnp.maximum(
      jnp.max(x, axis=axes, keepdims=True), -jnp.min(x, axis=axes, keepdims=True)
    ).astype(dtype),
    default=lambda x: jnp.max(jnp.abs(x), axis=axes, keepdims=True).astype(dtype),
  )


def _scaled_parts(x, p, axes, floor):
  """(r, b, s, c) for c = max(x, floor) (x without a floor) in the compute dtype: r =
  m * s^(1/p), b = |c| / m, s = sum b^p, m = max |c| (1 if 0)."""
  top = _largest_magnitude(x, axes, floor)
  c = _clamp(x, floor)
  a = jnp.abs(c)
  m = jnp.where(top > 0, top, 1).astype(c.dtype)
  b = a / m  # in [0, 1]: b^p neither overflows nor underflows to an all-zero sum
  s = jnp.sum(powers.power(b, p), axis=axes, keepdims=True)  # in [1, n]; 0 if x is 0
  r = m * s ** (1 / p)
  r = jnp.where(jnp.isinf(top), jnp.inf, r)  # b = inf / inf would give NaN
  return r, b, s, c


def _input_derivative(x, r, p: jax.Array):
  """sign(x) (|x| / r)^(p - 1), 0 where x = 0 or r = 0 (see the module docstring)."""
  nonzero = (x != 0) & (r > 0)
  ratio = jnp.where(nonzero, jnp.abs(x) / jnp.where(r > 0, r, 1), 1)
  return jnp.where(nonzero, jnp.sign(x) * powers.power(ratio, p - 1), 0)


@_scaled_norm.defjvp
def _scaled_norm_jvp(axes, floor, primals, tangents):
  x, p = primals
  tx, tp = tangents
  r, b, s, c = _scaled_parts(x, p, axes, floor)
  dx = _clamp_derivative(_input_derivative(c, r, p), x, floor)
  # d r / d p = r (-log(s) / p^2 + sum(b^p log b) / (p s)), with b^p log b -> 0 at b = 0.
  safe_b = jnp.where(b > 0, b, 1)
  blogb = jnp.sum(
    jnp.where(b > 0, powers.power(safe_b, p) * jnp.log(safe_b), 0), axis=axes, keepdims=True
  )
  safe_s = jnp.where(s > 0, s, 1)
  dp = jnp.where(s > 0, r * (-jnp.log(safe_s) / p**2 + blogb / (p * safe_s)), 0)
  tangent = jnp.sum(dx * tx, axis=axes, keepdims=True) + dp * tp
  return _scaled_norm(x, p, axes, floor), tangent.astype(r.dtype)


# --- unscaled form: fixed integral p --------------------------------------------------


def _integral_value(
  x: jax.Array, p: int, axes: tuple[int, ...], floor, by_bits: bool = False
) -> jax.Array:
  c = _clamp(dtypes.float32_by_bits(x) if by_bits else x, floor)
  # Even p: c^p needs no |c| (one op fewer in the fused loop).
  s = jnp.sum(jax.lax.integer_pow(c if p % 2 == 0 else jnp.abs(c), p), axis=axes, keepdims=True)
  info = jnp.finfo(c.dtype)
  count = math.prod(x.shape[a] for a in axes)
  # Each flushed power is below `tiny`; n of them stay below one rounding of s.
  ok = fallback.all_true(jnp.isfinite(s) & (s >= count * float(info.tiny) / float(info.eps)))
  root = jnp.sqrt if p == 2 else (lambda v: v if p == 1 else v ** (1 / p))
  return fallback.fast_or_exact(
    ok,
    lambda s, x: root(s),
    lambda s, x: _scaled_parts(x, jnp.asarray(p, s.dtype), axes, floor)[0],
    s,
    x,
  )


def _integral_derivative(x, r, p: int):
  """`_input_derivative` for an integral p: sign(x) (|x| / r)^(p - 1) as an integer
  power, with one reciprocal per norm instead of a division and selects per
  element; 0 where x = 0 or r = 0 all the same."""
  inv_r = jnp.where(r > 0, 1 / jnp.where(r > 0, r, 1), 0)
  if p == 2:
    return x * inv_r
  return jnp.sign(x) * jax.lax.integer_pow(jnp.abs(x) * inv_r, p - 1)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
def _integral_norm(x: jax.Array, p: int, axes: tuple[int, ...], floor) -> jax.Array:
  return _integral_value(x, p, axes, floor)


@_integral_norm.defjvp
def _integral_norm_jvp(p, axes, floor, primals, tangents):
  (x,), (tx,) = primals, tangents
  # With a clamp (gem_pool), bfloat16 widened by its bits here too: XLA otherwise
  # writes the converted input and a full-size clamp constant for the library
  # reduction. Not without a clamp (global_lp_pool's fwd+bwd), nor in the plain
  # forward: slower there (case: gem/global_lp_pool fwd+bwd on a 2d_3x3s2_same input).
  r = _integral_value(x, p, axes, floor, by_bits=floor is not None)
  dx = _clamp_derivative(
    _integral_derivative(_clamp(dtypes.float32_by_bits(x), floor), r, p), x, floor
  )
  return r, jnp.sum(dx * tx, axis=axes, keepdims=True).astype(r.dtype)
