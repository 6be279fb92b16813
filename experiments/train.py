"""One config -> one trained, evaluated, checkpointed MNIST run.

    python -m experiments.train --config=configs/mnist.py --workdir=runs/max
    python -m experiments.train --config=configs/mnist.py:pool=stochastic \
        --workdir=runs/stochastic --config.num_epochs=10 --quiet

How a run works:

- Data: both MNIST splits are put on the devices once, as uint8 (replicated); each
  batch is gathered, sharded over the batch axis and scaled to [0, 1] on the fly.
- Devices: one data-parallel mesh ("data",) over all devices (of all processes after
  `jax.distributed.initialize`): batch sharded, parameters and optimizer state
  replicated; XLA inserts the gradient all-reduce.
- Whole epochs run inside one compiled function (`lax.scan` over the steps, shuffle
  on device); evaluation is one compiled pass too, with the model in eval mode
  (`model.eval()`: deterministic pools).
- Randomness: every key is derived from `(config.seed, epoch, step)`, never carried:
  the shuffle of epoch e uses `fold_in(fold_in(key(seed), e), 0)` (an epoch of
  `config.steps_per_epoch` steps that needs more than one pass over the data
  shuffles pass j >= 1 with `fold_in` of that key and j); random pools are
  reseeded every step with `fold_in(fold_in(fold_in(key(seed), e), 1), step)` on the
  rng stream "pooling". Same seed, same result; a resumed run is bitwise the same as
  an uninterrupted one on the same machine. The initial weights and the data order
  depend on the seed alone (not on the pool: see experiments/models.py), so the
  runs of one seed under different pools differ in the pool only.
- Epoch length: one pass over the training set (`num_train // batch_size` steps),
  or `config.steps_per_epoch` steps when that is > 0 (several shuffled passes over
  a small subset, so that runs on subsets of different sizes take as many steps).
- Every epoch: an orbax checkpoint of the state and the metrics history (atomic),
  one line of `metrics.jsonl`, TensorBoard scalars and the progress bar. Rerunning on
  the same workdir resumes after the last intact epoch (each checkpoint is verified
  against a checksum saved with it; a corrupt one is moved aside with a warning,
  see experiments/checkpoints.py). A non-finite loss stops
  the run with `FloatingPointError`; the last good checkpoint stays.
- Only process 0 writes files (orbax coordinates checkpoints itself).

The workdir gets `config.json`, `metrics.jsonl`, `tensorboard/`, `checkpoints/` and,
at the end, `summary.json` (see `train_and_evaluate`).
"""

from __future__ import annotations

import functools
import json
import logging as pylogging
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app
from absl import flags
from absl import logging
from flax import nnx
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from experiments import checkpoints as ckpt_lib
from experiments import cli
from experiments import data as data_lib
from experiments import learned as learned_lib
from experiments import models
from experiments import plugins

OPTIMIZERS = ("adam", "sgd", "adadelta")
LR_SCHEDULES = ("constant", "cosine", "warmup_cosine")
COMPUTE_DTYPES = ("float32", "bfloat16")
DISTRIBUTED_ENV = "JAXPOOL_DISTRIBUTED"


# ---------------------------------------------------------------------------- config


