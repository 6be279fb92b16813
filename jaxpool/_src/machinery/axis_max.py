"""The maximum over one axis, with PyTorch's gradient rule and NaN propagation.

Used by the global max pool (and `global_lp_pool` with p = inf), where the whole
spatial extent is one window:

    y = max_k x_k   (NaN if any x_k is NaN),
    dy/dx_k = 1 for the first maximal k (or the last NaN), 0 elsewhere,

not `jnp.max`'s derivative, which splits the gradient among ties.

The forward pass is `jnp.max` plus a NaN check. XLA:CPU's plain max and sum
reductions run as library kernels several times faster than any reduction with a
fused elementwise prologue (case: a `where` before a max on a 2d_3x3s2_resnet
input), so the selected element (`separable.first_max_index`, PyTorch's
rule as for the adaptive pools) is searched only by the derivative rule (a custom
JVP, linear in the tangent, so JAX transposes it into the VJP), never in a
forward-only call.

NaN: XLA:CPU's vectorized max drops NaNs (max(-inf, NaN) = -inf; openxla/xla issue
21461, open; still so in jax 0.10.2 on (128, 784, 64)), which is why the
check is needed: a plain sum over the axis is NaN wherever the max must be (and also
where +inf meets -inf or partial sums overflow both ways); only when some sum is NaN
is the exact per-column "holds a NaN" test computed (`fallback.fast_or_exact`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxpool._src.machinery import fallback
from jaxpool._src.machinery import separable


def _with_nans(x: jax.Array, value: jax.Array, axis: int) -> jax.Array:
  """`value` set to NaN wherever `x` holds a NaN along `axis`."""
  # A float sum of 0/1 flags: XLA:CPU vectorizes it, not a boolean any.
  has_nan = jnp.sum(jnp.where(jnp.isnan(x), 1.0, 0.0), axis=axis) > 0
  return jnp.where(has_nan, jnp.asarray(np.nan, value.dtype), value)


def nan_max(x: jax.Array, axis: int, absolute: bool = False) -> jax.Array:
  """`jnp.max(x, axis)` (of `|x|` if `absolute`), NaN wherever a NaN lies along
  `axis`, on every backend."""
  # The check sums x, not |x|: XLA:CPU fuses two reductions of one elementwise
  # producer into one loop that runs slower than the two apart.
  value = jnp.max(jnp.abs(x) if absolute else x, axis=axis)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    return value
  no_nan_possible = fallback.all_true(~jnp.isnan(jnp.sum(x, axis=axis)))
  return fallback.fast_or_exact(
    no_nan_possible, lambda v: v, lambda v: _with_nans(x, v, axis), value
  )


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def first_max(x: jax.Array, axis: int, absolute: bool = False) -> jax.Array:
  """The max of `x` (of `|x|` if `absolute`) over `axis` (removed), NaN where a NaN
  lies along it; the derivative goes to the first maximal element (or the last NaN)
  only, times its sign if `absolute` (0 for a zero: the p-norms' convention).

  Exact for float and integer dtypes; -0.0 and 0.0 compare equal, so the sign of a
  zero maximum is the sign `jnp.max` gives.
  """
  return nan_max(x, axis, absolute)


@first_max.defjvp
def _first_max_jvp(axis, absolute, primals, tangents):
  (x,), (t,) = primals, tangents
  value = first_max(x, axis, absolute)
  candidates = jnp.abs(x) if absolute else x
  index = separable.first_max_index(candidates, jnp.expand_dims(value, axis), axis)
  picked = jnp.where(separable.positions(index.dtype, x, axis) == index, t, 0)
  if absolute:  # after the selection: its transpose must not meet other NaNs' signs
    picked = picked * jnp.sign(x).astype(t.dtype)
  return value, jnp.sum(picked, axis=axis).astype(t.dtype)
