"""global_norm.lp_norm (global_lp_pool, gem_pool): both forms against float64 numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpool._src.machinery import global_norm


def _expected(x, p, floor=None):
  """(norm over axis 1, gradient of sum(norm * w)) in float64, closed form."""
  x = np.asarray(x, np.float64)
  c = x if floor is None else np.maximum(x, floor)
  r = (np.abs(c) ** p).sum(axis=1, keepdims=True) ** (1 / p)
  w = np.arange(1.0, r.size + 1).reshape(r.shape)
  with np.errstate(divide="ignore", invalid="ignore"):
    grad = np.where((c != 0) & (r > 0), np.sign(c) * (np.abs(c) / r) ** (p - 1), 0) * w
  if floor is not None:
    grad = np.where(x < floor, 0, grad)
  return r, grad, w


def _run(x, p, floor=None):
  x = jnp.asarray(x, jnp.float32)
  w = jnp.arange(1.0, x.shape[0] * x.shape[2] + 1).reshape(x.shape[0], 1, x.shape[2])
  f = lambda v: global_norm.lp_norm(v, p, (1,), floor)
  return jax.jit(f)(x), jax.jit(jax.grad(lambda v: jnp.sum(f(v) * w)))(x)


def _ordinary(rng, shape=(3, 40, 5)):
  x = rng.normal(size=shape).astype(np.float32)
  x[0, :5, 0] = 0.0  # exact zeros: gradient 0 there
  return x


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 4.0, 2.5])
@pytest.mark.parametrize("floor", [None, 0.25])
def test_lp_norm_values_and_gradients(p, floor):
  x = _ordinary(np.random.default_rng(int(p * 10)))
  r, grad = _run(x, p, floor)
  want_r, want_grad, _ = _expected(x, p, floor)
  np.testing.assert_allclose(r, want_r, rtol=2e-6)
  np.testing.assert_allclose(grad, want_grad, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("p", [2.5, 4.0])
def test_scaled_form_scales_by_the_largest_magnitude_of_either_sign(p):
  # Huge negative values beside small positive ones: scaled by max(x) instead of
  # max |x|, (|x| / m)^p would overflow. p = 4 reaches the scaled form through the
  # unscaled form's range check, p = 2.5 directly.
  rng = np.random.default_rng(6)
  x = -(rng.uniform(1.0, 2.0, size=(3, 40, 5)) * 1e30).astype(np.float32)
  x[:, 0, :] = 1e-3
  x[2] *= -1  # one example of the same magnitudes, positive
  r, grad = _run(x, p)
  want_r, want_grad, _ = _expected(x, p)
  np.testing.assert_allclose(r, want_r, rtol=2e-6)
  np.testing.assert_allclose(grad, want_grad, rtol=2e-5, atol=1e-7)


def test_unscaled_form_taken_for_ordinary_inputs_scaled_form_elsewhere(monkeypatch):
  # With the scaled form replaced by NaNs, a NaN result shows it was taken: never
  # for ordinary inputs with a fixed integral p (on CPU), always where the powers
  # would overflow or underflow, for an all-zero plane, and for other p.
  rng = np.random.default_rng(1)
  x = _ordinary(rng)
  scaled = global_norm._scaled_parts
  nans = lambda *args: tuple(jnp.full_like(v, np.nan) for v in scaled(*args))
  monkeypatch.setattr(global_norm, "_scaled_parts", nans)
  if jax.default_backend() == "cpu":
    r, grad = _run(x, 3.0)
    np.testing.assert_allclose(r, _expected(x, 3.0)[0], rtol=2e-6)
    assert np.isfinite(grad).all()
  zero_plane = x.copy()
  zero_plane[1, :, 2] = 0.0
  for data, p in (
    (x * np.float32(1e30), 4.0),
    (x * np.float32(1e-30), 4.0),
    (x * np.float32(1e-20), 2.0),
    (zero_plane, 2.0),
    (x, 2.5),
  ):
    assert np.isnan(_run(data, p)[0]).all()
  monkeypatch.setattr(global_norm, "_scaled_parts", scaled)
  # The norm is 1-homogeneous and its gradient 0-homogeneous: the scaled form must
  # give the ordinary answers at every scale, and 0 (gradient 0) on a zero plane.
  r, grad = _run(x, 4.0)
  for scale in (1e30, 1e-30):
    r_s, grad_s = _run(x * np.float32(scale), 4.0)
    np.testing.assert_allclose(r_s / np.float32(scale), r, rtol=2e-6)
    np.testing.assert_allclose(grad_s, grad, rtol=2e-5, atol=1e-7)
  r, grad = _run(zero_plane, 2.0)
  want_r, want_grad, _ = _expected(zero_plane, 2.0)
  np.testing.assert_allclose(r, want_r, rtol=2e-6)
  np.testing.assert_allclose(grad, want_grad, rtol=2e-5, atol=1e-7)
  assert r[1, 0, 2] == 0 and (grad[1, :, 2] == 0).all()


def test_unscaled_form_under_vmap():
  base = _ordinary(np.random.default_rng(2))
  x = np.stack([base, base * np.float32(1e30)])  # the second needs the scaled form
  f = jax.vmap(lambda v: global_norm.lp_norm(v, 2.0, (1,)))
  got = jax.jit(f)(x)
  np.testing.assert_allclose(got[0], _expected(base, 2.0)[0], rtol=2e-6)
  np.testing.assert_allclose(got[1] / np.float32(1e30), _expected(base, 2.0)[0], rtol=2e-6)


def test_half_precision_inputs_give_the_float32_norm_and_gradient():
  # bfloat16/float16 inputs are computed in float32 (the derivative widens bfloat16
  # by its bits, dtypes.float32_by_bits): the same as float32 inputs of those values.
  x = _ordinary(np.random.default_rng(3))
  for dtype in (jnp.bfloat16, jnp.float16):
    xh = jnp.asarray(x, dtype)
    for p, floor in ((2.0, None), (3.0, 0.25)):
      f = lambda v: global_norm.lp_norm(v, p, (1,), floor)
      r = jax.jit(f)(xh)
      grad = jax.jit(jax.grad(lambda v: jnp.sum(f(v))))(xh)
      r32, grad32 = _run(np.asarray(xh, np.float32), p, floor)
      assert r.dtype == jnp.float32 and grad.dtype == dtype
      np.testing.assert_allclose(r, r32, rtol=1e-6)
      w = np.arange(1.0, r.size + 1).reshape(r.shape)
      np.testing.assert_allclose(
        np.asarray(grad, np.float32),
        np.asarray(jnp.asarray(grad32 / w.reshape(3, 1, 5), dtype), np.float32),
        rtol=1e-2,
      )
