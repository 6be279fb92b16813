"""The benchmark's report: the device it ran on and the Markdown tables."""

from __future__ import annotations

import os
import platform
import sys

import jax

from experiments import allocator
from experiments.benchmarks.harness import ratio
from experiments.benchmarks.torch_kernels import torch_device
from experiments.benchmarks.training import MATMUL_SIZE


def device_info() -> dict:
  dev = jax.devices()[0]
  cpu = platform.processor() or ""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  try:
    load = os.getloadavg()
  except OSError:
    load = None
  return {
    "platform": dev.platform,
    "device_kind": dev.device_kind,
    "device_count": jax.device_count(),
    "cpu_model": cpu,
    "cpu_count": os.cpu_count(),
    "load_average": load,
    "jax": jax.__version__,
    "python": sys.version.split()[0],
    "torch_device": torch_device(),
    "malloc": allocator.describe(),
  }


def _fmt(v, digits=2, suffix=""):
  return "" if v is None else f"{v:.{digits}f}{suffix}"


def table_row(cells) -> str:
  """One Markdown table row; a `|` inside a cell (e.g. the baseline label
  `naive (sum|x|^3)^(1/3)`) is escaped, else it would split the cell in two."""
  return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _intro(result: dict) -> list[str]:
  """The title, the machine and how the numbers were measured."""
  d = result["device"]
  return [
    "# jaxpool benchmark",
    "",
    f"Device: {d['platform']} / {d['device_kind']} x{d['device_count']}; CPU: "
    f"{d['cpu_model']} ({d['cpu_count']} cores); jax {d['jax']}. "
    f"Load average at start/end: {d.get('load_average')} / "
    f"{result.get('load_average_end')}. malloc: {d.get('malloc', 'default')} "
    "(experiments/allocator.py).",
    "",
    f"Medians of interleaved rounds (experiments/timing.py), each timed call "
    f"after {result['config'].get('settle', 0)} untimed ones of the same candidate, "
    f"milliseconds per call ({result.get('calls_per_sample', 1)} back-to-back calls "
    f"per timed sample). PyTorch on {d.get('torch_device', 'cpu')}, in rounds of its "
    "own beside jaxpool's fwd+bwd (`x torch` compares those two). "
    "`xN` = baseline time / jaxpool time (higher is better); `/roof` = jaxpool "
    "fwd+bwd time / a streaming pass over the same bytes; `/max` = fwd+bwd time / "
    "jaxpool max_pool fwd+bwd on the same case.",
    "",
  ]


def _pool_row(r: dict) -> str:
  """One pool's row of a case's table (`harness.benchmark_case`'s row)."""
  return table_row(
    [
      r["pool"],
      _fmt(r["fwd_ms"]),
      _fmt(r["fwd_bwd_ms"]),
      r["baseline"],
      _fmt(r["base_fwd_ms"]),
      _fmt(r["base_fwd_bwd_ms"]),
      _fmt(r["speedup_vs_baseline_fwd"], 1, "x"),
      _fmt(r["speedup_vs_baseline_fwd_bwd"], 1, "x"),
      _fmt(r["torch_fwd_ms"]),
      _fmt(r["torch_fwd_bwd_ms"]),
      _fmt(r["speedup_vs_torch_fwd_bwd"], 2, "x"),
      _fmt(r["roof_fwd_bwd_ms"]),
      _fmt(r["over_roofline_fwd_bwd"], 2),
      _fmt(r["fwd_bwd_over_max_pool"], 2),
    ]
  )


def _case_tables(rows: list[dict]) -> list[str]:
  """A section per case and dtype: a row per pool."""
  by_case: dict[tuple, list] = {}
  for r in rows:
    by_case.setdefault((r["case"], str(r["shape"]), r["dtype"]), []).append(r)
  lines = []
  for (case, shape, dtype), case_rows in by_case.items():
    r0 = case_rows[0]
    lines += [
      f"## {case} {shape} window {r0['window']} strides {r0['strides']} "
      f"padding {r0['padding']}, {dtype}",
      "",
      "| pool | fwd | fwd+bwd | baseline | base fwd | base fwd+bwd | x fwd | "
      "x fwd+bwd | torch fwd | torch fwd+bwd | x torch | roof fwd+bwd | /roof | /max |",
      "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
      *(_pool_row(r) for r in case_rows),
      "",
    ]
  return lines


