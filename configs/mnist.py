"""MNIST with `seed_cnn` (Conv 32 - pool - Dense 128 - Dense 10), any pool from the registry.

    python -m experiments.train --config=configs/mnist.py --workdir=runs/max
    python -m experiments.train --config=configs/mnist.py:pool=stochastic --workdir=runs/st
    python -m experiments.train --config=configs/mnist.py:quick --workdir=/tmp/smoke

`arg` is a comma-separated list of `key=value` (top-level, `data.key` or
`pool_options.<option>`, whose value is a Python literal, e.g.
`pool_options.window_shape=(3,3)`; commas inside brackets or quotes stay) and flags:
  quick     one short epoch on 6,400 training images (smoke run)
  mock      random examples from tfds.testing.mock_data (no data needed; tests)
  cpu|gpu|tpu  (or platform=...) the platform preset, recorded in the results; tpu
            computes in bfloat16
  plugins=a.b+c.d  modules that register users' pools (experiments/plugins.py)
Unknown keys or flags raise ValueError listing the valid ones.
"""

from __future__ import annotations

import ast

import ml_collections

FLAGS = ("quick", "mock", "cpu", "gpu", "tpu")
PLATFORMS = ("cpu", "gpu", "tpu")


def base_config() -> ml_collections.ConfigDict:
  """All fields with their defaults (the Keras MNIST example's choices)."""
  c = ml_collections.ConfigDict()
  c.model = "seed_cnn"
  c.pool = "max"
  # Keyword options for jaxpool.registry.make; empty: the model's default
  # (2x2 stride 2 VALID for seed_cnn, 3x3 stride 2 SAME for zeiler_fergus).
  c.pool_options = ml_collections.ConfigDict()
  c.num_epochs = 5
  c.batch_size = 128  # Global batch, split over all devices.
  c.eval_batch_size = 1000
  c.max_train_examples = 0  # 0: the whole training split; N: its first N images.
  c.steps_per_epoch = 0  # 0: one pass over the training images; N: N steps per epoch.
  c.max_test_examples = 0  # 0: the whole test split (fewer: smoke runs only).
  c.seed = 0
  c.optimizer = "adam"  # "adam" | "sgd" | "adadelta"
  c.learning_rate = 1e-3
  c.momentum = 0.9  # sgd only.
  c.weight_decay = 0.0  # Decoupled (AdamW-style) for adam; L2 added to grads otherwise.
  c.lr_schedule = "constant"  # "constant" | "cosine" | "warmup_cosine"
  c.warmup_epochs = 0.0
  c.compute_dtype = "float32"  # "float32" | "bfloat16"
  c.platform = "cpu"
  c.quiet = False
  c.checkpoint_keep = 2  # Checkpoints kept in workdir/checkpoints.
  # Modules imported before the pool is resolved (experiments/plugins.py), comma- or
  # +-separated, e.g. "examples.median_pool_plugin": they register users' pools.
  c.plugins = ""

  c.data = ml_collections.ConfigDict()
  c.data.name = "mnist"
  c.data.data_dir = ""  # "": $TFDS_DATA_DIR or ~/tensorflow_datasets.
  c.data.raw_dir = ""  # "": $JAXPOOL_MNIST_DIR.
  c.data.verify_md5 = True  # False only for hand-made test IDX files.
  # "tfds": the prepared TFDS dataset (prepared from raw_dir once if needed);
  # "idx": the four IDX files of raw_dir, read directly (no TFDS; for machines
  # without tensorflow-datasets, e.g. an accelerator that reaches no registry).
  c.data.loader = "tfds"
  c.data.mock = False
  c.data.mock_num_examples = 256

  # Multi-host: jax.distributed.initialize(...) when enabled (or $JAXPOOL_DISTRIBUTED=1);
  # empty / -1 fields let JAX detect them from the cluster environment.
  c.distributed = ml_collections.ConfigDict()
  c.distributed.enabled = False
  c.distributed.coordinator_address = ""
  c.distributed.num_processes = -1
  c.distributed.process_id = -1
  return c


def _parse_value(text: str, current):
  if isinstance(current, bool):
    if text.lower() in ("1", "true", "yes"):
      return True
    if text.lower() in ("0", "false", "no"):
      return False
    raise ValueError(f"expected a boolean, got {text!r}")
  if isinstance(current, int):
    return int(text)
  if isinstance(current, float):
    return float(text)
  return text


def split_arg(arg: str | None) -> list[str]:
  """`"a=1,b=(2,3),c"` -> `["a=1", "b=(2,3)", "c"]`: commas inside (), [], {} or
  quotes do not split."""
  items, depth, quote, start = [], 0, "", 0
  text = arg or ""
  for i, ch in enumerate(text):
    if quote:
      quote = "" if ch == quote else quote
    elif ch in "'\"":
      quote = ch
    elif ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth = max(0, depth - 1)
    elif ch == "," and depth == 0:
      items.append(text[start:i])
      start = i + 1
  items.append(text[start:])
  return [s.strip() for s in items if s.strip()]


def _parse_literal(text: str):
  """A Python literal (`(3,3)`, `2`, `0.5`, `True`), else the text itself (`SAME`)."""
  try:
    return ast.literal_eval(text)
  except (SyntaxError, ValueError):
    return text


def apply_arg(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """Applies a `key=value,flag,...` string to `c` (see the module docstring)."""
  for item in split_arg(arg):
    if "=" not in item:
      if item not in FLAGS:
        raise ValueError(
          f"Unknown config flag {item!r}; valid flags: {list(FLAGS)} (or key=value)."
        )
      if item == "quick":
        c.num_epochs = 1
        c.max_train_examples = 6400
      elif item == "mock":
        c.data.mock = True
      else:
        c.platform = item
      continue
    key, value = (s.strip() for s in item.split("=", 1))
    node, *rest = key.split(".")
    if node == "pool_options" and len(rest) == 1 and rest[0]:
      # Checked against the pool's options by experiments.train.validate_config.
      c.pool_options[rest[0]] = _parse_literal(value)
      continue
    target, leaf = (c, node) if not rest else (c.get(node), rest[-1])
    if not isinstance(target, ml_collections.ConfigDict) or leaf not in target:
      import difflib

      valid = sorted(k for k in c.keys() if k != "pool_options") + [
        f"data.{k}" for k in sorted(c.data.keys())
      ]
      close = difflib.get_close_matches(key, valid, n=1)
      hint = f"; did you mean {close[0]!r}?" if close else ";"
      raise ValueError(
        f"Unknown config key {key!r}{hint} valid keys: {valid} and pool_options.<option>."
      )
    target[leaf] = _parse_value(value, target[leaf])
  if c.platform not in PLATFORMS:
    raise ValueError(f"config.platform={c.platform!r}; valid platforms: {list(PLATFORMS)}.")
  if c.platform == "tpu":
    c.compute_dtype = "bfloat16"
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The MNIST seed_cnn config, with `arg` applied (e.g. "pool=stochastic,quick")."""
  return apply_arg(base_config(), arg)
