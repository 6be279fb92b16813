"""MNIST with the network of Zeiler & Fergus (2013): 3 x [Conv 64 5x5 - ReLU - pool
3x3 stride 2 SAME] - Dense 10; any pool from the registry.

    python -m experiments.train --config=configs/zeiler_fergus.py:pool=stochastic --workdir=runs/zf

Same fields and `arg` syntax as configs/mnist.py.
"""

from __future__ import annotations

import ml_collections

from configs import mnist


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  c = mnist.base_config()
  c.model = "zeiler_fergus"
  c.pool_options.window_shape = (3, 3)
  c.pool_options.strides = (2, 2)
  c.pool_options.padding = "SAME"
  return mnist.apply_arg(c, arg)
