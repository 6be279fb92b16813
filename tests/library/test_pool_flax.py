"""jaxpool.pool is a drop-in for flax.linen.pool: same calls, same values.

Every call below is one Flax accepts (its batch-dimension rule: `(*batch, *spatial,
features)` with zero, one or two batch dims; SAME / VALID / explicit padding; the
monoids lax.add, lax.max, lax.min, also with a non-identity init, and lax.mul);
flax.linen.pool (XLA's reduce_window) is the reference. Gradients are compared
where Flax has one (add; max/min on inputs without ties), and against a closed form
for a reducer Flax cannot differentiate.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import jaxpool

nn = pytest.importorskip("flax.linen")

# (input shape, init, reduce_fn, window, strides, padding)
CALLS = [
  ((2, 6, 7, 3), 0.0, lax.add, (2, 2), (2, 2), "VALID"),
  ((2, 6, 7, 3), -jnp.inf, lax.max, (3, 3), (2, 2), "SAME"),
  ((2, 6, 7, 3), jnp.inf, lax.min, (3, 2), (1, 2), ((1, 0), (2, 1))),
  ((6, 7, 3), 0.0, lax.add, (2, 3), (2, 1), "SAME"),  # no batch dim
  ((6, 7, 3), -jnp.inf, lax.max, (2, 2), None, "VALID"),  # no batch dim, strides None
  ((2, 3, 6, 5, 2), -jnp.inf, lax.max, (2, 2), (1, 1), "SAME"),  # two batch dims
  ((2, 3, 6, 5, 2), 0.0, lax.add, (3,), (2,), "SAME"),  # 1-d window, 3 batch dims
  ((1, 4, 5, 6, 2), 0.0, lax.add, (2, 3, 2), (1, 2, 2), "SAME"),  # 3-d
  ((2, 9, 2), 1.0, lax.add, (4,), (3,), ((2, 1),)),  # init is not the identity
  ((2, 6, 7, 3), 0.5, lax.max, (3, 3), (2, 2), "SAME"),  # max with a floor
  ((2, 6, 7, 3), 1.0, lax.mul, (2, 2), (1, 1), ((1, 1), (0, 1))),  # product monoid
  ((2, 6, 7, 3), -jnp.inf, jnp.maximum, (2, 2), (2, 2), [[1, 0], [0, 1]]),  # lists
]


def call_id(c):
  shape, init, fn, window, strides, padding = c
  return f"{shape}-{getattr(fn, '__name__', fn)}-{init}-w{window}-s{strides}-p{padding}"


@pytest.mark.parametrize("call", CALLS, ids=call_id)
def test_values_equal_flax(call):
  shape, init, fn, window, strides, padding = call
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(0.5, 1.5, size=shape).astype(np.float32))
  expected = nn.pool(x, init, fn, window, strides, padding)
  got = jaxpool.pool(x, init, fn, window, strides, padding)
  assert got.shape == expected.shape and got.dtype == expected.dtype
  np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize(
  "call",
  [c for c in CALLS if (c[2], c[1]) in ((lax.add, 0.0), (lax.max, -jnp.inf), (lax.min, jnp.inf))],
  ids=call_id,
)
def test_gradients_equal_flax(call):
  shape, init, fn, window, strides, padding = call
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.permutation(np.prod(shape)).reshape(shape).astype(np.float32))  # no ties
  cot = jnp.asarray(rng.normal(size=nn.pool(x, init, fn, window, strides, padding).shape))
  ours = jax.vjp(lambda v: jaxpool.pool(v, init, fn, window, strides, padding), x)[1](cot)[0]
  theirs = jax.vjp(lambda v: nn.pool(v, init, fn, window, strides, padding), x)[1](cot)[0]
  np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_integer_inputs_equal_flax():
  x = jnp.arange(2 * 6 * 5 * 2, dtype=jnp.int32).reshape(2, 6, 5, 2) % 7
  for init, fn in ((0, lax.add), (jnp.iinfo(jnp.int32).min, lax.max), (3, lax.max)):
    expected = nn.pool(x, init, fn, (2, 2), (1, 2), "SAME")
    got = jaxpool.pool(x, init, fn, (2, 2), (1, 2), "SAME")
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_a_reducer_flax_cannot_differentiate():
  """log(e^a + e^b): the gradient of every window is its softmax (closed form)."""
  rng = np.random.default_rng(2)
  x = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
  pool = lambda v: jaxpool.pool(v, -jnp.inf, jnp.logaddexp, (2, 2), (2, 2))
  blocks = x.reshape(2, 3, 2, 3, 2, 3)
  lse = np.log(np.exp(blocks).sum(axis=(2, 4)))
  np.testing.assert_allclose(pool(x), lse, rtol=1e-5)
  grad = jax.grad(lambda v: pool(v).sum())(x)
  softmax = np.exp(blocks - lse[:, :, None, :, None, :]).reshape(x.shape)
  np.testing.assert_allclose(grad, softmax, rtol=1e-5)
  with pytest.raises(Exception):  # noqa: B017 - flax's pool: reduce_window has no rule
    jax.grad(lambda v: nn.pool(v, -jnp.inf, jnp.logaddexp, (2, 2), (2, 2), "VALID").sum())(x)


def test_jaxpool_options_and_channels_first():
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 3, 7, 6)).astype(np.float32))
  got = jaxpool.pool(
    x, 0.0, jnp.logaddexp, (3, 2), 2, 1, dilation=(2, 1), ceil_mode=True, channel_axis=1
  )
  last = jaxpool.pool(
    jnp.moveaxis(x, 1, -1), 0.0, jnp.logaddexp, (3, 2), 2, 1, dilation=(2, 1), ceil_mode=True
  )
  np.testing.assert_allclose(got, jnp.moveaxis(last, -1, 1), rtol=1e-6)
  # init (0: e^0 = 1) once; the padding and the ceil_mode overhang add nothing
  expected = jaxpool.window_pool(
    lambda w, mask: jnp.log(1.0 + jnp.sum(jnp.where(mask, jnp.exp(w), 0.0), axis=-1)),
    x,
    (3, 2),
    2,
    1,
    dilation=(2, 1),
    ceil_mode=True,
    channel_axis=1,
    pad_value=0.0,
  )
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_errors():
  x = jnp.ones((1, 4, 4, 1))
  with pytest.raises(TypeError, match="pool: reduce_fn must be a callable"):
    jaxpool.pool(x, 0.0, "add", (2, 2))
  with pytest.raises(ValueError, match="pool: init must be a scalar"):
    jaxpool.pool(x, np.zeros(2), jnp.logaddexp, (2, 2))
  with pytest.raises(ValueError, match="pool: every entry of window_shape"):
    jaxpool.pool(x, 0.0, jnp.logaddexp, (0, 2))
