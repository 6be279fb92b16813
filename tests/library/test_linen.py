"""jaxpool.linen: every module against its function, parameters, rngs,
deterministic flag, jit, scan, serialization and printing."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx

import jaxpool
from jaxpool import linen as jpl
from jaxpool import registry

try:
  from tests import module_cases as mc
except ImportError:  # tests/ itself on sys.path
  import module_cases as mc

KEY = jax.random.key(0)


def build(case, **extra):
  return registry.make(case.name, api="linen", **case.options, **extra)


def init_apply(case, **call):
  module = build(case)
  x = mc.input_for(case)
  variables = jax.jit(lambda k, v: module.init(k, v, **call))(KEY, x)
  return module, variables, x


@pytest.mark.parametrize("case", mc.params_of_case(mc.CASES))
def test_matches_function_under_jit(case):
  # Both sides compiled (one compilation each beats op-by-op dispatch on CPU).
  module = build(case)
  x = mc.input_for(case)
  # init_with_output runs __call__ as apply does: one compilation for both.
  y, variables = jax.jit(module.init_with_output)(KEY, x)
  expected = jax.jit(case.expected)(x, variables.get("params", {}))
  mc.tree_allclose(y, expected, rtol=1e-5, atol=1e-5)
  assert set(variables) <= {"params"}


EAGER = ["max", "avg_nchw", "lp_learn", "mixed_layer", "gated_layer", "soft", "blur"]


@pytest.mark.parametrize("case", mc.params_of_case([c for c in mc.CASES if c.id in EAGER]))
def test_eager_matches_jit(case):
  module, variables, x = init_apply(case)
  mc.tree_allclose(
    module.apply(variables, x), jax.jit(module.apply)(variables, x), rtol=1e-5, atol=1e-6
  )


@pytest.mark.parametrize("case", mc.params_of_case(mc.EVAL_CASES))
def test_deterministic_matches_deterministic_function(case):
  x = mc.input_for(case)
  expected = case.expected(x, {})
  # As nn.Dropout: the flag as a call argument...
  module = build(case)
  y, variables = jax.jit(lambda v: module.init_with_output(KEY, v, deterministic=True))(x)
  mc.tree_allclose(y, expected, rtol=1e-5, atol=1e-6)
  assert variables == {}
  # ...or as an attribute; no rng needed either way.
  module = build(case, deterministic=True)
  mc.tree_allclose(module.apply({}, x), expected, rtol=1e-5, atol=1e-6)


# --- parameters ------------------------------------------------------------------


def _skip_unless_merged(case_id):
  (c,) = [c for c in mc.CASES if c.id == case_id]
  missing = [f for f in c.needs if not hasattr(jaxpool, f)]
  if missing:
    pytest.skip(f"jaxpool.{missing} not merged into this branch yet")


@pytest.mark.parametrize(
  "case,expected",
  [
    ("lp_learn", {"raw_p": ()}),
    ("gem", {"p": ()}),
    ("mixed_layer", {"alpha_logit": ()}),
    ("mixed_channel", {"alpha_logit": (3,)}),
    ("mixed_region", {"alpha_logit": (3, 3, 1)}),
    ("mixed_region_nchw", {"alpha_logit": (4,)}),
    ("gated_layer", {"gate": (2, 2, 1)}),
    ("gated_channel", {"gate": (3, 3, 3)}),
    ("tree", {"leaves": (2, 3, 3, 1), "gates": (1, 3, 3, 1)}),  # 27 parameters
    ("tree_channel3", {"leaves": (4, 2, 2, 3), "gates": (3, 2, 2, 3)}),
    ("lip", {"logits": {"conv": {"kernel": (3, 3, 3, 3)}, "norm": {"scale": (3,), "bias": (3,)}}}),
  ],
)
def test_parameter_shapes(case, expected):
  _skip_unless_merged(case)
  # Shapes come from init alone (jax.eval_shape), without the pooling function.
  (c,) = [c for c in mc.CASES if c.id == case]
  variables = jax.eval_shape(build(c).init, KEY, mc.input_for(c))
  assert jax.tree.map(lambda a: tuple(a.shape), dict(variables["params"])) == expected


@pytest.mark.parametrize(
  "module,read,expected",
  [
    (jpl.LpPool((2, 2), p=3.0, learn_p=True), lambda p: 1 + jax.nn.softplus(p["raw_p"]), 3.0),
    (jpl.GeMPool(), lambda p: p["p"], 3.0),  # Radenović et al.
    (
      jpl.MixedPool((2, 2), granularity="channel"),
      lambda p: jax.nn.sigmoid(p["alpha_logit"]),
      [0.5] * 3,
    ),  # Lee et al.
    (jpl.GatedPool((2, 2)), lambda p: p["gate"], np.zeros((2, 2, 1))),
  ],
)
def test_initial_values_as_papers(module, read, expected):
  # jax.eval_shape would give shapes only; init runs the (constant) initialisers.
  # The pooling function runs too, so the case needs it merged.
  fn = {
    "LpPool": "lp_pool",
    "GeMPool": "gem_pool",
    "MixedPool": "mixed_pool",
    "GatedPool": "gated_pool",
  }[type(module).__name__]
  if not hasattr(jaxpool, fn):
    pytest.skip(f"jaxpool.{fn} not merged into this branch yet")
  params = module.init(KEY, mc.positive_inputs())["params"]
  np.testing.assert_allclose(read(params), expected, rtol=1e-6)


@pytest.mark.parametrize("case", mc.params_of_case([c for c in mc.CASES if c.learnable]))
def test_one_optax_step_changes_parameters_and_lowers_loss(case):
  module = build(case)
  x = mc.input_for(case)
  variables = jax.jit(module.init)(KEY, x)
  target = mc.inputs(1, jax.eval_shape(module.apply, variables, x).shape)
  loss_fn = lambda p: jnp.mean((module.apply({"params": p}, x) - target) ** 2)
  value_and_grad = jax.jit(jax.value_and_grad(loss_fn))  # one compilation
  params = variables["params"]
  loss0, grads = value_and_grad(params)
  tx = optax.sgd(1e-2)
  updates, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  for old, upd in zip(jax.tree.leaves(params), jax.tree.leaves(new)):
    assert not np.allclose(old, upd, rtol=0, atol=0)
  assert float(value_and_grad(new)[0]) < float(loss0)


TWINS = ["lp_learn", "gem", "mixed_region", "gated_channel", "tree_channel3", "lip"]


@pytest.mark.parametrize("case", mc.params_of_case([c for c in mc.CASES if c.id in TWINS]))
def test_same_parameters_as_nnx_twin(case):
  # The Linen module and its NNX twin hold the same parameters with the same
  # meaning: NNX's parameters plugged into Linen give NNX's output.
  x = mc.input_for(case)
  twin = registry.make(case.name, api="nnx", rngs=nnx.Rngs(3), num_features=3, **case.options)
  p = nnx.to_pure_dict(nnx.state(twin, nnx.Param))
  module = build(case)
  np.testing.assert_allclose(
    jax.jit(module.apply)({"params": p}, x),
    nnx.jit(lambda m, v: m(v))(twin, x),
    rtol=1e-5,
    atol=1e-6,
  )


# --- randomness ------------------------------------------------------------------


@pytest.mark.parametrize(
  "cid,name,opts,fn,args,kw",
  [
    pytest.param(
      *r,
      id=r[0],
      marks=pytest.mark.skipif(not hasattr(jaxpool, r[3]), reason="function not merged yet"),
    )
    for r in mc.RANDOM_CASES
  ],
)
def test_random_module(cid, name, opts, fn, args, kw):
  x = mc.positive_inputs()
  module = registry.make(name, api="linen", **opts)
  # init in training mode with a single key (make_rng falls back to "params").
  variables = jax.jit(lambda k: module.init(k, x, deterministic=False))(KEY)
  apply = jax.jit(
    lambda key: module.apply(variables, x, deterministic=False, rngs={"pooling": key})
  )
  keys = jax.random.split(jax.random.key(1), 4)
  ys = [apply(k) for k in keys]
  # Deterministic given the rng.
  np.testing.assert_array_equal(apply(keys[0]), ys[0])
  # Other keys draw differently (a few draws: small inputs have few outcomes).
  assert any(not np.array_equal(ys[0], y) for y in ys[1:])
  # deterministic=True: no rng, fixed output, not the training draw.
  evaluate = jax.jit(lambda v: module.apply(variables, v, deterministic=True))
  y_eval = evaluate(x)
  np.testing.assert_array_equal(evaluate(x), y_eval)
  assert any(not np.array_equal(y, y_eval) for y in ys)
  # Same shape as the function's output.
  fn_out = jax.eval_shape(lambda k: getattr(jaxpool, fn)(x, *args, key=k, **kw), keys[0])
  assert ys[0].shape == fn_out.shape


@pytest.mark.skipif(not hasattr(jaxpool, "stochastic_pool"), reason="not merged yet")
def test_stochastic_training_outputs_are_window_elements():
  x = mc.positive_inputs()
  y = np.asarray(
    jpl.StochasticPool((2, 2), (2, 2), deterministic=False).apply(
      {}, x, rngs={"pooling": jax.random.key(4)}
    )
  )
  windows = np.asarray(x).reshape(2, 3, 2, 3, 2, 3).transpose(0, 1, 3, 5, 2, 4)
  windows = windows.reshape(2, 3, 3, 3, 4)
  assert np.all(np.any(windows == y[..., None], axis=-1))


@pytest.mark.skipif(not hasattr(jaxpool, "mixed_pool"), reason="not merged yet")
def test_yu_mixed_pool_draws_max_or_avg():
  x = mc.inputs()
  mx = np.asarray(jaxpool.max_pool(x, (2, 2), (2, 2)))
  av = np.asarray(jaxpool.avg_pool(x, (2, 2), (2, 2)))
  pool = jpl.MixedPool((2, 2), (2, 2), stochastic=True)
  assert pool.init(KEY, x, deterministic=False) == {}
  apply = jax.jit(lambda k: pool.apply({}, x, deterministic=False, rngs={"pooling": k}))
  seen = set()
  for k in jax.random.split(KEY, 12):
    y = np.asarray(apply(k))
    is_max, is_avg = np.allclose(y, mx, atol=1e-6), np.allclose(y, av, atol=1e-6)
    assert is_max != is_avg
    seen.add(is_max)
  assert seen == {True, False}


def test_missing_rng_and_flag_errors():
  x = mc.positive_inputs()
  pool = jpl.StochasticPool((2, 2))
  with pytest.raises(ValueError, match="needs a random key.*rngs=\\{'pooling': key\\}"):
    pool.apply({}, x, deterministic=False)
  with pytest.raises(ValueError, match="needs a random key"):
    jpl.MixedPool((2, 2), stochastic=True).apply({}, x, deterministic=False)
  with pytest.raises(ValueError, match="deterministic"):  # neither flag given
    pool.apply({}, x)
  with pytest.raises(ValueError, match="deterministic"):  # both given
    jpl.StochasticPool((2, 2), deterministic=True).apply({}, x, deterministic=True)


def test_bad_arguments():
  x = mc.inputs()
  with pytest.raises(ValueError, match="granularity must be one of.*'nope'"):
    jpl.MixedPool((2, 2), granularity="nope").init(KEY, x)
  with pytest.raises(ValueError, match="region_shape=.*output spatial shape is"):
    jpl.MixedPool((2, 2), (2, 2), granularity="region", region_shape=(2, 2)).init(KEY, x)
  with pytest.raises(ValueError, match="alpha_init must be a number in"):
    jpl.MixedPool((2, 2), alpha_init=0.0).init(KEY, x)
  with pytest.raises(ValueError, match="finite number > 1"):
    jpl.LpPool((2, 2), p=float("inf"), learn_p=True).init(KEY, x)
  with pytest.raises(ValueError, match="levels must be an int >= 2"):
    jpl.TreePool((2, 2), levels=1).init(KEY, x)
  with pytest.raises(ValueError, match="granularity must be one of"):
    jpl.GatedPool((2, 2), granularity="region").init(KEY, x)


# --- composition ------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(jaxpool, "mixed_pool"), reason="not merged yet")
def test_nn_scan_and_nn_jit():
  class Body(nn.Module):
    @nn.compact
    def __call__(self, x, _):
      return jpl.MixedPool((3, 3), padding="SAME", granularity="channel")(x), None

  Stack = nn.scan(Body, variable_axes={"params": 0}, split_rngs={"params": True}, length=3)
  x = mc.inputs()
  stack = Stack()
  variables = stack.init(KEY, x, None)
  logits = jax.random.normal(KEY, (3, 3))  # (layer, channel)
  variables = {"params": {"MixedPool_0": {"alpha_logit": logits}}}
  y, _ = stack.apply(variables, x, None)
  expected = x
  for lg in logits:
    expected = jaxpool.mixed_pool(expected, jax.nn.sigmoid(lg), (3, 3), padding="SAME")
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
  # nn.jit-lifted module class: same parameters, same output.
  Jitted = nn.jit(jpl.MixedPool)
  jm = Jitted((3, 3), padding="SAME", granularity="channel")
  v = {"params": {"alpha_logit": logits[0]}}
  np.testing.assert_allclose(
    jm.apply(v, x),
    jpl.MixedPool((3, 3), padding="SAME", granularity="channel").apply(v, x),
    rtol=1e-5,
    atol=1e-6,
  )


@pytest.mark.skipif(not hasattr(jaxpool, "tree_pool"), reason="not merged yet")
def test_serialization_round_trip():
  module = jpl.TreePool((2, 2), (2, 2), granularity="channel")
  x = mc.inputs()
  variables = module.init(KEY, x)
  data = flax.serialization.to_bytes(variables)
  template = module.init(jax.random.key(9), x)
  assert not np.allclose(module.apply(template, x), module.apply(variables, x))
  restored = flax.serialization.from_bytes(template, data)
  np.testing.assert_array_equal(module.apply(restored, x), module.apply(variables, x))
  state = flax.serialization.to_state_dict(variables)
  assert set(state["params"]) == {"leaves", "gates"}


@pytest.mark.parametrize("name", registry.names())
def test_repr(name):
  info = registry.info(name)
  opts = {
    k: v
    for k, v in dict(window_shape=(2, 2), output_size=2, strides=2).items()
    if k in info["linen_options"]
  }
  text = repr(registry.make(name, api="linen", **opts))
  assert text.startswith(info["module"] + "(")


@pytest.mark.skipif(not hasattr(jaxpool, "mixed_pool"), reason="not merged yet")
def test_tabulate():
  text = jpl.MixedPool((2, 2), granularity="channel").tabulate(KEY, mc.inputs())
  assert "MixedPool" in text and "alpha_logit" in text


@pytest.mark.skipif(not hasattr(jaxpool, "max_unpool"), reason="not merged yet")
def test_argmax_unpool_modules():
  x = mc.inputs()
  values, indices = jpl.MaxPoolWithArgmax((2, 2), (2, 2)).apply({}, x)
  up = jpl.MaxUnpool((6, 6)).apply({}, values, indices)
  np.testing.assert_array_equal(up, jaxpool.max_unpool(values, indices, (6, 6)))
  np.testing.assert_array_equal(jpl.MaxUnpool().apply({}, values, indices, (6, 6)), up)
  with pytest.raises(ValueError, match="output_shape"):
    jpl.MaxUnpool().apply({}, values, indices)
