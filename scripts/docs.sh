#!/usr/bin/env bash
# Build the documentation site into docs/_build/html, with warnings as errors.
# Sets up .venv like the tests do (scripts/setup_venv.sh), adds the docs tools
# (jaxpool[docs]), then runs Sphinx; the example notebook is executed on the way.
# Extra arguments go to sphinx-build (e.g. -E to rebuild every page).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup_venv.sh
.venv/bin/python -m pip install --quiet -e ".[docs]"

# The notebook trains on MNIST where the IDX files are found, on synthetic data
# elsewhere. On this project's machines the files lie beside the checkout.
if [ -z "${JAXPOOL_MNIST_DIR:-}" ] && [ -d ../shared/data/mnist ]; then
  export JAXPOOL_MNIST_DIR="$(cd ../shared/data/mnist && pwd)"
fi

# -E -a: read and write every page afresh (an incremental build keeps stale
# navigation in pages it does not rewrite).
.venv/bin/python -m sphinx -E -a -W --keep-going -b html docs docs/_build/html "$@"
echo "docs: docs/_build/html/index.html"
