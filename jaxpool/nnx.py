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

import math
from typing import Any
from typing import Callable
from typing import Optional
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

import jaxpool
from jaxpool._src import modules as _m
from jaxpool._src.modules import RNG_STREAM

with _m.flax_required("jaxpool.nnx"):
  from flax import nnx

Shape = Sequence[int]


def _freeze(value: Any) -> Any:
  """Lists (e.g. padding pairs from a config) as nested tuples: static and hashable."""
  if isinstance(value, (list, tuple)):
    return tuple(_freeze(v) for v in value)
  return value


def _fork_stream(rngs, module: str):
  """The module's own stream, as `nnx.Dropout` keeps it (None: no stream yet)."""
  if isinstance(rngs, nnx.Rngs):
    return rngs[RNG_STREAM].fork()
  if isinstance(rngs, nnx.RngStream):
    return rngs.fork()
  if rngs is None:
    return nnx.data(None)
  raise TypeError(
    f"{module}: rngs must be an nnx.Rngs, an nnx.RngStream or None, got {type(rngs).__name__}."
  )


class _Random(nnx.Module):
  """Mixin of the random modules: the ``deterministic`` flag and the key stream."""

  deterministic: Optional[bool]
  rngs: Any

  def _resolve(self, deterministic: Optional[bool]) -> bool:
    if deterministic is not None:
      return bool(deterministic)
    if self.deterministic is None:
      raise ValueError(
        f"{type(self).__name__}: deterministic is None; call model.train() / "
        f"model.eval(), set deterministic= in the constructor, or pass "
        f"deterministic= to the call."
      )
    return bool(self.deterministic)

  def _key(self, rngs) -> jax.Array:
    """A key from the call's `rngs` (Rngs, RngStream or key), else the module's."""
    rngs = self.rngs if rngs is None else rngs
    name = type(self).__name__
    if rngs is None:
      raise ValueError(
        f"{name} needs random keys when deterministic=False: build it with "
        f"rngs=nnx.Rngs(...) (stream '{RNG_STREAM}' or the default stream), pass "
        f"rngs= to the call, or switch it to evaluation with model.eval()."
      )
    if isinstance(rngs, nnx.Rngs):
      return rngs[RNG_STREAM]()
    if isinstance(rngs, nnx.RngStream):
      return rngs()
    if isinstance(rngs, jax.Array):
      return rngs
    raise TypeError(
      f"{name}: rngs must be an nnx.Rngs, an nnx.RngStream or a key, got {type(rngs).__name__}."
    )


class _WindowPool(nnx.Module):
  """Attributes shared by every window pool (see :func:`jaxpool.max_pool`).

  Args:
    window_shape: window size per spatial dim, e.g. ``(2, 2)``.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int, a sequence of ints or of ``(low, high)``.
    dilation: window dilation per spatial dim (PyTorch's ``dilation``).
    ceil_mode: PyTorch's ``ceil_mode``.
    channel_axis: -1 (channels last) or 1 (channels first).
  """

  def _set_window(self, window_shape, strides, padding, dilation, ceil_mode, channel_axis):
    self.window_shape = _freeze(window_shape)
    self.strides = _freeze(strides)
    self.padding = _freeze(padding)
    self.dilation = _freeze(dilation)
    self.ceil_mode = ceil_mode
    self.channel_axis = channel_axis

  def _window(self) -> dict[str, Any]:
    """Arguments of the function after `inputs` and the op-specific positionals."""
    return _m.options(self, _m.WINDOW_OPTIONS)


# --------------------------------------------------------------------------------
# Classic window reductions
# --------------------------------------------------------------------------------


