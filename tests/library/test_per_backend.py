"""Per-backend derivative rules of the pools (lp/soft, sum/avg and others); the
mechanism itself, fallback.fast_or_exact, is tested in test_fallback.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpool

try:
  from tests.helpers import lowered_text as _lowered
except ImportError:  # tests/ itself on sys.path
  from helpers import lowered_text as _lowered


@pytest.mark.parametrize("name", ["l2_pool", "soft_pool"])
def test_pool_gradients_have_no_data_dependent_branch_on_gpu(name):
  """The overlapping-window derivatives of l2/lp and soft pooling: a conditional on
  CPU, none on GPU (where its predicate would be waited for by the host)."""
  pool = getattr(jaxpool, name)
  grad = jax.grad(lambda v: jnp.sum(pool(v, (3, 3), (2, 2), "SAME") ** 2))
  x = jnp.ones((2, 9, 9, 3))
  cpu, gpu = _lowered(grad, "cpu", x), _lowered(grad, "cuda", x)
  # platform_dependent leaves a constant-index case (folded by XLA); the data
  # check adds one more on CPU only
  assert cpu.count("stablehlo.case") > gpu.count("stablehlo.case")


def test_exact_derivative_forms_are_chosen_per_backend():
  """lp's range-free gradient (`lp._exact_grad`) is one transposed pass on every
  backend: no per-offset arrays (which would each need an anchoring sum to be
  written), except, on CPU, coefficients that take exp and log. soft_pool's exact
  tangent: its per-offset coefficients written (a conditional with an optimization
  barrier each) on CPU only (`views.materialize_on_cpu`)."""
  x = jnp.ones((2, 9, 9, 3))
  l2 = jax.grad(lambda v: jnp.sum(jaxpool.l2_pool(v, (3, 3), (2, 2), "SAME") ** 2))
  sums = lambda text: text.count("stablehlo.reduce(")
  # the range check's two sums only (traced on GPU too, unused there)
  assert sums(_lowered(l2, "cpu", x)) == 2 and sums(_lowered(l2, "cuda", x)) == 2
  # powers by exp and log (p = 0.5): the 9 per-offset coefficients written on CPU
  # (a conditional with an optimization barrier each), fused on GPU; integer
  # powers (l2) fused on both
  opt_barriers = lambda text: text.count("stablehlo.optimization_barrier")
  half = jax.grad(lambda v: jnp.sum(jaxpool.lp_pool(v, 0.5, (3, 3), (2, 2), "SAME") ** 2))
  assert opt_barriers(_lowered(half, "cpu", x)) >= opt_barriers(_lowered(half, "cuda", x)) + 9
  assert opt_barriers(_lowered(l2, "cpu", x)) < 9
  soft = jax.grad(lambda v: jnp.sum(jaxpool.soft_pool(v, (3, 3), (2, 2), "SAME") ** 2))
  # GPU: z only, through a reduce-window (y's barrier, `views.pooled`, is CPU-only);
  # CPU: y, z and 9 coefficients (and the fast form's own), each a conditional with
  # an optimization barrier in one branch (`jax.checkpoint` adds its own on both)
  cpu, cuda = _lowered(soft, "cpu", x), _lowered(soft, "cuda", x)
  assert cuda.count("stablehlo.reduce_window") == 1 and "stablehlo.reduce_window" not in cpu
  assert opt_barriers(cpu) >= opt_barriers(cuda) + 2 + 9


def test_avg_pool_takes_xla_rule_for_overlapping_windows_off_cpu():
  """Per-backend choice of the sum/avg tangent rule (reduce._window_sum_tangent): the
  strided views on CPU, XLA's reduce-window (transposed: pad + reduce-window) on GPU
  for overlapping windows; the views for tiling windows everywhere."""
  x = jnp.ones((2, 9, 9, 3))
  for window, strides, padding, xla_off_cpu in [
    ((3, 3), (2, 2), "SAME", True),
    ((2, 2), (2, 2), "VALID", False),
  ]:
    grad = jax.grad(lambda v: jnp.sum(jaxpool.avg_pool(v, window, strides, padding) ** 2))
    # XLA's rule: a reduce-window over the 3x3 window
    xla_rule = lambda text: "window_dimensions = array<i64: 1, 3, 3, 1>" in text
    assert not xla_rule(_lowered(grad, "cpu", x))
    assert xla_rule(_lowered(grad, "cuda", x)) == xla_off_cpu


_OVERLAPPING_3X3 = {
  "max_pool": lambda v: jaxpool.max_pool(v, (3, 3), (2, 2), "SAME"),
  "mixed_pool": lambda v: jaxpool.mixed_pool(v, 0.5, (3, 3), (2, 2), "SAME"),
  "soft_pool": lambda v: jaxpool.soft_pool(v, (3, 3), (2, 2), "SAME"),
  "l2_pool": lambda v: jaxpool.l2_pool(v, (3, 3), (2, 2), "SAME"),
}


@pytest.mark.parametrize("name", sorted(_OVERLAPPING_3X3))
def test_overlapping_window_gradients_take_phase_views_on_every_backend(name):
  """views.linear_views: the max/min gather, the mixed/gated tangents, soft's exact
  tangent and lp's exact gradient transpose into a concatenate of per-phase sums on
  CPU and GPU alike, not into a sum of interior pads (soft and l2 take their exact
  forms on GPU; on CPU those are the fallback branches of a conditional whose fast
  branch, a transposed window sum, has interior pads of its own)."""
  pool = _OVERLAPPING_3X3[name]
  # A new function per use: jit's trace cache is keyed on the function.
  make_grad = lambda: jax.grad(lambda v: jnp.sum(pool(v) ** 2))
  x = jnp.ones((2, 10, 10, 3))  # sizes divisible by the strides (see the next test)
  interior = lambda text: "interior = [0, 1, 1, 0]" in text
  for platform in ("cpu", "cuda"):
    text = _lowered(make_grad(), platform, x)
    assert "stablehlo.concatenate" in text, platform
    fast_form = platform == "cpu" and name in ("soft_pool", "l2_pool")
    assert interior(text) == fast_form, platform
  # and the same gradient either way, here on this machine's backend
  xr = jnp.asarray(np.random.default_rng(4).normal(size=(2, 10, 10, 3)), jnp.float32)
  from jaxpool._src.machinery import views

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(views, "phase_views", lambda t, geom: views.padded_views(t, geom, 0))
    strided = jax.jit(make_grad())(xr)
  phased = jax.jit(make_grad())(xr)
  np.testing.assert_allclose(np.asarray(phased), np.asarray(strided), rtol=1e-6, atol=1e-6)


def test_phase_views_only_where_windows_outnumber_phases_twice_on_whole_phases():
  """1-D 3/2 windows (3 offsets, 2 phases), stride 1, and spatial sizes that the
  strides do not divide (9 with stride 2: phases of unequal length) keep the
  strided views."""
  for shape, window, strides, padding in [
    ((2, 17, 3), (3,), (2,), 1),
    ((2, 9, 9, 3), (3, 3), (1, 1), "SAME"),
    ((2, 9, 9, 3), (3, 3), (2, 2), "VALID"),
    ((2, 10, 9, 3), (3, 3), (2, 2), "SAME"),
  ]:
    grad = jax.grad(lambda v: jnp.sum(jaxpool.max_pool(v, window, strides, padding) ** 2))
    cpu = _lowered(grad, "cpu", jnp.ones(shape))
    assert "stablehlo.concatenate" not in cpu and "stablehlo.split" not in cpu


def test_global_norm_scale_from_plain_reductions_on_cpu_only():
  """global_norm._largest_magnitude without a floor: max(max(x), -min(x)) on CPU (two
  library reductions), one reduction of |x| elsewhere."""
  f = lambda v: jaxpool.global_lp_pool(v, 2.5)
  x = jnp.ones((2, 5, 5, 3))
  cpu, cuda = _lowered(f, "cpu", x), _lowered(f, "cuda", x)
  reduces = lambda text: text.count("stablehlo.reduce(")
  assert reduces(cpu) == reduces(cuda) + 1  # the min beside the max
  assert "stablehlo.minimum" in cpu and "stablehlo.minimum" not in cuda
