#!/usr/bin/env bash
# Every NVIDIA-GPU figure the issues ask for, in phases that each fit one 10-minute call of the
# workplace's device tool (30 minutes of device time per session). Run from the repository root:
#
#   here, once:  bash benchmarks/gpu_session.sh prepare        # wheels + reference files into .whl/ and .gpu/
#   device tool: run(command="bash benchmarks/gpu_session.sh check",   carry=[".whl", ".gpu"], timeout_s=600)
#                run(command="bash benchmarks/gpu_session.sh latency", carry=[".whl", ".gpu"], timeout_s=600)
#                run(command="bash benchmarks/gpu_session.sh deploy",  carry=[".whl", ".gpu"], timeout_s=600)
#                run(command="bash benchmarks/gpu_session.sh search",  carry=[".whl", ".gpu"], timeout_s=600)
#
# Each phase writes its logs and JSON under $OUT/<phase>.tgz (the device tool returns at most 8 files).
# The device image has PyTorch, onnx, onnxruntime (CPU), rich and matplotlib; optuna and tomli-w travel
# as wheels. Figures go to benchmarks/README.md only after a phase really ran, with its date and device.
set -uo pipefail
phase=${1:?usage: gpu_session.sh prepare|check|latency|deploy|search}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if [ "$phase" = prepare ]; then
  mkdir -p .git/info .gpu
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
  plat="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
  for p in optuna==5.0.0 tomli-w alembic sqlalchemy colorlog mako greenlet; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat -d .whl "$p"
  done
  cp -r ../shared/reference .gpu/
  du -sh .whl .gpu
  exit 0
fi

: "${OUT:?OUT is unset: run this through the device tool}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="$ROOT:/tmp/site" PYTHONUNBUFFERED=1 NASDEPLOY_SHARED="$ROOT/.gpu"
W=/tmp/nd/$phase
mkdir -p "$W"
nd() { python3 -m nasdeploy "$@"; }
log() { echo "== $(date -u +%FT%TZ) $*"; }
finish() { nvidia-smi > "$W/nvidia-smi.txt" 2>&1; tar czf "$OUT/$phase.tgz" -C /tmp/nd "$phase"; ls -la "$OUT"; }
trap finish EXIT

case "$phase" in
check)  # ~5 min: the CUDA tests, AOTInductor fp16 parity (issue 7), supernet throughput (issue 3)
  python3 - <<'EOF'
import importlib.util, torch
spec = importlib.util.spec_from_file_location("refweights", ".gpu/reference/refweights.py")
rw = importlib.util.module_from_spec(spec); spec.loader.exec_module(rw)
for m in ("fairnas_a", "scarlet_a"):  # the stand-in official checkpoints of ../shared/reference
    torch.save(rw.make_checkpoint(m, 0), f"/tmp/nd/{m}_standin.pth.tar")
EOF
  log tests
  # test_gpu.py: CUDA-graph output aliasing, AOTI static + dynamic batches, no torch.compile fallback over
  # 9 models x 2 batches, CUDA events vs wall time, TF32 recorded, TensorRT profiles with a ragged batch
  # (where TensorRT is installed), NCCL through torchrun (where two GPUs are); then the CPU deploy tests on it
  python3 -m pytest -q -p no:cacheprovider -rs tests/test_gpu.py tests/test_deploy_cpu.py tests/test_export.py \
    -k "gpu or aoti or cuda or compile or tensorrt or nccl or tf32" 2>&1 | tee "$W/pytest.log"
  python3 -c "import torch; print('tf32 defaults: matmul', torch.backends.cuda.matmul.allow_tf32, 'cudnn',
    torch.backends.cudnn.allow_tf32)" | tee "$W/tf32.txt"
  for m in fairnas_a scarlet_a; do
    log "aoti $m"
    nd export "$m" --weights "/tmp/nd/${m}_standin.pth.tar" --aoti --fp16 --batch 64 --parity-images 2000 \
      --out "$W/aoti_$m" --force 2>&1 | tee "$W/aoti_$m.log"
    cp "$W/aoti_$m/parity.json" "$W/aoti_parity_$m.json" 2>/dev/null
    rm -rf "$W/aoti_$m"
  done
  log "supernet throughput"
  python3 benchmarks/supernet_throughput.py --device cuda --batch 128 --out "$W/supernet_throughput_h100.json" \
    2>&1 | tee "$W/supernet_throughput.log"
  ;;
latency)  # ~8 min: fp16 CUDA-graph tables at batch 1 and 64 for both spaces, validated on 50 archs (issue 4)
  for b in 64 1; do
    for s in fairnas scarlet; do
      log "table $s b$b"
      nd latency-table --space "$s" --device cuda --backend torch --dtype fp16 --batch "$b" \
        --out "$W/lut_cuda_${s}_b$b.json" --no-progress 2>&1 | tail -3
      nd latency-table validate "$W/lut_cuda_${s}_b$b.json" --archs 50 --no-progress 2>&1 | tee "$W/validate_${s}_b$b.log"
    done
  done
  ;;
deploy)  # ~9 min: bench against plain torch.compile (issue 9), folded vs stabilized at batch 256 (issue 6)
  log "fold speed"
  python3 benchmarks/fold_speed.py --device cuda --batch 256 --dtype fp16 --rounds 5 --out "$W/fold_speed_cuda.json" \
    2>&1 | tee "$W/fold_speed.log"
  for m in fairnas_a scarlet_a; do
    log "bench $m"
    nd bench "$m" --device cuda --backends torch,compile,aoti --batch 1,256 --dtype fp16 --repeats 200 \
      --json "$W/bench_cuda_$m.json" --no-progress 2>&1 | tee "$W/bench_$m.log"
  done
  ;;
search)  # ~8 min: a FairNAS supernet on Fashion-MNIST (1000 steps), a GPU table for it, searches at three targets (issue 5)
  log "supernet"
  nd train-supernet --space fairnas --data fashion-mnist --steps 1000 --batch-size 128 --out "$W/sn" --no-progress \
    2>&1 | tail -3
  nd latency-table --space fairnas --device cuda --backend torch --dtype fp16 --batch 64 --input-size 28 \
    --num-classes 10 --out "$W/lut_fm.json" --no-progress 2>&1 | tail -2
  nd latency-table validate "$W/lut_fm.json" --archs 20 --no-progress 2>&1 | tail -8
  for frac in 0.5 0.7 0.9; do
    target=$(python3 -c "
from nasdeploy.latency import LatencyTable
t = LatencyTable.load('$W/lut_fm.json'); lo = t.fastest()[1]; hi = t.predict(t.slowest())
print(f'{(lo + $frac * (hi - lo)) * 1000:.1f}us')")
    log "search target $target"
    nd search --supernet "$W/sn/supernet.pt" --lut "$W/lut_fm.json" \
      --latency-target "$target" --device cuda --population 32 --generations 8 --eval-images 2000 --out "$W/search_$frac" \
      --no-progress 2>&1 | tee "$W/search_$frac.log" | grep -v "^\s" | tail -30
  done
  find "$W" -name "*.pt" -delete
  ;;
*) echo "unknown phase '$phase': prepare | check | latency | deploy | search" >&2; exit 2 ;;
esac
