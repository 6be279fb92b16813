"""mixed_pool, gated_pool, tree_pool against numpy loops, closed forms and check_grads."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxpool
from tests import reference

RTOL = ATOL = 2e-5


def distinct(shape, seed=0, scale=1.0):
  """A random permutation of distinct values: no ties, robust to check_grads' eps."""
  rng = np.random.default_rng(seed)
  return (rng.permutation(int(np.prod(shape))).reshape(shape) - np.prod(shape) / 2) * scale


CONFIGS = [  # window, strides, padding, options
  ((2, 2), 2, "VALID", {}),
  ((3, 3), 2, "SAME", {}),
  ((3, 2), (1, 2), ((1, 0), (1, 1)), dict(dilation=(1, 2))),
  ((3, 3), 2, 1, dict(ceil_mode=True)),
]


# --- mixed_pool -------------------------------------------------------------------


@pytest.mark.parametrize("window,strides,padding,options", CONFIGS)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_mixed_matches_reference(window, strides, padding, options, count_include_pad):
  x = distinct((2, 7, 6, 3), scale=0.1)
  alpha = 0.3
  y = jaxpool.mixed_pool(
    x.astype(np.float32),
    alpha,
    window,
    strides,
    padding,
    count_include_pad=count_include_pad,
    **options,
  )
  big = reference.max_pool(x, window, strides, padding, **options)
  mean = reference.avg_pool(x, window, strides, padding, count_include_pad, **options)
  np.testing.assert_allclose(y, alpha * big + (1 - alpha) * mean, rtol=RTOL, atol=ATOL)


def test_mixed_alpha_one_is_max_alpha_zero_is_avg():
  x = jnp.asarray(distinct((2, 6, 6, 3), scale=0.1), jnp.float32)
  args = ((3, 3), 2, "SAME")
  np.testing.assert_allclose(
    jaxpool.mixed_pool(x, 1.0, *args), jaxpool.max_pool(x, *args), rtol=1e-6
  )
  np.testing.assert_allclose(
    jaxpool.mixed_pool(x, 0.0, *args), jaxpool.avg_pool(x, *args), rtol=1e-6
  )
  np.testing.assert_allclose(
    jaxpool.mixed_pool(x, 0.0, *args, count_include_pad=False),
    jaxpool.avg_pool(x, *args, count_include_pad=False),
    rtol=1e-6,
  )


def test_mixed_per_channel_and_per_region_alpha():
  x = distinct((2, 6, 6, 3), scale=0.1)
  big = reference.max_pool(x, (2, 2), 2)
  mean = reference.avg_pool(x, (2, 2), 2)
  xf = x.astype(np.float32)
  per_channel = np.array([0.0, 0.5, 1.0], np.float32)
  np.testing.assert_allclose(
    jaxpool.mixed_pool(xf, per_channel, (2, 2), 2),
    per_channel * big + (1 - per_channel) * mean,
    rtol=RTOL,
    atol=ATOL,
  )
  per_region = np.random.default_rng(1).uniform(size=(3, 3, 1)).astype(np.float32)
  np.testing.assert_allclose(
    jaxpool.mixed_pool(xf, per_region, (2, 2), 2),
    per_region * big + (1 - per_region) * mean,
    rtol=RTOL,
    atol=ATOL,
  )
  full = np.random.default_rng(2).uniform(size=(2, 3, 3, 3)).astype(np.float32)
  np.testing.assert_allclose(
    jaxpool.mixed_pool(xf, full, (2, 2), 2), full * big + (1 - full) * mean, rtol=RTOL, atol=ATOL
  )
  # Yu et al. 2014: alpha in {0, 1} per region picks max or avg region by region.
  pick = (per_region > 0.5).astype(np.float32)
  np.testing.assert_allclose(
    jaxpool.mixed_pool(xf, pick, (2, 2), 2), np.where(pick == 1, big, mean), rtol=RTOL, atol=ATOL
  )


def test_mixed_channels_first_puts_per_channel_alpha_on_the_channel_axis():
  x = distinct((2, 6, 6, 3), scale=0.1).astype(np.float32)
  alpha = np.array([0.1, 0.6, 0.9], np.float32)
  last = jaxpool.mixed_pool(x, alpha, (2, 2), 2)
  first = jaxpool.mixed_pool(np.moveaxis(x, -1, 1), alpha, (2, 2), 2, channel_axis=1)
  np.testing.assert_allclose(np.moveaxis(first, 1, -1), last, rtol=1e-6)


