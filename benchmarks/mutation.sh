#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the small pure modules -- nas/space, nas/paths, fold, latency/metrics, pareto, io --
# against their fast tests (the selection is in pyproject.toml, [tool.mutmut]). Writes the score and the
# surviving mutants to benchmarks/results/mutation.txt. Takes about 5 minutes on 2 cores.
# KEEP=1 continues an interrupted run (the verdicts already in mutants/ are kept).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY -m pip install -q 'mutmut==3.8.1'
export OMP_NUM_THREADS=1 NASDEPLOY_THREADS=1  # two one-thread children on two cores
export NASDEPLOY_SHARED="${NASDEPLOY_SHARED:-$(cd .. && pwd)/shared}"  # mutmut runs the tests from mutants/
[ "${KEEP:-0}" = 1 ] || rm -rf mutants
"$(dirname "$PY")/mutmut" run --max-children 2 || true
out=benchmarks/results/mutation.txt
{
  echo "# mutmut 3.8.1, $(date -u +%F), $(nproc --all) cores: bash benchmarks/mutation.sh"
  "$(dirname "$PY")/mutmut" results --all true | awk '{print $NF}' | sort | uniq -c
  echo "# per module: killed (timeouts included) / mutants"
  "$(dirname "$PY")/mutmut" results --all true | awk '{split($1,a,".x"); m=a[1]; t[m]++;
    if ($NF=="killed" || $NF=="timeout") k[m]++} END {for (m in t) printf "%-28s %4d / %4d  %.1f%%\n", m, k[m], t[m], 100*k[m]/t[m]}' | sort
  echo "# surviving mutants"
  "$(dirname "$PY")/mutmut" results
} > "$out"
cat "$out"
