r"""Speed of every public jaxpool pool beside its baselines, measured in one run.

    python -m experiments.benchmark --config=configs/benchmark.py --workdir=runs/benchmark
    python -m experiments.benchmark --config=configs/benchmark.py:quick   # smoke test

For every case of the config (an input shape and a window), every dtype and every
pool in `jaxpool.__all__` that has an argument builder in
experiments/benchmarks/cases.py (pools that are not in this checkout yet are
skipped, with the reason in the output), it times the
compiled forward pass and the compiled forward+backward pass (`jax.vjp` with a
random cotangent) beside, in the same interleaved rounds (experiments/timing.py):

* the baseline: flax.linen's pool, or a plain-autodiff version of the definition
  (e.g. `sqrt(sum_pool(x**2))` for l2, a patches-based stochastic pool);
* PyTorch's kernel (channels-last; on CUDA when JAX runs on a GPU), where torch
  is importable and has one, in rounds of its own beside jaxpool's forward+backward
  (its OpenMP threads spin after each call and would slow the JAX candidates);
* a streaming roofline: one compiled elementwise pass over the bytes that
  forward+backward must at least touch (read `x`, read the cotangent, write the
  gradient); for the forward, read `x` and write `y`.

First, if `experiments.models` exists, the training throughput (images/s) of the
seed CNN with jaxpool's max pool vs flax.linen.max_pool, and vs the same model in
Keras on TensorFlow (experiments/keras_throughput.py, in a subprocess whose rounds
interleave with the JAX ones) when `config.training.keras_python` (default: this
interpreter) can import tensorflow. Only the training table:

    python -m experiments.benchmark --config=configs/benchmark.py --workdir=/tmp/train \
        --config.cases="()" --config.training.keras_python=/path/to/tf-env/bin/python

With `JAXPOOL_MALLOC=retain` in the environment it first sets the malloc options
of experiments/allocator.py (XLA:CPU's temporary buffers are then reused instead
of page-faulted in afresh on every call), for every candidate alike, the Keras
subprocess included; the report names the setting.

The pieces are in experiments/benchmarks/ (its __init__ lists them). A new row is a
builder in experiments/benchmarks/cases.py (the pool's call, its baseline, its
PyTorch kernel) and its entry in BUILDERS; a new input shape is a case in
configs/benchmark.py.

Writes `benchmark.json` (every median, quartile and ratio, the device) and
`benchmark.md` (the tables) into `--workdir`, after every case. While it runs, a
progress bar on stderr counts the measurements and each one's line is printed
above it; `--quiet` prints the lines alone (for logs). Numbers are medians; on a
shared machine compare the ratios, which come from one interleaved measurement.
"""

from __future__ import annotations

import functools
import os

from absl import app
from absl import flags
from ml_collections import config_flags

import jaxpool
from experiments import allocator
from experiments import cli
from experiments.benchmarks.cases import CASE_KEYS
from experiments.benchmarks.cases import DTYPES
from experiments.benchmarks.runner import run


def define_flags(flag_values=flags.FLAGS):
  """The command-line flags, defined only when run as a program (so that importing
  this module beside experiments.train or experiments.compare defines nothing)."""
  config_flags.DEFINE_config_file(
    "config", "configs/benchmark.py", "Benchmark configuration file.", flag_values=flag_values
  )
  flags.DEFINE_string(
    "workdir", "runs/benchmark", "Where the tables are written.", flag_values=flag_values
  )
  flags.DEFINE_bool("quiet", False, "Log lines instead of a progress bar.", flag_values=flag_values)
  return flag_values


def check_config(config) -> None:
  """Raises `cli.ConfigError` naming an unknown key, pool (of `jaxpool.__all__`),
  dtype or case field of a benchmark config, with the valid ones."""
  from configs import benchmark as benchmark_config  # pylint: disable=g-import-not-at-top

  cli.check_keys(config, benchmark_config.get_config())
  known = sorted(n for n in getattr(jaxpool, "__all__", ()) if callable(getattr(jaxpool, n, None)))
  for name in config.pools:
    cli.check_choice("pool", name, known, where="config.pools")
  for dtype in config.dtypes:
    cli.check_choice("dtype", dtype, DTYPES, where="config.dtypes")
  for spec in config.cases:
    for key in dict(spec):
      cli.check_choice("case field", key, CASE_KEYS, where="config.cases")


def main(argv, flag_values=flags.FLAGS):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  check_config(flag_values.config)
  run(
    flag_values.config,
    flag_values.workdir,
    functools.partial(print, flush=True),
    progress_bar=not flag_values.quiet,
  )
  print(os.path.join(flag_values.workdir, "benchmark.md"))
  print(os.path.join(flag_values.workdir, "benchmark.json"))


if __name__ == "__main__":
  allocator.from_environment()  # JAXPOOL_MALLOC=retain: before JAX allocates anything
  cli.run(main, prog="benchmark", define_flags=define_flags, config_default="configs/benchmark.py")
