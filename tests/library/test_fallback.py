"""fallback: a fast form where a per-call check passes, the exact form elsewhere
(a lax.cond on CPU, the exact form alone on accelerators), and all_true."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpool._src.machinery import fallback

try:
  from tests.helpers import lowered_text as _lowered
except ImportError:  # tests/ itself on sys.path
  from helpers import lowered_text as _lowered

# Distinguishable forms: sin marks the fast one, cos the exact one in the lowered text.
_fast = lambda x: jnp.sin(x)
_exact = lambda x: jnp.cos(x)


@pytest.mark.parametrize("ok", [True, False])
def test_takes_fast_form_exactly_when_check_passes(ok):
  x = jnp.linspace(-2.0, 2.0, 7)
  f = jax.jit(lambda ok, x: fallback.fast_or_exact(ok, _fast, _exact, x))
  expected = np.sin(np.asarray(x)) if ok else np.cos(np.asarray(x))
  if jax.default_backend() != "cpu":  # accelerators: the exact form always
    expected = np.cos(np.asarray(x))
  np.testing.assert_allclose(np.asarray(f(jnp.asarray(ok), x)), expected, rtol=1e-6)


@pytest.mark.parametrize("platform", ["cuda", "rocm", "tpu"])
def test_accelerators_lower_only_the_exact_form(platform):
  x = jnp.ones(5)
  f = lambda ok, x: fallback.fast_or_exact(ok, _fast, _exact, x)
  assert "stablehlo.sine" in _lowered(f, "cpu", True, x)  # CPU keeps both branches
  text = _lowered(f, platform, True, x)
  assert "stablehlo.cosine" in text and "stablehlo.sine" not in text


@pytest.mark.parametrize("shape", [(0,), (7,), (3, 5, 200), (2, 700)])
def test_all_true_is_numpy_all(shape):
  rng = np.random.default_rng(3)
  cases = [np.ones(shape, bool), rng.random(shape) > 0.5]
  if np.prod(shape):
    one_false = np.ones(shape, bool)
    one_false.flat[-1] = False  # the very last element alone
    cases.append(one_false)
  for ok in cases:
    assert bool(jax.jit(fallback.all_true)(jnp.asarray(ok))) == bool(np.all(ok))


def test_differentiable_and_transposable():
  x = jnp.linspace(-1.0, 1.0, 4)
  for ok in (True, False):
    g = jax.grad(lambda x: jnp.sum(fallback.fast_or_exact(jnp.asarray(ok), _fast, _exact, x)))(x)
    fast = ok and jax.default_backend() == "cpu"
    want = np.cos(np.asarray(x)) if fast else -np.sin(np.asarray(x))
    np.testing.assert_allclose(np.asarray(g), want, rtol=1e-6)
  # linear branches: transposed by JAX (soft_pool's tangent rule relies on it)
  (t,) = jax.linear_transpose(
    lambda v: fallback.fast_or_exact(jnp.asarray(False), lambda a: 2 * a, lambda a: 3 * a, v), x
  )(jnp.ones(4))
  np.testing.assert_allclose(np.asarray(t), 3.0)


def test_batched_predicate_under_vmap_picks_per_example():
  """vmap with one check per example: each row gets its own form (JAX turns the
  cond into a select), not the first row's."""
  x = jnp.linspace(-1.0, 1.0, 6).reshape(3, 2)
  ok = jnp.asarray([True, False, True])
  got = jax.vmap(lambda o, v: fallback.fast_or_exact(o, _fast, _exact, v))(ok, x)
  fast = jax.default_backend() == "cpu"
  want = np.where(np.asarray(ok)[:, None] & fast, np.sin(np.asarray(x)), np.cos(np.asarray(x)))
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