def _training_table(tr: dict) -> list[str]:
  """images/s of every model of the training table, and its ratio to Keras."""
  keras = tr.get("keras images/s")
  lines = ["| model | images/s | / keras |", "|---|---:|---:|"]
  for k, v in tr.items():
    if k.endswith("images/s") and not k.startswith("pool "):
      name = k[: -len(" images/s")]
      if name == "keras":
        name = f"keras (fastest: {tr.get('keras_best')})"
      lines.append(table_row([name, f"{v:.0f}", _fmt(ratio(v, keras), 2, "x")]))
  return lines


def _pool_table(tr: dict) -> list[str]:
  """The seed CNN with each pool of `config.training.pools`: images/s and time per
  epoch over max's, same rounds."""
  over_max = tr.get("pool_time_over_max")
  if not over_max:
    return []
  gflop = tr.get("pool_gflop_per_step", {})
  rate = tr.get("pool_gflop_per_s", {})
  lines = [
    "",
    "Each pool in the seed CNN's slot (the comparison study's options), same rounds:",
    "",
    "| pool | images/s | time / max | GFLOP / step | GFLOP/s |",
    "|---|---:|---:|---:|---:|",
  ]
  for name, r in over_max.items():
    lines.append(
      table_row(
        [
          f"`{name}`",
          f"{tr[f'pool {name} images/s']:.0f}",
          f"{r:.2f}",
          _fmt(gflop.get(name), 3, ""),
          _fmt(rate.get(name), 1, ""),
        ]
      )
    )
  if tr.get("matmul_gflop_per_s"):
    lines += [
      "",
      "GFLOP per step: XLA's cost analysis of the compiled step (forward, backward, "
      f"adam). Float32 {MATMUL_SIZE}x{MATMUL_SIZE} matmul in the same rounds: "
      f"{tr['matmul_gflop_per_s']:.1f} GFLOP/s.",
    ]
  return lines


def _training_section(tr: dict) -> list[str]:
  """The training table, its ratios and how the Keras side was run."""
  lines = ["## Training throughput (seed_cnn, adam)", ""]
  if "skipped" in tr:
    return lines + [f"Skipped: {tr['skipped']}"]
  lines += _training_table(tr)
  lines += _pool_table(tr)
  lines.append("")
  lines.append(
    f"jaxpool / flax: {_fmt(tr.get('jaxpool_over_flax'), 2, 'x')}"
    + (
      f"; jaxpool / keras: {_fmt(tr.get('jaxpool_over_keras'), 2, 'x')}"
      f"; flax / keras: {_fmt(tr.get('flax_over_keras'), 2, 'x')}"
      if tr.get("jaxpool_over_keras")
      else f"; keras: {tr.get('keras', '')}"
    )
  )
  run = tr.get("keras_run")
  if run:
    rounds = next(iter(tr.get("timings", {}).values()), {}).get("repeats")
    lines += [
      "",
      f"Batch {tr.get('batch_size')}, {tr.get('steps_per_call')} steps per timed "
      "call. JAX: one jitted `lax.scan` per call, jaxpool and flax interleaved. "
      f"Keras {run.get('keras')} on TensorFlow {run.get('tensorflow')} (python "
      f"{run.get('python')}, threads {run.get('threads')}), in a subprocess "
      "(experiments/keras_throughput.py) that runs one round of its variants "
      "after each JAX round: one epoch of "
      f"{run.get('steps_per_call')} steps per timed call, after "
      f"{run.get('settle')} untimed. Medians of {rounds} rounds.",
    ]
  return lines


def _skipped_section(skipped: list[dict]) -> list[str]:
  """Every pool that was not timed, where and why."""
  if not skipped:
    return []
  lines = ["## Skipped", ""]
  for s in skipped:
    where = f" ({s['case']}, {s['dtype']})" if "case" in s else ""
    lines.append(f"- {s['pool']}{where}: {s['reason']}")
  return lines + [""]


def to_markdown(result: dict) -> str:
  """benchmark.md: the machine, a table per case and dtype, the training table and
  what was skipped."""
  lines = _intro(result)
  lines += _case_tables(result["rows"])
  lines += _training_section(result.get("training", {}))
  lines.append("")
  lines += _skipped_section(result["skipped"])
  return "\n".join(lines)
