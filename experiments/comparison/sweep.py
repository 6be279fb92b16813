"""Running a study: its cells (pool x seed x regime), their configs, resume and failed cells."""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import time
import traceback

import ml_collections
from absl import logging

from experiments import cli
from experiments import plugins
from experiments.comparison.files import CELL_CONFIG_FILE
from experiments.comparison.files import CELLS_DIR
from experiments.comparison.files import ERROR_FILE
from experiments.comparison.files import STUDY_FILE
from experiments.comparison.files import SUMMARY_FILE
from experiments.comparison.files import is_complete
from experiments.comparison.files import jsonable
from experiments.comparison.files import read_json
from experiments.comparison.files import utc_now
from experiments.comparison.files import write_json
from experiments.comparison.report import report
from experiments.comparison.report import write_tables

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


def _check_same_cell(celldir, cell_cfg):
  """Refuses to reuse a cell directory made with a different config."""
  old = read_json(os.path.join(celldir, CELL_CONFIG_FILE))
  new = jsonable(cell_cfg)
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
  if check_fn is None and train_fn is train_and_evaluate:
    check_fn = check_cell
  todo = _checked_cells(config, workdir, cells, quiet, check_fn)
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
    counts[_run_cell(cell, celldir, cfg, train_fn)] += 1
    write_tables(workdir)  # Partial results are readable while the study runs.
  bar.close()
  logging.info(
    "study %s: %d cells trained, %d failed, %d already complete",
    workdir,
    counts["completed"],
    counts["failed"],
    counts["skipped"],
  )
  study = read_json(os.path.join(workdir, STUDY_FILE))
  study["finished_at"] = utc_now()
  write_json(os.path.join(workdir, STUDY_FILE), study)
  return report(workdir)


def _checked_cells(config, workdir, cells, quiet, check_fn) -> list[tuple]:
  """[(cell, its folder, its config)], every pool checked by `check_fn` once and every
  folder against its earlier config: a config clash, an unknown pool or a bad
  option stops the study before hours of work."""
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
  return todo


def _run_cell(cell, celldir, cfg, train_fn) -> str:
  """Trains one cell; "completed", or "failed" with the reason in its error.json."""
  os.makedirs(celldir, exist_ok=True)
  write_json(os.path.join(celldir, CELL_CONFIG_FILE), jsonable(cfg))
  logging.info("cell %s: training %s", cell.dirname, celldir)
  start = time.time()
  error_file = os.path.join(celldir, ERROR_FILE)
  try:
    train_fn(cfg, celldir)
  except Exception as e:  # pylint: disable=broad-except
    # Any failure of one cell (bad options, NaN loss, out of memory) is data
    # for the table; the other cells still run. Ctrl-C is not an Exception.
    message = f"{type(e).__name__}: {e}"
    logging.error("cell %s failed after %.0f s: %s", cell.dirname, time.time() - start, message)
    write_json(
      error_file, {"error": message, "traceback": traceback.format_exc(), "time": utc_now()}
    )
    return "failed"
  status = "completed" if is_complete(celldir) else "failed"
  if status == "failed":
    message = f"training returned without writing a completed {SUMMARY_FILE}"
    write_json(error_file, {"error": message, "traceback": "", "time": utc_now()})
  elif os.path.exists(error_file):
    os.remove(error_file)
  logging.info("cell %s done in %.0f s", cell.dirname, time.time() - start)
  return status


def _command_line(command):
  argv = list(sys.argv if command is None else command)
  if argv and os.path.basename(argv[0]) == "compare.py":  # How `-m` shows it.
    argv = ["python", "-m", "experiments.compare"] + argv[1:]
  return argv


def _record_study(workdir, config, cells, command):
  """study.json: what was run, how, and when; earlier commands kept in history."""
  path = os.path.join(workdir, STUDY_FILE)
  old = read_json(path) or {}
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
  write_json(
    path,
    {
      "command": shlex.join(argv),
      "argv": argv,
      "started_at": utc_now(),
      "finished_at": None,
      "config": jsonable(config),
      "cells": [dataclasses.asdict(c) | {"dir": os.path.join(CELLS_DIR, c.dirname)} for c in cells],
      "history": history,
    },
  )
