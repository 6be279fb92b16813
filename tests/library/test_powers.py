"""powers.power: base ** p for the scaled bases of the p-norm pools, against numpy."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxpool._src.machinery import powers


def test_power_integral_and_float_exponents():
  base = np.linspace(0.0, 1.25, 51).astype(np.float32)  # scaled bases, 0 included
  for p in (1.0, 2.0, 3.0, 7.0, 0.5, 2.5, 13.25):
    got = np.asarray(jax.jit(lambda b, p=p: powers.power(b, p))(base))
    want = base.astype(np.float64) ** p
    # exp(p log b) has an absolute error below eps / e on [0, 1] (the docstring).
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=2 * np.finfo(np.float32).eps)
    assert got[0] == 0  # 0 ** p = 0 for p > 0, also through log(0) = -inf
  # A traced p takes the exp/log form.
  got = jax.jit(powers.power)(base, jnp.float32(2.5))
  np.testing.assert_allclose(got, base.astype(np.float64) ** 2.5, rtol=1e-6, atol=1e-7)


def test_power_integral_p_is_an_exact_product():
  base = np.array([1.5, 3.0, 1e-3, 7.0], np.float32)
  np.testing.assert_array_equal(powers.power(jnp.asarray(base), 3.0), base * base * base)


def test_root_of_scaled_totals():
  """powers.root: total ** (1/p) on the range the pools' scaled totals take, [1/c, K 2^p],
  and 0 (an all-zero window), against float64; square roots for p = 2 and 4."""
  total = np.concatenate([[0.0], np.geomspace(1 / 27, 27 * 2.0**4, 20_001)]).astype(np.float32)
  for p in (2.0, 3.0, 4.0, 2.5, 1.5, 5.0, 7.0):
    got = np.asarray(jax.jit(lambda t, p=p: powers.root(t, p))(total))
    want = total.astype(np.float64) ** (1 / p)
    ulps = 8 if p in (2.5, 1.5) else 2  # exp(log(total) / p); square roots, Newton
    np.testing.assert_allclose(got, want, rtol=ulps * np.finfo(np.float32).eps, atol=0)
  text = jax.jit(lambda t: powers.root(t, 4.0)).lower(jnp.asarray(total)).as_text()
  assert text.count("stablehlo.sqrt") == 2 and "stablehlo.log" not in text


def test_integral_root_by_newton_against_float64():
  """Integral 3 <= p <= 7 in float32: Newton's iteration from the bits, within 2^-23
  relative (1-2 ulp) of the float64 root on every float32 of [1, 8) (all mantissas of
  three binades) and a sweep of [2^-20, 2^40]; 0 -> 0 and NaN -> NaN; no exp or log
  in the program."""
  dense = np.arange(
    np.float32(1).view(np.uint32), np.float32(8).view(np.uint32), dtype=np.uint32
  ).view(np.float32)
  total = np.concatenate([dense, np.geomspace(2.0**-20, 2.0**40, 200_001).astype(np.float32)])
  for p in (3.0, 5.0, 6.0, 7.0):
    fn = jax.jit(lambda t, p=p: powers.root(t, p))
    got = np.asarray(fn(total), np.float64)
    want = total.astype(np.float64) ** (1 / p)
    np.testing.assert_allclose(got, want, rtol=2 * 2.0**-24, atol=0)
    edge = np.asarray(fn(jnp.asarray([0.0, np.nan], jnp.float32)))
    assert edge[0] == 0 and np.isnan(edge[1])
    text = fn.lower(jnp.asarray(total)).as_text()
    assert "stablehlo.log" not in text and "stablehlo.exponential" not in text
  # p = 8 (beyond the iteration's reach) keeps exp(log(total) / p).
  assert (
    "stablehlo.log" in jax.jit(lambda t: powers.root(t, 8.0)).lower(jnp.asarray(total)).as_text()
  )
