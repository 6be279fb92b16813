"""Flax NNX modules for every jaxpool operation.

One module per pooling function, same CamelCase names as :mod:`jaxpool.linen`. The
modules are thin: their attributes are the function's options, they hold the
learnable parameters and the rng stream, and they call the function from
:mod:`jaxpool` for every piece of pooling math.

Conventions (as the rest of Flax NNX):

* Parameters are created eagerly in ``__init__``: a module with parameters takes
  ``rngs: nnx.Rngs`` as a keyword, and ``num_features`` where a parameter is per
  channel.
* Random modules (:class:`StochasticPool`, :class:`FractionalMaxPool`,
  ``MixedPool(stochastic=True)``) draw keys from the rng stream ``"pooling"`` of
  the ``rngs`` they were built with (``nnx.Rngs(0)`` falls back to its default
  stream, ``nnx.Rngs(pooling=0)`` names it), exactly as :class:`flax.nnx.Dropout`
  does with ``"dropout"``. Their ``deterministic`` attribute is switched by
  ``model.train()`` (False) / ``model.eval()`` (True), and a ``deterministic=`` or
  ``rngs=`` call argument takes precedence over the attribute.

Example:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from jaxpool import nnx as jpx
  >>> pool = jpx.MaxPool(window_shape=(2, 2), strides=(2, 2))
  >>> pool(jnp.ones((1, 4, 4, 3))).shape
  (1, 2, 2, 3)
"""

from __future__ import annotations

import functools
import math
from typing import Any
from typing import Callable
from typing import Optional
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

import jaxpool
from jaxpool._src.layers import module_docs
from jaxpool._src.layers import modules as _m

with _m.flax_required("jaxpool.nnx"):
  from flax import nnx

  from jaxpool._src.layers import nnx_base as _b

RNG_STREAM = _m.RNG_STREAM
"""The rng stream that every random pooling module draws its keys from: ``"pooling"``."""

Shape = Sequence[int]
# Appends each class's options to its docstring, from module_docs.OPTIONS and the function's.
_documented = functools.partial(module_docs.document, api="nnx")


# --------------------------------------------------------------------------------
# Classic window reductions
# --------------------------------------------------------------------------------


@_documented(jaxpool.max_pool)
class MaxPool(_b.Window):
  """Max pooling, :func:`jaxpool.max_pool`. No parameters, no rngs.

  Example:
    >>> MaxPool((2, 2), strides=(2, 2))(jnp.ones((1, 4, 4, 1))).shape
    (1, 2, 2, 1)
  """

  def __init__(
    self,
    window_shape: Shape,
    strides=None,
    padding="VALID",
    *,
    dilation=None,
    ceil_mode: bool = False,
    channel_axis: int = -1,
  ):
    self._set_window(window_shape, strides, padding, dilation, ceil_mode, channel_axis)

  def __call__(self, inputs):
    return jaxpool.max_pool(inputs, **self._window())


@_documented(jaxpool.min_pool)
class MinPool(MaxPool):
  """Min pooling, :func:`jaxpool.min_pool`. No parameters, no rngs."""

  def __call__(self, inputs):
    return jaxpool.min_pool(inputs, **self._window())


@_documented(jaxpool.sum_pool)
class SumPool(MaxPool):
  """Sum pooling, :func:`jaxpool.sum_pool`. No parameters, no rngs."""

  def __call__(self, inputs):
    return jaxpool.sum_pool(inputs, **self._window())


