"""Pooling layers by name, for configs: ``make("max", window_shape=(2, 2))``.

Every name maps to a function of :mod:`jaxpool` and to the module of the same
CamelCase name in :mod:`jaxpool.linen` and :mod:`jaxpool.nnx`:

  >>> from flax import nnx
  >>> from jaxpool import registry
  >>> pool = registry.make("stochastic", window_shape=(2, 2), strides=(2, 2),
  ...                      rngs=nnx.Rngs(0))                     # api="nnx"
  >>> pool = registry.make("max", api="linen", window_shape=(2, 2), strides=(2, 2))

``make`` passes the options to the module's constructor. Two *context* options are
accepted by every name and dropped where the module does not use them, so that a
model can build any pooling slot with the same call:

* ``rngs`` (NNX only): the ``nnx.Rngs`` that modules with parameters or randomness
  need;
* ``num_features``: the number of channels, needed by NNX modules with
  per-channel parameters (Linen infers it from the input).

Any other unknown option, an unknown name or an unknown ``api`` raises a
ValueError that lists the valid choices.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any
from typing import NamedTuple

__all__ = ["names", "make", "info", "Entry", "CONTEXT_OPTIONS", "APIS", "SLOT_NAMES_EXCLUDED"]

APIS = ("nnx", "linen")
"""The module APIs that ``make`` builds for (``api=``); "nnx" is the default."""

CONTEXT_OPTIONS = ("rngs", "num_features")
"""Options every name accepts; ``make`` drops them where the module does not use them."""


class Entry(NamedTuple):
  """One registered pool: the function name in `jaxpool` and the module name."""

  function: str
  module: str
  summary: str


_ENTRIES: dict[str, Entry] = {
  "max": Entry("max_pool", "MaxPool", "max of every window"),
  "min": Entry("min_pool", "MinPool", "min of every window"),
  "sum": Entry("sum_pool", "SumPool", "sum of every window"),
  "avg": Entry("avg_pool", "AvgPool", "mean of every window"),
  "lp": Entry("lp_pool", "LpPool", "(sum |x|^p)^(1/p) per window, p fixed or learnt"),
  "l2": Entry("l2_pool", "L2Pool", "sqrt(sum x^2) per window"),
  "gem": Entry("gem_pool", "GeMPool", "global generalized mean, learnt p"),
  "stochastic": Entry(
    "stochastic_pool",
    "StochasticPool",
    "one element drawn per window (train), weighted mean (eval)",
  ),
  "mixed": Entry("mixed_pool", "MixedPool", "alpha max + (1 - alpha) avg, alpha learnt or random"),
  "gated": Entry("gated_pool", "GatedPool", "max/avg mix gated by the window"),
  "tree": Entry("tree_pool", "TreePool", "binary tree of learnt pooling filters"),
  "soft": Entry("soft_pool", "SoftPool", "softmax-weighted sum of every window"),
  "lip": Entry("lip_pool", "LIPPool", "weights from a learnt logit network"),
  "adaptive_avg": Entry(
    "adaptive_avg_pool", "AdaptiveAvgPool", "mean over PyTorch's adaptive windows"
  ),
  "adaptive_max": Entry(
    "adaptive_max_pool", "AdaptiveMaxPool", "max over PyTorch's adaptive windows"
  ),
  "global_avg": Entry("global_avg_pool", "GlobalAvgPool", "mean over all positions"),
  "global_max": Entry("global_max_pool", "GlobalMaxPool", "max over all positions"),
  "global_lp": Entry("global_lp_pool", "GlobalLpPool", "Lp norm over all positions"),
  "spp": Entry(
    "spatial_pyramid_pool", "SpatialPyramidPool", "concatenated adaptive pools, flattened"
  ),
  "max_argmax": Entry(
    "max_pool_with_argmax", "MaxPoolWithArgmax", "max pool returning (values, indices)"
  ),
  "max_unpool": Entry(
    "max_unpool", "MaxUnpool", "scatter (values, indices) back: the inverse of max_argmax"
  ),
  "fractional": Entry(
    "fractional_max_pool", "FractionalMaxPool", "max over pseudo-random fractional windows"
  ),
  "blur": Entry("blur_pool", "BlurPool", "anti-aliased downsampling"),
}

SLOT_NAMES_EXCLUDED = ("max_argmax", "max_unpool")
"""Names whose modules do not map one array to one array (not a plain layer)."""


def names(*, layers_only: bool = False) -> list[str]:
  """The registered names, sorted.

  Args:
    layers_only: leave out the names whose module is not an array -> array layer
      ("max_argmax" returns ``(values, indices)``, "max_unpool" takes both).
  """
  out = sorted(_ENTRIES)
  if layers_only:
    out = [n for n in out if n not in SLOT_NAMES_EXCLUDED]
  return out


def _entry(name: str) -> Entry:
  if not isinstance(name, str) or name not in _ENTRIES:
    raise ValueError(
      f"registry: unknown pool name {name!r}; valid names are: {', '.join(names())}."
    )
  return _ENTRIES[name]


def _module_class(name: str, api: str):
  if api not in APIS:
    raise ValueError(f"registry: api must be one of {APIS}, got {api!r}.")
  mod = importlib.import_module(f"jaxpool.{api}")
  return getattr(mod, _entry(name).module)


def _options(cls, api: str) -> tuple[list[str], list[str]]:
  """(all option names, required option names) of a module class."""
  if api == "linen":
    fields = [f for f in dataclasses.fields(cls) if f.name != "parent" and f.init]
    required = [
      f.name
      for f in fields
      if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    return [f.name for f in fields], required
  params = list(inspect.signature(cls.__init__).parameters.values())[1:]
  params = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
  required = [p.name for p in params if p.default is inspect.Parameter.empty]
  return [p.name for p in params], required


def info(name: str) -> dict[str, Any]:
  """What a name builds: function, module name, summary and the options per API."""
  entry = _entry(name)
  out: dict[str, Any] = dict(
    name=name, function=entry.function, module=entry.module, summary=entry.summary
  )
  for api in APIS:
    options, required = _options(_module_class(name, api), api)
    out[f"{api}_options"] = options
    out[f"{api}_required"] = required
  return out


def make(name: str, api: str = "nnx", **options):
  """Build the pooling module registered as `name`.

  Args:
    name: one of :func:`names` (e.g. "max", "avg", "stochastic", "mixed").
    api: "nnx" (default) for a :mod:`jaxpool.nnx` module, "linen" for a
      :mod:`jaxpool.linen` module.
    **options: the module's constructor arguments (the function's options), plus
      the context options ``rngs`` / ``num_features`` that are dropped where the
      module does not take them.

  Returns:
    The module instance.

  Raises:
    ValueError: unknown name, api or option, or a missing required option; the
      message lists the valid ones.

  Example:
    >>> make("avg", window_shape=(2, 2), strides=2)  # doctest: +ELLIPSIS
    AvgPool(...
  """
  cls = _module_class(name, api)
  valid, required = _options(cls, api)
  unknown = sorted(k for k in options if k not in valid and k not in CONTEXT_OPTIONS)
  if unknown:
    raise ValueError(
      f"registry.make({name!r}, api={api!r}): unknown option(s) {unknown}; valid "
      f"options are: {', '.join(valid)} (and the context options "
      f"{', '.join(CONTEXT_OPTIONS)}, dropped where unused)."
    )
  missing = [k for k in required if k not in options]
  if missing:
    raise ValueError(
      f"registry.make({name!r}, api={api!r}): missing required option(s) "
      f"{missing}; valid options are: {', '.join(valid)}."
    )
  kwargs = {k: v for k, v in options.items() if k in valid}
  return cls(**kwargs)
