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
# baselines of the benchmark run when it is importable. Install it only where a CPU
# wheel lies on disk, so set-up never downloads a multi-GB CUDA build.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  torch_wheel=$(ls /opt/wheels/torch-*+cpu-cp311-*.whl 2>/dev/null | head -n 1 || true)
  if [ -n "$torch_wheel" ]; then
    .venv/bin/python -m pip install --quiet "$torch_wheel" \
      || echo "setup: torch not installed; torch parity tests will be skipped"
  else
    echo "setup: no local torch CPU wheel; torch parity tests will be skipped"
  fi
fi
