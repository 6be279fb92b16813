"""The comparison study: which pooling layer trains the best MNIST classifier?

Used by `experiments/compare.py`:

    python -m experiments.compare --config=configs/compare.py --workdir=runs/compare
    python -m experiments.compare --config=configs/compare.py:quick --workdir=runs/quick
    python -m experiments.compare --config=configs/compare.py:zeiler_fergus --workdir=runs/zf
    python -m experiments.compare --config=configs/compare.py:zeiler_fergus,paper,platform=gpu \
        --workdir=runs/zf_paper

A study is a sweep: every pool in `config.pools` x every seed in `config.seeds`,
each cell one training run of `config.base` (a `configs/mnist.py` or
`configs/zeiler_fergus.py` config) with `pool`, `pool_options` and `seed` replaced.

`get_config(arg)` reads a comma-separated list of flags and `key=value` pairs:

  (none)            the seed CNN (Conv 32 3x3 - ReLU - pool - Dense 128 - Dense 10)
                    with every pool of `jaxpool.registry.names()` that fits its
                    2x2 stride-2 slot, 3 seeds x 5 epochs (`_SLOT_OPTIONS` says how
                    each name fills the slot, `_EXCLUDED` why the others do not).
  quick             a smoke study of about a minute on 2 CPU cores: 3 pools (max,
                    stochastic, and mixed for a learnt parameter) x 2 seeds x 2 epochs
                    on the training config's `quick` subset (6,400 training images;
                    the full test set).
  regimes           pooling across data regimes: `_REGIME_POOLS` (max, avg, l2,
                    stochastic, mixed, fractional) on the first 600, 6,000 and 60,000
                    training images (`config.regimes`: each regime's
                    `max_train_examples`), 3 seeds; every run takes the same number of
                    steps, `_REGIME_EPOCHS` epochs of 60,000 // batch size steps (an
                    epoch is one pass over all of MNIST, 10 over 6,000 images and
                    about 100 over 600), so the smaller sets are seen many times over
                    and the network can overfit them. About 27 minutes on a quiet
                    2-core CPU.
  zeiler_fergus     avg, max and stochastic pooling in the network of Zeiler & Fergus
                    (2013), "Stochastic Pooling for Regularization of Deep
                    Convolutional Neural Networks", ICLR; the results table shows the
                    paper's MNIST test errors beside ours.
  paper             with zeiler_fergus: a long run for a GPU/TPU (`_PAPER_EPOCHS`
                    epochs, warmup + cosine decay; our choice, see there).
  platform=P        cpu | gpu | tpu: the training config's preset for that platform
                    (configs/mnist.py: tpu computes in bfloat16), recorded in the
                    results beside the backend and device the runs saw.
  pools=a+b+c       only these registry names.
  reference=NAME    the pool the others are compared with, paired by seed (default
                    max; the sweep's first pool if NAME is not in it).
  seeds=N           seeds 0 .. N-1.
  epochs=N          training epochs of every cell.
  pool_options.K=V  pool option K of every pool in the sweep (V a Python literal,
                    e.g. `pool_options.window_shape=(3,3)`), replacing the slot's.
  <pool>.K=V        pool option K of that pool only, e.g. `pools=max+lp,lp.p=3`.
  plugins=a.b+c.d   modules that register users' pools (experiments/plugins.py),
                    imported here, so that `pools=` and the default sweep see their
                    names; `--config.plugins=a.b,c.d` does the same for `pools=`.

The flags combine, e.g. `zeiler_fergus,quick` or `quick,pools=max+avg,seeds=3`.
Every field can also be overridden on the command line, e.g.
`--config.base.learning_rate=3e-4` or `--config.seeds=(0,1,2,3,4)`.
"""

from __future__ import annotations

import difflib
import re

import ml_collections

