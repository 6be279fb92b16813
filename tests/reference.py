"""Independent numpy references for window pooling: plain loops over windows.

Nothing here imports jaxpool: output sizes, SAME padding and window positions are
recomputed from their written definitions (PyTorch's output-size rule, XLA's SAME
rule), so the tests compare two independent implementations.

Layout is channels-last `(B, *spatial, C)` with exactly one batch dim; tests move
axes themselves for other layouts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from collections.abc import Sequence

import numpy as np


def output_size(
  size: int, window: int, stride: int, lo: int, hi: int, dilation: int, ceil_mode: bool
) -> int:
  """PyTorch's pooling output size, with asymmetric padding."""
  effective = dilation * (window - 1) + 1
  span = size + lo + hi - effective
  if ceil_mode:
    out = math.ceil(span / stride) + 1
    if (out - 1) * stride >= size + lo:
      out -= 1
    return out
  return span // stride + 1


def same_padding(size: int, window: int, stride: int, dilation: int = 1) -> tuple[int, int]:
  """XLA's SAME padding: output ceil(size / stride), odd pixel on the high side."""
  effective = dilation * (window - 1) + 1
  out = math.ceil(size / stride)
  total = max((out - 1) * stride + effective - size, 0)
  return total // 2, total - total // 2


def per_dim(value, n: int, default: int = 1) -> tuple[int, ...]:
  """None -> default, int -> repeated, sequence -> tuple."""
  if value is None:
    return (default,) * n
  if isinstance(value, int):
    return (value,) * n
  return tuple(value)


def resolve_padding(padding, spatial: Sequence[int], window, strides, dilation):
  """Padding argument -> list of (lo, hi) pairs, by the DESIGN.md rules."""
  n = len(spatial)
  if isinstance(padding, str):
    if padding.upper() == "VALID":
      return [(0, 0)] * n
    return [same_padding(L, k, s, d) for L, k, s, d in zip(spatial, window, strides, dilation)]
  if isinstance(padding, int):
    return [(padding, padding)] * n
  padding = list(padding)
  if all(isinstance(p, int) for p in padding):
    return [(p, p) for p in padding]
  return [tuple(p) for p in padding]


def window_layout(spatial, window, strides, padding, dilation, ceil_mode):
  """(strides, dilation, [(lo, hi)] pads, output sizes) per spatial dim."""
  n = len(spatial)
  strides, dilation = per_dim(strides, n), per_dim(dilation, n)
  pads = resolve_padding(padding, spatial, window, strides, dilation)
  outs = [
    output_size(L, k, s, lo, hi, d, ceil_mode)
    for L, k, s, (lo, hi), d in zip(spatial, window, strides, pads, dilation)
  ]
  return strides, dilation, pads, outs


def window_members(o, window, strides, dilation, pads, spatial):
  """Window `o`'s elements inside the input (positions, row-major window order) and
  its count of elements inside the input or the declared padding."""
  inputs, declared = [], 0
  for k in itertools.product(*map(range, window)):
    pos = tuple(
      oi * s - lo + ki * d for oi, s, (lo, _), ki, d in zip(o, strides, pads, k, dilation)
    )
    if all(0 <= p < L for p, L in zip(pos, spatial)):
      inputs.append(pos)
    declared += all(-lo <= p < L + hi for p, L, (lo, hi) in zip(pos, spatial, pads))
  return inputs, declared


