"""results.md: the generated summary, the tables of each regime, plots, failures, config."""

from __future__ import annotations

import json
import math

from experiments import cli
from experiments.comparison.files import ERROR_FILE
from experiments.comparison.results import _regime_groups
from experiments.comparison.results import budget
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
