#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the small pure modules -- space, sampling, fold, latency/metrics, pareto, io --
# against their fast tests (the selection is in pyproject.toml, [tool.mutmut]). Writes the score and the
# surviving mutants to benchmarks/results/mutation.txt. Takes about an hour on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
$PY -m pip install -q 'mutmut==3.8.1'
export NASDEPLOY_SHARED="${NASDEPLOY_SHARED:-$(cd .. && pwd)/shared}"  # mutmut runs the tests from mutants/
rm -rf mutants
"$(dirname "$PY")/mutmut" run --max-children 2 || true
out=benchmarks/results/mutation.txt
{
  echo "# mutmut 3.8.1, $(date -u +%F), $(nproc) cores: bash benchmarks/mutation.sh"
  "$(dirname "$PY")/mutmut" results --all true | awk '{print $NF}' | sort | uniq -c
  echo "# surviving mutants"
  "$(dirname "$PY")/mutmut" results
} > "$out"
cat "$out"
