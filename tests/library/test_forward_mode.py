"""Forward mode (`jax.jvp`) of every public function (issue 22): the tangent in the
inputs and the learnable float arguments equals a central finite difference in
float64, except for the functions that docs/semantics.md's forward-mode table names,
which must raise (so that the table stays true).
"""

from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpool

try:
  from tests.calls import CALLS
  from tests.calls import PAD
  from tests.calls import Call
  from tests.calls import S
  from tests.calls import W
  from tests.calls import inputs
except ImportError:  # tests/ itself on sys.path
  from calls import CALLS
  from calls import PAD
  from calls import Call
  from calls import S
  from calls import W
  from calls import inputs

DOCS = os.path.join(
  os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs"
)
HEADING = "## Forward mode (`jax.jvp`)"


def unsupported() -> dict[str, str]:
  """The forward-mode table of docs/semantics.md: first cell -> the row."""
  with open(os.path.join(DOCS, "semantics.md")) as f:
    text = f.read()
  assert HEADING in text, f"docs/semantics.md lost its section {HEADING!r}"
  section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
  rows = {}
  for line in section.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if line.startswith("|") and len(cells) > 1 and not set(cells[0]) <= set("-: "):
      for name in re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", cells[0]):
        rows[name] = line
  return rows


# Deterministic forms of the functions whose table call draws with a key.
DETERMINISTIC = {
  "stochastic_pool(deterministic=True)": Call(
    lambda x: jaxpool.stochastic_pool(x, W, S, PAD, deterministic=True)
  ),
}


def _f64(a):
  return jnp.asarray(a, jnp.float64)


def check_jvp_against_finite_difference(call: Call):
  with jax.enable_x64(True):
    x = _f64(inputs())
    primals = (x, *map(_f64, call.learnable))
    rng = np.random.default_rng(1)
    tangents = tuple(_f64(rng.normal(size=np.shape(p))) for p in primals)
    eps = 1e-6

    @jax.jit  # one compilation for the tangent and the finite difference
    def tangent_and_difference(primals, tangents):
      shifted = lambda sign: call.fn(*(p + sign * eps * t for p, t in zip(primals, tangents)))
      return jax.jvp(call.fn, primals, tangents), (shifted(1) - shifted(-1)) / (2 * eps)

    (y, dy), fd = tangent_and_difference(primals, tangents)
    assert y.dtype == dy.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(dy), np.asarray(fd), rtol=1e-5, atol=1e-7)
    assert np.abs(np.asarray(dy)).max() > 0  # the tangent reaches the output


@pytest.mark.parametrize("name", sorted(CALLS))
def test_jvp_matches_finite_difference_or_is_documented_unsupported(name):
  call = CALLS[name]
  if name in unsupported():
    primals = (inputs(), *call.learnable)
    with pytest.raises(TypeError, match="forward-mode"):  # when traced
      jax.jit(lambda p, t: jax.jvp(call.fn, p, t))(primals, tuple(map(np.ones_like, primals)))
  else:
    check_jvp_against_finite_difference(call)


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_jvp_of_deterministic_forms(name):
  check_jvp_against_finite_difference(DETERMINISTIC[name])


def test_forward_mode_table_names_only_public_functions():
  names = set(unsupported())
  assert names, "the forward-mode table of docs/semantics.md is empty"
  assert names <= set(jaxpool.__all__)


def test_lip_logits_jvp_matches_finite_difference():
  """LIPLogits is flax's Conv and GroupNorm by default: jax.jvp through the module
  works (the table has no row for it)."""
  from flax import nnx

  from jaxpool.nnx import LIPLogits

  assert "LIPLogits" not in unsupported()
  graphdef, state = nnx.split(LIPLogits(3, 2, rngs=nnx.Rngs(0)))
  check_jvp_against_finite_difference(Call(lambda x: nnx.merge(graphdef, state)(x)))
