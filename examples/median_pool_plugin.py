"""A plugin of the experiments: registers "median", a median pool, when imported.

    python -m experiments.compare --config=configs/compare.py:quick,pools=max+median \
        --config.plugins=examples.median_pool_plugin --workdir=runs/median

The median of every window (its two middle elements averaged for an even window
size), padding ignored. Rank-order pooling: robust to a single outlier in a window,
and its gradient goes to the middle element(s) only.
"""

import jax.numpy as jnp

from jaxpool import registry


def median_of_window(windows, mask):
  """The median of the input elements of every window (NaN where a window lies
  entirely in the padding)."""
  return jnp.nanmedian(jnp.where(mask, windows, jnp.nan), axis=-1)


registry.register("median", median_of_window, summary="median of every window (padding ignored)")