def test_mixed_grads_in_inputs_and_alpha():
  with jax.enable_x64(True):
    x = jnp.asarray(distinct((1, 5, 5, 2)), jnp.float64)
    f = jax.jit(lambda x, a: jaxpool.mixed_pool(x, a, (3, 3), 2, "SAME"))
    check_grads(f, (x, jnp.float64(0.3)), order=1, modes=("fwd", "rev"))
    check_grads(f, (x, jnp.array([0.2, 0.7])), order=1, modes=("rev",))
    region = jnp.asarray(np.random.default_rng(0).uniform(size=(3, 3, 1)))
    check_grads(f, (x, region), order=1, modes=("rev",))
    # d/d alpha = max - avg, summed over the outputs.
    grad = jax.grad(lambda a: jnp.sum(f(x, a)))(0.3)
    expected = np.sum(
      reference.max_pool(np.asarray(x), (3, 3), 2, "SAME")
      - reference.avg_pool(np.asarray(x), (3, 3), 2, "SAME")
    )
    np.testing.assert_allclose(grad, expected, rtol=1e-10)


def test_mixed_bfloat16_and_jit_vmap():
  x = distinct((2, 6, 6, 4), scale=0.01).astype(np.float32)
  y32 = jaxpool.mixed_pool(x, 0.25, (2, 2), 2)
  y16 = jaxpool.mixed_pool(jnp.asarray(x, jnp.bfloat16), 0.25, (2, 2), 2)
  assert y16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y16, np.float32), y32, rtol=2e-2, atol=2e-2)
  f = jax.jit(jax.vmap(lambda x, a: jaxpool.mixed_pool(x, a, (2, 2), 2), in_axes=(0, None)))
  np.testing.assert_allclose(f(x, 0.25), y32, rtol=1e-6)


# --- gated_pool -------------------------------------------------------------------


@pytest.mark.parametrize("window,strides,padding,options", CONFIGS)
@pytest.mark.parametrize("per_channel", [False, True])
def test_gated_matches_reference(window, strides, padding, options, per_channel):
  x = distinct((2, 7, 6, 3), scale=0.1)
  rng = np.random.default_rng(3)
  gate = rng.normal(size=window + ((3,) if per_channel else (1,)))
  y = jaxpool.gated_pool(
    x.astype(np.float32), gate.astype(np.float32), window, strides, padding, **options
  )
  expected = reference.gated_pool(x, gate, window, strides, padding, **options)
  np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL)


def test_gated_zero_gate_is_half_max_half_avg():
  x = distinct((2, 6, 6, 3), scale=0.1).astype(np.float32)
  y = jaxpool.gated_pool(x, np.zeros((3, 3, 1), np.float32), (3, 3), 2, "SAME")
  expected = (jaxpool.max_pool(x, (3, 3), 2, "SAME") + jaxpool.avg_pool(x, (3, 3), 2, "SAME")) / 2
  np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_gated_large_gates_saturate_to_max_or_avg():
  x = np.abs(distinct((1, 4, 4, 2), scale=0.1)).astype(np.float32) + 1  # positive windows
  big = jaxpool.max_pool(x, (2, 2), 2)
  mean = jaxpool.avg_pool(x, (2, 2), 2)
  np.testing.assert_allclose(jaxpool.gated_pool(x, np.full((2, 2, 1), 1e3), (2, 2), 2), big)
  np.testing.assert_allclose(jaxpool.gated_pool(x, np.full((2, 2, 1), -1e3), (2, 2), 2), mean)


def test_gated_channels_first_and_per_channel_gate():
  x = distinct((2, 5, 5, 3), scale=0.1).astype(np.float32)
  gate = np.random.default_rng(4).normal(size=(2, 2, 3)).astype(np.float32)
  last = jaxpool.gated_pool(x, gate, (2, 2), 1, 1)
  first = jaxpool.gated_pool(np.moveaxis(x, -1, 1), gate, (2, 2), 1, 1, channel_axis=1)
  np.testing.assert_allclose(np.moveaxis(first, 1, -1), last, rtol=1e-6, atol=1e-7)


