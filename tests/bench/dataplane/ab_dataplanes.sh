#!/bin/bash
# Two (or more) dataplane binaries against each other over memif, runs alternated so that the
# machine's drift (a shared VM's speed moves by 10-20% within minutes) falls on all of them
# alike: prints each run's delivered rate, errors and dataplane CPU per message, then each
# binary's mean. One run's CPU per message varies by over 10% on 2 shared cores (an adaptive
# worker's sleeping and waking), so compare means of several rounds, never single runs.
#
# Usage (repository root, root, release build): keep the old binary first, e.g.
#   git worktree add /tmp/old OLD_COMMIT && meson setup /tmp/old/build --buildtype=release \
#     && ninja -C /tmp/old/build dataplane/herald-dataplane
#   TMPDIR=/dev/shm tests/bench/dataplane/ab_dataplanes.sh RATE ROUNDS \
#     /tmp/old/build/dataplane/herald-dataplane build/rel/dataplane/herald-dataplane
# TMPDIR=/dev/shm puts the node's store on tmpfs (no disk in the figure). The control plane
# and the loadgen are build/rel's (BUILD= to change); each run is memif_vs_kernel.py's
# one-to-one scenario, 10 s, 1,000 connections.
# AB_ROLE=loadgen alternates herald-loadgen binaries instead (the dataplane then build/rel's)
# and prints the loadgen's CPU per message.
set -u
if [ $# -lt 4 ]; then
  echo "usage: [AB_ROLE=dataplane|loadgen] $0 RATE ROUNDS BINARY BINARY..." >&2
  exit 64
fi
rate=$1
rounds=$2
shift 2
B=${BUILD:-build/rel}
role=${AB_ROLE:-dataplane}
case "$role" in
  dataplane | loadgen) ;;
  *)
    echo "AB_ROLE must be dataplane or loadgen" >&2
    exit 64
    ;;
esac
here=$(dirname "$0")
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq 1 "$rounds"); do
  for binary in "$@"; do
    dataplane=$B/dataplane/herald-dataplane
    loadgen=$B/tools/loadgen/herald-loadgen
    if [ "$role" = dataplane ]; then dataplane=$binary; else loadgen=$binary; fi
    out=$(timeout 300 /usr/bin/python3 "$here/memif_vs_kernel.py" \
      "$B/controlplane/herald-controlplane" "$dataplane" "$loadgen" \
      10 "$rate" 1000 memif 2>&1)
    delivered=$(grep -o '"msgs_per_s": [0-9.]*' <<< "$out" | head -1 | awk '{print $2}')
    errors=$(grep -o '"errors": {[^}]*}' <<< "$out" | head -1 | cut -d' ' -f2-)
    us=$(grep -o "\"${role}_us_per_msg\": [0-9.]*" <<< "$out" | head -1 | awk '{print $2}')
    if [ -z "$us" ]; then
      echo "round $round $binary: no result" >&2
      tail -5 <<< "$out" >&2
      continue
    fi
    echo "$(date -u +%H:%M:%S) round $round $binary delivered/s ${delivered:-?}" \
      "errors ${errors:-?} ${role}_us_per_msg $us"
    echo "$binary $us" >> "$results"
  done
done
awk '{sum[$1] += $2; n[$1]++; runs[$1] = runs[$1] " " $2}
     END {for (d in sum) printf "%s: mean %.2f us per message over %d runs:%s\n",
                                d, sum[d] / n[d], n[d], runs[d]}' "$results"
