#!/usr/bin/env bash
# The main job: set up .venv if needed, then run the MNIST comparison of every
# pooling choice. Extra arguments go to experiments.compare (e.g. --report-only).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup_venv.sh
# On this project's machines the original MNIST files lie beside the checkout.
if [ -z "${JAXPOOL_MNIST_DIR:-}" ] && [ -d ../shared/data/mnist ]; then
  export JAXPOOL_MNIST_DIR="$(cd ../shared/data/mnist && pwd)"
fi
exec .venv/bin/python -m experiments.compare --config=configs/compare.py --workdir=runs/compare "$@"
