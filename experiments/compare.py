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
- Before any cell trains, every pool of the study is checked (registry name,
  options, a dry run of the model: `experiments.train.validate_config`); a bad one
  stops the study with one line naming it.
- A cell that raises is recorded (`error.json`: the exception and traceback), shown
  in the tables as failed, and the study goes on; a rerun tries it again. The
  command then exits 1, listing the failed cells on stderr.
- A study with `config.regimes` (name -> fields of `config.base`, e.g.
  `{"n600": {"max_train_examples": 600}}`) runs every pool x seed in every regime;
  cells go to `cells/<regime>-<pool>-seed<k>`.
- When the sweep ends (and the tables after every cell), the workdir holds:
  `study.json` (the command line, the config, the cells), `results.md` and
  `results.csv` (per pool, and per regime: final test error mean +- std over seeds;
  its paired difference with the reference pool `config.reference` (default max)
  with a 95% Student-t interval over seeds and whether that excludes 0
  (`experiments.stats`); best test error and its epoch, train error and the
  train/test gap, seconds per epoch, images/s, parameter count, backend and device,
  seeds completed/failed; the paper's number where the study has one), a generated
  paragraph at the top of `results.md` saying which pools are distinguishable from
  the reference, `cells.csv` (one row per cell), and the plots of
  `experiments.plots`: `curves.png` (test error per epoch, a panel per pool),
  `final.png` (final test error with the paired intervals), `learned.png` (the
  learnt pool parameters over epochs, when a pool learns any) and, with regimes,
  `regimes.png` (test error against training set size) beside
  `curves-<regime>.png`, `final-<regime>.png` and `learned-<regime>.png`.

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

import ml_collections
import numpy as np
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import cli
from experiments import plugins
from experiments import stats

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
  regime: str = ""  # The key in `config.regimes`; "" for a study without regimes.
  overrides: dict = dataclasses.field(default_factory=dict)  # The regime's base fields.

  @property
  def dirname(self) -> str:
    prefix = f"{self.regime}-" if self.regime else ""
    return f"{prefix}{self.label}-seed{self.seed}"


def train_and_evaluate(config, workdir):
  """`experiments.train.train_and_evaluate`, imported on first use (tests swap it)."""
  from experiments import train  # pylint: disable=g-import-not-at-top

  return train.train_and_evaluate(config, workdir)


def _plain(value) -> dict:
  return value.to_dict() if hasattr(value, "to_dict") else dict(value)


def regimes(config) -> dict:
  """`config.regimes` as a dict name -> base overrides ({} for a plain study)."""
  return {name: _plain(o) for name, o in _plain(config.get("regimes") or {}).items()}


def plan(config) -> list[Cell]:
  """The cells of a study config, seed-major: then regimes in `config.regimes`
  order (if any), then pools in `config.pools` order."""
  cells = []
  for seed in config.seeds:
    for regime, overrides in (regimes(config) or {"": {}}).items():
      for label, entry in config.pools.items():
        cells.append(
          Cell(
            label=label,
            pool=entry.name,
            options=_plain(entry.options),
            seed=int(seed),
            regime=regime,
            overrides=dict(overrides),
          )
        )
  return cells


def study_plugins(config) -> str:
  """The plugin modules of a study (`config.plugins`, then the base config's), as
  one comma-separated string: every cell imports them (experiments/plugins.py)."""
  base = config.base.get("plugins", "") if "base" in config else ""
  return ",".join(plugins.names(f"{config.get('plugins', '') or ''},{base or ''}"))


def cell_config(config, cell: Cell, *, quiet: bool = False):
  """The training config of one cell: `config.base` with the regime's overrides,
  pool, options, seed and the study's plugins."""
  cfg = ml_collections.ConfigDict(config.base.to_dict())
  for key, value in cell.overrides.items():
    if key not in cfg:
      raise ValueError(
        f"config.regimes.{cell.regime}: {key!r} is not a field of config.base; "
        f"valid fields: {', '.join(sorted(cfg.keys()))}"
      )
    cfg[key] = value
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


def check_cell(config):
  """`experiments.train.validate_config`: raises ValueError for a cell config with
  an unknown key, model, pool or option (imported on first use; tests swap it).
  Pools are looked up when it runs: a config's plugins must be imported before."""
  from experiments import train  # pylint: disable=g-import-not-at-top

  train.validate_config(config)


def run_study(
  config, workdir: str, *, quiet: bool = False, command=None, train_fn=None, check_fn=None
) -> list[dict]:
  """Runs every missing cell of the study, then writes tables and plots.

  Args:
    config: a `configs/compare.py` config (fields `base`, `pools`, `seeds`, ...).
    workdir: the study's folder; cells go to `workdir/cells/<pool>-seed<k>`.
    quiet: no progress bars (log lines instead), and quiet training runs.
    command: the command line to record (a list of strings); default `sys.argv`.
    train_fn: `(config, workdir) -> summary`; default `train_and_evaluate`.
    check_fn: `(cell_config) -> None`, raising ValueError for a cell that cannot
      run; called for every pool before any training. Default: `check_cell` when
      `train_fn` is the default, else none (a custom trainer has its own configs).

  Returns:
    The per-pool rows of `results.csv` (see `report`).
  """
  train_fn = train_fn or train_and_evaluate
  cells = plan(config)
  if not cells:
    raise ValueError("the study has no cells: config.pools and config.seeds must be non-empty")

  # Validate every cell up front, so a config clash, an unknown pool or a bad
  # option stops before hours of work.
  if check_fn is None and train_fn is train_and_evaluate:
    check_fn = check_cell
  todo, checked = [], set()
  for cell in cells:
    celldir = os.path.join(workdir, CELLS_DIR, cell.dirname)
    cfg = cell_config(config, cell, quiet=quiet)
    if check_fn is not None and cell.label not in checked:  # Seeds share the rest.
      try:
        check_fn(cfg)
      except ValueError as e:
        raise cli.ConfigError(f"config.pools.{cell.label}: {e}") from e
      checked.add(cell.label)
    _check_same_cell(celldir, cfg)
    todo.append((cell, celldir, cfg))
  os.makedirs(os.path.join(workdir, CELLS_DIR), exist_ok=True)
  _record_study(workdir, config, cells, command)

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
        regime=c.get("regime", ""),
        overrides=c.get("overrides", {}),
      )
    )
  return study, cells


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