@_documented(jaxpool.avg_pool)
class AvgPool(_b.Window):
  """Average pooling, :func:`jaxpool.avg_pool`. No parameters, no rngs."""

  def __init__(
    self,
    window_shape: Shape,
    strides=None,
    padding="VALID",
    count_include_pad: bool = True,
    *,
    divisor_override=None,
    dilation=None,
    ceil_mode: bool = False,
    channel_axis: int = -1,
  ):
    self._set_window(window_shape, strides, padding, dilation, ceil_mode, channel_axis)
    self.count_include_pad = count_include_pad
    self.divisor_override = divisor_override

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
class LpPool(_b.Window):
  r"""Power-average pooling, :func:`jaxpool.lp_pool`: :math:`(\sum_w |x|^p)^{1/p}`.

  ``raw_p`` is None unless ``learn_p``; :meth:`p_value` is the exponent in use.

  Example:
    >>> pool = LpPool((2, 2), strides=2, p=3.0, learn_p=True)
    >>> round(float(pool.p_value()), 4)
    3.0
  """

  def __init__(
    self,
    window_shape: Shape,
    strides=None,
    padding="VALID",
    *,
    p: float = 2.0,
    mean: bool = False,
    learn_p: bool = False,
    dilation=None,
    ceil_mode: bool = False,
    channel_axis: int = -1,
    rngs: Optional[nnx.Rngs] = None,
  ):
    self._set_window(window_shape, strides, padding, dilation, ceil_mode, channel_axis)
    self.p = p
    self.mean = mean
    self.learn_p = learn_p
    self.raw_p = (
      nnx.Param(jnp.asarray(_m.raw_from_p(p, "LpPool"), jnp.float32)) if learn_p else None
    )

  def p_value(self):
    """The exponent in use: ``1 + softplus(raw_p)`` if learnt, else ``p``."""
    if not self.learn_p:
      return self.p
    assert self.raw_p is not None  # a Param whenever learn_p (__init__)
    return _m.p_from_raw(self.raw_p[...])

  def __call__(self, inputs):
    return jaxpool.lp_pool(inputs, self.p_value(), mean=self.mean, **self._window())


@_documented(jaxpool.l2_pool)
class L2Pool(_b.Window):
  r"""L2 pooling, :func:`jaxpool.l2_pool`: :math:`\sqrt{\sum_w x^2}`. No parameters."""

  def __init__(
    self,
    window_shape: Shape,
    strides=None,
    padding="VALID",
    *,
    mean: bool = False,
    dilation=None,
    ceil_mode: bool = False,
    channel_axis: int = -1,
  ):
    self._set_window(window_shape, strides, padding, dilation, ceil_mode, channel_axis)
    self.mean = mean

  def __call__(self, inputs):
    return jaxpool.l2_pool(inputs, mean=self.mean, **self._window())


@_documented(jaxpool.gem_pool)
class GeMPool(nnx.Module):
  r"""Generalized-mean global pooling, :func:`jaxpool.gem_pool` (Radenović et al.
  2018): :math:`(\frac{1}{|S|}\sum_{s} \max(x_s, \epsilon)^p)^{1/p}` over all
  spatial positions. ``self.p`` is an ``nnx.Param`` if learnt, else a float.
  """

  def __init__(
    self,
    *,
    p: float = 3.0,
    learn_p: bool = True,
    eps: float = 1e-6,
    keepdims: bool = False,
    num_spatial_dims: Optional[int] = None,
    channel_axis: int = -1,
    rngs: Optional[nnx.Rngs] = None,
  ):
    self.learn_p = learn_p
    self.p = nnx.Param(jnp.asarray(p, jnp.float32)) if learn_p else p
    self.eps = eps
    self.keepdims = keepdims
    self.num_spatial_dims = num_spatial_dims
    self.channel_axis = channel_axis

  def __call__(self, inputs):
    p = self.p[...] if isinstance(self.p, nnx.Param) else self.p  # a Param iff learn_p
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
class StochasticPool(_b.Window, _b.Random):
  """Stochastic pooling, :func:`jaxpool.stochastic_pool` (Zeiler & Fergus 2013).

  Training (``model.train()``) draws one element of every window with a fresh key of
  the module's ``"pooling"`` stream at every call; evaluation (``model.eval()``) is
  the function's deterministic weighting, no key. Call: ``pool(x, deterministic=None,
  rngs=None)``; the call's arguments take precedence over the attributes.

  Example:
    >>> pool = StochasticPool((2, 2), strides=2, rngs=nnx.Rngs(0))
    >>> pool(jnp.ones((1, 4, 4, 1))).shape
    (1, 2, 2, 1)
  """

  def __init__(
    self,
    window_shape: Shape,
    strides=None,
    padding="VALID",
    *,
    deterministic: Optional[bool] = False,
    dilation=None,
    ceil_mode: bool = False,
    channel_axis: int = -1,
    rngs: nnx.Rngs | nnx.RngStream | None = None,
  ):
    self._set_window(window_shape, strides, padding, dilation, ceil_mode, channel_axis)
    self.deterministic = deterministic
    self.rngs = _b.fork_stream(rngs, "StochasticPool")

  def __call__(self, inputs, *, deterministic: Optional[bool] = None, rngs=None):
    if self._resolve(deterministic):
      return jaxpool.stochastic_pool(inputs, deterministic=True, **self._window())
    key = self._key(rngs)
    return jaxpool.stochastic_pool(inputs, key=key, deterministic=False, **self._window())


