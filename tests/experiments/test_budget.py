"""experiments/budget.py: the cost model fitted to probe runs, and the epoch count that
fits a budget, checked against the closed form it is built from and a brute-force
search over epoch counts."""

import json
import math

import numpy as np
import pytest

from experiments import budget

POOLS = ("avg", "max", "stochastic")


def synthetic_runs(compile_s, epoch_s, setup_s, save_s, lengths=None):
  """Probe runs timed exactly as the model says: wall = compile + setup + E * (epoch + save)."""
  lengths = lengths or {p: [2] for p in compile_s}
  runs = []
  for pool, epochs_list in lengths.items():
    for epochs in epochs_list:
      wall = compile_s[pool] + setup_s + epochs * (epoch_s[pool] + save_s)
      runs.append(budget.ProbeRun(pool, epochs, wall, compile_s[pool], (epoch_s[pool],) * epochs))
  return runs


@pytest.mark.parametrize(
  "lengths",
  [{"avg": [1], "max": [2], "stochastic": [3]}, {"avg": [2], "max": [2], "stochastic": [1, 4]}],
)
def test_fit_recovers_the_parameters_the_runs_were_made_with(lengths):
  compile_s = {"avg": 7.0, "max": 8.5, "stochastic": 11.0}
  epoch_s = {"avg": 0.6, "max": 0.7, "stochastic": 0.9}
  runs = synthetic_runs(compile_s, epoch_s, setup_s=3.0, save_s=0.25, lengths=lengths)
  model = budget.fit(runs, start_s=12.0)
  assert model.compile_s == pytest.approx(compile_s)
  assert model.epoch_s == pytest.approx(epoch_s)
  assert model.setup_s == pytest.approx(3.0)
  assert model.save_s == pytest.approx(0.25)
  assert model.start_s == 12.0
  # The study time is start + seeds * sum over pools of each cell's time.
  expected = 12.0 + 2 * sum(compile_s[p] + 3.0 + 10 * (epoch_s[p] + 0.25) for p in POOLS)
  assert model.study_s(POOLS, 2, 10) == pytest.approx(expected)


def run_with_rest(pool, epochs, rest_s):
  """A run whose wall time outside compile (5 s) and epochs (1 s each) is rest_s."""
  return budget.ProbeRun(pool, epochs, 5.0 + epochs + rest_s, 5.0, (1.0,) * epochs)


def test_fit_is_the_least_squares_line_and_clamps_timing_noise():
  # rest = 1, 2.5, 2.5 at 1, 2, 3 epochs: slope 0.75, intercept 2 - 0.75 * 2 = 0.5.
  runs = [run_with_rest("avg", 1, 1.0), run_with_rest("max", 2, 2.5), run_with_rest("st", 3, 2.5)]
  model = budget.fit(runs)
  assert (model.save_s, model.setup_s) == (pytest.approx(0.75), pytest.approx(0.5))
  # A falling line: flat at the mean rest.
  model = budget.fit([run_with_rest("avg", 1, 3.0), run_with_rest("max", 2, 1.5)])
  assert (model.save_s, model.setup_s) == (0.0, pytest.approx(2.25))
  # A line starting below 0: through the origin, slope sum(E rest) / sum(E^2).
  model = budget.fit([run_with_rest("avg", 1, 0.5), run_with_rest("max", 3, 3.5)])
  assert (model.save_s, model.setup_s) == (pytest.approx(11.0 / 10.0), 0.0)


