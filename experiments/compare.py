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

This module is the command line and re-exports the study's API; the pieces are in
experiments/comparison/ (its __init__ lists them).
"""

from __future__ import annotations

import os
import sys

import ml_collections
from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import cli
from experiments import plugins
from experiments.comparison.files import METRICS_FILE
from experiments.comparison.files import load_cells
from experiments.comparison.files import read_metrics
from experiments.comparison.report import report
from experiments.comparison.report import write_tables
from experiments.comparison.results import aggregate
from experiments.comparison.results import budget
from experiments.comparison.sweep import Cell
from experiments.comparison.sweep import cell_config
from experiments.comparison.sweep import check_cell
from experiments.comparison.sweep import plan
from experiments.comparison.sweep import run_study
from experiments.comparison.sweep import study_plugins
from experiments.comparison.sweep import train_and_evaluate

# The study's API, for experiments.gpu_study and the tests (experiments/comparison/).
__all__ = [
  "METRICS_FILE",
  "Cell",
  "aggregate",
  "budget",
  "cell_config",
  "check_cell",
  "check_study",
  "define_flags",
  "failures",
  "load_cells",
  "main",
  "plan",
  "report",
  "run_study",
  "study_plugins",
  "train_and_evaluate",
  "write_tables",
  "read_metrics",
]


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


def _run(config, flag_values):
  """Loads the study's plugins, checks its config and runs it into --workdir."""
  if config is None:
    raise app.UsageError("--config is required, e.g. --config=configs/compare.py")
  # Users' pools (a PluginError names a module that fails), before the study's
  # pools are checked and resolved.
  plugins.load(study_plugins(config))
  check_study(config)
  run_study(
    config,
    flag_values.workdir,
    quiet=flag_values.quiet or bool(config.get("quiet")),
    # This module's names, looked up now: tests swap them here.
    train_fn=train_and_evaluate,
    check_fn=check_cell,
  )


def _print_tables(workdir):
  """The tables of results.md and its `Cells:` line, for the terminal."""
  with open(os.path.join(workdir, "results.md")) as f:
    text = f.read()
  print(
    "\n".join(
      line for line in text.splitlines() if line.startswith("|") or line.startswith("Cells:")
    )
  )
  print(f"\nresults: {os.path.join(workdir, 'results.md')}")


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
    _run(flag_values.config, flag_values)
  _print_tables(workdir)
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