def window_pool(
  x: np.ndarray,
  window: Sequence[int],
  strides=None,
  padding="VALID",
  *,
  dilation=None,
  ceil_mode: bool = False,
  reduce: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
):
  """Apply `reduce` to every window of a channels-last `(B, *spatial, C)` array.

  `reduce(values, in_input, in_padding)` gets, for one output position, the window
  `values` of shape `(K, B, C)` in row-major window order (0 where outside the
  input), `in_input` of shape `(K,)` (the element lies in the input) and
  `in_padding` (it lies in the input or the declared padding, not the ceil_mode
  overhang); it returns `(B, C)`.
  """
  x = np.asarray(x)
  spatial = x.shape[1:-1]
  strides, dilation, pads, outs = window_layout(
    spatial, window, strides, padding, dilation, ceil_mode
  )
  result = np.zeros((x.shape[0], *outs, x.shape[-1]), dtype=np.float64)
  for o in itertools.product(*map(range, outs)):
    values, in_input, in_padding = [], [], []
    for k in itertools.product(*map(range, window)):
      pos = [oi * s - lo + ki * d for oi, s, (lo, _), ki, d in zip(o, strides, pads, k, dilation)]
      inside = all(0 <= p < L for p, L in zip(pos, spatial))
      declared = all(-lo <= p < L + hi for p, L, (lo, hi) in zip(pos, spatial, pads))
      values.append(
        x[(slice(None), *pos, slice(None))]
        if inside
        else np.zeros((x.shape[0], x.shape[-1]), x.dtype)
      )
      in_input.append(inside)
      in_padding.append(declared)
    result[(slice(None), *o, slice(None))] = reduce(
      np.stack(values), np.array(in_input), np.array(in_padding)
    )
  return result


def _extremum(values, in_input, sign):
  """Max (sign=1) or min (sign=-1) over the in-input elements; NaN if any is NaN."""
  v = values[in_input].astype(np.float64)
  if v.shape[0] == 0:
    return np.full(values.shape[1:], -sign * np.inf)
  out = sign * np.max(sign * v, axis=0)
  return np.where(np.isnan(v).any(axis=0), np.nan, out)


def max_pool(x, window, strides=None, padding="VALID", **kw):
  return window_pool(
    x, window, strides, padding, **kw, reduce=lambda v, inside, _: _extremum(v, inside, 1)
  )


def min_pool(x, window, strides=None, padding="VALID", **kw):
  return window_pool(
    x, window, strides, padding, **kw, reduce=lambda v, inside, _: _extremum(v, inside, -1)
  )


def sum_pool(x, window, strides=None, padding="VALID", **kw):
  return window_pool(
    x, window, strides, padding, **kw, reduce=lambda v, inside, _: v.astype(np.float64).sum(axis=0)
  )


def avg_pool(
  x, window, strides=None, padding="VALID", count_include_pad=True, divisor_override=None, **kw
):
  def reduce(v, inside, declared):
    total = v.astype(np.float64).sum(axis=0)
    if divisor_override is not None:
      return total / divisor_override
    return total / (declared.sum() if count_include_pad else inside.sum())

  return window_pool(x, window, strides, padding, **kw, reduce=reduce)


def max_pool_grad(x, cotangent, window, strides=None, padding="VALID", sign=1, **kw):
  """Gradient of sum(cotangent * max_pool(x)) by PyTorch's routing rule.

  Each output's cotangent goes to the first maximal in-input element of its window
  in row-major order, or to the last NaN when the window holds one; overlapping
  windows add up. `sign=-1` gives the min-pool rule.
  """
  x = np.asarray(x, np.float64)
  grad = np.zeros_like(x)
  spatial = x.shape[1:-1]
  strides, dilation, pads, outs = window_layout(
    spatial, window, strides, padding, kw.get("dilation"), kw.get("ceil_mode", False)
  )
  for b, c in itertools.product(range(x.shape[0]), range(x.shape[-1])):
    for o in itertools.product(*map(range, outs)):
      best, best_pos = None, None
      for k in itertools.product(*map(range, window)):
        pos = tuple(
          oi * s - lo + ki * d for oi, s, (lo, _), ki, d in zip(o, strides, pads, k, dilation)
        )
        if not all(0 <= p < L for p, L in zip(pos, spatial)):
          continue
        v = x[(b, *pos, c)]
        if best is None:
          best, best_pos = v, pos
        elif np.isnan(v) or (not np.isnan(best) and sign * v > sign * best):
          best, best_pos = v, pos
      if best_pos is not None:
        grad[(b, *best_pos, c)] += cotangent[(b, *o, c)]
  return grad


