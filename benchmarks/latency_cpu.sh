#!/usr/bin/env bash
# Latency-table validation on this machine's CPU: batch 1, ONNX Runtime, 224x224, 50 random
# architectures of each space. Results: benchmarks/results/lut_cpu_<space>.{json,validation.json,validation.png}
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
for space in fairnas scarlet; do
  out=benchmarks/results/lut_cpu_${space}.json
  $PY cli.py latency-table --space "$space" --device cpu --backend onnxruntime --batch 1 --input-size 224 \
      --out "$out" --no-progress
  $PY cli.py latency-table validate "$out" --archs 50 --no-progress
done
