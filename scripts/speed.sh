#!/usr/bin/env bash
# Speed of the shipped model, several runs (the 2 cores are shared, so one run says little):
#   scripts/speed.sh [RUNS]   → models/experiments/default.bench-runs.jsonl, one `callmood bench model --json` per line
set -euo pipefail
cd "$(dirname "$0")/.."
out=models/experiments/default.bench-runs.jsonl
: > "$out"
for _ in $(seq "${1:-5}"); do
  node --import tsx src/cli/main.ts bench model --model models/default --json >> "$out"
done
cat "$out"
