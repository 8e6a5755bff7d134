#!/bin/sh
# Runs one libFuzzer target for a bounded time on a COPY of its checked-in seed corpus, inside
# the build directory, so nothing is ever written into the source tree.
#   run_fuzzer.sh FUZZER SEED_DIR WORK_DIR SECONDS [extra libFuzzer flags...]
set -eu
fuzzer=$1
seeds=$2
work=$3
seconds=$4
shift 4

rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
cp "$seeds"/* "$work/corpus/"

# UBSan reports are recoverable by default; make them fatal so the fuzzer stops on one.
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export UBSAN_OPTIONS

exec "$fuzzer" \
  -max_total_time="$seconds" \
  -rss_limit_mb=2048 \
  -artifact_prefix="$work/artifacts/" \
  -print_final_stats=1 \
  "$@" \
  "$work/corpus"
