"""jaxpool is a drop-in replacement for flax.linen's max_pool, min_pool, avg_pool.

Every call below is one that Flax accepts (positional or keyword, strides None,
padding strings and pairs, count_include_pad, no batch dim, several batch dims);
jaxpool must return the same values and, on inputs without ties (where XLA's
gradient is well defined and equals PyTorch's rule), the same gradients.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpool

flax_pooling = pytest.importorskip("flax.linen.pooling")

PAIRS = {
  "max_pool": (jaxpool.max_pool, flax_pooling.max_pool),
  "min_pool": (jaxpool.min_pool, flax_pooling.min_pool),
  "avg_pool": (jaxpool.avg_pool, flax_pooling.avg_pool),
}

# (name, input shape, positional args after inputs, keyword args)
CALLS = [
  ("max_pool", (2, 6, 7, 3), ((2, 2),), {}),
  ("max_pool", (2, 6, 7, 3), ((3, 3), (2, 2), "SAME"), {}),
  ("max_pool", (2, 6, 7, 3), ((3, 2),), dict(strides=(1, 2), padding=((1, 0), (2, 1)))),
  ("max_pool", (6, 7, 3), ((2, 3),), dict(strides=(2, 1), padding="same")),  # no batch
  ("max_pool", (2, 3, 6, 5, 2), ((2, 2),), dict(strides=None, padding="VALID")),  # 2 batch
  ("max_pool", (2, 9, 2), ((4,),), dict(strides=(3,), padding="SAME_LOWER")),
  ("max_pool", (1, 4, 5, 6, 2), ((2, 3, 2),), dict(strides=(1, 2, 2), padding="SAME")),
  ("max_pool", (2, 6, 7, 3), ((2, 2),), dict(padding=[[1, 1], [0, 1]])),  # lists
  ("max_pool", (2, 6, 7, 3), ((2, 2),), dict(padding=np.array([[1, 0], [1, 1]]))),  # array
  ("max_pool", (2, 6, 7, 3), ((2, 2),), dict(padding=[np.array([0, 1]), (1, 0)])),
  ("min_pool", (2, 6, 7, 3), ((3, 3),), dict(strides=(2, 2), padding="SAME")),
  ("min_pool", (7, 2), ((3,),), dict(padding=((2, 1),))),
  ("min_pool", (3, 2, 5, 2), ((2,),), {}),
  ("avg_pool", (2, 6, 7, 3), ((2, 2),), {}),
  ("avg_pool", (2, 6, 7, 3), ((3, 3), (2, 2), "SAME", False), {}),  # positional
  ("avg_pool", (2, 6, 7, 3), ((3, 3), (2, 2), "SAME"), dict(count_include_pad=True)),
  ("avg_pool", (2, 6, 7, 3), ((3, 2),), dict(padding=((1, 2), (0, 1)), count_include_pad=False)),
  ("avg_pool", (2, 6, 7, 3), ((3, 2),), dict(padding=((1, 2), (0, 1)), count_include_pad=True)),
  (
    "avg_pool",
    (6, 7, 3),
    ((2, 2),),
    dict(strides=(2, 2), padding="SAME", count_include_pad=False),
  ),  # no batch
  ("avg_pool", (2, 2, 6, 5, 3), ((3, 2),), dict(padding="SAME", count_include_pad=False)),
  (
    "avg_pool",
    (1, 4, 5, 6, 2),
    ((2, 3, 2),),
    dict(strides=(2, 1, 2), padding="SAME", count_include_pad=False),
  ),
  ("avg_pool", (2, 9, 2), ((4,),), dict(strides=(2,), padding=((3, 1),))),
]


@pytest.mark.parametrize(
  "name, shape, args, kwargs", CALLS, ids=[f"{c[0]}-{i}" for i, c in enumerate(CALLS)]
)
def test_values_and_gradients_equal_flax(name, shape, args, kwargs):
  ours, theirs = PAIRS[name]
  rng = np.random.default_rng(len(shape) * 31 + len(args))
  # A permutation: no ties, so XLA's gradient is the unique one.
  x = jnp.asarray(rng.permutation(np.prod(shape)).reshape(shape) / 10.0, jnp.float32)

  @jax.jit
  def both(x):
    y1, vjp1 = jax.vjp(lambda x: ours(x, *args, **kwargs), x)
    y2, vjp2 = jax.vjp(lambda x: theirs(x, *args, **kwargs), x)
    ct = jnp.cos(jnp.arange(y2.size, dtype=jnp.float32)).reshape(y2.shape)
    return y1, y2, vjp1(ct)[0], vjp2(ct)[0]

  y1, y2, g1, g2 = both(x)
  assert y1.shape == y2.shape and y1.dtype == y2.dtype
  if name == "avg_pool":
    np.testing.assert_allclose(y1, y2, rtol=1e-6, atol=1e-6)
  else:
    np.testing.assert_array_equal(y1, y2)
  np.testing.assert_allclose(g1, g2, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_equals_flax(dtype):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 5, 3)), dtype)
  for name in ("max_pool", "min_pool"):
    ours, theirs = PAIRS[name]
    np.testing.assert_array_equal(
      ours(x, (3, 2), (2, 1), "SAME"), theirs(x, (3, 2), (2, 1), "SAME")
    )
  # Flax sums in the input dtype, jaxpool in float32: equal up to one rounding.
  ours, theirs = PAIRS["avg_pool"]
  y1, y2 = ours(x, (3, 2), (2, 1), "SAME"), theirs(x, (3, 2), (2, 1), "SAME")
  assert y1.dtype == y2.dtype == dtype
  tol = 1e-2 if dtype == jnp.bfloat16 else 2e-3
  np.testing.assert_allclose(y1.astype(np.float32), y2.astype(np.float32), rtol=tol, atol=tol)


def test_documented_differences_from_flax():
  x = jnp.ones((1, 3, 1))
  # A window made only of padding averages to 0 in jaxpool, 0/0 = NaN in Flax.
  ours = jaxpool.avg_pool(x, (2,), padding=((2, 0),), count_include_pad=False)
  theirs = flax_pooling.avg_pool(x, (2,), padding=((2, 0),), count_include_pad=False)
  np.testing.assert_array_equal(ours[0, :, 0], [0, 1, 1, 1])
  assert np.isnan(theirs[0, 0, 0]) and np.array_equal(theirs[0, 1:, 0], ours[0, 1:, 0])
  # Negative padding crops in lax; jaxpool rejects it.
  with pytest.raises(ValueError, match="padding"):
    jaxpool.max_pool(x, (1,), padding=((-1, 0),))
