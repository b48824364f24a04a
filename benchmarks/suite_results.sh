#!/usr/bin/env bash
# The default model's results table on real data (docs/results/default-ferplus.md), reproducible:
#   bash benchmarks/suite_results.sh ../shared/data/ferplus
# Writes one JSON per run into model_cards/results/emocap-default/ and the tables into docs/results/.
set -euo pipefail
FER=${1:-../shared/data/ferplus}
OUT=model_cards/results/emocap-default
CACHE=${EMOCAP_CACHE_DIR:-$HOME/.cache/emocap}/features
run() { emocap eval --root "$FER" --out "$OUT" --cache-dir "$CACHE" --no-progress --skip-existing "$@"; }
run --benchmark ferplus ferplus-soft --root "$FER" "$FER"
run --slices face
run --split valid
for view in upper-face lower-face histeq; do run --view "$view"; done
run --no-descriptions
run --class-names neutral joy shock sadness rage disgust fear contempt
run --class-names neutral joy shock sadness rage disgust fear contempt --no-descriptions
run --protocol linear-probe
run --protocol few-shot --shots 16 --seeds 0 1 2
emocap eval build "$OUT" --out docs/results/emocap-default
