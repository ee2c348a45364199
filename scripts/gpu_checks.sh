#!/usr/bin/env bash
# Issue 26's GPU checks as one prepared run for a lent GPU machine (torch, transformers, peft and
# pytest installed there; no network): tests/test_cuda.py, then scripts/bench_gpu.py, about 6
# minutes on an H200. Outputs go to $OUT (the device tool's folder) or ./gpu-checks; the benchmark
# prints each row as it is measured, so a run cut short still leaves its rows.
#
#   bash scripts/gpu_checks.sh          both (fits one 10-minute call)
#   bash scripts/gpu_checks.sh test     tests/test_cuda.py only
#   bash scripts/gpu_checks.sh bench    scripts/bench_gpu.py only
#
# The benchmark needs a tokenizer only: carry weights/smollm2-135m-instruct/tokenizer.json,
# tokenizer_config.json and config.json (3.5 MB), not the 540 MB of weights.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
what="${1:-all}"
case "$what" in all|test|bench) ;; *) echo "usage: bash scripts/gpu_checks.sh [test|bench]"; exit 2 ;; esac
if ! python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "no CUDA GPU here: these checks are for a GPU machine (the CPU runs bench_gpu.py --smoke in the tests)"
    exit 2
fi
out="${OUT:-gpu-checks}"
mkdir -p "$out"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
if [ "$what" != bench ]; then
    timeout 300 python -m pytest -q -s -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/test_cuda.txt"
fi
if [ "$what" != test ]; then
    timeout 280 python scripts/bench_gpu.py 2>&1 | tee "$out/bench_gpu.txt"
fi
