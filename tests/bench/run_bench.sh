#!/usr/bin/env bash
# Side-by-side whole-process timings of tlm against its peer (HF transformers + PEFT doing the
# same work, tests/bench/peer.py) on the default model. Not part of the test suite.
#   tests/bench/run_bench.sh [DATA] [N]
# Uses hyperfine (Debian package) for the A/B timing; both sides get 2 threads.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$root/launch/setup.sh" >/dev/null
data=${1:-$root/configs/demo-stream.jsonl}
n=${2:-16}
model=$TLM_DEFAULT_MODEL
tlm="$root/build/launch/tlm"
out=$(mktemp -d)
command -v hyperfine >/dev/null || apt-get install -y -q hyperfine >/dev/null
hyperfine --warmup 1 --runs 3 --export-markdown "$out/adapt.md" \
  -n tlm "$tlm adapt --config $root/configs/tlm-online.yaml --data $data --max-samples $n --generate false --answer-nll false --threads 2 --output-dir $out/tlm" \
  -n hf+peft "BENCH_THREADS=2 $TLM_PYTHON $root/tests/bench/peer.py adapt $model $data $n"
hyperfine --warmup 1 --runs 3 --export-markdown "$out/generate.md" \
  -n tlm "$tlm generate --prompts-file $data --max-new-tokens 64 --batch-size 8 --threads 2" \
  -n hf "BENCH_THREADS=2 $TLM_PYTHON $root/tests/bench/peer.py generate $model $data $n 64"
cat "$out/adapt.md" "$out/generate.md"
