#!/usr/bin/env bash
# The run command: sets up what is missing (launch/setup.sh), builds, and runs online
# test-time learning with the embedded default model (SmolLM2-135M-Instruct) on the small
# built-in agriculture stream, printing progress and the input perplexity before and after.
# Extra arguments go to `tlm adapt` (e.g. --data FILE --max-samples 300 --output-dir DIR).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source launch/setup.sh
printf '\n[tlm run] online TLM on configs/demo-stream.jsonl -> runs/demo\n'
./build/launch/tlm adapt --config configs/tlm-online.yaml --data configs/demo-stream.jsonl \
  --output-dir runs/demo --max-new-tokens 96 "$@"
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
