"""Writing a study's report files: results.csv, cells.csv, results.md and the plots."""

from __future__ import annotations

import csv
import os

from experiments.comparison.files import load_cells
from experiments.comparison.markdown import markdown
from experiments.comparison.markdown import plot_name
from experiments.comparison.results import all_rows
from experiments.comparison.results import regime_groups
from experiments.comparison.results import regimes_of_study
from experiments.comparison.results import train_size

_CSV_FIELDS = (
  "regime",
  "pool",
  "registry_name",
  "options",
  "seeds_completed",
  "seeds_failed",
  "seeds_pending",
  "test_error_mean",
  "test_error_std",
  "test_errors",
  "reference",
  "paired_seeds",
  "diff_mean",
  "diff_low",
  "diff_high",
  "distinguishable",
  "best_test_error_mean",
  "best_epochs",
  "train_error_mean",
  "gap_mean",
  "num_epochs",
  "seconds_per_epoch",
  "images_per_second",
  "num_params",
  "backend_device",
  "platform",
  "paper_test_error",
  "errors",
)
_CELL_FIELDS = (
  "regime",
  "pool",
  "registry_name",
  "seed",
  "status",
  "final_test_error",
  "best_test_error",
  "best_epoch",
  "final_train_error",
  "num_epochs",
  "seconds_per_epoch",
  "images_per_second",
  "total_seconds",
  "compile_seconds",
  "num_params",
  "backend",
  "device_kind",
  "device_count",
  "platform",
  "error",
  "dir",
)


def write_tables(workdir):
  """results.csv, cells.csv and results.md (without touching the plots)."""
  study, cells = load_cells(workdir)
  rows = all_rows(study, cells)
  with open(os.path.join(workdir, "results.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=_CSV_FIELDS)
    w.writeheader()
    for r in rows:
      w.writerow({k: "" if r[k] is None else r[k] for k in _CSV_FIELDS})
  with open(os.path.join(workdir, "cells.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=_CELL_FIELDS)
    w.writeheader()
    for c in cells:
      s = c["summary"]
      w.writerow(
        {
          "regime": c.get("regime", ""),
          "pool": c["label"],
          "registry_name": c["pool"],
          "seed": c["seed"],
          "status": c["status"],
          "error": c["error"],
          "dir": c["dir"],
          **{
            k: s.get(k, "")
            for k in _CELL_FIELDS
            if k not in ("regime", "pool", "registry_name", "seed", "status", "error", "dir")
          },
        }
      )
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(markdown(study, cells, rows))
  return rows


def plot(workdir, study=None, cells=None, rows=None):
  """curves.png, final.png and learned.png (where a pool learns parameters) of the
  study, or of each regime (`curves-<regime>.png`, ...) and regimes.png; returns
  the paths written."""
  from experiments import plots  # pylint: disable=g-import-not-at-top

  if study is None:
    study, cells = load_cells(workdir)
  rows = rows or all_rows(study, cells)
  title = study["config"].get("study", "")
  paths = []
  groups = []
  for name, overrides, group_cells in regime_groups(study, cells):
    group_rows = [r for r in rows if r["regime"] == name]
    label = f"{title}, {name}" if name else title
    path = lambda kind, name=name: os.path.join(workdir, plot_name(kind, name))  # noqa: E731
    paths.append(plots.curves(path("curves"), group_cells, group_rows, title=label))
    paths.append(plots.final(path("final"), group_rows, title=label))
    learned = plots.learned(path("learned"), group_cells, title=label)
    if learned:
      paths.append(learned)
    groups.append((train_size(overrides), group_rows))
  if regimes_of_study(study):
    paths.append(plots.regimes(os.path.join(workdir, "regimes.png"), groups, title=title))
  return paths


def report(workdir) -> list[dict]:
  """Rebuilds results.md, results.csv, cells.csv and the plots."""
  rows = write_tables(workdir)
  study, cells = load_cells(workdir)
  plot(workdir, study, cells, rows)
  return rows
