#!/usr/bin/env bash
# tlm against HF transformers + PEFT on the default model, one table from one run (not part of
# the test suite; a few minutes at N=24). See tests/bench/bench.py for what each column means.
#   [ROUNDS=2] [TLM_FLAGS="--packed-weights off"] tests/bench/run_bench.sh [DATA] [N] [OUT_DIR]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$root/launch/setup.sh" >/dev/null
data=${1:-$root/../shared/data/adapteval/agriculture.json}
n=${2:-24}
out=${3:-$(mktemp -d)}
export OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$TLM_PYTHON" "$root/tests/bench/bench.py" "$root/build/launch/tlm" "$TLM_DEFAULT_MODEL" "$data" "$n" "$out" 2 "${ROUNDS:-2}" "${TLM_FLAGS:-}"
echo "(logs and bench.json in $out)"
