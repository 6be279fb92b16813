r"""A stride-1 convolution whose kernel gradient is an ordinary forward convolution.

Used by the convolutions of the MNIST models (`experiments/models.py`) and handed
to the logit network of LIP pooling in them (`conv_general_dilated` of
:class:`jaxpool.nnx.LIPPool`, a C -> C convolution that is most of the cost of an
LIP layer); jaxpool itself uses flax's convolution.
Same values and gradients as `lax.conv_general_dilated`; only how
the kernel gradient is computed differs. XLA:CPU evaluates the kernel gradient of
a convolution (the "backward filter" convolution JAX's transpose rule emits, with
the batch as contraction dim and the image as window) far slower inside a
while loop (a training epoch under `lax.scan`) than outside one (case: the LIP
train step under `lax.scan`, the benchmark's training table). Here it is written as
a plain VALID forward convolution instead. For channels-last `x` of shape
`(N, *S, I)` padded to `x_pad`, output gradient `g` of shape `(N, *S', O)` and a
kernel `K` of shape `(*k, I, O)`:

.. math:: \frac{\partial L}{\partial K}[a, i, o] = \sum_{n, s} x_{pad}[n, s + a, i]\, g[n, s, o]

i.e. the VALID convolution of `x_pad` laid out as `(I, *S, N)` (batch `I`,
features `N`) with `g` laid out as `(*S', N, O)` as the kernel. The input gradient
(JAX's transpose rule emits a convolution whose kernel flip and in/out swap are
folded into the dimension numbers: as slow in a loop) is written as the
forward convolution of `g` with the explicitly flipped, in/out-swapped kernel and
padding `(k - 1 - lo, k - 1 - hi)`.

With one input channel (a first layer on grayscale images) and on CPU, the forward
pass is a sum of shifted copies of the input times kernel rows (`_shifted_products`),
and `biased_conv` adds a bias whose gradient comes out of the kernel gradient's
matrix product.

Only stride 1, no dilation, one feature group and channels-last layouts (flax's)
take this path; anything else is passed to `lax.conv_general_dilated` unchanged.
The path is a custom VJP: `jax.jvp` (forward mode) through it is not supported.

Example (as flax's Conv calls it):
  >>> import jax, jax.numpy as jnp
  >>> from experiments import fast_conv
  >>> x, k = jnp.ones((2, 5, 5, 3)), jnp.ones((3, 3, 3, 4))
  >>> fast_conv.conv_general_dilated(x, k, (1, 1), "SAME",
  ...                                dimension_numbers=("NHWC", "HWIO", "NHWC")).shape
  (2, 5, 5, 4)
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def _channels_last(ndim: int) -> lax.ConvDimensionNumbers:
  spatial = tuple(range(1, ndim - 1))
  return lax.ConvDimensionNumbers(
    lhs_spec=(0, ndim - 1) + spatial,
    rhs_spec=(ndim - 1, ndim - 2) + tuple(range(ndim - 2)),
    out_spec=(0, ndim - 1) + spatial,
  )


def _forward(x: jax.Array, kernel: jax.Array, pads, precision) -> jax.Array:
  return lax.conv_general_dilated(
    x,
    kernel,
    (1,) * (x.ndim - 2),
    pads,
    dimension_numbers=_channels_last(x.ndim),
    precision=precision,
  )


def _zero_padded(x: jax.Array, pads) -> jax.Array:
  """`x` (N, *S, C) zero-padded by `pads` ((lo, hi) per spatial dim)."""
  return lax.pad(
    x, np.zeros((), x.dtype), [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)]
  )


def _shifted(x_pad: jax.Array, offset, out) -> jax.Array:
  """The (N, *out, C) slice of `x_pad` starting at the kernel `offset`: the input
  element that kernel position reads for every output position."""
  return x_pad[(slice(None),) + tuple(slice(a, a + o) for a, o in zip(offset, out))]


def _shifted_products(x: jax.Array, kernel: jax.Array, pads) -> jax.Array:
  """The convolution of a one-channel `x` as a sum of shifted copies times kernel rows.

  ``y[n, s, o] = sum_a x_pad[n, s + a, 0] K[a, 0, o]``: one fused elementwise pass
  writing the output, K multiply-adds per output element. XLA:CPU's convolution
  with one input channel is slower (case: the seed CNN's first layer, one input
  channel to 32, 3x3 VALID, with bias and ReLU).
  """
  nd = x.ndim - 2
  x_pad = _zero_padded(x, pads)
  out = tuple(size - k + 1 for size, k in zip(x_pad.shape[1:-1], kernel.shape[:nd]))
  y = None
  for offset in np.ndindex(*kernel.shape[:nd]):
    term = _shifted(x_pad, offset, out) * kernel[offset][0].astype(x.dtype)  # (N, *S', 1) * (O,)
    y = term if y is None else y + term
  assert y is not None  # the kernel has at least one offset
  return y


def _primal(x: jax.Array, kernel: jax.Array, bias: jax.Array, pads, precision) -> jax.Array:
  """The convolution plus `bias`: for one input channel on CPU `_shifted_products`."""
  bias = bias.astype(x.dtype)
  if x.shape[-1] != 1 or x.dtype != kernel.dtype:
    return _forward(x, kernel, pads, precision) + bias
  return lax.platform_dependent(
    x,
    kernel,
    bias,
    cpu=lambda x, k, b: _shifted_products(x, k, pads) + b,
    default=lambda x, k, b: _forward(x, k, pads, precision) + b,
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _conv(
  x: jax.Array,
  kernel: jax.Array,
  bias: jax.Array,
  pads: tuple[tuple[int, int], ...],
  precision: Any,
) -> jax.Array:
  return _primal(x, kernel, bias, pads, precision)


def _conv_fwd(x, kernel, bias, pads, precision):
  return _primal(x, kernel, bias, pads, precision), (x, kernel, bias)


# Bytes of one chunk of images of the kernel gradient (about a CPU's L2 cache).
_CHUNK_BYTES = 1 << 20


def _kernel_and_bias_grad(x_pad: jax.Array, g: jax.Array, kernel_window, precision):
  """dK[a, i, o] = sum_{n, s} x_pad[n, s + a, i] g[n, s, o], shape (*k, I, O), and
  the bias gradient db[o] = sum_{n, s} g[n, s, o]."""
  nd = x_pad.ndim - 2
  if x_pad.shape[-1] == 1:
    # One input channel (a first layer on grayscale images): one matrix product
    # of the (N * S', K + 1) patches of x_pad with g, faster than the
    # convolution. The last patch column is ones, so that the product's last row
    # is the bias gradient: as a reduction of its own it was a large share of the
    # seed_cnn training step (case: the benchmark's training table).
    out = g.shape[1:-1]
    patches = jnp.stack(
      [_shifted(x_pad, offset, out)[..., 0] for offset in np.ndindex(*kernel_window)]
      + [jnp.ones((x_pad.shape[0], *out), x_pad.dtype)],
      axis=-1,
    )
    dk = lax.dot(
      patches.reshape(-1, patches.shape[-1]).T, g.reshape(-1, g.shape[-1]), precision=precision
    )
    return dk[:-1].reshape(tuple(kernel_window) + (1, g.shape[-1])), dk[-1]
  return _kernel_grad(x_pad, g, kernel_window, precision), jnp.sum(g, axis=tuple(range(nd + 1)))


def _kernel_grad(x_pad: jax.Array, g: jax.Array, kernel_window, precision) -> jax.Array:
  """dK[a, i, o] = sum_{n, s} x_pad[n, s + a, i] g[n, s, o], shape (*k, I, O)."""
  nd = x_pad.ndim - 2

  def one(xg):
    xc, gc = xg
    lhs = xc.transpose((nd + 1,) + tuple(range(1, nd + 1)) + (0,))  # (I, *S, n)
    rhs = gc.transpose(tuple(range(1, nd + 1)) + (0, nd + 1))  # (*S', n, O)
    return _forward(lhs, rhs, ((0, 0),) * nd, precision)  # (I, *k, O)

  # In chunks of images that fit in cache, summed: faster on CPU than one
  # convolution over the whole batch. A power of two images per chunk; the batch
  # is padded with zero images (which add nothing) to a whole number of chunks.
  n = x_pad.shape[0]
  per_image = int(np.prod(x_pad.shape[1:])) * x_pad.dtype.itemsize
  chunk = min(n, 1 << max(0, (_CHUNK_BYTES // max(per_image, 1)).bit_length() - 1))
  chunks = -(-n // chunk)
  if chunks == 1:
    dk = one((x_pad, g))
  else:
    extra = [(0, chunks * chunk - n)] + [(0, 0)] * (nd + 1)
    x_pad, g = jnp.pad(x_pad, extra), jnp.pad(g, extra)
    split = lambda a: a.reshape((chunks, chunk) + a.shape[1:])
    dk = jnp.sum(lax.map(one, (split(x_pad), split(g))), axis=0)
  return dk.transpose(tuple(range(1, nd + 1)) + (0, nd + 1))


def _cpu_bwd(x, kernel, bias, g, pads, precision):
  nd = x.ndim - 2
  # dx: the forward convolution of g with the flipped kernel (in and out swapped).
  # What JAX's transpose rule emits instead (the same convolution with the flip and
  # swap folded into the dimension numbers) is far slower inside a loop.
  flipped = jnp.flip(kernel, tuple(range(nd))).swapaxes(-1, -2).astype(g.dtype)
  back = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(kernel.shape[:nd], pads))
  dx = _forward(g, flipped, back, precision).astype(x.dtype)
  x_pad = _zero_padded(x, pads)
  dk, db = _kernel_and_bias_grad(x_pad, g.astype(x.dtype), kernel.shape[:nd], precision)
  return dx, dk.astype(kernel.dtype), db.astype(bias.dtype)


def _default_bwd(x, kernel, bias, g, pads, precision):
  _, vjp = jax.vjp(
    lambda x, k, b: _forward(x, k, pads, precision) + b.astype(x.dtype), x, kernel, bias
  )
  return vjp(g)


def _conv_bwd(pads, precision, residuals, g):
  x, kernel, bias = residuals
  # Only XLA:CPU needs the rewrite; other backends keep JAX's own gradient.
  return lax.platform_dependent(
    x,
    kernel,
    bias,
    g,
    cpu=functools.partial(_cpu_bwd, pads=pads, precision=precision),
    default=functools.partial(_default_bwd, pads=pads, precision=precision),
  )


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_general_dilated(
  lhs,
  rhs,
  window_strides,
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count: int = 1,
  batch_group_count: int = 1,
  precision=None,
  **kwargs,
) -> jax.Array:
  """Drop-in for `lax.conv_general_dilated` (the `conv_general_dilated` of flax's Conv).

  Takes the loop-friendly kernel gradient (module docstring) for stride 1, no
  dilation, one group and channels-last dimension numbers with no extra options;
  otherwise calls `lax.conv_general_dilated` with the same arguments.
  """
  ndim = lhs.ndim
  nd = ndim - 2
  ones = (1,) * nd
  simple = (
    ndim >= 3
    and rhs.ndim == ndim
    and tuple(window_strides) == ones
    and (lhs_dilation is None or tuple(lhs_dilation) == ones)
    and (rhs_dilation is None or tuple(rhs_dilation) == ones)
    and feature_group_count == 1
    and batch_group_count == 1
    and all(v is None for v in kwargs.values())
    and dimension_numbers is not None
    and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == _channels_last(ndim)
  )
  if not simple:
    return lax.conv_general_dilated(
      lhs,
      rhs,
      window_strides,
      padding,
      lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count,
      batch_group_count=batch_group_count,
      precision=precision,
      **kwargs,
    )
  # A zero bias, whose add XLA drops and whose gradient nobody reads.
  return _conv(lhs, rhs, jnp.zeros(rhs.shape[-1], lhs.dtype), _pads(lhs, rhs, padding), precision)


def _pads(x, kernel, padding) -> tuple[tuple[int, int], ...]:
  if isinstance(padding, str):
    pads = lax.padtype_to_pads(x.shape[1:-1], kernel.shape[:-2], (1,) * (x.ndim - 2), padding)
  else:
    pads = padding
  return tuple((int(lo), int(hi)) for lo, hi in pads)


def biased_conv(x: jax.Array, kernel: jax.Array, bias: jax.Array, padding) -> jax.Array:
  """``conv(x, kernel) + bias``, stride 1, channels last (`x` of shape `(N, *S, I)`,
  `kernel` `(*k, I, O)`, `bias` `(O,)`): `conv_general_dilated`'s gradients, with the
  bias gradient from the kernel gradient's matrix product where that is one (one
  input channel, on CPU). `padding`: "SAME", "VALID" or (lo, hi) pairs."""
  if x.ndim < 3 or kernel.ndim != x.ndim or bias.shape != kernel.shape[-1:]:
    raise ValueError(
      f"biased_conv: expected x (N, *S, I), kernel (*k, I, O) and bias (O,), "
      f"got {x.shape}, {kernel.shape} and {bias.shape}."
    )
  return _conv(x, kernel, bias, _pads(x, kernel, padding), None)
