"""A study's folder on disk: the file names, JSON written atomically, the cells read back."""

from __future__ import annotations

import datetime
import json
import os

STUDY_FILE = "study.json"
CELL_CONFIG_FILE = "cell.json"
ERROR_FILE = "error.json"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
CELLS_DIR = "cells"


def jsonable(value):
  """A JSON-friendly copy of a ConfigDict / dict / tuple tree."""
  if hasattr(value, "to_json_best_effort"):
    return json.loads(value.to_json_best_effort(sort_keys=True))
  return json.loads(json.dumps(value, default=str, sort_keys=True))


def read_json(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (FileNotFoundError, json.JSONDecodeError):
    return None


def write_json(path, obj):
  """Writes atomically: a reader never sees half a file."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=str)
    f.write("\n")
  os.replace(tmp, path)


def utc_now():
  return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def is_complete(celldir: str) -> bool:
  summary = read_json(os.path.join(celldir, SUMMARY_FILE))
  return bool(summary and summary.get("completed"))


def read_metrics(path):
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
  study = read_json(os.path.join(workdir, STUDY_FILE))
  if study is None:
    raise FileNotFoundError(
      f"no {STUDY_FILE} in {workdir!r}: run the study first (without "
      "--report-only), or point --workdir at a study folder"
    )
  cells = []
  for c in study["cells"]:
    celldir = os.path.join(workdir, c["dir"])
    summary = read_json(os.path.join(celldir, SUMMARY_FILE))
    error = read_json(os.path.join(celldir, ERROR_FILE))
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
        metrics=read_metrics(os.path.join(celldir, METRICS_FILE)),
        regime=c.get("regime", ""),
        overrides=c.get("overrides", {}),
      )
    )
  return study, cells
