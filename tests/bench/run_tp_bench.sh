#!/usr/bin/env bash
# Distributed measurements (not part of the test suite; minutes to tens of minutes on 2 cores):
#  1. resident memory for weights per rank at TP 1, 2 and 4 on the largest model that fits a
#     24 GiB machine: random weights with Llama-2-7B's dimensions in bf16 (13.5 GB);
#  2. wall time per TLM step at TP 1 (one process, 2 threads) vs TP 2 and DP 2 (2 ranks,
#     1 thread each) on a random model with Llama-3.2-1B's dimensions (fp32), in one run.
#   tests/bench/run_tp_bench.sh [WORK_DIR]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=${1:-/tmp/tlm-tp-bench}
mkdir -p "$work"
source "$root/launch/setup.sh" > "$work/setup.log" 2>&1 || { echo "set-up failed: see $work/setup.log"; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun=(mpirun --oversubscribe --bind-to none)
head -n 1 "$root/configs/demo-stream.jsonl" > "$work/one.jsonl"

[ -f "$work/llama2-7b/config.json" ] || "$TLM_PYTHON" "$root/tests/bench/make_random_llama.py" llama2-7b "$work/llama2-7b" --dtype bf16
echo "== resident memory for weights per rank, random Llama-2-7B (bf16 weights, 12.6 GiB)"
for tp in 1 2 4; do
  OMP_NUM_THREADS=1 "${mpirun[@]}" -np $tp "$root/launch/tlm-rank" score --model "$work/llama2-7b" --dtype bf16 \
    --data "$work/one.jsonl" --tp-size $tp 2>&1 | grep -o "layout .*" | sed "s/^/tp $tp: /"
done

[ -f "$work/llama3.2-1b/config.json" ] || "$TLM_PYTHON" "$root/tests/bench/make_random_llama.py" llama3.2-1b "$work/llama3.2-1b" --dtype fp32
echo "== seconds per TLM step, random Llama-3.2-1B (fp32), 8 prompts, train batch 2 (4 steps)"
adapt=(adapt --config "$root/configs/tlm-online.yaml" --model "$work/llama3.2-1b" --data "$root/configs/demo-stream.jsonl"
       --max-samples 8 --stream-batch 8 --train-batch-size 2 --generate false --answer-nll false --threshold 0)
OMP_NUM_THREADS=2 "$root/build/launch/tlm" "${adapt[@]}" --output-dir "$work/tp1" > "$work/tp1.log" 2>&1
OMP_NUM_THREADS=1 "${mpirun[@]}" -np 2 "$root/launch/tlm-rank" "${adapt[@]}" --tp-size 2 --output-dir "$work/tp2" > "$work/tp2.log" 2>&1
OMP_NUM_THREADS=1 "${mpirun[@]}" -np 2 "$root/launch/tlm-rank" "${adapt[@]}" --dp-size 2 --output-dir "$work/dp2" > "$work/dp2.log" 2>&1
"$TLM_PYTHON" - "$work" <<'PY'
import json, statistics, sys, pathlib
work = pathlib.Path(sys.argv[1])
base = None
for name, label in [("tp1", "TP 1, 1 process x 2 threads"), ("tp2", "TP 2, 2 ranks x 1 thread"),
                    ("dp2", "DP 2, 2 ranks x 1 thread")]:
    steps = [json.loads(l) for l in (work / name / "metrics.jsonl").read_text().splitlines()]
    secs = [s["seconds"] for s in steps]
    med = statistics.median(secs)
    base = base or med
    losses = [round(s["loss"], 5) for s in steps]
    print(f"{label:32s} median {med:6.2f} s/step (steps {[round(x, 2) for x in secs]}), "
          f"ratio to TP 1 {med / base:.2f}, losses {losses}")
PY
