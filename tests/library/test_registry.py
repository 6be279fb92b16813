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
  # tests/library/test_linen.py and tests/library/test_nnx.py compare the modules built by the
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


# --------------------------------------------------------------------------------
# Pools registered by users


@pytest.fixture
def user_names():
  """Names registered by a test, unregistered after it (the registry is global)."""
  added = []
  yield added
  for name in added:
    if name in registry.names():
      registry.unregister(name)


def top2_mean(windows):
  return jax.numpy.mean(jax.lax.top_k(windows, 2)[0], axis=-1)


def test_register_a_window_function_builds_in_both_apis(user_names):
  registry.register("top2", top2_mean, summary="mean of the 2 largest")
  user_names.append("top2")
  assert "top2" in registry.names() and "top2" in registry.names(layers_only=True)
  expected = jaxpool.window_pool(top2_mean, X, (2, 2), 2, "SAME")
  opts = dict(window_shape=(2, 2), strides=2, padding="SAME")
  n = registry.make("top2", rngs=nnx.Rngs(0), num_features=3, **opts)
  ln = registry.make("top2", api="linen", **opts)
  assert isinstance(n, jpx.WindowPool) and isinstance(ln, jpl.WindowPool)
  np.testing.assert_array_equal(n(X), expected)
  np.testing.assert_array_equal(ln.apply({}, X), expected)
  info = registry.info("top2")
  assert info["summary"] == "mean of the 2 largest" and not info["builtin"]
  assert "fn" not in info["nnx_options"] and "pad_value" in info["nnx_options"]
  assert info["nnx_required"] == ["window_shape"] and info["apis"] == ["nnx", "linen"]


def test_register_defaults_are_options_given_unless_overridden(user_names):
  registry.register("smax", jax.numpy.max, pad_value=-np.inf)
  user_names.append("smax")
  x = -np.abs(np.asarray(X)) - 1.0  # all negative: a 0 padding would win the max
  pool = registry.make("smax", window_shape=(3, 3), strides=2, padding=1)
  np.testing.assert_array_equal(pool(x), jaxpool.max_pool(x, (3, 3), 2, 1))
  zero = registry.make("smax", window_shape=(3, 3), strides=2, padding=1, pad_value=0.0)
  assert float(zero(x).max()) == 0.0


class LearntSmoothMax(nnx.Module):
  """t log sum exp(w / t) with a learnt temperature t."""

  def __init__(self, window_shape, strides=None, padding="VALID", *, rngs: nnx.Rngs):
    self.window = (window_shape, strides, padding)
    self.log_t = nnx.Param(jax.numpy.zeros(()))

  def __call__(self, x):
    t = jax.numpy.exp(self.log_t[...])
    fn = lambda w: t * jax.nn.logsumexp(w / t, axis=-1)
    return jaxpool.window_pool(fn, x, *self.window)


class LinenLearntSmoothMax(nn.Module):
  window_shape: tuple
  strides: tuple | None = None

  @nn.compact
  def __call__(self, x):
    t = jax.numpy.exp(self.param("log_t", nn.initializers.zeros, ()))
    fn = lambda w: t * jax.nn.logsumexp(w / t, axis=-1)
    return jaxpool.window_pool(fn, x, self.window_shape, self.strides)


def test_register_module_classes_with_learnt_parameters(user_names):
  registry.register("smooth", nnx=LearntSmoothMax, linen=LinenLearntSmoothMax)
  user_names.append("smooth")
  n = registry.make("smooth", window_shape=(2, 2), strides=(2, 2), rngs=nnx.Rngs(0), num_features=3)
  assert isinstance(n, LearntSmoothMax)
  loss = lambda m: m(X).sum()
  grads = nnx.grad(loss)(n)
  assert float(abs(grads.log_t[...])) > 0  # the temperature is learnt
  ln = registry.make("smooth", api="linen", window_shape=(2, 2), strides=(2, 2))
  variables = ln.init(jax.random.key(0), X)
  np.testing.assert_allclose(ln.apply(variables, X), n(X), rtol=1e-6)
  assert registry.info("smooth")["nnx_options"] == ["window_shape", "strides", "padding", "rngs"]


