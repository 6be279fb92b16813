r"""Training throughput (images/s) of the seed CNN in Keras on TensorFlow; prints JSON.

    python experiments/keras_throughput.py --batch-size 128 --steps 50 --repeats 5

The Keras side of `experiments.benchmark`'s training table. It runs in its own
process, under any interpreter that has tensorflow (`--config.training.keras_python`
of the benchmark), because TensorFlow and JAX in one process fight over threads and
memory. It imports nothing from jax or jaxpool: run it by its path, not with `-m`.

The model is the classic Keras MNIST example, the same layers as
`experiments.models.SeedCNN`:

    Conv2D(32, 3x3, "valid", relu) - MaxPooling2D(2x2) - Flatten - Dense(128, relu)
    - Dense(10), sparse categorical cross-entropy on logits, Adam(1e-3).

How it is timed: the data are `batch_size * steps` random images held in memory, so
one epoch is `steps` train steps, as one timed call of the JAX side is (which trains on
the same batches in the same order every call, hence no shuffling here either). Three
ways a Keras user trains, each a variant (`--variants`):

  * `fit_numpy`: `model.fit(x, y, batch_size, shuffle=False)` on numpy arrays with
    Keras's defaults (`jit_compile="auto"`, which is off on a CPU-only machine;
    `steps_per_execution=1`): what a user gets without tuning anything.
  * `fit_tfdata_spe`: `model.fit` on a `tf.data.Dataset` (`batch`, `cache`,
    `prefetch(AUTOTUNE)`) with `steps_per_execution=steps`: the whole epoch in one
    `tf.function` call, like the JAX side's `lax.scan`: the input pipeline that
    TensorFlow's tf.data guide recommends, and the option that Keras's `compile`
    documents for small models whose steps are dominated by Python overhead.
  * `tf_function`: a custom training loop, the `steps` steps of Keras's model,
    loss and Adam in one `tf.function` (`tf.range` loop over the stacked batches,
    `GradientTape`, `optimizer.apply_gradients`): no `fit` machinery at all.

`fit_numpy_spe` and `fit_tfdata` (the other two combinations), and any name with
`+xla` (`jit_compile=True`: XLA, as JAX uses; about 3x slower than without in one
measurement on the 2-core CPU this was written on) are available but not run by
default.

`fit` variants are timed by a callback from `on_epoch_begin` to `on_epoch_end` (what a
user gets per epoch of a long `fit`, without the once-per-`fit` setup); the
`tf_function` variant by wall clock around one call and its result's `.numpy()`.
Each variant is built and traced first (one untimed epoch), then every round runs
every variant in turn (interleaved, so load from other processes hits all alike):
`settle` untimed epochs then one timed one (in the same `fit` call). The result is
the median over `repeats` rounds, per variant; `images/s` and `best` report the
fastest variant, the number to beat. TensorFlow's thread pools are left at their
defaults (0 = chosen by TensorFlow); the values, the CPU count and the oneDNN setting
are in the output.

Output (the last line of stdout, one JSON object): `{"tensorflow", "keras",
"threads", "variants": {name: {"median_ms", "images/s", ...}}, "best", "images/s"}`,
or `{"skipped": reason}` (exit status 0) when tensorflow cannot be imported.

`--serve` (how experiments.benchmark runs it, so that the Keras rounds interleave
with its JAX rounds): after building and tracing, print `{"ready": [variants]}`;
then, for every line `round` on stdin, run one round and print `{"round": {variant:
seconds}}`; on `done` or end of input, print the output above (over the rounds
served; `--repeats` is not used) and exit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

BASES = ("fit_numpy", "fit_numpy_spe", "fit_tfdata", "fit_tfdata_spe", "tf_function")
DEFAULT_VARIANTS = ("fit_numpy", "fit_tfdata_spe", "tf_function")


def variant_names(spec: str) -> list[str]:
  """`"default"`, `"all"` or comma-separated names (a base, optionally `+xla`)."""
  if spec == "default":
    return list(DEFAULT_VARIANTS)
  every = [*BASES, *(f"{b}+xla" for b in BASES)]
  if spec == "all":
    return every
  names = [v.strip() for v in spec.split(",") if v.strip()]
  unknown = [v for v in names if v not in every]
  if unknown or not names:
    raise ValueError(
      f"--variants: unknown {unknown or spec!r}; valid: 'default', 'all' "
      f"or comma-separated names among {every}"
    )
  return list(dict.fromkeys(names))


def _parse(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch-size", type=int, default=128)
  p.add_argument("--steps", type=int, default=50, help="train steps per timed epoch")
  p.add_argument("--repeats", type=int, default=5, help="timed rounds (median)")
  p.add_argument("--settle", type=int, default=1, help="untimed epochs right before each timed one")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument(
    "--variants",
    default="default",
    help="'default', 'all' or comma-separated names (see the docstring)",
  )
  p.add_argument(
    "--serve",
    action="store_true",
    help="after tracing, print {'ready': [...]}, then run one round per "
    "'round' line on stdin and print its times, until 'done' or EOF",
  )
  args = p.parse_args(argv)
  for name in ("batch_size", "steps", "repeats"):
    if getattr(args, name) < 1:
      p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
  if args.settle < 0:
    p.error(f"--settle must be >= 0, got {args.settle}")
  try:
    args.variant_names = variant_names(args.variants)
  except ValueError as e:
    p.error(str(e))
  return args


def _median(values):
  s = sorted(values)
  n = len(s)
  return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def main(argv=None) -> dict:
  args = _parse(sys.argv[1:] if argv is None else argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep C++ info logs off stderr
  try:
    import numpy as np  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415
  except ImportError as e:
    return {"skipped": f"tensorflow is not importable by {sys.executable} ({e})"}
  keras = tf.keras
  b, steps = args.batch_size, args.steps
  n = b * steps
  rng = np.random.default_rng(args.seed)
  images = rng.random((n, 28, 28, 1), dtype=np.float32)
  labels = rng.integers(0, 10, n).astype(np.int32)
  dataset = (
    tf.data.Dataset.from_tensor_slices((images, labels)).batch(b).cache().prefetch(tf.data.AUTOTUNE)
  )
  stacked = (
    tf.constant(images.reshape(steps, b, 28, 28, 1)),
    tf.constant(labels.reshape(steps, b)),
  )

  class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
      self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
      self.last = time.perf_counter() - self.start

  def model_and_loss():
    model = keras.Sequential(
      [
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, 3, padding="valid", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10),
      ]
    )
    return model, keras.losses.SparseCategoricalCrossentropy(from_logits=True)

  def build(name) -> tuple:
    """-> (run(epochs) -> seconds of the last epoch, description)."""
    base, xla = name.removesuffix("+xla"), name.endswith("+xla")
    keras.utils.set_random_seed(args.seed)
    model, loss = model_and_loss()
    optimizer = keras.optimizers.Adam(1e-3)
    if base == "tf_function":

      def one_step(x, y):
        with tf.GradientTape() as tape:
          value = loss(y, model(x, training=True))
        grads = tape.gradient(value, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return value

      one_step = tf.function(one_step, jit_compile=xla)

      @tf.function
      def epoch(xs, ys):
        value = tf.constant(0.0)
        for i in tf.range(steps):
          value = one_step(xs[i], ys[i])
        return value

      def run(epochs):
        for _ in range(epochs):
          start = time.perf_counter()
          epoch(*stacked).numpy()
          last = time.perf_counter() - start
        return last

      return run
    spe = steps if base.endswith("_spe") else 1
    model.compile(
      optimizer=optimizer,
      loss=loss,
      steps_per_execution=spe,
      **({"jit_compile": True} if xla else {}),
    )
    data = (
      {"x": dataset, "shuffle": False}
      if base.startswith("fit_tfdata")
      else {"x": images, "y": labels, "batch_size": b, "shuffle": False}
    )

    def run(epochs):
      timer = EpochTimer()
      model.fit(epochs=epochs, verbose=0, callbacks=[timer], **data)
      return timer.last

    return run

  names = args.variant_names
  runs, first_s = {}, {}
  for name in names:  # build and trace (the first epoch) before any timed round
    runs[name] = build(name)
    first_s[name] = runs[name](1)
  times = {name: [] for name in names}

  def one_round(r):
    order = names[r % len(names) :] + names[: r % len(names)]
    out = {}
    for name in order:
      out[name] = runs[name](1 + args.settle)
      times[name].append(out[name])
    return out

  if args.serve:  # rounds on request, interleaved with the caller's own rounds
    emit({"ready": names})
    r = 0
    for line in sys.stdin:
      if line.strip() == "done":
        break
      if line.strip() == "round":
        emit({"round": one_round(r)})
        r += 1
  else:
    for r in range(args.repeats):
      one_round(r)
  if not any(times.values()):
    return {"skipped": "no timed round was requested"}

  variants = {}
  for name in names:
    med = _median(times[name])
    ms = sorted(1e3 * t for t in times[name])
    variants[name] = {
      "median_ms": 1e3 * med,
      "min_ms": ms[0],
      "q1_ms": _median(ms[: (len(ms) + 1) // 2]),
      "q3_ms": _median(ms[len(ms) // 2 :]),
      "first_epoch_ms": 1e3 * first_s[name],
      "images/s": n / med,
      "repeats": len(times[name]),
    }
  best = max(variants, key=lambda k: variants[k]["images/s"])
  return {
    "tensorflow": tf.__version__,
    "keras": getattr(keras, "__version__", None) or keras.version(),
    "python": sys.version.split()[0],
    "threads": {
      "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
      "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
      "cpu_count": os.cpu_count(),
      "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (on)"),
    },
    "batch_size": b,
    "steps_per_call": steps,
    "settle": args.settle,
    "interleaved_with_caller": bool(args.serve),
    "variants": variants,
    "best": best,
    "images/s": variants[best]["images/s"],
  }


def emit(obj: dict) -> None:
  """One JSON object on one line of stdout (the protocol with experiments.benchmark)."""
  print(json.dumps(obj), flush=True)


if __name__ == "__main__":
  emit(main())