def aggregate(study, cells):
  """Per-pool rows (errors in %), sorted by final test error (failed pools last).

  Cells of one regime (or of a study without regimes). Besides the per-pool
  figures, each row holds its paired difference with the reference pool
  (`experiments.stats`): `reference`, `paired_seeds`, `diff_mean`, `diff_low`,
  `diff_high` (percentage points) and `distinguishable` ("yes" / "no" / "").
  """
  paper = study["config"].get("paper_test_error") or {}
  labels = []
  for c in cells:
    if c["label"] not in labels:
      labels.append(c["label"])
  reference = reference_label(study, labels)
  ref_errors = _final_errors(cells, reference)
  rows = []
  for label in labels:
    mine = [c for c in cells if c["label"] == label]
    done = [c for c in mine if c["status"] == "completed"]
    s = [c["summary"] for c in done]
    get = lambda key, s=s: [x.get(key) for x in s]
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
        "regime": mine[0].get("regime", ""),
        "reference": reference,
        **_paired_columns(_final_errors(cells, label), ref_errors, label == reference),
      }
    )
    rows[-1]["distinguishable"] = distinguishable(rows[-1])
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


# ----------------------------------------------------------------------------
# Writing tables and plots.

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


def _fmt(v, digits=2):
  if v is None or (isinstance(v, float) and not math.isfinite(v)):
    return "–"
  return f"{v:.{digits}f}"


def _fmt_int(v):
  return "–" if v is None else f"{v:,.0f}"


def _regime_groups(study, cells):
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
  return [r for _, _, group in _regime_groups(study, cells) for r in aggregate(study, group)]


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


def _title(config) -> str:
  return {"seed_cnn": "the seed CNN", "zeiler_fergus": "the Zeiler & Fergus network"}.get(
    config.get("study"), config.get("study", "?")
  )


def _diff_text(r) -> str:
  if r["pool"] == r["reference"]:
    return "reference"
  if r["diff_mean"] is None:
    return "–"
  if r["diff_low"] is None:
    return f"{r['diff_mean']:+.2f} (1 seed)"
  mark = " *" if r["distinguishable"] == "yes" else ""
  return f"{r['diff_mean']:+.2f} [{r['diff_low']:+.2f}, {r['diff_high']:+.2f}]{mark}"


def _pool_table(rows) -> list[str]:
  """The markdown table of one regime's rows."""
  has_paper = any(r["paper_test_error"] is not None for r in rows)
  reference = rows[0]["reference"] if rows else "max"
  header = ["Pool", "Test error (%)", f"Δ vs `{reference}` (pp) [95% CI]"]
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
  out = ["| " + " | ".join(header) + " |"]
  out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
  for r in rows:
    if r["test_error_mean"] is None:
      test = "failed" if r["seeds_failed"] else "pending"
    else:
      test = _fmt(r["test_error_mean"])
      if r["test_error_std"] is not None:
        test += f" ± {_fmt(r['test_error_std'])}"
    cols = [f"`{r['pool']}`", test, _diff_text(r)]
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
  return out