def test_gated_grads_in_inputs_and_gate():
  with jax.enable_x64(True):
    x = jnp.asarray(distinct((1, 5, 5, 2), scale=0.1), jnp.float64)
    gate = jnp.asarray(np.random.default_rng(5).normal(size=(3, 3, 2)))
    f = jax.jit(lambda x, g: jaxpool.gated_pool(x, g, (3, 3), 2, 1, count_include_pad=False))
    check_grads(f, (x, gate), order=1, modes=("fwd", "rev"), eps=1e-4)


# --- tree_pool --------------------------------------------------------------------


def test_tree_two_leaves_by_hand():
  # One 2-element window [a, b] = [1, 3]: leaf 0 = 2a - b = -1, leaf 1 = a + b = 4,
  # gate logit = 0.5a + 0.5b = 2, root = s(2) * (-1) + (1 - s(2)) * 4.
  x = np.array([[[1.0], [3.0]]], np.float32)
  leaves = np.array([[[2.0], [-1.0]], [[1.0], [1.0]]], np.float32)
  gates = np.array([[[0.5], [0.5]]], np.float32)
  s = 1 / (1 + np.exp(-2.0))
  y = jaxpool.tree_pool(x, leaves, gates, (2,))
  np.testing.assert_allclose(y[0, 0, 0], s * -1 + (1 - s) * 4, rtol=1e-6)


@pytest.mark.parametrize("n_leaves,per_channel", [(2, False), (2, True), (4, True), (1, False)])
def test_tree_matches_reference(n_leaves, per_channel):
  rng = np.random.default_rng(n_leaves)
  x = distinct((2, 6, 7, 3), scale=0.1)
  c = 3 if per_channel else 1
  leaves = rng.normal(size=(n_leaves, 3, 3, c))
  gates = rng.normal(size=(n_leaves - 1, 3, 3, 1))  # gates shared even if leaves are not
  y = jaxpool.tree_pool(
    x.astype(np.float32),
    leaves.astype(np.float32),
    gates.astype(np.float32),
    (3, 3),
    2,
    "SAME",
    dilation=(1, 1),
  )
  expected = reference.tree_pool(x, leaves, gates, (3, 3), 2, "SAME")
  np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL)


def test_tree_channels_first_dilation_ceil_mode():
  rng = np.random.default_rng(7)
  x = distinct((2, 7, 7, 2), scale=0.1)
  leaves, gates = rng.normal(size=(2, 2, 2, 2)), rng.normal(size=(1, 2, 2, 2))
  options = dict(dilation=2, ceil_mode=True)
  y = jaxpool.tree_pool(
    np.moveaxis(x, -1, 1).astype(np.float32),
    leaves.astype(np.float32),
    gates.astype(np.float32),
    (2, 2),
    2,
    1,
    channel_axis=1,
    **options,
  )
  expected = reference.tree_pool(x, leaves, gates, (2, 2), 2, 1, **options)
  np.testing.assert_allclose(np.moveaxis(y, 1, -1), expected, rtol=RTOL, atol=ATOL)


def test_tree_grads_in_inputs_leaves_and_gates():
  with jax.enable_x64(True):
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.normal(size=(1, 4, 4, 2)))
    leaves = jnp.asarray(rng.normal(size=(2, 2, 2, 2)))
    gates = jnp.asarray(rng.normal(size=(1, 2, 2, 1)))
    f = jax.jit(lambda x, v, w: jaxpool.tree_pool(x, v, w, (2, 2), 1, "SAME"))
    check_grads(f, (x, leaves, gates), order=1, modes=("fwd", "rev"))


# --- errors -----------------------------------------------------------------------


