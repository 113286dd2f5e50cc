#!/usr/bin/env bash
# The GPU checks of issue #9 as one short script for a one-GPU CUDA machine (run from anywhere).
#   bash bench/gpu_check.sh OUT_DIR [all|mfu|quick]   (quick: six MFU runs, about 8 min, for a
#   15-minute device lease, within one 600-s device command; mfu: those, autocast and the Trainer
#   loop, about 11 min; all: quick, the Trainer loop and item 2: both longer than one 600-s command)
# 1. MFU of the BERT-base recipe's training step (bench/gpu_train.py): torch.compile'd at batch 512
#    with a bf16 model over fp32 master weights (`--precision bf16-weights`, with a kernel profile),
#    the same with the text padded to the fixed 64 positions, without attention dropout, packed
#    (only the real positions), at batch 1024, with CUDA graphs; (mfu) with bf16 autocast; (mfu, all)
#    kaleido's own Trainer loop (data loader workers included).
# 2. `kaleido run` end to end on the tests' tiny recipe on CUDA: prepare, align, the trainer in bf16
#    (one process: NCCL needs two GPUs), then eval: the GPU paths CPU CI never exercises.
# Needs the package's dependencies importable (PYTHONPATH) and the offline weights packages.
set -u -o pipefail
out=${1:?usage: gpu_check.sh OUT_DIR [all|mfu|quick]}
what=${2:-all}
case "$what" in
  all|mfu|quick) ;;
  *) echo "usage: gpu_check.sh OUT_DIR [all|mfu|quick] (got mode '$what')" >&2; exit 2 ;;
esac
mkdir -p "$out" && out=$(cd "$out" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo" || exit 2
export PYTHONUNBUFFERED=1
# the repo root first (python3 bench/x.py puts bench/, not the root, on the path), whatever the
# caller set (the dependencies carried as wheels, the offline weights packages)
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# a failed import costs seconds here, not each run's compile
python3 -c "
import torch, transformers, catalogue, pydantic
from kaleido.models.tokenizer import load_tokenizer
load_tokenizer('minilm')
print('torch', torch.__version__, 'transformers', transformers.__version__, 'kaleido imports: ok')" \
  || { echo "== preflight failed: kaleido or its dependencies do not import (see above)"; exit 3; }

mfu() {  # name, timeout, args...
  local name=$1 limit=$2; shift 2
  echo "== $name: $*"
  timeout "$limit" python3 bench/gpu_train.py "$@" --json "$out/mfu_$name.json" || echo "== $name failed ($?)"
}
if [ "$what" = all ]; then
mfu b256 150 --batch 256 --profile
echo "== kaleido run, tiny recipe, CUDA"
root=$(mktemp -d)
start=$(date +%s)
timeout 100 python3 -c "from kaleido.cli import app; app()" run tests/recipes/tiny.toml --no-progress \
  --set "output_dir=\"$root/runs\"" --set "data.dir=\"$root/data\"" > "$out/tiny_run.log" 2>&1
echo "== kaleido run exit $? after $(( $(date +%s) - start )) s"
tail -25 "$out/tiny_run.log"
find "$root/runs" -name results.json -exec cat {} + >> "$out/tiny_run.log"  # at most 8 files come back
echo "== the SAT aligner's stride-16 grid on CUDA (the quickstart's; the trunk prefix must be on the GPU)"
timeout 60 python3 -c "
import numpy as np
from kaleido import registry
b = registry.backbones.get('mobilenet_v2')(mode='roi', image_size=128, device='cuda')
m = b.feature_map([np.zeros((100, 80, 3), np.uint8)], stride=16)
print('stride-16 map', tuple(m.shape), m.device)" || echo "== stride-16 map failed ($?)"
fi
# MFU, the most telling runs first; each batch's text is padded to its longest text (as `kaleido run`
# trains) unless `--text-padding max` brings back the fixed 64 positions measured before session 7
# (quick's limits add up to 570 s: one 600-s device command; each run took about 75 s in session 7).
# The attention-dropout-0 run: on a CPU, SDPA with dropout leaves the fused kernel (2.7x the
# attention's time); it shows what BERT's 0.1 costs on the GPU (`[model] attention_dropout`).
mfu b512_bf16w_compiled 105 --batch 512 --compile --precision bf16-weights --profile
mfu b512_bf16w_compiled_padmax 85 --batch 512 --compile --precision bf16-weights --text-padding max
mfu b512_bf16w_compiled_attn0 85 --batch 512 --compile --precision bf16-weights --attention-dropout 0
mfu b512_packed_bf16w_compiled 95 --batch 512 --compile --precision bf16-weights --attention packed
mfu b1024_bf16w_compiled 105 --batch 1024 --compile --precision bf16-weights
mfu b512_bf16w_graphs 95 --batch 512 --compile --compile-mode reduce-overhead --precision bf16-weights
[ "$what" = mfu ] && mfu b512_compiled 120 --batch 512 --compile
[ "$what" != quick ] && mfu trainer_b256_compiled 150 --batch 256 --loop trainer --steps 20 --warmup 10 --workers 14 --compile
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for f in sorted(out.glob("mfu_*.json")):
    r = json.loads(f.read_text())
    mfu = f"{100 * r['mfu']:.1f}% (padded {100 * r['mfu_padded']:.1f}%)" if r["mfu"] else "n/a"
    print(f"{f.stem}: {r['device']} {r['precision']} batch {r['batch']} {r['step_s'] * 1e3:.1f} ms/step "
          f"{r['samples_per_s']:.0f} samples/s {r['tflops_per_s']:.0f} TFLOP/s MFU {mfu}")
PY
