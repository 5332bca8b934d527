#!/usr/bin/env bash
# AdaptEval evaluation of online TLM with the default model (not part of the test suite:
# it takes hours on 2 cores). Usage:
#   tests/eval/run_adapteval.sh DATA_DIR [OUT_DIR] [N] [MAX_NEW_TOKENS]
# DATA_DIR holds AdaptEval's agriculture.json, finance.json and alpaca_general.json (e.g.
# ../shared/data/adapteval). For each of agriculture and finance, on the first N records:
#   <ds>-tlm   online TLM with the official settings (lr 5e-5, threshold 3, lambda 0.1)
#   <ds>-base  the same pipeline with lr 0: the base model's answers
# then the forgetting check: answer NLL on the first 200 alpaca_general records with and
# without the agriculture adapter. Prints the results table (tests/eval/results_table.py).
set -euo pipefail
data=${1:?usage: run_adapteval.sh DATA_DIR [OUT_DIR] [N] [MAX_NEW_TOKENS]}
out=${2:-runs/adapteval}
n=${3:-300}
new=${4:-128}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tlm="$root/build/launch/tlm"
mkdir -p "$out"
for ds in agriculture finance; do
  for variant in tlm base; do
    extra=()
    [ "$variant" = base ] && extra=(--lr 0)
    [ -f "$out/$ds-$variant/summary.json" ] && continue
    "$tlm" adapt --config "$root/configs/tlm-online.yaml" --data "$data/$ds.json" \
      --output-dir "$out/$ds-$variant" --max-samples "$n" --max-new-tokens "$new" "${extra[@]}" \
      2>&1 | tee "$out/$ds-$variant.log"
  done
done
[ -f "$out/forgetting.json" ] || "$tlm" eval --data "$data/alpaca_general.json" --max-samples 200 \
  --adapter "$out/agriculture-tlm/adapter" --output "$out/forgetting.json"
python3 "$root/tests/eval/results_table.py" "$out"
