#!/usr/bin/env bash
# AdaptEval evaluation of online TLM with the default model (not part of the test suite:
# it takes hours on 2 cores). Usage:
#   tests/eval/run_adapteval.sh DATA_DIR [OUT_DIR] [N] [MAX_NEW_TOKENS]
# DATA_DIR holds AdaptEval's agriculture.json, finance.json and alpaca_general.json (e.g.
# ../shared/data/adapteval). For each of agriculture and finance, on the first N records:
#   <ds>-tlm   online TLM with the official settings (lr 5e-5, threshold 3, lambda 0.1)
#   <ds>-base  the base model's answers to the same prompts (tlm generate), scored by tlm eval
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
  if [ ! -f "$out/$ds-tlm/summary.json" ]; then
    "$tlm" adapt --config "$root/configs/tlm-online.yaml" --data "$data/$ds.json" \
      --output-dir "$out/$ds-tlm" --max-samples "$n" --max-new-tokens "$new" 2>&1 | tee "$out/$ds-tlm.log"
  fi
  if [ ! -f "$out/$ds-base/eval.json" ]; then
    mkdir -p "$out/$ds-base"
    /usr/bin/time -f "%e" -o "$out/$ds-base/seconds" "$tlm" generate --prompts-file "$data/$ds.json" \
      --max-samples "$n" --max-new-tokens "$new" --output "$out/$ds-base/predictions.jsonl" > "$out/$ds-base.log" 2>&1
    "$tlm" eval --predictions "$out/$ds-base/predictions.jsonl" --output "$out/$ds-base/eval.json" > /dev/null
  fi
done
[ -f "$out/forgetting.json" ] || "$tlm" eval --data "$data/alpaca_general.json" --max-samples 200 \
  --adapter "$out/agriculture-tlm/adapter" --output "$out/forgetting.json" > /dev/null
python3 "$root/tests/eval/results_table.py" "$out"
