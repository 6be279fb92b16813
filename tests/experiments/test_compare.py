"""Tests of experiments/compare.py (the comparison study) and configs/compare.py.

Most tests swap the training run for a fake `train_and_evaluate` that writes
`metrics.jsonl` and `summary.json` as the interface of experiments/train.py says,
with errors from a closed form of (pool, seed, epoch); the expected table is
computed from that closed form here, independently of compare.py's aggregation.
"""

import csv
import json
import math
import os
import statistics
import subprocess
import sys
import textwrap

import ml_collections
import pytest

from experiments import compare
from experiments import plots

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NUM_EPOCHS = 3
POOL_INDEX = {"max": 1, "avg": 2, "bad": 3, "l2": 4}


def fake_test_error(pool, seed, epoch):
  """A closed form: decreasing in the epoch, different per pool and seed."""
  return 0.01 * POOL_INDEX[pool] + 0.002 * seed + 0.02 / epoch


def fake_train_error(pool, seed, epoch):
  return 0.5 * fake_test_error(pool, seed, epoch)


class FakeTrainer:
  """Stands in for experiments.train.train_and_evaluate; counts its calls."""

  def __init__(self, fail=()):
    self.calls = []
    self.fail = set(fail)  # (pool, seed) pairs that raise.

  def __call__(self, config, workdir):
    pool, seed = config.pool, config.seed
    self.calls.append((pool, seed, os.path.basename(workdir)))
    assert dict(config.pool_options) == {"window_shape": (2, 2), "strides": (2, 2)}
    if (pool, seed) in self.fail:
      # Half a run, then a crash: metrics exist but no summary.
      with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"epoch": 1, "test_error": 0.9}) + "\n")
      raise FloatingPointError(f"non-finite loss in pool {pool} seed {seed}")
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json())
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
      for epoch in range(1, config.num_epochs + 1):
        f.write(
          json.dumps(
            {
              "epoch": epoch,
              "train_loss": 1.0 / epoch,
              "train_error": fake_train_error(pool, seed, epoch),
              "test_loss": 1.0 / epoch,
              "test_error": fake_test_error(pool, seed, epoch),
              "seconds": 2.0,
              "images_per_second": 1000.0 * POOL_INDEX[pool],
            }
          )
          + "\n"
        )
    summary = {
      "final_test_error": fake_test_error(pool, seed, config.num_epochs),
      "best_test_error": fake_test_error(pool, seed, config.num_epochs),
      "best_epoch": config.num_epochs,
      "final_train_error": fake_train_error(pool, seed, config.num_epochs),
      "total_seconds": 2.0 * config.num_epochs,
      "seconds_per_epoch": 2.0,
      "images_per_second": 1000.0 * POOL_INDEX[pool],
      "num_params": 1000 + POOL_INDEX[pool],
      "device_kind": "cpu",
      "device_count": 1,
      "backend": "cpu",
      "jax_version": "x",
      "flax_version": "y",
      "pool": pool,
      "model": config.model,
      "seed": seed,
      "num_epochs": config.num_epochs,
      "platform": config.platform,
      "completed": True,
    }
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f)
    return summary


def study_config(pools=("max", "avg"), seeds=(0, 1), num_epochs=NUM_EPOCHS):
  base = ml_collections.ConfigDict(
    {
      "model": "seed_cnn",
      "pool": "max",
      "pool_options": {"window_shape": (2, 2), "strides": (2, 2)},
      "num_epochs": num_epochs,
      "max_train_examples": 0,
      "steps_per_epoch": 0,
      "batch_size": 32,
      "seed": 0,
      "optimizer": "adam",
      "learning_rate": 1e-3,
      "compute_dtype": "float32",
      "platform": "cpu",
      "quiet": False,
    }
  )
  return ml_collections.ConfigDict(
    {
      "study": "seed_cnn",
      "arg": "",
      "platform": "cpu",
      "base": base,
      "pools": {
        p: {"name": p, "options": {"window_shape": (2, 2), "strides": (2, 2)}} for p in pools
      },
      "excluded": {"global_avg": "global"},
      "seeds": tuple(seeds),
      "paper_test_error": {},
      "paper_reference": "",
      "quiet": False,
    }
  )


