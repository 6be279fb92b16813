#!/usr/bin/env bash
# The Zeiler & Fergus study (avg, max, stochastic pooling; >= 2 seeds) in one run
# that fits a time budget, for a short GPU lease; or the whole test suite there.
#
#   scripts/gpu_study.sh --prepare          # where a registry is reachable: the wheels
#                                           # the GPU image lacks into .whl/, MNIST into .mnist/
#   scripts/gpu_study.sh [options]          # the study (GPU, or CPU if no nvidia-smi)
#   scripts/gpu_study.sh --tiny             # the same pipeline on 256 images: a CPU smoke run
#   scripts/gpu_study.sh --tests [options] [-- PYTEST ARGS]
#                                           # the test suite (or the given tests), stopped
#                                           # at the budget
#
# Options: --budget S (seconds for the whole script; default 420, tests 240), --seeds N (default 2), --batch B (default 128), --dtype float32|bfloat16
# (default float32), --max-epochs N (default 100, the paper flag's length), --out DIR.
#
# The study: (1) a preflight step of the network (seconds: a jax/flax mismatch
# shows before the budget is spent), (2) probe runs of avg, max and stochastic for
# 1, 2 and 3 epochs that time compilation, epochs and checkpoints
# (experiments.gpu_study), (3) the epoch count that fits the
# rest of the budget (experiments.budget), (4) experiments.compare with
# configs/compare.py:zeiler_fergus,paper and that count, under a hard timeout, (5)
# the report (experiments.gpu_study --mode=report) and the study's tables and plots.
# Output: --out, else $OUT/zf (the device tool brings $OUT back), else
# runs/gpu_study/<time>; at most 6 files (the device tool returns 8 per call):
# zeiler_fergus_report.md, results.md, curves.png, final.png, log.txt and
# study.tar.gz (probe.json, study.json, results.csv, cells.csv, every cell's
# summary and metrics, the environment).
#
# Interpreter: $PYTHON if set; else, with nvidia-smi, `python3` (an accelerator
# image's, whose jax has the CUDA plugin; without it the script tries jax's
# documented `pip install -U "jax[cuda13]"`); else .venv/bin/python (made by
# scripts/setup_venv.sh if missing). Packages it lacks are installed from .whl/
# without a registry. MNIST: $JAXPOOL_MNIST_DIR, else .mnist/, else
# ../shared/data/mnist; read as IDX files (config data.loader=idx, no TFDS).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

MODE=study BUDGET="" SEEDS=2 BATCH=128 DTYPE=float32 MAX_EPOCHS=100 OUTDIR=""
ORIG_ARGS="$*"
PYTEST_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; PYTEST_ARGS=("$@"); break ;;
    --prepare) MODE=prepare ;;
    --tiny) MODE=tiny ;;
    --tests) MODE=tests ;;
    --budget) BUDGET=$2; shift ;;
    --seeds) SEEDS=$2; shift ;;
    --batch) BATCH=$2; shift ;;
    --dtype) DTYPE=$2; shift ;;
    --max-epochs) MAX_EPOCHS=$2; shift ;;
    --out) OUTDIR=$2; shift ;;
    -h | --help) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "gpu_study.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for v in SEEDS BATCH MAX_EPOCHS; do
  if ! [[ ${!v} =~ ^[1-9][0-9]*$ ]]; then
    echo "gpu_study.sh: --$(echo $v | tr A-Z_ a-z-) must be a positive integer, got '${!v}'" >&2
    exit 2
  fi
done
if [ -n "$BUDGET" ] && ! [[ $BUDGET =~ ^[1-9][0-9]*$ ]]; then
  echo "gpu_study.sh: --budget must be a positive number of seconds, got '$BUDGET'" >&2
  exit 2
fi
case "$DTYPE" in float32 | bfloat16) ;; *)
  echo "gpu_study.sh: --dtype must be float32 or bfloat16, got '$DTYPE'" >&2; exit 2 ;;
esac

