"""soft_pool and lip_pool against numpy loops, closed forms, check_grads and huge inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxpool
from tests import reference

RTOL = ATOL = 2e-5

CONFIGS = [  # window, strides, padding, options
  ((2, 2), 2, "VALID", {}),
  ((3, 3), 2, "SAME", {}),
  ((3, 2), (1, 2), ((1, 0), (2, 1)), dict(dilation=(2, 1))),
  ((3, 3), 2, 1, dict(ceil_mode=True)),
]


@pytest.mark.parametrize("window,strides,padding,options", CONFIGS)
def test_lip_and_soft_match_reference(window, strides, padding, options):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 7, 6, 3)) * 3
  logits = rng.normal(size=(2, 7, 6, 3)) * 3
  y = jaxpool.lip_pool(
    x.astype(np.float32), logits.astype(np.float32), window, strides, padding, **options
  )
  np.testing.assert_allclose(
    y, reference.lip_pool(x, logits, window, strides, padding, **options), rtol=RTOL, atol=ATOL
  )
  y = jaxpool.soft_pool(x.astype(np.float32), window, strides, padding, **options)
  np.testing.assert_allclose(
    y, reference.lip_pool(x, x, window, strides, padding, **options), rtol=RTOL, atol=ATOL
  )


def test_lip_with_zero_logits_is_the_average():
  x = np.random.default_rng(1).normal(size=(2, 6, 6, 3)).astype(np.float32)
  zeros = np.zeros_like(x)
  np.testing.assert_allclose(
    jaxpool.lip_pool(x, zeros, (2, 2), 2), jaxpool.avg_pool(x, (2, 2), 2), rtol=1e-6, atol=1e-7
  )
  # With padding, padded elements do not contribute: count_include_pad=False.
  np.testing.assert_allclose(
    jaxpool.lip_pool(x, zeros, (3, 3), 2, "SAME"),
    jaxpool.avg_pool(x, (3, 3), 2, "SAME", count_include_pad=False),
    rtol=1e-6,
    atol=1e-7,
  )


def test_lip_broadcast_logits_and_channels_first():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 5, 5, 3))
  logits = rng.normal(size=(2, 5, 5, 1))  # one importance map shared by the channels
  expected = reference.lip_pool(x, logits, (2, 2), 1, 1)
  y = jaxpool.lip_pool(x.astype(np.float32), logits.astype(np.float32), (2, 2), 1, 1)
  np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL)
  y = jaxpool.lip_pool(
    np.moveaxis(x, -1, 1).astype(np.float32),
    np.moveaxis(logits, -1, 1).astype(np.float32),
    (2, 2),
    1,
    1,
    channel_axis=1,
  )
  np.testing.assert_allclose(np.moveaxis(y, 1, -1), expected, rtol=RTOL, atol=ATOL)


def test_soft_pool_lies_between_avg_and_max():
  x = np.random.default_rng(3).normal(size=(4, 9, 9, 3)).astype(np.float32) * 4
  for args in [((2, 2), 2, "VALID"), ((3, 3), 2, "SAME")]:
    y = np.asarray(jax.jit(lambda x: jaxpool.soft_pool(x, *args))(x))
    mean = np.asarray(jaxpool.avg_pool(x, *args, count_include_pad=False))
    big = np.asarray(jaxpool.max_pool(x, *args))
    assert np.all(y >= mean - 1e-5) and np.all(y <= big + 1e-5)
    assert np.any(y > mean + 1e-2) and np.any(y < big - 1e-2)  # strictly inside somewhere


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_stable_at_1e4(dtype):
  # Windows of [1e4, 0], [-1e4, -1e4], [1e4, 1e4 - 1], [-1e4, 1e4]; and 2-D with padding.
  x = jnp.asarray([[1e4], [0.0], [-1e4], [-1e4], [1e4], [1e4 - 1], [-1e4], [1e4]], dtype)
  y = jax.jit(lambda x: jaxpool.soft_pool(x, (2,), 2))(x)
  assert y.dtype == dtype
  e = 1 / (1 + np.exp(-1.0))  # weight of 1e4 against 1e4 - 1
  np.testing.assert_allclose(
    np.asarray(y, np.float32)[:, 0],
    [1e4, -1e4, e * 1e4 + (1 - e) * (1e4 - 1), 1e4],
    rtol=1e-6 if dtype == jnp.float32 else 1e-2,
  )
  rng = np.random.default_rng(4)
  big = jnp.asarray(rng.choice([-1e4, -5e3, 0.0, 5e3, 1e4], size=(2, 6, 6, 2)), dtype)
  for f in [
    lambda x: jaxpool.soft_pool(x, (3, 3), 2, "SAME"),
    lambda x: jaxpool.lip_pool(x, x * 0.5, (3, 3), 2, 1, ceil_mode=True),
    lambda x: jaxpool.lip_pool(jnp.ones_like(x), -x, (2, 2), 1, "SAME"),
  ]:
    loss = lambda x: jnp.sum(f(x).astype(jnp.float32))
    y, grad = jax.jit(lambda x: (f(x), jax.grad(loss)(x)))(big)
    assert np.all(np.isfinite(np.asarray(y, np.float32)))
    assert np.all(np.isfinite(np.asarray(grad, np.float32)))
  grad_logits = jax.jit(
    jax.grad(lambda lg: jnp.sum(jaxpool.lip_pool(big, lg, (3, 3), 2, "SAME").astype(jnp.float32)))
  )(big)
  assert np.all(np.isfinite(np.asarray(grad_logits, np.float32)))


def test_bfloat16_close_to_float32():
  x = np.random.default_rng(5).normal(size=(2, 6, 6, 4)).astype(np.float32)
  y32 = jaxpool.soft_pool(x, (2, 2), 2)
  y16 = jaxpool.soft_pool(jnp.asarray(x, jnp.bfloat16), (2, 2), 2)
  assert y16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y16, np.float32), y32, rtol=2e-2, atol=2e-2)


def test_windows_entirely_in_padding_give_zero_and_finite_grads():
  x = jnp.asarray(np.random.default_rng(6).normal(size=(1, 2, 1)), jnp.float32)
  f = lambda x: jaxpool.soft_pool(x, (2,), 2, ((3, 3),))  # windows [p p], [p x], [x p], [p p]
  y = jax.jit(f)(x)
  np.testing.assert_allclose(y[0, :, 0], [0.0, x[0, 0, 0], x[0, 1, 0], 0.0], rtol=1e-6)
  grad = jax.jit(jax.grad(lambda x: jnp.sum(f(x))))(x)
  np.testing.assert_allclose(grad, np.ones_like(x))  # each element alone in its window


def test_grads_in_inputs_and_logits():
  with jax.enable_x64(True):
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(1, 5, 5, 2)))
    logits = jnp.asarray(rng.normal(size=(1, 5, 5, 2)))
    lip = jax.jit(lambda x, lg: jaxpool.lip_pool(x, lg, (3, 3), 2, "SAME"))
    check_grads(lip, (x, logits), order=1, modes=("fwd", "rev"))
    # lip's derivative is taken through window blocks where the windows tile the
    # input, through padded copies otherwise: both forms, to second order.
    grow = ((0, 0), (0, 1), (0, 1), (0, 0))  # 6 x 6: 2x2/2 windows tile it
    x6, l6 = jnp.pad(x, grow), jnp.pad(logits, grow)
    for args in (((2, 2), 2), ((3, 3), 2, 1)):
      lip = jax.jit(lambda x, lg, args=args: jaxpool.lip_pool(x, lg, *args))
      check_grads(lip, (x6, l6), order=2, modes=("fwd", "rev"))
    soft = jax.jit(lambda x: jaxpool.soft_pool(x, (2, 2), 1, 1, dilation=2))
    check_grads(soft, (x,), order=1, modes=("fwd", "rev"))
    # d soft / d x_i for a single window = p_i (1 + x_i - y): closed form.
    w = jnp.asarray([[0.5], [-1.0], [2.0]])
    p = np.exp(np.asarray(w)[:, 0]) / np.exp(np.asarray(w)[:, 0]).sum()
    y = (p * np.asarray(w)[:, 0]).sum()
    grad = jax.grad(lambda w: jaxpool.soft_pool(w, (3,))[0, 0])(w)
    np.testing.assert_allclose(grad[:, 0], p * (1 + np.asarray(w)[:, 0] - y), rtol=1e-12)


def test_bad_arguments_raise_clear_errors():
  x = jnp.zeros((1, 6, 6, 3))
  with pytest.raises(ValueError, match=r"lip_pool: logits must be broadcastable .*\(1, 6, 6, 2\)"):
    jaxpool.lip_pool(x, jnp.zeros((1, 6, 6, 2)), (2, 2))
  with pytest.raises(ValueError, match=r"lip_pool: logits must be broadcastable .*\(2, 6, 6, 3\)"):
    jaxpool.lip_pool(x, jnp.zeros((2, 6, 6, 3)), (2, 2))
  with pytest.raises(TypeError, match="lip_pool: logits must have a floating dtype"):
    jaxpool.lip_pool(x, jnp.zeros((1, 6, 6, 3), jnp.int32), (2, 2))
  with pytest.raises(TypeError, match="soft_pool: inputs must have a floating dtype"):
    jaxpool.soft_pool(jnp.zeros((1, 4, 4, 1), jnp.int32), (2, 2))
  with pytest.raises(ValueError, match="soft_pool: .*strides"):
    jaxpool.soft_pool(x, (2, 2), (1, 0))


def test_under_vmap_and_jit():
  rng = np.random.default_rng(8)
  x = rng.normal(size=(3, 6, 6, 2)).astype(np.float32)
  logits = rng.normal(size=(3, 6, 6, 2)).astype(np.float32)
  f = jax.jit(jax.vmap(lambda x, lg: jaxpool.lip_pool(x, lg, (3, 3), 2, "SAME")))
  np.testing.assert_allclose(
    f(x, logits), reference.lip_pool(x, logits, (3, 3), 2, "SAME"), rtol=RTOL, atol=ATOL
  )


def test_shapes_and_values_over_random_configurations():
  rng = np.random.default_rng(11)
  for _ in range(4):
    n = int(rng.integers(1, 4))
    spatial = tuple(int(v) for v in rng.integers(4, 8, size=n))
    window = tuple(int(v) for v in rng.integers(1, 4, size=n))
    strides = tuple(int(v) for v in rng.integers(1, 3, size=n))
    dilation = tuple(int(v) for v in rng.integers(1, 3, size=n))
    padding = tuple((int(rng.integers(0, 2)), int(rng.integers(0, 2))) for _ in range(n))
    options = dict(dilation=dilation, ceil_mode=bool(rng.integers(0, 2)))
    x = rng.normal(size=(2, *spatial, 2)) * 3
    # The output size by PyTorch's rule, from the reference (not from jaxpool).
    shape = reference.max_pool(x, window, strides, padding, **options).shape
    y = jaxpool.soft_pool(x.astype(np.float32), window, strides, padding, **options)
    assert y.shape == shape
    np.testing.assert_allclose(
      y, reference.lip_pool(x, x, window, strides, padding, **options), rtol=RTOL, atol=ATOL
    )


def test_ceil_mode_drops_a_window_starting_in_the_high_padding():
  x = np.random.default_rng(12).normal(size=(1, 4, 2))
  args = ((1,), 1, ((0, 1),))
  y = jaxpool.soft_pool(x.astype(np.float32), *args, ceil_mode=True)
  assert y.shape == (1, 4, 2)  # PyTorch's rule (reference.output_size)
  np.testing.assert_allclose(y, x, rtol=1e-6)


def test_tiling_windows_grads_crop_and_empty_windows():
  # stride = window, no padding: the reshape path (with a cropped last row/col).
  with jax.enable_x64(True):
    rng = np.random.default_rng(11)
    x = jnp.asarray(rng.normal(size=(1, 5, 7, 2)))
    logits = jnp.asarray(rng.normal(size=(1, 5, 7, 2)) * 2)
    lip = jax.jit(lambda x, lg: jaxpool.lip_pool(x, lg, (2, 3), (2, 3)))
    np.testing.assert_allclose(
      lip(x, logits),
      reference.lip_pool(np.asarray(x), np.asarray(logits), (2, 3), (2, 3), "VALID"),
      rtol=1e-12,
    )
    check_grads(lip, (x, logits), order=1, modes=("fwd", "rev"))
    grad = jax.grad(lambda x: jnp.sum(lip(x, logits)))(x)
    assert np.all(np.asarray(grad)[:, 4:] == 0) and np.all(np.asarray(grad)[:, :, 6:] == 0)
    soft_cf = jax.jit(lambda x: jaxpool.soft_pool(x, (2, 2), 2, channel_axis=1))
    x_cf = jnp.moveaxis(x, -1, 1)
    np.testing.assert_allclose(
      jnp.moveaxis(soft_cf(x_cf), 1, -1),
      reference.lip_pool(np.asarray(x), np.asarray(x), (2, 2), 2, "VALID"),
      rtol=1e-12,
    )
    check_grads(soft_cf, (x_cf,), order=1, modes=("fwd", "rev"))
  # A window whose logits are all -inf contributes 0 with finite gradients.
  x = jnp.arange(8.0).reshape(1, 4, 2)
  logits = jnp.asarray([0.0, 1.0, -np.inf, -np.inf]).reshape(1, 4, 1)  # shared by channels
  f = lambda x, lg: jnp.sum(jaxpool.lip_pool(x, lg, (2,), 2))
  y = jaxpool.lip_pool(x, logits, (2,), 2)
  e = 1 / (1 + np.exp(-1.0))
  np.testing.assert_allclose(y[0], [[(1 - e) * 0 + e * 2, (1 - e) * 1 + e * 3], [0, 0]], rtol=1e-6)
  gx, gl = jax.grad(f, argnums=(0, 1))(x, logits)
  assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gl))


# --- soft_pool's custom JVP and its one-pass transpose (issue 8) ---------------------

SOFT_GEOMETRIES = [  # spatial, window, strides, padding, options
  ((8, 8), (2, 2), 2, "VALID", {}),  # tiling: blocks
  ((7, 8), (3, 3), 2, "SAME", {}),  # overlapping: factorised
  ((8, 6), (3, 3), 2, 1, {}),  # sizes divisible by the strides: phase views
  ((7, 5), (2, 2), 2, 1, {"ceil_mode": True}),  # tiling with padding and overhang
  ((4, 5, 4), (2, 3, 2), (1, 2, 2), "SAME", {"dilation": (1, 1, 2)}),
]


def _soft_vjp_and_jvp(x, cot, tangent, window, strides, padding, options):
  f = lambda x: jaxpool.soft_pool(x, window, strides, padding, **options)
  vjp = jax.jit(lambda x, c: jax.vjp(f, x)[1](c)[0])(x, cot)
  jvp = jax.jit(lambda x, t: jax.jvp(f, (x,), (t,))[1])(x, tangent)
  return np.asarray(vjp), np.asarray(jvp)


@pytest.mark.parametrize("spatial,window,strides,padding,options", SOFT_GEOMETRIES)
def test_gradient_and_jvp_match_numpy(spatial, window, strides, padding, options):
  rng = np.random.default_rng(20)
  x = (rng.normal(size=(2, *spatial, 2)) * 3).astype(np.float32)
  y = jax.eval_shape(lambda x: jaxpool.soft_pool(x, window, strides, padding, **options), x)
  cot = rng.normal(size=y.shape).astype(np.float32)
  tangent = rng.normal(size=x.shape).astype(np.float32)
  vjp, jvp = _soft_vjp_and_jvp(x, cot, tangent, window, strides, padding, options)
  want = reference.soft_pool_grad(x, cot, window, strides, padding, **options)
  np.testing.assert_allclose(vjp, want, rtol=1e-4, atol=1e-5)
  # Forward mode: <J t, cot> = <t, J^T cot>, with J^T cot from the reference.
  np.testing.assert_allclose(np.sum(jvp * cot), np.sum(tangent * want), rtol=1e-4)


def _lip_vjp_and_jvp(x, logits, cot, tangents, window, strides, padding, options):
  f = lambda x, lg: jaxpool.lip_pool(x, lg, window, strides, padding, **options)
  vjp = jax.jit(lambda x, lg, c: jax.vjp(f, x, lg)[1](c))(x, logits, cot)
  jvp = jax.jit(lambda x, lg, t: jax.jvp(f, (x, lg), t)[1])(x, logits, tangents)
  return tuple(np.asarray(g) for g in vjp), np.asarray(jvp)


def _check_lip_derivatives(x, logits, window, strides, padding, options, rng, tol=1e-4):
  """lip_pool's VJP in both arguments against the numpy reference, its JVP by
  <J t, cot> = <t, J^T cot>, and the values it returns under differentiation."""
  f = lambda x, lg: jaxpool.lip_pool(x, lg, window, strides, padding, **options)
  cot = rng.normal(size=jax.eval_shape(f, x, logits).shape).astype(np.float32)
  tangents = (
    rng.normal(size=x.shape).astype(np.float32),
    rng.normal(size=logits.shape).astype(np.float32),
  )
  (gx, gl), jvp = _lip_vjp_and_jvp(x, logits, cot, tangents, window, strides, padding, options)
  want_x, want_l = reference.lip_pool_grad(x, logits, cot, window, strides, padding, **options)
  want_l = want_l.sum(
    axis=tuple(i for i, n in enumerate(logits.shape) if n == 1), keepdims=True
  )  # broadcast logits: their gradient is summed
  np.testing.assert_allclose(gx, want_x, rtol=tol, atol=tol / 10)
  np.testing.assert_allclose(gl, want_l, rtol=tol, atol=tol / 10)
  np.testing.assert_allclose(
    np.sum(jvp * cot), np.sum(tangents[0] * want_x) + np.sum(tangents[1] * want_l), rtol=tol
  )
  y = jax.jit(lambda x, lg: jax.vjp(f, x, lg)[0])(x, logits)
  np.testing.assert_allclose(
    y, reference.lip_pool(x, logits, window, strides, padding, **options), rtol=1e-5, atol=1e-5
  )


@pytest.mark.parametrize("spatial,window,strides,padding,options", SOFT_GEOMETRIES)
def test_lip_gradient_and_jvp_match_numpy(spatial, window, strides, padding, options):
  # lip_pool shares soft_pool's exact and tiled tangent rules, with separate logits.
  rng = np.random.default_rng(24)
  x = (rng.normal(size=(2, *spatial, 2)) * 3).astype(np.float32)
  logits = (rng.normal(size=x.shape) * 3).astype(np.float32)
  _check_lip_derivatives(x, logits, window, strides, padding, options, rng)
  # One logit per position shared by the channels, inputs far from 0.
  shared = (rng.normal(size=(*x.shape[:-1], 1)) * 3).astype(np.float32)
  _check_lip_derivatives(x + 300, shared, window, strides, padding, options, rng, tol=1e-3)


def test_soft_and_lip_second_order_on_overlapping_windows():
  # soft_pool's second order goes through autodiff of its factorised tangent, whose
  # weights e^(x - shift) take the largest element's exponential exactly at the
  # shift (autodiff of the bounding minimum halved its derivative there);
  # lip_pool's through its exact per-offset tangent: here in 1-D; in 2-D (3x3/2 with
  # padding on 6 x 6, the same rule) test_grads_in_inputs_and_logits checks it.
  with jax.enable_x64(True):
    rng = np.random.default_rng(25)
    x = jnp.asarray(rng.normal(size=(1, 6, 6, 2)))
    logits = jnp.asarray(rng.normal(size=(1, 6, 6, 2)))
    for args in (((3, 3), 2, "SAME"), ((3,), 2, ((1, 1),))):
      if len(args[0]) == 1:
        x, logits = x[:, 0], logits[:, 0]
      soft = jax.jit(lambda x, args=args: jaxpool.soft_pool(x, *args))
      check_grads(soft, (x,), order=2, modes=("fwd", "rev"))
    lip = jax.jit(lambda x, lg: jaxpool.lip_pool(x, lg, (3,), 2, ((1, 1),)))
    check_grads(lip, (x, logits), order=2, modes=("fwd", "rev"))


def test_factorised_and_exact_tangents_each_taken_where_they_should(monkeypatch):
  # Replacing one branch of the tangent by NaNs shows which one was taken: on CPU
  # the factorised one for ordinary inputs, the exact one when some window's
  # weights lie more than _MAX_SHIFT below the largest element of the input (an
  # element 100 above the rest); on accelerators the exact one always
  # (fallback.fast_or_exact).
  from jaxpool._src import soft

  rng = np.random.default_rng(21)
  args = ((3, 3), 2, "SAME", {})
  x = (rng.normal(size=(2, 7, 8, 2)) * 3).astype(np.float32)
  far = x.copy()
  far[1, 3, 3, 1] = 100.0
  cot = rng.normal(size=(2, 4, 4, 2)).astype(np.float32)
  tangent = rng.normal(size=x.shape).astype(np.float32)
  from jaxpool._src.machinery import views

  # Linear in the tangent (a window sum times NaN), so that its transpose is NaN too.
  nan_branches = {
    "_exact_tangent": lambda x, logits, y, tx, tl, geom: (
      views.window_sum_by_views(tx, geom) * np.nan
    ),
    "_factorised_tangent": lambda x, y, d, shift, t, geom: (
      views.window_sum_by_views(t, geom) * np.nan
    ),
  }
  on_cpu = jax.default_backend() == "cpu"  # elsewhere: the exact tangent always
  for branch, ordinary_ok in [("_exact_tangent", True), ("_factorised_tangent", False)]:
    with monkeypatch.context() as patch:
      patch.setattr(soft, branch, nan_branches[branch])
      cases = (
        [(x, ordinary_ok), (far, not ordinary_ok)]
        if on_cpu
        else [(x, branch == "_factorised_tangent"), (far, branch == "_factorised_tangent")]
      )
      for inputs, ok in cases:
        vjp, jvp = _soft_vjp_and_jvp(inputs, cot, tangent, *args)
        if ok:
          want = reference.soft_pool_grad(inputs, cot, *args[:3])
          np.testing.assert_allclose(vjp, want, rtol=1e-4, atol=1e-5)
          np.testing.assert_allclose(np.sum(jvp * cot), np.sum(tangent * want), rtol=1e-4)
        else:
          assert np.isnan(vjp).all() and np.isnan(jvp).all()


@pytest.mark.parametrize("offset, far", [(0.0, False), (300.0, False), (0.0, True)])
def test_values_under_differentiation_match_numpy(offset, far):
  """Differentiated, overlapping windows take the one-shift forward pass (or, for an
  input spread over more than _MAX_SHIFT, the exact one): the values, and the
  gradient of inputs far from 0 (cancellation in the factorised tangent), against
  the numpy reference."""
  rng = np.random.default_rng(23)
  x = (offset + rng.normal(size=(2, 9, 8, 3)) * 3).astype(np.float32)
  if far:
    x[0, 4, 4, 0] = 100.0
  f = lambda x: jaxpool.soft_pool(x, (3, 3), 2, "SAME")
  cot = rng.normal(size=(2, 5, 4, 3)).astype(np.float32)
  y_vjp, grad = jax.jit(lambda x, c: (lambda y, pull: (y, pull(c)[0]))(*jax.vjp(f, x)))(x, cot)
  y_jvp = jax.jit(lambda x: jax.jvp(f, (x,), (jnp.ones_like(x),))[0])(x)
  want = reference.lip_pool(x, x, (3, 3), 2, "SAME")
  for y in (y_vjp, y_jvp):
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
    np.asarray(grad), reference.soft_pool_grad(x, cot, (3, 3), 2, "SAME"), rtol=1e-4, atol=1e-4
  )


def test_soft_gradient_under_vmap_and_bfloat16():
  rng = np.random.default_rng(22)
  x = (rng.normal(size=(3, 2, 7, 8, 2)) * 3).astype(np.float32)
  x[1, 0, 2, 2, 0] = 100.0  # one vmapped example takes the exact branch
  cot = rng.normal(size=(3, 2, 4, 4, 2)).astype(np.float32)
  f = lambda x, c: jax.vjp(lambda x: jaxpool.soft_pool(x, (3, 3), 2, "SAME"), x)[1](c)[0]
  got = jax.jit(jax.vmap(f))(x, cot)
  for i in range(3):
    np.testing.assert_allclose(
      got[i], reference.soft_pool_grad(x[i], cot[i], (3, 3), 2, "SAME"), rtol=1e-4, atol=1e-5
    )
  xb, cb = jnp.asarray(x[0], jnp.bfloat16), jnp.asarray(cot[0], jnp.bfloat16)
  gb = jax.jit(f)(xb, cb)
  assert gb.dtype == jnp.bfloat16
  want = reference.soft_pool_grad(
    np.asarray(xb, np.float32), np.asarray(cb, np.float32), (3, 3), 2, "SAME"
  )
  np.testing.assert_allclose(np.asarray(gb, np.float32), want, rtol=3e-2, atol=3e-2)
