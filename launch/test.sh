#!/usr/bin/env bash
# The test command: sets up what is missing (launch/setup.sh), builds, and runs the whole
# test suite with CTest. Labels: unit (GoogleTest), parity (against transformers, PEFT,
# tokenizers, gguf, rouge_score), fuzz (libFuzzer), mpi (multi-rank), gpu (CUDA variants: reported
# Skipped without a GPU, as tests that need a missing default model are). Extra arguments go to
# ctest (e.g. -L unit, -R model).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source launch/setup.sh
printf '\n[tlm test] ctest\n'
ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