def _default_config() -> ml_collections.ConfigDict:
  from configs import mnist

  return mnist.base_config()


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError (`cli.ConfigError`, naming the field, the valid choices and
  the closest one) for a bad config: unknown key, model, pool or pool option, a
  pool that fails on the model's input, or a bad value. Pool names are looked up
  in `jaxpool.registry` now (after any `plugins` registered theirs)."""
  cli.check_keys(config, _default_config(), open_paths=("pool_options",))
  cli.check_choice("model", config.model, models.MODELS, where="config.model")
  cli.check_pool(config.pool, config.pool_options, where="config.pool")
  if config.pool in models.NOT_A_SLOT:
    raise cli.ConfigError(
      f"config.pool={config.pool!r} cannot fill a model's pooling slot: "
      f"{models.NOT_A_SLOT[config.pool]}."
    )
  for field, valid in (
    ("optimizer", OPTIMIZERS),
    ("lr_schedule", LR_SCHEDULES),
    ("compute_dtype", COMPUTE_DTYPES),
  ):
    cli.check_choice(field, config[field], valid, where=f"config.{field}")
  for field in ("num_epochs", "batch_size", "eval_batch_size"):
    if not isinstance(config[field], int) or config[field] < 1:
      raise cli.ConfigError(f"config.{field} must be a positive int, got {config[field]!r}.")
  for field in ("steps_per_epoch", "max_train_examples", "max_test_examples"):
    if not isinstance(config[field], int) or config[field] < 0:
      raise cli.ConfigError(
        f"config.{field} must be an int >= 0 (0: the default), got {config[field]!r}."
      )
  check_model(config)


def check_model(config) -> None:
  """Builds the model and runs it abstractly (`jax.eval_shape`, no compute) on a
  batch of MNIST's shape, so that pool options that fail (a window larger than the
  feature map, a bad padding, a wrong type) stop the run before any data is read."""
  options = config.pool_options.to_dict()

  def forward():
    model = models.build_model(
      config.model,
      pool=config.pool,
      pool_options=options,
      compute_dtype=config.compute_dtype,
      rngs=nnx.Rngs(params=0, pooling=1),
    )
    return model(jnp.zeros((2, 28, 28, 1), jnp.float32))

  try:
    jax.eval_shape(forward)
  except (TypeError, ValueError) as e:
    raise cli.ConfigError(
      f"config.pool={config.pool!r} with config.pool_options={options} does not fit "
      f"model {config.model!r}: {cli.one_line(e)}"
    ) from e


def _check_divisible(config, num_devices: int) -> None:
  for field in ("batch_size", "eval_batch_size"):
    if config[field] % num_devices:
      raise ValueError(
        f"config.{field}={config[field]} is not divisible by the number of devices "
        f"({num_devices}); the global batch is split evenly over the data-parallel "
        f"mesh. Use a multiple of {num_devices}."
      )


def maybe_initialize_distributed(config) -> None:
  """`jax.distributed.initialize` when config.distributed.enabled or $JAXPOOL_DISTRIBUTED=1."""
  enabled = config.distributed.enabled or os.environ.get(DISTRIBUTED_ENV, "") in ("1", "true")
  if not enabled or (getattr(jax.distributed, "is_initialized", lambda: False)()):
    return
  d = config.distributed
  jax.distributed.initialize(
    coordinator_address=d.coordinator_address or None,
    num_processes=d.num_processes if d.num_processes > 0 else None,
    process_id=d.process_id if d.process_id >= 0 else None,
  )


# ------------------------------------------------------------------------- optimizer


def make_optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
  """The optax optimizer of the config, with its learning-rate schedule.

  adam: `optax.adamw` when weight_decay > 0 (decoupled decay), else `optax.adam`;
  sgd: `optax.sgd(momentum=config.momentum)`; adadelta: `optax.adadelta(rho=0.95,
  eps=1e-7)` (the older Keras example, learning rate 1.0). For sgd and adadelta
  weight decay adds `weight_decay * params` to the gradients (L2).
  """
  total = max(1, config.num_epochs * steps_per_epoch)
  lr = config.learning_rate
  if config.lr_schedule == "constant":
    schedule = optax.constant_schedule(lr)
  elif config.lr_schedule == "cosine":
    schedule = optax.cosine_decay_schedule(lr, total)
  else:
    warmup = int(config.warmup_epochs * steps_per_epoch)
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total, warmup + 1))
  if config.optimizer == "adam":
    if config.weight_decay > 0:
      return optax.adamw(schedule, weight_decay=config.weight_decay)
    return optax.adam(schedule)
  decay = [optax.add_decayed_weights(config.weight_decay)] if config.weight_decay > 0 else []
  if config.optimizer == "sgd":
    return optax.chain(*decay, optax.sgd(schedule, momentum=config.momentum or None))
  return optax.chain(*decay, optax.adadelta(schedule, rho=0.95, eps=1e-7))


# ------------------------------------------------------------------------ the steps


def _epoch_key(seed: int, epoch) -> jax.Array:
  return jax.random.fold_in(jax.random.key(seed), epoch)


def _scale(images_u8, dtype):
  return images_u8.astype(dtype) * jnp.asarray(1.0 / 255.0, dtype)


def _loss_and_errors(logits, labels):
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  errors = (jnp.argmax(logits, -1) != labels).astype(jnp.float32)
  return losses, errors


class Trainer:
  """The compiled pieces of a run: state creation, one training epoch, evaluation."""

  def __init__(self, config, mesh: Mesh, num_train: int, num_test: int):
    self.config = config
    self.mesh = mesh
    self.replicated = NamedSharding(mesh, P())
    self.batch_sharded = NamedSharding(mesh, P("data"))
    self.batch_size = config.batch_size
    self.steps = config.steps_per_epoch or num_train // config.batch_size
    if self.steps < 1:
      raise ValueError(
        f"config.batch_size={config.batch_size} is larger than the {num_train} training examples."
      )
    self.num_train = num_train
    self.num_test = num_test
    self.eval_batches = math.ceil(num_test / config.eval_batch_size)
    self.dtype = jnp.dtype(config.compute_dtype)
    self.tx = make_optimizer(config, self.steps)
    self.graphdefs = None  # (train, eval), set by the first trace of `_create`.
    self.has_learned = False  # Whether the model has learnable pools (set there too).

  def _build(self):
    # Initialisation keys: folds that no epoch index reaches.
    key = jax.random.key(self.config.seed)
    rngs = nnx.Rngs(
      params=jax.random.fold_in(key, 2**31 - 1), pooling=jax.random.fold_in(key, 2**31 - 2)
    )
    return models.build_model(
      self.config.model,
      pool=self.config.pool,
      pool_options=self.config.pool_options.to_dict(),
      compute_dtype=self.config.compute_dtype,
      rngs=rngs,
    )

  def _create(self):
    model = self._build()
    model.train()
    gd_train, params, rest = nnx.split(model, nnx.Param, ...)
    model.eval()
    gd_eval = nnx.graphdef(model)
    self.graphdefs = (gd_train, gd_eval)
    self.has_learned = bool(learned_lib.learnable_pools(model))
    return {"params": params, "rest": rest, "opt_state": self.tx.init(params)}

  def create_state(self):
    """The initial state (replicated), computed inside jit (multi-host safe)."""
    return jax.jit(self._create, out_shardings=self.replicated)()

  def abstract_state(self):
    return jax.eval_shape(self._create)

  def _train_epoch(self, state, images, labels, epoch):
    gd_train, _ = self.graphdefs
    key = _epoch_key(self.config.seed, epoch)
    used, n = self.steps * self.batch_size, images.shape[0]
    shuffle = jax.random.fold_in(key, 0)
    order = jax.random.permutation(shuffle, n)
    passes = -(-used // n)
    if passes > 1:  # More steps than one pass holds: further shuffled passes.
      more = jax.vmap(lambda j: jax.random.permutation(jax.random.fold_in(shuffle, j), n))(
        jnp.arange(1, passes)
      )
      order = jnp.concatenate([order, more.reshape(-1)])
    order = order[:used].reshape(self.steps, self.batch_size)
    pool_key = jax.random.fold_in(key, 1)

    def step(carry, inputs):
      params, rest, opt_state = carry
      idx, i = inputs
      idx = jax.lax.with_sharding_constraint(idx, self.batch_sharded)
      x = _scale(images[idx], self.dtype)
      y = labels[idx]
      # Fresh pooling keys for this step, derived from (seed, epoch, step).
      model = nnx.merge(gd_train, params, rest)
      nnx.reseed(model, pooling=jax.random.fold_in(pool_key, i))

      def loss_fn(m):
        losses, errors = _loss_and_errors(m(x), y)
        return losses.mean(), errors.sum()

      # nnx.value_and_grad: gradients w.r.t. the nnx.Param leaves; the rng
      # counters that random pools advance stay in `model`.
      (loss, errors), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
      _, _, rest = nnx.split(model, nnx.Param, ...)
      updates, opt_state = self.tx.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
      return (params, rest, opt_state), (loss, errors)

    carry = (state["params"], state["rest"], state["opt_state"])
    (params, rest, opt_state), (losses, errors) = jax.lax.scan(
      step, carry, (order, jnp.arange(self.steps))
    )
    new_state = {"params": params, "rest": rest, "opt_state": opt_state}
    return new_state, {"loss": losses.mean(), "error": errors.sum() / used}

  def _evaluate(self, state, images, labels):
    _, gd_eval = self.graphdefs
    n, eb = images.shape[0], self.config.eval_batch_size
    index = jnp.arange(self.eval_batches * eb).reshape(self.eval_batches, eb)
    model = nnx.merge(gd_eval, state["params"], state["rest"])

    def batch(totals, idx):
      valid = (idx < n).astype(jnp.float32)
      idx = jax.lax.with_sharding_constraint(jnp.minimum(idx, n - 1), self.batch_sharded)
      losses, errors = _loss_and_errors(model(_scale(images[idx], self.dtype)), labels[idx])
      return (totals[0] + (losses * valid).sum(), totals[1] + (errors * valid).sum()), None

    (loss, errors), _ = jax.lax.scan(batch, (jnp.float32(0), jnp.float32(0)), index)
    return {"loss": loss / n, "error": errors / n}

  def _learned(self, state, images):
    """`experiments.learned`'s summaries of the learnt pool parameters; gated
    pools' gate outputs over `images` (the test set), in eval mode."""
    _, gd_eval = self.graphdefs
    model = nnx.merge(gd_eval, state["params"], state["rest"])
    stats = learned_lib.parameter_stats(model)
    if learned_lib.has_gates(model):
      stats |= learned_lib.gate_stats(
        model,
        images,
        batch_size=self.config.eval_batch_size,
        prepare=lambda x: _scale(x, self.dtype),
      )
    return stats

  def learned(self, state, images) -> dict[str, float]:
    """`_learned` as floats ({} for a model without learnable pools)."""
    if not self.has_learned:
      return {}
    if not hasattr(self, "_learned_jit"):
      self._learned_jit = jax.jit(self._learned, out_shardings=self.replicated)
    return {k: float(v) for k, v in jax.device_get(self._learned_jit(state, images)).items()}

  def compile(self, state, train_x, train_y, test_x, test_y):
    """AOT-compiles the epoch and the evaluation (state donated)."""
    epoch = jax.ShapeDtypeStruct((), jnp.int32, sharding=self.replicated)
    train = jax.jit(
      self._train_epoch, donate_argnums=0, out_shardings=(self.replicated, self.replicated)
    )
    evaluate = jax.jit(self._evaluate, out_shardings=self.replicated)
    return (
      train.lower(state, train_x, train_y, epoch).compile(),
      evaluate.lower(state, test_x, test_y).compile(),
    )


