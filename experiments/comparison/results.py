"""A study's numbers: per-pool rows over seeds, paired differences, the training budget."""

from __future__ import annotations

import json

import numpy as np

from experiments import stats


def reference_label(study, labels) -> str:
  """The pool the others are compared with: `config.reference` (default "max") if
  it is in the sweep, else the sweep's first pool."""
  wanted = study["config"].get("reference") or "max"
  return wanted if wanted in labels or not labels else labels[0]


def _mean(values):
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


def _std(values):
  values = [v for v in values if v is not None]
  return float(np.std(values, ddof=1)) if len(values) > 1 else None


def _pct(v):
  return None if v is None else 100.0 * v


def _final_errors(cells, label) -> dict:
  """seed -> final test error in % of the completed cells of `label`."""
  return {
    c["seed"]: _pct(c["summary"]["final_test_error"])
    for c in cells
    if c["label"] == label
    and c["status"] == "completed"
    and c["summary"].get("final_test_error") is not None
  }


def _seed_columns(mine) -> dict:
  """How many seeds of one pool's cells completed, failed or are still to run."""
  done = sum(c["status"] == "completed" for c in mine)
  failed = sum(c["status"] == "failed" for c in mine)
  return {
    "seeds_completed": done,
    "seeds_failed": failed,
    "seeds_pending": len(mine) - done - failed,
  }


def _machine_columns(summaries) -> dict:
  """Parameter counts, backend / device and platform of the completed runs, each
  distinct value once."""
  backends = {
    f"{x.get('backend', '?')} / {x.get('device_kind', '?')} x{x.get('device_count', '?')}"
    for x in summaries
  }
  params = {int(x["num_params"]) for x in summaries if x.get("num_params")}
  platforms = {str(x.get("platform")) for x in summaries if x.get("platform")}
  return {
    "num_params": " ".join(str(p) for p in sorted(params)),
    "backend_device": "; ".join(sorted(backends)),
    "platform": " ".join(sorted(platforms)),
  }


def _error_columns(summaries) -> dict:
  """Final, best and train error (%) and the train/test gap (pp), means over seeds."""
  test = [_pct(x.get("final_test_error")) for x in summaries]
  train = [_pct(x.get("final_train_error")) for x in summaries]
  gaps = [t - r for t, r in zip(test, train) if t is not None and r is not None]
  return {
    "test_error_mean": _mean(test),
    "test_error_std": _std(test),
    "best_test_error_mean": _mean([_pct(x.get("best_test_error")) for x in summaries]),
    "best_epochs": " ".join(str(x.get("best_epoch")) for x in summaries),
    "train_error_mean": _mean(train),
    "gap_mean": _mean(gaps),
    "test_errors": " ".join(f"{v:.2f}" for v in test if v is not None),
  }


def _pool_columns(mine, paper_error) -> dict:
  """The figures of one pool (its cells `mine`), errors in %, means over seeds."""
  s = [c["summary"] for c in mine if c["status"] == "completed"]
  failed = [c for c in mine if c["status"] == "failed"]
  return {
    "pool": mine[0]["label"],
    "registry_name": mine[0]["pool"],
    "options": json.dumps(mine[0]["options"], sort_keys=True),
    **_seed_columns(mine),
    **_error_columns(s),
    **{k: _mean([x.get(k) for x in s]) for k in _MEAN_KEYS},
    **_machine_columns(s),
    "paper_test_error": _pct(paper_error),
    "errors": " | ".join(f"{c['dir']}: {c['error']}" for c in failed),
    "regime": mine[0].get("regime", ""),
  }


# Figures of the runs' summaries that the rows average as they are.
_MEAN_KEYS = ("num_epochs", "seconds_per_epoch", "images_per_second")


