"""Powers of non-negative bases scaled into [0, ~1], as the p-norm pools take them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def power(base: jax.Array, p) -> jax.Array:
  """base ** p for base >= 0 (0 ** p = 0 for p > 0).

  An exact integer power for a static integral p, otherwise exp(p log base): many
  times faster than XLA's `pow` on CPU, and accurate where the bases are scaled
  into [0, ~1], as in the pools' scaled forms: there the absolute error of
  exp(p log r) is below max_r(r^p p |log r|) * eps = eps / e.
  """
  if is_integral(p):
    return jax.lax.integer_pow(base, int(p))
  return jnp.exp(jnp.asarray(p, base.dtype) * jnp.log(base))


def is_integral(p) -> bool:
  """Whether `power` takes base ** p as multiplications (else by exp and log)."""
  return isinstance(p, float) and p.is_integer() and abs(p) <= 64


def root(total: jax.Array, p) -> jax.Array:
  """total ** (1 / p) for total >= 0, p > 0, as the p-norm pools take it: their
  totals are scaled into [1/c, K 4^p] (or are 0, inf or NaN).

  Square roots for p = 2 and 4 (a few ulp, where exp(log(total) / p) loses up to
  ~20 ulp); for float32 and an integral 3 <= p <= 7, Newton's iteration from the
  bits (`_integral_root`: products only, 1-2 ulp on that range, where exp and log
  give 3-4); exp(log(total) / p) otherwise. XLA:CPU evaluates exp and log inside
  the pools' fused window loops far slower than a square root or a few products
  (jnp.cbrt slower still); benchmark case: lp_pool p = 3 and 4, 2d_3x3s2_same forward.
  """
  if isinstance(p, float) and p == 2:
    return jnp.sqrt(total)
  if isinstance(p, float) and p == 4:
    return jnp.sqrt(jnp.sqrt(total))
  if is_integral(p) and 3 <= p <= _NEWTON_MAX_P and total.dtype == jnp.float32:
    return _integral_root(total, int(p))
  return jnp.exp(jnp.log(total) / jnp.asarray(p, total.dtype))


# The bits' estimate of t^(-1/n) is within ~6%, and Newton's iteration shrinks a
# relative error e to about (n + 1) / 2 e^2 per step: 3 steps reach float32's
# rounding for n <= 7 (for large n the first steps would overshoot).
_NEWTON_MAX_P = 7
_NEWTON_STEPS = 3


def _integral_root(t: jax.Array, n: int) -> jax.Array:
  """t ** (1 / n) for float32 t and an integer 3 <= n <= 7: within 2 ulp for t in
  [2^-20, 2^40] (the scaled totals of `root`), 0 for t = 0, NaN for NaN. Far
  outside that range, t = inf included, the result is wrong (t^-1 = w^n leaves the
  float32 range): lp_pool's forward pass takes an infinite window's norm from its
  maximum instead. No select for those cases: one in the pool's fused window loop
  stops XLA:CPU vectorising it (benchmark case: lp_pool p = 3, 2d_3x3s2_same forward).

  The inverse root w = t^(-1/n) is estimated from the bits (a float's bits, read as
  an integer, are an affine function of its log2 up to a bounded error: ``bits(w)
  ~ (1 + 1/n) bits(1) - bits(t) / n``), refined by Newton's iteration for ``w^-n =
  t``, ``w <- w ((n + 1) - t w^n) / n`` (products only, no division); then ``y = t
  w^(n-1)`` and one Newton step for ``y^n = t``, ``y <- y + (t - y^n) w^(n-1) /
  n`` (without it, w's rounding raised to the power n - 1 left y 7-22 ulp off).
  """
  # 0.0450465 centres the error of the bits' log2 (the constant of the well-known
  # fast inverse square root, n = 2).
  magic = round((1 + 1 / n) * (127 - 0.0450465) * 2**23)
  # The estimate for t = 0 is taken at 2^-40 (the bits of 0 give one whose n-th power
  # overflows, and 0 * inf = NaN): w stays finite and y = 0 * w^(n-1) = 0 below. On
  # the bits, an integer maximum: cheaper than a float one (benchmark case: lp_pool
  # p = 3, 2d_3x3s2_same forward).
  bits = jnp.maximum(
    jax.lax.bitcast_convert_type(t, jnp.uint32), np.float32(2.0**-40).view(np.uint32)
  )
  w = jax.lax.bitcast_convert_type(jnp.uint32(magic) - bits // jnp.uint32(n), jnp.float32)
  for _ in range(_NEWTON_STEPS):
    w = w * ((n + 1) - t * jax.lax.integer_pow(w, n)) * (1 / n)
  w_pow = jax.lax.integer_pow(w, n - 1)
  y = t * w_pow
  return y + (t - jax.lax.integer_pow(y, n)) * w_pow * (1 / n)