class MaxPool(_WindowPool):
  """Max pooling, :func:`jaxpool.max_pool`. No parameters, no rngs.

  The window arguments, shared by every window pool:

  Args:
    window_shape: window size per spatial dim, e.g. ``(2, 2)``.
    strides: stride per spatial dim, an int, or None for 1 (as Flax).
    padding: "VALID", "SAME", an int, a sequence of ints or of ``(low, high)``.
    dilation: window dilation per spatial dim (PyTorch's ``dilation``).
    ceil_mode: PyTorch's ``ceil_mode``.
    channel_axis: -1 (channels last) or 1 (channels first).

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


class MinPool(MaxPool):
  """Min pooling, :func:`jaxpool.min_pool`. Arguments as :class:`MaxPool`."""

  def __call__(self, inputs):
    return jaxpool.min_pool(inputs, **self._window())


class SumPool(MaxPool):
  """Sum pooling, :func:`jaxpool.sum_pool`. Arguments as :class:`MaxPool`."""

  def __call__(self, inputs):
    return jaxpool.sum_pool(inputs, **self._window())


class AvgPool(_WindowPool):
  """Average pooling, :func:`jaxpool.avg_pool`.

  Args:
    count_include_pad: divide by the window size including the padding (default,
      as Flax and PyTorch) or only by the elements inside the input.
    divisor_override: a constant divisor (PyTorch).
    window_shape, strides, padding, dilation, ceil_mode, channel_axis: as :class:`MaxPool`.
  """

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


def _need_rngs(rngs, module: str):
  if not isinstance(rngs, nnx.Rngs):
    raise TypeError(
      f"{module}: rngs must be an nnx.Rngs (it initialises the "
      f"parameters), got {type(rngs).__name__}."
    )


def _param_key(rngs):
  """A key of the "params" stream, or None (constant initialisers ignore it)."""
  return rngs.params() if isinstance(rngs, nnx.Rngs) else None


# --------------------------------------------------------------------------------
# Power means
# --------------------------------------------------------------------------------


class LpPool(_WindowPool):
  r"""Power-average pooling, :func:`jaxpool.lp_pool`: :math:`(\sum_w |x|^p)^{1/p}`.

  Args:
    p: the exponent (a float, ``inf`` for the max of ``|x|``); with
      ``learn_p=True`` the initial value of the learnt exponent.
    mean: divide the sum by the window count (the power mean).
    learn_p: learn ``p`` as the parameter ``raw_p`` with
      :math:`p = 1 + \mathrm{softplus}(raw)`, which keeps ``p > 1``; ``p`` must then
      be finite and > 1. ``raw_p`` is None otherwise.
    rngs: accepted for uniformity (the initialisation is constant).
    window_shape, strides, padding, dilation, ceil_mode, channel_axis: as :class:`MaxPool`.

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


class L2Pool(_WindowPool):
  r"""L2 pooling, :func:`jaxpool.l2_pool`: :math:`\sqrt{\sum_w x^2}`.

  Args: ``mean`` (root mean square instead) and those of :class:`MaxPool`.
  """

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


class GeMPool(nnx.Module):
  r"""Generalized-mean global pooling, :func:`jaxpool.gem_pool` (Radenović et al.
  2018): :math:`(\frac{1}{|S|}\sum_{s} \max(x_s, \epsilon)^p)^{1/p}` over all
  spatial positions.

  Args:
    p: the initial exponent (3, as the paper), or the fixed one if not learnt.
    learn_p: learn ``p`` (the scalar parameter ``p``, stored as is, as the
      paper's code); ``self.p`` is a plain float otherwise.
    eps: the clamp of the inputs.
    keepdims: keep the spatial dims with size 1.
    num_spatial_dims: number of spatial dims (default: all but one batch dim and
      the channel dim).
    channel_axis: -1 (channels last) or 1 (channels first).
    rngs: accepted for uniformity (the initialisation is constant).
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


class StochasticPool(_WindowPool, _Random):
  r"""Stochastic pooling, :func:`jaxpool.stochastic_pool` (Zeiler & Fergus 2013).

  Training (``deterministic=False``, ``model.train()``): every window outputs one of
  its elements, drawn with probability :math:`a_i / \sum_w a`, :math:`a = \max(x,
  0)`, with a fresh key of the module's ``"pooling"`` stream at every call.
  Evaluation (``deterministic=True``, ``model.eval()``): the probabilistic
  weighting :math:`\sum_w a^2 / \sum_w a`, no key.

  Args:
    deterministic: the initial mode (False, as ``nnx.Dropout``).
    rngs: an ``nnx.Rngs`` (its ``"pooling"`` stream, or its default stream, is
      forked) or an ``nnx.RngStream``; may be None if every training call passes
      ``rngs=``.
    window_shape, strides, padding, dilation, ceil_mode, channel_axis: as :class:`MaxPool`.

  Call: ``pool(x, deterministic=None, rngs=None)``; the call's arguments take
  precedence over the attributes.

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
    self.rngs = _fork_stream(rngs, "StochasticPool")

  def __call__(self, inputs, *, deterministic: Optional[bool] = None, rngs=None):
    if self._resolve(deterministic):
      return jaxpool.stochastic_pool(inputs, deterministic=True, **self._window())
    key = self._key(rngs)
    return jaxpool.stochastic_pool(inputs, key=key, deterministic=False, **self._window())


