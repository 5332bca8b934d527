#!/usr/bin/env bash
# The run command: sets up what is missing (launch/setup.sh), builds, and runs online
# test-time learning with the embedded default model (SmolLM2-135M-Instruct) on the small
# built-in agriculture stream, printing progress and the input perplexity before and after.
# `--np N` first runs it on N MPI ranks as N data-parallel replicas (--np 3 --tp 3 shards the
# model's 9 heads over 3 ranks instead). Other arguments go to `tlm adapt` (e.g. --data FILE
# --max-samples 300 --output-dir DIR).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
np=1
tp=1
while [ $# -gt 0 ]; do
  case "$1" in
    --np) np=$2; shift 2 ;;
    --tp) tp=$2; shift 2 ;;
    *) break ;;
  esac
done
source launch/setup.sh
cmd=(./build/launch/tlm adapt --config configs/tlm-online.yaml --data configs/demo-stream.jsonl
     --output-dir runs/demo --max-new-tokens 96)
if [ "$np" -gt 1 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  cmd=(mpirun -np "$np" --oversubscribe --bind-to none launch/tlm-rank "${cmd[@]:1}"
       --tp-size "$tp" --dp-size $(( np / tp )))
fi
printf '\n[tlm run] online TLM on configs/demo-stream.jsonl -> runs/demo (%s rank(s))\n' "$np"
"${cmd[@]}" "$@"
printf '\n[tlm run] summary (runs/demo/summary.json):\n'
"$TLM_PYTHON" - <<'PY'
import json
s = json.load(open("runs/demo/summary.json"))
keys = ["samples", "steps", "selected_fraction", "input_ppl_base", "input_ppl_adapted",
        "answer_nll_base", "answer_nll_adapted", "rouge_lsum", "train_tokens_per_s", "wall_seconds"]
for k in keys:
    if k in s:
        v = s[k]
        print(f"  {k:20s} {v:.4f}" if isinstance(v, float) else f"  {k:20s} {v}")
PY
