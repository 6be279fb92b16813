r"""How many epochs of a study fit a time budget, from short measured runs.

A study trains `cells` = pools x seeds runs one after another in one process
(`experiments.compare`). Each cell of pool `p` with `E` epochs costs

    cell_s(p, E) = compile_s(p) + setup_s + E * (epoch_s(p) + save_s)

where `compile_s(p)` and `epoch_s(p)` (training + evaluation of one epoch) are what
`experiments.train` reports, and `setup_s` (state, checkpoint manager) and `save_s`
(the per-epoch checkpoint and log writes, which `epoch_s` leaves out) are the
intercept and slope of the rest of the wall time over the number of epochs:

    wall - compile_s - sum(epoch seconds) = setup_s + E * save_s,

fitted to probe runs of different lengths (one per pool: 1, 2, 3 epochs). The study
then takes `start_s + sum over cells of cell_s(p, E)`; `epochs_that_fit` returns the
largest `E` for which that, times `1 + margin`, stays within the budget.

    python -m experiments.budget --probe probe.json --budget-s 300 --seeds 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Mapping
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class ProbeRun:
  """One measured training run: `experiments.train` on one pool, timed from outside."""

  pool: str
  epochs: int
  wall_s: float  # The whole train_and_evaluate call, data already loaded.
  compile_s: float  # summary["compile_seconds"].
  epoch_seconds: tuple[float, ...]  # metrics.jsonl "seconds", one per epoch.

  @property
  def rest_s(self) -> float:
    """Wall time outside compilation and the epochs' training and evaluation."""
    return self.wall_s - self.compile_s - sum(self.epoch_seconds)


@dataclasses.dataclass(frozen=True)
class CostModel:
  """Seconds of each part of a study (see the module docstring)."""

  compile_s: Mapping[str, float]  # pool -> compile seconds of one cell.
  epoch_s: Mapping[str, float]  # pool -> training + evaluation seconds of one epoch.
  setup_s: float  # Per cell, besides compilation.
  save_s: float  # Per epoch, besides training and evaluation.
  start_s: float = 0.0  # Once per study: interpreter, JAX, data.

  def cell_s(self, pool: str, epochs: int) -> float:
    return self.compile_s[pool] + self.setup_s + epochs * (self.epoch_s[pool] + self.save_s)

  def study_s(self, pools: Sequence[str], seeds: int, epochs: int) -> float:
    """Predicted wall seconds of a study of `pools` x `seeds` cells of `epochs` epochs."""
    return self.start_s + seeds * sum(self.cell_s(p, epochs) for p in pools)


def fit(runs: Sequence[ProbeRun], start_s: float = 0.0) -> CostModel:
  """The cost model of probe runs: per pool its compile time and mean epoch time;
  `setup_s` and `save_s`, which do not depend on the pool (the same state and
  checkpoint sizes), from the least-squares line through the runs' `(epochs,
  rest_s)`, so the runs must cover at least two epoch counts (e.g. one pool with 1
  epoch, another with 2). Timing noise that makes the line fall or start below 0
  is clamped: a falling line becomes flat at the mean, and one starting below 0
  becomes the line through the origin.

  Raises:
    ValueError: no runs, a run without epochs, or all runs of one length.
  """
  if not runs:
    raise ValueError("budget.fit: runs is empty; give probe runs of at least two lengths")
  for r in runs:
    if r.epochs < 1 or len(r.epoch_seconds) != r.epochs:
      raise ValueError(
        f"budget.fit: run of {r.pool!r} has epochs={r.epochs} and "
        f"{len(r.epoch_seconds)} epoch timings; both must be equal and >= 1"
      )
  if len({r.epochs for r in runs}) < 2:
    raise ValueError(
      "budget.fit: every run has the same number of epochs, so the per-epoch "
      "checkpoint time cannot be separated from the per-cell set-up; got "
      f"{[(r.pool, r.epochs) for r in runs]}"
    )
  compile_s, epoch_s = {}, {}
  for pool in dict.fromkeys(r.pool for r in runs):
    mine = [r for r in runs if r.pool == pool]
    # The slowest compile and the mean epoch over every probed epoch of the pool.
    compile_s[pool] = max(r.compile_s for r in mine)
    seconds = [s for r in mine for s in r.epoch_seconds]
    epoch_s[pool] = sum(seconds) / len(seconds)
  n = len(runs)
  mean_e = sum(r.epochs for r in runs) / n
  mean_rest = sum(r.rest_s for r in runs) / n
  slope = sum((r.epochs - mean_e) * (r.rest_s - mean_rest) for r in runs) / sum(
    (r.epochs - mean_e) ** 2 for r in runs
  )
  intercept = mean_rest - slope * mean_e
  if slope < 0:
    slope, intercept = 0.0, max(0.0, mean_rest)
  elif intercept < 0:
    slope = sum(r.epochs * r.rest_s for r in runs) / sum(r.epochs**2 for r in runs)
    intercept = 0.0
  return CostModel(compile_s, epoch_s, intercept, slope, max(0.0, start_s))


