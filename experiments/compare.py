r"""The comparison study: every pooling choice of a sweep, trained and tabulated.

    python -m experiments.compare --config=configs/compare.py --workdir=runs/compare
    python -m experiments.compare --workdir=runs/compare --report-only

A study (`configs/compare.py`) is a sweep of cells, every pool x every seed. Each
cell is one training run, `experiments.train.train_and_evaluate(cell_config,
workdir/cells/<pool>-seed<k>)`, with the base config's `pool`, `pool_options` and
`seed` replaced. Cells run one after another, seed-major (every pool's seed 0
first), so a study cut short still covers every pool.

- A cell is complete iff its `summary.json` says `"completed": true`; a rerun skips
  complete cells, and the training run itself resumes a cell that was killed
  mid-way from its last checkpoint. A rerun into a workdir whose cell was made
  with a different config stops with an error rather than mixing two studies.
- A cell that raises is recorded (`error.json`: the exception and traceback), shown
  in the tables as failed, and the study goes on; a rerun tries it again.
- When the sweep ends (and the tables after every cell), the workdir holds:
  `study.json` (the command line, the config, the cells), `results.md` and
  `results.csv` (per pool: final test error mean +- std over seeds, best test error
  and its epoch, train error and the train/test gap, seconds per epoch, images/s,
  parameter count, backend and device, seeds completed/failed; the paper's number
  where the study has one), `cells.csv` (one row per cell), `curves.png` (test
  error per epoch: mean over seeds, min-max band) and `final.png` (final test
  error, mean +- std over seeds, sorted).

`--report-only` rebuilds all of these from what is on disk, without JAX.
`--quiet` replaces the progress bars by log lines.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import math
import os
import shlex
import sys
import time
import traceback

from absl import app
from absl import flags
from absl import logging
import ml_collections
from ml_collections import config_flags
import numpy as np

STUDY_FILE = "study.json"
CELL_CONFIG_FILE = "cell.json"
ERROR_FILE = "error.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
CELLS_DIR = "cells"
# Keys of a cell's config that may change between reruns without changing results.
_VOLATILE_KEYS = ("quiet",)
# Keys added to the training config later, with their defaults: a cell written before
# them had those values.
_ADDED_KEYS = {"plugins": ""}


@dataclasses.dataclass(frozen=True)
class Cell:
  """One (pool, seed) run of a study."""

  label: str  # The pool's key in `config.pools` (usually its registry name).
  pool: str  # Registry name.
  options: dict  # Keyword options for `registry.make`.
  seed: int

  @property
  def dirname(self) -> str:
    return f"{self.label}-seed{self.seed}"


def train_and_evaluate(config, workdir):
  """`experiments.train.train_and_evaluate`, imported on first use (tests swap it)."""
  from experiments import train  # pylint: disable=g-import-not-at-top

  return train.train_and_evaluate(config, workdir)


def plan(config) -> list[Cell]:
  """The cells of a study config, seed-major: pools in `config.pools` order."""
  cells = []
  for seed in config.seeds:
    for label, entry in config.pools.items():
      options = entry.options
      options = options.to_dict() if hasattr(options, "to_dict") else dict(options)
      cells.append(Cell(label=label, pool=entry.name, options=options, seed=int(seed)))
  return cells


def study_plugins(config) -> str:
  """The plugin modules of a study (`config.plugins`, then the base config's), as
  one comma-separated string: every cell imports them (experiments/plugins.py)."""
  from experiments import plugins  # pylint: disable=g-import-not-at-top

  base = config.base.get("plugins", "") if "base" in config else ""
  return ",".join(plugins.names(f"{config.get('plugins', '') or ''},{base or ''}"))


def cell_config(config, cell: Cell, *, quiet: bool = False):
  """The training config of one cell: `config.base` with pool, options, seed and the
  study's plugins."""
  cfg = ml_collections.ConfigDict(config.base.to_dict())
  if "plugins" in cfg:
    cfg.plugins = study_plugins(config)
  cfg.pool = cell.pool
  cfg.pool_options = ml_collections.ConfigDict(dict(cell.options))
  cfg.seed = cell.seed
  if "quiet" in cfg:
    cfg.quiet = bool(quiet)
  return cfg


def _jsonable(value):
  """A JSON-friendly copy of a ConfigDict / dict / tuple tree."""
  if hasattr(value, "to_json_best_effort"):
    return json.loads(value.to_json_best_effort(sort_keys=True))
  return json.loads(json.dumps(value, default=str, sort_keys=True))


def _read_json(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (FileNotFoundError, json.JSONDecodeError):
    return None


def _write_json(path, obj):
  """Writes atomically: a reader never sees half a file."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=str)
    f.write("\n")
  os.replace(tmp, path)


def _now():
  return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def is_complete(celldir: str) -> bool:
  summary = _read_json(os.path.join(celldir, SUMMARY_FILE))
  return bool(summary and summary.get("completed"))


def _check_same_cell(celldir, cell_cfg):
  """Refuses to reuse a cell directory made with a different config."""
  old = _read_json(os.path.join(celldir, CELL_CONFIG_FILE))
  new = _jsonable(cell_cfg)
  if old is None:
    return
  strip = lambda d: {
    k: v
    for k, v in d.items()
    if k not in _VOLATILE_KEYS and not (k in _ADDED_KEYS and v == _ADDED_KEYS[k])
  }
  if strip(old) != strip(new):
    diff = sorted(
      k for k in set(strip(old)) | set(strip(new)) if strip(old).get(k) != strip(new).get(k)
    )
    raise ValueError(
      f"{celldir} was trained with a different config (keys that differ: "
      f"{', '.join(diff)}); use a new --workdir for a new study, or delete "
      "that cell to retrain it"
    )


def run_study(
  config, workdir: str, *, quiet: bool = False, command=None, train_fn=None
) -> list[dict]:
  """Runs every missing cell of the study, then writes tables and plots.

  Args:
    config: a `configs/compare.py` config (fields `base`, `pools`, `seeds`, ...).
    workdir: the study's folder; cells go to `workdir/cells/<pool>-seed<k>`.
    quiet: no progress bars (log lines instead), and quiet training runs.
    command: the command line to record (a list of strings); default `sys.argv`.
    train_fn: `(config, workdir) -> summary`; default `train_and_evaluate`.

  Returns:
    The per-pool rows of `results.csv` (see `report`).
  """
  train_fn = train_fn or train_and_evaluate
  os.makedirs(os.path.join(workdir, CELLS_DIR), exist_ok=True)
  cells = plan(config)
  if not cells:
    raise ValueError("the study has no cells: config.pools and config.seeds must be non-empty")
  _record_study(workdir, config, cells, command)

  # Validate every cell up front, so a config clash stops before hours of work.
  todo = []
  for cell in cells:
    celldir = os.path.join(workdir, CELLS_DIR, cell.dirname)
    cfg = cell_config(config, cell, quiet=quiet)
    _check_same_cell(celldir, cfg)
    todo.append((cell, celldir, cfg))

  from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top

  bar = tqdm.tqdm(todo, desc="study", unit="cell", disable=quiet, position=0)
  counts = {"skipped": 0, "completed": 0, "failed": 0}
  for cell, celldir, cfg in bar:
    bar.set_postfix_str(cell.dirname)
    if is_complete(celldir):
      counts["skipped"] += 1
      continue
    os.makedirs(celldir, exist_ok=True)
    _write_json(os.path.join(celldir, CELL_CONFIG_FILE), _jsonable(cfg))
    logging.info("cell %s: training %s", cell.dirname, celldir)
    start = time.time()
    try:
      train_fn(cfg, celldir)
    except Exception as e:  # pylint: disable=broad-except
      # Any failure of one cell (bad options, NaN loss, out of memory) is data
      # for the table; the other cells still run. Ctrl-C is not an Exception.
      counts["failed"] += 1
      message = f"{type(e).__name__}: {e}"
      logging.error("cell %s failed after %.0f s: %s", cell.dirname, time.time() - start, message)
      _write_json(
        os.path.join(celldir, ERROR_FILE),
        {"error": message, "traceback": traceback.format_exc(), "time": _now()},
      )
    else:
      if not is_complete(celldir):
        counts["failed"] += 1
        message = f"training returned without writing a completed {SUMMARY_FILE}"
        _write_json(
          os.path.join(celldir, ERROR_FILE), {"error": message, "traceback": "", "time": _now()}
        )
      else:
        counts["completed"] += 1
        if os.path.exists(os.path.join(celldir, ERROR_FILE)):
          os.remove(os.path.join(celldir, ERROR_FILE))
      logging.info("cell %s done in %.0f s", cell.dirname, time.time() - start)
    write_tables(workdir)  # Partial results are readable while the study runs.
  bar.close()
  logging.info(
    "study %s: %d cells trained, %d failed, %d already complete",
    workdir,
    counts["completed"],
    counts["failed"],
    counts["skipped"],
  )
  study = _read_json(os.path.join(workdir, STUDY_FILE))
  study["finished_at"] = _now()
  _write_json(os.path.join(workdir, STUDY_FILE), study)
  return report(workdir)


def _command_line(command):
  argv = list(sys.argv if command is None else command)
  if argv and os.path.basename(argv[0]) == "compare.py":  # How `-m` shows it.
    argv = ["python", "-m", "experiments.compare"] + argv[1:]
  return argv


def _record_study(workdir, config, cells, command):
  """study.json: what was run, how, and when; earlier commands kept in history."""
  path = os.path.join(workdir, STUDY_FILE)
  old = _read_json(path) or {}
  argv = _command_line(command)
  history = list(old.get("history", []))
  if old.get("command"):
    history.append(
      {
        "command": old["command"],
        "started_at": old.get("started_at"),
        "finished_at": old.get("finished_at"),
      }
    )
  _write_json(
    path,
    {
      "command": shlex.join(argv),
      "argv": argv,
      "started_at": _now(),
      "finished_at": None,
      "config": _jsonable(config),
      "cells": [dataclasses.asdict(c) | {"dir": os.path.join(CELLS_DIR, c.dirname)} for c in cells],
      "history": history,
    },
  )


# ----------------------------------------------------------------------------
# Reading a study back from disk.


def _read_metrics(path):
  """metrics.jsonl -> list of dicts; a torn last line (a killed run) is skipped."""
  rows = []
  try:
    with open(path) as f:
      for line in f:
        line = line.strip()
        if not line:
          continue
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError:
          continue
  except FileNotFoundError:
    pass
  # A resumed run may have rewritten an epoch: keep the last record of each.
  by_epoch = {int(r["epoch"]): r for r in rows if "epoch" in r}
  return [by_epoch[e] for e in sorted(by_epoch)]


def load_cells(workdir):
  """Every cell of the study with its status, summary, metrics and error."""
  study = _read_json(os.path.join(workdir, STUDY_FILE))
  if study is None:
    raise FileNotFoundError(
      f"no {STUDY_FILE} in {workdir!r}: run the study first (without "
      "--report-only), or point --workdir at a study folder"
    )
  cells = []
  for c in study["cells"]:
    celldir = os.path.join(workdir, c["dir"])
    summary = _read_json(os.path.join(celldir, SUMMARY_FILE))
    error = _read_json(os.path.join(celldir, ERROR_FILE))
    if summary and summary.get("completed"):
      status = "completed"
    elif error:
      status = "failed"
    else:
      status = "pending"
    cells.append(
      dict(
        c,
        status=status,
        summary=summary or {},
        error=(error or {}).get("error", ""),
        metrics=_read_metrics(os.path.join(celldir, METRICS_FILE)),
      )
    )
  return study, cells


def _mean(values):
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


def _std(values):
  values = [v for v in values if v is not None]
  return float(np.std(values, ddof=1)) if len(values) > 1 else None


def _pct(v):
  return None if v is None else 100.0 * v


def aggregate(study, cells):
  """Per-pool rows (errors in %), sorted by final test error (failed pools last)."""
  paper = study["config"].get("paper_test_error") or {}
  labels = []
  for c in cells:
    if c["label"] not in labels:
      labels.append(c["label"])
  rows = []
  for label in labels:
    mine = [c for c in cells if c["label"] == label]
    done = [c for c in mine if c["status"] == "completed"]
    s = [c["summary"] for c in done]
    get = lambda key: [x.get(key) for x in s]
    test = [_pct(v) for v in get("final_test_error")]
    train = [_pct(v) for v in get("final_train_error")]
    gaps = [t - r for t, r in zip(test, train) if t is not None and r is not None]
    backends = sorted(
      {
        f"{x.get('backend', '?')} / {x.get('device_kind', '?')} x{x.get('device_count', '?')}"
        for x in s
      }
    )
    params = sorted({int(x["num_params"]) for x in s if x.get("num_params")})
    platforms = sorted({str(x.get("platform")) for x in s if x.get("platform")})
    failed = [c for c in mine if c["status"] == "failed"]
    rows.append(
      {
        "pool": label,
        "registry_name": mine[0]["pool"],
        "options": json.dumps(mine[0]["options"], sort_keys=True),
        "seeds_completed": len(done),
        "seeds_failed": len(failed),
        "seeds_pending": len(mine) - len(done) - len(failed),
        "test_error_mean": _mean(test),
        "test_error_std": _std(test),
        "best_test_error_mean": _mean([_pct(v) for v in get("best_test_error")]),
        "best_epochs": " ".join(str(v) for v in get("best_epoch")),
        "train_error_mean": _mean(train),
        "gap_mean": _mean(gaps),
        "num_epochs": _mean(get("num_epochs")),
        "seconds_per_epoch": _mean(get("seconds_per_epoch")),
        "images_per_second": _mean(get("images_per_second")),
        "num_params": " ".join(str(p) for p in params),
        "backend_device": "; ".join(backends),
        "platform": " ".join(platforms),
        "paper_test_error": _pct(paper.get(label, paper.get(mine[0]["pool"]))),
        "test_errors": " ".join(f"{v:.2f}" for v in test if v is not None),
        "errors": " | ".join(f"{c['dir']}: {c['error']}" for c in failed),
      }
    )
  rows.sort(key=lambda r: (r["test_error_mean"] is None, r["test_error_mean"] or 0.0, r["pool"]))
  return rows


# ----------------------------------------------------------------------------
# Writing tables and plots.

_CSV_FIELDS = (
  "pool",
  "registry_name",
  "options",
  "seeds_completed",
  "seeds_failed",
  "seeds_pending",
  "test_error_mean",
  "test_error_std",
  "test_errors",
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


def _fmt(v, digits=2):
  if v is None or (isinstance(v, float) and not math.isfinite(v)):
    return "–"
  return f"{v:.{digits}f}"


def _fmt_int(v):
  return "–" if v is None else f"{v:,.0f}"


def _one_line(text, limit=160):
  text = " ".join(str(text).split())
  return text if len(text) <= limit else text[: limit - 1] + "…"


def write_tables(workdir):
  """results.csv, cells.csv and results.md (without touching the plots)."""
  study, cells = load_cells(workdir)
  rows = aggregate(study, cells)
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
          "pool": c["label"],
          "registry_name": c["pool"],
          "seed": c["seed"],
          "status": c["status"],
          "error": c["error"],
          "dir": c["dir"],
          **{
            k: s.get(k, "")
            for k in _CELL_FIELDS
            if k not in ("pool", "registry_name", "seed", "status", "error", "dir")
          },
        }
      )
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(markdown(study, cells, rows))
  return rows


def markdown(study, cells, rows) -> str:
  """The results.md text: table, plots, failures, exclusions, command, config."""
  config = study["config"]
  base = config.get("base", {})
  has_paper = any(r["paper_test_error"] is not None for r in rows)
  n = {s: sum(c["status"] == s for c in cells) for s in ("completed", "failed", "pending")}
  seeds = config.get("seeds", [])
  title = {"seed_cnn": "the seed CNN", "zeiler_fergus": "the Zeiler & Fergus network"}.get(
    config.get("study"), config.get("study", "?")
  )
  out = [f"# Pooling comparison on MNIST: {title}", ""]
  out.append(f"Command: `{study['command']}`  ")
  out.append(
    f"Started {study.get('started_at')}, finished "
    f"{study.get('finished_at') or '(not yet)'}; platform preset "
    f"`{config.get('platform', base.get('platform', '?'))}`.  "
  )
  out.append(
    f"Sweep: {len(rows)} pools x {len(seeds)} seeds "
    f"({', '.join(map(str, seeds))}), {base.get('num_epochs', '?')} epochs "
    f"each, model `{base.get('model', '?')}`, optimizer "
    f"`{base.get('optimizer', '?')}` (lr {base.get('learning_rate', '?')}), "
    f"batch {base.get('batch_size', '?')}, compute "
    f"`{base.get('compute_dtype', '?')}`.  "
  )
  out.append(f"Cells: {n['completed']} completed, {n['failed']} failed, {n['pending']} pending.")
  out.append("")
  header = ["Pool", "Test error (%)"]
  if has_paper:
    header.append("Paper (%)")
  header += [
    "Best (%) @ epoch",
    "Train error (%)",
    "Gap (pp)",
    "s / epoch",
    "images / s",
    "Params",
    "Backend / device",
    "Seeds ok / failed",
  ]
  out.append("| " + " | ".join(header) + " |")
  out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
  for r in rows:
    if r["test_error_mean"] is None:
      test = "failed" if r["seeds_failed"] else "pending"
    else:
      test = _fmt(r["test_error_mean"])
      if r["test_error_std"] is not None:
        test += f" ± {_fmt(r['test_error_std'])}"
    cols = [f"`{r['pool']}`", test]
    if has_paper:
      cols.append(_fmt(r["paper_test_error"]))
    best = _fmt(r["best_test_error_mean"])
    if r["best_epochs"]:
      best += f" @ {r['best_epochs'].replace(' ', ', ')}"
    cols += [
      best,
      _fmt(r["train_error_mean"]),
      _fmt(r["gap_mean"]),
      _fmt(r["seconds_per_epoch"], 1),
      _fmt_int(r["images_per_second"]),
      " ".join(f"{int(p):,}" for p in r["num_params"].split()) or "–",
      r["backend_device"] or "–",
      f"{r['seeds_completed']} / {r['seeds_failed']}"
      + (f" ({r['seeds_pending']} pending)" if r["seeds_pending"] else ""),
    ]
    out.append("| " + " | ".join(cols) + " |")
  out.append("")
  out.append(
    "Test error: after the last epoch, mean ± sample standard deviation over "
    "seeds. Best: the lowest test error over epochs (mean over seeds) and the "
    "epoch of each seed. Train error: as the training run reports it, the mean "
    "over the last epoch's steps in train mode (with a stochastic pool's noise). "
    "Gap: test minus train error, in percentage points (a smaller gap is the "
    "regularising effect). Seconds per epoch (training and evaluation, without "
    "compilation) and images/s as the training run measured them."
  )
  if has_paper and config.get("paper_reference"):
    out.append(f"Paper: {config['paper_reference']}.")
  out += ["", "![test error per epoch](curves.png)", "", "![final test error](final.png)", ""]
  failed = [c for c in cells if c["status"] == "failed"]
  if failed:
    out += ["## Failed cells", ""]
    for c in failed:
      out.append(
        f"- `{c['dir']}`: {_one_line(c['error'])} (traceback in `{c['dir']}/{ERROR_FILE}`)"
      )
    out.append("")
  excluded = config.get("excluded") or {}
  if excluded:
    out += ["## Registry pools not in this sweep", ""]
    for name, reason in sorted(excluded.items()):
      out.append(f"- `{name}`: {reason}")
    out.append("")
  out += ["## Options of each pool", ""]
  for r in sorted(rows, key=lambda r: r["pool"]):
    out.append(f"- `{r['pool']}`: `registry.make({r['registry_name']!r}, **{r['options']})`")
  out += ["", "## Config", "", "```json", json.dumps(config, indent=2, sort_keys=True), "```", ""]
  if study.get("history"):
    out += ["## Earlier commands on this workdir", ""]
    out += [f"- `{h['command']}` ({h.get('started_at')})" for h in study["history"]]
    out.append("")
  return "\n".join(out)


def _curves(cells, labels):
  """label -> (epochs, mean, lo, hi) of test error in %, over completed seeds."""
  curves = {}
  for label in labels:
    runs = [
      c["metrics"]
      for c in cells
      if c["label"] == label and c["status"] == "completed" and c["metrics"]
    ]
    if not runs:
      continue
    by_epoch = {}
    for run in runs:
      for m in run:
        if m.get("test_error") is not None:
          by_epoch.setdefault(int(m["epoch"]), []).append(100.0 * m["test_error"])
    epochs = sorted(by_epoch)
    vals = [np.asarray(by_epoch[e]) for e in epochs]
    curves[label] = (
      np.asarray(epochs),
      np.array([v.mean() for v in vals]),
      np.array([v.min() for v in vals]),
      np.array([v.max() for v in vals]),
    )
  return curves


def _use_log_scale(values) -> bool:
  """Log scale when the plotted errors span more than a factor of 3."""
  values = np.asarray([v for v in values if v is not None and v > 0])
  return values.size > 0 and values.max() / values.min() > 3.0


def plot(workdir, study=None, cells=None, rows=None):
  """curves.png and final.png; returns their paths."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  if study is None:
    study, cells = load_cells(workdir)
  rows = rows or aggregate(study, cells)
  labels = [r["pool"] for r in rows]  # Best first: the legend reads as a ranking.
  if len(labels) <= 10:
    palette = [plt.get_cmap("tab10")(i) for i in range(10)]
  else:  # The strong tab20 colours first, then their light partners.
    palette = [plt.get_cmap("tab20")(i) for i in list(range(0, 20, 2)) + list(range(1, 20, 2))]
  colour = {label: palette[i % len(palette)] for i, label in enumerate(labels)}
  paper = {r["pool"]: r["paper_test_error"] for r in rows if r["paper_test_error"] is not None}
  num_seeds = len(study["config"].get("seeds", []))
  title = study["config"].get("study", "")

  # Test error per epoch.
  curves = _curves(cells, labels)
  fig, ax = plt.subplots(figsize=(9, 5.5), layout="constrained")
  plotted = list(paper.values())
  for label, (epochs, mean, lo, hi) in curves.items():
    final = mean[-1]
    ax.plot(
      epochs,
      mean,
      color=colour[label],
      lw=1.8,
      marker="o" if len(epochs) <= 12 else None,
      ms=3,
      label=f"{label} ({final:.2f}%)",
    )
    if len(epochs):
      ax.fill_between(epochs, lo, hi, color=colour[label], alpha=0.15, lw=0)
    plotted += list(mean) + list(lo) + list(hi)
  for label, value in paper.items():
    ax.axhline(value, color=colour[label], ls="--", lw=1)
    ax.annotate(
      f"paper {label} {value:.2f}%",
      (1.0, value),
      xycoords=("axes fraction", "data"),
      ha="right",
      va="bottom",
      fontsize=8,
      color=colour[label],
    )
  if _use_log_scale(plotted):
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
  if curves:
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
  ax.set_xlabel("epoch")
  ax.set_ylabel("test error (%)")
  ax.set_title(f"MNIST test error per epoch, {title}: mean over {num_seeds} seeds, band min–max")
  ax.grid(True, which="both", alpha=0.3)
  if curves:
    ax.legend(
      loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, title="pool (final)", frameon=False
    )
  else:
    ax.text(0.5, 0.5, "no completed cells yet", transform=ax.transAxes, ha="center")
  curves_path = os.path.join(workdir, "curves.png")
  fig.savefig(curves_path, dpi=120)
  plt.close(fig)

  # Final test error, sorted, with error bars and one dot per seed. Points, not
  # bars from zero: on MNIST the pools differ by tenths of a percent.
  done = [r for r in rows if r["test_error_mean"] is not None]
  fig, ax = plt.subplots(figsize=(8, max(2.8, 1.4 + 0.45 * len(done))), layout="constrained")
  y = np.arange(len(done))[::-1]  # Best on top.
  for yi, r in zip(y, done):
    c = colour[r["pool"]]
    seeds = [float(v) for v in r["test_errors"].split()]
    ax.plot(seeds, [yi] * len(seeds), "o", color=c, ms=4, alpha=0.5)
    ax.errorbar(
      r["test_error_mean"],
      yi,
      xerr=r["test_error_std"] or 0.0,
      fmt="s",
      color=c,
      ms=7,
      capsize=4,
      lw=1.8,
    )
    text = f"{r['test_error_mean']:.2f}"
    if r["test_error_std"] is not None:
      text += f" ± {r['test_error_std']:.2f}"
    ax.annotate(
      text,
      (r["test_error_mean"], yi),
      xytext=(0, 7),
      textcoords="offset points",
      ha="center",
      fontsize=8,
    )
    if r["pool"] in paper:
      ax.plot(
        [paper[r["pool"]]],
        [yi],
        "D",
        mfc="white",
        mec="k",
        ms=7,
        label="paper" if r["pool"] == next(iter(paper)) else None,
      )
  ax.set_yticks(y, [r["pool"] for r in done])
  ax.set_ylim(-0.7, len(done) - 0.3)
  ax.margins(x=0.15)
  ax.set_xlabel("final test error (%)")
  failed = [r["pool"] for r in rows if r["test_error_mean"] is None]
  ax.set_title(
    f"Final MNIST test error, {title}: mean ± std over seeds, "
    "dots: seeds" + (f"\nno result: {', '.join(failed)}" if failed else ""),
    fontsize=10,
  )
  ax.grid(True, axis="x", alpha=0.3)
  if paper:
    ax.legend(loc="lower right", fontsize=8)
  final_path = os.path.join(workdir, "final.png")
  fig.savefig(final_path, dpi=120)
  plt.close(fig)
  return curves_path, final_path


def report(workdir) -> list[dict]:
  """Rebuilds results.md, results.csv, cells.csv, curves.png and final.png."""
  rows = write_tables(workdir)
  study, cells = load_cells(workdir)
  plot(workdir, study, cells, rows)
  return rows


# ----------------------------------------------------------------------------
# Command line.


def define_flags(flag_values=flags.FLAGS):
  """The command-line flags, defined only when run as a program (so that importing
  this module beside experiments.train or experiments.benchmark defines nothing)."""
  config_flags.DEFINE_config_file(
    "config",
    None,
    "The study config, e.g. configs/compare.py:quick.",
    flag_values=flag_values,
    lock_config=False,
  )
  flags.DEFINE_string("workdir", None, "The study folder.", flag_values=flag_values)
  flags.DEFINE_bool(
    "report-only", False, "Only rebuild tables and plots from the workdir.", flag_values=flag_values
  )
  flags.DEFINE_bool("quiet", False, "Log lines instead of progress bars.", flag_values=flag_values)
  return flag_values


class _LibraryInfoFilter:
  """Drops INFO lines of checkpointing and dataset libraries (dozens per epoch)
  so that the study's own log lines stay readable; warnings still pass."""

  _NOISY = (
    f"{os.sep}orbax{os.sep}",
    f"{os.sep}tensorflow_datasets{os.sep}",
    f"{os.sep}etils{os.sep}",
  )

  def filter(self, record):
    return record.levelno >= 30 or not any(s in record.pathname for s in self._NOISY)


def main(argv, flag_values=flags.FLAGS):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.get_absl_logger().addFilter(_LibraryInfoFilter())
  workdir = flag_values.workdir
  if not workdir:
    raise app.UsageError("--workdir is required")
  if flag_values["report-only"].value:
    report(workdir)
  else:
    config = flag_values.config
    if config is None:
      raise app.UsageError("--config is required, e.g. --config=configs/compare.py")
    from experiments import plugins  # pylint: disable=g-import-not-at-top

    try:
      plugins.load(study_plugins(config))  # users' pools, before the cells resolve theirs
    except plugins.PluginError as e:
      sys.exit(f"experiments.compare: {e}")  # one line, exit status 1
    run_study(config, workdir, quiet=flag_values.quiet or bool(config.get("quiet")))
  with open(os.path.join(workdir, "results.md")) as f:
    text = f.read()
  # The table, for the terminal (the rest is in results.md).
  print(
    "\n".join(
      line for line in text.splitlines() if line.startswith("|") or line.startswith("Cells:")
    )
  )
  print(f"\nresults: {os.path.join(workdir, 'results.md')}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