def test_bad_arguments_raise_clear_errors():
  x = jnp.zeros((1, 6, 6, 3))
  with pytest.raises(ValueError, match=r"mixed_pool: alpha .*got shape \(2,\)"):
    jaxpool.mixed_pool(x, jnp.zeros(2), (2, 2), 2)
  with pytest.raises(ValueError, match=r"mixed_pool: alpha .*got shape \(4, 3, 1\)"):
    jaxpool.mixed_pool(x, jnp.zeros((4, 3, 1)), (2, 2), 2)
  with pytest.raises(TypeError, match="mixed_pool: count_include_pad"):
    jaxpool.mixed_pool(x, 0.5, (2, 2), count_include_pad="yes")
  with pytest.raises(TypeError, match="mixed_pool: inputs must have a floating"):
    jaxpool.mixed_pool(jnp.zeros((1, 4, 4, 1), jnp.int32), 0.5, (2, 2))
  with pytest.raises(ValueError, match="mixed_pool: .*window_shape"):
    jaxpool.mixed_pool(x, 0.5, (2, 0))
  with pytest.raises(ValueError, match=r"gated_pool: gate must have shape .*got shape \(3, 3, 2\)"):
    jaxpool.gated_pool(x, jnp.zeros((3, 3, 2)), (3, 3))
  with pytest.raises(ValueError, match=r"gated_pool: gate .*got shape \(2, 2\)"):
    jaxpool.gated_pool(x, jnp.zeros((2, 2)), (2, 2))
  with pytest.raises(ValueError, match=r"tree_pool: leaves .*got shape \(2, 3, 3, 1\)"):
    jaxpool.tree_pool(x, jnp.zeros((2, 3, 3, 1)), jnp.zeros((1, 2, 2, 1)), (2, 2))
  with pytest.raises(ValueError, match="tree_pool: a complete binary tree .*3 leaves"):
    jaxpool.tree_pool(x, jnp.zeros((3, 2, 2, 1)), jnp.zeros((2, 2, 2, 1)), (2, 2))
  with pytest.raises(ValueError, match=r"tree_pool: a tree with 2 leaves has 1 gates"):
    jaxpool.tree_pool(x, jnp.zeros((2, 2, 2, 1)), jnp.zeros((2, 2, 2, 1)), (2, 2))
  with pytest.raises(ValueError, match=r"tree_pool: gates .*got shape \(1, 2, 2, 2\)"):
    jaxpool.tree_pool(x, jnp.zeros((2, 2, 2, 1)), jnp.zeros((1, 2, 2, 2)), (2, 2))


def test_windows_entirely_in_padding_stay_finite():
  # Window 2, stride 2, padding 3: the first and last windows hold only padding.
  x = jnp.asarray([[[1.0], [-2.0]]])
  y = jaxpool.mixed_pool(x, 0.5, (2,), 2, ((3, 3),))
  np.testing.assert_allclose(y[0, :, 0], [0.0, 0.5 * 1 + 0.5 * 0.5, 0.5 * -2 + 0.5 * -1, 0.0])
  g = jaxpool.gated_pool(x, jnp.zeros((2, 1)), (2,), 2, ((3, 3),), count_include_pad=False)
  np.testing.assert_allclose(g[0, :, 0], [0.0, 1.0, -2.0, 0.0])
  for count_include_pad, expected in [(True, 0.75), (False, 1.0)]:
    grad = jax.grad(
      lambda x: jnp.sum(
        jaxpool.mixed_pool(x, 0.5, (2,), 2, ((3, 3),), count_include_pad=count_include_pad)
      )
    )(x)
    np.testing.assert_allclose(grad[0, :, 0], [expected, expected])


def test_tree_and_gated_under_vmap_and_jit():
  rng = np.random.default_rng(9)
  x = rng.normal(size=(3, 6, 6, 2)).astype(np.float32)
  leaves = rng.normal(size=(2, 2, 2, 2)).astype(np.float32)
  gates = rng.normal(size=(1, 2, 2, 1)).astype(np.float32)
  tree = jax.jit(jax.vmap(lambda x: jaxpool.tree_pool(x, leaves, gates, (2, 2), 2)))
  np.testing.assert_allclose(
    tree(x), jaxpool.tree_pool(x, leaves, gates, (2, 2), 2), rtol=1e-6, atol=1e-6
  )
  gated = jax.jit(jax.vmap(lambda g: jaxpool.gated_pool(x, g, (2, 2), 2)))
  stacked = gated(np.stack([gates[0], -gates[0]]))
  np.testing.assert_allclose(
    stacked[1], jaxpool.gated_pool(x, -gates[0], (2, 2), 2), rtol=1e-6, atol=1e-6
  )