# ----------------------------------------------------------------- state <-> storage


def _is_key(x) -> bool:
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_storable(state):
  """nnx.State -> plain nested dicts of arrays (typed PRNG keys as their raw data)."""

  def conv(x):
    return jax.random.key_data(x) if _is_key(x) else x

  return jax.tree.map(
    conv,
    {
      "params": nnx.to_pure_dict(state["params"]),
      "rest": nnx.to_pure_dict(state["rest"]),
      "opt_state": jax.tree.leaves(state["opt_state"]),
    },
  )


def _from_storable(stored, like):
  params, rest = like["params"], like["rest"]
  rest_dict = nnx.to_pure_dict(rest)
  stored_rest = jax.tree.map(
    lambda ref, x: (
      jax.random.wrap_key_data(x, impl=jax.random.key_impl(ref)) if _is_key(ref) else x
    ),
    rest_dict,
    stored["rest"],
  )
  nnx.replace_by_pure_dict(params, stored["params"])
  nnx.replace_by_pure_dict(rest, stored_rest)
  opt_state = jax.tree.unflatten(
    jax.tree.structure(like["opt_state"]), jax.tree.leaves(stored["opt_state"])
  )
  return {"params": params, "rest": rest, "opt_state": opt_state}


# ------------------------------------------------------------------------- the run


