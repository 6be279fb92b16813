"""The plots of a comparison study (experiments/compare.py), from its cells and rows.

- `curves`: test error per epoch, one panel per pool (mean over seeds, min-max
  band), the reference pool's curve in grey in every panel; the y-range is set by
  epochs 2 onward, so that the first epoch's high errors do not flatten the rest.
- `final`: final test error per pool (seeds as dots), the reference pool's mean as a
  vertical line, and each pool's paired 95% interval (experiments/stats.py) drawn
  around its mean: an interval that crosses the line is not distinguishable from
  the reference.
- `learned`: the learnt pool parameters (`learned/...` in metrics.jsonl) over
  epochs, one panel per pool, layer and quantity; each seed a thin line (its mean),
  with a light band from its min to its max.
- `regimes`: test error against training set size (log x) per pool, and the paired
  differences with the reference pool with their intervals.

`cells` and `rows` are `experiments.compare.load_cells` / `aggregate` output. Only
matplotlib (Agg) is needed, no JAX.
"""

from __future__ import annotations

import numpy as np


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  return plt


def palette(labels) -> dict:
  """label -> colour: tab10 for up to 9 labels, else tab20 (strong colours first);
  without their greys, which mark the reference pool."""
  plt = _pyplot()
  if len(labels) <= 9:
    colours = [plt.get_cmap("tab10")(i) for i in range(10) if i != 7]
  else:
    order = [i for i in list(range(0, 20, 2)) + list(range(1, 20, 2)) if i not in (14, 15)]
    colours = [plt.get_cmap("tab20")(i) for i in order]
  return {label: colours[i % len(colours)] for i, label in enumerate(labels)}


GREY = (0.55, 0.55, 0.55)


def test_curves(cells, labels):
  """label -> (epochs, mean, lo, hi) of test error in %, over completed seeds."""
  curves = {}
  for label in labels:
    runs = [
      c["metrics"]
      for c in cells
      if c["label"] == label and c["status"] == "completed" and c["metrics"]
    ]
    by_epoch = {}
    for run in runs:
      for m in run:
        if m.get("test_error") is not None:
          by_epoch.setdefault(int(m["epoch"]), []).append(100.0 * m["test_error"])
    if not by_epoch:
      continue
    epochs = sorted(by_epoch)
    vals = [np.asarray(by_epoch[e]) for e in epochs]
    curves[label] = (
      np.asarray(epochs),
      np.array([v.mean() for v in vals]),
      np.array([v.min() for v in vals]),
      np.array([v.max() for v in vals]),
    )
  return curves


def use_log_scale(values) -> bool:
  """Log scale when the plotted errors span more than a factor of 3."""
  values = np.asarray([v for v in values if v is not None and v > 0])
  return values.size > 0 and values.max() / values.min() > 3.0