def test_shapes_and_values_over_random_configurations():
  rng = np.random.default_rng(10)
  for _ in range(4):
    n = int(rng.integers(1, 4))
    spatial = tuple(int(v) for v in rng.integers(4, 8, size=n))
    window = tuple(int(v) for v in rng.integers(1, 4, size=n))
    strides = tuple(int(v) for v in rng.integers(1, 3, size=n))
    dilation = tuple(int(v) for v in rng.integers(1, 3, size=n))
    padding = tuple((int(rng.integers(0, 2)), int(rng.integers(0, 2))) for _ in range(n))
    options = dict(dilation=dilation, ceil_mode=bool(rng.integers(0, 2)))
    x = distinct((2, *spatial, 2), seed=int(rng.integers(100)), scale=0.1)
    gate = rng.normal(size=window + (2,))
    leaves, gates = rng.normal(size=(2, *window, 1)), rng.normal(size=(1, *window, 2))
    # The output size by PyTorch's rule, from the reference (not from jaxpool).
    shape = reference.max_pool(x, window, strides, padding, **options).shape
    xf = x.astype(np.float32)
    # One compiled program per pool and configuration instead of an op-by-op run.
    geometry = dict(window_shape=window, strides=strides, padding=padding, **options)
    y = jax.jit(functools.partial(jaxpool.gated_pool, **geometry))(xf, gate)
    assert y.shape == shape
    np.testing.assert_allclose(
      y, reference.gated_pool(x, gate, window, strides, padding, **options), rtol=RTOL, atol=ATOL
    )
    y = jax.jit(functools.partial(jaxpool.tree_pool, **geometry))(xf, leaves, gates)
    assert y.shape == shape
    np.testing.assert_allclose(
      y,
      reference.tree_pool(x, leaves, gates, window, strides, padding, **options),
      rtol=1e-4,
      atol=1e-4,
    )
    assert jax.jit(functools.partial(jaxpool.mixed_pool, **geometry))(xf, 0.5).shape == shape


def test_ceil_mode_drops_a_window_starting_in_the_high_padding():
  # L=4, window 1, padding (0, 1), ceil_mode: PyTorch's rule drops the window that
  # would start at L + lo = 4, leaving 4 outputs (a VALID-style count gives 5).
  x = distinct((1, 4, 2), scale=0.1)
  args = ((1,), 1, ((0, 1),))
  expected = reference.max_pool(x, *args, ceil_mode=True)
  assert expected.shape == (1, 4, 2)
  xf = x.astype(np.float32)
  np.testing.assert_allclose(
    jaxpool.mixed_pool(xf, 0.5, *args, ceil_mode=True), expected, rtol=1e-6
  )
  np.testing.assert_allclose(
    jaxpool.gated_pool(xf, np.ones((1, 1)), *args, ceil_mode=True), expected, rtol=1e-6
  )


# --- the fused derivative rule of mixed and gated pooling ---------------------------

GRAD_CONFIGS = [  # window, strides, padding, options (count_include_pad varies)
  ((2, 2), 2, 1, dict(count_include_pad=False)),  # tiling windows, padded input
  ((2, 3), (2, 3), "SAME", dict(channel_axis=1)),  # tiling, channels first
  ((3, 2), (1, 2), ((1, 0), (1, 1)), dict(dilation=(1, 2), count_include_pad=False)),
  ((3, 3), 2, 1, dict(ceil_mode=True)),  # overlapping, ceil_mode overhang
]


@pytest.mark.parametrize("window,strides,padding,options", GRAD_CONFIGS)
def test_mixed_and_gated_grads_in_every_geometry(window, strides, padding, options):
  # Tiling windows take the reshape path of the fused rule, the others the strided
  # one; both against finite differences, in inputs and parameters, both modes.
  with jax.enable_x64(True):
    x = jnp.asarray(distinct((1, 5, 6, 2), seed=1, scale=0.1), jnp.float64)
    if options.get("channel_axis") == 1:
      x = jnp.moveaxis(x, -1, 1)
    gate = jnp.asarray(np.random.default_rng(11).normal(size=window + (2,)))
    mixed = jax.jit(lambda x, a: jaxpool.mixed_pool(x, a, window, strides, padding, **options))
    gated = jax.jit(lambda x, g: jaxpool.gated_pool(x, g, window, strides, padding, **options))
    check_grads(mixed, (x, jnp.asarray([0.2, 0.9])), order=1, modes=("fwd", "rev"))
    check_grads(gated, (x, gate), order=1, modes=("fwd", "rev"), eps=1e-4)
    check_grads(gated, (x, gate[..., :1]), order=1, modes=("rev",), eps=1e-4)