def read_csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def table_rows(md):
  """The data rows of the first markdown table, as lists of cells."""
  lines = [line for line in md.splitlines() if line.startswith("|")]
  return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def assert_png(path):
  with open(path, "rb") as f:
    assert f.read(8) == PNG_MAGIC, path
  from matplotlib import image  # pylint: disable=g-import-not-at-top

  h, w = image.imread(path).shape[:2]
  assert h > 200 and w > 400, (path, h, w)


def test_two_pools_two_seeds_tables_and_plots(tmp_path):
  trainer = FakeTrainer()
  rows = compare.run_study(
    study_config(),
    str(tmp_path),
    quiet=True,
    command=["compare.py", "--workdir=x"],
    train_fn=trainer,
  )
  # Every cell ran once, seed-major, each in its own folder.
  assert trainer.calls == [
    ("avg", 0, "avg-seed0"),
    ("max", 0, "max-seed0"),
    ("avg", 1, "avg-seed1"),
    ("max", 1, "max-seed1"),
  ]

  csv_rows = read_csv(tmp_path / "results.csv")
  assert [r["pool"] for r in csv_rows] == ["max", "avg"]  # Sorted, best first.
  for r in csv_rows:
    tests = [100 * fake_test_error(r["pool"], s, NUM_EPOCHS) for s in (0, 1)]
    trains = [100 * fake_train_error(r["pool"], s, NUM_EPOCHS) for s in (0, 1)]
    assert float(r["test_error_mean"]) == pytest.approx(statistics.mean(tests))
    assert float(r["test_error_std"]) == pytest.approx(statistics.stdev(tests))
    assert float(r["train_error_mean"]) == pytest.approx(statistics.mean(trains))
    assert float(r["gap_mean"]) == pytest.approx(statistics.mean(tests) - statistics.mean(trains))
    assert r["seeds_completed"] == "2" and r["seeds_failed"] == "0"
    assert r["best_epochs"] == f"{NUM_EPOCHS} {NUM_EPOCHS}"
    assert float(r["images_per_second"]) == 1000.0 * POOL_INDEX[r["pool"]]
    assert r["num_params"] == str(1000 + POOL_INDEX[r["pool"]])
    assert r["backend_device"] == "cpu / cpu x1"
  assert [r["pool"] for r in rows] == ["max", "avg"]

  cells = read_csv(tmp_path / "cells.csv")
  assert sorted((c["pool"], c["seed"], c["status"]) for c in cells) == [
    ("avg", "0", "completed"),
    ("avg", "1", "completed"),
    ("max", "0", "completed"),
    ("max", "1", "completed"),
  ]

  md = (tmp_path / "results.md").read_text()
  rows_md = table_rows(md)
  assert [r[0] for r in rows_md] == ["`max`", "`avg`"]
  tests = [100 * fake_test_error("max", s, NUM_EPOCHS) for s in (0, 1)]
  assert rows_md[0][1] == (f"{statistics.mean(tests):.2f} ± {statistics.stdev(tests):.2f}")
  assert rows_md[0][-1] == "2 / 0"
  assert "Command: `python -m experiments.compare --workdir=x`" in md
  assert "`global_avg`: global" in md  # The excluded pools are named.
  assert "Cells: 4 completed, 0 failed, 0 pending." in md

  study = json.loads((tmp_path / "study.json").read_text())
  assert study["command"] == "python -m experiments.compare --workdir=x"
  assert study["config"]["seeds"] == [0, 1]
  assert study["config"]["base"]["num_epochs"] == NUM_EPOCHS
  assert study["finished_at"]
  assert len(study["cells"]) == 4

  assert_png(tmp_path / "curves.png")
  assert_png(tmp_path / "final.png")


def test_curves_are_mean_min_max_over_seeds(tmp_path):
  compare.run_study(
    study_config(), str(tmp_path), quiet=True, command=["c"], train_fn=FakeTrainer()
  )
  study, cells = compare.load_cells(str(tmp_path))
  curves = plots.test_curves(cells, ["max", "avg"])
  for pool in ("max", "avg"):
    epochs, mean, lo, hi = curves[pool]
    assert list(epochs) == list(range(1, NUM_EPOCHS + 1))
    for e, m, low, high in zip(epochs, mean, lo, hi):
      vals = [100 * fake_test_error(pool, s, e) for s in (0, 1)]
      assert m == pytest.approx(statistics.mean(vals))
      assert (low, high) == pytest.approx((min(vals), max(vals)))
  assert study["config"]["study"] == "seed_cnn"


