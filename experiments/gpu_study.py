r"""The Zeiler & Fergus study in a fixed time: probe runs, then the report.

`scripts/gpu_study.sh` drives it; the two steps it takes from here:

    # Time one short run of every pool (and one pool at a second length).
    python -m experiments.gpu_study --mode=probe \
        --config=configs/compare.py:zeiler_fergus,paper,platform=gpu \
        --workdir=/tmp/probe --out=probe.json
    # After `experiments.compare` has run the study: the report beside the paper.
    python -m experiments.gpu_study --mode=report --workdir=runs/zf --probe=probe.json \
        --out=zeiler_fergus_report.md

`--mode=preflight` first runs one training step of each pool (seconds), so that a
jax/flax mismatch on the machine shows before any budget is spent.

The probe trains seed 0 of every pool of the study config, for 1, 2 and 3 epochs
(`--probe_epochs`, one count per pool: three compilations, and lengths that
separate per-epoch from per-cell costs), each in its own folder, timing each
`experiments.train.train_and_evaluate` call; `probe.json`
holds those timings (`experiments.budget` fits its cost model to them) and the
software and device that ran them.

The report puts each pool's final test error (mean ± sample std over seeds) beside
the paper's, with the paired difference to max pooling over the seeds both
completed: mean and 95% Student-t interval of `err(pool, seed) - err(max, seed)`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Sequence

_T0 = time.perf_counter()

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from experiments import cli  # noqa: E402
from experiments import stats  # noqa: E402

# ----------------------------------------------------------------------------- probe


def _software():
  import flax  # noqa: PLC0415
  import jax  # noqa: PLC0415
  import optax  # noqa: PLC0415

  devices = jax.devices()
  return {
    "python": sys.version.split()[0],
    "platform": platform.platform(),
    "jax": jax.__version__,
    "flax": flax.__version__,
    "optax": optax.__version__,
    "backend": jax.default_backend(),
    "device_kind": devices[0].device_kind,
    "device_count": len(devices),
  }


def probe(config, workdir: str, *, epochs: Sequence[int]) -> dict:
  """Times seed 0 of every pool of `config` (a configs/compare.py study config), the
  i-th pool for `epochs[i]` epochs (the lengths must differ somewhere, so that
  `experiments.budget.fit` can tell per-epoch from per-cell costs)."""
  from experiments import compare  # noqa: PLC0415
  from experiments import data as data_lib  # noqa: PLC0415
  from experiments import train  # noqa: PLC0415

  labels = list(config.pools.keys())
  if len(epochs) != len(labels) or min(epochs) < 1 or len(set(epochs)) < 2:
    raise ValueError(
      f"gpu_study.probe: epochs must give each of the pools {labels} a count >= 1, "
      f"not all equal; got {list(epochs)}"
    )
  data_lib.load(config.base.data)  # Loaded once, cached for every run below.
  # What a training process imports once, on its first run: start-up, not a cell's.
  import orbax.checkpoint  # noqa: F401, PLC0415
  import tensorboardX  # noqa: F401, PLC0415
  import tqdm  # noqa: F401, PLC0415

  software = _software()
  start_s = time.perf_counter() - _T0
  first = {c.label: c for c in compare.plan(config) if c.seed == config.seeds[0]}
  runs = []
  for label, n in zip(labels, epochs):
    cfg = compare.cell_config(config, first[label], quiet=True)
    cfg.num_epochs = n
    rundir = os.path.join(workdir, f"{label}-epochs{n}")
    t = time.perf_counter()
    summary = train.train_and_evaluate(cfg, rundir)
    wall = time.perf_counter() - t
    metrics = compare.read_metrics(os.path.join(rundir, compare.METRICS_FILE))
    runs.append(
      {
        "pool": label,
        "epochs": n,
        "wall_s": wall,
        "compile_s": summary["compile_seconds"],
        "epoch_seconds": [m["seconds"] for m in metrics],
        "images_per_second": summary["images_per_second"],
        "test_error": summary["final_test_error"],
      }
    )
    print(
      f"probe {label} x {n} epochs: {wall:.1f} s (compile {summary['compile_seconds']:.1f} s, "
      f"{summary['seconds_per_epoch']:.2f} s/epoch, {summary['images_per_second']:,.0f} images/s)",
      flush=True,
    )
  return {
    "start_s": start_s,
    "runs": runs,
    "software": software,
    "base": json.loads(config.base.to_json_best_effort()),
  }


def preflight(pools, *, expect_backend: str | None = None) -> dict:
  """Seconds-cheap check that this interpreter's jax, flax, optax, orbax and
  tensorboardX run the study: one jitted loss-and-gradient step of the Zeiler &
  Fergus network with each pool (train mode), one evaluation (eval mode), on 8
  random images, and a checkpoint saved and restored as every epoch does.

  Raises:
    RuntimeError: JAX runs on another backend than `expect_backend`, or a pool's
      step gives a non-finite loss.
  """
  import jax  # noqa: PLC0415
  import jax.numpy as jnp  # noqa: PLC0415
  import optax  # noqa: PLC0415
  from flax import nnx  # noqa: PLC0415

  from experiments import models  # noqa: PLC0415

  software = _software()
  if expect_backend and software["backend"] != expect_backend:
    raise RuntimeError(
      f"gpu_study.preflight: JAX runs on {software['backend']!r} ({jax.devices()}), "
      f"expected {expect_backend!r}: this interpreter's jaxlib has no plugin for it"
    )
  x = jax.random.uniform(jax.random.key(0), (8, 28, 28, 1))
  y = jnp.arange(8) % 10
  for pool in pools:
    model = models.build_model(
      "zeiler_fergus", pool=pool, pool_options=None, rngs=nnx.Rngs(params=0, pooling=1)
    )

    @nnx.jit
    def step(m):
      def loss_fn(m):
        return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

      return nnx.value_and_grad(loss_fn)(m)

    model.train()
    loss, _ = step(model)
    model.eval()
    logits = nnx.jit(lambda m: m(x))(model)
    if not (bool(jnp.isfinite(loss)) and bool(jnp.isfinite(logits).all())):
      raise RuntimeError(f"gpu_study.preflight: pool {pool!r} gives a non-finite loss or logits")
    print(f"preflight {pool}: loss {float(loss):.4f}", flush=True)
  # The checkpoint and log writers of every epoch, on this machine's versions.
  import tempfile  # noqa: PLC0415

  from tensorboardX import SummaryWriter  # noqa: PLC0415

  from experiments import checkpoints as checkpoints_lib  # noqa: PLC0415
  from experiments import train  # noqa: PLC0415

  with tempfile.TemporaryDirectory() as tmp:
    _, params, rest = nnx.split(model, nnx.Param, ...)  # As the trainer's state.
    state = {"params": params, "rest": rest, "opt_state": optax.adam(1e-3).init(params)}
    state = train._to_storable(state)  # as the trainer saves it: keys as their raw data
    checkpoints = checkpoints_lib.Checkpoints(os.path.join(tmp, "checkpoints"), keep=1)
    checkpoints.save(1, state, [{"epoch": 1}])
    restored = checkpoints.restore_latest(state)
    checkpoints.close()
    history = None if restored is None else restored[2]
    writer = SummaryWriter(os.path.join(tmp, "tensorboard"))
    writer.add_scalar("loss", float(loss), 1)
    writer.close()
  if history != [{"epoch": 1}]:
    raise RuntimeError(f"gpu_study.preflight: checkpoint history came back as {history}")
  print("preflight checkpoints and tensorboard: ok", flush=True)
  return software


# ----------------------------------------------------------------------------- report


def _fmt(v, digits=2):
  return "–" if v is None else f"{v:.{digits}f}"


def _interval(d: stats.PairedDifference) -> str:
  if d.mean is None:
    return "–"
  text = f"{d.mean:+.2f}"
  if d.half_width is not None:
    text += f" [{d.low:+.2f}, {d.high:+.2f}]"
  return text + f" (n={d.n})"


def report_markdown(workdir: str, *, probe: dict | None = None, run: dict | None = None) -> str:
  """The study report (see the module docstring); `run` holds what the script knows:
  `title`, `command`, `study_command`, `budget_s`, `epochs`, `predicted_s`,
  `study_wall_s`, `script_wall_s`, `note` (all optional)."""
  from experiments import compare  # noqa: PLC0415

  run = run or {}
  study, cells = compare.load_cells(workdir)
  rows = {r["pool"]: r for r in compare.aggregate(study, cells)}
  config = study["config"]
  base = config.get("base", {})
  paper = config.get("paper_test_error") or {}
  per_seed = {}
  for c in cells:
    if c["status"] == "completed":
      per_seed.setdefault(c["label"], {})[int(c["seed"])] = 100.0 * c["summary"]["final_test_error"]
  summaries = [c["summary"] for c in cells if c["status"] == "completed"]
  device = summaries[0].get("device_kind", "?") if summaries else "?"
  backend = summaries[0].get("backend", "?") if summaries else "?"

  out = [f"# {run.get('title') or 'Zeiler & Fergus (2013) on MNIST'}", ""]
  if run.get("note"):
    out += [run["note"], ""]
  if run.get("command"):
    out.append(f"Script: `{run['command']}`  ")
  out.append(f"Study: `{study['command']}`  ")
  out.append(
    f"Device: {backend} / {device}; started {study.get('started_at')}, finished "
    f"{study.get('finished_at') or '(not finished)'}."
  )
  out.append("")
  order = [p for p in ("avg", "max", "stochastic") if p in rows] + [
    p for p in rows if p not in ("avg", "max", "stochastic")
  ]
  out += [
    "| Pool | Test error (%), mean ± std | Seeds | Per seed (%) | Paper (%) "
    "| Minus max (pp), paired mean [95% CI] | Best (%) | Train error (%) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for pool in order:
    r = rows[pool]
    test = _fmt(r["test_error_mean"])
    if r["test_error_std"] is not None:
      test += f" ± {_fmt(r['test_error_std'])}"
    seeds = per_seed.get(pool, {})
    if pool == "max":
      diff = "(baseline)"
    elif "max" in per_seed:
      diff = _interval(stats.paired_difference(seeds, per_seed["max"]))
    else:
      diff = "–"
    paper_v = paper.get(pool)
    out.append(
      f"| `{pool}` | {test} | {r['seeds_completed']}"
      + (f" (+{r['seeds_failed']} failed)" if r["seeds_failed"] else "")
      + (f" (+{r['seeds_pending']} pending)" if r["seeds_pending"] else "")
      + f" | {' '.join(f'{seeds[s]:.2f}' for s in sorted(seeds)) or '–'}"
      + f" | {_fmt(None if paper_v is None else 100.0 * paper_v)}"
      + f" | {diff} | {_fmt(r['best_test_error_mean'])} | {_fmt(r['train_error_mean'])} |"
    )
  out += [
    "",
    "Test error after the last epoch, mean ± sample std over seeds. Minus max: the "
    "paired difference `err(pool, seed) - err(max, seed)` over the seeds both "
    "completed, its mean and 95% Student-t interval (t with n-1 degrees of freedom: "
    "with 2 seeds the interval is wide, t = 12.7). Paper: Zeiler & Fergus (2013), "
    "Table 2, 3-layer network, no data augmentation.",
    "",
    "## Set-up",
    "",
    f"- Epochs: {base.get('num_epochs')}; batch {base.get('batch_size')}; optimizer "
    f"`{base.get('optimizer')}`, learning rate {base.get('learning_rate')}, schedule "
    f"`{base.get('lr_schedule')}` (warm-up {base.get('warmup_epochs')} epochs); weight "
    f"decay {base.get('weight_decay')}; compute `{base.get('compute_dtype')}`.",
    f"- Model `{base.get('model')}`; pool options "
    f"{json.dumps(base.get('pool_options'), sort_keys=True)}; seeds "
    f"{', '.join(map(str, config.get('seeds', [])))}.",
    f"- Data: loader `{(base.get('data') or {}).get('loader', 'tfds')}`; training examples "
    f"{base.get('max_train_examples') or 'all 60,000'}; test examples "
    f"{base.get('max_test_examples') or 'all 10,000'}.",
  ]
  if summaries:
    s = summaries[0]
    out.append(f"- Software: jax {s.get('jax_version')}, flax {s.get('flax_version')}.")
  out.append("")
  if probe or run.get("budget_s") is not None:
    out += ["## Time", ""]
    if run.get("budget_s") is not None:
      out.append(
        f"- Budget for the whole script {run['budget_s']:.0f} s; epochs chosen "
        f"{run.get('epochs')}; study predicted {_fmt(run.get('predicted_s'), 0)} s, took "
        f"{_fmt(run.get('study_wall_s'), 0)} s; whole script {_fmt(run.get('script_wall_s'), 0)} s."
      )
    if probe:
      out.append(
        f"- Probe (start-up {probe['start_s']:.1f} s, {probe['software'].get('backend')} / "
        f"{probe['software'].get('device_kind')}):"
      )
      out += [
        "",
        "| Pool | Epochs | Wall (s) | Compile (s) | s / epoch | images / s |",
        "|---|---:|---:|---:|---:|---:|",
      ]
      for r in probe["runs"]:
        per = sum(r["epoch_seconds"]) / max(1, len(r["epoch_seconds"]))
        out.append(
          f"| `{r['pool']}` | {r['epochs']} | {r['wall_s']:.1f} | {r['compile_s']:.1f} "
          f"| {per:.2f} | {r['images_per_second']:,.0f} |"
        )
    out.append("")
  out += [
    "## Cells",
    "",
    "| Cell | Status | Final test error (%) | Best (%) @ epoch | Epochs | Compile (s) "
    "| s / epoch | images / s |",
    "|---|---|---:|---:|---:|---:|---:|---:|",
  ]
  for c in cells:
    s = c["summary"]
    final = s.get("final_test_error")
    best = s.get("best_test_error")
    out.append(
      f"| `{c['dir']}` | {c['status']} | {_fmt(None if final is None else 100 * final)} "
      f"| {_fmt(None if best is None else 100 * best)} @ {s.get('best_epoch', '–')} "
      f"| {len(c['metrics'])} | {_fmt(s.get('compile_seconds'), 1)} "
      f"| {_fmt(s.get('seconds_per_epoch'), 2)} | {_fmt(s.get('images_per_second'), 0)} |"
    )
  failed = [c for c in cells if c["status"] == "failed"]
  if failed:
    out += ["", "Failed: " + "; ".join(f"`{c['dir']}`: {c['error']}" for c in failed)]
  out.append("")
  return "\n".join(out)


# ------------------------------------------------------------------------------- CLI


def define_flags():
  """The command-line flags, defined only when run as a program (importing this
  module beside experiments.compare or experiments.train defines nothing)."""
  flags.DEFINE_enum(
    "mode",
    None,
    ["preflight", "probe", "report"],
    "preflight: one step of each pool; probe: time short runs; report: write it.",
  )
  flags.DEFINE_string("pools", "avg,max,stochastic", "preflight: the pools to try.")
  flags.DEFINE_string("expect_backend", "", "preflight: fail unless JAX runs on this backend.")
  config_flags.DEFINE_config_file("config", None, "The study config (probe).", lock_config=False)
  flags.DEFINE_string("workdir", None, "probe: folder for the runs; report: the study folder.")
  flags.DEFINE_string("out", None, "probe: probe.json; report: the markdown file.")
  flags.DEFINE_list("probe_epochs", ["1", "2", "3"], "Epochs of each pool's probe run, in order.")
  flags.DEFINE_string("probe", None, "report: probe.json.")
  flags.DEFINE_string("run_json", None, "report: JSON with what the script knows (title, ...).")
  flags.mark_flag_as_required("mode")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  # The study's own log lines, without the checkpoint library's dozens per epoch.
  cli.quiet_library_logs()
  if f.mode == "preflight":
    software = preflight(
      [p for p in f.pools.split(",") if p], expect_backend=f.expect_backend or None
    )
    print(json.dumps(software, sort_keys=True))
    return
  if not f.workdir or not f.out:
    raise app.UsageError("--workdir and --out are required")
  if f.mode == "probe":
    if f.config is None:
      raise app.UsageError("--mode=probe needs --config (a configs/compare.py study)")
    result = probe(f.config, f.workdir, epochs=[int(e) for e in f.probe_epochs])
    with open(f.out, "w") as fh:
      json.dump(result, fh, indent=2, sort_keys=True)
      fh.write("\n")
  else:
    probe_obj = run = None
    if f.probe and os.path.exists(f.probe):
      with open(f.probe) as fh:
        probe_obj = json.load(fh)
    if f.run_json:
      with open(f.run_json) as fh:
        run = json.load(fh)
    text = report_markdown(f.workdir, probe=probe_obj, run=run)
    with open(f.out, "w") as fh:
      fh.write(text)
    print(text)


if __name__ == "__main__":
  define_flags()
  app.run(main)
