#!/usr/bin/env bash
# Every GPU measurement on one GPU, in under 8 minutes: benchmarks/gpu.py (ImageBind-Huge size,
# anybind fp16/bf16 against the reference in fp16, folders of JPEGs and WAVs, GPU utilization),
# then the GPU rows of benchmarks/train_throughput.py when out/world and out/anchor are there
# (`make demo` builds them). Results go to benchmarks/results/; the log to $OUT or build/.
#
#     bash benchmarks/gpu.sh [PYTHON]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
LOG_DIR=${OUT:-build}
mkdir -p "$LOG_DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"

timeout 330 "$PY" benchmarks/gpu.py --batch 32 --files 256 --workers 8 2>&1 | tee "$LOG_DIR/gpu.log"

if [ -d out/world ] && [ -d out/anchor ]; then
    gpus=$("$PY" -c "import torch; print(torch.cuda.device_count())")
    ranks=()
    # Data-parallel ranks take one GPU each (binder.train.distributed: cuda:LOCAL_RANK).
    if [ "$gpus" -ge 2 ]; then ranks=(--ranks 2); else echo "train_throughput: one GPU, so no 2-rank row"; fi
    timeout 120 "$PY" benchmarks/train_throughput.py --device cuda --steps 60 --warm 10 --workers 6 "${ranks[@]}" \
        --json benchmarks/results/train_throughput_gpu.json 2>&1 | grep -v "it/s" | tee "$LOG_DIR/train_gpu.log"
else
    echo "train_throughput: out/world or out/anchor missing (make demo builds them); GPU training rows skipped"
fi
cp benchmarks/results/gpu.json benchmarks/results/train_throughput_gpu.json "$LOG_DIR"/ 2>/dev/null || true
