#!/usr/bin/env bash
# Does joint MPA-FER prompt alignment help the default model's second (rebalancing) stage? A paired comparison over
# seeds, both arms started from the same stage-1 checkpoint, every run scored on FER+ valid (what the decision uses)
# and FER+ test with `emocap eval` (docs/training.md, "Joint prompt alignment in the default recipe"):
#   bash benchmarks/stage2_prompts.sh [STAGE1_BEST] [FERPLUS_ROOT] [SEEDS...]
#   e.g. bash benchmarks/stage2_prompts.sh runs/default/best ../shared/data/ferplus 1 2 3
# Arm "plain": train/configs/default-rebalance.yaml as it was before this comparison (no prompt terms).
# Arm "prompts": the same + prompt.* (soft prompts, description and prototype alignment, global + top-k patch score),
#                the settings of the short-budget ablation's rows 4 and 6.
# Runs go to runs/stage2/<arm>-seed<s>, results to results/stage2/; a finished run or result is not redone, an
# interrupted run resumes.
set -euo pipefail
STAGE1=${1:-runs/default/best}
FER=${2:-../shared/data/ferplus}
shift $(( $# < 2 ? $# : 2 ))
SEEDS=${*:-1 2 3}
PLAIN="loss.class_prompts=1.0 prompt.weight=0.0 prompt.align_weight=0.0 prompt.prototype_weight=0.0"
PROMPTS="prompt.weight=1.0 prompt.align_weight=0.5 prompt.prototype_weight=0.5 prompt.prototype_samples=2048
         prompt.patch_weight=0.5 prompt.patch_topk=2"
for seed in $SEEDS; do
  for arm in plain prompts; do
    out=runs/stage2/$arm-seed$seed
    if [ "$arm" = plain ]; then extra=$PLAIN; else extra=$PROMPTS; fi
    if [ ! -f "$out/final/open_clip_model.safetensors" ]; then
      # shellcheck disable=SC2086
      emocap train --config train/configs/default-rebalance.yaml --out "$out" --quiet \
        --set init_from="$STAGE1" seed="$seed" $extra
    fi
    for split in valid test; do
      # the model's own prompts (learned ones in the prompts arm), and the hand prompts (basic8 templates + class
      # descriptions: what the embedded default's classifier uses for any label)
      emocap eval --root "$FER" --split "$split" --model "$out/best" --out results/stage2 --no-progress --skip-existing
      emocap eval --root "$FER" --split "$split" --model "$out/best" --out results/stage2-hand --prompts basic8 \
        --no-progress --skip-existing
    done
  done
done
python - <<'EOF'
import json, pathlib, statistics
METRICS = ("war", "uar", "macro_f1")
rows = {}
for folder, prompts in (("results/stage2", "own"), ("results/stage2-hand", "hand")):
    for f in sorted(pathlib.Path(folder).glob("*.json")):
        r = json.loads(f.read_text())
        arm, seed = pathlib.Path(r["model_id"]).parent.name.rsplit("-seed", 1)  # runs/stage2/<arm>-seed<s>/best
        if arm == "plain" and prompts == "hand":
            continue  # the plain arm's own prompts are the hand prompts
        key = arm if arm == "plain" else f"{arm} ({prompts} prompts)"
        rows.setdefault(key, {}).setdefault(int(seed), {})[r["split"]] = tuple(100 * r[m] for m in METRICS)
head = " | ".join(f"{split} {name}" for split in ("valid", "test") for name in ("WAR", "UAR", "macro F1"))
print(f"| arm | seed | {head} |\n|---|---|" + "---|" * 6)
for arm, seeds in sorted(rows.items()):
    for seed, s in sorted(seeds.items()):
        cells = " | ".join(f"{s[k][i]:.2f}" if k in s else "-" for k in ("valid", "test") for i in range(3))
        print(f"| {arm} | {seed} | {cells} |")
    if len(seeds) > 1:
        cells = []
        for k in ("valid", "test"):
            for i in range(3):
                got = [s[k][i] for s in seeds.values() if k in s]
                cells.append(f"{statistics.mean(got):.2f} ({statistics.stdev(got):.2f})" if len(got) > 1 else "-")
        print(f"| {arm} | mean (sd) | " + " | ".join(cells) + " |")
EOF