def test_rerun_skips_completed_cells(tmp_path):
  config = study_config()
  compare.run_study(config, str(tmp_path), quiet=True, command=["c"], train_fn=FakeTrainer())
  again = FakeTrainer()
  compare.run_study(config, str(tmp_path), quiet=True, command=["c2"], train_fn=again)
  assert again.calls == []
  # A cell that did not finish (no summary) is the only one trained again.
  os.remove(tmp_path / "cells" / "avg-seed1" / "summary.json")
  once = FakeTrainer()
  compare.run_study(config, str(tmp_path), quiet=True, command=["c3"], train_fn=once)
  assert once.calls == [("avg", 1, "avg-seed1")]
  study = json.loads((tmp_path / "study.json").read_text())
  assert [h["command"] for h in study["history"]] == ["c", "c2"]


def test_rerun_with_a_different_config_is_refused(tmp_path):
  compare.run_study(
    study_config(), str(tmp_path), quiet=True, command=["c"], train_fn=FakeTrainer()
  )
  trainer = FakeTrainer()
  with pytest.raises(ValueError, match="num_epochs"):
    compare.run_study(
      study_config(num_epochs=NUM_EPOCHS + 1),
      str(tmp_path),
      quiet=True,
      command=["c"],
      train_fn=trainer,
    )
  assert trainer.calls == []


def test_failing_cell_is_reported_and_the_others_run(tmp_path):
  trainer = FakeTrainer(fail={("bad", 1)})
  compare.run_study(
    study_config(pools=("max", "bad")), str(tmp_path), quiet=True, command=["c"], train_fn=trainer
  )
  assert len(trainer.calls) == 4  # The cell after the failure ran too.
  error = json.loads((tmp_path / "cells" / "bad-seed1" / "error.json").read_text())
  assert error["error"] == "FloatingPointError: non-finite loss in pool bad seed 1"
  assert "Traceback" in error["traceback"]

  rows = {r["pool"]: r for r in read_csv(tmp_path / "results.csv")}
  assert rows["bad"]["seeds_completed"] == "1"
  assert rows["bad"]["seeds_failed"] == "1"
  assert "non-finite loss in pool bad seed 1" in rows["bad"]["errors"]
  # Only the completed seed counts: one value, no std.
  assert float(rows["bad"]["test_error_mean"]) == pytest.approx(
    100 * fake_test_error("bad", 0, NUM_EPOCHS)
  )
  assert rows["bad"]["test_error_std"] == ""
  assert rows["max"]["seeds_completed"] == "2"

  md = (tmp_path / "results.md").read_text()
  md_rows = {r[0]: r for r in table_rows(md)}
  assert md_rows["`bad`"][-1] == "1 / 1"
  assert "## Failed cells" in md
  assert ("`cells/bad-seed1`: FloatingPointError: non-finite loss in pool bad seed 1") in md
  assert_png(tmp_path / "final.png")

  # The rerun tries the failed cell again; when it succeeds the failure is gone.
  retry = FakeTrainer()
  compare.run_study(
    study_config(pools=("max", "bad")), str(tmp_path), quiet=True, command=["c"], train_fn=retry
  )
  assert retry.calls == [("bad", 1, "bad-seed1")]
  assert not (tmp_path / "cells" / "bad-seed1" / "error.json").exists()
  assert read_csv(tmp_path / "results.csv")[-1]["seeds_failed"] == "0"


def test_a_pool_with_every_seed_failed_is_a_failed_row(tmp_path):
  trainer = FakeTrainer(fail={("bad", 0), ("bad", 1)})
  compare.run_study(
    study_config(pools=("max", "bad")), str(tmp_path), quiet=True, command=["c"], train_fn=trainer
  )
  md_rows = table_rows((tmp_path / "results.md").read_text())
  assert [r[0] for r in md_rows] == ["`max`", "`bad`"]  # Failed pools last.
  assert md_rows[1][1] == "failed"
  assert md_rows[1][-1] == "0 / 2"
  assert_png(tmp_path / "curves.png")
  assert_png(tmp_path / "final.png")


