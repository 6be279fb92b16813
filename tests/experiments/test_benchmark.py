"""experiments.benchmark end to end (the `:quick` config) and its pool discovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("ml_collections")
pytest.importorskip("absl")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# One pool of each kind of builder keeps the end-to-end run short (each pool compiles
# six programs): max_pool (the reference row, a Flax baseline), stochastic_pool (a
# random key), mixed_pool (a parameter). test_every_public_pool_has_working_builders
# runs the builders of every pool.
_SOME = ("max_pool", "stochastic_pool", "mixed_pool")


def test_quick_benchmark_writes_both_files(tmp_path):
  import jaxpool  # noqa: PLC0415

  workdir = tmp_path / "bench"
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  pools = tuple(n for n in _SOME if n in jaxpool.__all__)
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.benchmark",
      "--config=configs/benchmark.py:quick",
      f"--workdir={workdir}",
      "--quiet",
      f"--config.pools={pools!r}",
      "--config.calls_per_sample=2",
      "--config.training.pools=('max','stochastic')",
    ],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads((workdir / "benchmark.json").read_text())
  markdown = (workdir / "benchmark.md").read_text()

  assert result["device"]["platform"] == "cpu" and result["device"]["cpu_model"]
  assert result["calls_per_sample"] == 2 and "2 back-to-back calls" in markdown
  assert result["device"]["torch_device"] == "cpu"
  expected = set(pools)
  timed = {r["pool"] for r in result["rows"]}
  skipped = {s["pool"] for s in result["skipped"]}
  assert "max_pool" in timed
  assert expected <= timed | skipped  # every public pool is timed or says why not
  cases = {c["name"] for c in result["config"]["cases"]}
  max_rows = [r for r in result["rows"] if r["pool"] == "max_pool"]
  assert {r["case"] for r in max_rows} == cases
  for r in max_rows:
    assert r["fwd_ms"] > 0 and r["fwd_bwd_ms"] > 0 and r["roof_fwd_bwd_ms"] > 0
    assert r["base_fwd_bwd_ms"] > 0 and r["baseline"] == "flax.linen.max_pool"
    assert r["speedup_vs_baseline_fwd_bwd"] == pytest.approx(r["base_fwd_bwd_ms"] / r["fwd_bwd_ms"])
    assert r["fwd_bwd_over_max_pool"] == pytest.approx(1.0)
  assert "training" in result
  assert "| max_pool |" in markdown and "flax.linen.max_pool" in markdown
  assert "Training throughput" in markdown
  # The pool table: every pool row runs the same step; max over itself is 1.
  over_max = result["training"]["pool_time_over_max"]
  assert set(over_max) == {"max", "stochastic"} and over_max["max"] == 1.0
  assert result["training"]["pool stochastic images/s"] > 0
  assert "| `stochastic` |" in markdown and "time / max" in markdown
  # Arithmetic per step (XLA's cost analysis) and the matmul rate of the same rounds.
  gflop = result["training"]["pool_gflop_per_step"]
  assert gflop["max"] > 0 and gflop["stochastic"] >= gflop["max"] * 0.9
  assert result["training"]["matmul_gflop_per_s"] > 0 and "matmul in the same rounds" in markdown
  # PyTorch's fractional_max_pool2d beside jaxpool's (the study's slot: 2-wide, ratio 1/2).
  if "fractional_max_pool" in timed:
    (fractional,) = [r for r in result["rows"] if r["pool"] == "fractional_max_pool"]
    assert fractional["torch_fwd_bwd_ms"] > 0


def test_public_pools_skips_unknown_and_missing(monkeypatch):
  import jaxpool  # noqa: PLC0415
  from experiments.benchmarks import cases  # noqa: PLC0415

  monkeypatch.setattr(jaxpool, "__all__", (*jaxpool.__all__, "fancy_pool"), raising=False)
  monkeypatch.setattr(jaxpool, "fancy_pool", lambda x: x, raising=False)
  names, skipped = cases.public_pools()
  assert "max_pool" in names and "fancy_pool" not in names
  assert {
    "pool": "fancy_pool",
    "reason": "no argument builder in experiments/benchmarks/cases.py",
  } in skipped
  names, skipped = cases.public_pools(("max_pool", "not_yet_merged_pool"))
  assert names == ["max_pool"]
  assert cases.public_pools(("window_pool",))[0] == [
    "window_pool",
    "window_pool[mean]",
    "window_pool[median]",
  ]
  assert skipped[-1]["pool"] == "not_yet_merged_pool"


def test_every_public_pool_has_working_builders():
  """Each public pool's builder traces (no compilation) on a small 2-D case, with its
  baseline, in float32 and bfloat16; a pool without a builder is reported, not lost."""
  import jax  # noqa: PLC0415

  import jaxpool  # noqa: PLC0415
  from experiments.benchmarks import cases  # noqa: PLC0415
  from experiments.benchmarks import harness  # noqa: PLC0415

  names, skipped = cases.public_pools()
  assert not skipped, skipped
  spec = {
    "name": "t",
    "shape": (2, 8, 8, 4),
    "window": (3, 3),
    "strides": (2, 2),
    "padding": "SAME",
  }
  for dtype in ("float32", "bfloat16"):
    case = cases.Case(spec, dtype)
    x = jax.ShapeDtypeStruct(case.shape, case.dtype)
    for name in names:
      fn, _, base, _ = cases.BUILDERS[name](case, jax.random.key(0))
      jax.eval_shape(lambda v: harness.first_output(fn(v)), x)
      if base is not None:
        jax.eval_shape(base, x)
  variants = {v for vs in cases.VARIANTS.values() for v in vs}
  assert set(names) == {n for n in jaxpool.__all__ if callable(getattr(jaxpool, n))} | variants


def test_targets_variant_names_the_cases_and_pools_of_the_speed_targets():
  from configs import benchmark as benchmark_config  # noqa: PLC0415
  from experiments.benchmarks import cases  # noqa: PLC0415

  config = benchmark_config.get_config("targets")
  assert [c["name"] for c in config.cases] == ["2d_2x2s2", "2d_3x3s2_same"]
  names, skipped = cases.public_pools(tuple(config.pools))
  assert (
    set(names)
    == {
      "max_pool",
      "avg_pool",
      "l2_pool",
      "lp_pool",
      "lp_pool[learned p]",  # a selected pool brings its variants
      "stochastic_pool",
      "mixed_pool",
      "gated_pool",
      "soft_pool",
    }
    and not skipped
  )
  with pytest.raises(ValueError, match="unknown variant"):
    benchmark_config.get_config("fastest")


@pytest.mark.parametrize("progress_bar", [True, False])
def test_progress_bar_counts_every_measurement(tmp_path, capsys, monkeypatch, progress_bar):
  """The bar's total is one step per (case, dtype, pool), a pool skipped on a case
  included, it ends full, and every line reaches stdout with or without it."""
  import jaxpool  # noqa: PLC0415
  from configs import benchmark as benchmark_config  # noqa: PLC0415
  from experiments.benchmarks import cases  # noqa: PLC0415
  from experiments.benchmarks import runner  # noqa: PLC0415

  def unfit_builder(case, key):  # a pool whose signature does not fit any case
    raise ValueError("no builder fits")

  monkeypatch.setattr(jaxpool, "__all__", (*jaxpool.__all__, "unfit_pool"), raising=False)
  monkeypatch.setattr(jaxpool, "unfit_pool", lambda x: x, raising=False)
  monkeypatch.setitem(cases.BUILDERS, "unfit_pool", unfit_builder)
  config = benchmark_config.get_config("quick")
  config.cases = (
    *config.cases,
    dict(config.cases[0], name="second", window=(2, 2), strides=(2, 2), padding="VALID"),
  )
  config.pools = ("max_pool", "unfit_pool")
  config.training.enabled = False
  config.torch = False
  config.repeats = 1
  result = runner.run(config, str(tmp_path), log=print, progress_bar=progress_bar)
  out, err = capsys.readouterr()
  assert [(r["case"], r["pool"]) for r in result["rows"]] == [
    ("2d_3x3s2_same", "max_pool"),
    ("second", "max_pool"),
  ]
  assert [(s["case"], s["pool"]) for s in result["skipped"]] == [
    ("2d_3x3s2_same", "unfit_pool"),
    ("second", "unfit_pool"),
  ]
  assert out.count(f"  {'max_pool':22s} fwd ") == 2
  assert out.count("  skip unfit_pool: ValueError: no builder fits") == 2
  if progress_bar:  # 2 cases x 1 dtype x 2 pools
    assert "benchmark: 100%" in err and "4/4" in err
  else:
    assert "benchmark:" not in err


def test_a_label_with_a_pipe_renders_as_one_table_cell():
  """`naive (sum|x|^3)^(1/3)` (lp_pool's baseline) stays one cell of its row: the row
  has as many cells as the header, split the way GitHub's Markdown splits a table
  row (on every `|` not escaped by a backslash)."""
  import re  # noqa: PLC0415

  from experiments.benchmarks import report  # noqa: PLC0415

  label = "naive (sum|x|^3)^(1/3)"
  numbers = (
    "fwd_ms",
    "fwd_bwd_ms",
    "base_fwd_ms",
    "base_fwd_bwd_ms",
    "speedup_vs_baseline_fwd",
    "speedup_vs_baseline_fwd_bwd",
    "torch_fwd_ms",
    "torch_fwd_bwd_ms",
    "speedup_vs_torch_fwd_bwd",
    "roof_fwd_bwd_ms",
    "over_roofline_fwd_bwd",
    "fwd_bwd_over_max_pool",
  )
  row = {"case": "c", "shape": [2, 8, 8, 4], "window": [3, 3], "strides": [2, 2]}
  row |= {"padding": "SAME", "dtype": "float32", "pool": "lp|pool", "baseline": label}
  row |= dict.fromkeys(numbers, 1.0)
  device = {"platform": "cpu", "device_kind": "cpu", "device_count": 1}
  device |= {"cpu_model": "x", "cpu_count": 2, "jax": "0"}
  training = {"skipped": "no"}
  result = {"device": device, "config": {}, "rows": [row], "skipped": [], "training": training}
  lines = report.to_markdown(result).splitlines()
  header = next(i for i, line in enumerate(lines) if line.startswith("| pool |"))

  def cells(line):
    parts = re.split(r"(?<!\\)\|", line.strip())
    assert parts[0] == "" and parts[-1] == ""
    return [p.strip().replace("\\|", "|") for p in parts[1:-1]]

  head, body = cells(lines[header]), cells(lines[header + 2])
  assert len(body) == len(head) == 14
  assert body[head.index("pool")] == "lp|pool"
  assert body[head.index("baseline")] == label
  assert report.table_row(["a|b", 1]) == "| a\\|b | 1 |"
