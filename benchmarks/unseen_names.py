"""Label names the model never saw in training: a 3-way joy / rage / shock choice on FER+ test faces.

The training captions avoid the words "joy", "rage" and "shock" (emocap.captioning's vocabulary), so scoring the
happiness, anger and surprise test images against those three names measures what the text tower makes of new
words: with the prompt set's templates only (the words alone) and with the class descriptions the taxonomy maps
the words to. The model card quotes this script's output.

Usage (from the repo root)::

    python benchmarks/unseen_names.py --root ../shared/data/ferplus            # embedded default, first 600 faces
    python benchmarks/unseen_names.py --root ../shared/data/ferplus --model runs/x/best --limit 0   # whole split
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from emocap import ZeroShotClassifier
from emocap.ferplus import EMOTIONS, FerPlusSplit

NEW_NAMES = {"happiness": "joy", "anger": "rage", "surprise": "shock"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default="../shared/data/ferplus", help="FER+ root (FER2013Test/ + labels)")
    p.add_argument("--model", default=None, help="model id (default: the embedded default model)")
    p.add_argument("--limit", type=int, default=600,
                   help="use the happiness/anger/surprise faces among the first N majority-protocol test images "
                        "(0: all; default 600)")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = p.parse_args(argv)

    split = FerPlusSplit(args.root, "test")
    try:
        pairs = split.majority()
        if args.limit:
            pairs = pairs[: args.limit]
        wanted = {EMOTIONS.index(c): i for i, c in enumerate(NEW_NAMES)}
        picked = [(rec, wanted[label]) for rec, label in pairs if label in wanted]
        images = [split.load(rec) for rec, _ in picked]
    finally:
        split.close()
    truth = np.array([t for _, t in picked])
    names = list(NEW_NAMES.values())
    report = {"model": args.model or "default", "limit": args.limit, "n": len(picked),
              "counts": {old: int((truth == i).sum()) for i, old in enumerate(NEW_NAMES)}}
    clf = ZeroShotClassifier.from_pretrained(args.model, labels=names)
    features = clf.encode_images(images)
    for label, prompt_set in (("templates_only", clf.prompt_set.without_descriptions()),
                              ("with_descriptions", clf.prompt_set)):
        probs = clf.probs_from_features(features, names, prompt_set)
        report[label] = round(float((probs.argmax(1) == truth).mean()) * 100, 1)
    print(f"{report['n']} happiness/anger/surprise faces among the first {args.limit or 'all'} FER+ test images "
          f"({report['counts']}); 3-way {'/'.join(names)} accuracy (chance 33.3%):")
    print(f"  templates only (the words alone): {report['templates_only']:.1f}%")
    print(f"  templates + class descriptions:   {report['with_descriptions']:.1f}%")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