def test_report_only_command_rebuilds_from_disk(tmp_path):
  compare.run_study(
    study_config(), str(tmp_path), quiet=True, command=["c"], train_fn=FakeTrainer()
  )
  before = (tmp_path / "results.csv").read_text()
  for name in ("results.md", "results.csv", "cells.csv", "curves.png", "final.png"):
    os.remove(tmp_path / name)
  # The real command line, in its own process: no training, no JAX needed.
  proc = subprocess.run(
    [sys.executable, "-m", "experiments.compare", f"--workdir={tmp_path}", "--report-only"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 0, proc.stderr
  assert "| `max` |" in proc.stdout
  assert (tmp_path / "results.csv").read_text() == before
  assert table_rows((tmp_path / "results.md").read_text())[0][0] == "`max`"
  assert_png(tmp_path / "curves.png")
  assert_png(tmp_path / "final.png")


def test_report_only_without_a_study_says_so(tmp_path):
  with pytest.raises(FileNotFoundError, match="study.json"):
    compare.report(str(tmp_path))


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")
def test_main_runs_a_config_file(tmp_path, monkeypatch):
  """The command line path: a config file, flags, the fake trainer, --quiet."""
  config_file = tmp_path / "study_cfg.py"
  config_file.write_text(
    textwrap.dedent(f"""
      import sys
      sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
      import test_compare
      def get_config(arg=None):
        return test_compare.study_config(pools=("avg",), seeds=(0, 1, 2))
      """)
  )
  trainer = FakeTrainer()
  monkeypatch.setattr(compare, "train_and_evaluate", trainer)
  monkeypatch.setattr(compare, "check_cell", lambda cfg: None)  # A partial base config.
  from absl import flags  # pylint: disable=g-import-not-at-top

  workdir = tmp_path / "run"
  argv = [
    "compare.py",
    f"--config={config_file}",
    f"--workdir={workdir}",
    "--quiet",
    "--config.base.num_epochs=2",
  ]
  monkeypatch.setattr(sys, "argv", argv)  # config_flags reads overrides there.
  flag_values = compare.define_flags(flags.FlagValues())
  flag_values(argv)
  compare.main(["compare.py"], flag_values)
  assert [c[:2] for c in trainer.calls] == [("avg", 0), ("avg", 1), ("avg", 2)]
  row = read_csv(workdir / "results.csv")[0]
  assert row["seeds_completed"] == "3" and row["num_epochs"] == "2.0"
  study = json.loads((workdir / "study.json").read_text())
  assert "--config.base.num_epochs=2" in study["command"]
  assert study["config"]["base"]["num_epochs"] == 2


def test_log_scale_only_for_wide_ranges():
  assert not plots.use_log_scale([1.0, 1.5, 2.9])
  assert plots.use_log_scale([0.5, 0.9, 2.0, 30.0])
  assert not plots.use_log_scale([])
  assert math.isfinite(0.0)


def test_slot_pools_from_registry_names():
  from configs import compare as compare_config  # pylint: disable=g-import-not-at-top

  names = [
    "max",
    "avg",
    "min",
    "sum",
    "l2",
    "stochastic",
    "global_avg",
    "adaptive_max",
    "gem",
    "fractional",
    "blur",
    "my_new_pool",
  ]
  pools, excluded = compare_config.slot_pools(names, info=None)
  assert list(pools) == ["max", "avg", "l2", "stochastic", "fractional", "blur", "my_new_pool"]
  assert pools["max"] == {"window_shape": (2, 2), "strides": (2, 2)}
  assert pools["my_new_pool"] == {"window_shape": (2, 2), "strides": (2, 2)}
  assert pools["fractional"]["output_ratio"] == (0.5, 0.5)
  assert sorted(excluded) == ["adaptive_max", "gem", "global_avg", "min", "sum"]


def test_slot_pools_asks_the_registry_what_each_module_takes():
  from configs import compare as compare_config  # pylint: disable=g-import-not-at-top

  window = ["window_shape", "strides", "padding"]
  infos = {
    "max": {"nnx_options": window, "nnx_required": ["window_shape"]},
    "new_window": {"nnx_options": window + ["count_include_pad"], "nnx_required": ["window_shape"]},
    "needs_p": {"nnx_options": ["p"] + window, "nnx_required": ["p", "window_shape"]},
    "fractional": {
      "nnx_options": ["window_shape", "output_ratio", "output_size"],
      "nnx_required": ["window_shape"],
    },
  }
  pools, excluded = compare_config.slot_pools(list(infos), info=infos.get)
  assert sorted(pools) == ["fractional", "max", "new_window"]
  assert pools["max"] == pools["new_window"] == {"window_shape": (2, 2), "strides": (2, 2)}
  assert excluded["needs_p"] == "needs p, which the slot does not give"
  assert pools["fractional"] == {"window_shape": (2, 2), "output_ratio": (0.5, 0.5)}
  infos["fractional"]["nnx_options"].remove("output_ratio")
  _, excluded = compare_config.slot_pools(["fractional"], info=infos.get)
  assert excluded["fractional"] == "does not take output_ratio"


# ----------------------------------------------------------------------------
# configs/compare.py with the real training configs and registry.


def test_default_sweep_fills_the_slot_with_every_fitting_registry_pool():
  nnx = pytest.importorskip("flax.nnx")
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from configs import compare as compare_config  # pylint: disable=g-import-not-at-top
  from experiments import models  # pylint: disable=g-import-not-at-top
  from jaxpool import registry  # pylint: disable=g-import-not-at-top

  config = compare_config.get_config()
  names = set(registry.names())
  assert set(config.pools) | set(config.excluded) == names
  assert not set(config.pools) & set(config.excluded)
  assert {"max", "avg"} <= set(config.pools)
  assert not {n for n in config.pools if "global" in n or "adaptive" in n}
  assert config.seeds == (0, 1, 2)
  assert config.base.num_epochs == 5 and config.base.model == "seed_cnn"
  # Every pool of the sweep, in the seed CNN as experiments/models.py builds it,
  # maps the 26x26x32 conv output to 13x13x32, as 2x2 max pooling with stride 2.
  x = jnp.linspace(0.0, 1.0, 26 * 26 * 32).reshape(1, 26, 26, 32)
  for label, entry in config.pools.items():
    model = models.build_model(
      "seed_cnn",
      pool=entry.name,
      pool_options=entry.options.to_dict(),
      rngs=nnx.Rngs(params=0, pooling=1),
    )
    model.eval()
    out = jax.eval_shape(lambda x, pool=model.pool: pool(x), x)  # Shapes only.
    assert out.shape == (1, 13, 13, 32), label


def test_quick_zeiler_fergus_paper_and_platform_variants():
  from configs import compare as compare_config  # pylint: disable=g-import-not-at-top

  quick = compare_config.get_config("quick")
  assert sorted(quick.pools) == ["max", "mixed", "stochastic"] and len(quick.seeds) == 2
  assert quick.reference == "max" and not quick.regimes
  assert 0 < quick.base.max_train_examples < 60000
  assert quick.base.num_epochs <= 2

  zf = compare_config.get_config("zeiler_fergus")
  assert sorted(zf.pools) == ["avg", "max", "stochastic"]
  assert zf.base.model == "zeiler_fergus"
  for entry in zf.pools.values():
    assert tuple(entry.options.window_shape) == (3, 3)
    assert tuple(entry.options.strides) == (2, 2)
    assert entry.options.padding == "SAME"
  # The paper's MNIST test errors, as the issue quotes them (fractions).
  assert zf.paper_test_error.to_dict() == {"avg": 0.0083, "max": 0.0055, "stochastic": 0.0047}
  paper = compare_config.get_config("zeiler_fergus,paper,platform=gpu")
  assert paper.base.num_epochs > zf.base.num_epochs
  assert paper.base.platform == "gpu" and paper.platform == "gpu"

  tpu = compare_config.get_config("platform=tpu")
  assert tpu.base.platform == "tpu" and tpu.base.compute_dtype == "bfloat16"
  some = compare_config.get_config("quick,pools=max+avg+l2,seeds=3,epochs=1")
  assert sorted(some.pools) == ["avg", "l2", "max"]
  assert some.seeds == (0, 1, 2) and some.base.num_epochs == 1

  for bad, match in [
    ("paper", "zeiler_fergus,paper"),
    ("fast", "unknown flag"),
    ("platform=ipu", "cpu, gpu, tpu"),
    ("seeds=0", "positive"),
    ("depth=3", "unknown key"),
    ("quick,zeiler_fergus,paper", "exclude"),
  ]:
    with pytest.raises(ValueError, match=match):
      compare_config.get_config(bad)


# Final test errors (fractions) of a constructed study: avg is worse than max by
# 0.21, 0.25, 0.21 pp in seeds 0, 1, 2; l2 differs by -0.10, +0.15, -0.03 pp.
FINAL = {
  ("max", 0): 0.0110,
  ("max", 1): 0.0125,
  ("max", 2): 0.0118,
  ("avg", 0): 0.0131,
  ("avg", 1): 0.0150,
  ("avg", 2): 0.0139,
  ("l2", 0): 0.0100,
  ("l2", 1): 0.0140,
  ("l2", 2): 0.0115,
}


def table_trainer(config, workdir):
  """FakeTrainer with the final test errors of `FINAL`."""
  summary = FakeTrainer()(config, workdir)
  summary["final_test_error"] = FINAL[(config.pool, config.seed)]
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f)
  return summary


def hand_interval(diffs):
  """Mean and 95% t interval of three paired differences, t_{0.975, 2} = 4.303."""
  mean = sum(diffs) / 3
  sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
  half = 4.303 * sd / math.sqrt(3)
  return mean, mean - half, mean + half


def test_paired_columns_and_generated_summary(tmp_path):
  config = study_config(pools=("max", "avg", "l2"), seeds=(0, 1, 2))
  compare.run_study(config, str(tmp_path), quiet=True, command=["c"], train_fn=table_trainer)
  rows = {r["pool"]: r for r in read_csv(tmp_path / "results.csv")}
  assert rows["max"]["reference"] == "max" and rows["max"]["diff_mean"] == ""
  assert rows["max"]["distinguishable"] == ""
  for pool, diffs, verdict in (
    ("avg", [0.21, 0.25, 0.21], "yes"),
    ("l2", [-0.1, 0.15, -0.03], "no"),
  ):
    mean, low, high = hand_interval(diffs)
    r = rows[pool]
    assert r["paired_seeds"] == "3" and r["distinguishable"] == verdict
    assert float(r["diff_mean"]) == pytest.approx(mean, abs=1e-9)
    assert float(r["diff_low"]) == pytest.approx(low, abs=2e-4)
    assert float(r["diff_high"]) == pytest.approx(high, abs=2e-4)
  md = (tmp_path / "results.md").read_text()
  summary = md.split("\n\n")[1]
  assert summary.startswith("With 3 epochs on 60,000 training images and 3 seeds, `max` reaches")
  mean, low, high = hand_interval([0.21, 0.25, 0.21])
  assert f"higher error: `avg` (+{mean:.2f} pp, 95% CI +{low:.2f} to +{high:.2f})" in summary
  assert "`l2` is not distinguishable from `max`" in summary
  cells = {r[0]: r for r in table_rows(md)}
  assert cells["`avg`"][2] == f"+{mean:.2f} [+{low:.2f}, +{high:.2f}] *"
  assert cells["`max`"][2] == "reference"
  assert_png(tmp_path / "final.png")


def test_reference_pool_is_configurable(tmp_path):
  config = study_config(pools=("max", "avg", "l2"), seeds=(0, 1, 2))
  config.reference = "avg"
  compare.run_study(config, str(tmp_path), quiet=True, command=["c"], train_fn=table_trainer)
  rows = {r["pool"]: r for r in read_csv(tmp_path / "results.csv")}
  assert {r["reference"] for r in rows.values()} == {"avg"}
  mean, _, _ = hand_interval([-0.21, -0.25, -0.21])
  assert float(rows["max"]["diff_mean"]) == pytest.approx(mean)


def test_regimes_study_runs_every_regime_and_plots_against_size(tmp_path):
  config = study_config(pools=("max", "avg"), seeds=(0, 1))
  config.regimes = {"n600": {"max_train_examples": 600}, "n6000": {"max_train_examples": 6000}}
  seen = []

  def train_fn(cfg, workdir):
    seen.append((cfg.max_train_examples, cfg.pool, cfg.seed, os.path.basename(workdir)))
    return FakeTrainer()(cfg, workdir)

  compare.run_study(config, str(tmp_path), quiet=True, command=["c"], train_fn=train_fn)
  assert seen[:4] == [
    (600, "avg", 0, "n600-avg-seed0"),
    (600, "max", 0, "n600-max-seed0"),
    (6000, "avg", 0, "n6000-avg-seed0"),
    (6000, "max", 0, "n6000-max-seed0"),
  ]
  assert len(seen) == 8
  rows = read_csv(tmp_path / "results.csv")
  assert sorted((r["regime"], r["pool"]) for r in rows) == [
    ("n600", "avg"),
    ("n600", "max"),
    ("n6000", "avg"),
    ("n6000", "max"),
  ]
  md = (tmp_path / "results.md").read_text()
  assert md.startswith("# Pooling across data regimes")
  assert "**n600.** With 3 epochs on 600 training images and 2 seeds, `max` reaches" in md
  assert "## Test error by training set size" in md
  for name in ("regimes.png", "curves-n600.png", "final-n6000.png"):
    assert_png(tmp_path / name)
  assert not os.path.exists(tmp_path / "learned-n600.png")  # No learnt parameters.


def test_learned_png_from_logged_parameters(tmp_path):
  def train_fn(cfg, workdir):
    summary = FakeTrainer()(cfg, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      records = [json.loads(line) for line in f]
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
      for r in records:
        if cfg.pool == "avg":
          a = 0.5 + 0.1 * r["epoch"] + 0.01 * cfg.seed
          r |= {"learned/pool/alpha/mean": a, "learned/pool/alpha/min": a - 0.1}
          r["learned/pool/alpha/max"] = a + 0.1
        f.write(json.dumps(r) + "\n")
    return summary

  compare.run_study(study_config(), str(tmp_path), quiet=True, command=["c"], train_fn=train_fn)
  assert_png(tmp_path / "learned.png")
  assert "![learned pool parameters](learned.png)" in (tmp_path / "results.md").read_text()
  from experiments import plots as plots_lib  # pylint: disable=g-import-not-at-top

  _, cells = compare.load_cells(str(tmp_path))
  series = plots_lib.learned_series(cells)
  assert list(series) == [("avg", "pool", "alpha")]
  seeds = sorted(s[0] for s in series[("avg", "pool", "alpha")])
  assert seeds == [0, 1]
  for seed, epochs, mean, _lo, _hi in series[("avg", "pool", "alpha")]:
    assert list(epochs) == [1, 2, 3]
    assert list(mean) == pytest.approx([0.5 + 0.1 * e + 0.01 * seed for e in (1, 2, 3)])


def test_regimes_config_takes_the_same_steps_on_every_subset():
  from configs import compare as compare_config  # pylint: disable=g-import-not-at-top

  config = compare_config.get_config("regimes")
  assert sorted(config.pools) == sorted(["max", "avg", "l2", "stochastic", "mixed", "fractional"])
  assert len(config.seeds) >= 3
  sizes, steps = set(), set()
  for cell in compare.plan(config):
    cfg = compare.cell_config(config, cell)
    sizes.add(cfg.max_train_examples)
    # 60,000 // 128 = 468 steps per epoch whatever the subset.
    assert cfg.steps_per_epoch == 468 and cfg.batch_size == 128
    steps.add(cfg.num_epochs * cfg.steps_per_epoch)
  assert sizes == {600, 6000, 60000} and len(steps) == 1
  assert len(compare.plan(config)) == 6 * 3 * len(config.seeds)
  epochs = config.base.num_epochs
  assert compare.budget(config.base, {"max_train_examples": 600}) == (
    f"{epochs} epochs of 468 steps on 600 training images ({epochs * 468:,} steps of batch "
    f"128, {epochs * 468 * 128 / 600:.3g} passes over them)"
  )
  some = compare_config.get_config("regimes,pools=max+avg,seeds=4,reference=avg")
  assert sorted(some.pools) == ["avg", "max"] and len(some.seeds) == 4
  assert some.reference == "avg"


def test_real_training_on_mock_data(tmp_path):
  """One cell of experiments.train on tfds mock data: the interface end to end."""
  pytest.importorskip("experiments.train")
  from configs import compare as compare_config  # pylint: disable=g-import-not-at-top

  config = compare_config.get_config("quick,pools=avg,seeds=1,epochs=1")
  config.base.data.mock = True
  config.base.data.mock_num_examples = 64
  config.base.batch_size = 32
  config.base.eval_batch_size = 32
  config.base.max_train_examples = 64
  rows = compare.run_study(config, str(tmp_path), quiet=True, command=["c"])
  assert [r["pool"] for r in rows] == ["avg"]
  assert rows[0]["seeds_completed"] == 1, rows[0]["errors"]
  assert 0.0 <= rows[0]["test_error_mean"] <= 100.0
  assert int(rows[0]["num_params"]) > 0
  assert rows[0]["backend_device"].startswith("cpu / ")
  summary = json.loads((tmp_path / "cells" / "avg-seed0" / "summary.json").read_text())
  metrics = compare.read_metrics(tmp_path / "cells" / "avg-seed0" / "metrics.jsonl")
  assert [m["epoch"] for m in metrics] == [1]
  assert summary["final_test_error"] == pytest.approx(metrics[-1]["test_error"])
  assert rows[0]["test_error_mean"] == pytest.approx(100 * metrics[-1]["test_error"])
  assert (summary["pool"], summary["seed"]) == ("avg", 0)
  assert_png(tmp_path / "curves.png")
  # A rerun finds the cell complete and trains nothing.
  calls = []
  compare.run_study(
    config, str(tmp_path), quiet=True, command=["c"], train_fn=lambda *a: calls.append(a)
  )
  assert calls == []


def test_unknown_pool_or_option_stops_the_study_before_any_training(tmp_path):
  """Every pool of the study is checked (registry names and options, looked up now)
  before the first cell trains; nothing is written."""
  from configs import compare as compare_config  # pylint: disable=g-import-not-at-top

  trainer = FakeTrainer()
  config = compare_config.get_config("quick,pools=max+maxx")
  with pytest.raises(
    ValueError, match=r"config.pools.maxx: .*unknown pool 'maxx'; did you mean 'max'\?"
  ):
    compare.run_study(
      config, str(tmp_path / "a"), quiet=True, train_fn=trainer, check_fn=compare.check_cell
    )
  config = compare_config.get_config("quick,pools=max+stochastic,stochastic.windw=(2,2)")
  with pytest.raises(ValueError, match="config.pools.stochastic: .*unknown pool option 'windw'"):
    compare.run_study(
      config, str(tmp_path / "b"), quiet=True, train_fn=trainer, check_fn=compare.check_cell
    )
  assert trainer.calls == []
  assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
  # Options set from the config arg reach the cells.
  some = compare_config.get_config("quick,pools=max+lp,lp.p=3,pool_options.padding=SAME")
  assert some.pools.lp.options.p == 3 and some.pools.max.options.padding == "SAME"
  assert "p" not in some.pools.max.options
  compare.check_cell(compare.cell_config(some, compare.plan(some)[1]))


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")
def test_main_exits_non_zero_and_lists_the_failed_cells(tmp_path, monkeypatch, capsys):
  config_file = tmp_path / "study_cfg.py"
  config_file.write_text(
    textwrap.dedent(f"""
      import sys
      sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
      import test_compare
      def get_config(arg=None):
        return test_compare.study_config(pools=("max", "bad"), seeds=(0, 1))
      """)
  )
  trainer = FakeTrainer(fail={("bad", 1)})
  monkeypatch.setattr(compare, "train_and_evaluate", trainer)
  monkeypatch.setattr(compare, "check_cell", lambda cfg: None)
  from absl import flags  # pylint: disable=g-import-not-at-top

  argv = ["compare.py", f"--config={config_file}", f"--workdir={tmp_path / 'run'}", "--quiet"]
  monkeypatch.setattr(sys, "argv", argv)
  flag_values = compare.define_flags(flags.FlagValues())
  flag_values(argv)
  assert compare.main(["compare.py"], flag_values) == 1
  assert len(trainer.calls) == 4  # The cells after the failure ran.
  err = capsys.readouterr().err
  assert "compare: 1 cell(s) failed:" in err
  assert "cells/bad-seed1: FloatingPointError: non-finite loss in pool bad seed 1" in err