def _grid(n, width=3.2, height=2.5, max_cols=4):
  plt = _pyplot()
  cols = max(1, min(max_cols, n))
  rows = max(1, -(-n // cols))
  fig, axes = plt.subplots(
    rows,
    cols,
    figsize=(max(7.0, 1.0 + width * cols), 1.0 + height * rows),
    layout="constrained",
    sharex=True,
    squeeze=False,
  )
  for ax in axes.flat[n:]:
    ax.set_visible(False)
  return fig, list(axes.flat[:n])


def curves(path, cells, rows, *, title=""):
  """curves.png: one panel per pool (rows' order), the reference in grey in each."""
  plt = _pyplot()
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top

  labels = [r["pool"] for r in rows]
  colour = palette(labels)
  reference = rows[0]["reference"] if rows else None
  data = test_curves(cells, labels)
  shown = [label for label in labels if label in data] or labels[:1]
  fig, axes = _grid(len(shown))
  # The y-range: epochs 2 onward where there are more than 2 epochs.
  values = []
  for epochs, _mean, lo, hi in data.values():
    keep = epochs >= 2 if epochs.max(initial=0) > 2 else np.ones_like(epochs, bool)
    values += list(lo[keep]) + list(hi[keep])
  log = use_log_scale(values)
  if values:
    vmin, vmax = min(values), max(values)
    pad = 0.08 * (vmax - vmin or vmax or 1.0)
    ylim = (max(vmin - pad, vmin / 1.3 if log else 0.0), vmax + pad)
  for ax, label in zip(axes, shown):
    if reference in data and label != reference:
      epochs, mean, lo, hi = data[reference]
      ax.plot(epochs, mean, color=GREY, lw=1.5, label=f"{reference} (reference)")
      ax.fill_between(epochs, lo, hi, color=GREY, alpha=0.2, lw=0)
    if label in data:
      epochs, mean, lo, hi = data[label]
      ax.plot(
        epochs, mean, color=colour[label], lw=2, marker="o" if len(epochs) <= 12 else None, ms=3
      )
      ax.fill_between(epochs, lo, hi, color=colour[label], alpha=0.25, lw=0)
      ax.set_title(f"{label}: {mean[-1]:.2f}%", fontsize=10)
      if label != reference and reference in data:
        ax.legend(loc="upper right", fontsize=7, frameon=False)
    else:
      ax.text(0.5, 0.5, "no completed cells", transform=ax.transAxes, ha="center")
    if values:
      ax.set_ylim(*ylim)
    if log:
      ax.set_yscale("log")
      ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
      ax.yaxis.set_minor_formatter(ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.grid(True, which="both", alpha=0.3)
  fig.supxlabel("epoch")
  fig.supylabel("test error (%)")
  fig.suptitle(
    f"MNIST test error per epoch{', ' + title if title else ''}: mean over seeds, band "
    f"min–max; grey: {reference}",
    fontsize=11,
  )
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def final(path, rows, *, title=""):
  """final.png: final test error per pool, reference mean as a vertical line, paired
  95% intervals around each pool's mean (dark where they exclude the reference)."""
  plt = _pyplot()

  labels = [r["pool"] for r in rows]
  colour = palette(labels)
  done = [r for r in rows if r["test_error_mean"] is not None]
  reference = rows[0]["reference"] if rows else None
  ref = next((r for r in done if r["pool"] == reference), None)
  fig, ax = plt.subplots(figsize=(8.5, max(2.8, 1.6 + 0.45 * len(done))), layout="constrained")
  y = np.arange(len(done))[::-1]  # Best on top.
  if ref is not None:
    ax.axvline(ref["test_error_mean"], color=GREY, lw=1.5, ls="--", zorder=0)
  for yi, r in zip(y, done):
    c = colour[r["pool"]]
    seeds = [float(v) for v in r["test_errors"].split()]
    ax.plot(seeds, [yi] * len(seeds), "o", color=c, ms=4, alpha=0.45)
    mean = r["test_error_mean"]
    # The interval is of the paired difference, so it sits at the reference's mean
    # plus that difference (the pool's mean when every seed is paired).
    centre = mean
    if ref is not None and r["diff_mean"] is not None:
      centre = ref["test_error_mean"] + r["diff_mean"]
    if r["pool"] == reference:
      text = f"{mean:.2f}%  (reference)"
    elif r["diff_low"] is not None:
      half = (r["diff_high"] - r["diff_low"]) / 2
      sure = r["distinguishable"] == "yes"
      ax.errorbar(
        centre,
        yi,
        xerr=half,
        fmt="none",
        ecolor="k" if sure else GREY,
        capsize=4,
        lw=2.2 if sure else 1.4,
      )
      text = f"{mean:.2f}%  Δ {r['diff_mean']:+.2f} [{r['diff_low']:+.2f}, {r['diff_high']:+.2f}]"
    else:
      text = f"{mean:.2f}%"
    ax.plot([mean], [yi], "s", color=c, ms=8, mec="k", mew=0.6)
    ax.annotate(
      text, (mean, yi), xytext=(0, 8), textcoords="offset points", ha="center", fontsize=8
    )
    if r.get("paper_test_error") is not None:
      ax.plot([r["paper_test_error"]], [yi], "D", mfc="white", mec="k", ms=7)
  ax.set_yticks(y, [r["pool"] for r in done])
  ax.set_ylim(-0.7, len(done) - 0.2)
  ax.margins(x=0.2)
  ax.set_xlabel("final test error (%)")
  failed = [r["pool"] for r in rows if r["test_error_mean"] is None]
  ax.set_title(
    f"Final MNIST test error{', ' + title if title else ''}: squares mean, dots seeds; "
    f"dashed: {reference}'s mean;\nbars: paired 95% interval of the difference with "
    f"{reference} (black: excludes 0)" + (f"\nno result: {', '.join(failed)}" if failed else ""),
    fontsize=9,
  )
  ax.grid(True, axis="x", alpha=0.3)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def learned_series(cells):
  """{(pool, layer, quantity): [(seed, epochs, mean, min, max)]} from `learned/` keys."""
  out = {}
  for c in cells:
    if c["status"] not in ("completed", "pending", "failed") or not c["metrics"]:
      continue
    groups = {}
    for m in c["metrics"]:
      for key, value in m.items():
        parts = key.split("/")
        if parts[0] != "learned" or len(parts) != 4:
          continue
        _, layer, quantity, stat = parts
        groups.setdefault((layer, quantity), {}).setdefault(stat, {})[int(m["epoch"])] = value
    for (layer, quantity), stats in groups.items():
      epochs = sorted(stats.get("mean", {}))
      if not epochs:
        continue
      get = lambda s, stats=stats, epochs=epochs: np.array(  # noqa: E731
        [stats.get(s, {}).get(e, np.nan) for e in epochs], float
      )
      out.setdefault((c["label"], layer, quantity), []).append(
        (c["seed"], np.asarray(epochs), get("mean"), get("min"), get("max"))
      )
  return out


_QUANTITY = {
  "alpha": "α (max weight)",
  "gate": "gate output on test set",
  "leaf_norm": "leaf filter norm",
  "gate_norm": "gate filter norm",
  "p": "p",
}


def learned(path, cells, *, title=""):
  """learned.png; returns None (and writes nothing) without learnt parameters."""
  series = learned_series(cells)
  if not series:
    return None
  plt = _pyplot()
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top

  pools = sorted({k[0] for k in series})
  colour = palette(pools)
  keys = sorted(series)
  fig, axes = _grid(len(keys), width=3.3, height=2.4)
  for ax, key in zip(axes, keys):
    pool, layer, quantity = key
    for _seed, epochs, mean, lo, hi in series[key]:
      ax.plot(epochs, mean, color=colour[pool], lw=0.9, alpha=0.9, marker=".", ms=3)
      ax.fill_between(epochs, lo, hi, color=colour[pool], alpha=0.1, lw=0)
    if quantity in ("alpha", "gate"):
      ax.axhline(0.5, color=GREY, lw=0.8, ls=":")  # The even mix they start from.
    layer_text = "" if layer == "pool" else f" ({layer})"
    ax.set_title(f"{pool}{layer_text}: {_QUANTITY.get(quantity, quantity)}", fontsize=9)
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
  fig.supxlabel("epoch")
  start = any(k[2] in ("alpha", "gate") for k in keys)
  fig.suptitle(
    f"Learnt pool parameters{', ' + title if title else ''}\nthin lines: seeds (mean "
    "over the layer), bands: min–max" + ("; dotted: 0.5, the start" if start else ""),
    fontsize=9,
  )
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def regimes(path, groups, *, title=""):
  """regimes.png from `[(train size, rows)]`: error vs size and paired differences."""
  plt = _pyplot()
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top

  labels = []
  for _, rows in groups:
    labels += [r["pool"] for r in rows if r["pool"] not in labels]
  colour = palette(labels)
  reference = groups[0][1][0]["reference"] if groups and groups[0][1] else None
  fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2), layout="constrained")
  sizes = np.array([size for size, _ in groups], float)
  offsets = np.linspace(-0.06, 0.06, max(1, len(labels) - 1))  # Dodge in log10 units.
  others = [label for label in labels if label != reference]
  for label in labels:
    xs, means, los, his = [], [], [], []
    dx, dm, dl, dh = [], [], [], []
    for size, rows in groups:
      r = next((r for r in rows if r["pool"] == label), None)
      if r is None or r["test_error_mean"] is None:
        continue
      seeds = [float(v) for v in r["test_errors"].split()]
      xs.append(size)
      means.append(r["test_error_mean"])
      los.append(min(seeds))
      his.append(max(seeds))
      if r["diff_low"] is not None:
        shift = 10 ** offsets[others.index(label) % len(offsets)]
        dx.append(size * shift)
        dm.append(r["diff_mean"])
        dl.append(r["diff_mean"] - r["diff_low"])
        dh.append(r["diff_high"] - r["diff_mean"])
    c = GREY if label == reference else colour[label]
    if xs:
      left.plot(
        xs,
        means,
        marker="o",
        color=c,
        lw=2.2 if label == reference else 1.6,
        label=label + (" (reference)" if label == reference else ""),
      )
      left.fill_between(xs, los, his, color=c, alpha=0.12, lw=0)
    if dx:
      right.errorbar(dx, dm, yerr=[dl, dh], marker="o", color=c, capsize=3, lw=1.4, label=label)
  right.axhline(0.0, color=GREY, lw=1.5, ls="--")
  for ax in (left, right):
    ax.set_xscale("log")
    ax.set_xticks(sizes, [f"{int(s):,}" for s in sizes])
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel("training images")
    ax.grid(True, which="both", alpha=0.3)
  left.set_yscale("log")
  left.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
  left.yaxis.set_minor_formatter(ticker.FormatStrFormatter("%g"))
  left.set_ylabel("final test error (%)")
  left.set_title("final test error: mean over seeds, band min–max", fontsize=10)
  left.legend(fontsize=8, frameon=False)
  right.set_ylabel(f"test error − {reference}'s (pp)")
  right.set_title(
    f"paired difference with {reference}: mean and 95% interval over seeds\n"
    "(below 0: better than the reference)",
    fontsize=10,
  )
  right.legend(fontsize=8, frameon=False, ncol=2)
  fig.suptitle(f"MNIST test error against training set size{', ' + title if title else ''}")
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
