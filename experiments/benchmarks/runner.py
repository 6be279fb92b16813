"""The whole run: every case, dtype and pool, the training table, the files after each case."""

from __future__ import annotations

import functools
import json
import os
import sys

from experiments.benchmarks.cases import Case
from experiments.benchmarks.cases import public_pools
from experiments.benchmarks.harness import benchmark_case
from experiments.benchmarks.harness import calls_per_sample
from experiments.benchmarks.report import device_info
from experiments.benchmarks.report import to_markdown
from experiments.benchmarks.training import training_throughput


def _progress_bar(steps: list[str], shown: bool):
  """A tqdm bar on stderr over `steps` (hidden unless `shown`), and `done()`, which
  advances it and names the next step."""
  from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top

  bar = tqdm.tqdm(
    total=len(steps),
    desc="benchmark",
    unit="measurement",
    disable=not shown,
    dynamic_ncols=True,
    file=sys.stderr,
  )

  def done():
    bar.update(1)
    if bar.n < len(steps):
      bar.set_postfix_str(steps[bar.n])

  if steps:
    bar.set_postfix_str(steps[0])
  return bar, done


def _write(result: dict, workdir: str):
  """benchmark.json and benchmark.md of the result so far."""
  try:
    result["load_average_end"] = os.getloadavg()
  except OSError:
    pass
  with open(os.path.join(workdir, "benchmark.json"), "w") as f:
    json.dump(result, f, indent=1, default=str)
  with open(os.path.join(workdir, "benchmark.md"), "w") as f:
    f.write(to_markdown(result))


def run(config, workdir: str, log=print, progress_bar: bool = False) -> dict:
  """Run the whole benchmark and write benchmark.json / benchmark.md into `workdir`.

  `log(line)` reports each measurement as it is made; with `progress_bar`, a tqdm
  bar on stderr counts the measurements (the training table, then every pool of
  every case and dtype) and the lines are written above it.
  """
  os.makedirs(workdir, exist_ok=True)
  names, skipped = public_pools(tuple(config.pools))
  # The measurements in the order they are made; the bar names the one under way.
  steps = ["training"] * bool(config.training.enabled) + [
    f"{spec['name']} {dtype} {name}"
    for spec in config.cases
    for dtype in config.dtypes
    for name in names
  ]
  bar, done = _progress_bar(steps, progress_bar)
  if progress_bar:
    log = functools.partial(_write_above, bar)

  result = {
    "device": device_info(),
    "config": config.to_dict(),
    "pools": names,
    "calls_per_sample": calls_per_sample(config),
    "rows": [],
    "skipped": skipped,
  }
  log(f"device: {result['device']}")
  if config.training.enabled:  # first: it is the shortest, and the most asked-for
    result["training"] = training_throughput(config, log)
    done()
  else:
    result["training"] = {"skipped": "config.training.enabled is False"}
  if "skipped" in result["training"]:
    log(f"training benchmark skipped: {result['training']['skipped']}")
  for spec in config.cases:
    for dtype in config.dtypes:
      case = Case(dict(spec), dtype)
      log(f"{case.name} {case.shape} {dtype}")
      rows, skip = benchmark_case(case, names, config, log, done)
      result["rows"] += rows
      result["skipped"] += skip
      _write(result, workdir)  # after every case: a run that is stopped keeps its tables
  _write(result, workdir)
  bar.close()
  return result


def _write_above(bar, *parts, **unused_print_kwargs):
  """`print` for the log lines while the progress bar is shown: above the bar."""
  bar.write(" ".join(str(p) for p in parts), file=sys.stdout)
