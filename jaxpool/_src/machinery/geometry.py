"""Window geometry: user arguments -> `lax.reduce_window` arguments and shapes.

Every pooling function in jaxpool goes through :func:`resolve`, which validates
``window_shape``, ``strides``, ``padding``, ``dilation``, ``ceil_mode`` and
``channel_axis`` against the input shape and returns a hashable
:class:`PoolGeometry`. All validation errors of the window pools are raised here,
at trace time, naming the argument, the value received and what is allowed.

Conventions (see DESIGN.md):

* ``inputs`` is ``(*batch, *spatial, features)`` (``channel_axis=-1``, any number of
  batch dims, including none) or ``(N, C, *spatial)`` (``channel_axis=1``, PyTorch's
  batched layout). PyTorch's unbatched ``(C, *spatial)`` is refused with a ValueError,
  also a rank-2 ``(C, L)`` with ``channel_axis=1`` (whose index 1 is the last axis
  too): add the batch dim.
* ``padding`` is ``"VALID"``, ``"SAME"`` (or ``"SAME_LOWER"``, as ``lax``), an int
  (both sides of every spatial dim, as PyTorch), a sequence of ints (per dim, both
  sides) or a sequence of ``(low, high)`` pairs (as Flax).
* The output length of a spatial dim of size ``L`` with padding ``(lo, hi)``, window
  ``k``, dilation ``d`` and stride ``s`` is, with ``e = d * (k - 1) + 1``::

      floor((L + lo + hi - e) / s) + 1                      (ceil_mode=False)
      ceil((L + lo + hi - e) / s) + 1, minus 1 if the last
          window would start at or past L + lo               (ceil_mode=True, PyTorch)

  and must be >= 1. With ``ceil_mode`` that allows a window larger than the padded
  input (``L + lo + hi - e > -s``), as PyTorch does: one window, starting at the
  low padding, holding the whole input.

  With ``ceil_mode`` the last window may overhang the high padding; the overhang is
  implemented as extra high padding (``ceil_extra``) that is never counted by
  ``avg_pool`` and never selected by ``max_pool``.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.core
import jax.numpy as jnp
import numpy as np
from jax import lax

PaddingLike = str | int | Sequence[int] | Sequence[tuple[int, int]]


def is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def from_numpy(value: Any) -> Any:
  """Numpy (or concrete jax) arrays, also nested in lists and tuples, as nested
  tuples of Python scalars: Flax accepts such paddings, e.g. `np.array([[1, 1]])`."""
  if isinstance(value, jax.Array) and not isinstance(value, jax.core.Tracer):
    value = np.asarray(value)
  if isinstance(value, np.ndarray):
    return value.item() if value.ndim == 0 else tuple(from_numpy(v) for v in value)
  if isinstance(value, (list, tuple)):
    return tuple(from_numpy(v) for v in value)
  return value


def _int_tuple(
  value: Any, n: int, name: str, fn: str, *, minimum: int, allow_scalar: bool
) -> tuple[int, ...]:
  """`value` as a tuple of `n` ints >= `minimum`, or a clear error."""
  value = from_numpy(value)
  if allow_scalar and is_int(value):
    value = (value,) * n
  if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
    allowed = "an int or " if allow_scalar else ""
    raise TypeError(f"{fn}: {name} must be {allowed}a sequence of {n} ints, got {value!r}.")
  value = tuple(value)
  if not all(is_int(v) for v in value):
    raise TypeError(f"{fn}: {name} must contain only ints, got {value!r}.")
  if len(value) != n:
    raise ValueError(
      f"{fn}: {name} must have one entry per spatial dimension ({n}), "
      f"got {value!r} of length {len(value)}."
    )
  if any(v < minimum for v in value):
    raise ValueError(f"{fn}: every entry of {name} must be >= {minimum}, got {value!r}.")
  return tuple(int(v) for v in value)


def _same_padding(size: int, window: int, stride: int, lower: bool) -> tuple[int, int]:
  """XLA's SAME rule: output ceil(size / stride); the odd pixel goes high (low for SAME_LOWER)."""
  out = -(-size // stride)
  total = max((out - 1) * stride + window - size, 0)
  small, large = total // 2, total - total // 2
  return (large, small) if lower else (small, large)


def _explicit_padding(padding: Any, n: int, fn: str) -> tuple[tuple[int, int], ...]:
  padding = from_numpy(padding)
  if is_int(padding):
    pairs = ((padding, padding),) * n
  elif isinstance(padding, Sequence) and not isinstance(padding, (str, bytes)):
    padding = tuple(padding)
    if all(is_int(p) for p in padding):
      if len(padding) != n:
        hint = (
          f" For one (low, high) pair write padding={(padding,)!r}."
          if n == 1 and len(padding) == 2
          else ""
        )
        raise ValueError(
          f"{fn}: padding as a sequence of ints needs one int per spatial dimension "
          f"({n}), got {padding!r}.{hint}"
        )
      pairs = tuple((p, p) for p in padding)
    else:
      pairs = []
      for p in padding:
        if (
          isinstance(p, (str, bytes))
          or not isinstance(p, Sequence)
          or len(p) != 2
          or not all(is_int(v) for v in p)
        ):
          raise TypeError(
            f"{fn}: padding must be 'VALID', 'SAME', an int, a sequence of ints or a "
            f"sequence of (low, high) int pairs; got {padding!r}."
          )
        pairs.append((p[0], p[1]))
      pairs = tuple(pairs)
      if len(pairs) != n:
        raise ValueError(
          f"{fn}: padding needs one (low, high) pair per spatial dimension ({n}), got {padding!r}."
        )
  else:
    raise TypeError(
      f"{fn}: padding must be 'VALID', 'SAME', an int, a sequence of ints or a "
      f"sequence of (low, high) int pairs; got {padding!r}."
    )
  if any(v < 0 for pair in pairs for v in pair):
    raise ValueError(f"{fn}: padding must be non-negative, got {padding!r}.")
  return tuple((int(lo), int(hi)) for lo, hi in pairs)


@dataclasses.dataclass(frozen=True)
class PoolGeometry:
  """A validated pooling geometry. Hashable, so it can be a static argument.

  Attributes:
    input_shape: shape of the inputs.
    spatial_axes: positions of the spatial dims in ``input_shape``.
    channel_axis: position of the feature dim in ``input_shape``.
    window_shape, strides, dilation: per spatial dim.
    padding: declared ``(low, high)`` padding per spatial dim (SAME resolved).
    ceil_extra: change to the high padding per spatial dim that makes the last
      window end exactly at the end of the padded input: positive where
      ``ceil_mode`` lets the last window overhang the high padding, negative where
      windows do not reach the end (floor mode, or ``ceil_mode`` dropping a window
      that would start in the high padding); ``lax_padding`` clamps at 0. Never
      part of the declared padding.
    output_spatial: output size per spatial dim.
  """

  input_shape: tuple[int, ...]
  spatial_axes: tuple[int, ...]
  channel_axis: int
  window_shape: tuple[int, ...]
  strides: tuple[int, ...]
  dilation: tuple[int, ...]
  padding: tuple[tuple[int, int], ...]
  ceil_extra: tuple[int, ...]
  output_spatial: tuple[int, ...]

  # --- shapes -------------------------------------------------------------------
  @property
  def ndim(self) -> int:
    return len(self.input_shape)

  @property
  def spatial_shape(self) -> tuple[int, ...]:
    return tuple(self.input_shape[a] for a in self.spatial_axes)

  @property
  def effective_window(self) -> tuple[int, ...]:
    return tuple(d * (k - 1) + 1 for k, d in zip(self.window_shape, self.dilation))

  @property
  def output_shape(self) -> tuple[int, ...]:
    shape = list(self.input_shape)
    for axis, size in zip(self.spatial_axes, self.output_spatial):
      shape[axis] = size
    return tuple(shape)

  @property
  def window_size(self) -> int:
    return int(np.prod(self.window_shape))

  def _full(self, per_spatial: Sequence[Any], fill: Any) -> tuple[Any, ...]:
    full = [fill] * self.ndim
    for axis, value in zip(self.spatial_axes, per_spatial):
      full[axis] = value
    return tuple(full)

  # --- lax.reduce_window arguments ------------------------------------------------
  @property
  def window_dimensions(self) -> tuple[int, ...]:
    return self._full(self.window_shape, 1)

  @property
  def window_strides(self) -> tuple[int, ...]:
    return self._full(self.strides, 1)

  @property
  def window_dilation(self) -> tuple[int, ...]:
    return self._full(self.dilation, 1)

  @property
  def lax_padding(self) -> tuple[tuple[int, int], ...]:
    """Declared padding plus the ceil_mode overhang, for every dim of the input."""
    # Clamped at 0: the unreached tail then holds less than one stride, so
    # reduce_window's floor rule yields exactly `output_spatial` windows.
    pads = [(lo, max(hi + extra, 0)) for (lo, hi), extra in zip(self.padding, self.ceil_extra)]
    return self._full(pads, (0, 0))

  @property
  def has_padding(self) -> bool:
    """Whether some window reaches past the input (padding or ceil_mode overhang)."""
    return any(pad != (0, 0) for pad in self.lax_padding)

  def reduce_window(self, x: jax.Array, init: Any, op) -> jax.Array:
    """`lax.reduce_window` of `x` over this geometry (padding with `init`)."""
    # Pass `init` as a Python or numpy scalar, never `jnp.asarray(...)` (a tracer
    # under jit): lax then uses its monoid reduce_window, without which reverse mode
    # through `jvp(jit(pool))` fails ("Linearization failed to produce known values").
    if not isinstance(init, jax.core.Tracer):
      init = np.asarray(init, x.dtype)
    return lax.reduce_window(
      x,
      init,
      op,
      self.window_dimensions,
      self.window_strides,
      self.lax_padding,
      window_dilation=self.window_dilation,
    )

  # --- windows as strided views ---------------------------------------------------
  def window_offsets(self) -> list[tuple[int, ...]]:
    """Every position inside a window, in row-major order (PyTorch's tie order)."""
    return [tuple(int(i) for i in idx) for idx in np.ndindex(*self.window_shape)]

  def pad(self, x: jax.Array, value: Any) -> jax.Array:
    """`x` padded as the windows see it (declared padding plus ceil overhang)."""
    config = [(lo, hi, 0) for lo, hi in self.lax_padding]
    return lax.pad(x, jnp.asarray(value, x.dtype), config)

  def window_element(self, padded: jax.Array, offset: Sequence[int]) -> jax.Array:
    """Element `offset` of every window, shape `output_shape` (a strided slice).

    `padded` is `self.pad(x, ...)`. Summing the transposes of these slices over all
    offsets is how the gradients of the window pools avoid select-and-scatter.
    """
    start = [0] * self.ndim
    limit = list(padded.shape)
    strides = [1] * self.ndim
    for axis, k, d, s, out in zip(
      self.spatial_axes, offset, self.dilation, self.strides, self.output_spatial
    ):
      start[axis] = k * d
      limit[axis] = k * d + (out - 1) * s + 1
      strides[axis] = s
    return lax.slice(padded, start, limit, strides)

  def window_scatter(self, per_offset: Sequence[jax.Array], dtype) -> jax.Array:
    """Transpose of ``x -> [window_element(pad(x, 0), k) for k in window_offsets()]``.

    Adds the value each window offset holds back onto the input element it was read
    from (overlapping windows add up; padding is dropped): shape `input_shape`.
    """
    offsets = self.window_offsets()

    def gather(x):
      padded = self.pad(x, 0)
      return [self.window_element(padded, k) for k in offsets]

    transpose = jax.linear_transpose(gather, jax.ShapeDtypeStruct(self.input_shape, dtype))
    (out,) = transpose(list(per_offset))
    return out

  def _positions(self, axis_index: int, offset: int) -> np.ndarray:
    """Input coordinate of element `offset` of each window along one spatial dim."""
    lo = self.padding[axis_index][0]
    out = np.arange(self.output_spatial[axis_index])
    return out * self.strides[axis_index] - lo + offset * self.dilation[axis_index]

  def _outer(self, per_dim: list[np.ndarray], op) -> np.ndarray:
    result = per_dim[0]
    for values in per_dim[1:]:
      result = op.outer(result, values)
    return result

  def spatial_to_output(self, values: np.ndarray) -> np.ndarray:
    """Reshape an array of shape `output_spatial` to broadcast against the output."""
    return np.reshape(values, self._full(self.output_spatial, 1))

  def in_bounds(self, offset: Sequence[int]) -> np.ndarray | None:
    """Static mask: element `offset` of each window lies inside the input.

    Broadcastable to `output_shape`; `None` where every window element is inside.
    """
    masks = []
    for i, k in enumerate(offset):
      pos = self._positions(i, k)
      masks.append((pos >= 0) & (pos < self.spatial_shape[i]))
    mask = self._outer(masks, np.logical_and)
    return None if mask.all() else self.spatial_to_output(mask)

  def empty_windows(self) -> np.ndarray | None:
    """Static mask (broadcastable to `output_shape`) of the windows holding no input
    element (entirely in the padding or the ceil_mode overhang), or None."""
    empty = self.window_counts(False) == 0
    return self.spatial_to_output(empty) if empty.any() else None

  def window_counts(self, count_include_pad: bool) -> np.ndarray:
    """Number of window elements counted by an average, shape `output_spatial`.

    With `count_include_pad`, elements in the declared padding count and the
    ceil_mode overhang does not (PyTorch); otherwise only elements of the input count.
    """
    per_dim = []
    for i, size in enumerate(self.spatial_shape):
      lo, hi = self.padding[i]
      low, high = (-lo, size + hi) if count_include_pad else (0, size)
      count = np.zeros(self.output_spatial[i], np.int64)
      for k in range(self.window_shape[i]):
        pos = self._positions(i, k)
        count += (pos >= low) & (pos < high)
      per_dim.append(count)
    return self._outer(per_dim, np.multiply)


def spatial_axes(
  shape: Sequence[int], n: int, channel_axis: Any, fn: str
) -> tuple[tuple[int, ...], int]:
  """(spatial axes, channel axis) of `n` spatial dims, channels last or first (PyTorch)."""
  shape = tuple(shape)
  ndim = len(shape)
  if not is_int(channel_axis) or channel_axis not in (-1, 1, ndim - 1):
    raise ValueError(
      f"{fn}: channel_axis must be -1 (inputs (*batch, *spatial, features)) or 1 "
      f"(inputs (N, C, *spatial)), got {channel_axis!r} for inputs of shape {shape}."
    )
  if channel_axis == 1 and ndim == 2:
    # Index 1 is also the last axis here. channel_axis=1 always means the batched
    # (N, C, *spatial) layout, so PyTorch's unbatched (C, L) is refused (as (C, H, W)
    # is for 2-d windows) rather than silently read as (L, C).
    raise ValueError(
      f"{fn}: channel_axis=1 means the batched (N, C, *spatial) layout (rank {n + 2} "
      f"for a {n}-d window), got inputs of rank 2 {shape}. For channels-first (C, L) "
      "inputs add a batch dim (inputs[None]); for channels-last (L, C) pass "
      "channel_axis=-1."
    )
  if channel_axis in (-1, ndim - 1):
    if ndim < n + 1:
      raise ValueError(
        f"{fn}: inputs of shape {shape} have rank {ndim}, but a {n}-d window needs "
        f"(*batch, *spatial, features): rank >= {n + 1}."
      )
    return tuple(range(ndim - 1 - n, ndim - 1)), ndim - 1
  if ndim != n + 2:
    raise ValueError(
      f"{fn}: with channel_axis=1 the inputs must be (N, C, *spatial) of rank "
      f"{n + 2} for a {n}-d window, got shape {shape}."
    )
  return tuple(range(2, ndim)), 1


def default_num_spatial_dims(shape: Sequence[int], channel_axis: Any, fn: str) -> int:
  """All dims but one leading batch dim and the channel dim (global/adaptive pools)."""
  shape = tuple(shape)
  n = len(shape) - 2
  if n < 1:
    raise ValueError(
      f"{fn}: inputs of shape {shape} have no spatial dims; expected (N, *spatial, C) "
      "(or (N, C, *spatial) with channel_axis=1), or pass num_spatial_dims / a "
      "sequence output_size."
    )
  spatial_axes(shape, n, channel_axis, fn)  # validates channel_axis
  return n


def global_spatial_axes(
  shape: Sequence[int], num_spatial_dims: Any, channel_axis: Any, fn: str
) -> tuple[int, ...]:
  """The axes a global pool reduces: `num_spatial_dims` (default: all but N and C)."""
  if num_spatial_dims is None:
    n = default_num_spatial_dims(shape, channel_axis, fn)
  elif not is_int(num_spatial_dims) or num_spatial_dims < 1:
    raise ValueError(
      f"{fn}: num_spatial_dims must be None or an int >= 1, got {num_spatial_dims!r}."
    )
  else:
    n = int(num_spatial_dims)
  axes = spatial_axes(shape, n, channel_axis, fn)[0]
  if any(shape[a] == 0 for a in axes):  # as PyTorch's adaptive pools: no empty planes
    raise ValueError(
      f"{fn}: every spatial dim must be non-empty, got inputs of shape {tuple(shape)}."
    )
  return axes


def resolve(
  input_shape: Sequence[int],
  window_shape: Sequence[int],
  strides=None,
  padding: PaddingLike = "VALID",
  *,
  dilation=None,
  ceil_mode: bool = False,
  channel_axis: int = -1,
  fn: str = "pool",
) -> PoolGeometry:
  """Validate a pooling call and return its geometry.

  Args:
    input_shape: shape of the inputs.
    window_shape: window size per spatial dim (a sequence of ints >= 1).
    strides: stride per spatial dim, an int for all, or None for 1 (as Flax).
    padding: "VALID", "SAME", "SAME_LOWER" (any case), an int, ints or (low, high)
      pairs (tuples, lists or numpy arrays).
    dilation: window dilation per spatial dim, an int, or None for 1.
    ceil_mode: PyTorch's ceil_mode (not allowed with a SAME padding string).
    channel_axis: -1 (channels last) or 1 (PyTorch's (N, C, *spatial)).
    fn: name of the calling function, for error messages.

  Raises:
    TypeError, ValueError: naming the argument, the value and what is allowed.
  """
  input_shape = tuple(int(s) for s in input_shape)
  window_shape = from_numpy(window_shape)
  if isinstance(window_shape, (str, bytes)) or not isinstance(window_shape, Sequence):
    raise TypeError(
      f"{fn}: window_shape must be a sequence of ints, one per spatial dimension "
      f"(e.g. (2, 2)), got {window_shape!r}."
    )
  n = len(window_shape)
  if n == 0:
    raise ValueError(f"{fn}: window_shape must have at least one dimension, got {window_shape!r}.")
  window = _int_tuple(window_shape, n, "window_shape", fn, minimum=1, allow_scalar=False)
  strides = _int_tuple(
    1 if strides is None else strides, n, "strides", fn, minimum=1, allow_scalar=True
  )
  dilation = _int_tuple(
    1 if dilation is None else dilation, n, "dilation", fn, minimum=1, allow_scalar=True
  )
  if not isinstance(ceil_mode, (bool, np.bool_)):
    raise TypeError(f"{fn}: ceil_mode must be a bool, got {ceil_mode!r}.")
  axes, channel = spatial_axes(input_shape, n, channel_axis, fn)
  sizes = tuple(input_shape[a] for a in axes)
  effective = tuple(d * (k - 1) + 1 for k, d in zip(window, dilation))

  if isinstance(padding, str):
    kind = padding.upper()
    if kind not in ("VALID", "SAME", "SAME_LOWER"):
      raise ValueError(
        f"{fn}: padding string must be 'VALID', 'SAME' or 'SAME_LOWER', got {padding!r}."
      )
    if kind != "VALID" and ceil_mode:
      raise ValueError(
        f"{fn}: ceil_mode=True cannot be combined with padding={padding!r}; SAME already "
        "chooses the output size. Use explicit padding with ceil_mode."
      )
    if kind == "VALID":
      pads = ((0, 0),) * n
    else:
      pads = tuple(
        _same_padding(L, e, s, kind == "SAME_LOWER") for L, e, s in zip(sizes, effective, strides)
      )
  else:
    pads = _explicit_padding(padding, n, fn)

  out, extra = [], []
  for L, (lo, hi), e, s in zip(sizes, pads, effective, strides):
    span = L + lo + hi - e
    if ceil_mode:
      # PyTorch: the window may be larger than the padded input (span < 0) as long
      # as one window starts inside the input or the low padding.
      size = -(-span // s) + 1
      if (size - 1) * s >= L + lo:  # PyTorch: the last window must start in input or low pad
        size -= 1
    else:
      size = span // s + 1
    if size < 1:
      hint = (
        " (with ceil_mode=True the window may exceed the padded input by less than one stride)"
        if ceil_mode
        else " (ceil_mode=True allows a window that exceeds it by less than one stride)"
      )
      raise ValueError(
        f"{fn}: the window (window_shape={window}, dilation={dilation}, effective "
        f"size {effective}) is larger than the padded input (spatial shape {sizes}, "
        f"padding {pads}, strides {strides}), so there is no output{hint}."
      )
    out.append(size)
    extra.append((size - 1) * s + e - (L + lo + hi))
  return PoolGeometry(
    input_shape=input_shape,
    spatial_axes=axes,
    channel_axis=channel,
    window_shape=window,
    strides=strides,
    dilation=dilation,
    padding=pads,
    ceil_extra=tuple(extra),
    output_spatial=tuple(out),
  )