# How each registry name fills the seed CNN's 2x2 stride-2 pooling slot: the keyword
# options handed to `jaxpool.registry.make(name, **options)`. Every entry maps a
# 26x26 feature map to 13x13, as 2x2 max pooling with stride 2 does.
_SLOT = {"window_shape": (2, 2), "strides": (2, 2)}
_SLOT_OPTIONS = {
  "max": _SLOT,
  "avg": _SLOT,
  "l2": _SLOT,
  "stochastic": _SLOT,
  "mixed": _SLOT,
  "gated": _SLOT,
  "tree": _SLOT,
  "soft": _SLOT,
  "lip": _SLOT,
  # Graham's fractional max pooling at ratio 1/2 keeps the slot's output size
  # (26 -> 13) while its 2x2 windows start at pseudo-random offsets.
  "fractional": {"window_shape": (2, 2), "output_ratio": (0.5, 0.5)},
  # Zhang's anti-aliased pooling: dense 2x2 max (stride 1), then a 3x3 binomial
  # blur with stride 2; its `padding` is the blur's ("reflect", Zhang's choice),
  # set here because the model's default "VALID" means nothing to it.
  "blur": {"window_shape": (2, 2), "strides": (2, 2), "padding": "reflect"},
}

# Registry names that do not belong in a 2x2 stride-2 slot, with the reason shown in
# the results. Names matching `_EXCLUDED_PATTERNS` (global and adaptive pools, whose
# output size does not depend on a window) are excluded too.
_EXCLUDED = {
  "min": "after a ReLU nearly every window's minimum is 0; no one downsamples so",
  "sum": "4 x avg: the same network up to a scale the next Dense layer absorbs",
  "lp": "a family that needs a choice of p; l2 (p=2) stands for it",
  "gem": "a global pool (no window)",
}
# experiments/models.py hands each pool those of these window defaults that its
# module takes, updated by the config's options; `rngs` and `num_features` are the
# registry's context options, accepted by every name.
_MODEL_SLOT_KEYS = ("window_shape", "strides", "padding")
_CONTEXT_OPTIONS = ("rngs", "num_features")
_EXCLUDED_PATTERNS = (
  (
    re.compile(r"global|adaptive|pyramid|spp|gem"),
    "global or adaptive: its output size is not set by a window",
  ),
  (re.compile(r"unpool|argmax"), "returns or consumes argmax indices: not a layer of a plain CNN"),
)

# MNIST test errors (fractions) in Table 2 of Zeiler & Fergus (2013), their 3-layer
# network, no data augmentation.
_ZEILER_FERGUS_PAPER = {"avg": 0.0083, "max": 0.0055, "stochastic": 0.0047}
_ZEILER_FERGUS_REFERENCE = (
  "Zeiler & Fergus, Stochastic Pooling for Regularization of Deep Convolutional "
  "Neural Networks, ICLR 2013 (arXiv:1301.3557), MNIST test error"
)

# The `paper` length: the paper trains to convergence without a schedule we can
# copy, so this is our choice: long enough for the test error to settle, with a
# cosine decay (hours on one GPU for the three pools x 3 seeds).
_PAPER_EPOCHS = 100
_QUICK_EPOCHS = 2

# The regimes study: training subsets (the first N images of MNIST's training split,
# the same for every seed and pool) and the pools compared on them.
_REGIME_SIZES = (600, 6000, 60000)
_REGIME_POOLS = ("max", "avg", "l2", "stochastic", "mixed", "fractional")
# Epochs of 60,000 // batch steps each: sized so that 6 pools x 3 sizes x 3 seeds
# fit in about 30 minutes on a quiet 2-core CPU (fractional takes ~5x max's time).
_REGIME_EPOCHS = 4
_MNIST_TRAIN_IMAGES = 60000

_FLAGS = ("quick", "zeiler_fergus", "paper", "regimes")
_KEYS = ("platform", "pools", "seeds", "epochs", "reference", "plugins")


