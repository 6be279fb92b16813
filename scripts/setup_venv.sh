#!/usr/bin/env bash
# Create .venv inside the checkout and install jaxpool with every extra (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[all]"

# PyTorch is optional: the parity tests against torch.nn.functional and the torch
# baselines of the benchmark run when it is importable, and are skipped with a message
# otherwise. Pinned to one release: a CPU build of 2.13.0 is what pip picks on the
# project's machines, where an unpinned `torch` would pull a multi-GB CUDA build.
TORCH_VERSION=2.13.0
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet "torch==${TORCH_VERSION}" \
    || echo "setup: torch==${TORCH_VERSION} not installed; the torch parity tests will be skipped"
fi
