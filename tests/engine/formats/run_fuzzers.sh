#!/bin/sh
# formats.fuzz_headers: runs each libFuzzer target for a short while from the committed
# seeds (copied to a scratch corpus) and fails on any crash, sanitizer report, leak, timeout
# or out-of-memory. Usage: run_fuzzers.sh <dir with fuzz_*> <tests/engine/formats source dir>
# Crash inputs are kept in <dir>/fuzz_artifacts/ for reproduction (run the fuzzer on them).
set -u
bin_dir=$1
src_dir=$2
seconds=${TLM_FUZZ_SECONDS:-15}
work=$(mktemp -d "${TMPDIR:-/tmp}/tlm-fuzz-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$bin_dir/fuzz_artifacts"
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
for kind in safetensors gguf; do
  fuzzer="$bin_dir/fuzz_${kind}_header"
  log="$work/$kind.log"
  mkdir -p "$work/$kind"
  cp "$src_dir/fuzz_corpus/$kind"/* "$work/$kind/"
  "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -dict="$src_dir/fuzz_corpus/$kind.dict" -print_final_stats=1 \
    -artifact_prefix="$bin_dir/fuzz_artifacts/${kind}-" "$work/$kind" >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -1)
  echo "fuzz_${kind}_header: exit $rc; ${runs:-no completion line}"
  grep -E 'stat::(number_of_executed_units|peak_rss_mb|new_units_added)' "$log"
  if [ "$rc" -ne 0 ] || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$log"; then
    echo "fuzz_${kind}_header FAILED; log tail:"
    tail -60 "$log"
    status=1
  fi
done
exit $status
