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

Your own pool joins the names with :func:`register`: a function of the window
elements (built as :class:`jaxpool.nnx.WindowPool` / :class:`jaxpool.linen.WindowPool`
with that function) or module classes with learnable parameters:

  >>> import jax.numpy as jnp
  >>> registry.register("median", jnp.median, summary="median of every window")
  >>> registry.make("median", window_shape=(3, 3), strides=2, padding=1)  # doctest: +ELLIPSIS
  WindowPool(...
  >>> registry.unregister("median")

A module that calls :func:`register` when imported is a *plugin* of the
experiments (``--config.plugins=my_pools``).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

__all__ = [
  "names",
  "make",
  "info",
  "register",
  "unregister",
  "Entry",
  "CONTEXT_OPTIONS",
  "APIS",
  "SLOT_NAMES_EXCLUDED",
]

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
  out = sorted([*_ENTRIES, *_USER])
  if layers_only:
    out = [n for n in out if n not in SLOT_NAMES_EXCLUDED]
  return out


def _entry(name: str) -> Entry:
  if not isinstance(name, str) or (name not in _ENTRIES and name not in _USER):
    raise ValueError(
      f"registry: unknown pool name {name!r}; valid names are: {', '.join(names())}."
    )
  return _USER[name].entry if name in _USER else _ENTRIES[name]


def _module_class(name: str, api: str):
  if api not in APIS:
    raise ValueError(f"registry: api must be one of {APIS}, got {api!r}.")
  entry = _entry(name)
  if name in _USER:
    user = _USER[name]
    if api not in user.classes:
      raise ValueError(
        f"registry: {name!r} was registered with a {'/'.join(user.classes)} module only; "
        f"api={api!r} needs register(..., {api}=<module class>) too."
      )
    return user.classes[api]
  mod = importlib.import_module(f"jaxpool.{api}")
  return getattr(mod, entry.module)


def _options(cls, api: str, name: str | None = None) -> tuple[list[str], list[str]]:
  """(all option names, required option names) of a module class, without the
  options a registered name fixes (the `fn` of a window function)."""
  options, required = _class_options(cls, api)
  fixed = _USER[name].fixed if name in _USER else ()
  return [o for o in options if o not in fixed], [r for r in required if r not in fixed]


def _class_options(cls, api: str) -> tuple[list[str], list[str]]:
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
  out["builtin"] = name in _ENTRIES
  out["apis"] = list(_USER[name].classes) if name in _USER else list(APIS)
  for api in APIS:
    if api in out["apis"]:
      options, required = _options(_module_class(name, api), api, name)
    else:  # a module class registered for the other API only
      options, required = [], []
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
  valid, required = _options(cls, api, name)
  user = _USER.get(name)
  if user is not None:
    options = {**user.defaults, **options}
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
  if user is not None and user.fn is not None:
    kwargs["fn"] = user.fn
  return cls(**kwargs)


# --------------------------------------------------------------------------------
# Pools registered by users
# --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _UserPool:
  entry: Entry
  classes: dict  # api -> module class
  fn: Callable | None  # the window function, for WindowPool entries
  fixed: tuple  # options that the entry fixes (not given to make)
  defaults: dict  # options given to make unless overridden
  source: str  # the module that registered it, for error messages


_USER: dict[str, _UserPool] = {}
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _module_api(cls) -> str | None:
  """ "nnx" or "linen" for a Flax module class, None for anything else."""
  if not inspect.isclass(cls):
    return None
  from flax import linen as nn  # noqa: PLC0415 - flax only where module classes are used
  from flax import nnx  # noqa: PLC0415

  if issubclass(cls, nn.Module):
    return "linen"
  if issubclass(cls, nnx.Module):
    return "nnx"
  return None


def _check_window_fn(name: str, fn) -> None:
  """A function of the window elements takes the windows positionally and at most
  the keywords `axis` and `mask` besides (`jaxpool.window_pool`'s contract)."""
  try:
    params = list(inspect.signature(fn).parameters.values())
  except (TypeError, ValueError):  # builtins: nothing to check
    return
  positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
  if not positional and not any(p.kind == p.VAR_POSITIONAL for p in params):
    raise TypeError(
      f"registry.register({name!r}): a window function must take the windows as its "
      f"first positional argument, (windows[, mask]) -> values; got signature "
      f"{inspect.signature(fn)}."
    )
  required = [
    p.name
    for p in params[1:]
    if p.default is p.empty
    and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    and p.name not in ("axis", "mask")
  ]
  if required:
    raise TypeError(
      f"registry.register({name!r}): a window function gets the windows and, by name, "
      f"`mask` (and `axis`); its other parameters need defaults, but "
      f"{', '.join(required)} of {inspect.signature(fn)} have none."
    )


def _check_module_class(name: str, cls, api: str) -> None:
  # The instances' __call__ (getattr on the class could find the metaclass's).
  call = next((vars(c)["__call__"] for c in cls.__mro__ if "__call__" in vars(c)), None)
  if call is None:
    raise TypeError(
      f"registry.register({name!r}): the {api} module {cls.__name__} has no __call__."
    )
  try:
    params = list(inspect.signature(call).parameters.values())[1:]  # after self
  except (TypeError, ValueError):
    return
  takes_input = any(
    p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params
  )
  if not takes_input:
    raise TypeError(
      f"registry.register({name!r}): the {api} module {cls.__name__} must be called "
      f"on the inputs, __call__(self, inputs, ...); got __call__{inspect.signature(call)}."
    )


def register(
  name: str,
  pool: Any = None,
  *,
  nnx: Any = None,
  linen: Any = None,
  summary: str = "",
  **defaults,
) -> None:
  """Register your own pool under `name`, for :func:`make` and the experiments.

  Args:
    name: a new name: lowercase letters, digits and ``_``, starting with a letter
      (it appears in configs such as ``pools=max+name``).
    pool: either a *window function* ``(windows[, mask]) -> values`` (see
      :func:`jaxpool.window_pool`), which ``make`` builds as ``WindowPool(fn=pool)``
      of the chosen API, or a Flax module class (NNX or Linen, detected), e.g. one
      with learnable parameters.
    nnx, linen: module classes for each API, where one pool has both (instead of
      `pool`).
    summary: one line for :func:`info`.
    **defaults: options that :func:`make` passes unless given (e.g.
      ``pad_value=-jnp.inf`` for a window function); each must be an option of the
      module.

  Module classes are built like the built-in modules: ``make`` passes the options
  their ``__init__`` (NNX) or attributes (Linen) take, plus the context options
  ``rngs`` / ``num_features`` where they take them. A study's pooling slot hands a
  module ``window_shape``, ``strides`` and ``padding`` where it takes them.

  Registering the same pool again under its name is a no-op (a plugin imported
  twice); anything else under a taken name is an error.

  Raises:
    ValueError: the name is malformed or taken (built-in names can never be
      replaced), or a default is not an option of the module.
    TypeError: `pool` is neither a callable nor a module class, both `pool` and
      `nnx`/`linen` are given, or a signature does not fit (a window function
      needing other arguments, a module not called on its inputs).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> def top2_mean(windows):
    ...   return jnp.mean(jax.lax.top_k(windows, 2)[0], axis=-1)
    >>> register("top2", top2_mean, summary="mean of the 2 largest of every window")
    >>> pool = make("top2", window_shape=(2, 2), strides=2)
    >>> pool(jnp.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0]
    Array([[ 4.5,  6.5],
           [12.5, 14.5]], dtype=float32)
    >>> unregister("top2")
  """
  where = f"registry.register({name!r})"
  if not isinstance(name, str) or not _NAME.fullmatch(name):
    raise ValueError(
      f"registry.register: name must be lowercase letters, digits and '_', starting "
      f"with a letter, got {name!r}."
    )
  if name in _ENTRIES:
    raise ValueError(
      f"{where}: {name!r} is a built-in pool and cannot be replaced; choose another name "
      f"(taken: {', '.join(names())})."
    )
  if pool is not None and (nnx is not None or linen is not None):
    raise TypeError(f"{where}: give either a pool or nnx=/linen= module classes, not both.")
  classes, fn, fixed = {}, None, ()
  if pool is None and nnx is None and linen is None:
    raise TypeError(f"{where}: nothing to register; pass a window function or a module class.")
  if pool is not None:
    api = _module_api(pool)
    if api is not None:
      classes[api] = pool
    elif inspect.isclass(pool) or not callable(pool):
      raise TypeError(
        f"{where}: pool must be a window function (windows[, mask]) -> values or a "
        f"flax.nnx / flax.linen module class, got {pool!r}."
      )
    else:
      _check_window_fn(name, pool)
      fn, fixed = pool, ("fn",)
      for api in APIS:
        classes[api] = importlib.import_module(f"jaxpool.{api}").WindowPool
  for api, cls in (("nnx", nnx), ("linen", linen)):
    if cls is None:
      continue
    if _module_api(cls) != api:
      raise TypeError(f"{where}: {api}= must be a flax.{api} module class, got {cls!r}.")
    classes[api] = cls
  for api, cls in classes.items():
    _check_module_class(name, cls, api)
    valid = [o for o in _class_options(cls, api)[0] if o not in fixed]
    unknown = sorted(k for k in defaults if k not in valid)
    if unknown:
      raise ValueError(
        f"{where}: default option(s) {unknown} are not options of the {api} module "
        f"{cls.__name__}; valid: {', '.join(valid)}."
      )
  module_name = next(iter(classes.values())).__name__
  source = getattr(pool if pool is not None else (nnx or linen), "__module__", "?")
  user = _UserPool(
    entry=Entry("window_pool" if fn is not None else "", module_name, summary),
    classes=classes,
    fn=fn,
    fixed=fixed,
    defaults=dict(defaults),
    source=source,
  )
  old = _USER.get(name)
  if old is not None:
    same = old.fn is user.fn and old.classes == user.classes and old.defaults == user.defaults
    if same:
      return
    raise ValueError(
      f"{where}: {name!r} is already registered (by {old.source}); call "
      f"registry.unregister({name!r}) first or choose another name."
    )
  _USER[name] = user


def unregister(name: str) -> None:
  """Remove a pool added by :func:`register` (for tests and interactive sessions).

  Raises:
    ValueError: `name` is built in, or was not registered.
  """
  if name in _ENTRIES:
    raise ValueError(f"registry.unregister: {name!r} is a built-in pool and cannot be removed.")
  if name not in _USER:
    registered = ", ".join(sorted(_USER)) or "none"
    raise ValueError(
      f"registry.unregister: {name!r} is not a registered user pool (registered: {registered})."
    )
  del _USER[name]
