"""results.md: the generated summary, the tables of each regime, plots, failures, config."""

from __future__ import annotations

import json
import math

from experiments import cli
from experiments.comparison.files import ERROR_FILE
from experiments.comparison.results import budget
from experiments.comparison.results import regime_groups
from experiments.comparison.results import regimes_of_study
from experiments.comparison.results import summary_paragraph


def _fmt(v, digits=2):
  if v is None or (isinstance(v, float) and not math.isfinite(v)):
    return "–"
  return f"{v:.{digits}f}"


def _fmt_int(v):
  return "–" if v is None else f"{v:,.0f}"


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


def _table_head(header) -> list[str]:
  """A markdown table's header row and its rule: the first column left-aligned."""
  return [
    "| " + " | ".join(header) + " |",
    "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
  ]


def _error_text(r) -> str:
  """`mean ± std` of a row's final test error, "–" without one."""
  if r is None or r["test_error_mean"] is None:
    return "–"
  std = f" ± {_fmt(r['test_error_std'])}" if r["test_error_std"] is not None else ""
  return _fmt(r["test_error_mean"]) + std


def _test_text(r) -> str:
  """The test-error cell of the pool table: "failed" / "pending" without a result."""
  if r["test_error_mean"] is None:
    return "failed" if r["seeds_failed"] else "pending"
  return _error_text(r)


def _best_text(r) -> str:
  best = _fmt(r["best_test_error_mean"])
  if r["best_epochs"]:
    best += f" @ {r['best_epochs'].replace(' ', ', ')}"
  return best


def _seeds_text(r) -> str:
  pending = f" ({r['seeds_pending']} pending)" if r["seeds_pending"] else ""
  return f"{r['seeds_completed']} / {r['seeds_failed']}{pending}"


def _pool_table(rows) -> list[str]:
  """The markdown table of one regime's rows."""
  has_paper = any(r["paper_test_error"] is not None for r in rows)
  reference = rows[0]["reference"] if rows else "max"
  header = ["Pool", "Test error (%)", f"Δ vs `{reference}` (pp) [95% CI]"]
  header += ["Paper (%)"] * has_paper
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
  out = _table_head(header)
  for r in rows:
    cols = [f"`{r['pool']}`", _test_text(r), _diff_text(r)]
    cols += [_fmt(r["paper_test_error"])] * has_paper
    cols += [
      _best_text(r),
      _fmt(r["train_error_mean"]),
      _fmt(r["gap_mean"]),
      _fmt(r["seconds_per_epoch"], 1),
      _fmt_int(r["images_per_second"]),
      " ".join(f"{int(p):,}" for p in r["num_params"].split()) or "–",
      r["backend_device"] or "–",
      _seeds_text(r),
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


def _regime_row(pool, names, by) -> str:
  """One pool's row of the pool x regime table: its errors, then its differences."""
  found = [by.get((n, pool)) for n in names]
  cols = [f"`{pool}`"] + [_error_text(r) for r in found]
  cols += ["–" if r is None else _diff_text(r) for r in found]
  return "| " + " | ".join(cols) + " |"


def _regimes_table(groups) -> list[str]:
  """Pool x regime: final test error and the paired difference."""
  names = [g[0] for g in groups]
  rows = [r for _, _, group in groups for r in group]
  by = {(r["regime"], r["pool"]): r for r in rows}
  reference = groups[0][2][0]["reference"] if groups and groups[0][2] else "max"
  header = ["Pool"] + [f"{n}: error (%)" for n in names] + [f"{n}: Δ (pp)" for n in names]
  out = _table_head(header)
  out += [_regime_row(pool, names, by) for pool in dict.fromkeys(r["pool"] for r in rows)]
  out += [
    "",
    f"Δ: final test error minus `{reference}`'s, paired by seed, mean and 95% "
    "Student-t interval over seeds; * marks an interval that excludes 0.",
  ]
  return out


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


def _header(study, cells, rows, groups, with_regimes) -> list[str]:
  """The title, the generated summary (per regime), the command and the sweep."""
  config = study["config"]
  base = config.get("base", {})
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
  seeds = config.get("seeds", [])
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
  n = {s: sum(c["status"] == s for c in cells) for s in ("completed", "failed", "pending")}
  out.append(f"Cells: {n['completed']} completed, {n['failed']} failed, {n['pending']} pending.")
  out.append("")
  return out


def _plot_links(cells, regime: str = "") -> list[str]:
  """The image links of a study's (or one regime's) plots; learned.png only where a
  pool of it learns parameters."""
  out = []
  for kind, alt in _PLOTS:
    if kind != "learned" or any(_learned_keys(c) for c in cells):
      out += [f"![{alt}]({plot_name(kind, regime)})", ""]
  return out


def _regime_sections(study, cells, groups) -> list[str]:
  """The pool x regime table, then each regime's budget, table and plots."""
  base = study["config"].get("base", {})
  out = ["## Test error by training set size", ""]
  out += _regimes_table(groups)
  out += ["", "![test error against training set size](regimes.png)", ""]
  for name, overrides, group in groups:
    out += [f"## {name}: {budget(base, overrides)}", ""]
    out += _pool_table(group)
    out += [""]
    out += _plot_links([c for c in cells if c["regime"] == name], name)
  return out + [_TABLE_NOTE, ""]


def _study_section(study, cells, rows) -> list[str]:
  """The pool table of a study without regimes, its note and its plots."""
  config = study["config"]
  out = _pool_table(rows)
  out += ["", _TABLE_NOTE]
  if config.get("paper_reference") and any(r["paper_test_error"] is not None for r in rows):
    out.append(f"Paper: {config['paper_reference']}.")
  out.append("")
  return out + _plot_links(cells)


def _bullets(title: str, lines: list[str]) -> list[str]:
  """A `## title` section of bullet `lines`; nothing without lines."""
  return [f"## {title}", "", *(f"- {line}" for line in lines), ""] if lines else []


def _footer(study, cells, rows) -> list[str]:
  """Failed cells, excluded pools, each pool's options, the config, earlier commands."""
  config = study["config"]
  failed = [
    f"`{c['dir']}`: {cli.squeeze(c['error'], 160)} (traceback in `{c['dir']}/{ERROR_FILE}`)"
    for c in cells
    if c["status"] == "failed"
  ]
  excluded = sorted((config.get("excluded") or {}).items())
  first = {}
  for r in rows:
    first.setdefault(r["pool"], r)
  options = [
    f"`{pool}`: `registry.make({first[pool]['registry_name']!r}, **{first[pool]['options']})`"
    for pool in sorted(first)
  ]
  out = _bullets("Failed cells", failed)
  out += _bullets("Registry pools not in this sweep", [f"`{n}`: {why}" for n, why in excluded])
  out += ["## Options of each pool", "", *(f"- {line}" for line in options)]
  out += ["", "## Config", "", "```json", json.dumps(config, indent=2, sort_keys=True), "```", ""]
  history = [f"`{h['command']}` ({h.get('started_at')})" for h in study.get("history") or ()]
  return out + _bullets("Earlier commands on this workdir", history)


def markdown(study, cells, rows) -> str:
  """The results.md text: generated summary, table(s), plots, failures, exclusions,
  command, config."""
  groups = [
    (name, o, [r for r in rows if r["regime"] == name])
    for name, o, _ in regime_groups(study, cells)
  ]
  with_regimes = bool(regimes_of_study(study))
  out = _header(study, cells, rows, groups, with_regimes)
  if with_regimes:
    out += _regime_sections(study, cells, groups)
  else:
    out += _study_section(study, cells, rows)
  out += _footer(study, cells, rows)
  return "\n".join(out)