# --- adaptive, argmax, unpool and fractional windows (issue 4) ----------------------


def select_max(values: Sequence[float]) -> tuple[float, int]:
  """PyTorch's kernel loop: (value, position) of the first maximum or the last NaN."""
  best, best_k = None, None
  for k, v in enumerate(values):
    if best is None or v > best or np.isnan(v):
      best, best_k = v, k
  return best, best_k


def box_pool(x, windows, reduce):
  """Pool a channels-last `(B, *spatial, C)` array over explicit box windows.

  `windows[d]` is either a list of position lists (the same windows for every
  example and channel) or a function `(b, c) -> list of position lists`.
  `reduce(values, flat_positions)` gets one window's values in row-major order and
  the flat row-major index of each in the spatial plane, and returns a number.
  Returns a float64 array `(B, *out, C)`.
  """
  x = np.asarray(x)
  spatial = x.shape[1:-1]
  plane_strides = [int(np.prod(spatial[d + 1 :])) for d in range(len(spatial))]
  B, C = x.shape[0], x.shape[-1]
  result = None
  for b, c in itertools.product(range(B), range(C)):
    per_dim = [w(b, c) if callable(w) else w for w in windows]
    if result is None:
      result = np.zeros((B, *[len(w) for w in per_dim], C))
    for o in itertools.product(*[range(len(w)) for w in per_dim]):
      positions = list(itertools.product(*[per_dim[d][i] for d, i in enumerate(o)]))
      values = [x[(b, *p, c)] for p in positions]
      flat = [sum(pi * s for pi, s in zip(p, plane_strides)) for p in positions]
      result[(b, *o, c)] = reduce(values, flat)
  return result


def adaptive_windows(size: int, out: int) -> list[list[int]]:
  """PyTorch's adaptive windows: [floor(i L / o), ceil((i + 1) L / o))."""
  return [
    list(range(math.floor(i * size / out), math.ceil((i + 1) * size / out))) for i in range(out)
  ]


def adaptive_avg_pool(x, out):
  windows = [adaptive_windows(L, o) for L, o in zip(np.shape(x)[1:-1], out)]
  return box_pool(x, windows, lambda v, _: np.mean(np.asarray(v, np.float64)))


def adaptive_max_pool(x, out):
  """(values, indices) of PyTorch's adaptive max pool, channels-last."""
  windows = [adaptive_windows(L, o) for L, o in zip(np.shape(x)[1:-1], out)]
  values = box_pool(x, windows, lambda v, _: select_max(v)[0])
  indices = box_pool(x, windows, lambda v, flat: flat[select_max(v)[1]])
  return values, indices.astype(np.int64)


def max_pool_argmax(x, window, strides=None, padding="VALID", *, dilation=None, ceil_mode=False):
  """Indices of PyTorch's max_pool(return_indices=True), channels-last; -1 if empty."""
  x = np.asarray(x)
  spatial = x.shape[1:-1]
  strides, dilation, pads, outs = window_layout(
    spatial, window, strides, padding, dilation, ceil_mode
  )
  windows = [
    [[o * s - lo + k * d for k in range(kk) if 0 <= o * s - lo + k * d < L] for o in range(out)]
    for L, kk, s, (lo, _), d, out in zip(spatial, window, strides, pads, dilation, outs)
  ]
  return box_pool(x, windows, lambda v, flat: flat[select_max(v)[1]] if v else -1).astype(np.int64)