def epochs_that_fit(
  model: CostModel,
  budget_s: float,
  *,
  pools: Sequence[str],
  seeds: int,
  margin: float = 0.15,
  max_epochs: int | None = None,
) -> int:
  """The largest epoch count E with `(1 + margin) * model.study_s(pools, seeds, E) <=
  budget_s`, at most `max_epochs`.

  The study time is affine in E, `A + B * E` with `A = start_s + seeds * sum(compile_s
  + setup_s)` and `B = seeds * sum(epoch_s + save_s)`, so E = floor((budget_s / (1 +
  margin) - A) / B).

  Raises:
    ValueError: bad arguments, a pool the model has not measured, or a budget that
      does not fit even one epoch (the message says how many seconds one needs).
  """
  if seeds < 1:
    raise ValueError(f"budget.epochs_that_fit: seeds must be >= 1, got {seeds}")
  if not pools:
    raise ValueError("budget.epochs_that_fit: pools is empty")
  if margin < 0:
    raise ValueError(f"budget.epochs_that_fit: margin must be >= 0, got {margin}")
  if max_epochs is not None and max_epochs < 1:
    raise ValueError(f"budget.epochs_that_fit: max_epochs must be >= 1, got {max_epochs}")
  unknown = [p for p in pools if p not in model.epoch_s]
  if unknown:
    raise ValueError(
      f"budget.epochs_that_fit: pools {unknown} were not probed; probed: {sorted(model.epoch_s)}"
    )
  fixed = model.study_s(pools, seeds, 0)
  per_epoch = model.study_s(pools, seeds, 1) - fixed
  usable = budget_s / (1.0 + margin)
  epochs = math.floor((usable - fixed) / per_epoch) if per_epoch > 0 else max_epochs or 1
  if epochs < 1:
    need = (1.0 + margin) * (fixed + per_epoch)
    raise ValueError(
      f"budget.epochs_that_fit: a budget of {budget_s:.0f} s does not fit one epoch of "
      f"{len(pools)} pools x {seeds} seeds ({need:.0f} s needed with the "
      f"{margin:.0%} margin); raise the budget or lower the seeds"
    )
  return min(epochs, max_epochs) if max_epochs else epochs


def runs_from_json(obj) -> list[ProbeRun]:
  """`probe.json`'s "runs" (as `experiments.gpu_study probe` writes them)."""
  return [
    ProbeRun(
      pool=r["pool"],
      epochs=int(r["epochs"]),
      wall_s=float(r["wall_s"]),
      compile_s=float(r["compile_s"]),
      epoch_seconds=tuple(float(s) for s in r["epoch_seconds"]),
    )
    for r in obj["runs"]
  ]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    prog="python -m experiments.budget", description="Epochs of a study that fit a budget."
  )
  parser.add_argument("--probe", required=True, help="probe.json of experiments.gpu_study probe")
  parser.add_argument("--budget-s", type=float, required=True, help="seconds for the study")
  parser.add_argument("--pools", default="avg,max,stochastic", help="comma-separated pools")
  parser.add_argument("--seeds", type=int, default=2)
  parser.add_argument("--margin", type=float, default=0.15, help="safety margin (0.15: 15%%)")
  parser.add_argument("--max-epochs", type=int, default=None)
  args = parser.parse_args(argv)
  try:
    with open(args.probe) as f:
      probe = json.load(f)
    model = fit(runs_from_json(probe), start_s=float(probe.get("start_s", 0.0)))
    pools = [p for p in args.pools.split(",") if p]
    epochs = epochs_that_fit(
      model,
      args.budget_s,
      pools=pools,
      seeds=args.seeds,
      margin=args.margin,
      max_epochs=args.max_epochs,
    )
  except (OSError, KeyError, ValueError) as e:
    print(f"experiments.budget: {type(e).__name__}: {e}", file=sys.stderr)
    return 2
  print(epochs)
  predicted = model.study_s(pools, args.seeds, epochs)
  print(
    f"experiments.budget: {epochs} epochs x {len(pools)} pools x {args.seeds} seeds: "
    f"predicted {predicted:.0f} s of a {args.budget_s:.0f} s budget "
    f"(margin {args.margin:.0%})",
    file=sys.stderr,
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
