"""powers.power: base ** p for the scaled bases of the p-norm pools, against numpy."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxpool._src import powers


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