@_documented(jaxpool.fractional_max_pool)
class FractionalMaxPool(_b.Random):
  """Fractional max pooling, :func:`jaxpool.fractional_max_pool` (Graham 2014).

  Training draws the pseudo-random windows with a fresh key of the module's
  ``"pooling"`` stream at every call; evaluation (``model.eval()``) uses the fixed key
  of ``eval_seed``. Call as :class:`StochasticPool`.
  """

  def __init__(
    self,
    window_shape: Shape,
    output_size=None,
    *,
    output_ratio=None,
    overlapping: bool = False,
    return_indices: bool = False,
    channel_axis: int = -1,
    deterministic: Optional[bool] = False,
    eval_seed: int = 0,
    rngs: nnx.Rngs | nnx.RngStream | None = None,
  ):
    self.window_shape = _b.freeze(window_shape)
    self.output_size = _b.freeze(output_size)
    self.output_ratio = _b.freeze(output_ratio)
    self.overlapping = overlapping
    self.return_indices = return_indices
    self.channel_axis = channel_axis
    self.deterministic = deterministic
    self.eval_seed = eval_seed
    self.rngs = _b.fork_stream(rngs, "FractionalMaxPool")

  def __call__(self, inputs, *, deterministic: Optional[bool] = None, rngs=None):
    if self._resolve(deterministic):
      key = _m.eval_key(self.eval_seed)
    else:
      key = self._key(rngs)
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
class MixedPool(_b.Window, _b.Random):
  r"""Mixed max-average pooling, :func:`jaxpool.mixed_pool`:
  :math:`\alpha \max_w x + (1 - \alpha)\,\mathrm{avg}_w x`.

  :math:`\alpha` (:meth:`alpha`) is learnt (Lee, Gallagher & Tu 2016, the default:
  the parameter ``alpha_logit``) or random (``stochastic=True``, Yu et al. 2014: keys
  from the ``"pooling"`` stream, ``alpha_logit`` None). Call as :class:`StochasticPool`.
  """

  def __init__(
    self,
    window_shape: Shape,
    strides=None,
    padding="VALID",
    *,
    granularity: str = "layer",
    alpha_init: float = 0.5,
    count_include_pad: bool = True,
    num_features: Optional[int] = None,
    region_shape=None,
    stochastic: bool = False,
    deterministic: Optional[bool] = False,
    dilation=None,
    ceil_mode: bool = False,
    channel_axis: int = -1,
    rngs: nnx.Rngs | nnx.RngStream | None = None,
  ):
    self._set_window(window_shape, strides, padding, dilation, ceil_mode, channel_axis)
    self.granularity = granularity
    self.alpha_init = alpha_init
    self.count_include_pad = count_include_pad
    self.stochastic = stochastic
    self.deterministic = deterministic
    self.num_features = num_features
    self.region_shape = _b.freeze(region_shape)
    if stochastic:
      self.alpha_logit = None
      self.rngs = _b.fork_stream(rngs, "MixedPool")
      return
    self.rngs = nnx.data(None)
    shape = _m.mixed_alpha_shape(
      granularity, num_features=num_features, region_shape=region_shape, channel_axis=channel_axis
    )
    self.alpha_logit = nnx.Param(jnp.full(shape, _m.logit(alpha_init), jnp.float32))

  def alpha(self, *, deterministic: Optional[bool] = None, rngs=None):
    """The mixing weight of this call (learnt: sigmoid of the logit)."""
    if not self.stochastic:
      assert self.alpha_logit is not None  # a Param unless stochastic (__init__)
      return jax.nn.sigmoid(self.alpha_logit[...])
    if self._resolve(deterministic):
      return jnp.asarray(0.5, jnp.float32)
    return _m.yu_alpha(self._key(rngs))

  def __call__(self, inputs, *, deterministic: Optional[bool] = None, rngs=None):
    alpha = self.alpha(deterministic=deterministic, rngs=rngs)
    return jaxpool.mixed_pool(
      inputs, alpha, count_include_pad=self.count_include_pad, **self._window()
    )