def test_mixed_and_gated_input_grads_match_the_reference_formula():
  # d/dx of sum(c * y) by hand: the max part to the first maximal element, the
  # average part spread over the window (count_include_pad), float32 and bfloat16.
  x = distinct((1, 6, 6, 2), seed=2, scale=0.25)
  cot = np.random.default_rng(12).normal(size=(1, 3, 3, 2))
  alpha = 0.3
  want = alpha * reference.max_pool_grad(x, cot, (3, 3), 2, "SAME") + (
    1 - alpha
  ) * reference.avg_pool_grad(x, cot, (3, 3), 2, "SAME")
  for dtype, tol in [(jnp.float32, 1e-5), (jnp.bfloat16, 3e-2)]:
    f = lambda x: jaxpool.mixed_pool(x, alpha, (3, 3), 2, "SAME")
    (got,) = jax.jit(lambda x, c: jax.vjp(f, x)[1](c))(
      jnp.asarray(x, dtype), jnp.asarray(cot, dtype)
    )
    assert got.dtype == dtype
    np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=tol, atol=tol)


def test_mixed_and_gated_second_order_grads():
  # The fused first-order rules are themselves differentiable (the max through
  # max_pool's own rule, the gate through autodiff): Hessian-vector products match
  # finite differences of the gradient.
  with jax.enable_x64(True):
    x = jnp.asarray(distinct((1, 5, 5, 2), seed=3, scale=0.1), jnp.float64)
    gate = jnp.asarray(np.random.default_rng(13).normal(size=(3, 3, 1)))
    # Jitted: each derivative check_grads takes is then one compiled program instead
    # of an op-by-op run (the same values: float64 throughout).
    mixed = jax.jit(lambda x, a: jaxpool.mixed_pool(x, a, (3, 3), 2, "SAME"))
    gated = jax.jit(lambda x, g: jaxpool.gated_pool(x, g, (3, 3), 2, "SAME"))
    check_grads(mixed, (x, 0.3), order=2, modes=("rev",))
    check_grads(gated, (x, gate), order=2, modes=("fwd", "rev"), eps=1e-4)


def test_alpha_must_be_a_real_array():
  """Issue 23: a complex alpha was accepted with a ComplexWarning and its imaginary
  part dropped; refused like complex gate weights. None and strings reached JAX's
  own messages."""
  x = jnp.zeros((1, 4, 1))
  for bad in (1 + 1j, jnp.ones((), jnp.complex64), np.array([0.5 + 0j])):
    with pytest.raises(TypeError, match=r"^mixed_pool: alpha must be real .*complex"):
      jaxpool.mixed_pool(x, bad, (2,))
  with pytest.raises(TypeError, match=r"^gated_pool: gate must be real"):
    jaxpool.gated_pool(x, jnp.ones((2, 1), jnp.complex64), (2,))
  for bad in (None, "a", [0.5, "b"]):
    with pytest.raises(TypeError, match=r"^mixed_pool: alpha must be an array"):
      jaxpool.mixed_pool(x, bad, (2,))
    with pytest.raises(TypeError, match=r"^gated_pool: gate must be an array"):
      jaxpool.gated_pool(x, bad, (2,))
    with pytest.raises(TypeError, match=r"^tree_pool: leaves must be an array"):
      jaxpool.tree_pool(x, bad, jnp.zeros((0, 2, 1)), (2,))
  # bool and int alphas are real: 1 is the max pool (reference: a numpy loop)
  y = jaxpool.mixed_pool(jnp.array([[1.0], [3.0], [2.0]]), np.int32(1), (2,))
  np.testing.assert_array_equal(y[:, 0], [3.0, 3.0])
