"""The ``emocap eval`` subcommand: benchmark registry + classifier -> zero-shot evaluation -> result JSON.

Flow: ``emocap/cli.py`` calls :func:`add_parser` on its subparsers and later ``args.func(args)`` = :func:`run`,
which loads the benchmark (``emocap.eval.benchmarks``), builds a :class:`emocap.ZeroShotClassifier` on the
benchmark's class names, runs ``emocap.eval.zeroshot.evaluate`` and writes the result with ``write_result``.

Example::

    emocap eval --benchmark ferplus --root /data/ferplus --split test --out results/
    emocap eval --benchmark imagefolder --root my_faces/ --model local-dir:runs/exp1 --limit 200
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from emocap.ferplus import LabelFileError

from .benchmarks import BenchmarkData, benchmark_names, get_benchmark
from .metrics import format_summary
from .zeroshot import evaluate, write_result

__all__ = ["add_parser", "run", "build_classifier"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``eval`` on an argparse subparsers object; sets ``func=run``."""
    p = subparsers.add_parser(
        "eval",
        help="zero-shot evaluation of a model on a FER benchmark",
        description="Zero-shot evaluation on a registered benchmark; writes one result JSON per run "
                    "(never overwritten) and prints WAR, UAR and macro F1. Images that fail to load and "
                    "malformed annotation rows are skipped and listed in the result.",
        epilog="examples:\n"
               "  emocap eval --root ../shared/data/ferplus                    # FER+ test, majority protocol\n"
               "  emocap eval --root ../shared/data/ferplus --split valid --model runs/default/best\n"
               "  emocap eval --benchmark imagefolder --root my_faces/         # one sub-folder per class\n"
               "  emocap eval --root ../shared/data/ferplus --no-descriptions \\\n"
               "      --class-names neutral joy shock sadness rage disgust fear contempt   # unseen words\n"
               "  emocap eval --benchmark dfew --root DFEW/ --split fold1 --option frames=16\n"
               "benchmarks: " + ", ".join(benchmark_names()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=None,
                   help="model id: a bundled model name, hf-hub:org/repo, local-dir:/path or a folder "
                        "(default: the embedded default model)")
    p.add_argument("--benchmark", default="ferplus", choices=benchmark_names(),
                   help="benchmark registry name (default: ferplus)")
    p.add_argument("--root", required=True,
                   help="dataset folder, e.g. the folder holding FER2013Test/ or FER2013Test.tar for ferplus, "
                        "or a folder with one sub-folder per class for imagefolder")
    p.add_argument("--split", default=None, help="split name (default: the benchmark's default; test for ferplus)")
    p.add_argument("--prompts", default=None,
                   help="prompt set: a bundled name or a JSON file (default: the model's own prompts)")
    p.add_argument("--class-names", nargs="+", default=None, metavar="NAME",
                   help="score the benchmark's classes under other names, in the benchmark's class order "
                        "(e.g. joy for happiness: zero-shot with words the model never saw)")
    p.add_argument("--no-descriptions", action="store_true",
                   help="use the prompt set's templates only, not its class descriptions")
    p.add_argument("--option", nargs="+", default=[], metavar="KEY=VALUE",
                   help="loader options of the benchmark, e.g. frames=16 (video sets), angles=all (KDEF)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: automatic)")
    p.add_argument("--out", default="results", help="folder for result JSON files (default: results/)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="evaluate only the first N samples (quick checks; recorded in the result)")
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    p.set_defaults(func=run)
    return p


class ModelUnavailable(Exception):
    """The model id cannot be resolved or loaded (the message says why); reported without a traceback."""


def build_classifier(args: argparse.Namespace, labels: Sequence[str]):
    """The classifier for a run, on the benchmark's class names (kept separate so tests can swap it)."""
    from emocap import ZeroShotClassifier
    from emocap.models import ModelLoadError

    try:
        clf = ZeroShotClassifier.from_pretrained(
            model_id=args.model, labels=list(labels), prompts=args.prompts, device=args.device
        )
    except ModelLoadError as e:
        raise ModelUnavailable(str(e)) from None
    if getattr(args, "no_descriptions", False):
        clf.prompt_set = clf.prompt_set.without_descriptions()
    return clf


def _error(message: str) -> int:
    print(f"emocap eval: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Run one zero-shot evaluation; returns the process exit code (0 ok, 2 bad input)."""
    if args.batch_size < 1:
        return _error(f"--batch-size must be positive, got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        return _error(f"--limit must be a positive number of samples, got {args.limit}")
    if args.prompts is not None:
        from emocap.prompts import load_prompt_set

        try:
            load_prompt_set(args.prompts)
        except (FileNotFoundError, ValueError) as e:
            return _error(str(e))

    try:
        bench = get_benchmark(args.benchmark)
        split = bench.resolve_split(args.split)
        options = dict(item.split("=", 1) for item in getattr(args, "option", []) if "=" in item)
        if len(options) != len(getattr(args, "option", [])):
            return _error(f"--option values must look like key=value, got {args.option}")
        data: BenchmarkData = bench.load(args.root, split, **options)
    except (FileNotFoundError, NotADirectoryError, LabelFileError, ValueError, KeyError) as e:
        return _error(str(e))

    if getattr(args, "class_names", None):
        if len(args.class_names) != len(data.classes) or len(set(args.class_names)) != len(args.class_names):
            data.close()
            return _error(f"--class-names needs {len(data.classes)} distinct names, one per class in the order "
                          f"{', '.join(data.classes)}; got {len(args.class_names)}")
        data.info = {**data.info, "class_names_renamed_from": list(data.classes)}
        data.classes = list(args.class_names)

    try:
        try:
            classifier = build_classifier(args, data.classes)
        except ModelUnavailable as e:
            return _error(str(e))
        record = evaluate(classifier, bench, root=args.root, split=split, batch_size=args.batch_size,
                          progress=not args.no_progress, limit=args.limit, data=data)
    finally:
        data.close()
    path = write_result(record, args.out)

    print(f"{record['model_id']} on {bench.name}/{split or '-'} ({record['protocol']}, "
          f"prompts {record['prompt_set']} {record['prompt_hash']}): {record['n']} images")
    for line in format_summary(record):
        print("  " + line)
    print(f"  skipped      {record['n_skipped']}")
    for source, reason in record["skipped"][:5]:
        print(f"    {source}: {reason}")
    if record["n_skipped"] > 5:
        print(f"    ... {record['n_skipped'] - 5} more in the result file")
    print(f"  result       {path}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Stand-alone entry point (``python -m emocap.eval.cli``) until the top-level CLI wires this in."""
    parser = argparse.ArgumentParser(prog="emocap")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