@_documented(jaxpool.gated_pool)
class GatedPool(_b.Window):
  r"""Gated max-average pooling, :func:`jaxpool.gated_pool` (Lee et al. 2016):
  :math:`g = \sigma(\sum_w \omega \odot x)`, output :math:`g \max + (1-g)\,\mathrm{avg}`,
  with the learnt gate mask :math:`\omega` (parameter ``gate``).
  """

  def __init__(
    self,
    window_shape: Shape,
    strides=None,
    padding="VALID",
    *,
    granularity: str = "layer",
    num_features: Optional[int] = None,
    gate_init=nnx.initializers.zeros,
    count_include_pad: bool = True,
    dilation=None,
    ceil_mode: bool = False,
    channel_axis: int = -1,
    rngs: nnx.Rngs,
  ):
    _b.need_rngs(rngs, "GatedPool")
    self.count_include_pad = count_include_pad
    self._set_window(window_shape, strides, padding, dilation, ceil_mode, channel_axis)
    self.granularity = granularity
    self.num_features = num_features
    shape = _m.gate_shape(window_shape, granularity, num_features, "GatedPool")
    self.gate = nnx.Param(gate_init(rngs.params(), shape, jnp.float32))

  def __call__(self, inputs):
    return jaxpool.gated_pool(
      inputs, self.gate[...], count_include_pad=self.count_include_pad, **self._window()
    )


@_documented(jaxpool.tree_pool)
class TreePool(_b.Window):
  """Tree pooling, :func:`jaxpool.tree_pool` (Lee et al. 2016): a binary tree of learnt
  pooling filters (parameters ``leaves`` and ``gates``).
  """

  def __init__(
    self,
    window_shape: Shape,
    strides=None,
    padding="VALID",
    *,
    levels: int = 2,
    granularity: str = "layer",
    num_features: Optional[int] = None,
    leaf_init=None,
    gate_init=nnx.initializers.zeros,
    dilation=None,
    ceil_mode: bool = False,
    channel_axis: int = -1,
    rngs: nnx.Rngs,
  ):
    _b.need_rngs(rngs, "TreePool")
    self._set_window(window_shape, strides, padding, dilation, ceil_mode, channel_axis)
    self.levels = levels
    self.granularity = granularity
    self.num_features = num_features
    n = _m.tree_leaves(levels)
    filt = _m.gate_shape(window_shape, granularity, num_features, "TreePool")
    leaf_init = leaf_init or nnx.initializers.normal(1.0 / math.sqrt(math.prod(window_shape)))
    self.leaves = nnx.Param(leaf_init(rngs.params(), (n,) + filt, jnp.float32))
    self.gates = nnx.Param(gate_init(rngs.params(), (n - 1,) + filt, jnp.float32))

  def __call__(self, inputs):
    return jaxpool.tree_pool(inputs, self.leaves[...], self.gates[...], **self._window())


# --------------------------------------------------------------------------------
# Softmax-weighted pools
# --------------------------------------------------------------------------------


@_documented(jaxpool.soft_pool)
class SoftPool(MaxPool):
  r"""SoftPool, :func:`jaxpool.soft_pool` (Stergiou et al. 2021):
  :math:`\sum_w \mathrm{softmax}_w(x)_i\, x_i`. No parameters, no rngs.
  """

  def __call__(self, inputs):
    return jaxpool.soft_pool(inputs, **self._window())


@_documented(jaxpool.window_pool)
class WindowPool(_b.Window):
  """Any function of the window elements, :func:`jaxpool.window_pool`. No parameters.

  `fn` is kept as a static attribute: it must be hashable (functions are).

  Example:
    >>> WindowPool((3, 3), strides=2, padding=1, fn=jnp.median)(jnp.ones((1, 5, 5, 2))).shape
    (1, 3, 3, 2)
  """

  def __init__(
    self,
    window_shape: Shape,
    strides=None,
    padding="VALID",
    *,
    fn,
    pad_value=0,
    dilation=None,
    ceil_mode: bool = False,
    channel_axis: int = -1,
  ):
    if not callable(fn):
      raise TypeError(f"WindowPool: fn must be a callable (windows[, mask]) -> values, got {fn!r}.")
    self._set_window(window_shape, strides, padding, dilation, ceil_mode, channel_axis)
    self.fn = fn
    self.pad_value = pad_value

  def __call__(self, inputs):
    return jaxpool.window_pool(self.fn, inputs, pad_value=self.pad_value, **self._window())


