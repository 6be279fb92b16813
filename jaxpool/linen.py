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
import math
from typing import Any
from typing import Callable
from typing import Optional
from typing import Sequence

import jax
import jax.numpy as jnp

import jaxpool
from jaxpool._src import modules as _m
from jaxpool._src.modules import RNG_STREAM

with _m.flax_required("jaxpool.linen"):
  import flax.linen as nn

Shape = Sequence[int]
Initializer = Callable[..., Any]


# --------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------


class _WindowPool(nn.Module):
  """Attributes shared by every window pool (see :func:`jaxpool.max_pool`).

  Attributes:
    window_shape: window size per spatial dim, e.g. ``(2, 2)``.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int, a sequence of ints or of ``(low, high)``.
    dilation: window dilation per spatial dim (PyTorch's ``dilation``).
    ceil_mode: PyTorch's ``ceil_mode``.
    channel_axis: -1 (channels last) or 1 (channels first).
  """

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


class MaxPool(_WindowPool):
  """Max pooling, :func:`jaxpool.max_pool` (largest element of every window).

  No parameters. The window attributes, shared by every window pool:

  Attributes:
    window_shape: window size per spatial dim, e.g. ``(2, 2)``.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int, a sequence of ints or of ``(low, high)``.
    dilation: window dilation per spatial dim (PyTorch's ``dilation``).
    ceil_mode: PyTorch's ``ceil_mode``.
    channel_axis: -1 (channels last) or 1 (channels first).

  Example:
    >>> MaxPool((2, 2), strides=(2, 2)).apply({}, jnp.ones((1, 4, 4, 1))).shape
    (1, 2, 2, 1)
  """

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.max_pool(inputs, **self._window())


class MinPool(_WindowPool):
  """Min pooling, :func:`jaxpool.min_pool`. Attributes as :class:`MaxPool`."""

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.min_pool(inputs, **self._window())


class SumPool(_WindowPool):
  """Sum pooling, :func:`jaxpool.sum_pool`. Attributes as :class:`MaxPool`."""

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.sum_pool(inputs, **self._window())


class AvgPool(_WindowPool):
  """Average pooling, :func:`jaxpool.avg_pool`.

  Attributes:
    count_include_pad: divide by the window size including the padding (default,
      as Flax and PyTorch) or only by the elements inside the input.
    divisor_override: a constant divisor (PyTorch).
    window_shape, strides, padding, dilation, ceil_mode, channel_axis: as :class:`MaxPool`.
  """

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


