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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NUM_EPOCHS = 3
POOL_INDEX = {"max": 1, "avg": 2, "bad": 3}


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
  curves = compare._curves(cells, ["max", "avg"])
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
  assert not compare._use_log_scale([1.0, 1.5, 2.9])
  assert compare._use_log_scale([0.5, 0.9, 2.0, 30.0])
  assert not compare._use_log_scale([])
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
  assert len(quick.pools) == 2 and len(quick.seeds) == 2
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
  metrics = compare._read_metrics(tmp_path / "cells" / "avg-seed0" / "metrics.jsonl")
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