@_documented(None)
class LIPLogits(nnx.Module):
  r"""The logit network of :class:`LIPPool` (Gao et al. 2019, simplified LIP).

  :math:`\ell = \text{coeff} \cdot \sigma(\mathrm{IN}(\mathrm{conv}(x)))`: a bias-free
  ``kernel_size``-wide 'SAME' ``nnx.Conv`` with C output channels (``conv``),
  instance normalisation with a learnt scale and bias (``norm``: an
  ``nnx.GroupNorm`` with one group per channel, computed by
  ``modules.instance_norm``'s faster formula) and a scaled sigmoid, so the logits lie
  in (0, coeff). The experiments' MNIST models pass ``experiments/fast_conv.py``'s
  ``conv_general_dilated`` (see the benchmarks' training table). Runs channels-last;
  needs one leading batch dim. Output: the inputs' shape.
  """

  def __init__(
    self,
    num_features: int,
    num_spatial_dims: int,
    *,
    kernel_size: int = 3,
    coeff: float = 12.0,
    channel_axis: int = -1,
    conv_general_dilated: Callable[..., jax.Array] = lax.conv_general_dilated,
    rngs: nnx.Rngs,
  ):
    _m.check_num_features("LIPPool", num_features)
    self.coeff = coeff
    self.channel_axis = channel_axis
    self.conv = nnx.Conv(
      num_features,
      num_features,
      (kernel_size,) * num_spatial_dims,
      padding="SAME",
      use_bias=False,
      conv_general_dilated=conv_general_dilated,
      rngs=rngs,
    )
    self.norm = nnx.GroupNorm(num_features, num_groups=num_features, rngs=rngs)

  def __call__(self, inputs):
    h = _m.channels_last(inputs, self.channel_axis)
    h = self.conv(h)
    # self.norm's parameters and values, by the faster formula (docstring).
    assert self.norm.scale is not None and self.norm.bias is not None  # GroupNorm's defaults
    h = _m.instance_norm(h, self.norm.scale[...], self.norm.bias[...], self.norm.epsilon)
    return _m.channels_back(self.coeff * jax.nn.sigmoid(h), self.channel_axis)


@_documented(jaxpool.lip_pool)
class LIPPool(_b.Window):
  r"""Local importance-based pooling, :func:`jaxpool.lip_pool` (Gao et al. 2019):
  :math:`\sum_w x\, e^{\ell} / \sum_w e^{\ell}` with logits :math:`\ell` from the
  small learnt network :class:`LIPLogits` (attribute ``logits``).
  """

  def __init__(
    self,
    window_shape: Shape,
    strides=None,
    padding="VALID",
    *,
    num_features: int,
    kernel_size: int = 3,
    coeff: float = 12.0,
    dilation=None,
    ceil_mode: bool = False,
    channel_axis: int = -1,
    conv_general_dilated: Callable[..., jax.Array] = lax.conv_general_dilated,
    rngs: nnx.Rngs,
  ):
    _b.need_rngs(rngs, "LIPPool")
    self._set_window(window_shape, strides, padding, dilation, ceil_mode, channel_axis)
    self.kernel_size = kernel_size
    self.coeff = coeff
    self.logits = LIPLogits(
      num_features,
      len(self.window_shape),
      kernel_size=kernel_size,
      coeff=coeff,
      channel_axis=channel_axis,
      conv_general_dilated=conv_general_dilated,
      rngs=rngs,
    )

  def __call__(self, inputs):
    return jaxpool.lip_pool(inputs, self.logits(inputs), **self._window())


# --------------------------------------------------------------------------------
# Adaptive, global and pyramid pools
# --------------------------------------------------------------------------------


@_documented(jaxpool.adaptive_avg_pool)
class AdaptiveAvgPool(nnx.Module):
  """Adaptive average pooling, :func:`jaxpool.adaptive_avg_pool` (PyTorch's windows)."""

  def __init__(self, output_size, *, channel_axis: int = -1):
    self.output_size = _b.freeze(output_size)
    self.channel_axis = channel_axis

  def __call__(self, inputs):
    return jaxpool.adaptive_avg_pool(inputs, self.output_size, channel_axis=self.channel_axis)


@_documented(jaxpool.adaptive_max_pool)
class AdaptiveMaxPool(AdaptiveAvgPool):
  """Adaptive max pooling, :func:`jaxpool.adaptive_max_pool` (PyTorch's windows)."""

  def __init__(self, output_size, *, return_indices: bool = False, channel_axis: int = -1):
    super().__init__(output_size, channel_axis=channel_axis)
    self.return_indices = return_indices

  def __call__(self, inputs):
    return jaxpool.adaptive_max_pool(
      inputs, self.output_size, return_indices=self.return_indices, channel_axis=self.channel_axis
    )


