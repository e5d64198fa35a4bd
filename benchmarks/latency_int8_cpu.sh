#!/usr/bin/env bash
# The deployed precision's latency table on this machine's CPU: OpenVINO INT8, batch 1, 224x224, SCARLET space,
# validated end to end on 50 random architectures (plus the fastest and slowest), then a search that uses it.
# Results: benchmarks/results/lut_cpu_scarlet_openvino_int8.{json,validation.json,validation.png} and
# benchmarks/results/search_int8_proxy_pareto.json
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
out=benchmarks/results/lut_cpu_scarlet_openvino_int8.json
$PY cli.py latency-table --space scarlet --device cpu --backend openvino --dtype int8 --batch 1 --input-size 224 \
    --out "$out" --no-progress
$PY cli.py latency-table validate "$out" --archs 50 --no-progress
# No ImageNet supernet can be trained here, so this search ranks by the labelled MACs proxy; the demo's
# pipeline (make demo) runs the same INT8 table kind with a trained supernet at 28 px.
$PY cli.py search --accuracy-proxy --space scarlet --lut "$out" --latency-target "${TARGET:-1.2ms}" \
    --out runs/search_int8_proxy --no-progress
cp runs/search_int8_proxy/pareto.json benchmarks/results/search_int8_proxy_pareto.json
