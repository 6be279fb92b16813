"""CNNs for MNIST with a pooling slot filled from `jaxpool.registry` (Flax NNX).

Two models, chosen by `config.model`:

- `seed_cnn` (`SeedCNN`): the classic Keras MNIST example,
  Conv(32, 3x3, VALID) - ReLU - pool - Flatten - Dense(128) - ReLU - Dense(10).
  Default pool: max 2x2, stride 2 (28x28 -> 26x26 -> 13x13).
- `zeiler_fergus` (`ZeilerFergusCNN`): the MNIST network of Zeiler & Fergus,
  "Stochastic Pooling for Regularization of Deep Convolutional Neural Networks"
  (ICLR 2013): 3 x [Conv(64, 5x5, SAME) - ReLU - pool 3x3 stride 2 SAME] - Dense(10)
  (28 -> 14 -> 7 -> 4).

Inputs are `(batch, 28, 28, 1)` floats in [0, 1]; outputs are `(batch, 10)` logits
in float32. `compute_dtype` ("float32" or "bfloat16") is the dtype of the
convolutions and dense layers; parameters stay float32.

Same seed, same initial conv and dense weights whatever the pool: the pools are
built from streams forked off the model's `nnx.Rngs` once, so a pool with parameters
(gated, tree, ...) does not shift the draws of the layers after it.

Pools with randomness (stochastic, fractional, ...) draw from the rng stream
"pooling" of the `nnx.Rngs` given to the model, and switch to their deterministic
form with `model.eval()`, back with `model.train()`.

Example:

    >>> from flax import nnx
    >>> model = build_model("seed_cnn", pool="max", pool_options={},
    ...                     rngs=nnx.Rngs(params=0, pooling=1))
    >>> model(jnp.zeros((2, 28, 28, 1))).shape
    (2, 10)
"""

from __future__ import annotations

from typing import Any
from typing import Callable
from typing import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from experiments import fast_conv
from jaxpool import registry

MODELS = ("seed_cnn", "zeiler_fergus")

# Pool options that each model uses unless the config overrides them.
DEFAULT_POOL_OPTIONS = {
  "seed_cnn": {"window_shape": (2, 2), "strides": (2, 2), "padding": "VALID"},
  "zeiler_fergus": {"window_shape": (3, 3), "strides": (2, 2), "padding": "SAME"},
}


class Conv(nnx.Module):
  """`nnx.Conv` for NHWC inputs, stride 1, with `fast_conv`'s loop-friendly conv VJP.

  XLA:CPU evaluates a convolution's kernel gradient 5-150x slower inside a while
  loop (our whole epoch is one `lax.scan`) than outside one; `experiments.fast_conv`
  computes the same gradients as ordinary forward convolutions (one matrix
  product for the one-channel first layer, which also gives the bias gradient:
  `fast_conv.biased_conv`).

  Parameters as `nnx.Conv`: `kernel` (kh, kw, in, out) with LeCun-normal init,
  `bias` (out,) zeros; computation in `dtype`, parameters float32.
  """

  def __init__(
    self,
    in_features: int,
    out_features: int,
    kernel_size: tuple[int, int],
    *,
    padding: str,
    dtype: Any = jnp.float32,
    rngs: nnx.Rngs,
  ):
    if padding not in ("SAME", "VALID"):
      raise ValueError(f"Conv: padding must be 'SAME' or 'VALID', got {padding!r}.")
    self.kernel = nnx.Param(
      nnx.initializers.lecun_normal()(
        rngs.params(), (*kernel_size, in_features, out_features), jnp.float32
      )
    )
    self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))
    self.padding = padding
    self.dtype = dtype

  def __call__(self, x):
    return fast_conv.biased_conv(
      x.astype(self.dtype), self.kernel[...].astype(self.dtype), self.bias[...], self.padding
    )


# Registry names that are not feature -> pooled-feature maps.
NOT_A_SLOT = {
  "max_argmax": "it returns (values, indices)",
  "max_unpool": "it unpools (needs indices from max_argmax)",
}


def make_pool(
  name: str, options: Mapping[str, Any], *, num_features: int, rngs: nnx.Rngs
) -> Callable:
  """A pooling module from `jaxpool.registry` for a layer with `num_features` channels.

  `options` are the registry's keyword options (window_shape, strides, padding,
  ...). An unknown `name` raises ValueError listing the valid names.
  """
  if name not in registry.names():
    raise ValueError(f"Unknown pool {name!r}; valid pool names: {sorted(registry.names())}.")
  if name in NOT_A_SLOT:
    raise ValueError(f"Pool {name!r} cannot fill a model's pooling slot: {NOT_A_SLOT[name]}.")
  options = dict(options)
  if "conv_general_dilated" in registry.info(name)["nnx_options"]:
    # LIP's logit convolution: the same values, with `fast_conv`'s kernel gradient
    # (XLA:CPU runs flax's default one far slower inside the epoch's `lax.scan`).
    options.setdefault("conv_general_dilated", fast_conv.conv_general_dilated)
  return registry.make(name, api="nnx", num_features=num_features, rngs=rngs, **options)


def _pool_options(model: str, pool: str, pool_options: Mapping[str, Any] | None) -> dict:
  """The model's default window options that `pool` accepts, then the config's.

  Window pools get the model's window_shape / strides / padding; pools without a
  window (global, adaptive, ...) get none of them, `blur` only the strides (its
  `padding` means something else). Options from the config always win.
  """
  accepted = set(registry.info(pool)["nnx_options"]) if pool in registry.names() else set()
  defaults = dict(DEFAULT_POOL_OPTIONS[model])
  if "output_ratio" in accepted:  # Fractional max pooling: halve each side, as stride 2.
    defaults = {"window_shape": defaults["window_shape"], "output_ratio": (0.5, 0.5)}
  window_padding = "window_shape" in accepted and pool != "blur"  # blur: padding mode.
  options = {
    k: v for k, v in defaults.items() if k in accepted and (k != "padding" or window_padding)
  }
  user = dict(pool_options or {})
  if "output_size" in user:
    options.pop("output_ratio", None)
  options.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in user.items()})
  return options


