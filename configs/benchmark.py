"""Config of `python -m experiments.benchmark --config=configs/benchmark.py[:variant]`.

Each case is a named input shape and window; every public jaxpool pool runs on it
in every dtype, beside its baselines. `:quick` uses tiny shapes and few repeats
(a smoke test of the whole pipeline, not a measurement). `:targets` measures
what the speed targets of the project name, in minutes on 2 CPU cores: max_pool
on the 2x2/2 and 3x3/2 SAME cases, and l2, lp, stochastic, mixed, gated and soft
pooling beside it, in float32 and bfloat16, plus the training throughput.
`:accelerator` is `:targets` with batch 1024, for GPUs and TPUs. `:training` runs
the training tables only, with a row per pool of the comparison study
(`config.training.pools`) beside max.
"""

import ml_collections

# The pools that the speed targets of issue 8 name, and avg_pool beside max_pool.
_TARGET_POOLS = (
  "max_pool",
  "avg_pool",
  "l2_pool",
  "lp_pool",
  "stochastic_pool",
  "mixed_pool",
  "gated_pool",
  "soft_pool",
)


def _case(name, shape, window, strides, padding):
  return {
    "name": name,
    "shape": tuple(shape),
    "window": tuple(window),
    "strides": tuple(strides),
    "padding": padding,
  }


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # (B, *spatial, C) inputs. Padding: "VALID", "SAME" or an int (both sides, as
  # PyTorch, which uses the same int).
  config.cases = (
    _case("2d_2x2s2", (128, 28, 28, 64), (2, 2), (2, 2), "VALID"),
    _case("2d_3x3s2_same", (128, 28, 28, 64), (3, 3), (2, 2), "SAME"),
    _case("2d_3x3s2_resnet", (32, 56, 56, 256), (3, 3), (2, 2), 1),
    _case("1d_3s2", (64, 1024, 64), (3,), (2,), 1),
    _case("3d_2x2x2s2", (8, 16, 32, 32, 32), (2, 2, 2), (2, 2, 2), "VALID"),
  )
  config.dtypes = ("float32", "bfloat16")
  config.pools = ()  # names from jaxpool.__all__ to run; empty: all of them
  config.repeats = 15  # interleaved timing rounds per measurement
  config.warmup = 1
  # Untimed calls of a candidate right before each timed one: every candidate is
  # timed in a loop's steady state (experiments/timing.py says why).
  config.settle = 2
  # Back-to-back calls per timed sample (times are per call); 0: 1 on CPU, 20 on
  # accelerators, where one pooling kernel lasts about as long as its launch.
  config.calls_per_sample = 0
  config.torch = True  # time PyTorch's kernels (CUDA beside a JAX GPU) when importable
  config.torch_threads = 0  # 0: os.cpu_count()
  config.seed = 0

  config.training = ml_collections.ConfigDict()
  config.training.enabled = True
  config.training.batch_size = 128
  config.training.steps = 50  # train steps per timed call (one lax.scan)
  config.training.repeats = 5
  # Keras on TensorFlow beside them (experiments/keras_throughput.py, in a subprocess):
  # keras_python is the interpreter that runs it; "" = this one, only if it can
  # import tensorflow (else the table says why it was skipped).
  config.training.keras = True
  config.training.keras_python = ""
  config.training.keras_variants = "default"  # or "all", or names: see the script
  config.training.keras_settle = 1  # untimed epochs before each timed one
  config.training.keras_timeout_s = 900
  # The seed CNN with each of these registry pools (in the comparison study's slot,
  # configs/compare.py), one row per pool beside max: the study's cost per pool.
  # Empty: no pool table.
  config.training.pools = ()

  if arg == "quick":
    config.cases = (_case("2d_3x3s2_same", (2, 8, 8, 4), (3, 3), (2, 2), "SAME"),)
    config.dtypes = ("float32",)
    config.repeats = 2
    config.warmup = 1
    config.settle = 0
    config.training.batch_size = 16
    config.training.steps = 2
    config.training.repeats = 2
  elif arg == "targets":
    config.cases = config.cases[:2]
    config.pools = _TARGET_POOLS
  elif arg == "training":
    # The training tables only: jaxpool vs flax vs Keras, and every pool of the
    # default comparison study against max.
    config.cases = ()
    config.training.pools = (
      "max", "avg", "l2", "stochastic", "mixed", "gated", "tree", "soft", "lip",
      "fractional", "blur",
    )  # fmt: skip
  elif arg == "accelerator":
    # :targets on a GPU/TPU: batch 1024 instead of 128, so that one pooling kernel
    # lasts well beyond its launch from Python (at batch 128 an H100 finishes most
    # of them in less time than a call takes to dispatch: every row reads ~0.04 ms).
    config.cases = tuple(dict(c, shape=(1024, *c["shape"][1:])) for c in config.cases[:2])
    config.pools = _TARGET_POOLS
  elif arg not in (None, ""):
    raise ValueError(
      f"configs/benchmark.py: unknown variant {arg!r}; valid: '', 'quick', "
      "'targets', 'training' or 'accelerator'."
    )
  return config
