#!/usr/bin/env bash
# Run-to-run spread of the cross-corpus yardstick (RAVDESS → TESS, clean): the A1 adaptive run again with other
# seeds, per architecture, so that a difference between architectures can be told from seed noise.
#   scripts/seeds.sh "ARCHS" "SEEDS"   e.g. scripts/seeds.sh "cnn-fast cnn" "2"
#   FEATURE_RATE=8000 scripts/seeds.sh cnn-fast "1 2 3"   the same with 8 kHz features (files named *-8k-seedN.*)
#   FEATURE_KIND=logmel …   log-mel energies instead of MFCC (files named *-logmel-seedN.*)
#   SPEEDS=0.9,1,1.1 …      speed perturbation: every training clip once per speed (files named *-sp-seedN.*;
#                           SPEEDS_TAG=sp5 names another set of speeds *-sp5-seedN.*)
# Files: models/experiments/rav-adaptive-ARCH-seedN.* (the seed-1 runs are A1's rav-adaptive[-ARCH].*).
set -euo pipefail
source "$(dirname "$0")/common.sh"
RATE=${FEATURE_RATE:-16000}
KIND=${FEATURE_KIND:-mfcc}
sfx=""
[ "$RATE" = 16000 ] || sfx="-$((RATE / 1000))k"
[ "$KIND" = mfcc ] || sfx="$sfx-$KIND"
speed=()
[ -z "${SPEEDS:-}" ] || { speed=(--speed-perturb "$SPEEDS"); sfx="$sfx-${SPEEDS_TAG:-sp}"; }
for seed in ${2:-2}; do
  for arch in ${1:-cnn-fast cnn}; do
    name="rav-adaptive-$arch$sfx-seed$seed"
    cm train --manifest "$M" --corpus ravdess --arch "$arch" --channel mixed --normalization adaptive --epochs 15 --patience 4 \
      --seed "$seed" --feature-rate "$RATE" --feature-kind "$KIND" "${speed[@]}" --out "$W/$name"
    cp "$W/$name/training-curves.svg" "$E/$name.training-curves.svg"
    cp "$W/$name/metadata.json" "$E/$name.metadata.json"
    cm evaluate --model "$W/$name" --manifest "$M" --corpus tess --channel clean --json "$E/$name.on-tess.clean.json" > "$E/$name.on-tess.clean.txt"
  done
done
