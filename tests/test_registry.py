"""jaxpool.registry: names, make() for both APIs, errors that list valid choices."""

import jax
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import jaxpool
from jaxpool import linen as jpl
from jaxpool import nnx as jpx
from jaxpool import registry

X = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))


def test_names_sorted_lowercase_unique():
  names = registry.names()
  assert names == sorted(names)
  assert len(set(names)) == len(names)
  assert all(n == n.lower() for n in names)
  for n in ("max", "min", "sum", "avg"):
    assert n in names


@pytest.mark.parametrize(
  "name,fn",
  [
    ("max", jaxpool.max_pool),
    ("min", jaxpool.min_pool),
    ("sum", jaxpool.sum_pool),
    ("avg", jaxpool.avg_pool),
  ],
)
def test_classic_round_trip_both_apis(name, fn):
  opts = dict(window_shape=(2, 2), strides=(2, 2))
  expected = fn(X, (2, 2), strides=(2, 2))
  m = registry.make(name, api="nnx", rngs=nnx.Rngs(0), num_features=3, **opts)
  assert isinstance(m, getattr(jpx, registry.info(name)["module"]))
  np.testing.assert_array_equal(m(X), expected)
  lm = registry.make(name, api="linen", num_features=3, **opts)
  assert isinstance(lm, getattr(jpl, registry.info(name)["module"]))
  np.testing.assert_array_equal(lm.apply({}, X), expected)


def test_default_api_is_nnx():
  assert isinstance(registry.make("max", window_shape=(2, 2)), nnx.Module)
  assert isinstance(registry.make("max", window_shape=(2, 2), api="linen"), nn.Module)


def test_unknown_name_lists_names():
  with pytest.raises(ValueError, match="unknown pool name 'maxx'.*avg, .*max"):
    registry.make("maxx", window_shape=(2, 2))


def test_unknown_option_lists_options():
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['windowshape'\].*window_shape"):
    registry.make("max", windowshape=(2, 2))
  with pytest.raises(ValueError, match="unknown option"):
    registry.make("avg", api="linen", window_shape=(2, 2), bogus=1)


def test_missing_required_option():
  with pytest.raises(ValueError, match=r"missing required option\(s\) \['window_shape'\]"):
    registry.make("max")


def test_unknown_api():
  with pytest.raises(ValueError, match="api must be one of"):
    registry.make("max", api="torch", window_shape=(2, 2))


def test_info():
  i = registry.info("avg")
  assert i["function"] == "avg_pool" and i["module"] == "AvgPool"
  assert "count_include_pad" in i["nnx_options"] and "count_include_pad" in i["linen_options"]
  assert i["nnx_required"] == ["window_shape"]


# --- every name ------------------------------------------------------------------

try:  # noqa: E402
  from tests import module_cases as mc
except ImportError:  # tests/ itself on sys.path
  import module_cases as mc

EXAMPLE = dict(window_shape=(2, 2), strides=2, output_size=2)


def _example_options(name, api):
  info = registry.info(name)
  return {k: v for k, v in EXAMPLE.items() if k in info[f"{api}_options"]}


@pytest.mark.parametrize("name", registry.names())
def test_every_name_builds_in_both_apis_with_same_class_name(name):
  info = registry.info(name)
  n = registry.make(
    name, api="nnx", rngs=nnx.Rngs(0), num_features=3, **_example_options(name, "nnx")
  )
  ln = registry.make(
    name, api="linen", rngs=nnx.Rngs(0), num_features=3, **_example_options(name, "linen")
  )
  assert type(n).__name__ == type(ln).__name__ == info["module"]
  assert type(n) is getattr(jpx, info["module"]) and type(ln) is getattr(jpl, info["module"])
  # Linen attributes and NNX constructor arguments are the same options (Linen
  # adds only its `name`; NNX its context arguments).
  assert set(info["linen_options"]) - {"name"} == set(info["nnx_options"]) - {
    "rngs",
    "num_features",
  }


def test_every_name_is_checked_against_its_function():
  # tests/test_linen.py and tests/test_nnx.py compare the modules built by the
  # registry with the functions, case by case: every name must have a case.
  covered = {c.name for c in mc.CASES + mc.EVAL_CASES} | {r[1] for r in mc.RANDOM_CASES}
  covered.add("max_unpool")  # test_argmax_unpool_modules
  assert covered == set(registry.names())


def test_layers_only_names():
  assert set(registry.names()) - set(registry.names(layers_only=True)) == {
    "max_argmax",
    "max_unpool",
  }


def test_options_of_a_random_module():
  info = registry.info("stochastic")
  assert "deterministic" in info["nnx_options"] and "deterministic" in info["linen_options"]
  assert "rngs" in info["nnx_options"]


@pytest.mark.parametrize("name", registry.names())
def test_same_positional_arguments_in_both_apis(name):
  # e.g. AvgPool((3, 3), 2, 1, False) means the same in Linen, NNX and avg_pool.
  import inspect

  module = registry.info(name)["module"]

  def positional(init):
    params = inspect.signature(init).parameters.values()
    return [
      p.name
      for p in params
      if p.kind == p.POSITIONAL_OR_KEYWORD and p.name not in ("self", "parent", "name")
    ]

  assert positional(getattr(jpl, module).__init__) == positional(getattr(jpx, module).__init__)
