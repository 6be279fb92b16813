r"""Softmax-weighted pooling: SoftPool and local importance pooling (LIP).

Stergiou, Poppe & Kalliatakis, "Refining activation downsampling with SoftPool",
ICCV 2021; Gao, Wang & Wu, "LIP: Local Importance-based Pooling", ICCV 2019.

Both are a weighted average of every window with weights :math:`e^{\ell_k}`:

.. math:: y_o = \frac{\sum_{k \in W_o} x_k e^{\ell_k}}{\sum_{k \in W_o} e^{\ell_k}}

Numerics: the exponentials are taken of :math:`\ell_k - m_o`, with :math:`m_o` the
window maximum of the logits (under `stop_gradient`: the ratio does not depend on
it), so the largest weight of every window is exactly 1, nothing overflows and the
denominator is at least 1. The windows are visited as strided slices, so the shift
is exact per window. The values come from strided views of the unpadded arrays
(`views.view_arrays`, no padded copies); float16/bfloat16 are computed in float32
and the result cast back.

Derivatives (issue 8): custom JVP rules, linear in the tangents, that JAX
transposes into the VJP (so `jvp`, `grad`, `vmap` and higher orders all work):
``dy_o = sum_k p_k (dx_k + (x_k - y_o) dl_k)`` with the softmax weights ``p_k =
e^(l_k - z_o)``, ``z`` the window's log-denominator, recomputed in the backward
pass (`jax.checkpoint`), not stored. For tiling windows (stride = window, no
dilation, padding allowed) they are computed on (output, window) blocks, whose
transpose is one pass over the input; otherwise one weight per window offset,
written once (`_exact_tangent`). `lip_pool` uses these rules everywhere.

`soft_pool` (the logits are x, so the tangent is ``sum_k p_k (1 + x_k - y_o)
dx_k``) has one more form for overlapping windows, where the K exponentials per
window dominate the cost: it shifts every window by one constant, the largest
element ``s`` of the input: ``p_k = e^(x_k - s) / d_o`` with ``d_o = sum_W e^(x -
s)``, one exponential per input element, and the forward pass and the transpose
are each one pass over the input (see `_shifted_sums`, `_factorised_tangent`).
Where some window's weights lie too far below ``s`` for that (`_fast_form_ok`), it
falls back to the per-window shift: a `lax.cond` on CPU, that form always on
accelerators (`fallback.fast_or_exact`).

Padding: padded elements do not contribute at all (weight 0, i.e. logit
:math:`-\infty`): a padded window is the weighted average of its input elements
only. This is what the reference implementations get from zero-padded average
pools of :math:`x e^{\ell}` and :math:`e^{\ell}`. A window lying entirely in the
padding outputs 0.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxpool._src.machinery import dtypes
from jaxpool._src.machinery import fallback
from jaxpool._src.machinery import geometry
from jaxpool._src.machinery import views
from jaxpool._src.machinery.geometry import PaddingLike
from jaxpool._src.machinery.geometry import PoolGeometry


def _floating(value: Any, name: str, fn: str) -> jax.Array:
  a = dtypes.as_array(value, fn, name)
  if not jnp.issubdtype(a.dtype, jnp.floating):
    raise TypeError(f"{fn}: {name} must have a floating dtype, got {a.dtype}.")
  return a


def _window_average(window_terms, geom: PoolGeometry, dtype) -> jax.Array:
  """sum_k x_k e^(l_k - m) / sum_k e^(l_k - m) from the per-offset (logit, x) terms of
  every window (logit -inf in the padding), 0 for a window entirely in the padding.

  Padding the logits with -inf gives padded elements the weight exp(-inf) = 0 with
  a zero derivative (no where-masks, so no 0 * inf in the backward pass).
  """
  if not window_terms:  # every window lies in the padding
    return jnp.zeros(geom.output_shape, dtype)
  # The window maximum of the logits, from the same strided slices as the sums.
  m = lax.stop_gradient(functools.reduce(jnp.maximum, [logit for logit, _ in window_terms]))
  m = jnp.where(jnp.isfinite(m), m, 0)  # all-padding windows (m = -inf) get weights 0
  numerator = denominator = None
  for logit, value in window_terms:
    weight = jnp.exp(logit - m)
    term = weight * value
    numerator = term if numerator is None else numerator + term
    denominator = weight if denominator is None else denominator + weight
  assert numerator is not None and denominator is not None  # window_terms is not empty
  # The denominator is >= 1 except for windows with no input element (0 there).
  positive = denominator > 0
  return jnp.where(positive, numerator / jnp.where(positive, denominator, 1), 0)


def _exact_average(x: jax.Array, logits, geom: PoolGeometry) -> jax.Array:
  """The weighted average with every window shifted by its own maximum logit, one
  fused pass over strided views of the unpadded arrays (no padded copy is written);
  `logits` None: `x` is its own logits (SoftPool)."""
  logits = x if logits is None else logits
  terms = list(zip(views.view_arrays(logits, geom, -np.inf), views.view_arrays(x, geom, 0)))
  return _window_average(terms, geom, x.dtype)


def _log_denominator(logits: jax.Array, geom: PoolGeometry) -> jax.Array:
  """z = m + log sum_k e^(l_k - m) per window (+inf for a window entirely in the padding).

  The softmax weights are e^(l_k - z). Recomputed in the backward pass rather than
  kept from the forward: XLA:CPU writes y and z in one pass only by splitting it
  into several, which cost more than the recomputation (case: soft_pool
  2d_3x3s2_same fwd+bwd).
  """
  terms = views.view_arrays(logits, geom, -np.inf)
  if not terms:
    return jnp.full(geom.output_shape, np.inf, logits.dtype)
  m = functools.reduce(jnp.maximum, terms)
  m = jnp.where(jnp.isfinite(m), m, 0)
  denominator = functools.reduce(jnp.add, [jnp.exp(logit - m) for logit in terms])
  positive = denominator > 0
  return jnp.where(positive, m + jnp.log(jnp.where(positive, denominator, 1)), np.inf)


def _blocks(a: jax.Array, geom: PoolGeometry, padding_value: float):
  """Tiling windows as blocks (`views.window_blocks`), `padding_value` in the padding."""
  blocks, axes = views.window_blocks(a, geom)
  if geom.has_padding and padding_value != 0:
    inside, _ = views.window_blocks(jnp.ones(geom.input_shape, jnp.bool_), geom)
    blocks = jnp.where(inside, blocks, padding_value)
  return blocks, tuple(axes)


def _tangent_coefficients(p, x, y, tx, tl):
  """The tangent's terms ``p_k (dx_k + (x_k - y_o) dl_k)``; for SoftPool (`tl` None:
  the logits are x) ``p_k (1 + x_k - y_o) dx_k``, the same with one product."""
  if tl is None:
    return p * (x - y + 1) * tx
  return p * (tx + (x - y) * tl)


def _tangent_operands(dtype, x, logits, tx, tl):
  """The tangent rules' operands in `dtype`, with `logits` None (SoftPool) as x.

  They arrive in the input's dtype (possibly float16/bfloat16) and are converted
  inside the rules: a float32 copy made before would be a residual written to
  memory. `tl` stays None for SoftPool.
  """
  x = x.astype(dtype)
  logits = x if logits is None else logits.astype(dtype)
  return x, logits, tx.astype(dtype), None if tl is None else tl.astype(dtype)


def _tiled_tangent(x, logits, y, tx, tl, geom: PoolGeometry):
  """dy = sum_k p_k (dx_k + (x_k - y) dl_k) for windows that tile the input, with
  p_k = e^(l_k - z) (`logits` and `tl` None: SoftPool, the logits are x).

  Each element lies in one window: the weights are computed on the (output,
  window) blocks and the transpose is one pass over the input. Called under
  `jax.checkpoint`: reverse mode keeps the inputs and `y` and recomputes `z`.
  """
  x, logits, tx, tl = _tangent_operands(y.dtype, x, logits, tx, tl)
  # z from strided views (one fused loop over the output; reductions over the
  # block axes would make XLA write a float32 copy of bfloat16 blocks), written
  # once: fused into the pass over the input it would be redone for every element.
  z = views.materialize(_log_denominator(logits, geom), x)
  values, axes = _blocks(x, geom, 0)
  logit_blocks = _blocks(logits, geom, -np.inf)[0]
  p = jnp.exp(logit_blocks - jnp.expand_dims(z, axes))
  tx = _blocks(tx, geom, 0)[0]
  tl = None if tl is None else _blocks(tl, geom, 0)[0]
  return jnp.sum(_tangent_coefficients(p, values, jnp.expand_dims(y, axes), tx, tl), axis=axes)


def _shifted_sums(x: jax.Array, geom: PoolGeometry):
  """The fast forward for overlapping windows: (y, d, shift), one shift for all windows.

  ``shift`` is the largest element of `x` (under `stop_gradient`: the ratio does
  not depend on it), ``e = e^(x - shift) <= 1`` is one exponential per input
  element (the exact form takes K per output, after a pass for the window maxima),
  and per window ``d = sum_W e`` and ``y = sum_W e x / d`` (strided views, as
  `sum_pool`). Exact up to rounding wherever no window's largest weight
  underflows, which `_fast_form_ok` checks.
  """
  # Half precision: converted inside each fused pass (a float32 copy written once
  # costs more on CPU, where the conversion is done in software).
  dtype = dtypes.compute_dtype(x.dtype)
  shift = lax.stop_gradient(jnp.max(x).astype(dtype))
  x = x.astype(dtype)
  e = _shifted_exp(x, shift)
  # Two window sums of two different arrays: views shared by both sums (e and e x
  # as views of e times views of x) would be written to memory first.
  d = views.strided_window_sum(e, geom)
  numerator = views.strided_window_sum(e * x, geom)
  positive = d > 0
  return jnp.where(positive, numerator / jnp.where(positive, d, 1), 0), d, shift


@jax.custom_jvp
def _shifted_exp(logits: jax.Array, shift: jax.Array) -> jax.Array:
  """e^(l - shift) for l <= shift. The explicit bound (l - shift <= 0 already) lets
  XLA:CPU vectorise the fused loop of `_factorised_tangent`'s transpose, which is
  also faster than reading an e kept from the forward pass (benchmark case:
  soft_pool 2d_3x3s2_same fwd+bwd). Its derivative is that of the exponential (a custom JVP:
  autodiff of the minimum would halve it at l = shift, the largest logit, which
  second-order derivatives of the tangent rules go through)."""
  return jnp.exp(jnp.minimum(logits - shift, 0))


@_shifted_exp.defjvp
def _shifted_exp_jvp(primals, tangents):
  (logits, shift), (t_logits, t_shift) = primals, tangents
  e = _shifted_exp(logits, shift)
  return e, e * (t_logits - t_shift)


# The fast form is used when every window holding an input element has
# d = e^(z - shift) >= e^-_MAX_SHIFT (z its log-denominator: its largest weight is
# then far from underflow, elements lost to underflow weigh below e^-(87 -
# _MAX_SHIFT) of it) and |y - shift| <= _MAX_Y (so that cotangent * (y - shift) / d
# stays finite for cotangents up to ~1e16).
_MAX_SHIFT = 30.0
_MAX_Y = 2.0**30


def _fast_form_ok(y: jax.Array, d: jax.Array, shift: jax.Array, geom: PoolGeometry) -> jax.Array:
  """Scalar bool: `_shifted_sums` is exact for every window (a NaN anywhere: False)."""
  ok = (d >= math.exp(-_MAX_SHIFT)) & (jnp.abs(y - shift) <= _MAX_Y)
  empty = geom.empty_windows()
  if empty is not None:  # d = 0 by construction there, y = 0
    ok = ok | empty
  return fallback.all_true(ok)


def _factorised_tangent(x, y, d, shift, t, geom: PoolGeometry):
  """The tangent ``dy_o = sum_k p_k (1 + x_k - y_o) dx_k`` with the weights split as
  ``p_k = e_k / d_o`` (the fast form's pieces).

  ``dy = (S(e (1 + u) t) - v S(e t)) / d`` with ``u = x - shift``, ``v = y -
  shift`` and S the window sum (`views.window_sum_by_views`). Its transpose, the
  VJP ``e ((1 + u) T(g / d) - T(g v / d))`` with T the transposed window sum, is
  one pass over the input (`e` recomputed there). Measured from the shift, ``u``
  and ``v`` stay small wherever the weight counts, so the difference of the two
  sums loses little to cancellation even for inputs far from 0.
  """
  x, t = x.astype(y.dtype), t.astype(y.dtype)  # inside the branch: see _soft_pool_jvp
  positive = d > 0  # d = 0 only for windows entirely in the padding
  # Per-window factors, materialised: fused into the transposed window sums they
  # would be recomputed once per window offset per element.
  a = views.materialize(jnp.where(positive, 1 / jnp.where(positive, d, 1), 0), x)
  v = views.materialize(y - shift, x)
  et = _shifted_exp(x, shift) * t
  first = views.window_sum_by_views((1 + (x - shift)) * et, geom)
  second = views.window_sum_by_views(et, geom)
  return a * (first - v * second)


def _exact_tangent(x, logits, y, tx, tl, geom: PoolGeometry):
  """The tangent with one weight ``p_k = e^(l_k - z_o)`` per window offset, ``z`` the
  window's log-denominator from its own maximum logit: exact for any finite input
  (`logits` and `tl` None: SoftPool, the logits are x)."""
  soft = tl is None
  x, logits, tx, tl = _tangent_operands(y.dtype, x, logits, tx, tl)
  # Written once: fused into every term below it would be recomputed per offset.
  z = views.materialize(_log_denominator(logits, geom), x)
  # The tangents' views from `views.linear_views` (the stride phases): the
  # transpose then sums only the terms of each element's own phase (cases: lip_pool
  # fwd+bwd 3x3x3/2 pad 1 and 2d_3x3s2_same bfloat16). Same offsets, in the same
  # order, as `views.view_arrays`.
  tangent_views = lambda t: [view for _, view in views.linear_views(t, geom)]
  tl_views = [None] * geom.window_size if soft else tangent_views(tl)
  terms = []
  for logit, value, t_x, t_l in zip(
    views.view_arrays(logits, geom, -np.inf),
    views.view_arrays(x, geom, 0),
    tangent_views(tx),
    tl_views,
  ):
    # Computed once into memory on CPU: XLA would otherwise fuse every weight (an
    # exp) into the transposed views and evaluate it for every input element. On
    # a GPU the fused form is not slower (benchmark cases: soft_pool fwd+bwd
    # 2d_3x3s2_same, 1d_3s2 and 3-D 3x3x3/2, configs/benchmark.py:accelerator).
    if soft:  # the whole coefficient of the one tangent
      terms.append(views.materialize_on_cpu(jnp.exp(logit - z) * (value - y + 1), x) * t_x)
    else:
      # lip_pool: written on every backend (fused, slightly slower on a GPU too)
      p = views.materialize(jnp.exp(logit - z), x)
      terms.append(_tangent_coefficients(p, value, y, t_x, t_l))
  if not terms:
    return jnp.zeros(geom.output_shape, y.dtype)
  return functools.reduce(jnp.add, terms)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _lip_pool(x: jax.Array, logits: jax.Array, geom: PoolGeometry) -> jax.Array:
  """lip_pool's values in the compute dtype (`x` and `logits` already in it)."""
  return _exact_average(x, logits, geom)


@_lip_pool.defjvp
def _lip_pool_jvp(geom, primals, tangents):
  # Always the exact weights: SoftPool's one-shift form with its fallback (a
  # lax.cond) is slower on the 1-D benchmark case 1d_3s2 (fwd+bwd) and gains under
  # the 1.2x bar on 3x3/2 pad 1, so one form is kept.
  (x, logits), (tx, tl) = primals, tangents
  if x.size == 0 or math.prod(geom.output_shape) == 0:
    return _lip_pool(x, logits, geom), jnp.zeros(geom.output_shape, x.dtype)
  # y written once (`views.pooled`): the tangent rule reads it.
  y = views.pooled(_exact_average(x, logits, geom), x)
  rule = _tiled_tangent if views.is_tiling(geom) else _exact_tangent
  return y, jax.checkpoint(functools.partial(rule, geom=geom))(x, logits, y, tx, tl)


@functools.partial(jax.jit, static_argnums=2)  # one program per geometry, also eagerly
def _weighted_average(x: jax.Array, logits: jax.Array, geom: PoolGeometry) -> jax.Array:
  """sum_W x e^(l - m) / sum_W e^(l - m) per window, in the compute dtype."""
  dtype = jnp.promote_types(dtypes.compute_dtype(x.dtype), dtypes.compute_dtype(logits.dtype))
  return _lip_pool(x.astype(dtype), logits.astype(dtype), geom)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _soft_pool(x: jax.Array, geom: PoolGeometry) -> jax.Array:
  return _exact_average(x.astype(dtypes.compute_dtype(x.dtype)), None, geom).astype(x.dtype)


@_soft_pool.defjvp
def _soft_pool_jvp(geom, primals, tangents):
  (x,), (t,) = primals, tangents
  if x.size == 0 or math.prod(geom.output_shape) == 0:
    return _soft_pool(x, geom), jnp.zeros(geom.output_shape, x.dtype)
  dtype = dtypes.compute_dtype(x.dtype)
  # `x` and `t` enter the tangent rules in their dtype: a float32 copy of a bfloat16
  # input would otherwise be a residual written to memory. y is written once
  # (`views.pooled`), also in float32 for half precision inputs: the cast and the
  # backward pass read it.
  if views.is_tiling(geom):
    y = views.pooled(_exact_average(x.astype(dtype), None, geom), x)
    tangent = jax.checkpoint(functools.partial(_tiled_tangent, geom=geom))(x, None, y, t, None)
    return y.astype(x.dtype), tangent.astype(x.dtype)
  y_fast, d, shift = _shifted_sums(x, geom)
  ok = _fast_form_ok(y_fast, d, shift, geom)
  # The exact forward only where the fast one is not exact (on CPU; on
  # accelerators always, `fallback.fast_or_exact`).
  y = views.pooled(
    fallback.fast_or_exact(
      ok,
      lambda x, y_fast: y_fast,
      lambda x, y_fast: _exact_average(x.astype(dtype), None, geom),
      x,
      y_fast,
    ),
    x,
  )
  # Each branch under its own checkpoint: reverse mode then keeps only the operands
  # (a cond split into known and linear parts would write the other branch's
  # intermediates, or zeros of their shapes, to memory).
  exact = lambda x, y, d, shift, t: _exact_tangent(x, None, y, t, None, geom)
  tangent = fallback.fast_or_exact(
    ok,
    jax.checkpoint(functools.partial(_factorised_tangent, geom=geom)),
    jax.checkpoint(exact),
    x,
    y,
    d,
    shift,
    t,
  )
  return y.astype(x.dtype), tangent.astype(x.dtype)


def lip_pool(
  inputs: Any,
  logits: Any,
  window_shape,
  strides=None,
  padding: PaddingLike = "VALID",
  *,
  dilation=None,
  ceil_mode: bool = False,
  channel_axis: int = -1,
) -> jax.Array:
  r"""Local importance pooling: a window average weighted by :math:`e^{\text{logits}}`.

  .. math:: y_o = \frac{\sum_{k \in W_o} x_k \, e^{\ell_k}}{\sum_{k \in W_o} e^{\ell_k}}

  Gao, Wang & Wu, "LIP: Local Importance-based Pooling", ICCV 2019. In the paper
  the logits :math:`\ell` are the output of a small learned network applied to the
  same features (the importance map is :math:`e^{\ell}`); this function takes them
  as an array, so any network (or none) can produce them. `logits = 0` gives the
  average of the input elements of each window (:func:`jaxpool.avg_pool` with
  `count_include_pad=False`); :func:`soft_pool` is `logits = inputs`.

  Stable for any finite logits (tested up to 1e4 in float32 and bfloat16): the
  window maximum of the logits is subtracted before the exponential. Padded
  elements do not contribute (weight 0), and a window entirely in the padding gives
  0. Differentiable in `inputs` and `logits`: :math:`\partial y_o / \partial x_k =
  p_k` and :math:`\partial y_o / \partial \ell_k = p_k (x_k - y_o)`, :math:`p_k` the
  window's softmax weight of :math:`\ell_k`, through a custom JVP rule (forward
  and reverse mode, `vmap` and higher orders; finite everywhere). The same in
  training and evaluation.

  Args:
    inputs: `(*batch, *spatial, C)`, or `(N, C, *spatial)` with `channel_axis=1`;
      a floating dtype.
    logits: the log-importance of every input element, an array broadcastable to
      the shape of `inputs` (e.g. one logit per position shared by all channels:
      `(*batch, *spatial, 1)`); a floating dtype.
    window_shape: window size per spatial dim, e.g. `(3, 3)`.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int, a sequence of ints or of `(low, high)` pairs.
    dilation: window dilation per spatial dim.
    ceil_mode: PyTorch's ceil_mode.
    channel_axis: -1 (channels last) or 1 (channels first).

  Returns:
    The pooled array in the dtype of `inputs` (computed in float32 for
    float16/bfloat16), shape of :func:`jaxpool.max_pool`'s output.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> x = jnp.array([[1.0], [3.0], [2.0], [6.0]])
    >>> logits = jnp.log(jnp.array([[1.0], [3.0], [1.0], [1.0]]))
    >>> jaxpool.lip_pool(x, logits, (2,), strides=2)[:, 0]   # (1 + 9) / 4, (2 + 6) / 2
    Array([2.5, 4. ], dtype=float32)
  """
  fn = "lip_pool"
  x = _floating(inputs, "inputs", fn)
  ell = _floating(logits, "logits", fn)
  try:
    ok = np.broadcast_shapes(ell.shape, x.shape) == x.shape
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(
      f"{fn}: logits must be broadcastable to the shape of inputs {x.shape}, got shape {ell.shape}."
    )
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
  return _weighted_average(x, jnp.broadcast_to(ell, x.shape), geom).astype(x.dtype)


def soft_pool(
  inputs: Any,
  window_shape,
  strides=None,
  padding: PaddingLike = "VALID",
  *,
  dilation=None,
  ceil_mode: bool = False,
  channel_axis: int = -1,
) -> jax.Array:
  r"""SoftPool: every window's softmax-weighted sum of its own elements.

  .. math:: y_o = \sum_{k \in W_o} \frac{e^{x_k}}{\sum_{j \in W_o} e^{x_j}} \, x_k

  Stergiou, Poppe & Kalliatakis, "Refining activation downsampling with SoftPool",
  ICCV 2021. It lies between the window average (of the input elements) and the
  window maximum, is differentiable everywhere, and every element gets a gradient.
  It is :func:`lip_pool` with `logits = inputs`; stable for inputs up to 1e4 and
  beyond in float32 and bfloat16 (the window maximum is subtracted before the
  exponential). Padded elements do not contribute; a window entirely in the
  padding gives 0. The same in training and evaluation.

  Derivative: :math:`\partial y_o / \partial x_k = p_k (1 + x_k - y_o)` with
  :math:`p_k` the softmax weight, through a custom JVP rule (forward and reverse
  mode, `vmap` and higher orders are supported); the gradient is computed in one
  pass over the input (see the module docstring).

  Args:
    inputs: `(*batch, *spatial, C)`, or `(N, C, *spatial)` with `channel_axis=1`;
      a floating dtype.
    window_shape: window size per spatial dim, e.g. `(2, 2)`.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int, a sequence of ints or of `(low, high)` pairs.
    dilation: window dilation per spatial dim.
    ceil_mode: PyTorch's ceil_mode.
    channel_axis: -1 (channels last) or 1 (channels first).

  Returns:
    The pooled array in the dtype of `inputs`, shape of :func:`jaxpool.max_pool`'s
    output.

  Example:
    >>> import jax.numpy as jnp, jaxpool
    >>> x = jnp.array([[0.0], [0.0], [1e4], [-1e4]])
    >>> jaxpool.soft_pool(x, (2,), strides=2)[:, 0]
    Array([    0., 10000.], dtype=float32)
  """
  x = _floating(inputs, "inputs", "soft_pool")
  geom = geometry.resolve(
    x.shape,
    window_shape,
    strides,
    padding,
    dilation=dilation,
    ceil_mode=ceil_mode,
    channel_axis=channel_axis,
    fn="soft_pool",
  )
  return _soft_pool(x, geom)