def max_unpool(values, indices, output_shape):
  """PyTorch's sequential max_unpool loop (last write wins), channels-last.

  Indices outside the output plane are skipped.
  """
  values, indices = np.asarray(values), np.asarray(indices)
  B, C = values.shape[0], values.shape[-1]
  size = int(np.prod(output_shape))
  out = np.zeros((B, size, C), values.dtype)
  for b, c in itertools.product(range(B), range(C)):
    for o in itertools.product(*map(range, values.shape[1:-1])):
      j = indices[(b, *o, c)]
      if 0 <= j < size:
        out[b, j, c] = values[(b, *o, c)]
  return out.reshape((B, *output_shape, C))


def fractional_starts(u: float, size: int, out: int, window: int) -> list[int]:
  """PyTorch's generate_intervals, in float32 as its kernel for float32 inputs."""
  if out == 1:
    return [size - window]
  u = np.float32(u)
  alpha = np.float32(size - window) / np.float32(out - 1)
  seq = [int(np.float32(np.float32(i) + u) * alpha) - int(u * alpha) for i in range(out - 1)]
  return seq + [size - window]


def fractional_max_pool(x, window, outs, samples, overlapping):
  """(values, indices) of fractional max pooling with samples `(B, C, n)`, channels-last.

  overlapping: windows [s_i, s_i + k); otherwise [s_i, min(s_i + k, max(s_{i+1}, s_i + 1))).
  """
  spatial = np.shape(x)[1:-1]

  def windows_of(d):
    def windows(b, c):
      starts = fractional_starts(samples[b, c, d], spatial[d], outs[d], window[d])
      result = []
      for i, s in enumerate(starts):
        end = s + window[d]
        if not overlapping and i + 1 < len(starts):
          end = min(end, max(starts[i + 1], s + 1))  # never empty (rounding)
        result.append(list(range(s, end)))
      return result

    return windows

  windows = [windows_of(d) for d in range(len(spatial))]
  values = box_pool(x, windows, lambda v, _: select_max(v)[0])
  indices = box_pool(x, windows, lambda v, flat: flat[select_max(v)[1]])
  return values, indices.astype(np.int64)


def scatter_grad(shape, indices, cotangent):
  """Gradient of a max-type pool that routes each output's cotangent to `indices`.

  channels-last `(B, *spatial, C)` input `shape`; indices flat per plane; -1 skipped.
  """
  B, C = shape[0], shape[-1]
  grad = np.zeros((B, int(np.prod(shape[1:-1])), C))
  idx = np.asarray(indices).reshape(B, -1, C)
  ct = np.asarray(cotangent, np.float64).reshape(B, -1, C)
  for b, o, c in itertools.product(range(B), range(idx.shape[1]), range(C)):
    if idx[b, o, c] >= 0:
      grad[b, idx[b, o, c], c] += ct[b, o, c]
  return grad.reshape(shape)


def avg_pool_grad(
  x,
  cotangent,
  window,
  strides=None,
  padding="VALID",
  count_include_pad=True,
  divisor_override=None,
  **kw,
):
  """Gradient of sum(cotangent * avg_pool(x)): each output's cotangent divided by its
  divisor goes to every in-input element of its window; overlapping windows add up.

  `divisor_override=1` gives the gradient of sum pooling. A window without input
  elements contributes nothing (whatever its divisor).
  """
  x = np.asarray(x, np.float64)
  grad = np.zeros_like(x)
  spatial = x.shape[1:-1]
  strides, dilation, pads, outs = window_layout(
    spatial, window, strides, padding, kw.get("dilation"), kw.get("ceil_mode", False)
  )
  for o in itertools.product(*map(range, outs)):
    inputs, declared = window_members(o, window, strides, dilation, pads, spatial)
    if divisor_override is not None:
      divisor = divisor_override
    else:
      divisor = declared if count_include_pad else len(inputs)
    for pos in inputs:
      grad[(slice(None), *pos, slice(None))] += cotangent[(slice(None), *o, slice(None))] / divisor
  return grad