# ------------------------------------------------------------------ --prepare
# Pinned to the versions this repository is tested with. Wheels for CPython 3.12 on
# x86-64 Linux (the accelerator image's python3); pure-Python ones fit any.
STUDY_WHEELS="ml_collections==1.1.0 tensorboardX==2.6.5"
TEST_WHEELS="tensorflow-datasets==4.9.10 array_record==0.8.6 dm-tree==0.1.10 \
simple-parsing==0.1.9 docstring-parser==0.18.0 immutabledict==4.3.1 termcolor==3.3.0 \
toml==0.10.2 tensorflow-metadata==1.21.0 googleapis-common-protos==1.76.0"
SDIST_WHEELS="promise==2.3" # No wheel published: built here (pure Python).
if [ "$MODE" = prepare ]; then
  PY=${PYTHON:-python3}
  [ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
  rm -rf .whl && mkdir -p .whl/study .whl/tests
  platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
  for spec in $STUDY_WHEELS; do
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp $platforms -d .whl/study "$spec" || exit 1
  done
  for spec in $TEST_WHEELS; do
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp $platforms -d .whl/tests "$spec" ||
      echo "gpu_study.sh: no wheel for $spec; its tests will skip on the GPU" >&2
  done
  for spec in $SDIST_WHEELS; do
    "$PY" -m pip wheel -q --no-deps -w .whl/tests "$spec" ||
      echo "gpu_study.sh: could not build $spec; tfds tests may skip" >&2
  done
  if [ -z "${JAXPOOL_MNIST_DIR:-}" ] && [ -d ../shared/data/mnist ]; then
    JAXPOOL_MNIST_DIR=$(cd ../shared/data/mnist && pwd)
  fi
  if [ -n "${JAXPOOL_MNIST_DIR:-}" ] && [ "$(cd "$JAXPOOL_MNIST_DIR" && pwd)" != "$REPO/.mnist" ]; then
    rm -rf .mnist && mkdir -p .mnist
    cp "$JAXPOOL_MNIST_DIR"/*-ubyte* .mnist/ || exit 1
  fi
  ls -l .whl/study .whl/tests .mnist
  du -sh .whl .mnist
  echo "gpu_study.sh: ready; name .whl and .mnist in the device call's carry"
  exit 0
fi

# ------------------------------------------------------------------ environment
T0=$(date +%s)
elapsed() { echo $(($(date +%s) - T0)); }
if [ -z "$BUDGET" ]; then
  case "$MODE" in study) BUDGET=420 ;; tiny) BUDGET=420 ;; tests) BUDGET=240 ;; esac
fi
STAMP=$(date -u +%Y%m%d-%H%M%S)
if [ -z "$OUTDIR" ]; then
  if [ -n "${OUT:-}" ]; then
    OUTDIR="$OUT/$([ "$MODE" = tests ] && echo tests || echo zf)"
  else
    OUTDIR="runs/gpu_study/$MODE-$STAMP"
  fi
fi
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jaxpool-gpu-study.XXXXXX")
LOG="$OUTDIR/$([ "$MODE" = tests ] && echo tests.log || echo log.txt)"
exec > >(tee -a "$LOG") 2>&1
say() { echo "[gpu_study $(elapsed)s] $*"; }
say "mode $MODE, budget ${BUDGET}s, out $OUTDIR, work $WORK"

HAS_GPU=0
command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L > /dev/null 2>&1 && HAS_GPU=1
if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
elif [ $HAS_GPU = 1 ]; then
  PY=python3
elif [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
else
  say "no .venv: scripts/setup_venv.sh"
  bash scripts/setup_venv.sh || exit 1
  PY=.venv/bin/python
fi
say "python: $(command -v "$PY") ($("$PY" --version 2>&1)); GPU: $HAS_GPU"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

# Missing Python packages from the carried wheels (no registry on the device).
install_wheels() { # $1: wheel folder, $2: target, $3: python import line that must work after
  [ -n "$(ls "$1"/*.whl 2> /dev/null)" ] || return 1
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$2" "$1"/*.whl > "$WORK/pip.log" 2>&1 || { cat "$WORK/pip.log"; return 1; }
  PYTHONPATH="$2:$PYTHONPATH" "$PY" -c "$3" 2> "$WORK/import.log" || {
    tail -n 3 "$WORK/import.log"
    return 1
  }
  export PYTHONPATH="$2:$PYTHONPATH"
}
if ! "$PY" -c "import ml_collections, tensorboardX" 2> /dev/null; then
  install_wheels .whl/study "$WORK/site-study" "import ml_collections, tensorboardX" ||
    say "ml_collections or tensorboardX missing and not installable from .whl/study (run --prepare here first)"
fi
if [ $HAS_GPU = 1 ] && ! "$PY" -c "import jax; assert jax.default_backend() == 'gpu'" 2> /dev/null; then
  say "this python's jax has no GPU backend: trying pip install -U 'jax[cuda13]' (needs a registry)"
  # Offline (the accelerator reaches no registry) this fails within seconds.
  timeout 120 "$PY" -m pip install -q --retries 0 --timeout 5 -U "jax[cuda13]" ||
    say "jax[cuda13] could not be installed"
fi
if [ "$MODE" = tests ] && ! "$PY" -c "import tensorflow_datasets" 2> /dev/null; then
  install_wheels .whl/tests "$WORK/site-tests" "import tensorflow_datasets, array_record" ||
    say "tensorflow-datasets not importable: tests/experiments/test_data.py will skip"
fi

{
  echo "date: $(date -u)"
  echo "git: $(git rev-parse HEAD 2> /dev/null || echo '?') $(git status --porcelain 2> /dev/null | wc -l) changed files"
  [ $HAS_GPU = 1 ] && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  "$PY" -m pip list 2> /dev/null | grep -i -E '^(jax|jaxlib|jax-cuda|flax|optax|orbax|numpy|ml.collections|tensorboardx|tensorflow.datasets|torch|pytest|hypothesis) '
} > "$WORK/env.txt" 2>&1
cat "$WORK/env.txt"

# ------------------------------------------------------------------ --tests
if [ "$MODE" = tests ]; then
  # Several pytest workers share the GPU: no process may preallocate most of it.
  export XLA_PYTHON_CLIENT_PREALLOCATE=false
  [ -z "${JAXPOOL_MNIST_DIR:-}" ] && [ -d .mnist ] && export JAXPOOL_MNIST_DIR="$REPO/.mnist"
  workers=$("$PY" -c "import os; print(max(1, min(8, (os.cpu_count() or 2) - 2)))")
  "$PY" -c "import xdist" 2> /dev/null || workers=0
  args=(-q -p no:cacheprovider --durations=25 --junitxml="$OUTDIR/tests_junit.xml")
  [ "$workers" -gt 1 ] && args+=(-n "$workers")
  left=$((BUDGET - $(elapsed) - 10))
  if [ "$left" -lt 10 ]; then
    say "the budget of ${BUDGET}s is spent before pytest could start: raise --budget"
    exit 124
  fi
  say "pytest with $workers workers, stopped after ${left}s"
  # SIGINT first: pytest then prints its summary of what ran.
  [ ${#PYTEST_ARGS[@]} = 0 ] && PYTEST_ARGS=(tests)
  timeout -s INT -k 20 "$left" "$PY" -m pytest "${args[@]}" "${PYTEST_ARGS[@]}"
  rc=$?
  say "pytest exit $rc$([ $rc = 124 ] && echo ' (stopped at the budget: the counts above are partial)')"
  rm -rf "$WORK"
  exit $rc
fi

# ------------------------------------------------------------------ the study
if [ -z "${JAXPOOL_MNIST_DIR:-}" ]; then
  if [ -d .mnist ]; then
    export JAXPOOL_MNIST_DIR="$REPO/.mnist"
  elif [ -d ../shared/data/mnist ]; then
    export JAXPOOL_MNIST_DIR="$(cd ../shared/data/mnist && pwd)"
  else
    say "no MNIST IDX files: set JAXPOOL_MNIST_DIR or run --prepare (it copies them into .mnist/)"
    exit 1
  fi
fi
PLATFORM=$([ $HAS_GPU = 1 ] && echo gpu || echo cpu)
ARG="zeiler_fergus,paper,platform=$PLATFORM,seeds=$SEEDS"
OVR=(--config.base.batch_size="$BATCH" --config.base.compute_dtype="$DTYPE"
  --config.base.data.loader=idx)
REPORT_RESERVE=25
if [ "$MODE" = tiny ]; then
  # 4 steps of 64 images per epoch, 200 test images: the whole pipeline (10
  # compilations on the CPU: most of its time) in a few minutes.
  OVR=(--config.base.batch_size=64 --config.base.compute_dtype="$DTYPE"
    --config.base.data.loader=idx --config.base.max_train_examples=256
    --config.base.max_test_examples=200 --config.base.eval_batch_size=200)
  [ "$MAX_EPOCHS" = 100 ] && MAX_EPOCHS=3
fi

finish() {
  # Whatever happened, the report and the files the device tool brings back.
  set +e
  if [ -f "$WORK/study/study.json" ]; then
    "$PY" -m experiments.compare --workdir="$WORK/study" --report-only > /dev/null 2>&1 ||
      say "compare --report-only failed"
    "$PY" - "$WORK/run.json" "$(elapsed)" << 'EOF'
import json, sys
path, wall = sys.argv[1], float(sys.argv[2])
try:
  run = json.load(open(path))
except FileNotFoundError:
  run = {}
run["script_wall_s"] = wall
json.dump(run, open(path, "w"))
EOF
    "$PY" -m experiments.gpu_study --mode=report --workdir="$WORK/study" \
      --probe="$WORK/probe.json" --run_json="$WORK/run.json" \
      --out="$OUTDIR/zeiler_fergus_report.md" > /dev/null || say "report failed"
    for f in results.md curves.png final.png; do
      [ -f "$WORK/study/$f" ] && cp "$WORK/study/$f" "$OUTDIR/"
    done
  fi
  cp "$WORK/env.txt" "$WORK/study/" 2> /dev/null
  (cd "$WORK" && tar czf "$OUTDIR/study.tar.gz" --exclude=checkpoints --exclude=tensorboard \
    --exclude='site-*' probe.json run.json env.txt study probe 2> /dev/null)
  say "done in $(elapsed)s; files in $OUTDIR:"
  ls -l "$OUTDIR"
  rm -rf "$WORK"
}
trap finish EXIT
trap 'say "stopped by a signal"; exit 143' TERM INT

say "preflight"
"$PY" -m experiments.gpu_study --mode=preflight --pools=stochastic \
  --expect_backend="$PLATFORM" || { say "preflight failed: see above"; exit 1; }

say "probe: avg x 1, max x 2, stochastic x 3 epochs (seed 0)"
"$PY" -m experiments.gpu_study --mode=probe --config="configs/compare.py:$ARG" "${OVR[@]}" \
  --workdir="$WORK/probe" --out="$WORK/probe.json" --probe_epochs=1,2,3 ||
  { say "probe failed: see above"; exit 1; }

STUDY_BUDGET=$((BUDGET - $(elapsed) - REPORT_RESERVE))
say "study budget ${STUDY_BUDGET}s"
EPOCHS=$("$PY" -m experiments.budget --probe="$WORK/probe.json" --budget-s="$STUDY_BUDGET" \
  --seeds="$SEEDS" --max-epochs="$MAX_EPOCHS") || { say "no epoch count fits: see above"; exit 1; }
PREDICTED=$("$PY" -c "
import json
from experiments import budget
probe = json.load(open('$WORK/probe.json'))
m = budget.fit(budget.runs_from_json(probe), start_s=probe['start_s'])
print(round(m.study_s(['avg', 'max', 'stochastic'], $SEEDS, $EPOCHS)))")
STUDY_CMD="python -m experiments.compare --config=configs/compare.py:$ARG,epochs=$EPOCHS ${OVR[*]} --workdir=WORKDIR --quiet"
"$PY" - "$WORK/run.json" << EOF
import json, sys
json.dump({
  "title": "Zeiler & Fergus (2013) on MNIST: avg, max and stochastic pooling"
           + (" (CPU smoke run, not a result)" if "$MODE" == "tiny" else ""),
  "note": ("A smoke run of the pipeline on 256 training and 200 test images: its "
           "errors say nothing about the pools." if "$MODE" == "tiny" else ""),
  "command": "scripts/gpu_study.sh $ORIG_ARGS".strip(),
  "study_command": "$STUDY_CMD",
  "budget_s": $BUDGET, "epochs": $EPOCHS, "predicted_s": $PREDICTED,
}, open(sys.argv[1], "w"))
EOF
say "study: $EPOCHS epochs x 3 pools x $SEEDS seeds, predicted ${PREDICTED}s"
S0=$(date +%s)
timeout -s INT -k 15 "$STUDY_BUDGET" "$PY" -m experiments.compare \
  --config="configs/compare.py:$ARG,epochs=$EPOCHS" "${OVR[@]}" --workdir="$WORK/study" --quiet
rc=$?
"$PY" - "$WORK/run.json" "$(($(date +%s) - S0))" << 'EOF'
import json, sys
run = json.load(open(sys.argv[1]))
run["study_wall_s"] = float(sys.argv[2])
json.dump(run, open(sys.argv[1], "w"))
EOF
[ $rc = 124 ] && say "study stopped at its budget: the report shows the cells that finished"
say "study exit $rc after $(($(date +%s) - S0))s"
exit $rc