class FractionalMaxPool(_Random):
  """Fractional max pooling, :func:`jaxpool.fractional_max_pool` (Graham 2014).

  Training: the pseudo-random window sequence is drawn from a fresh key of the
  module's ``"pooling"`` stream at every call. Evaluation (``model.eval()``): the
  sequence of the fixed key ``jax.random.key(eval_seed)``, so the output is the
  same at every call (PyTorch has no eval mode and keeps drawing).

  Args:
    window_shape: window size per spatial dim.
    output_size: output spatial size (or give ``output_ratio``).
    output_ratio: output size as a fraction of the input size, per dim.
    overlapping: overlapping windows (Graham's overlapping variant).
    return_indices: also return the argmax indices (as PyTorch).
    channel_axis: -1 (channels last) or 1 (channels first).
    deterministic, rngs: as :class:`StochasticPool`.
    eval_seed: the seed of the evaluation key.
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
    self.window_shape = _freeze(window_shape)
    self.output_size = _freeze(output_size)
    self.output_ratio = _freeze(output_ratio)
    self.overlapping = overlapping
    self.return_indices = return_indices
    self.channel_axis = channel_axis
    self.deterministic = deterministic
    self.eval_seed = eval_seed
    self.rngs = _fork_stream(rngs, "FractionalMaxPool")

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


class MixedPool(_WindowPool, _Random):
  r"""Mixed max-average pooling, :func:`jaxpool.mixed_pool`:
  :math:`\alpha \max_w x + (1 - \alpha)\,\mathrm{avg}_w x`.

  Learnt (Lee, Gallagher & Tu 2016, default): :math:`\alpha = \sigma(\ell)` with the
  parameter ``alpha_logit`` :math:`\ell`, initialised so that :math:`\alpha` =
  ``alpha_init`` (0.5). Its shape follows ``granularity``:

  * "layer": one scalar;
  * "channel": ``(num_features,)``;
  * "region": one per output location, shared by the channels:
    ``(*region_shape, 1)`` channels-last, ``region_shape`` channels-first
    (``region_shape`` = the output spatial shape, required: NNX builds eagerly).

  Random (``stochastic=True``, Yu et al. 2014, no parameters): in training
  :math:`\alpha` is drawn in {0, 1} with probability 1/2, once per call (one draw
  for the whole layer and batch), from the ``"pooling"`` stream. Test-time rule
  (``model.eval()``): :math:`\alpha = 1/2`, the expectation of the draw.

  Args:
    granularity, alpha_init: see above.
    count_include_pad: whether the average counts padding (as AvgPool).
    num_features: number of channels ("channel" granularity).
    region_shape: output spatial shape ("region" granularity).
    stochastic: Yu et al.'s random alpha instead of a learnt one.
    deterministic, rngs: as :class:`StochasticPool` (used when stochastic).
    window_shape, strides, padding, dilation, ceil_mode, channel_axis: as :class:`MaxPool`.
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
    self.region_shape = _freeze(region_shape)
    if stochastic:
      self.alpha_logit = None
      self.rngs = _fork_stream(rngs, "MixedPool")
      return
    self.rngs = nnx.data(None)
    _m.check_choice("MixedPool", "granularity", granularity, _m.MIXED_GRANULARITIES)
    if granularity == "channel":
      _m.check_num_features("MixedPool", num_features)
    if granularity == "region" and region_shape is None:
      raise ValueError(
        "MixedPool: granularity='region' needs region_shape (the output spatial shape), got None."
      )
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