_TABLE_NOTE = (
  "Test error: after the last epoch, mean ± sample standard deviation over "
  "seeds. Δ: the pool's final test error minus the reference pool's, paired by seed "
  "(every seed trains every pool from the same initial weights on the same data "
  "order), mean over seeds with its 95% Student-t confidence interval; * marks an "
  "interval that excludes 0. Best: the lowest test error over epochs (mean over "
  "seeds) and the epoch of each seed. Train error: as the training run reports it, "
  "the mean over the last epoch's steps in train mode (with a stochastic pool's "
  "noise). Gap: test minus train error, in percentage points (a smaller gap is the "
  "regularising effect). Seconds per epoch (training and evaluation, without "
  "compilation) and images/s as the training run measured them."
)


def _regimes_table(groups) -> list[str]:
  """Pool x regime: final test error and the paired difference."""
  names = [g[0] for g in groups]
  by = {(r["regime"], r["pool"]): r for _, _, rows in groups for r in rows}
  pools = []
  for _, _, rows in groups:
    pools += [r["pool"] for r in rows if r["pool"] not in pools]
  reference = groups[0][2][0]["reference"] if groups and groups[0][2] else "max"
  header = ["Pool"] + [f"{n}: error (%)" for n in names] + [f"{n}: Δ (pp)" for n in names]
  out = ["| " + " | ".join(header) + " |"]
  out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
  for pool in pools:
    cols = [f"`{pool}`"]
    for n in names:
      r = by.get((n, pool))
      if r is None or r["test_error_mean"] is None:
        cols.append("–")
      else:
        std = f" ± {_fmt(r['test_error_std'])}" if r["test_error_std"] is not None else ""
        cols.append(_fmt(r["test_error_mean"]) + std)
    for n in names:
      r = by.get((n, pool))
      cols.append("–" if r is None else _diff_text(r))
    out.append("| " + " | ".join(cols) + " |")
  out += [
    "",
    f"Δ: final test error minus `{reference}`'s, paired by seed, mean and 95% "
    "Student-t interval over seeds; * marks an interval that excludes 0.",
  ]
  return out


def markdown(study, cells, rows) -> str:
  """The results.md text: generated summary, table(s), plots, failures, exclusions,
  command, config."""
  config = study["config"]
  base = config.get("base", {})
  n = {s: sum(c["status"] == s for c in cells) for s in ("completed", "failed", "pending")}
  seeds = config.get("seeds", [])
  groups = [
    (name, o, [r for r in rows if r["regime"] == name])
    for name, o, _ in _regime_groups(study, cells)
  ]
  with_regimes = bool(regimes_of_study(study))
  if with_regimes:
    out = [f"# Pooling across data regimes on MNIST: {_title(config)}", ""]
    for name, overrides, group in groups:
      out += [f"**{name}.** " + summary_paragraph(study, group, overrides), ""]
  else:
    out = [f"# Pooling comparison on MNIST: {_title(config)}", ""]
    out += [summary_paragraph(study, rows), ""]
  out.append(f"Command: `{study['command']}`  ")
  out.append(
    f"Started {study.get('started_at')}, finished "
    f"{study.get('finished_at') or '(not yet)'}; platform preset "
    f"`{config.get('platform', base.get('platform', '?'))}`.  "
  )
  pools = len({r["pool"] for r in rows})
  regimes_text = f" x {len(groups)} regimes" if with_regimes else ""
  out.append(
    f"Sweep: {pools} pools{regimes_text} x {len(seeds)} seeds "
    f"({', '.join(map(str, seeds))}), {base.get('num_epochs', '?')} epochs "
    f"each, model `{base.get('model', '?')}`, optimizer "
    f"`{base.get('optimizer', '?')}` (lr {base.get('learning_rate', '?')}), "
    f"batch {base.get('batch_size', '?')}, compute "
    f"`{base.get('compute_dtype', '?')}`.  "
  )
  out.append(f"Cells: {n['completed']} completed, {n['failed']} failed, {n['pending']} pending.")
  out.append("")
  if with_regimes:
    out += ["## Test error by training set size", ""]
    out += _regimes_table(groups)
    out += ["", "![test error against training set size](regimes.png)", ""]
    for name, overrides, group in groups:
      out += [f"## {name}: {budget(base, overrides)}", ""]
      out += _pool_table(group)
      out += [""]
      for kind, alt in _PLOTS:
        path = plot_name(kind, name)
        if kind != "learned" or any(_learned_keys(c) for c in cells if c["regime"] == name):
          out += [f"![{alt}]({path})", ""]
    out += [_TABLE_NOTE, ""]
  else:
    out += _pool_table(rows)
    out += ["", _TABLE_NOTE]
    if config.get("paper_reference") and any(r["paper_test_error"] is not None for r in rows):
      out.append(f"Paper: {config['paper_reference']}.")
    out.append("")
    for kind, alt in _PLOTS:
      if kind != "learned" or any(_learned_keys(c) for c in cells):
        out += [f"![{alt}]({plot_name(kind)})", ""]
  failed = [c for c in cells if c["status"] == "failed"]
  if failed:
    out += ["## Failed cells", ""]
    for c in failed:
      out.append(
        f"- `{c['dir']}`: {cli.squeeze(c['error'], 160)} (traceback in `{c['dir']}/{ERROR_FILE}`)"
      )
    out.append("")
  excluded = config.get("excluded") or {}
  if excluded:
    out += ["## Registry pools not in this sweep", ""]
    for name, reason in sorted(excluded.items()):
      out.append(f"- `{name}`: {reason}")
    out.append("")
  out += ["## Options of each pool", ""]
  first = {}
  for r in rows:
    first.setdefault(r["pool"], r)
  for pool in sorted(first):
    r = first[pool]
    out.append(f"- `{pool}`: `registry.make({r['registry_name']!r}, **{r['options']})`")
  out += ["", "## Config", "", "```json", json.dumps(config, indent=2, sort_keys=True), "```", ""]
  if study.get("history"):
    out += ["## Earlier commands on this workdir", ""]
    out += [f"- `{h['command']}` ({h.get('started_at')})" for h in study["history"]]
    out.append("")
  return "\n".join(out)