def _flat_size(layers, input_shape) -> int:
  """Features per example after `layers` (with a ReLU after each conv), traced
  abstractly in eval mode: the pool's output size depends on its options."""

  def apply(layers, x):
    for layer in layers:
      x = layer(x)
      if isinstance(layer, Conv):
        x = nnx.relu(x)
    return x

  for layer in layers:
    layer.eval()
  out = nnx.eval_shape(apply, layers, jax.ShapeDtypeStruct(input_shape, jnp.float32))
  for layer in layers:
    layer.train()
  if not isinstance(out, jax.ShapeDtypeStruct):
    raise ValueError(
      f"The pool returns {type(out).__name__}, not one array; a model's pooling "
      "slot needs a pool that maps features to pooled features."
    )
  return int(out.size) // input_shape[0]


class SeedCNN(nnx.Module):
  """Conv(32, 3x3, VALID) - ReLU - pool - Flatten - Dense(128) - ReLU - Dense(10).

  Args:
    pool: registry name of the pool.
    pool_options: registry options (default 2x2, stride 2, VALID).
    compute_dtype: dtype of the conv and dense computations.
    rngs: `nnx.Rngs` with streams "params" and, for random pools, "pooling".
  """

  def __init__(
    self,
    *,
    pool: str = "max",
    pool_options: Mapping[str, Any] | None = None,
    compute_dtype: Any = jnp.float32,
    rngs: nnx.Rngs,
  ):
    self.conv = Conv(1, 32, kernel_size=(3, 3), padding="VALID", dtype=compute_dtype, rngs=rngs)
    # The pool draws from streams forked off once (one draw of each stream, whatever
    # the pool), so that the conv and dense layers get the same initial values under
    # every pool: a study's pools differ per seed in the pool alone.
    self.pool = make_pool(
      pool, _pool_options("seed_cnn", pool, pool_options), num_features=32, rngs=rngs.fork()
    )
    flat = _flat_size([self.conv, self.pool], (1, 28, 28, 1))
    self.dense1 = nnx.Linear(flat, 128, dtype=compute_dtype, rngs=rngs)
    self.dense2 = nnx.Linear(128, 10, dtype=compute_dtype, rngs=rngs)

  def pool_inputs(self, x) -> list:
    """What the pooling slot sees for inputs `x`: `[relu(conv(x))]`."""
    return [nnx.relu(self.conv(x))]

  def __call__(self, x):
    x = nnx.relu(self.conv(x))
    x = self.pool(x)
    x = x.reshape(x.shape[0], -1)
    x = nnx.relu(self.dense1(x))
    return self.dense2(x).astype(jnp.float32)


class ZeilerFergusCNN(nnx.Module):
  """3 x [Conv(64, 5x5, SAME) - ReLU - pool] - Dense(10) (Zeiler & Fergus 2013).

  Args: as `SeedCNN`; default pool options 3x3, stride 2, SAME.
  """

  def __init__(
    self,
    *,
    pool: str = "max",
    pool_options: Mapping[str, Any] | None = None,
    compute_dtype: Any = jnp.float32,
    rngs: nnx.Rngs,
  ):
    options = _pool_options("zeiler_fergus", pool, pool_options)
    self.convs = nnx.List(
      [
        Conv(
          1 if i == 0 else 64,
          64,
          kernel_size=(5, 5),
          padding="SAME",
          dtype=compute_dtype,
          rngs=rngs,
        )
        for i in range(3)
      ]
    )
    pool_rngs = rngs.fork()  # As SeedCNN: the pools draw from their own streams.
    self.pools = nnx.List(
      [make_pool(pool, options, num_features=64, rngs=pool_rngs) for _ in range(3)]
    )
    layers = [m for pair in zip(self.convs, self.pools) for m in pair]
    flat = _flat_size(layers, (1, 28, 28, 1))
    self.dense = nnx.Linear(flat, 10, dtype=compute_dtype, rngs=rngs)

  def pool_inputs(self, x) -> list:
    """What each of the three pools sees for inputs `x`, in order."""
    seen = []
    for conv, pool in zip(self.convs, self.pools):
      seen.append(nnx.relu(conv(x)))
      x = pool(seen[-1])
    return seen

  def __call__(self, x):
    for conv, pool in zip(self.convs, self.pools):
      x = pool(nnx.relu(conv(x)))
    x = x.reshape(x.shape[0], -1)
    return self.dense(x).astype(jnp.float32)


def build_model(
  name: str,
  *,
  pool: str,
  pool_options: Mapping[str, Any] | None,
  compute_dtype: str | Any = "float32",
  rngs: nnx.Rngs,
) -> nnx.Module:
  """The model `name` ("seed_cnn" | "zeiler_fergus") with the given pool."""
  dtype = jnp.dtype(compute_dtype)
  if name == "seed_cnn":
    return SeedCNN(pool=pool, pool_options=pool_options, compute_dtype=dtype, rngs=rngs)
  if name == "zeiler_fergus":
    return ZeilerFergusCNN(pool=pool, pool_options=pool_options, compute_dtype=dtype, rngs=rngs)
  raise ValueError(f"Unknown model {name!r}; valid models: {list(MODELS)}.")