class GatedPool(_WindowPool):
  r"""Gated max-average pooling, :func:`jaxpool.gated_pool` (Lee et al. 2016):
  :math:`g = \sigma(\sum_w \omega \odot x)`, output :math:`g \max + (1-g)\,\mathrm{avg}`.

  The gate mask ``gate`` has shape ``window_shape + (1,)`` ("layer": shared by the
  channels) or ``window_shape + (num_features,)`` ("channel"). It starts at
  ``gate_init`` (zeros: :math:`g = 1/2`, the even mix, as MixedPool's start).

  Args:
    granularity: "layer" or "channel".
    num_features: number of channels ("channel" granularity).
    gate_init: initializer ``(key, shape, dtype) -> array``.
    count_include_pad: whether the average counts padding (as AvgPool).
    rngs: an ``nnx.Rngs`` (its "params" stream initialises the gate).
    window_shape, strides, padding, dilation, ceil_mode, channel_axis: as :class:`MaxPool`.
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
    _need_rngs(rngs, "GatedPool")
    self.count_include_pad = count_include_pad
    self._set_window(window_shape, strides, padding, dilation, ceil_mode, channel_axis)
    self.granularity = granularity
    self.num_features = num_features
    if granularity == "channel":
      _m.check_num_features("GatedPool", num_features)
    shape = _m.gate_shape(window_shape, granularity, num_features, "GatedPool")
    self.gate = nnx.Param(gate_init(rngs.params(), shape, jnp.float32))

  def __call__(self, inputs):
    return jaxpool.gated_pool(
      inputs, self.gate[...], count_include_pad=self.count_include_pad, **self._window()
    )


class TreePool(_WindowPool):
  r"""Tree pooling, :func:`jaxpool.tree_pool` (Lee et al. 2016).

  A complete binary tree of ``levels`` levels: ``2**(levels-1)`` leaves, each a
  learnt pooling filter :math:`v_m \cdot x_w` (parameter ``leaves``,
  ``(n_leaves, *window_shape, 1 or C)``), and ``n_leaves - 1`` internal nodes that
  mix their children with :math:`\sigma(\omega_n \cdot x_w)` (parameter ``gates``,
  ``(n_leaves - 1, *window_shape, 1 or C)``, breadth-first).

  Initialisation: leaves ``leaf_init`` (normal, std ``1/sqrt(window size)``, so
  that the leaves differ and the gates get a gradient), gates ``gate_init``
  (zeros: every node starts as the even mix of its children).

  Args:
    levels: tree depth (>= 2; 2 = two leaves and one gate, Lee et al.'s choice).
    granularity: "layer" (filters shared by the channels) or "channel".
    num_features: number of channels ("channel" granularity).
    leaf_init, gate_init: initializers.
    rngs: an ``nnx.Rngs`` (its "params" stream initialises the filters).
    window_shape, strides, padding, dilation, ceil_mode, channel_axis: as :class:`MaxPool`.
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
    _need_rngs(rngs, "TreePool")
    self._set_window(window_shape, strides, padding, dilation, ceil_mode, channel_axis)
    self.levels = levels
    self.granularity = granularity
    self.num_features = num_features
    n = _m.tree_leaves(levels)
    if granularity == "channel":
      _m.check_num_features("TreePool", num_features)
    filt = _m.gate_shape(window_shape, granularity, num_features, "TreePool")
    leaf_init = leaf_init or nnx.initializers.normal(1.0 / math.sqrt(math.prod(window_shape)))
    self.leaves = nnx.Param(leaf_init(rngs.params(), (n,) + filt, jnp.float32))
    self.gates = nnx.Param(gate_init(rngs.params(), (n - 1,) + filt, jnp.float32))

  def __call__(self, inputs):
    return jaxpool.tree_pool(inputs, self.leaves[...], self.gates[...], **self._window())


# --------------------------------------------------------------------------------
# Softmax-weighted pools
# --------------------------------------------------------------------------------


class SoftPool(MaxPool):
  r"""SoftPool, :func:`jaxpool.soft_pool` (Stergiou et al. 2021):
  :math:`\sum_w \mathrm{softmax}_w(x)_i\, x_i`. Args as :class:`MaxPool`."""

  def __call__(self, inputs):
    return jaxpool.soft_pool(inputs, **self._window())


class WindowPool(_WindowPool):
  """Any function of the window elements, :func:`jaxpool.window_pool`. No parameters.

  Args:
    fn: ``(windows[, mask]) -> one value per window`` (keyword, required): gets the
      window elements on a trailing axis of size ``prod(window_shape)`` (see
      :func:`jaxpool.window_pool`; called with ``axis=-1`` / ``mask=`` where its
      signature names them). Kept as a static attribute: it must be hashable
      (functions are).
    pad_value: the value of padded window elements.
    window_shape, strides, padding, dilation, ceil_mode, channel_axis: as :class:`MaxPool`.

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


class LIPLogits(nnx.Module):
  r"""The logit network of :class:`LIPPool` (Gao et al. 2019, simplified LIP).

  :math:`\ell = \text{coeff} \cdot \sigma(\mathrm{IN}(\mathrm{conv}(x)))`: a bias-free
  ``kernel_size``-wide 'SAME' ``nnx.Conv`` with C output channels (``conv``),
  instance normalisation with a learnt scale and bias (``norm``: an
  ``nnx.GroupNorm`` with one group per channel) and a scaled sigmoid, so the logits
  lie in (0, coeff). ``grad``, ``vjp`` and ``jax.jvp`` all work.

  The convolution is flax's: ``conv_general_dilated`` (default
  ``lax.conv_general_dilated``) is handed to ``nnx.Conv``, so a drop-in with other
  derivative rules may replace it. The experiments' MNIST models pass
  ``experiments/fast_conv.py``'s, because XLA:CPU runs the default kernel gradient
  inside ``lax.scan`` so slowly that the seed CNN's LIP training step is over 10x
  slower (the benchmark's training table); the library keeps no convolution of its
  own. The norm holds ``nnx.GroupNorm``'s parameters and values, computed as
  ``x * a + b`` with per-(image, channel) ``a, b`` (``modules.instance_norm``): flax's
  grouped reshape makes that training step clearly slower (about 1.3x). Runs
  channels-last (inputs are moved there and back when ``channel_axis=1``); needs one
  leading batch dim. Output: the inputs' shape.
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


class LIPPool(_WindowPool):
  r"""Local importance-based pooling, :func:`jaxpool.lip_pool` (Gao et al. 2019):
  :math:`\sum_w x\, e^{\ell} / \sum_w e^{\ell}` with logits :math:`\ell` from the
  small learnt network :class:`LIPLogits` (attribute ``logits``: the paper's
  simplified LIP module, conv + instance norm + ``coeff * sigmoid``).

  Args:
    num_features: number of channels.
    kernel_size: width of the logit convolution in every spatial dim.
    coeff: the logits' upper bound (12 as the paper's code).
    conv_general_dilated: the logit convolution's ``lax.conv_general_dilated``
      (see :class:`LIPLogits`).
    rngs: an ``nnx.Rngs`` (initialises the logit network).
    window_shape, strides, padding, dilation, ceil_mode, channel_axis: as :class:`MaxPool`.
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
    _need_rngs(rngs, "LIPPool")
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


class AdaptiveAvgPool(nnx.Module):
  """Adaptive average pooling, :func:`jaxpool.adaptive_avg_pool` (PyTorch's windows).

  Args:
    output_size: the output spatial size (an int for every dim, or a tuple; None
      in it keeps that dim's size).
    channel_axis: -1 (channels last) or 1 (channels first).
  """

  def __init__(self, output_size, *, channel_axis: int = -1):
    self.output_size = _freeze(output_size)
    self.channel_axis = channel_axis

  def __call__(self, inputs):
    return jaxpool.adaptive_avg_pool(inputs, self.output_size, channel_axis=self.channel_axis)


class AdaptiveMaxPool(AdaptiveAvgPool):
  """Adaptive max pooling, :func:`jaxpool.adaptive_max_pool`.

  Args: ``return_indices`` (also return the argmax indices, as PyTorch) and those
  of :class:`AdaptiveAvgPool`.
  """

  def __init__(self, output_size, *, return_indices: bool = False, channel_axis: int = -1):
    super().__init__(output_size, channel_axis=channel_axis)
    self.return_indices = return_indices

  def __call__(self, inputs):
    return jaxpool.adaptive_max_pool(
      inputs, self.output_size, return_indices=self.return_indices, channel_axis=self.channel_axis
    )


class GlobalAvgPool(nnx.Module):
  """Mean over all spatial dims, :func:`jaxpool.global_avg_pool`.

  Args:
    keepdims: keep the spatial dims with size 1.
    num_spatial_dims: number of spatial dims (default: all dims but one batch dim
      and the channel dim).
    channel_axis: -1 (channels last) or 1 (channels first).
  """

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


class GlobalMaxPool(GlobalAvgPool):
  """Max over all spatial dims, :func:`jaxpool.global_max_pool`. As GlobalAvgPool."""

  def __call__(self, inputs):
    return jaxpool.global_max_pool(inputs, **self._options())


class GlobalLpPool(GlobalAvgPool):
  """Lp norm over all spatial dims, :func:`jaxpool.global_lp_pool`.

  Args: ``p`` (default 2) and those of :class:`GlobalAvgPool`.
  """

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


class SpatialPyramidPool(nnx.Module):
  """Spatial pyramid pooling, :func:`jaxpool.spatial_pyramid_pool` (He et al. 2014).

  Args:
    levels: output sizes of the adaptive pools, e.g. ``(1, 2, 4)``.
    mode: "max" or "avg".
    channel_axis: -1 (channels last) or 1 (channels first).
  """

  def __init__(self, levels=(1, 2, 4), *, mode: str = "max", channel_axis: int = -1):
    self.levels = _freeze(levels)
    self.mode = mode
    self.channel_axis = channel_axis

  def __call__(self, inputs):
    return jaxpool.spatial_pyramid_pool(
      inputs, self.levels, mode=self.mode, channel_axis=self.channel_axis
    )


# --------------------------------------------------------------------------------
# Max pooling with indices, unpooling, anti-aliased pooling
# --------------------------------------------------------------------------------


class MaxPoolWithArgmax(MaxPool):
  """Max pooling that also returns the indices, :func:`jaxpool.max_pool_with_argmax`.

  Returns ``(values, indices)`` (PyTorch's ``return_indices``). Args as MaxPool.
  """

  def __call__(self, inputs):
    return jaxpool.max_pool_with_argmax(inputs, **self._window())


class MaxUnpool(nnx.Module):
  """Max unpooling, :func:`jaxpool.max_unpool`: scatters `values` to `indices`.

  Args:
    output_shape: spatial shape of the result, or None to give it at the call
      (the call's argument takes precedence).
    channel_axis: -1 (channels last) or 1 (channels first).
  """

  def __init__(self, output_shape=None, *, channel_axis: int = -1):
    self.output_shape = _freeze(output_shape)
    self.channel_axis = channel_axis

  def __call__(self, values, indices, output_shape=None):
    output_shape = self.output_shape if output_shape is None else output_shape
    if output_shape is None:
      raise ValueError(
        "MaxUnpool: output_shape is None; give it to the constructor or to the call."
      )
    return jaxpool.max_unpool(values, indices, output_shape, channel_axis=self.channel_axis)


class BlurPool(nnx.Module):
  """Anti-aliased downsampling, :func:`jaxpool.blur_pool` (Zhang 2019).

  Args:
    strides: the downsampling factor per spatial dim.
    filter_size: width of the binomial low-pass filter.
    pool: "max", "avg" or "none": the dense pool before the blur.
    window_shape: the dense pool's window (default 2 per dim, Zhang's reference).
    padding: the blur's padding: "reflect" (default), "replicate" or "zero".
    channel_axis: -1 (channels last) or 1 (channels first).
  """

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
    self.strides = _freeze(strides)
    self.filter_size = filter_size
    self.pool = pool
    self.window_shape = _freeze(window_shape)
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
