"""The compiled structure that jaxpool's fusion barriers rely on, pinned on CPU
(issue 22): a jax or XLA upgrade that fuses through a barrier fails here instead of
slowing the pools down silently. Each test asserts the essential property (which
computation an op lands in), not exact HLO text. The lowered per-backend choices
themselves are tested in test_per_backend.py.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp

import jaxpool
from jaxpool._src.machinery import views


def computations(fn, *args) -> list[str]:
  """The computations of `jax.jit(fn)` compiled for this machine's CPU, as text."""
  text = jax.jit(fn).lower(*args).compile().as_text()
  return re.split(r"\n(?=\S)", text)


def ops(computation: str) -> set[str]:
  return set(re.findall(r"= \S+ ([a-z][\w-]*)\(", computation))


def result_shape(computation: str) -> str:
  """The result type in a computation's header, e.g. 'f32[4,33,33,8]'."""
  header = computation.split("\n", 1)[0]
  return header.rsplit("->", 1)[-1].strip(" {")


TRANSCENDENTAL = {"exponential", "log", "power"}


def test_materialize_writes_its_array_once_for_all_readers():
  """`views.materialize`: on CPU a conditional that XLA cannot remove, so an
  elementwise producer read through K shifted views is computed in a computation of
  its own (written once) and not fused into the readers' loop, where it would be
  evaluated K times per element. Benchmark case (views._through_a_conditional):
  gated_pool and max_pool 2d_3x3s2_same fwd+bwd."""
  x = jnp.ones((4, 32, 32, 8))

  def nine_views(a):
    return sum(a[:, i : i + 28, j : j + 28] for i in range(3) for j in range(3))

  comps = computations(lambda x: nine_views(views.materialize(jnp.exp(x), x)), x)
  assert any("conditional" in ops(c) for c in comps), "the barrier's conditional was removed"
  producers = [c for c in comps if "exponential" in ops(c)]
  assert producers, "no computation holds the producer"
  for c in producers:
    assert "slice" not in ops(c) and "add" not in ops(c), "the producer fused into its readers"
    assert result_shape(c) == "f32[4,32,32,8]", "the producer is not written whole"


def test_barrier_survives_in_pool_gradients_and_under_vmap():
  """The barriers inside max_pool's and gated_pool's gradients (the selected offsets,
  the gate weights) stay conditionals in the compiled program; under `vmap` too,
  where JAX would turn a batched `lax.cond` into a select that XLA fuses away
  (views._batched_conditional). Benchmark cases: max_pool and gated_pool
  2d_3x3s2_same fwd+bwd; vmap of gated_pool's gradient, 3x3/2 SAME."""
  x = jnp.ones((2, 9, 9, 3))
  gate = jnp.zeros((3, 3, 1))
  max_grad = jax.grad(lambda v: jnp.sum(jaxpool.max_pool(v, (3, 3), (2, 2), "SAME") ** 2))
  gated_grad = jax.grad(lambda v: jnp.sum(jaxpool.gated_pool(v, gate, (3, 3), (2, 2), "SAME") ** 2))
  for fn, args in [(max_grad, (x,)), (jax.vmap(gated_grad), (jnp.stack([x, x]),))]:
    assert any("conditional" in ops(c) for c in computations(fn, *args))


def test_lp_general_gradient_writes_each_offsets_powers_once():
  """lp's general backward (a traced, learnable p): each window offset's powers
  (exp and log) are computed on the output grid in computations of their own, and
  the transposed scatter that sums them into the input-sized gradient evaluates none:
  fused into the scatter's pads they would be re-evaluated for every input element
  (lp._general_backward writes every per-offset array once with views.materialize,
  the library's one fusion barrier). Benchmark case: lp_pool with a learned p,
  fwd+bwd 2d_3x3s2_same."""
  x = jnp.ones((4, 33, 33, 8))  # output 17x17 with 3x3/2 SAME
  p = jnp.float32(3.0)
  # the gradient in x only: the one in p (a second use of the same powers) is dead
  grad = jax.grad(lambda x, p: jnp.sum(jaxpool.lp_pool(x, p, (3, 3), (2, 2), "SAME") ** 2))
  comps = computations(grad, x, p)
  on_input = [c for c in comps if result_shape(c) == "f32[4,33,33,8]"]
  assert on_input, "no input-sized computation (the scatter) found"
  for c in on_input:
    assert not ops(c) & TRANSCENDENTAL, "the per-offset powers fused into the scatter"
  per_offset = [
    c for c in comps if ops(c) & TRANSCENDENTAL and result_shape(c).startswith("f32[4,17,17,8]")
  ]
  assert len(per_offset) >= 9, f"{len(per_offset)} per-offset computations, want one each"


