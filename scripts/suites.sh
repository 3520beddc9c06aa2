#!/usr/bin/env bash
# Recipes trained and scored on the evaluation suites (models/suites.json; its rule decides between recipes).
#   scripts/suites.sh train RECIPE SEED      train RECIPE with the suites held out (dev speakers = validation)
#   scripts/suites.sh dev RECIPE SEED        score it on the dev suite (choosing), telephone channel, both regimes
#   scripts/suites.sh card RECIPE SEED       score it on the test and cross suites (the model card only), clean and
#                                            telephone, both regimes
#   scripts/suites.sh ship RECIPE SEED DIR   install that run as models/DIR (default or commercial), recorded in
#                                            models/experiments/suites/shipped.json for the card
# Recipes:
#   shipped     the recipe of models/default (cnn-fast, 8 kHz, speeds 0.95/1/1.05, mixed channel, adaptive
#               normalisation) on its three corpora: TESS, RAVDESS, CREMA-D. The incumbent.
#   all         the same recipe on every corpus but the cross one (adds ASED and nEMO).
#   commercial  the same recipe on CREMA-D alone: the only data here whose licence allows commercial use.
# Every seed shares the channel plans of data seed 1 (--data-seed 1), so seeds 2.. reuse the extracted features and
# vary initialisation, window order and dropout. Models go to .cache/experiments/suites-RECIPE-seedN, figures to
# models/experiments/suites/.
set -euo pipefail
source "$(dirname "$0")/common.sh"
S=models/suites.json
R="$E/suites"
mkdir -p "$R"
part=${1:?part: train, dev or card} recipe=${2:?recipe: shipped, all or commercial} seed=${3:?seed}
name="suites-$recipe-seed$seed"
case "$recipe" in
  shipped) corpora=(--corpus tess,ravdess,crema-d) ;;
  all) corpora=() ;;
  commercial) corpora=(--corpus crema-d) ;;
  *) echo "unknown recipe '$recipe'; allowed: shipped, all, commercial" >&2; exit 2 ;;
esac
score() { # suite channel adapt
  cm evaluate --model "$W/$name" --manifest "$M" --suites "$S" --suite "$1" --channel "$2" --adapt "$3" \
    --workers "${WORKERS:-1}" --json "$R/$name.$1.$2.$3.json" > "$R/$name.$1.$2.$3.txt"
}
case "$part" in
  train)
    t0=$SECONDS
    cm train --manifest "$M" "${corpora[@]}" --suites "$S" --arch cnn-fast --channel mixed --normalization adaptive \
      --epochs "${EPOCHS:-16}" --patience 4 --window-hop 90 --feature-rate 8000 --speed-perturb 0.95,1,1.05 \
      --seed "$seed" --data-seed 1 --workers "${WORKERS:-1}" --out "$W/$name"
    echo "{\"trainingWallSeconds\": $((SECONDS - t0))}" > "$R/$name.time.json"
    cp "$W/$name/metadata.json" "$R/$name.metadata.json"
    cp "$W/$name/training-curves.svg" "$R/$name.training-curves.svg"
    ;;
  dev)
    for adapt in call clip; do score dev telephone $adapt; done
    ;;
  card)
    for suite in test cross; do for ch in telephone clean; do for adapt in call clip; do score $suite $ch $adapt; done; done; done
    ;;
  ship)
    dir=${4:?models folder: default or commercial}
    mkdir -p "models/$dir"
    cp "$W/$name"/{model.json,weights.bin,training-curves.svg} "models/$dir/"
    cp "$W/$name/metadata.json" "models/$dir/" # last: a directory with metadata.json is complete
    node -e 'const f=process.argv[1],k=process.argv[2],v=process.argv[3],fs=require("fs");const o=fs.existsSync(f)?JSON.parse(fs.readFileSync(f,"utf8")):{};o[k]=v;fs.writeFileSync(f,JSON.stringify(o,null,2)+"\n")' "$R/shipped.json" "$dir" "$name"
    cm bench model --model "models/$dir" --json > "$R/$name.bench.json"
    ;;
  *) echo "unknown part '$part'; allowed: train, dev, card, ship" >&2; exit 2 ;;
esac
