#!/bin/sh
# fuzz.<name>: runs one libFuzzer target for TLM_FUZZ_SECONDS (default 15) from its committed
# seeds (copied to a scratch corpus) and fails on any crash, sanitizer report, leak, timeout
# or out-of-memory. Crash inputs are kept in ARTIFACT_DIR for reproduction (run the fuzzer on
# the file). TLM_FUZZ_OPTIONS adds libFuzzer flags.
# Usage: run_fuzzer.sh FUZZER SEED_DIR ARTIFACT_DIR MAX_LEN [DICT]
set -u
fuzzer=$1 seeds=$2 artifacts=$3 max_len=$4 dict=${5:-}
seconds=${TLM_FUZZ_SECONDS:-15}
name=$(basename "$fuzzer")
work=$(mktemp -d "${TMPDIR:-/tmp}/tlm-fuzz-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$artifacts" "$work/corpus"
cp "$seeds"/* "$work/corpus/"
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
set -- -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$max_len" -print_final_stats=1 \
  -artifact_prefix="$artifacts/$name-"
[ -n "$dict" ] && set -- "$@" -dict="$dict"
# shellcheck disable=SC2086
set -- "$@" ${TLM_FUZZ_OPTIONS:-}
(cd "$work" && "$fuzzer" "$@" "$work/corpus" >"$work/log" 2>&1)
rc=$?
runs=$(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$work/log" | tail -1)
echo "$name: exit $rc; ${runs:-no completion line}; seeds $(ls "$seeds" | wc -l), corpus now $(ls "$work/corpus" | wc -l)"
grep -E 'stat::(number_of_executed_units|peak_rss_mb|new_units_added)' "$work/log"
if [ "$rc" -ne 0 ] || grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:' "$work/log"; then
  echo "$name FAILED; log tail:"
  tail -60 "$work/log"
  exit 1
fi
