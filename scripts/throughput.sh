#!/usr/bin/env bash
# The speed figures of bench/RESULTS.md for replay and concurrent calls, several runs each (the 2 shared cores drift, so one
# run says little). Each line of the output files is one `callmood bench … --json` result with the time it started
# and the load average before it.
#   scripts/throughput.sh [REPLAY_RUNS] ["CALLS…"] [CALL_RUNS]   e.g. scripts/throughput.sh 5 "400 500" 2
# → bench/results/replay.jsonl, bench/results/calls.jsonl (appended)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
cm() { node dist/src/cli/main.js "$@"; }
npm run build > /dev/null
# run FILE ARGS…: one benchmark, its JSON line prefixed with when it started and the load before it; appended only
# once the benchmark has finished, so a failed run leaves no half line.
run() {
  local file=$1 started load out
  shift
  started=$(date -u +%FT%TZ)
  load=$(cut -d' ' -f1 /proc/loadavg)
  out=$(cm "$@")
  printf '{"started":"%s","loadBefore":%s,%s\n' "$started" "$load" "${out#\{}" >> "$file"
}
for _ in $(seq "${1:-5}"); do run bench/results/replay.jsonl bench replay --json; done
for n in ${2:-400 500}; do
  for _ in $(seq "${3:-2}"); do run bench/results/calls.jsonl bench calls --calls "$n" --seconds 20 --json; done
done
tail -n 20 bench/results/replay.jsonl bench/results/calls.jsonl
