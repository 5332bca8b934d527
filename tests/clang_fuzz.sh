#!/bin/sh
# The compile and link launcher of the libFuzzer targets (tests/fuzzing.cmake). The project
# compiles with g++, which has no libFuzzer: CMake hands this script the command it would run
# (its compiler first), and the script runs clang++ on the same arguments instead, adding
# libFuzzer's coverage and AddressSanitizer + UBSan. Only the target's own sources are
# compiled here; the engine libraries it links stay g++-built (uninstrumented).
# Usage: clang_fuzz.sh CLANGXX compile|link COMPILER ARGS...
set -eu
clang=$1 mode=$2
shift 3
case $mode in
  compile) exec "$clang" "$@" -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
             -fno-sanitize-recover=all ;;
  link) exec "$clang" "$@" -fsanitize=fuzzer,address,undefined ;;
  *) echo "clang_fuzz.sh: mode must be compile or link, got '$mode'" >&2; exit 2 ;;
esac