@_documented(jaxpool.global_avg_pool)
class GlobalAvgPool(nnx.Module):
  """Mean over all spatial dims, :func:`jaxpool.global_avg_pool`."""

  def __init__(
    self, *, keepdims: bool = False, num_spatial_dims: Optional[int] = None, channel_axis: int = -1
  ):
    self.keepdims = keepdims
    self.num_spatial_dims = num_spatial_dims
    self.channel_axis = channel_axis

  def _options(self) -> dict[str, Any]:
    return _m.options(self, ("keepdims", "num_spatial_dims", "channel_axis"))

  def __call__(self, inputs):
    return jaxpool.global_avg_pool(inputs, **self._options())


@_documented(jaxpool.global_max_pool)
class GlobalMaxPool(GlobalAvgPool):
  """Max over all spatial dims, :func:`jaxpool.global_max_pool`."""

  def __call__(self, inputs):
    return jaxpool.global_max_pool(inputs, **self._options())


@_documented(jaxpool.global_lp_pool)
class GlobalLpPool(GlobalAvgPool):
  """Lp norm over all spatial dims, :func:`jaxpool.global_lp_pool`."""

  def __init__(
    self,
    *,
    p: float = 2.0,
    keepdims: bool = False,
    num_spatial_dims: Optional[int] = None,
    channel_axis: int = -1,
  ):
    super().__init__(
      keepdims=keepdims, num_spatial_dims=num_spatial_dims, channel_axis=channel_axis
    )
    self.p = p

  def __call__(self, inputs):
    return jaxpool.global_lp_pool(inputs, self.p, **self._options())


@_documented(jaxpool.spatial_pyramid_pool)
class SpatialPyramidPool(nnx.Module):
  """Spatial pyramid pooling, :func:`jaxpool.spatial_pyramid_pool` (He et al. 2014)."""

  def __init__(self, levels=(1, 2, 4), *, mode: str = "max", channel_axis: int = -1):
    self.levels = _b.freeze(levels)
    self.mode = mode
    self.channel_axis = channel_axis

  def __call__(self, inputs):
    return jaxpool.spatial_pyramid_pool(
      inputs, self.levels, mode=self.mode, channel_axis=self.channel_axis
    )


# --------------------------------------------------------------------------------
# Max pooling with indices, unpooling, anti-aliased pooling
# --------------------------------------------------------------------------------


@_documented(jaxpool.max_pool_with_argmax)
class MaxPoolWithArgmax(MaxPool):
  """Max pooling that also returns the indices, :func:`jaxpool.max_pool_with_argmax`:
  ``(values, indices)`` (PyTorch's ``return_indices``).
  """

  def __call__(self, inputs):
    return jaxpool.max_pool_with_argmax(inputs, **self._window())


@_documented(jaxpool.max_unpool)
class MaxUnpool(nnx.Module):
  """Max unpooling, :func:`jaxpool.max_unpool`: scatters `values` to `indices`. The
  call's ``output_shape`` takes precedence over the constructor's (None: give it at
  the call).
  """

  def __init__(self, output_shape=None, *, channel_axis: int = -1):
    self.output_shape = _b.freeze(output_shape)
    self.channel_axis = channel_axis

  def __call__(self, values, indices, output_shape=None):
    output_shape = self.output_shape if output_shape is None else output_shape
    if output_shape is None:
      raise ValueError(
        "MaxUnpool: output_shape is None; give it to the constructor or to the call."
      )
    return jaxpool.max_unpool(values, indices, output_shape, channel_axis=self.channel_axis)


@_documented(jaxpool.blur_pool)
class BlurPool(nnx.Module):
  """Anti-aliased downsampling, :func:`jaxpool.blur_pool` (Zhang 2019)."""

  def __init__(
    self,
    strides,
    *,
    filter_size: int = 3,
    pool: str = "max",
    window_shape=None,
    padding: str = "reflect",
    channel_axis: int = -1,
  ):
    self.strides = _b.freeze(strides)
    self.filter_size = filter_size
    self.pool = pool
    self.window_shape = _b.freeze(window_shape)
    self.padding = padding
    self.channel_axis = channel_axis

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