def test_a_module_class_for_one_api_only(user_names):
  registry.register("smooth_nnx", LearntSmoothMax)
  user_names.append("smooth_nnx")
  info = registry.info("smooth_nnx")
  assert info["apis"] == ["nnx"] and info["linen_options"] == []
  with pytest.raises(ValueError, match="registered with a nnx module only"):
    registry.make("smooth_nnx", api="linen", window_shape=(2, 2))


def test_taken_names_are_refused(user_names):
  with pytest.raises(ValueError, match="'max' is a built-in pool and cannot be replaced"):
    registry.register("max", top2_mean)
  registry.register("top2", top2_mean)
  user_names.append("top2")
  registry.register("top2", top2_mean)  # the same pool again (a plugin imported twice)
  with pytest.raises(ValueError, match=r"'top2' is already registered \(by .*test_registry\)"):
    registry.register("top2", jax.numpy.median)


def test_bad_names_and_signatures_are_refused():
  with pytest.raises(ValueError, match="registry.register: name must be lowercase"):
    registry.register("My Pool", top2_mean)
  with pytest.raises(TypeError, match="window function must take the windows"):
    registry.register("nothing_in", lambda: 0)
  with pytest.raises(TypeError, match="k of .* have none"):
    registry.register("needs_k", lambda windows, k: windows[..., :k].mean(-1))
  with pytest.raises(TypeError, match="pool must be a window function .* or a"):
    registry.register("not_callable", 3)
  with pytest.raises(TypeError, match="pool must be a window function"):
    registry.register("plain_class", dict)
  with pytest.raises(TypeError, match="linen= must be a flax.linen module class"):
    registry.register("wrong_api", linen=LearntSmoothMax)

  class NoInput(nnx.Module):
    def __call__(self):
      return 0

  with pytest.raises(TypeError, match=r"must be called on the inputs"):
    registry.register("no_input", NoInput)
  with pytest.raises(ValueError, match=r"default option\(s\) \['temperature'\]"):
    registry.register("bad_default", top2_mean, temperature=2.0)
  assert not {"nothing_in", "needs_k", "no_input", "bad_default"} & set(registry.names())


def test_unregister():
  with pytest.raises(ValueError, match="'avg' is a built-in pool and cannot be removed"):
    registry.unregister("avg")
  with pytest.raises(ValueError, match="'nope' is not a registered user pool"):
    registry.unregister("nope")
  registry.register("mine", top2_mean)
  registry.unregister("mine")
  assert "mine" not in registry.names()
  registry.register("mine", jax.numpy.median)  # free again
  registry.unregister("mine")


def test_window_pool_modules_equal_the_function():
  fn = jax.numpy.median
  expected = jaxpool.window_pool(fn, X, (3, 3), 2, 1, pad_value=-1.0, dilation=1, ceil_mode=True)
  opts = dict(fn=fn, pad_value=-1.0, dilation=1, ceil_mode=True)
  np.testing.assert_array_equal(jpx.WindowPool((3, 3), 2, 1, **opts)(X), expected)
  np.testing.assert_array_equal(jpl.WindowPool((3, 3), 2, 1, **opts).apply({}, X), expected)
  x_first = jax.numpy.moveaxis(X, -1, 1)
  got = jpx.WindowPool((3, 3), 2, 1, channel_axis=1, **opts)(x_first)
  np.testing.assert_array_equal(jax.numpy.moveaxis(got, 1, -1), expected)
  with pytest.raises(TypeError, match="WindowPool: fn must be a callable"):
    jpx.WindowPool((2, 2), fn=None)
  # under nnx.jit the function is a static attribute of the module
  pool = jpx.WindowPool((3, 3), 2, 1, **opts)
  np.testing.assert_array_equal(nnx.jit(lambda m, x: m(x))(pool, X), expected)
