"""``emocap caption``: build an EmoCap-style caption dataset (webdataset shards) from a labelled face dataset."""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from .build import build_captions
from .sources import SOURCES
from .templates import TemplateWriter

EXAMPLES = """examples:
  emocap caption --dataset ferplus --root ../shared/data/ferplus --split train --out data/captions/ferplus-train
  emocap caption --dataset imagefolder --root my_faces/ --out data/captions/my-faces --seed 1
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "caption",
        help="build EmoCap-style caption shards (global, local, summary) from a labelled face dataset",
        description="Turn a labelled face dataset into webdataset shards with EmoCap-style captions: a global "
        "caption from the label or vote distribution, one local sentence per face region with an action-unit "
        "reading, and a summary. Interrupted runs resume: complete shards are kept.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", choices=sorted(SOURCES), default="ferplus", help="input layout (default: ferplus)")
    p.add_argument("--root", required=True, help="dataset root (FER+: folder with FER2013Train/ or FER2013Train.tar)")
    p.add_argument("--split", default=None, help="split to caption (FER+: train, valid or test; default train)")
    p.add_argument("--out", required=True, help="output folder for the shards, sizes.json and report.json")
    p.add_argument("--shard-size", type=int, default=5000, help="samples per shard (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="wording seed: same seed, same captions (default 0)")
    p.add_argument("--limit", type=int, default=None, help="caption only the first N samples (quick checks)")
    p.add_argument("--shards", default=None, help="only these shard indices, e.g. '0,2' (split a job across processes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    split = args.split or ("train" if args.dataset == "ferplus" else None)
    try:
        samples, problems = SOURCES[args.dataset](args.root, split)
    except (FileNotFoundError, ValueError) as e:
        print(f"emocap caption: error: {e}", file=sys.stderr)
        return 2
    if args.limit:
        samples = samples[: args.limit]
    if args.shard_size < 1:
        print("emocap caption: error: --shard-size must be at least 1", file=sys.stderr)
        return 2
    shards = [int(x) for x in args.shards.split(",")] if args.shards else None
    prefix = f"{args.dataset}-{split}" if split else args.dataset
    report = build_captions(
        samples, args.out, writer=TemplateWriter(seed=args.seed), shard_size=args.shard_size, prefix=prefix,
        label_problems=problems, progress=not args.quiet, shard_indices=shards,
    )
    print(f"wrote {report['samples_written']} captioned samples in {report['shards']} shards to {args.out}")
    if report["resumed_samples"]:
        print(f"resumed: {report['resumed_samples']} samples were already in complete shards")
    if problems:
        print(f"{len(problems)} label-file rows skipped, e.g. {problems[0][0]}: {problems[0][1]}")
    if report["samples_skipped"]:
        reasons = Counter(s["reason"] for s in report["skipped"])
        print(f"skipped {report['samples_skipped']} samples:")
        for reason, n in reasons.most_common(5):
            print(f"  {n:6d}  {reason}")
    print(f"report: {args.out}/report.json")
    return 0