def _parse(arg):
  """`"quick,platform=gpu,lp.p=3"` -> ({"quick"}, {"platform": "gpu"}, {"lp": {"p": 3}}),
  with checks; the options of `pool_options.K=V` are under the key "*"."""
  from configs import mnist  # pylint: disable=g-import-not-at-top

  flags, values, options = set(), {}, {}
  for item in mnist.split_arg(arg):
    if "=" in item:
      key, value = (s.strip() for s in item.split("=", 1))
      pool, dot, option = key.partition(".")
      if dot and pool and option and "." not in option:
        # Checked against the pool's options when the study starts.
        options.setdefault("*" if pool == "pool_options" else pool, {})[option] = (
          mnist._parse_literal(value)  # pylint: disable=protected-access
        )
        continue
      if key not in _KEYS:
        close = difflib.get_close_matches(key, _KEYS, n=1)
        raise ValueError(
          f"configs/compare.py: unknown key {key!r} in {arg!r}"
          f"{f'; did you mean {close[0]!r}?' if close else ';'} allowed keys: "
          f"{', '.join(_KEYS)}, pool_options.<option>, <pool>.<option> (and the flags "
          f"{', '.join(_FLAGS)})"
        )
      values[key] = value
    elif item in _FLAGS:
      flags.add(item)
    else:
      close = difflib.get_close_matches(item, _FLAGS, n=1)
      raise ValueError(
        f"configs/compare.py: unknown flag {item!r} in {arg!r}"
        f"{f'; did you mean {close[0]!r}?' if close else ';'} allowed flags: "
        f"{', '.join(_FLAGS)}, and key=value for {', '.join(_KEYS)}"
      )
  if "paper" in flags and "zeiler_fergus" not in flags:
    raise ValueError(
      "configs/compare.py: 'paper' is a length of the zeiler_fergus "
      "study; use 'zeiler_fergus,paper'"
    )
  if "paper" in flags and "quick" in flags:
    raise ValueError("configs/compare.py: 'paper' and 'quick' exclude each other")
  if values.get("platform", "cpu") not in ("cpu", "gpu", "tpu"):
    raise ValueError(f"configs/compare.py: platform={values['platform']!r}; allowed: cpu, gpu, tpu")
  for key in ("seeds", "epochs"):
    if key in values and not (values[key].isdigit() and int(values[key]) > 0):
      raise ValueError(f"configs/compare.py: {key}={values[key]!r} must be a positive integer")
  return flags, values, options


def _training_config(model, arg):
  """The training config of every cell (configs/mnist.py or zeiler_fergus.py)."""
  # Imported here: configs/ is a package beside experiments/, importable from the
  # repository root (where `python -m experiments.compare` runs).
  if model == "zeiler_fergus":
    from configs import zeiler_fergus as module  # pylint: disable=g-import-not-at-top
  else:
    from configs import mnist as module  # pylint: disable=g-import-not-at-top
  return module.get_config(arg)


def _registry():
  try:
    from jaxpool import registry  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return registry


def registry_names():
  """The names in `jaxpool.registry`, or None where it cannot be imported."""
  registry = _registry()
  return None if registry is None else list(registry.names())


def _registry_info(name):
  registry = _registry()
  if registry is None or not hasattr(registry, "info"):
    return None
  return registry.info(name)


def slot_pools(names=None, info=_registry_info):
  """Splits registry names into the 2x2 stride-2 sweep and the excluded ones.

  A name in `_EXCLUDED` or matching `_EXCLUDED_PATTERNS` is excluded. Every other
  name gets its options from `_SLOT_OPTIONS` (a name added to the registry later:
  plain 2x2 stride 2) and joins the sweep if its module takes every option the
  seed CNN's slot hands it (ours; the model adds those of `_MODEL_SLOT_KEYS` the
  module takes) and needs no other, as `info(name)` (`jaxpool.registry.info`)
  tells; otherwise it is excluded with the options that do not fit.

  Args:
    names: registry names; None -> `registry_names()` (or, where the registry
      cannot be imported, the names of `_SLOT_OPTIONS`).
    info: name -> dict with "nnx_options" and "nnx_required" (the registry's
      `info`), or None to trust the table.

  Returns:
    `(pools, excluded)`: `pools` a dict name -> options for `registry.make`
    (names of `_SLOT_OPTIONS` in its order, then the others); `excluded` a dict
    name -> reason.
  """
  if names is None:
    names = registry_names()
  if names is None:
    names = list(_SLOT_OPTIONS)
  ordered = [n for n in _SLOT_OPTIONS if n in names]
  ordered += [n for n in names if n not in _SLOT_OPTIONS]
  pools, excluded = {}, {}
  for name in ordered:
    if name in _EXCLUDED:
      excluded[name] = _EXCLUDED[name]
      continue
    reason = next((r for p, r in _EXCLUDED_PATTERNS if p.search(name)), None)
    if reason:
      excluded[name] = reason
      continue
    options = dict(_SLOT_OPTIONS.get(name, _SLOT))
    details = info(name) if info else None
    if details is not None:
      accepted = set(details["nnx_options"]) | set(_CONTEXT_OPTIONS)
      # The model adds those of its window defaults that the module takes.
      given = set(options) | (set(_MODEL_SLOT_KEYS) & accepted)
      unknown = set(options) - accepted
      missing = set(details["nnx_required"]) - given - set(_CONTEXT_OPTIONS)
      if unknown or missing:
        why = []
        if missing:
          why.append(f"needs {', '.join(sorted(missing))}, which the slot does not give")
        if unknown:
          why.append(f"does not take {', '.join(sorted(unknown))}")
        excluded[name] = "; ".join(why)
        continue
    pools[name] = options
  return pools, excluded


