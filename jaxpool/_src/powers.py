"""Powers of non-negative bases scaled into [0, ~1], as the p-norm pools take them."""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
  """total ** (1 / p) for total >= 0, p > 0, as the p-norm pools take it (their
  totals are scaled into [1/c, K 2^p]).

  Square roots for p = 2 and 4 (a few ulp, where exp(log(total) / p) loses up to
  ~20 ulp), exp(log(total) / p) otherwise. XLA:CPU evaluates exp and log far slower
  than a square root: lp_pool(p=4) 3x3/2 SAME forward on (128, 28, 28, 64) 2.93 ->
  1.6 ms (l2_pool 1.4). Not for p = 3: jnp.cbrt took 22 ms there, and a
  multiplication-only Newton iteration, which reads `total` once per step, made
  XLA recompute the fused window sum for every read (18 ms).
  """
  if isinstance(p, float) and p == 2:
    return jnp.sqrt(total)
  if isinstance(p, float) and p == 4:
    return jnp.sqrt(jnp.sqrt(total))
  return jnp.exp(jnp.log(total) / jnp.asarray(p, total.dtype))