def test_pooled_output_is_written_before_a_flatten_reads_it():
  """`views.pooled`: a differentiated pool's output is written once on CPU, so a
  flatten that reads it (pool -> dense, as in the seed CNN) does not pull the pool's
  strided views into its own fusion, where they would be computed in the flattened
  index space. Benchmark case: the training table, seed_cnn with max, avg, l2 and
  soft pooling, 2x2/2."""
  x, w = jnp.ones((8, 28, 28, 32)), jnp.ones((14 * 14 * 32, 10))
  for name in ("max_pool", "avg_pool", "l2_pool", "soft_pool"):
    pool = getattr(jaxpool, name)

    def loss(x, w, pool=pool):
      return jnp.sum((pool(x, (2, 2), (2, 2)).reshape(8, -1) @ w) ** 2)

    comps = computations(jax.value_and_grad(loss, argnums=(0, 1)), x, w)
    flattened = [
      c for c in comps if c.startswith("%") and result_shape(c).startswith("f32[8,6272]")
    ]
    for c in flattened:
      assert "slice" not in ops(c), f"{name}: the pool's views fused into the flatten"
    assert any("conditional" in ops(c) for c in comps), f"{name}: no barrier left"


def test_half_precision_lp_forward_writes_no_float32_copy():
  """lp/l2 on bfloat16: |x| widened to float32 by its bits (`dtypes.float32_by_bits`)
  inside the forward's fused loop, so no float32 copy of the input is written, in the
  forward or in forward + backward (with a `convert`, XLA merges the two converts
  and writes one). Benchmark case: l2_pool 2d_3x3s2_same fwd+bwd on CPU, bfloat16."""
  x = jnp.ones((4, 33, 33, 8), jnp.bfloat16)
  pool = lambda x: jaxpool.l2_pool(x, (3, 3), (2, 2), "SAME")
  fwd_bwd = jax.value_and_grad(lambda x: jnp.sum(pool(x).astype(jnp.float32)))
  for fn in (pool, fwd_bwd):
    written = [result_shape(c) for c in computations(fn, x)]
    assert "f32[4,33,33,8]" not in written, "a float32 copy of the input is written"


def test_global_max_forward_is_plain_reductions():
  """global_max_pool's forward: `jnp.max` plus a NaN check by a plain sum, both
  reductions of the input itself, no elementwise prologue before them (XLA:CPU runs
  plain reductions as fast library kernels and writes a prologue out first; the
  first-max search is left to the derivative rule). Benchmark case (axis_max): a
  max after a `where` on a 2d_3x3s2_resnet input; global max pool forward."""
  x = jnp.ones((8, 14, 14, 16))
  comps = [c for c in computations(jaxpool.global_max_pool, x) if c.startswith("%")]
  # XLA:CPU writes a prologue out before a plain reduction: nothing input-sized written
  assert "f32[8,14,14,16]" not in [result_shape(c) for c in comps], "a prologue is written"
  reads_input = [
    c for c in comps if "f32[8,14,14,16]" in c.split("\n", 1)[0] and "reduce" in ops(c)
  ]
  assert len(reads_input) == 2, "want the max and the sum"
  for c in reads_input:
    assert ops(c) <= {"reduce", "parameter", "constant", "bitcast"}, sorted(ops(c))
