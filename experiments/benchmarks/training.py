"""The training-throughput table: the seed CNN with jaxpool's vs Flax's max pool vs Keras."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from experiments import timing
from experiments.benchmarks.cases import flax_linen
from experiments.benchmarks.keras_process import KerasProcess


def training_throughput(config, log) -> dict:
  """Images/s of seed_cnn training (adam): jaxpool's vs flax.linen's max pool vs Keras.

  Needs `experiments.models` (the seed CNN); skipped with a message otherwise. Each
  timed call is one compiled `lax.scan` of `config.training.steps` train steps on
  random data already on the device, after one untimed call of the same candidate.
  With `config.training.keras`, the same model in Keras on TensorFlow runs in a
  subprocess (`KerasProcess`, experiments/keras_throughput.py) that answers one
  round (every Keras variant: an untimed epoch, then a timed one, of the same
  `steps` steps) after each round of the JAX candidates, so that all of them share
  the machine's load alike; its result, or why it was skipped, is in the output.
  """
  cfg = config.training
  if not cfg.enabled:
    return {"skipped": "config.training.enabled is False"}
  try:
    from experiments import models  # noqa: PLC0415 - written on another branch
  except ImportError as e:
    return {
      "skipped": f"experiments.models is not available in this checkout ({e}); "
      "the training benchmark runs once it is merged."
    }
  try:
    import optax  # noqa: PLC0415
    from flax import nnx  # noqa: PLC0415
  except ImportError as e:
    return {"skipped": f"needs flax.nnx and optax ({e})."}

  nn = flax_linen()

  class FlaxMaxPool(nnx.Module):
    """flax.linen.max_pool 2x2/2 in the seed CNN's pooling slot (the baseline)."""

    def __call__(self, x):
      return nn.max_pool(x, (2, 2), (2, 2), "VALID")

  def build(flax_pool: bool):
    rngs = nnx.Rngs(params=0, pooling=1)
    if hasattr(models, "build_model"):
      model = models.build_model("seed_cnn", pool="max", pool_options=None, rngs=rngs)
    else:
      model = models.SeedCNN(pool="max", rngs=rngs)
    if flax_pool:
      model.pool = FlaxMaxPool()
    return model

  keras, keras_result = None, None
  if cfg.get("keras", True):  # started first: it traces while JAX compiles
    keras, keras_result = KerasProcess.start(config, log)
  try:
    return _training_rounds(config, log, build, optax, keras, keras_result)
  finally:
    if keras is not None:
      keras.close()


# The JAX rows of the training table: name -> whether flax.linen's max pool replaces
# jaxpool's in the seed CNN (`build`'s argument).
MODELS = (("jaxpool.max_pool", False), ("flax.linen.max_pool", True))


def _epoch_runners(config, build, optax) -> dict:
  """name -> a zero-argument call of one compiled epoch (`lax.scan` of the train
  steps) of that model, on random data already on the device."""
  from flax import nnx  # noqa: PLC0415

  cfg = config.training
  b, steps = cfg.batch_size, cfg.steps
  key = jax.random.key(config.seed)
  images = jax.random.uniform(key, (steps, b, 28, 28, 1), jnp.float32)
  labels = jax.random.randint(jax.random.fold_in(key, 1), (steps, b), 0, 10)
  runners = {}
  for name, flax_pool in MODELS:
    model = build(flax_pool)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-3)

    def step(carry, batch, graphdef=graphdef, rest=rest, tx=tx):
      params, opt_state = carry

      def loss_fn(p):
        logits = nnx.merge(graphdef, p, rest)(batch[0])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()

      loss, grads = jax.value_and_grad(loss_fn)(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    epoch = jax.jit(lambda carry, xs, ys, step=step: lax.scan(step, carry, (xs, ys)))
    carry = (params, tx.init(params))
    runners[name] = functools.partial(epoch, carry, images, labels)
  return runners


def _pool_runners(config, optax) -> dict:
  """ "pool <name>" -> one compiled epoch of the seed CNN with that registry pool in
  the comparison study's slot (configs/compare.py), for `config.training.pools`.

  The train step carries the model's rng state (random pools draw fresh keys each
  step, as experiments/train.py does), so every pool row, max included, runs the
  same step code.
  """
  from flax import nnx  # noqa: PLC0415

  from configs import compare as compare_config  # noqa: PLC0415
  from experiments import models  # noqa: PLC0415

  cfg = config.training
  names = tuple(cfg.get("pools", ()))
  if not names:
    return {}
  options, excluded = compare_config.slot_pools(list(names))
  if excluded:
    raise ValueError(f"config.training.pools: not in the study's slot: {excluded}")
  b, steps = cfg.batch_size, cfg.steps
  key = jax.random.key(config.seed)
  images = jax.random.uniform(key, (steps, b, 28, 28, 1), jnp.float32)
  labels = jax.random.randint(jax.random.fold_in(key, 1), (steps, b), 0, 10)
  runners = {}
  for name in names:
    model = models.build_model(
      "seed_cnn", pool=name, pool_options=dict(options[name]), rngs=nnx.Rngs(params=0, pooling=1)
    )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-3)

    def step(carry, batch, graphdef=graphdef, tx=tx):
      params, rest, opt_state = carry
      model = nnx.merge(graphdef, params, rest)

      def loss_fn(m):
        logits = m(batch[0])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()

      loss, grads = nnx.value_and_grad(loss_fn)(model)
      _, _, rest = nnx.split(model, nnx.Param, ...)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), rest, opt_state), loss

    epoch = jax.jit(lambda carry, xs, ys, step=step: lax.scan(step, carry, (xs, ys)))
    carry = (params, rest, tx.init(params))
    runners[f"pool {name}"] = functools.partial(epoch, carry, images, labels)
  return runners


