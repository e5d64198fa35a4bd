#!/usr/bin/env bash
# The GPU check: every CUDA figure nasdeploy asks for, in ONE command of at most 8 minutes on a bare machine
# (no network; PyTorch, onnx, onnxruntime (CPU), rich, matplotlib, scipy and pytest already there).
#
#   on a CPU machine with network, once:  bash benchmarks/gpu_check.sh prepare
#       wheels of the small packages the GPU machine lacks (optuna and its pure-Python needs, tomli-w) into
#       .gpu-wheels/ (git-ignored), and the stand-in official checkpoints the GPU tests read into .gpu-ref/
#   on the GPU machine, one call:         bash benchmarks/gpu_check.sh run
#       (device tool: run(command="bash benchmarks/gpu_check.sh run", carry=[".gpu-wheels", ".gpu-ref"],
#        timeout_s=540))
#   here, to check the plumbing:           bash benchmarks/gpu_check.sh run --dry-run
#       every part on the CPU with tiny sizes, and the planned GPU time of each part beside it
#
# Each part writes its log and JSON into $OUT/gpu_check/ as it finishes (not at exit; bench writes its JSON after
# each model and batch), in order of importance, and runs under its own time limit, so a slow part costs only
# itself: what was measured comes back whatever happens. A part that runs past its limit gets SIGABRT, which Python's
# faulthandler (on for every part) answers with every thread's stack in the log. A crash costs its part (and in bench
# its row: native runtimes run in a process of their own), and each GPU test runs in a process of its own, so a
# crash names its test. Parts already measured are skipped by name: SKIP="bench_fp16 latency_table" bash ... run.
# At most 8 files come back: the parts' JSON, one log, one summary.
set -uo pipefail
mode=${1:?usage: gpu_check.sh prepare | run [--dry-run]}
dry=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if [ "$mode" = prepare ]; then
  mkdir -p .gpu-ref/reference
  plat="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
  # optuna 5 needs alembic, sqlalchemy (and greenlet), colorlog, mako; tomli-w writes cards
  for p in optuna==5.0.0 alembic==1.17.2 sqlalchemy==2.0.44 greenlet==3.2.4 colorlog==6.10.1 mako==1.3.10 tomli-w==1.2.0; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat \
      -d .gpu-wheels "$p" || { echo "could not fetch $p"; exit 1; }
  done
  ls .gpu-wheels | awk -F- '{print $1}' | sort | uniq -d | grep . && { echo "two versions of one package"; exit 1; }
  cp ../shared/reference/refweights.py ../shared/reference/official_models.json ../shared/reference/expected_outputs.npz \
    .gpu-ref/reference/
  du -sh .gpu-wheels .gpu-ref
  exit 0
fi

[ "$mode" = run ] || { echo "usage: gpu_check.sh prepare | run [--dry-run]"; exit 2; }
if [ "$dry" = --dry-run ]; then
  OUT=${OUT:-$ROOT/runs/gpu_check_dry}
  DEV=cpu
  export CUDA_VISIBLE_DEVICES=""
  PY=${PY:-$ROOT/.venv/bin/python}