def _write_json(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


def _on_device(array: np.ndarray, sharding) -> jax.Array:
  """A host array, identical on every process, as one global replicated array."""
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def _workdir_errors(fn):
  """A failed write in the workdir (full disk, read-only, no permission) becomes one
  `checkpoints.WorkdirError` naming the workdir and the cause."""

  @functools.wraps(fn)
  def wrapper(config, workdir):
    try:
      return fn(config, workdir)
    except (ckpt_lib.WorkdirError, data_lib.MnistDataError):
      raise
    except Exception as e:  # pylint: disable=broad-except
      cause = cli.disk_cause(e)
      if cause is None:
        raise
      raise ckpt_lib.workdir_error(os.path.abspath(workdir), cause, "the run's files", e) from e

  return wrapper


@_workdir_errors
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains and evaluates `config` in `workdir` (resuming it); returns the summary.

  Writes `config.json` (at start), `metrics.jsonl` (one JSON object per epoch:
  epoch, train_loss, train_error, test_loss, test_error, seconds,
  images_per_second, and for learnable pools `learned/<layer>/<quantity>/<stat>`
  as `experiments.learned` describes), TensorBoard events (the same scalars) in
  `tensorboard/`, orbax checkpoints in `checkpoints/`, and `summary.json`
  (final_test_error, best_test_error, best_epoch, final_train_error, total_seconds,
  seconds_per_epoch, images_per_second, compile_seconds, num_params, device_kind, device_count,
  backend, jax_version, flax_version, pool, model, seed, num_epochs, platform,
  completed=True). Errors are fractions in [0, 1]. Train loss/error are the means
  over the epoch's steps, in train mode. `seconds` is the wall time of the
  epoch's training and evaluation, `images_per_second` counts the training images
  over the training part; summary's `images_per_second` and `seconds_per_epoch`
  average the epochs of all sessions (compilation excluded, see compile_seconds).

  Raises:
    ValueError: bad config (unknown key, pool, model, indivisible batch, ...).
    data.MnistDataError: MNIST missing or corrupt.
    FloatingPointError: non-finite loss (the last good checkpoint is kept).
    checkpoints.CheckpointError: every checkpoint in the workdir is corrupt (a
      corrupt newest one is moved aside and the one before it resumed).
    checkpoints.WorkdirError: the workdir cannot be written (full disk, read-only).
    plugins.PluginError: a module of `config.plugins` cannot be imported.
  """
  plugins.load(config.get("plugins", ""))  # users' pools, before the pool is resolved
  validate_config(config)
  maybe_initialize_distributed(config)
  devices = jax.devices()
  _check_divisible(config, len(devices))
  mesh = Mesh(np.asarray(devices), ("data",))
  writer_process = jax.process_index() == 0
  workdir = os.path.abspath(workdir)
  if writer_process:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")

  splits = data_lib.load(config.data)
  train_split, test_split = splits["train"], splits["test"]
  if config.max_train_examples > 0:
    train_split = data_lib.Split(
      train_split.images[: config.max_train_examples],
      train_split.labels[: config.max_train_examples],
    )
  if config.max_test_examples > 0:  # Smoke runs: a test error on part of the split.
    test_split = data_lib.Split(
      test_split.images[: config.max_test_examples],
      test_split.labels[: config.max_test_examples],
    )
  trainer = Trainer(config, mesh, len(train_split), len(test_split))
  repl = trainer.replicated
  train_x, train_y = (_on_device(train_split.images, repl), _on_device(train_split.labels, repl))
  test_x, test_y = (_on_device(test_split.images, repl), _on_device(test_split.labels, repl))

  state = trainer.create_state()
  num_params = int(sum(x.size for x in jax.tree.leaves(state["params"])))
  checkpoints = ckpt_lib.Checkpoints(os.path.join(workdir, "checkpoints"), config.checkpoint_keep)
  start_epoch, history = 0, []
  try:
    # The newest intact checkpoint; corrupt ones are moved aside with a warning.
    restored = checkpoints.restore_latest(_to_storable(state))
  except ValueError as e:
    raise ValueError(
      f"The checkpoint of epoch {checkpoints.latest()} in {workdir} does not match this "
      f"config (model, pool or optimizer changed?); use a new workdir. ({e})"
    ) from e
  if restored is not None:
    start_epoch, stored, history = restored
    state = _from_storable(stored, state)
    logging.info("Resuming %s after epoch %d.", workdir, start_epoch)

  t0 = time.perf_counter()
  train_epoch, evaluate = trainer.compile(state, train_x, train_y, test_x, test_y)
  compile_seconds = time.perf_counter() - t0

  metrics_path = os.path.join(workdir, "metrics.jsonl")
  tb = None
  if writer_process:
    with open(metrics_path, "w") as f:  # Rewritten from the checkpoint's history.
      f.writelines(json.dumps(record) + "\n" for record in history)
    from tensorboardX import SummaryWriter

    tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=start_epoch + 1)

  from tqdm import tqdm

  bar = tqdm(
    total=config.num_epochs,
    initial=start_epoch,
    unit="epoch",
    dynamic_ncols=True,
    disable=config.quiet or not writer_process,
    file=sys.stderr,
  )
  used = trainer.steps * trainer.batch_size
  try:
    for epoch in range(start_epoch, config.num_epochs):
      t_start = time.perf_counter()
      state, train_metrics = train_epoch(state, train_x, train_y, jnp.int32(epoch))
      train_metrics = jax.device_get(train_metrics)
      t_train = time.perf_counter() - t_start
      test_metrics = jax.device_get(evaluate(state, test_x, test_y))
      seconds = time.perf_counter() - t_start
      record = {
        "epoch": epoch + 1,
        "train_loss": float(train_metrics["loss"]),
        "train_error": float(train_metrics["error"]),
        "test_loss": float(test_metrics["loss"]),
        "test_error": float(test_metrics["error"]),
        "seconds": seconds,
        "images_per_second": used / t_train,
      }
      # After the timing, so that seconds per epoch compare across pools.
      record.update(trainer.learned(state, test_x))
      if not all(math.isfinite(record[k]) for k in ("train_loss", "test_loss")):
        kept = (
          f"the last good checkpoint (epoch {epoch}) is kept"
          if epoch
          else "no checkpoint was written"
        )
        raise FloatingPointError(
          f"Non-finite loss in epoch {epoch + 1} (train_loss={record['train_loss']}, "
          f"test_loss={record['test_loss']}); stopping, {kept} in "
          f"{os.path.join(workdir, 'checkpoints')}. Lower config.learning_rate "
          f"(now {config.learning_rate}) or change the optimizer."
        )
      history.append(record)
      checkpoints.save(epoch + 1, _to_storable(state), history)
      if writer_process:
        with open(metrics_path, "a") as f:
          f.write(json.dumps(record) + "\n")
        for k, v in record.items():
          if k != "epoch":
            tb.add_scalar(k, v, epoch + 1)
        tb.flush()
      logging.info("epoch %d: %s", epoch + 1, record)
      bar.set_postfix(
        train_error=f"{record['train_error']:.4f}",
        test_error=f"{record['test_error']:.4f}",
        img_s=f"{record['images_per_second']:.0f}",
      )
      bar.update(1)
  finally:
    bar.close()
    checkpoints.close()
    if tb is not None:
      tb.close()

  best = min(history, key=lambda r: r["test_error"])
  seconds = [r["seconds"] for r in history]
  import flax

  summary = {
    "final_test_error": history[-1]["test_error"],
    "final_train_error": history[-1]["train_error"],
    "best_test_error": best["test_error"],
    "best_epoch": best["epoch"],
    "total_seconds": float(sum(seconds) + compile_seconds),
    "seconds_per_epoch": float(np.mean(seconds)),
    "images_per_second": float(np.mean([r["images_per_second"] for r in history])),
    "compile_seconds": compile_seconds,
    "num_params": num_params,
    "device_kind": devices[0].device_kind,
    "device_count": len(devices),
    "process_count": jax.process_count(),
    "backend": jax.default_backend(),
    "jax_version": jax.__version__,
    "flax_version": flax.__version__,
    "pool": config.pool,
    "model": config.model,
    "seed": config.seed,
    "num_epochs": config.num_epochs,
    "platform": config.platform,
    "completed": True,
  }
  if writer_process:
    _write_json(os.path.join(workdir, "summary.json"), summary)
  return summary


# ------------------------------------------------------------------------------ CLI


def _define_flags():
  from ml_collections import config_flags

  # New attributes: pool options are set as `--config.pool_options.<option>=value`
  # into an empty dict; validate_config checks every key and option afterwards.
  config_flags.DEFINE_config_file(
    "config",
    None,
    "Config file, e.g. configs/mnist.py:pool=avg.",
    lock_config=False,
    accept_new_attributes=True,
  )
  flags.DEFINE_string("workdir", None, "Run directory (resumed when it has checkpoints).")
  flags.DEFINE_bool("quiet", False, "No progress bar (for logs).")
  flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = flags.FLAGS.config
  if flags.FLAGS.quiet:
    config.quiet = True
  logging.set_verbosity(logging.INFO)
  pylogging.getLogger("absl").setLevel(pylogging.INFO)
  cli.quiet_library_logs()
  summary = train_and_evaluate(config, flags.FLAGS.workdir)
  if jax.process_index() == 0:
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
  cli.run(main, prog="train", define_flags=_define_flags, open_paths=("pool_options",))
