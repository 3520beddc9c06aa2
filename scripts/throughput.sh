#!/usr/bin/env bash
# The README's speed figures for replay and concurrent calls, several runs each (the 2 shared cores drift, so one
# run says little). Each line of the output files is one `callmood bench … --json` result with the time it started
# and the load average before it.
#   scripts/throughput.sh [REPLAY_RUNS] ["CALLS…"] [CALL_RUNS]   e.g. scripts/throughput.sh 5 "400 500" 2
# → bench/results/replay.jsonl, bench/results/calls.jsonl (appended)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
cm() { node dist/src/cli/main.js "$@"; }
npm run build > /dev/null
stamp() { printf '{"started":"%s","loadBefore":%s,' "$(date -u +%FT%TZ)" "$(cut -d' ' -f1 /proc/loadavg)"; }
for _ in $(seq "${1:-5}"); do
  { stamp; cm bench replay --json | sed 's/^{//'; } >> bench/results/replay.jsonl
done
for n in ${2:-400 500}; do
  for _ in $(seq "${3:-2}"); do
    { stamp; cm bench calls --calls "$n" --seconds 20 --json | sed 's/^{//'; } >> bench/results/calls.jsonl
  done
done
tail -n 20 bench/results/replay.jsonl bench/results/calls.jsonl
