#!/usr/bin/env bash
# Open-vocabulary results of one or more models on FER+ test, side by side (issue: "Open vocabulary"):
#   bash benchmarks/open_vocabulary.sh ../shared/data/ferplus OUT_DIR MODEL [MODEL ...]
# MODEL is any model id (default, a folder, local-dir:...). For each model: canonical names (templates +
# descriptions), the reported word list (openvocab-report, 3 rounds + per word), the behaviour phrases and the
# compound test (ferplus-compound), then one table over all of them (emocap eval build). The tuning list is never
# run here: it is for model selection only. EVAL_ARGS adds flags to every run, e.g. EVAL_ARGS=--no-word-bridge for
# the models' own text towers alone (emocap/word_bridge.py).
set -euo pipefail
FER=${1:?FER+ root}; OUT=${2:?output folder}; shift 2
for MODEL in "$@"; do
  run() { emocap eval --model "$MODEL" --root "$FER" --out "$OUT" --no-progress ${EVAL_ARGS:-} "$@"; }
  run
  run --vocabulary openvocab-report
  run --vocabulary behaviour-phrases
  run --benchmark ferplus-compound
done
emocap eval build "$OUT" --out "$OUT/tables"
