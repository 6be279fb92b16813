"""Smoke test of an installed jaxpool wheel, run by .ci/run outside the checkout.

    python smoke_wheel.py core   # jax + numpy only: pools under jit and grad, and the
                                 # ImportError that names the flax extra
    python smoke_wheel.py flax   # with jaxpool[flax]: NNX and Linen modules, registry

Values are checked against closed forms: the max and mean of the 2x2 blocks of
0..15, whose gradients are known.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jaxpool

X = jnp.arange(16.0).reshape(1, 4, 4, 1)  # (N, H, W, C)
BLOCK_MAX = np.array([5.0, 7.0, 13.0, 15.0])  # the max of each 2x2 block of 0..15


def check_installed():
  """jaxpool comes from site-packages, not from a checkout on sys.path."""
  where = os.path.dirname(jaxpool.__file__)
  assert "site-packages" in where, where
  assert os.path.isfile(os.path.join(where, "py.typed")), "py.typed is not in the wheel"
  print(f"jaxpool {jaxpool.__version__} from {where}")


def check_core():
  y = jax.jit(lambda v: jaxpool.max_pool(v, (2, 2), strides=2))(X)
  np.testing.assert_array_equal(np.asarray(y).ravel(), BLOCK_MAX)
  # The max's gradient is 1 at each block's maximum, the mean's 1/4 everywhere.
  g = jax.jit(jax.grad(lambda v: jaxpool.max_pool(v, (2, 2), strides=2).sum()))(X)
  want = np.zeros(16)
  want[[5, 7, 13, 15]] = 1.0
  np.testing.assert_array_equal(np.asarray(g).ravel(), want)
  g = jax.grad(lambda v: jaxpool.avg_pool(v, (2, 2), strides=2).sum())(X)
  np.testing.assert_array_equal(np.asarray(g).ravel(), np.full(16, 0.25))
  for api in ("nnx", "linen"):
    try:
      __import__(f"jaxpool.{api}")
    except ImportError as e:
      assert 'pip install "jaxpool[flax]"' in str(e), str(e)
    else:
      raise AssertionError(f"jaxpool.{api} imported without flax installed")
  print("core: max_pool and avg_pool under jit and grad; flax modules ask for [flax]")


def check_flax():
  from flax import nnx

  from jaxpool import linen as jpl
  from jaxpool import nnx as jpx
  from jaxpool import registry

  pool = jpx.MaxPool(window_shape=(2, 2), strides=(2, 2))
  np.testing.assert_array_equal(np.asarray(pool(X)).ravel(), BLOCK_MAX)
  lp = jpx.LpPool(window_shape=(2, 2), strides=(2, 2), p=2.0, learn_p=True, rngs=nnx.Rngs(0))
  grad = nnx.grad(lambda m: m(X + 1.0).sum())(lp)
  assert np.isfinite(np.asarray(grad.raw_p[...])).all()
  variables = {}
  y = jpl.AvgPool(window_shape=(2, 2), strides=(2, 2)).apply(variables, X)
  np.testing.assert_array_equal(np.asarray(y).ravel(), [2.5, 4.5, 10.5, 12.5])
  made = registry.make("stochastic", window_shape=(2, 2), strides=(2, 2), rngs=nnx.Rngs(0))
  assert type(made).__name__ == "StochasticPool"
  print("flax: NNX and Linen modules built, applied and differentiated; registry.make")


def main(argv):
  if len(argv) != 2 or argv[1] not in ("core", "flax"):
    sys.exit("usage: smoke_wheel.py core|flax")
  check_installed()
  if argv[1] == "core":
    check_core()
  else:
    check_flax()


if __name__ == "__main__":
  main(sys.argv)
