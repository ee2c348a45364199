#!/usr/bin/env bash
# Issue 26's GPU checks as one prepared run for a lent GPU machine (torch, transformers, peft and
# pytest installed there; no network): tests/test_cuda.py, then scripts/bench_gpu.py. About 6
# minutes on an H200. Outputs go to $OUT (the device tool's folder) or ./gpu-checks.
#
# The benchmark needs a tokenizer only: carry weights/smollm2-135m-instruct/tokenizer.json,
# tokenizer_config.json and config.json (3.5 MB), not the 540 MB of weights.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "no CUDA GPU here: these checks are for a GPU machine (the CPU runs bench_gpu.py --smoke in the tests)"
    exit 2
fi
out="${OUT:-gpu-checks}"
mkdir -p "$out"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
timeout 330 python -m pytest -q -s -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/test_cuda.txt"
timeout 270 python scripts/bench_gpu.py 2>&1 | tee "$out/bench_gpu.txt"