_PLOTS = (
  ("curves", "test error per epoch"),
  ("final", "final test error"),
  ("learned", "learned pool parameters"),
)


def plot_name(kind: str, regime: str = "") -> str:
  """The file name of a plot: `curves.png`, or `curves-<regime>.png` in a regime."""
  return f"{kind}-{regime}.png" if regime else f"{kind}.png"


def _learned_keys(cell) -> list[str]:
  """The `learned/...` keys of a cell's metrics."""
  keys = []
  for m in cell["metrics"]:
    keys += [k for k in m if k.startswith("learned/") and k not in keys]
  return keys


def train_size(overrides) -> int:
  """The training images of a regime (its `max_train_examples`; 0: all of MNIST's)."""
  subset = int(dict(overrides or {}).get("max_train_examples") or 0)
  return min(subset, _MNIST_TRAIN_IMAGES) if subset else _MNIST_TRAIN_IMAGES


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
  for name, overrides, group_cells in _regime_groups(study, cells):
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
    # Pool options new to a pool's dict: `--config.pools.lp.options.p=3`.
    accept_new_attributes=True,
  )
  flags.DEFINE_string("workdir", None, "The study folder.", flag_values=flag_values)
  flags.DEFINE_bool(
    "report-only", False, "Only rebuild tables and plots from the workdir.", flag_values=flag_values
  )
  flags.DEFINE_bool("quiet", False, "Log lines instead of progress bars.", flag_values=flag_values)
  return flag_values


# The open parts of a study config: pool options (checked against each pool when
# the study starts) and tables keyed by pool.
OPEN_PATHS = ("base.pool_options", "pools.*.options", "excluded", "paper_test_error")


def check_study(config):
  """The keys of a study config, against those of `configs/compare.py` (ConfigError)."""
  from configs import compare as compare_config  # pylint: disable=g-import-not-at-top
  from configs import mnist  # pylint: disable=g-import-not-at-top

  schema = compare_config.get_config("quick")
  schema.base = mnist.base_config()
  cli.check_keys(config, schema, open_paths=OPEN_PATHS + ("pools",))
  for label, entry in config.pools.items():
    cli.check_keys(
      entry,
      ml_collections.ConfigDict({"name": "", "options": {}}),
      open_paths=("options",),
      path=f"pools.{label}",
    )


def failures(workdir) -> list[str]:
  """`"<cell dir>: <error>"` for every failed cell of the study in `workdir`."""
  _, cells = load_cells(workdir)
  return [f"{c['dir']}: {cli.squeeze(c['error'], 160)}" for c in cells if c["status"] == "failed"]


def main(argv, flag_values=flags.FLAGS):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  cli.quiet_library_logs()
  workdir = flag_values.workdir
  if not workdir:
    raise app.UsageError("--workdir is required")
  if flag_values["report-only"].value:
    report(workdir)
  else:
    config = flag_values.config
    if config is None:
      raise app.UsageError("--config is required, e.g. --config=configs/compare.py")
    # Users' pools (a PluginError names a module that fails), before the study's
    # pools are checked and resolved.
    plugins.load(study_plugins(config))
    check_study(config)
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
  failed = failures(workdir)
  if failed:  # The others ran; the exit status says that the study is not whole.
    sys.stdout.flush()
    print(f"compare: {len(failed)} cell(s) failed:", file=sys.stderr)
    for line in failed:
      print(f"  {line}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  cli.run(main, prog="compare", define_flags=define_flags, open_paths=OPEN_PATHS)
