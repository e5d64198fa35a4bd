#!/usr/bin/env bash
# ONNX Runtime vs PyTorch eager on this machine's CPU, batch 1, FairNAS-A and SCARLET-A, one run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY cli.py bench fairnas_a scarlet_a --device cpu --backends torch,onnxruntime --batch 1 --repeats 100 \
    --json benchmarks/results/bench_cpu.json --plot benchmarks/results/bench_cpu.png --no-progress