class LpPool(_WindowPool):
  r"""Power-average pooling, :func:`jaxpool.lp_pool`: :math:`(\sum_w |x|^p)^{1/p}`.

  Attributes:
    p: the exponent (a float, ``inf`` for the max of ``|x|``); with
      ``learn_p=True`` the initial value of the learnt exponent.
    mean: divide the sum by the window count (the power mean).
    learn_p: learn ``p`` as the parameter ``"raw_p"`` with
      :math:`p = 1 + \mathrm{softplus}(raw)`, which keeps ``p > 1`` (initialised so
      that ``p`` starts at the attribute ``p``, which must then be finite and > 1).
    window_shape, strides, padding, dilation, ceil_mode, channel_axis: as :class:`MaxPool`.

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


class L2Pool(_WindowPool):
  r"""L2 pooling, :func:`jaxpool.l2_pool`: :math:`\sqrt{\sum_w x^2}`.

  Attributes: ``mean`` (root mean square instead) and those of :class:`MaxPool`.
  """

  _: dataclasses.KW_ONLY
  mean: bool = False

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.l2_pool(inputs, mean=self.mean, **self._window())


class GeMPool(nn.Module):
  r"""Generalized-mean global pooling, :func:`jaxpool.gem_pool` (Radenović et al.
  2018): :math:`(\frac{1}{|S|}\sum_{s} \max(x_s, \epsilon)^p)^{1/p}` over all
  spatial positions.

  Attributes:
    p: the initial exponent (3, as the paper), or the fixed one if not learnt.
    learn_p: learn ``p`` (the parameter ``"p"``, a scalar stored as is, as in the
      paper's code).
    eps: the clamp of the inputs.
    keepdims: keep the spatial dims with size 1.
    num_spatial_dims: number of spatial dims (default: all but one batch dim and
      the channel dim).
    channel_axis: -1 (channels last) or 1 (channels first).
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


class StochasticPool(_WindowPool):
  r"""Stochastic pooling, :func:`jaxpool.stochastic_pool` (Zeiler & Fergus 2013).

  Training (``deterministic=False``): every window outputs one of its elements,
  drawn with probability :math:`a_i / \sum_w a`, :math:`a = \max(x, 0)`; the key
  comes from the rng stream ``"pooling"``. Evaluation (``deterministic=True``): the
  probabilistic weighting :math:`\sum_w a^2 / \sum_w a`, no key.

  Attributes:
    deterministic: the mode, or None to take it from the call (exactly one of
      the attribute and the call argument must be given, as ``nn.Dropout``).
    window_shape, strides, padding, dilation, ceil_mode, channel_axis: as :class:`MaxPool`.

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


class FractionalMaxPool(nn.Module):
  """Fractional max pooling, :func:`jaxpool.fractional_max_pool` (Graham 2014).

  Training: the pseudo-random window sequence is drawn from a fresh key of the rng
  stream ``"pooling"`` at every call. Evaluation (``deterministic=True``): the
  sequence of the fixed key ``jax.random.key(eval_seed)``, so the output is the
  same at every call (PyTorch has no eval mode and keeps drawing).

  Attributes:
    window_shape: window size per spatial dim.
    output_size: output spatial size (or give ``output_ratio``).
    output_ratio: output size as a fraction of the input size, per dim.
    overlapping: overlapping windows (Graham's overlapping variant).
    return_indices: also return the argmax indices (as PyTorch).
    channel_axis: -1 (channels last) or 1 (channels first).
    deterministic: as :class:`StochasticPool`.
    eval_seed: the seed of the evaluation key.
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


class MixedPool(_WindowPool):
  r"""Mixed max-average pooling, :func:`jaxpool.mixed_pool`:
  :math:`\alpha \max_w x + (1 - \alpha)\,\mathrm{avg}_w x`.

  Learnt (Lee, Gallagher & Tu 2016, default): :math:`\alpha = \sigma(\ell)` with the
  parameter ``"alpha_logit"`` :math:`\ell`, initialised so that
  :math:`\alpha` = ``alpha_init`` (0.5). Its shape follows ``granularity``:

  * "layer": one scalar;
  * "channel": ``(C,)``, one per channel;
  * "region": one per output location, shared by the channels:
    ``(*out_spatial, 1)`` channels-last, ``out_spatial`` channels-first.

  Random (``stochastic=True``, Yu et al. 2014, no parameters): in training
  :math:`\alpha` is drawn in {0, 1} with probability 1/2, once per call (one draw
  for the whole layer and batch), from the rng stream ``"pooling"``. Test-time
  rule (``deterministic=True``): :math:`\alpha = 1/2`, the expectation of the draw,
  so evaluation averages the two pools.

  Attributes:
    granularity: "layer", "channel" or "region" (learnt mode).
    alpha_init: the initial alpha, in (0, 1).
    count_include_pad: whether the average counts padding (as AvgPool).
    stochastic: Yu et al.'s random alpha instead of a learnt one.
    deterministic: (stochastic only) as :class:`StochasticPool`.
    region_shape: (region only, optional) the output spatial shape, checked
      against the input (NNX needs it; Linen infers it).
    window_shape, strides, padding, dilation, ceil_mode, channel_axis: as :class:`MaxPool`.
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


class GatedPool(_WindowPool):
  r"""Gated max-average pooling, :func:`jaxpool.gated_pool` (Lee et al. 2016):
  :math:`g = \sigma(\sum_w \omega \odot x)`, output :math:`g \max + (1-g)\,\mathrm{avg}`.

  The gate mask ``"gate"`` has shape ``window_shape + (1,)`` ("layer": shared by
  the channels) or ``window_shape + (C,)`` ("channel"). It starts at
  ``gate_init`` (zeros: :math:`g = 1/2`, the even mix, as MixedPool's start).

  Attributes:
    granularity: "layer" or "channel".
    gate_init: initializer of the gate mask.
    count_include_pad: whether the average counts padding (as AvgPool).
    window_shape, strides, padding, dilation, ceil_mode, channel_axis: as :class:`MaxPool`.
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


class TreePool(_WindowPool):
  r"""Tree pooling, :func:`jaxpool.tree_pool` (Lee et al. 2016).

  A complete binary tree of ``levels`` levels: ``2**(levels-1)`` leaves, each a
  learnt pooling filter :math:`v_m \cdot x_w` (parameter ``"leaves"``,
  ``(n_leaves, *window_shape, 1 or C)``), and ``n_leaves - 1`` internal nodes that
  mix their children with :math:`\sigma(\omega_n \cdot x_w)` (parameter
  ``"gates"``, ``(n_leaves - 1, *window_shape, 1 or C)``, breadth-first).

  Initialisation: leaves ``leaf_init`` (normal, std ``1/sqrt(window size)``, so
  that the leaves differ and the gates get a gradient), gates ``gate_init``
  (zeros: every node starts as the even mix of its children).

  Attributes:
    levels: tree depth (>= 2; 2 = two leaves and one gate, Lee et al.'s choice).
    granularity: "layer" (filters shared by the channels) or "channel".
    leaf_init, gate_init: initializers.
    window_shape, strides, padding, dilation, ceil_mode, channel_axis: as :class:`MaxPool`.
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


class SoftPool(_WindowPool):
  r"""SoftPool, :func:`jaxpool.soft_pool` (Stergiou et al. 2021):
  :math:`\sum_w \mathrm{softmax}_w(x)_i\, x_i`. Attributes as :class:`MaxPool`."""

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.soft_pool(inputs, **self._window())


class WindowPool(_WindowPool):
  """Any function of the window elements, :func:`jaxpool.window_pool`.

  Attributes:
    fn: ``(windows[, mask]) -> one value per window`` (keyword, required): gets the
      window elements on a trailing axis of size ``prod(window_shape)`` (see
      :func:`jaxpool.window_pool`; called with ``axis=-1`` / ``mask=`` where its
      signature names them).
    pad_value: the value of padded window elements.
    window_shape, strides, padding, dilation, ceil_mode, channel_axis: as :class:`MaxPool`.

  No parameters of its own; `fn` may close over arrays (a learnt temperature is
  a parameter of the module that calls it).

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


class LIPLogits(nn.Module):
  r"""The logit network of :class:`LIPPool` (Gao et al. 2019, simplified LIP).

  :math:`\ell = \text{coeff} \cdot \sigma(\mathrm{IN}(\mathrm{conv}(x)))`: a
  bias-free ``kernel_size``-wide 'SAME' ``nn.Conv`` with C output channels,
  instance normalisation with a learnt scale and bias (as ``nn.GroupNorm`` with one
  group per channel; submodules ``conv`` and ``norm``) and a scaled sigmoid, so the
  logits lie in (0, coeff). ``grad``, ``vjp`` and ``jax.jvp`` all work.

  The convolution is flax's: ``conv_general_dilated`` (default
  ``lax.conv_general_dilated``) is handed to ``nn.Conv``, so a drop-in with other
  derivative rules may replace it (see :class:`jaxpool.nnx.LIPLogits`: the
  experiments pass ``experiments/fast_conv.py``'s, much faster in a ``lax.scan``
  training loop on CPU). The norm holds ``nn.GroupNorm``'s parameters and values,
  computed as ``x * a + b`` with per-(image, channel) ``a, b``
  (``modules.instance_norm``), faster than flax's grouped reshape. Runs
  channels-last (inputs are moved there and back when ``channel_axis=1``); needs
  one leading batch dim. Output: inputs' shape.
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


class LIPPool(_WindowPool):
  r"""Local importance-based pooling, :func:`jaxpool.lip_pool` (Gao et al. 2019):
  :math:`\sum_w x\, e^{\ell} / \sum_w e^{\ell}` with logits :math:`\ell` from a
  small learnt network of the inputs, :class:`LIPLogits` (submodule ``"logits"``:
  the paper's simplified LIP module, conv + instance norm + ``coeff * sigmoid``).

  Attributes:
    kernel_size: width of the logit convolution in every spatial dim.
    coeff: the logits' upper bound (12 as the paper's code).
    conv_general_dilated: the logit convolution's ``lax.conv_general_dilated``
      (see :class:`LIPLogits`).
    window_shape, strides, padding, dilation, ceil_mode, channel_axis: as :class:`MaxPool`.
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


class AdaptiveAvgPool(nn.Module):
  """Adaptive average pooling, :func:`jaxpool.adaptive_avg_pool` (PyTorch's windows).

  Attributes:
    output_size: the output spatial size (an int for every dim, or a tuple; None
      in it keeps that dim's size).
    channel_axis: -1 (channels last) or 1 (channels first).
  """

  output_size: Any
  _: dataclasses.KW_ONLY
  channel_axis: int = -1

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.adaptive_avg_pool(inputs, self.output_size, channel_axis=self.channel_axis)


class AdaptiveMaxPool(AdaptiveAvgPool):
  """Adaptive max pooling, :func:`jaxpool.adaptive_max_pool`.

  Attributes: ``return_indices`` (also return the argmax indices, as PyTorch) and
  those of :class:`AdaptiveAvgPool`.
  """

  _: dataclasses.KW_ONLY
  return_indices: bool = False

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.adaptive_max_pool(
      inputs, self.output_size, return_indices=self.return_indices, channel_axis=self.channel_axis
    )


class GlobalAvgPool(nn.Module):
  """Mean over all spatial dims, :func:`jaxpool.global_avg_pool`.

  Attributes:
    keepdims: keep the spatial dims with size 1.
    num_spatial_dims: number of spatial dims (default: all dims but one batch dim
      and the channel dim).
    channel_axis: -1 (channels last) or 1 (channels first).
  """

  _: dataclasses.KW_ONLY
  keepdims: bool = False
  num_spatial_dims: Optional[int] = None
  channel_axis: int = -1

  def _options(self) -> dict[str, Any]:
    return _m.options(self, ("keepdims", "num_spatial_dims", "channel_axis"))

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.global_avg_pool(inputs, **self._options())


class GlobalMaxPool(GlobalAvgPool):
  """Max over all spatial dims, :func:`jaxpool.global_max_pool`. As GlobalAvgPool."""

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.global_max_pool(inputs, **self._options())


class GlobalLpPool(GlobalAvgPool):
  """Lp norm over all spatial dims, :func:`jaxpool.global_lp_pool`.

  Attributes: ``p`` (default 2) and those of :class:`GlobalAvgPool`.
  """

  _: dataclasses.KW_ONLY
  p: float = 2.0

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.global_lp_pool(inputs, self.p, **self._options())


class SpatialPyramidPool(nn.Module):
  """Spatial pyramid pooling, :func:`jaxpool.spatial_pyramid_pool` (He et al. 2014).

  Attributes:
    levels: output sizes of the adaptive pools, e.g. ``(1, 2, 4)``.
    mode: "max" or "avg".
    channel_axis: -1 (channels last) or 1 (channels first).
  """

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


class MaxPoolWithArgmax(_WindowPool):
  """Max pooling that also returns the indices, :func:`jaxpool.max_pool_with_argmax`.

  Returns ``(values, indices)`` (PyTorch's ``return_indices``). Attributes as
  :class:`MaxPool`.
  """

  @nn.compact
  def __call__(self, inputs):
    return jaxpool.max_pool_with_argmax(inputs, **self._window())


class MaxUnpool(nn.Module):
  """Max unpooling, :func:`jaxpool.max_unpool`: scatters `values` to `indices`.

  Attributes:
    output_shape: spatial shape of the result, or None to give it at the call.
    channel_axis: -1 (channels last) or 1 (channels first).
  """

  output_shape: Optional[Shape] = None
  _: dataclasses.KW_ONLY
  channel_axis: int = -1

  @nn.compact
  def __call__(self, values, indices, output_shape: Optional[Shape] = None):
    output_shape = nn.merge_param("output_shape", self.output_shape, output_shape)
    return jaxpool.max_unpool(values, indices, output_shape, channel_axis=self.channel_axis)


class BlurPool(nn.Module):
  """Anti-aliased downsampling, :func:`jaxpool.blur_pool` (Zhang 2019).

  Attributes:
    strides: the downsampling factor per spatial dim.
    filter_size: width of the binomial low-pass filter.
    pool: "max", "avg" or "none": the dense pool before the blur.
    window_shape: the dense pool's window (default 2 per dim, Zhang's reference).
    padding: the blur's padding: "reflect" (default), "replicate" or "zero".
    channel_axis: -1 (channels last) or 1 (channels first).
  """

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