def _pool_entry(name, options):
  return ml_collections.ConfigDict({"name": name, "options": dict(options)})


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the study config; `arg` as in the module docstring."""
  flags, values, options = _parse(arg)
  plugins = values.get("plugins", "")
  if plugins:  # before the default sweep asks the registry for its names
    from experiments import plugins as plugin_loader  # pylint: disable=g-import-not-at-top

    plugin_loader.load(plugins)
  platform = values.get("platform", "cpu")
  zeiler_fergus = "zeiler_fergus" in flags

  base_args = [f"platform={platform}"]
  if "quick" in flags:
    base_args.append("quick")  # 1 epoch on 6,400 training images (configs/mnist.py).
  base = _training_config("zeiler_fergus" if zeiler_fergus else "seed_cnn", ",".join(base_args))

  config = ml_collections.ConfigDict()
  config.study = "zeiler_fergus" if zeiler_fergus else "seed_cnn"
  config.arg = arg or ""
  config.platform = platform
  config.base = base
  # Passed to every cell's training config (experiments/compare.py), and imported by
  # experiments.compare before the study starts.
  config.plugins = plugins

  if zeiler_fergus:
    # The paper's network keeps its own 3x3 stride-2 SAME slot for all three pools.
    slot = dict(base.pool_options)
    pools = {name: slot for name in ("avg", "max", "stochastic")}
    excluded = {}
    config.paper_test_error = dict(_ZEILER_FERGUS_PAPER)
    config.paper_reference = _ZEILER_FERGUS_REFERENCE
  else:
    if "quick" in flags:
      pools = {name: _SLOT_OPTIONS[name] for name in ("max", "stochastic", "mixed")}
      excluded = {}
    elif "regimes" in flags:
      pools = {name: _SLOT_OPTIONS[name] for name in _REGIME_POOLS}
      excluded = {}
    else:
      pools, excluded = slot_pools()
    config.paper_test_error = {}
    config.paper_reference = ""

  if "pools" in values:
    slot = next(iter(pools.values())) if zeiler_fergus else None
    pools = {
      name: slot or _SLOT_OPTIONS.get(name, _SLOT) for name in values["pools"].split("+") if name
    }
    excluded = {}

  unknown = sorted(set(options) - set(pools) - {"*"})
  if unknown:
    raise ValueError(
      f"configs/compare.py: options for {', '.join(map(repr, unknown))} in {arg!r}, which "
      f"the sweep does not have; its pools: {', '.join(pools)}"
    )
  pools = {
    name: {**opts, **options.get("*", {}), **options.get(name, {})} for name, opts in pools.items()
  }
  config.pools = ml_collections.ConfigDict(
    {name: _pool_entry(name, opts) for name, opts in pools.items()}
  )
  config.excluded = dict(excluded)

  num_seeds = int(values.get("seeds", 2 if "quick" in flags else 3))
  config.seeds = tuple(range(num_seeds))
  config.reference = values.get("reference", "max")
  config.regimes = ml_collections.ConfigDict()
  if "regimes" in flags:
    # Every regime takes the steps of one pass over all of MNIST per epoch.
    base.steps_per_epoch = _MNIST_TRAIN_IMAGES // base.batch_size
    for size in _REGIME_SIZES:
      config.regimes[f"n{size}"] = {"max_train_examples": size}
  if "quick" in flags:
    base.num_epochs = _QUICK_EPOCHS  # Two points on each curve.
  elif "regimes" in flags:
    base.num_epochs = _REGIME_EPOCHS
  elif "paper" in flags:
    base.num_epochs = _PAPER_EPOCHS
    base.lr_schedule = "warmup_cosine"
    base.warmup_epochs = 1.0
  else:
    base.num_epochs = 5
  if "epochs" in values:
    base.num_epochs = int(values["epochs"])
  config.quiet = False
  return config
