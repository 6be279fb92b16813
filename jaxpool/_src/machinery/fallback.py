"""A fast formula with an exact fallback, chosen per call by a data-dependent check.

Some derivative rules have a fast form that is exact only while the data stay in a
safe range, and a slower form that is exact everywhere: lp_pool's factorised
gradient (``sign(x) |x|^(p-1)`` times a transposed window sum, exact while every
``y^(p-1)`` is far from the float range limits) and soft_pool's one-shift
forward pass and tangent for overlapping windows (exact while no window's
weights lie far below the largest input element). `fast_or_exact` runs the fast
form when a scalar check (`all_true` of a per-window check) passes.

Which mechanism is cheaper depends on the backend, so it is chosen per backend
(`lax.platform_dependent`, resolved when the program is lowered):

  * CPU: `lax.cond`. The predicate already lives in host memory; the branch not
    taken costs nothing.
  * GPU and other accelerators: the exact form, always. A `lax.cond` on a
    device-computed predicate copies it to the host and waits for it before
    launching the branch; that wait costs more than the exact form (benchmark
    case: l2/lp 2d_3x3s2_same fwd+bwd on a GPU, configs/benchmark.py:accelerator).

Under `vmap` with a batched predicate `lax.cond` computes both branches and
selects (JAX's rule), which stays correct.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax


def fast_or_exact(ok: jax.Array, fast: Callable, exact: Callable, *operands):
  """`fast(*operands)` where the scalar bool `ok` holds, else `exact(*operands)`.

  Both callables must return the same structure; `exact` must be correct for every
  input, `fast` wherever `ok` is True. On CPU a `lax.cond`; elsewhere `exact`
  alone (module docstring).
  """
  return lax.platform_dependent(
    ok,
    *operands,
    cpu=lambda ok, *a: lax.cond(ok, fast, exact, *a),
    default=lambda ok, *a: exact(*a),
  )


def all_true(ok: jax.Array) -> jax.Array:
  """Whether every element of the boolean array `ok` is True, as a scalar: the
  check of a fast form, computed per window.

  Summed as 0/1 floats over the leading dims first (vectorised along the trailing
  ones), which XLA:CPU vectorises, unlike `jnp.all`; a sum of non-negative
  numbers is 0 exactly when all of them are.
  """
  if ok.size == 0:
    return jnp.asarray(True)
  flags = jnp.where(ok, 0.0, 1.0).astype(jnp.float32)
  cols, i = 1, flags.ndim
  while i > 0 and cols < 512:
    i -= 1
    cols *= flags.shape[i]
  return jnp.sum(jnp.sum(flags.reshape(-1, cols), axis=0)) == 0