else
  : "${OUT:?OUT is unset: run this through the device tool, or add --dry-run}"
  DEV=cuda
  PY=python3
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu-wheels/*.whl \
    || { echo "wheels did not install"; exit 1; }
  export PYTHONPATH="$ROOT:/tmp/site"
fi
export PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1 NASDEPLOY_SHARED="$ROOT/.gpu-ref"
R="$OUT/gpu_check"
mkdir -p "$R"
LOG="$R/log.txt"
SUM="$R/summary.txt"
: > "$SUM"
t_all=$(date +%s)

# part NAME PLANNED_SECONDS LIMIT_SECONDS COMMAND...: run, log as it goes, record the time against the plan
part() {
  local name=$1 planned=$2 limit=$3
  shift 3
  case " ${SKIP:-} " in *" $name "*) echo "$name skipped (SKIP)" | tee -a "$SUM" "$LOG"; return;; esac
  local t0=$(date +%s)
  echo "== $(date -u +%FT%TZ) $name (planned ${planned}s on the GPU, limit ${limit}s)" | tee -a "$LOG"
  if [ "$(type -t "$1")" = function ]; then  # a function of this script times its own steps
    "$@" >> "$LOG" 2>&1
  else
    timeout --signal=ABRT --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1
  fi
  local rc=$? t=$(( $(date +%s) - t0 ))
  printf '%-28s rc=%-4s %5ss (planned %ss on the GPU)\n' "$name" "$rc" "$t" "$planned" | tee -a "$SUM" "$LOG"
}

nvidia-smi >> "$LOG" 2>&1 || echo "no nvidia-smi here" >> "$LOG"

if [ "$DEV" = cuda ]; then
  B="--batch 1,256"; MODELS="fairnas_a scarlet_a"; LUT="--input-size 224 --batch 64 --repeats 100"; VA=30; SN="--batch 128 --steps 3 --rounds 3"
else  # the dry run: the same commands, the CPU, tiny sizes
  B="--batch 1"; MODELS="fairnas_c"; LUT="--input-size 28 --num-classes 10 --batch 1 --repeats 3 --rounds 1"; VA=3
  SN="--batch 2 --size 32 --steps 1 --rounds 1"
fi

# each GPU test in a process of its own (a crash names its test; the others still report), one summary line each
each_test() {
  local ids id rc failed=0
  ids=$($PY -m pytest --collect-only -q -p no:cacheprovider "$@" 2>/dev/null | grep '::')
  [ -n "$ids" ] || { echo "no test collected"; return 0; }
  while IFS= read -r id; do  # one id a line: parametrized ids may hold spaces
    timeout --signal=ABRT --kill-after=10 120 $PY -X faulthandler -m pytest -q -p no:cacheprovider -rs "$id" \
      > "$R/.test.log" 2>&1
    rc=$?
    case $rc in 0) v=passed; grep -q ' passed' "$R/.test.log" || v=skipped;; 5) v=skipped;; 1) v=FAILED;; 124|134) v="TIMEOUT (stack in the log)";; *) v="CRASHED rc=$rc";; esac
    [ $rc -eq 0 ] || [ $rc -eq 5 ] || failed=1
    echo "test $v $id" | tee -a "$SUM"
    grep -v '^\s*$' "$R/.test.log" | tail -25
  done <<< "$ids"
  rm -f "$R/.test.log"
  return $failed
}

# 0. why an AOTInductor package crashed while loading (PyTorch 2.11 on 2026-12-04): each load in a fresh process
part aoti_probe 40 90 $PY -m benchmarks.aoti_probe --device $DEV --json "$R/aoti_probe.json"
# 1. the headline: folded engines against plain torch.compile, in fp16 (torch.compile and AOTInductor compile once per
#    model, batch and precision: 12 compiles on the GPU), then float32 with TF32 off for eager and CUDA graphs
part bench_fp16 210 260 $PY -m nasdeploy bench $MODELS --device $DEV --backends torch,compile,aoti \
  --dtype $([ "$DEV" = cuda ] && echo fp16 || echo fp32) $B --rounds 3 --compile-reference on --no-progress \
  --json "$R/bench_fp16.json"
part bench_fp32 40 80 $PY -m nasdeploy bench $MODELS --device $DEV --backends torch --dtype fp32 $B --rounds 3 \
  --compile-reference off --no-progress --json "$R/bench_fp32_tf32off.json"
# 2. a CUDA latency table for one space (CUDA graphs, CUDA events) and its validation on random architectures
part latency_table 60 100 $PY -m nasdeploy latency-table --space fairnas --device $DEV --dtype \
  $([ "$DEV" = cuda ] && echo fp16 || echo fp32) $LUT --out "$R/lut_fairnas.json" --no-progress
part latency_validate 40 80 $PY -m nasdeploy latency-table validate "$R/lut_fairnas.json" --archs $VA --rounds 3 \
  --no-progress
# 3. a strict-fairness supernet step against a plain training step, per image
part supernet_step 30 60 $PY -m benchmarks.supernet_throughput --device $DEV $SN --out "$R/supernet_throughput.json"
# 4. the GPU tests (skipped on the CPU dry run: they need CUDA)
part gpu_tests 60 $(( 470 - ($(date +%s) - t_all) > 30 ? 470 - ($(date +%s) - t_all) : 30 )) \
  each_test tests/test_gpu.py tests/test_export.py -k "gpu or cuda or aoti_fp16 or tensorrt"

echo "total $(( $(date +%s) - t_all ))s (budget 480s on the GPU)" | tee -a "$SUM" "$LOG"
rm -f "$R"/*.validation.png  # the validation JSON carries the figures; keep the file count within 8
ls -la "$R" | tee -a "$LOG"
