#!/usr/bin/env bash
# The test-time methods side by side on AdaptEval (not part of the test suite: one method over
# 100 prompts takes minutes on 2 cores). Usage:
#   tests/eval/compare_methods.sh DATA_DIR [OUT_DIR] [N] [MAX_NEW_TOKENS] [FORGET_N]
# DATA_DIR holds AdaptEval's agriculture.json, finance.json and alpaca_general.json (e.g.
# ../shared/data/adapteval). For each of agriculture and finance, on the first N records
# (default 100) with MAX_NEW_TOKENS-token answers (default 64), every method below runs online
# from its recipe in configs/ into OUT_DIR/<ds>-<method>; then forgetting: the answer NLL of
# the first FORGET_N (default 100) alpaca_general records with and without the method's
# agriculture adapter. Finished parts are skipped, so the table can be completed over several
# runs; a method whose recipe does not exist yet is skipped with a note. Prints the table
# (tests/eval/methods_table.py).
set -euo pipefail
data=${1:?usage: compare_methods.sh DATA_DIR [OUT_DIR] [N] [MAX_NEW_TOKENS] [FORGET_N]}
out=${2:-runs/methods}
n=${3:-100}
new=${4:-64}
forget_n=${5:-100}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tlm=${TLM:-$root/build/launch/tlm}  # TLM=path: another build
cfg="$root/configs"
mkdir -p "$out"

# name | recipe | extra flags
methods=(
  "tlm|tlm-online.yaml|"
  "tlm-noselect|tlm-online.yaml|--sample-selection false"
  "tent|tent-online.yaml|"
  "eata|eata-online.yaml|"
  "come|come-online.yaml|"
  "sytta|sytta-online.yaml|"
  "norm-affine|norm-affine-online.yaml|"
  "episodic|episodic.yaml|"
  "episodic-scalenet|episodic.yaml|--scalenet @SCALENET@"
)
# ScaleNet for episodic-scalenet: trained on a disjoint later slice of the same file (records
# SCALENET_SKIP .. SCALENET_SKIP + SCALENET_N of the usable ones; defaults 100 and 150), once
# per dataset, into OUT_DIR/<ds>-scalenet.safetensors.
scalenet_skip=${SCALENET_SKIP:-100}
scalenet_n=${SCALENET_N:-150}

for ds in agriculture finance; do
  if [ ! -f "$out/$ds-base/eval.json" ]; then
    mkdir -p "$out/$ds-base"
    start=$(date +%s)
    "$tlm" generate --prompts-file "$data/$ds.json" --max-samples "$n" --max-new-tokens "$new" \
      --output "$out/$ds-base/predictions.jsonl" > "$out/$ds-base.log" 2>&1
    echo $(( $(date +%s) - start )) > "$out/$ds-base/seconds"
    "$tlm" eval --predictions "$out/$ds-base/predictions.jsonl" --output "$out/$ds-base/eval.json" > /dev/null
  fi
  net="$out/$ds-scalenet.safetensors"
  if [ ! -f "$net" ] && [ ! -f "$out/$ds-episodic-scalenet/summary.json" ]; then
    "$tlm" scalenet-train --config "$cfg/episodic.yaml" --data "$data/$ds.json" --skip "$scalenet_skip" \
      --max-samples "$scalenet_n" --output "$net" > "$out/$ds-scalenet.log" 2>&1 ||
      echo "FAILED $ds-scalenet (see $out/$ds-scalenet.log)" >&2
  fi
  for m in "${methods[@]}"; do
    IFS='|' read -r name recipe flags <<< "$m"
    flags=${flags//@SCALENET@/$net}
    dir="$out/$ds-$name"
    [ -f "$dir/summary.json" ] && continue
    if [ ! -f "$cfg/$recipe" ]; then
      echo "skipped $ds-$name: configs/$recipe does not exist yet" >&2
      continue
    fi
    # shellcheck disable=SC2086
    "$tlm" adapt --config "$cfg/$recipe" --data "$data/$ds.json" --output-dir "$dir" \
      --max-samples "$n" --max-new-tokens "$new" $flags > "$out/$ds-$name.log" 2>&1 ||
      { echo "FAILED $ds-$name (see $out/$ds-$name.log)" >&2; continue; }
  done
done

for m in "${methods[@]}"; do
  IFS='|' read -r name recipe flags <<< "$m"
  adapter="$out/agriculture-$name/adapter"
  [ -d "$adapter" ] || continue
  [ -f "$out/forgetting-$name.json" ] && continue
  "$tlm" eval --data "$data/alpaca_general.json" --max-samples "$forget_n" --adapter "$adapter" \
    --output "$out/forgetting-$name.json" > "$out/forgetting-$name.log" 2>&1 ||
    echo "FAILED forgetting-$name (see $out/forgetting-$name.log)" >&2
done
python3 "$root/tests/eval/methods_table.py" "$out"
