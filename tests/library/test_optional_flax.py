"""Without Flax (an optional extra) the functional API works, and the Flax-only parts
of jaxpool raise an ImportError that says how to install it.

Runs in a subprocess where `sys.modules["flax"] = None` makes every `import flax...`
fail as it does when Flax is not installed (ModuleNotFoundError, name "flax").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HINT = 'pip install "jaxpool[flax]"'

_SCRIPT = r"""
import json, sys
sys.modules["flax"] = None  # as if Flax were not installed
import numpy as np
import jax, jax.numpy as jnp
import jaxpool
from jaxpool import registry

out = {}
x = jnp.arange(16.0).reshape(1, 4, 4, 1)
out["max"] = np.asarray(jax.jit(lambda v: jaxpool.max_pool(v, (2, 2), 2))(x)).ravel().tolist()
grad = jax.grad(lambda v: jaxpool.avg_pool(v, (2, 2), 2).sum())(x)
out["grad"] = np.asarray(grad).ravel().tolist()
out["names"] = registry.names()

def error(fn):
  try:
    fn()
  except ImportError as e:
    return [type(e).__name__, str(e), type(e.__cause__).__name__]
  return None

out["nnx"] = error(lambda: __import__("jaxpool.nnx"))
out["linen"] = error(lambda: __import__("jaxpool.linen"))
out["make"] = error(lambda: registry.make("max", window_shape=(2, 2)))
out["make_linen"] = error(lambda: registry.make("max", api="linen", window_shape=(2, 2)))
out["info"] = error(lambda: registry.info("max"))
out["flax_loaded"] = sorted(m for m in sys.modules if m.startswith("flax.") and sys.modules[m])
print(json.dumps(out))
"""


def _run_without_flax():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
  proc = subprocess.run(
    [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, cwd=ROOT
  )
  assert proc.returncode == 0, proc.stderr
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_without_flax_core_works_and_flax_parts_say_how_to_install():
  out = _run_without_flax()
  # The functional API and the registry's listing need no Flax.
  assert out["max"] == [5.0, 7.0, 13.0, 15.0]  # the max of each 2x2 block of 0..15
  assert out["grad"] == [0.25] * 16  # each element is 1/4 of exactly one window's mean
  assert "max" in out["names"] and "stochastic" in out["names"]
  assert out["flax_loaded"] == []
  # Every way to reach a module names the extra to install and keeps the cause.
  for api in ("nnx", "linen"):
    kind, message, cause = out[api]
    assert kind == "ImportError" and cause == "ModuleNotFoundError"
    assert message == f"jaxpool.{api} needs Flax, which is not installed: {HINT}"
  assert out["make"][1] == out["nnx"][1]
  assert out["make_linen"][1] == out["linen"][1]
  assert HINT in out["info"][1]
