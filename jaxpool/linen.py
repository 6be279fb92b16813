"""Flax Linen modules for every jaxpool operation.

One module per pooling function, same CamelCase names as :mod:`jaxpool.nnx`. The
modules are thin: their attributes are the function's options, they hold the
learnable parameters and draw the random keys, and they call the function from
:mod:`jaxpool` for every piece of pooling math.

Conventions (as the rest of Flax Linen):

* Learnable parameters live in the ``"params"`` collection and are created lazily
  from the first input (so no ``num_features`` is needed).
* Random modules (:class:`StochasticPool`, :class:`FractionalMaxPool`,
  ``MixedPool(stochastic=True)``) draw keys from the rng stream ``"pooling"``:
  ``module.apply(variables, x, rngs={"pooling": key})``. Their ``deterministic``
  flag is an attribute or a ``deterministic=`` call argument, exactly one of the
  two (:func:`flax.linen.merge_param`, as :class:`flax.linen.Dropout`).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from jaxpool import linen as jpl
  >>> x = jnp.ones((1, 4, 4, 3))
  >>> pool = jpl.MaxPool(window_shape=(2, 2), strides=(2, 2))
  >>> pool.apply({}, x).shape
  (1, 2, 2, 3)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any
from typing import Callable
from typing import Optional
from typing import Sequence

import jax
import jax.numpy as jnp

import jaxpool
from jaxpool._src.layers import module_docs
from jaxpool._src.layers import modules as _m

with _m.flax_required("jaxpool.linen"):
  import flax.linen as nn

RNG_STREAM = _m.RNG_STREAM
"""The rng stream that every random pooling module draws its keys from: ``"pooling"``."""

Shape = Sequence[int]
Initializer = Callable[..., Any]
# Appends each class's options to its docstring, from module_docs.OPTIONS and the function's.
_documented = functools.partial(module_docs.document, api="linen")


# --------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------


class _WindowPool(nn.Module):
  """The window options of every window pool (see :func:`jaxpool.max_pool`)."""

  window_shape: Shape
  strides: Optional[Any] = None
  padding: Any = "VALID"
  _: dataclasses.KW_ONLY  # the rest is keyword-only, as in the functions
  dilation: Optional[Any] = None
  ceil_mode: bool = False
  channel_axis: int = -1

  def _window(self) -> dict[str, Any]:
    """Arguments of the function after `inputs` and the op-specific positionals."""
    return _m.options(self, _m.WINDOW_OPTIONS)


def _num_channels(x, channel_axis: int) -> int:
  return jnp.shape(x)[channel_axis]


def _pooling_key(module: nn.Module, name: str) -> jax.Array:
  """A fresh key from the "pooling" stream, or a ValueError that says how to pass one."""
  # At init, make_rng falls back to the "params" stream (Flax's rule), so that
  # `init` with a single key works as for nn.Dropout.
  fallback = module.is_initializing() and module.has_rng("params")
  if not (module.has_rng(RNG_STREAM) or fallback):
    raise ValueError(
      f"{name} needs a random key when deterministic=False: pass "
      f"rngs={{'{RNG_STREAM}': key}} to init/apply, or call it with "
      f"deterministic=True (eval)."
    )
  return module.make_rng(RNG_STREAM)


# --------------------------------------------------------------------------------
# Classic window reductions
# --------------------------------------------------------------------------------


@_documented(jaxpool.max_pool)
class MaxPool(_WindowPool):
  """Max pooling, :func:`jaxpool.max_pool` (largest element of every window). No parameters.

  Example:
    >>> MaxPool((2, 2), strides=(2, 2)).apply({}, jnp.ones((1, 4, 4, 1))).shape
    (1, 2, 2, 1)
  """

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.max_pool(inputs, **self._window())


@_documented(jaxpool.min_pool)
class MinPool(_WindowPool):
  """Min pooling, :func:`jaxpool.min_pool`. No parameters."""

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.min_pool(inputs, **self._window())


@_documented(jaxpool.sum_pool)
class SumPool(_WindowPool):
  """Sum pooling, :func:`jaxpool.sum_pool`. No parameters."""

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.sum_pool(inputs, **self._window())


@_documented(jaxpool.avg_pool)
class AvgPool(_WindowPool):
  """Average pooling, :func:`jaxpool.avg_pool`. No parameters."""

  count_include_pad: bool = True  # positional, as in avg_pool and flax's avg_pool
  _: dataclasses.KW_ONLY
  divisor_override: Optional[int] = None

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.avg_pool(
      inputs,
      count_include_pad=self.count_include_pad,
      divisor_override=self.divisor_override,
      **self._window(),
    )


# --------------------------------------------------------------------------------
# Power means
# --------------------------------------------------------------------------------


@_documented(jaxpool.lp_pool)
class LpPool(_WindowPool):
  r"""Power-average pooling, :func:`jaxpool.lp_pool`: :math:`(\sum_w |x|^p)^{1/p}`.

  Example:
    >>> pool = LpPool((2, 2), strides=2, p=3.0, learn_p=True)
    >>> v = pool.init(jax.random.key(0), jnp.ones((1, 4, 4, 1)))
    >>> round(float(1 + jax.nn.softplus(v["params"]["raw_p"])), 4)
    3.0
  """

  _: dataclasses.KW_ONLY
  p: float = 2.0
  mean: bool = False
  learn_p: bool = False

  @nn.compact
  def __call__(self, inputs):
    p = self.p
    if self.learn_p:
      raw0 = _m.raw_from_p(self.p, "LpPool")
      raw = self.param("raw_p", lambda _: jnp.asarray(raw0, jnp.float32))
      p = _m.p_from_raw(raw)
    return jaxpool.lp_pool(inputs, p, mean=self.mean, **self._window())


@_documented(jaxpool.l2_pool)
class L2Pool(_WindowPool):
  r"""L2 pooling, :func:`jaxpool.l2_pool`: :math:`\sqrt{\sum_w x^2}`. No parameters."""

  _: dataclasses.KW_ONLY
  mean: bool = False

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.l2_pool(inputs, mean=self.mean, **self._window())


@_documented(jaxpool.gem_pool)
class GeMPool(nn.Module):
  r"""Generalized-mean global pooling, :func:`jaxpool.gem_pool` (Radenović et al.
  2018): :math:`(\frac{1}{|S|}\sum_{s} \max(x_s, \epsilon)^p)^{1/p}` over all
  spatial positions.
  """

  _: dataclasses.KW_ONLY
  p: float = 3.0
  learn_p: bool = True
  eps: float = 1e-6
  keepdims: bool = False
  num_spatial_dims: Optional[int] = None
  channel_axis: int = -1

  @nn.compact
  def __call__(self, inputs):
    p = self.p
    if self.learn_p:
      p = self.param("p", lambda _: jnp.asarray(self.p, jnp.float32))
    return jaxpool.gem_pool(
      inputs,
      p,
      eps=self.eps,
      keepdims=self.keepdims,
      num_spatial_dims=self.num_spatial_dims,
      channel_axis=self.channel_axis,
    )


# --------------------------------------------------------------------------------
# Random pools
# --------------------------------------------------------------------------------


@_documented(jaxpool.stochastic_pool)
class StochasticPool(_WindowPool):
  """Stochastic pooling, :func:`jaxpool.stochastic_pool` (Zeiler & Fergus 2013).

  Training (``deterministic=False``) draws one element of every window with a key
  from the rng stream ``"pooling"``; evaluation (``deterministic=True``) is the
  function's deterministic weighting, no key.

  Example:
    >>> pool = StochasticPool((2, 2), strides=2)
    >>> x = jnp.ones((1, 4, 4, 1))
    >>> y = pool.apply({}, x, deterministic=False, rngs={"pooling": jax.random.key(0)})
    >>> pool.apply({}, x, deterministic=True).shape
    (1, 2, 2, 1)
  """

  _: dataclasses.KW_ONLY
  deterministic: Optional[bool] = None

  @nn.compact
  def __call__(self, inputs, deterministic: Optional[bool] = None):
    deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
    if deterministic:
      return jaxpool.stochastic_pool(inputs, deterministic=True, **self._window())
    key = _pooling_key(self, "StochasticPool")
    return jaxpool.stochastic_pool(inputs, key=key, deterministic=False, **self._window())


@_documented(jaxpool.fractional_max_pool)
class FractionalMaxPool(nn.Module):
  """Fractional max pooling, :func:`jaxpool.fractional_max_pool` (Graham 2014).

  Training draws the pseudo-random windows with a fresh key of the rng stream
  ``"pooling"`` at every call; evaluation (``deterministic=True``) uses the fixed key
  of ``eval_seed``.
  """

  window_shape: Shape
  output_size: Optional[Any] = None
  _: dataclasses.KW_ONLY
  output_ratio: Optional[Any] = None
  overlapping: bool = False
  return_indices: bool = False
  channel_axis: int = -1
  deterministic: Optional[bool] = None
  eval_seed: int = 0

  @nn.compact
  def __call__(self, inputs, deterministic: Optional[bool] = None):
    deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
    if deterministic:
      key = _m.eval_key(self.eval_seed)
    else:
      key = _pooling_key(self, "FractionalMaxPool")
    return jaxpool.fractional_max_pool(
      inputs,
      self.window_shape,
      self.output_size,
      output_ratio=self.output_ratio,
      key=key,
      overlapping=self.overlapping,
      return_indices=self.return_indices,
      channel_axis=self.channel_axis,
    )


# --------------------------------------------------------------------------------
# Learnt mixtures of max and average (Lee, Gallagher & Tu 2016; Yu et al. 2014)
# --------------------------------------------------------------------------------


@_documented(jaxpool.mixed_pool)
class MixedPool(_WindowPool):
  r"""Mixed max-average pooling, :func:`jaxpool.mixed_pool`:
  :math:`\alpha \max_w x + (1 - \alpha)\,\mathrm{avg}_w x`.

  :math:`\alpha` is learnt (Lee, Gallagher & Tu 2016, the default: the parameter
  ``"alpha_logit"``) or random (``stochastic=True``, Yu et al. 2014: keys from the
  rng stream ``"pooling"``, no parameters).
  """

  _: dataclasses.KW_ONLY
  granularity: str = "layer"
  alpha_init: float = 0.5
  count_include_pad: bool = True
  stochastic: bool = False
  deterministic: Optional[bool] = None
  region_shape: Optional[Shape] = None

  @nn.compact
  def __call__(self, inputs, deterministic: Optional[bool] = None):
    if self.stochastic:
      deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
      if deterministic:
        alpha = jnp.asarray(0.5, jnp.float32)
      else:
        alpha = _m.yu_alpha(_pooling_key(self, "MixedPool"))
      return jaxpool.mixed_pool(
        inputs, alpha, count_include_pad=self.count_include_pad, **self._window()
      )
    region = self.region_shape
    if self.granularity == "region":
      region = _m.window_geometry(self, inputs, "MixedPool").output_spatial
      if self.region_shape is not None and tuple(self.region_shape) != region:
        raise ValueError(
          f"MixedPool: region_shape={tuple(self.region_shape)} but the "
          f"output spatial shape is {region}."
        )
    shape = _m.mixed_alpha_shape(
      self.granularity,
      region_shape=region,
      num_features=_num_channels(inputs, self.channel_axis),
      channel_axis=self.channel_axis,
    )
    logit0 = _m.logit(self.alpha_init)
    alpha_logit = self.param("alpha_logit", nn.initializers.constant(logit0), shape, jnp.float32)
    return jaxpool.mixed_pool(
      inputs,
      jax.nn.sigmoid(alpha_logit),
      count_include_pad=self.count_include_pad,
      **self._window(),
    )


@_documented(jaxpool.gated_pool)
class GatedPool(_WindowPool):
  r"""Gated max-average pooling, :func:`jaxpool.gated_pool` (Lee et al. 2016):
  :math:`g = \sigma(\sum_w \omega \odot x)`, output :math:`g \max + (1-g)\,\mathrm{avg}`,
  with the learnt gate mask :math:`\omega` (parameter ``"gate"``).
  """

  _: dataclasses.KW_ONLY
  granularity: str = "layer"
  gate_init: Initializer = nn.initializers.zeros
  count_include_pad: bool = True

  @nn.compact
  def __call__(self, inputs):
    shape = _m.gate_shape(
      self.window_shape, self.granularity, _num_channels(inputs, self.channel_axis), "GatedPool"
    )
    gate = self.param("gate", self.gate_init, shape, jnp.float32)
    return jaxpool.gated_pool(
      inputs, gate, count_include_pad=self.count_include_pad, **self._window()
    )


@_documented(jaxpool.tree_pool)
class TreePool(_WindowPool):
  """Tree pooling, :func:`jaxpool.tree_pool` (Lee et al. 2016): a binary tree of learnt
  pooling filters (parameters ``"leaves"`` and ``"gates"``).
  """

  _: dataclasses.KW_ONLY
  levels: int = 2
  granularity: str = "layer"
  leaf_init: Optional[Initializer] = None
  gate_init: Initializer = nn.initializers.zeros

  @nn.compact
  def __call__(self, inputs):
    n = _m.tree_leaves(self.levels)
    filt = _m.gate_shape(
      self.window_shape, self.granularity, _num_channels(inputs, self.channel_axis), "TreePool"
    )
    leaf_init = self.leaf_init or nn.initializers.normal(
      1.0 / math.sqrt(math.prod(self.window_shape))
    )
    leaves = self.param("leaves", leaf_init, (n,) + filt, jnp.float32)
    gates = self.param("gates", self.gate_init, (n - 1,) + filt, jnp.float32)
    return jaxpool.tree_pool(inputs, leaves, gates, **self._window())


# --------------------------------------------------------------------------------
# Softmax-weighted pools
# --------------------------------------------------------------------------------


@_documented(jaxpool.soft_pool)
class SoftPool(_WindowPool):
  r"""SoftPool, :func:`jaxpool.soft_pool` (Stergiou et al. 2021):
  :math:`\sum_w \mathrm{softmax}_w(x)_i\, x_i`. No parameters.
  """

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.soft_pool(inputs, **self._window())


@_documented(jaxpool.window_pool)
class WindowPool(_WindowPool):
  """Any function of the window elements, :func:`jaxpool.window_pool`.

  No parameters of its own; `fn` may close over arrays (a learnt temperature is a
  parameter of the module that calls it).

  Example:
    >>> pool = WindowPool((3, 3), strides=2, padding=1, fn=jnp.median)
    >>> pool.apply({}, jnp.ones((1, 5, 5, 2))).shape
    (1, 3, 3, 2)
  """

  _: dataclasses.KW_ONLY
  fn: Callable[..., Any]
  pad_value: Any = 0

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.window_pool(self.fn, inputs, pad_value=self.pad_value, **self._window())


class _InstanceNorm(nn.Module):
  """``nn.GroupNorm(num_groups=C)``: same parameters (``scale`` ones, ``bias``
  zeros, shape (C,)) and values, by a formula XLA:CPU runs faster."""

  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    return _m.instance_norm(x, scale, bias, self.epsilon)


@_documented(None)
class LIPLogits(nn.Module):
  r"""The logit network of :class:`LIPPool` (Gao et al. 2019, simplified LIP).

  :math:`\ell = \text{coeff} \cdot \sigma(\mathrm{IN}(\mathrm{conv}(x)))`: a bias-free
  ``kernel_size``-wide 'SAME' ``nn.Conv`` with C output channels (submodule ``conv``),
  instance normalisation with a learnt scale and bias (submodule ``norm``: the
  parameters and values of ``nn.GroupNorm`` with one group per channel, by
  ``modules.instance_norm``'s faster formula) and a scaled sigmoid, so the logits lie
  in (0, coeff). Runs channels-last; needs one leading batch dim. Output: the inputs'
  shape.
  """

  num_spatial_dims: int
  _: dataclasses.KW_ONLY
  kernel_size: int = 3
  coeff: float = 12.0
  channel_axis: int = -1
  conv_general_dilated: Callable[..., Any] = jax.lax.conv_general_dilated

  @nn.compact
  def __call__(self, inputs):
    c = _num_channels(inputs, self.channel_axis)
    h = _m.channels_last(inputs, self.channel_axis)
    h = nn.Conv(
      c,
      (self.kernel_size,) * self.num_spatial_dims,
      padding="SAME",
      use_bias=False,
      conv_general_dilated=self.conv_general_dilated,
      name="conv",
    )(h)
    h = _InstanceNorm(name="norm")(h)
    return _m.channels_back(self.coeff * jax.nn.sigmoid(h), self.channel_axis)


@_documented(jaxpool.lip_pool)
class LIPPool(_WindowPool):
  r"""Local importance-based pooling, :func:`jaxpool.lip_pool` (Gao et al. 2019):
  :math:`\sum_w x\, e^{\ell} / \sum_w e^{\ell}` with logits :math:`\ell` from the
  small learnt network :class:`LIPLogits` (submodule ``"logits"``).
  """

  _: dataclasses.KW_ONLY
  kernel_size: int = 3
  coeff: float = 12.0
  conv_general_dilated: Callable[..., Any] = jax.lax.conv_general_dilated

  @nn.compact
  def __call__(self, inputs):
    logits = LIPLogits(
      len(self.window_shape),
      kernel_size=self.kernel_size,
      coeff=self.coeff,
      channel_axis=self.channel_axis,
      conv_general_dilated=self.conv_general_dilated,
      name="logits",
    )(inputs)
    return jaxpool.lip_pool(inputs, logits, **self._window())


# --------------------------------------------------------------------------------
# Adaptive, global and pyramid pools
# --------------------------------------------------------------------------------


@_documented(jaxpool.adaptive_avg_pool)
class AdaptiveAvgPool(nn.Module):
  """Adaptive average pooling, :func:`jaxpool.adaptive_avg_pool` (PyTorch's windows)."""

  output_size: Any
  _: dataclasses.KW_ONLY
  channel_axis: int = -1

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.adaptive_avg_pool(inputs, self.output_size, channel_axis=self.channel_axis)


@_documented(jaxpool.adaptive_max_pool)
class AdaptiveMaxPool(AdaptiveAvgPool):
  """Adaptive max pooling, :func:`jaxpool.adaptive_max_pool` (PyTorch's windows)."""

  _: dataclasses.KW_ONLY
  return_indices: bool = False

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.adaptive_max_pool(
      inputs, self.output_size, return_indices=self.return_indices, channel_axis=self.channel_axis
    )


@_documented(jaxpool.global_avg_pool)
class GlobalAvgPool(nn.Module):
  """Mean over all spatial dims, :func:`jaxpool.global_avg_pool`."""

  _: dataclasses.KW_ONLY
  keepdims: bool = False
  num_spatial_dims: Optional[int] = None
  channel_axis: int = -1

  def _options(self) -> dict[str, Any]:
    return _m.options(self, ("keepdims", "num_spatial_dims", "channel_axis"))

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.global_avg_pool(inputs, **self._options())


@_documented(jaxpool.global_max_pool)
class GlobalMaxPool(GlobalAvgPool):
  """Max over all spatial dims, :func:`jaxpool.global_max_pool`."""

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.global_max_pool(inputs, **self._options())


@_documented(jaxpool.global_lp_pool)
class GlobalLpPool(GlobalAvgPool):
  """Lp norm over all spatial dims, :func:`jaxpool.global_lp_pool`."""

  _: dataclasses.KW_ONLY
  p: float = 2.0

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.global_lp_pool(inputs, self.p, **self._options())


@_documented(jaxpool.spatial_pyramid_pool)
class SpatialPyramidPool(nn.Module):
  """Spatial pyramid pooling, :func:`jaxpool.spatial_pyramid_pool` (He et al. 2014)."""

  levels: Sequence[int] = (1, 2, 4)
  _: dataclasses.KW_ONLY
  mode: str = "max"
  channel_axis: int = -1

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.spatial_pyramid_pool(
      inputs, self.levels, mode=self.mode, channel_axis=self.channel_axis
    )


# --------------------------------------------------------------------------------
# Max pooling with indices, unpooling, anti-aliased pooling
# --------------------------------------------------------------------------------


@_documented(jaxpool.max_pool_with_argmax)
class MaxPoolWithArgmax(_WindowPool):
  """Max pooling that also returns the indices, :func:`jaxpool.max_pool_with_argmax`:
  ``(values, indices)`` (PyTorch's ``return_indices``).
  """

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.max_pool_with_argmax(inputs, **self._window())


@_documented(jaxpool.max_unpool)
class MaxUnpool(nn.Module):
  """Max unpooling, :func:`jaxpool.max_unpool`: scatters `values` to `indices`. The
  call's ``output_shape`` is given if and only if the attribute is None.
  """

  output_shape: Optional[Shape] = None
  _: dataclasses.KW_ONLY
  channel_axis: int = -1

  @nn.compact
  def __call__(self, values, indices, output_shape: Optional[Shape] = None):
    output_shape = nn.merge_param("output_shape", self.output_shape, output_shape)
    return jaxpool.max_unpool(values, indices, output_shape, channel_axis=self.channel_axis)


@_documented(jaxpool.blur_pool)
class BlurPool(nn.Module):
  """Anti-aliased downsampling, :func:`jaxpool.blur_pool` (Zhang 2019)."""

  strides: Any
  _: dataclasses.KW_ONLY
  filter_size: int = 3
  pool: str = "max"
  window_shape: Optional[Shape] = None
  padding: str = "reflect"
  channel_axis: int = -1

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.blur_pool(
      inputs,
      self.strides,
      filter_size=self.filter_size,
      pool=self.pool,
      window_shape=self.window_shape,
      padding=self.padding,
      channel_axis=self.channel_axis,
    )