# --- mixed / gated / tree, soft / LIP, blur (issue 4) -----------------------------


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def _flat_weights(w, window):
  """(*window, 1 or C) -> (K, 1, 1 or C), rows in row-major window order."""
  w = np.asarray(w, np.float64)
  return w.reshape(int(np.prod(window)), 1, w.shape[-1])


def gated_pool(x, gate, window, strides=None, padding="VALID", count_include_pad=True, **kw):
  """sigmoid(sum_k gate_k x_k) * max + (1 - sigmoid) * avg, zero padding in the sum."""
  g = _flat_weights(gate, window)

  def reduce(v, inside, declared):
    v = v.astype(np.float64)
    gate_value = _sigmoid((g * v).sum(axis=0))
    if not inside.any():  # documented choice: a window with no input element gives 0
      return np.zeros(v.shape[1:])
    big = _extremum(v, inside, 1)
    mean = v.sum(axis=0) / (declared.sum() if count_include_pad else inside.sum())
    return gate_value * big + (1 - gate_value) * mean

  return window_pool(x, window, strides, padding, **kw, reduce=reduce)


def tree_pool(x, leaves, gates, window, strides=None, padding="VALID", **kw):
  """The tree of Lee et al. 2016 evaluated recursively from the root (node 0)."""
  n_leaves = len(leaves)
  v = [_flat_weights(leaf, window) for leaf in leaves]
  w = [_flat_weights(gate, window) for gate in gates]

  def reduce(values, inside, declared):
    values = values.astype(np.float64)

    def node(i):
      if i >= n_leaves - 1:  # a leaf
        return (v[i - (n_leaves - 1)] * values).sum(axis=0)
      g = _sigmoid((w[i] * values).sum(axis=0))
      return g * node(2 * i + 1) + (1 - g) * node(2 * i + 2)

    return node(0)

  return window_pool(x, window, strides, padding, **kw, reduce=reduce)


def lip_pool(x, logits, window, strides=None, padding="VALID", **kw):
  """sum x e^l / sum e^l over the in-input elements of every window (float64, shifted)."""
  x = np.asarray(x, np.float64)
  logits = np.broadcast_to(np.asarray(logits, np.float64), x.shape)
  channels = x.shape[-1]

  def reduce(v, inside, declared):
    values, ell = v[:, :, :channels], v[:, :, channels:]
    out = np.zeros(v.shape[1:])  # (B, 2C): the second half is dropped below
    if inside.any():
      values, ell = values[inside], ell[inside]
      weights = np.exp(ell - ell.max(axis=0))
      out[:, :channels] = (weights * values).sum(axis=0) / weights.sum(axis=0)
    return out

  stacked = np.concatenate([x, logits], axis=-1)  # one window loop sees both arrays
  return window_pool(stacked, window, strides, padding, **kw, reduce=reduce)[..., :channels]


def binomial_row(size: int) -> np.ndarray:
  """Row `size - 1` of Pascal's triangle, by repeated convolution with [1, 1]."""
  row = np.array([1.0])
  for _ in range(size - 1):
    row = np.convolve(row, [1.0, 1.0])
  return row


