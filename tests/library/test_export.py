"""Every public pool (forward and gradient) and the seed CNN's training step lower for
CPU, GPU and TPU at once (issue 22): `jax.export` with three platforms needs none of
the hardware, and its one artifact holds every per-backend branch
(`lax.platform_dependent`), so a Python-time backend switch or a rule that does not
lower for some backend fails here. On this machine's CPU the artifact must give what
the jitted function gives.
"""

from __future__ import annotations

import inspect
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

import jaxpool

try:
  from tests.calls import CALLS
  from tests.calls import PAD
  from tests.calls import Call
  from tests.calls import S
  from tests.calls import W
  from tests.calls import inputs
except ImportError:  # tests/ itself on sys.path
  from calls import CALLS
  from calls import PAD
  from calls import Call
  from calls import S
  from calls import W
  from calls import inputs

PLATFORMS = ("cpu", "cuda", "tpu")

# Calls beyond the table's one per function that reach other per-backend rules: lp's
# fixed-p gradients (the table's lp_pool has a traced p), by exp and log (p = 0.5)
# and by multiplications with the range fallback (l2_pool, in the table).
EXTRA = {
  "lp_pool_fixed_half": Call(lambda x: jaxpool.lp_pool(x, 0.5, W, S, PAD)),
}
ALL = {**CALLS, **EXTRA}


def with_gradient(call: Call):
  """x, *learnable -> (the output, the gradients of sum(output^2) in all of them)."""

  def loss(*args):
    return jnp.sum(jnp.square(call.fn(*args).astype(jnp.float32)))

  def f(x, *learnable):
    return call.fn(x, *learnable), jax.grad(loss, argnums=tuple(range(1 + len(learnable))))(
      x, *learnable
    )

  return f


def assert_same(a, b):
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    if jnp.issubdtype(u.dtype, jax.dtypes.prng_key):
      u, v = jax.random.key_data(u), jax.random.key_data(v)
    np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-6, atol=1e-6)


def recording_platform_dependent(monkeypatch) -> set[tuple[str, int]]:
  """Patches `lax.platform_dependent` to record its callers' (file, line) in the set
  returned; clears the trace caches of jaxpool's jitted helpers, which would skip it
  (not all of jax's: every eager op would compile again)."""
  reached = set()
  original = jax.lax.platform_dependent

  def recording(*args, **kwargs):
    caller = inspect.stack(context=0)[1]
    reached.add((os.path.basename(caller.filename), caller.lineno))
    return original(*args, **kwargs)

  monkeypatch.setattr(jax.lax, "platform_dependent", recording)
  for name, module in list(sys.modules.items()):
    if name.split(".")[0] == "jaxpool":
      for value in vars(module).values():
        if callable(getattr(value, "clear_cache", None)):
          value.clear_cache()
  return reached


@pytest.mark.parametrize("name", sorted(ALL))
def test_pool_and_gradient_export_for_cpu_gpu_and_tpu(name, monkeypatch):
  """The CPU values of the artifact are compared with jit's where the call reaches a
  per-backend rule (elsewhere both compile the same program: two compilations for
  nothing)."""
  call = ALL[name]
  f = jax.jit(with_gradient(call))
  args = (inputs(), *call.learnable)
  reached = recording_platform_dependent(monkeypatch)
  exported = jax.export.export(f, platforms=PLATFORMS)(*args)
  assert exported.platforms == PLATFORMS
  if reached:
    assert_same(exported.call(*args), f(*args))


def test_every_public_function_is_exported():
  assert sorted(CALLS) == sorted(jaxpool.__all__)


# --- the seed CNN's training step ------------------------------------------------------
def _fill(leaf, rng):
  """A concrete stand-in for an abstract state leaf: small normal floats, zeros."""
  if jnp.issubdtype(leaf.dtype, jnp.floating):
    return jnp.asarray(0.1 * rng.normal(size=leaf.shape), leaf.dtype)
  return jnp.zeros(leaf.shape, leaf.dtype)


def seed_cnn_step(abstract=False):
  """(the jittable one-step training epoch of the seed CNN with its default pool, its
  arguments): a batch of 4 mock images; the state's shapes only with `abstract`, else
  small random values of those shapes (the real initialisation, a program of its own,
  would cost a compilation)."""
  from configs import mnist
  from experiments import train

  config = mnist.get_config("mock,batch_size=4,steps_per_epoch=1,eval_batch_size=4,quiet=true")
  mesh = Mesh(np.asarray(jax.devices()[:1]), ("data",))
  trainer = train.Trainer(config, mesh, num_train=8, num_test=4)
  state = trainer.abstract_state()
  rng = np.random.default_rng(0)
  if not abstract:
    state = jax.tree.map(lambda leaf: _fill(leaf, rng), state)
  images = jnp.asarray(rng.integers(0, 256, (8, 28, 28, 1)), jnp.uint8)
  labels = jnp.asarray(rng.integers(0, 10, 8), jnp.int32)
  return trainer._train_epoch, (state, images, labels, jnp.int32(0))


def test_seed_cnn_training_step_exports_for_cpu_gpu_and_tpu():
  step, args = seed_cnn_step()
  f = jax.jit(step)
  exported = jax.export.export(f, platforms=PLATFORMS)(*args)
  assert exported.platforms == PLATFORMS
  new_state, metrics = exported.call(*args)
  want_state, want_metrics = f(*args)
  assert_same((new_state, metrics), (want_state, want_metrics))
  assert np.isfinite(float(metrics["loss"]))
  # the step trained: the parameters moved
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new_state["params"], args[0]["params"])
  assert any(jax.tree.leaves(moved))


# --- the calls above reach every per-backend rule ----------------------------------------
def platform_dependent_sites() -> set[tuple[str, int]]:
  """(file, line) of every `platform_dependent(` call in jaxpool's source."""
  root = os.path.join(os.path.dirname(jaxpool.__file__), "_src")
  sites = set()
  for name in sorted(os.listdir(root)):
    if not name.endswith(".py"):
      continue
    with open(os.path.join(root, name)) as f:
      for i, line in enumerate(f, 1):
        if re.search(r"platform_dependent\(", line) and not line.lstrip().startswith("#"):
          sites.add((name, i))
  return sites


def test_exported_calls_reach_every_per_backend_rule(monkeypatch):
  """Tracing the calls exported above (and the training step, which reaches the
  experiments' convolution) calls every `lax.platform_dependent` of jaxpool: no
  per-backend branch goes unexported. A new one needs a call in `EXTRA` here."""
  reached = recording_platform_dependent(monkeypatch)
  for call in ALL.values():
    jax.make_jaxpr(with_gradient(call))(inputs(), *call.learnable)
  step, args = seed_cnn_step(abstract=True)
  jax.make_jaxpr(step)(*args)
  sites = platform_dependent_sites()
  assert sites, "no platform_dependent call found: update this test"
  assert sites <= reached, f"per-backend rules no exported call reaches: {sorted(sites - reached)}"
