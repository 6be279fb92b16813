"""One XLA compilation cache for the whole test session (its xdist workers and the
command lines the tests start): the tests train the same tiny models many times, and
each run otherwise compiles the same programs again (a tiny training run: about 7 s
of CPU, 1 s with the cache).

The cache key is a hash of the lowered program, the compile options, the devices and
the jax/XLA versions, so an executable is reused only for an identical program: what
a test computes, and so what it asserts, is unchanged. The folder is new for each
session and removed at its end (nothing carries over between runs); a cache already
named by $JAX_COMPILATION_CACHE_DIR is used as it is.
"""

import importlib.util
import os
import shutil
import sys
import tempfile

_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
_created = []


def pytest_configure(config):
  # xdist's workers and the tests' subprocesses inherit the environment: the process
  # that starts first (the controller) creates the folder, every other one joins it.
  if not os.environ.get(_CACHE_ENV):
    os.environ[_CACHE_ENV] = tempfile.mkdtemp(prefix="jaxpool-tests-xla-cache-")
    _created.append(os.environ[_CACHE_ENV])
  if importlib.util.find_spec("filelock") is not None:
    # A size limit turns on jax's file lock around each read and write, so that a
    # process never reads an entry that another one is still writing.
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(8 << 30))
  if "jax" in sys.modules:  # Imported before this file: its flags are read already.
    import jax

    jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_ENV])
    if "JAX_COMPILATION_CACHE_MAX_SIZE" in os.environ:
      jax.config.update(
        "jax_compilation_cache_max_size", int(os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"])
      )


def pytest_unconfigure(config):
  for path in _created:
    shutil.rmtree(path, ignore_errors=True)