@pytest.mark.parametrize("seed", range(20))
def test_epochs_that_fit_is_the_largest_count_within_the_budget(seed):
  rng = np.random.default_rng(seed)
  model = budget.CostModel(
    compile_s={p: float(rng.uniform(1, 30)) for p in POOLS},
    epoch_s={p: float(rng.uniform(0.2, 5)) for p in POOLS},
    setup_s=float(rng.uniform(0, 5)),
    save_s=float(rng.uniform(0, 0.5)),
    start_s=float(rng.uniform(0, 20)),
  )
  seeds = int(rng.integers(1, 4))
  margin = float(rng.uniform(0, 0.3))
  budget_s = float(rng.uniform(model.study_s(POOLS, seeds, 1) * (1 + margin), 3000))
  got = budget.epochs_that_fit(model, budget_s, pools=POOLS, seeds=seeds, margin=margin)
  # Brute force: the study time grows with the epochs; the last count that fits.
  fits = [e for e in range(1, 5000) if (1 + margin) * model.study_s(POOLS, seeds, e) <= budget_s]
  assert got == max(fits)
  capped = budget.epochs_that_fit(
    model, budget_s, pools=POOLS, seeds=seeds, margin=margin, max_epochs=max(1, got // 2)
  )
  assert capped == max(1, got // 2)


def test_a_budget_below_one_epoch_says_what_one_epoch_needs():
  model = budget.CostModel({"max": 10.0}, {"max": 1.0}, setup_s=0.0, save_s=0.0)
  # One epoch of 2 seeds: 2 * (10 + 1) = 22 s, 25.3 s with a 15% margin.
  assert budget.epochs_that_fit(model, 25.4, pools=["max"], seeds=2) == 1
  with pytest.raises(ValueError, match=r"budget of 25 s does not fit one epoch.*25 s needed"):
    budget.epochs_that_fit(model, 25.0, pools=["max"], seeds=2)


@pytest.mark.parametrize(
  ("kwargs", "match"),
  [
    ({"seeds": 0}, "seeds must be >= 1"),
    ({"pools": []}, "pools is empty"),
    ({"margin": -0.1}, "margin must be >= 0"),
    ({"max_epochs": 0}, "max_epochs must be >= 1"),
    ({"pools": ["max", "lp"]}, r"pools \['lp'\] were not probed"),
  ],
)
def test_bad_arguments_raise_value_errors_naming_them(kwargs, match):
  model = budget.CostModel({"max": 1.0}, {"max": 1.0}, 0.0, 0.0)
  args = {"pools": ["max"], "seeds": 2} | kwargs
  with pytest.raises(ValueError, match=match):
    budget.epochs_that_fit(model, 100.0, **args)


def test_fit_needs_runs_of_two_lengths():
  with pytest.raises(ValueError, match="same number of epochs"):
    budget.fit([run_with_rest("max", 2, 1.0), run_with_rest("avg", 2, 1.0)])
  with pytest.raises(ValueError, match="runs is empty"):
    budget.fit([])
  with pytest.raises(ValueError, match="epochs=2 and 1 epoch timings"):
    budget.fit([budget.ProbeRun("max", 2, 9.0, 3.0, (1.0,)), run_with_rest("avg", 1, 1.0)])


def test_command_line_prints_the_epochs(tmp_path, capsys):
  compile_s = {p: 10.0 for p in POOLS}
  epoch_s = {p: 1.0 for p in POOLS}
  runs = synthetic_runs(
    compile_s, epoch_s, 2.0, 0.0, lengths={"avg": [1], "max": [2], "stochastic": [3]}
  )
  probe = {
    "start_s": 10.0,
    "runs": [
      {
        "pool": r.pool,
        "epochs": r.epochs,
        "wall_s": r.wall_s,
        "compile_s": r.compile_s,
        "epoch_seconds": list(r.epoch_seconds),
      }
      for r in runs
    ],
  }
  path = tmp_path / "probe.json"
  path.write_text(json.dumps(probe))
  # 2 seeds: 10 + 2 * 3 * (12 + E) s within 300 / 1.15 = 260.9 s: E = floor(178.9 / 6) = 29.
  assert budget.main(["--probe", str(path), "--budget-s", "300"]) == 0
  assert capsys.readouterr().out.strip() == str(math.floor((300 / 1.15 - 10 - 72) / 6))
  assert budget.main(["--probe", str(path), "--budget-s", "300", "--max-epochs", "5"]) == 0
  assert capsys.readouterr().out.strip() == "5"
  assert budget.main(["--probe", str(path), "--budget-s", "50"]) == 2
  assert "does not fit one epoch" in capsys.readouterr().err
  assert budget.main(["--probe", str(tmp_path / "missing.json"), "--budget-s", "50"]) == 2
