"""jaxpool: pooling layers for JAX research.

The functional API: every pool is a pure function of arrays, usable under `jit`,
`vmap` and `grad`; `window_pool` turns any function of the window elements into
one, and `pool` is `flax.linen.pool` with derivatives. Flax modules live
in `jaxpool.linen` and `jaxpool.nnx`; `jaxpool.registry` builds them by name.
"""

from jaxpool._src.adaptive import adaptive_avg_pool
from jaxpool._src.adaptive import adaptive_max_pool
from jaxpool._src.adaptive import global_avg_pool
from jaxpool._src.adaptive import global_lp_pool
from jaxpool._src.adaptive import global_max_pool
from jaxpool._src.adaptive import spatial_pyramid_pool
from jaxpool._src.argmax import max_pool_with_argmax
from jaxpool._src.argmax import max_unpool
from jaxpool._src.blur import blur_pool
from jaxpool._src.fractional import fractional_max_pool
from jaxpool._src.lp import gem_pool
from jaxpool._src.lp import l2_pool
from jaxpool._src.lp import lp_pool
from jaxpool._src.mixed import gated_pool
from jaxpool._src.mixed import mixed_pool
from jaxpool._src.mixed import tree_pool
from jaxpool._src.pool import pool
from jaxpool._src.reduce import avg_pool
from jaxpool._src.reduce import max_pool
from jaxpool._src.reduce import min_pool
from jaxpool._src.reduce import sum_pool
from jaxpool._src.soft import lip_pool
from jaxpool._src.soft import soft_pool
from jaxpool._src.stochastic import stochastic_pool
from jaxpool._src.window_pool import window_pool

__version__ = "0.1.0"

__all__ = (
  "adaptive_avg_pool",
  "adaptive_max_pool",
  "avg_pool",
  "blur_pool",
  "fractional_max_pool",
  "gated_pool",
  "gem_pool",
  "global_avg_pool",
  "global_lp_pool",
  "global_max_pool",
  "l2_pool",
  "lip_pool",
  "lp_pool",
  "max_pool",
  "max_pool_with_argmax",
  "max_unpool",
  "min_pool",
  "mixed_pool",
  "pool",
  "soft_pool",
  "spatial_pyramid_pool",
  "stochastic_pool",
  "sum_pool",
  "tree_pool",
  "window_pool",
)