# The machine's matrix-multiply rate, timed in the same rounds as the pool rows: what
# a step's arithmetic could run at (float32, square, large enough for every core).
MATMUL_SIZE = 1024


def _matmul_runner():
  x = jax.random.normal(jax.random.key(0), (MATMUL_SIZE, MATMUL_SIZE), jnp.float32)
  return functools.partial(jax.jit(jnp.matmul), x, x)


def step_gflop(runner) -> float | None:
  """GFLOP of one train step of an epoch runner, by XLA's cost analysis of the
  compiled scan (which counts a loop body once: one step), or None."""
  try:
    cost = runner.func.lower(*runner.args).compile().cost_analysis()
  except Exception:  # a backend without cost analysis
    return None
  cost = cost[0] if isinstance(cost, list) else cost
  flops = (cost or {}).get("flops")
  return None if flops is None else float(flops) / 1e9


def _timed_rounds(runners: dict, cfg, keras, keras_result) -> tuple[dict, dict | None]:
  """Milliseconds per epoch of each runner, one list per name (a rotating order each
  round), with one Keras round after each JAX round; and the Keras result."""
  names = list(runners)
  timeout = cfg.get("keras_timeout_s", 900)
  if keras is not None:
    keras_result = keras.ready(timeout)
  ms = {name: [] for name in names}
  for r in range(cfg.repeats):
    order = names[r % len(names) :] + names[: r % len(names)]
    t = timing.compare({n: runners[n] for n in order}, repeats=1, warmup=0, settle=1)
    for name in names:
      ms[name].append(t[name]["median_ms"])
    if keras is not None and keras_result is None:  # one Keras round per JAX round
      keras_result = keras.round(timeout)
  if keras is not None and keras_result is None:
    keras_result = keras.finish(timeout)
  return ms, keras_result


def _statistics(ms: list[float]) -> dict:
  """Median, min and quartiles of one runner's rounds (the keys of timing.compare)."""
  return {
    "median_ms": float(np.median(ms)),
    "min_ms": float(np.min(ms)),
    "q1_ms": float(np.percentile(ms, 25)),
    "q3_ms": float(np.percentile(ms, 75)),
    "repeats": len(ms),
  }


def _ratios(result: dict, keras_result: dict | None) -> dict:
  """images/s ratios: jaxpool / flax, and both / Keras where Keras ran."""
  result["jaxpool_over_flax"] = (
    result["jaxpool.max_pool images/s"] / result["flax.linen.max_pool images/s"]
  )
  if keras_result is not None:
    result.update(keras_result)
    if "keras images/s" in keras_result:
      keras_ips = keras_result["keras images/s"]
      result["jaxpool_over_keras"] = result["jaxpool.max_pool images/s"] / keras_ips
      result["flax_over_keras"] = result["flax.linen.max_pool images/s"] / keras_ips
  return result


def _training_rounds(config, log, build, optax, keras, keras_result) -> dict:
  cfg = config.training
  try:
    runners = _epoch_runners(config, build, optax)
  except Exception as e:  # the models module changed its interface
    return {"skipped": f"could not build seed_cnn from experiments.models: {type(e).__name__}: {e}"}
  pool_runners = _pool_runners(config, optax)
  runners.update(pool_runners)
  if pool_runners:
    runners["matmul"] = _matmul_runner()
  for name in runners:  # compile (while the Keras process traces its variants)
    jax.block_until_ready(runners[name]())
  ms, keras_result = _timed_rounds(runners, cfg, keras, keras_result)
  t = {name: _statistics(v) for name, v in ms.items()}
  b, steps = cfg.batch_size, cfg.steps
  result = {"batch_size": b, "steps_per_call": steps, "timings": t}
  for name, v in t.items():
    if name != "matmul":
      result[f"{name} images/s"] = b * steps / (v["median_ms"] / 1e3)
  result = _ratios(result, keras_result)
  if "pool max" in t:  # the pool table: each pool's time per epoch over max's
    result["pool_time_over_max"] = {
      name[len("pool ") :]: v["median_ms"] / t["pool max"]["median_ms"]
      for name, v in t.items()
      if name.startswith("pool ")
    }
  if "matmul" in t:  # arithmetic per step, and the rate it ran at against a matmul's
    result["matmul_gflop_per_s"] = 2 * MATMUL_SIZE**3 / 1e9 / (t["matmul"]["median_ms"] / 1e3)
    gflop = {name[len("pool ") :]: step_gflop(runners[name]) for name in pool_runners}
    result["pool_gflop_per_step"] = gflop
    result["pool_gflop_per_s"] = {
      name: None if g is None else g * steps / (t[f"pool {name}"]["median_ms"] / 1e3)
      for name, g in gflop.items()
    }
  log(
    "  training: " + ", ".join(f"{k} {v:.0f}" for k, v in result.items() if k.endswith("images/s"))
  )
  return result