def blur_pool(x, strides, filter_size=3, pool="max", window=None, padding="reflect"):
  """Zhang 2019: dense pool (stride 1, no padding), pad, binomial filter, subsample."""
  x = np.asarray(x, np.float64)
  n = x.ndim - 2
  strides = per_dim(strides, n)
  window = per_dim(window, n, 2) if window is not None else (2,) * n
  if pool == "max":
    x = max_pool(x, window, 1)
  elif pool == "avg":
    x = avg_pool(x, window, 1)
  mode = {"reflect": "reflect", "replicate": "edge", "zero": "constant"}[padding]
  pad = [(0, 0)] + [((filter_size - 1) // 2, filter_size // 2)] * n + [(0, 0)]
  x = np.pad(x, pad, mode=mode)
  row = binomial_row(filter_size)
  kernel = row
  for _ in range(n - 1):
    kernel = np.multiply.outer(kernel, row)
  flat = (kernel / kernel.sum()).reshape(-1, 1, 1)
  return window_pool(
    x,
    (filter_size,) * n,
    strides,
    "VALID",
    reduce=lambda v, inside, _: (flat * v.astype(np.float64)).sum(axis=0),
  )


# --- gradients of lp_pool and soft_pool (issue 8) ---------------------------------


def window_grad(
  x, cotangent, window, strides=None, padding="VALID", *, dilation=None, ceil_mode=False, local_grad
):
  """Gradient of sum(cotangent * pool(x)) for a pool defined window by window.

  `local_grad(values, declared)` gets the window's in-input elements `(K_in, B, C)`
  (float64) and its count of elements in the input or declared padding, and returns
  d pool / d values `(K_in, B, C)`; each is multiplied by the window's cotangent and
  added onto its input element (overlapping windows add up).
  """
  x = np.asarray(x, np.float64)
  cotangent = np.asarray(cotangent, np.float64)
  grad = np.zeros_like(x)
  spatial = x.shape[1:-1]
  strides, dilation, pads, outs = window_layout(
    spatial, window, strides, padding, dilation, ceil_mode
  )
  for o in itertools.product(*map(range, outs)):
    inputs, declared = window_members(o, window, strides, dilation, pads, spatial)
    if not inputs:
      continue
    values = np.stack([x[(slice(None), *pos, slice(None))] for pos in inputs])
    local = local_grad(values, declared) * cotangent[(slice(None), *o, slice(None))]
    for pos, g in zip(inputs, local):
      grad[(slice(None), *pos, slice(None))] += g
  return grad


def lp_pool_grad(x, cotangent, p, window, strides=None, padding="VALID", mean=False, **kw):
  """Gradient of lp_pool: sign(x) |x|^(p-1) y^(1-p) / c per window; 0 if y = 0."""

  def local_grad(v, declared):
    c = declared if mean else 1
    y = ((np.abs(v) ** p).sum(axis=0) / c) ** (1 / p)
    safe = np.where(y > 0, y, 1.0)
    return np.where(y > 0, np.sign(v) * np.abs(v) ** (p - 1) * safe ** (1 - p) / c, 0.0)

  return window_grad(x, cotangent, window, strides, padding, **kw, local_grad=local_grad)


def soft_pool_grad(x, cotangent, window, strides=None, padding="VALID", **kw):
  """Gradient of soft_pool: softmax(v)_k (1 + v_k - y) per window (in-input elements)."""

  def local_grad(v, declared):
    w = np.exp(v - v.max(axis=0))
    prob = w / w.sum(axis=0)
    y = (prob * v).sum(axis=0)
    return prob * (1 + v - y)

  return window_grad(x, cotangent, window, strides, padding, **kw, local_grad=local_grad)


def lip_pool_grad(x, logits, cotangent, window, strides=None, padding="VALID", **kw):
  """Gradients of lip_pool in x and in the logits (same shape as x): per window
  p_k and p_k (x_k - y), p the softmax of the logits over its in-input elements."""
  x = np.asarray(x, np.float64)
  logits = np.broadcast_to(np.asarray(logits, np.float64), x.shape)
  channels = x.shape[-1]

  def local_grad(v, declared):  # v: (K_in, B, 2C), the x and logit halves side by side
    values, ell = v[..., :channels], v[..., channels:]
    w = np.exp(ell - ell.max(axis=0))
    prob = w / w.sum(axis=0)
    y = (prob * values).sum(axis=0)
    return np.concatenate([prob, prob * (values - y)], axis=-1)

  cotangent = np.asarray(cotangent, np.float64)
  grad = window_grad(
    np.concatenate([x, logits], axis=-1),
    np.concatenate([cotangent, cotangent], axis=-1),
    window,
    strides,
    padding,
    **kw,
    local_grad=local_grad,
  )
  return grad[..., :channels], grad[..., channels:]
