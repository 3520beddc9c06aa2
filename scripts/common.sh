# Sourced by the model card's experiment scripts (experiments.sh, seeds.sh): run from the project root, with the
# data folder (DATA, default ../shared/data), the results folder and the experiment models' folder.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DATA=${DATA:-../shared/data}
M="$DATA/manifest.csv"
E=models/experiments
W=.cache/experiments
mkdir -p "$E" "$W"
cm() { node --import tsx src/cli/main.ts "$@"; }
