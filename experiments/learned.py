r"""What the learnable pools of a model have learnt: per layer summaries for the logs.

`parameter_stats(model)` and `gate_stats(model, images, ...)` return flat dicts of
scalars, keyed `learned/<layer>/<quantity>/<stat>` with `<stat>` one of mean, min,
max and `<layer>` the pool's path in the model (`pool` in the seed CNN, `pools.0`
.. `pools.2` in the Zeiler & Fergus network):

- MixedPool (learnt): `alpha` = :math:`\sigma(\ell)`, over its elements (one for
  "layer" granularity, one per channel or region otherwise).
- GatedPool: `gate` = the gate output :math:`g = \sigma(\sum_w \omega \odot x)` over
  every window, channel and image of the given images (the test set in training);
  `gate_stats` computes it, `parameter_stats` leaves it out.
- TreePool: `leaf_norm` and `gate_norm`, the Euclidean norm of each leaf filter
  :math:`v_m` and each gating filter :math:`\omega_n`, over the leaves / the gates.
- LpPool (`learn_p=True`): `p` = :math:`1 + \mathrm{softplus}(raw)`; GeMPool
  (`learn_p=True`): `p`.

Pools without learnt parameters contribute nothing; a model without learnable
pools gives `{}`. Every function is traceable (the trainer compiles them).

Example:
    >>> from flax import nnx
    >>> from experiments import models
    >>> model = models.build_model("seed_cnn", pool="mixed", pool_options={},
    ...                            rngs=nnx.Rngs(params=0, pooling=1))
    >>> {k: round(float(v), 3) for k, v in parameter_stats(model).items()}
    {'learned/pool/alpha/mean': 0.5, 'learned/pool/alpha/min': 0.5, 'learned/pool/alpha/max': 0.5}
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpool import nnx as jp_nnx
from jaxpool._src.layers import modules
from jaxpool._src.machinery import window_dot as window_dot_lib

PREFIX = "learned"
STATS = ("mean", "min", "max")


def _layer_name(path) -> str:
  return ".".join(str(p) for p in path)


def learnable_pools(model) -> list[tuple[str, nnx.Module]]:
  """`(layer name, module)` of every pool of `model` with learnt parameters, in order."""
  found = []
  for path, module in nnx.iter_modules(model):
    if isinstance(module, jp_nnx.MixedPool) and not module.stochastic:
      found.append((_layer_name(path), module))
    elif isinstance(module, (jp_nnx.GatedPool, jp_nnx.TreePool)):
      found.append((_layer_name(path), module))
    elif isinstance(module, (jp_nnx.LpPool, jp_nnx.GeMPool)) and module.learn_p:
      found.append((_layer_name(path), module))
  return found


def _summary(layer: str, quantity: str, values) -> dict[str, jax.Array]:
  values = jnp.asarray(values, jnp.float32)
  return {
    f"{PREFIX}/{layer}/{quantity}/mean": values.mean(),
    f"{PREFIX}/{layer}/{quantity}/min": values.min(),
    f"{PREFIX}/{layer}/{quantity}/max": values.max(),
  }


def _filter_norms(filters):
  """Euclidean norm of each filter `filters[m]` (over window offsets and channels)."""
  return jnp.sqrt(jnp.sum(jnp.square(filters.reshape(filters.shape[0], -1)), axis=1))


def parameter_stats(model) -> dict[str, jax.Array]:
  """The summaries of the learnt pool parameters (everything but gated's gate output)."""
  out = {}
  for layer, pool in learnable_pools(model):
    if isinstance(pool, jp_nnx.MixedPool):
      out |= _summary(layer, "alpha", jax.nn.sigmoid(pool.alpha_logit[...]))
    elif isinstance(pool, jp_nnx.TreePool):
      out |= _summary(layer, "leaf_norm", _filter_norms(pool.leaves[...]))
      out |= _summary(layer, "gate_norm", _filter_norms(pool.gates[...]))
    elif isinstance(pool, jp_nnx.LpPool):
      out |= _summary(layer, "p", pool.p_value())
    elif isinstance(pool, jp_nnx.GeMPool):
      out |= _summary(layer, "p", pool.p[...])
  return out


def gate_output(pool: jp_nnx.GatedPool, x: jax.Array) -> jax.Array:
  r"""GatedPool's gate :math:`\sigma(\sum_w \omega \odot x_w)` for every window of `x`."""
  geom = modules.window_geometry(pool, x, "GatedPool")
  return jax.nn.sigmoid(window_dot_lib.window_dot(x, pool.gate[...][None], geom)[0])


def has_gates(model) -> bool:
  return any(isinstance(p, jp_nnx.GatedPool) for _, p in learnable_pools(model))


def gate_stats(model, images, *, batch_size: int, prepare=lambda x: x) -> dict[str, jax.Array]:
  """Mean, min and max of every GatedPool's gate output over `images`, in batches.

  Args:
    model: a model of `experiments.models` (it has `pool_inputs`), in eval mode.
    images: `(N, ...)` model inputs (after `prepare`).
    batch_size: images per forward pass; the last batch is padded and masked.
    prepare: applied to each batch of `images` before the model (e.g. uint8 ->
      float scaling).
  """
  gated = [(i, layer, p) for i, (layer, p) in enumerate(_pools_in_slot_order(model))]
  gated = [(i, layer, p) for i, layer, p in gated if isinstance(p, jp_nnx.GatedPool)]
  if not gated:
    return {}
  images = jnp.asarray(images)
  n = images.shape[0]
  num_batches = -(-n // batch_size)
  index = jnp.arange(num_batches * batch_size).reshape(num_batches, batch_size)

  def batch(totals, idx):
    valid = idx < n
    seen = model.pool_inputs(prepare(images[jnp.minimum(idx, n - 1)]))
    new = []
    for (i, _, pool), (total, count, lo, hi) in zip(gated, totals):
      g = gate_output(pool, seen[i]).astype(jnp.float32)
      mask = jnp.broadcast_to(valid.reshape((-1,) + (1,) * (g.ndim - 1)), g.shape)
      new.append(
        (
          total + jnp.where(mask, g, 0.0).sum(),
          count + mask.sum(),
          jnp.minimum(lo, jnp.where(mask, g, jnp.inf).min()),
          jnp.maximum(hi, jnp.where(mask, g, -jnp.inf).max()),
        )
      )
    return new, None

  init = [(jnp.float32(0), jnp.int32(0), jnp.float32(jnp.inf), jnp.float32(-jnp.inf))] * len(gated)
  totals, _ = jax.lax.scan(batch, init, index)
  out = {}
  for (_, layer, _), (total, count, lo, hi) in zip(gated, totals):
    out[f"{PREFIX}/{layer}/gate/mean"] = total / count
    out[f"{PREFIX}/{layer}/gate/min"] = lo
    out[f"{PREFIX}/{layer}/gate/max"] = hi
  return out


def _pools_in_slot_order(model) -> list[tuple[str, nnx.Module]]:
  """Every module in a pooling slot of `model`, in the order of `pool_inputs`."""
  if hasattr(model, "pools"):
    return [(f"pools.{i}", p) for i, p in enumerate(model.pools)]
  return [("pool", model.pool)]