def aggregate(study, cells):
  """Per-pool rows (errors in %), sorted by final test error (failed pools last).

  Cells of one regime (or of a study without regimes). Besides the per-pool
  figures, each row holds its paired difference with the reference pool
  (`experiments.stats`): `reference`, `paired_seeds`, `diff_mean`, `diff_low`,
  `diff_high` (percentage points) and `distinguishable` ("yes" / "no" / "").
  """
  paper = study["config"].get("paper_test_error") or {}
  labels = list(dict.fromkeys(c["label"] for c in cells))
  reference = reference_label(study, labels)
  ref_errors = _final_errors(cells, reference)
  rows = []
  for label in labels:
    mine = [c for c in cells if c["label"] == label]
    row = _pool_columns(mine, paper.get(label, paper.get(mine[0]["pool"])))
    row["reference"] = reference
    row.update(_paired_columns(_final_errors(cells, label), ref_errors, label == reference))
    row["distinguishable"] = distinguishable(row)
    rows.append(row)
  rows.sort(key=lambda r: (r["test_error_mean"] is None, r["test_error_mean"] or 0.0, r["pool"]))
  return rows


def _paired_columns(errors, ref_errors, is_reference) -> dict:
  if is_reference:
    return dict(paired_seeds=len(errors), diff_mean=None, diff_low=None, diff_high=None)
  d = stats.paired_difference(errors, ref_errors)
  return dict(paired_seeds=d.n, diff_mean=d.mean, diff_low=d.low, diff_high=d.high)


def distinguishable(row) -> str:
  """ "yes" if the row's paired interval excludes 0, "no" if not, "" without one."""
  if row.get("diff_low") is None:
    return ""
  return "yes" if row["diff_low"] > 0 or row["diff_high"] < 0 else "no"


def paired_differences(rows) -> dict:
  """pool -> `stats.PairedDifference` of every row but the reference's."""
  out = {}
  for r in rows:
    if r["pool"] == r["reference"]:
      continue
    half = None if r["diff_low"] is None else (r["diff_high"] - r["diff_low"]) / 2
    out[r["pool"]] = stats.PairedDifference(r["paired_seeds"], r["diff_mean"], half)
  return out


_MNIST_TRAIN_IMAGES = 60000


def budget(base, overrides=None) -> str:
  """The training budget of a cell config in words, e.g. "5 epochs on 60,000
  training images" or "4 epochs of 468 steps on 600 training images (1,872 steps
  of batch 128, 399 passes over them)"."""
  cfg = dict(base) | dict(overrides or {})
  epochs = cfg.get("num_epochs", "?")
  subset = cfg.get("max_train_examples") or 0
  images = min(subset, _MNIST_TRAIN_IMAGES) if subset else _MNIST_TRAIN_IMAGES
  steps = cfg.get("steps_per_epoch") or 0
  batch = cfg.get("batch_size", 0)
  if steps and isinstance(epochs, int) and batch:
    total = epochs * steps
    passes = total * batch / images
    return (
      f"{epochs} epochs of {steps} steps on {images:,} training images ({total:,} steps "
      f"of batch {batch}, {passes:.3g} passes over them)"
    )
  return f"{epochs} epochs on {images:,} training images"


def summary_paragraph(study, rows, overrides=None) -> str:
  """`stats.summary` for the rows of one regime (or of a study without regimes)."""
  if not rows:
    return ""
  reference = rows[0]["reference"]
  ref = next((r for r in rows if r["pool"] == reference), None)
  return stats.summary(
    reference,
    ref["test_error_mean"] if ref else None,
    paired_differences(rows),
    budget=budget(study["config"].get("base", {}), overrides),
    num_seeds=len(study["config"].get("seeds", [])),
  )


def regime_groups(study, cells):
  """[(regime, its overrides, its cells)]: one group ("") for a plain study."""
  named = regimes_of_study(study)
  if not named:
    return [("", {}, cells)]
  return [(r, o, [c for c in cells if c.get("regime", "") == r]) for r, o in named.items()]


def regimes_of_study(study) -> dict:
  """The study's `config.regimes` (name -> base overrides) as recorded in study.json."""
  return dict(study["config"].get("regimes") or {})


def all_rows(study, cells) -> list[dict]:
  """`aggregate` of every regime (or of the whole study), regime by regime."""
  return [r for _, _, group in regime_groups(study, cells) for r in aggregate(study, group)]


def train_size(overrides) -> int:
  """The training images of a regime (its `max_train_examples`; 0: all of MNIST's)."""
  subset = int(dict(overrides or {}).get("max_train_examples") or 0)
  return min(subset, _MNIST_TRAIN_IMAGES) if subset else _MNIST_TRAIN_IMAGES
