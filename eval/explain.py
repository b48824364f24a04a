"""``emocap eval explain``: which facial behaviour, in words, is closest to an image and so drove its scores.

The ranking itself is core (:mod:`emocap.explain`, shared with the web demo); this module is the command and
re-exports :func:`explain` and :func:`region_sentences` for existing callers.
Flow: ``emocap eval explain face.png`` (or :func:`explain` from Python) -> the classifier's image feature ->
cosine similarity to (a) a bank of local face-region sentences with their FACS action units
(``emocap/data/face_regions.json``, the EmoCap "local" caption style) and (b) the class descriptions of the
classifier's prompt set -> the most similar sentences, beside the prediction. The sentence features are encoded
once per bank and cached on the classifier.

This is a similarity read-out of the same embedding the classifier scores with, not a causal attribution: a
sentence ranks high when its text embedding lies near the image's.
"""

from __future__ import annotations

import argparse
import json
import sys

from emocap.explain import explain, region_sentences

from emocap.cli_options import add_output_options

__all__ = ["explain", "region_sentences", "add_parser", "run_explain"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "explain",
        help="which face-region behaviour and class descriptions are closest to an image",
        description="For each image: the prediction, the local face-region sentences (with FACS action units) "
                    "and the class descriptions most similar to it in the model's embedding space.",
        epilog="example:\n  emocap eval explain examples/astronaut_face.png --top-k 3",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", nargs="+", help="face images (pre-cropped)")
    p.add_argument("--top-k", type=int, default=5, dest="explain_top_k", help="sentences per list (default 5)")
    p.add_argument("--model", default=None, help="model id (default: the embedded default model)")
    p.add_argument("--labels", nargs="+", default=None, help="label names (default: the model's labels)")
    p.add_argument("--prompts", default=None, help="prompt set whose class descriptions to rank (default: the model's)")
    p.add_argument("--device", default=None, help="torch device (default: automatic)")
    p.add_argument("--json", action="store_true", dest="explain_json", help="one JSON object per image")
    add_output_options(p)
    p.set_defaults(eval_func=run_explain)
    return p


def run_explain(args) -> int:
    from emocap import ZeroShotClassifier
    from emocap.images import ImageLoadError
    from emocap.models import ModelLoadError

    if args.explain_top_k < 1:
        print(f"emocap eval explain: error: --top-k must be positive, got {args.explain_top_k}", file=sys.stderr)
        return 2
    try:
        clf = ZeroShotClassifier.from_pretrained(args.model, labels=args.labels, prompts=args.prompts,
                                                 device=args.device)
    except (ModelLoadError, FileNotFoundError, ValueError) as e:
        print(f"emocap eval explain: error: {e}", file=sys.stderr)
        return 2
    failed = 0
    for path in args.images:
        try:
            result = explain(clf, path, top_k=args.explain_top_k)
        except ImageLoadError as e:
            print(f"skipped {e}", file=sys.stderr)
            failed += 1
            continue
        if args.explain_json:
            print(json.dumps({"file": path, **result}))
            continue
        top = result["predictions"][0]
        print(f"{path}: {top['label']} {top['score']:.3f}")
        print("  closest face-region behaviour:")
        for r in result["regions"]:
            aus = "+".join(r["aus"]) or "neutral"
            print(f"    {r['similarity']:+.3f}  [{r['region']}, {aus}] {r['sentence']}")
        if result["descriptions"]:
            print("  closest class descriptions:")
            for d in result["descriptions"]:
                print(f"    {d['similarity']:+.3f}  [{d['label']}] {d['sentence']}")
    if failed:
        print(f"{failed} of {len(args.images)} images skipped", file=sys.stderr)
    return 1 if failed == len(args.images) else 0
