#!/usr/bin/env bash
# Many-node mode's cost, for bench/RESULTS.md: the same number of calls against one node without Redis and against
# three nodes sharing a Redis (started here on a free loopback port in a temporary folder, AOF everysec, and stopped
# at the end), alternating, several runs each. Each line of the output is one `callmood bench calls … --json` result
# with the time it started and the load average before it.
#   scripts/nodes-bench.sh [CALLS] [RUNS]   e.g. scripts/nodes-bench.sh 300 2   → bench/results/nodes.jsonl (appended)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
calls=${1:-300}
runs=${2:-2}
npm run build > /dev/null
dir=$(mktemp -d)
port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly yes --appendfsync everysec --daemonize no --loglevel warning &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null; wait "$redis_pid" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping > /dev/null 2>&1 && break; sleep 0.1; done
run() {
  local started load out
  started=$(date -u +%FT%TZ)
  load=$(cut -d' ' -f1 /proc/loadavg)
  out=$(node dist/src/cli/main.js bench calls --calls "$calls" --seconds 20 --json "$@")
  printf '{"started":"%s","loadBefore":%s,%s\n' "$started" "$load" "${out#\{}" >> bench/results/nodes.jsonl
}
for _ in $(seq "$runs"); do
  run
  run --nodes 3 --redis "redis://127.0.0.1:$port"
done
tail -n $((2 * runs)) bench/results/nodes.jsonl
