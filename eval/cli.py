"""The ``emocap eval`` command: benchmark registry + model -> protocol -> one result JSON per run; and its
``build`` (tables, plots, model-index) and ``explain`` subcommands.

Flow: ``emocap/cli.py`` calls :func:`add_parser` on its subparsers and later ``args.func(args)`` = :func:`run`,
which for each ``--benchmark`` builds the run's :class:`~emocap.eval.run_spec.RunSpec` once (its identity:
cache keys, result header and file name all come from it), loads the data (``emocap.eval.registry``), builds a
:class:`emocap.ZeroShotClassifier` on the benchmark's class names, runs the protocol (zero-shot:
``emocap.eval.zeroshot``; linear probe / few-shot: ``emocap.eval.probe``) on image features cached per
model/benchmark/split/view (``emocap.eval.features``) and writes the result with ``write_result``. A zero-shot
request already answered for a local model is re-scored from the cached image and text features without loading
the model (``emocap.eval.text_cache``). ``--vocabulary`` runs the open-vocabulary protocol
(``emocap.eval.vocabulary``) on the same cached image features.
``emocap eval build`` is :mod:`emocap.eval.tables`; ``emocap eval explain`` is :mod:`emocap.eval.explain`.

Example::

    emocap eval --benchmark ferplus --root /data/ferplus --split test --out results/
    emocap eval --benchmark ferplus ferplus-soft --root /data/ferplus /data/ferplus --view upper-face
    emocap eval --root /data/ferplus --protocol linear-probe
    emocap eval build results/ --out results/tables
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from emocap.ferplus import LabelFileError
from emocap.cli_options import add_output_options
from emocap.images import ImageLoadError

from .registry import benchmark_names, get_benchmark
from .samples import BenchmarkData
from .feature_cache import FeatureCache
from emocap.metrics import format_summary
from .probe import probe_run
from .run_spec import ZEROSHOT as PROTOCOL, RunSpec, rename_classes
from .text_cache import CachedScorer, cached_scorer, save_for_run
from .views import view_names
from .vocabulary import (bundled_vocabularies, evaluate_vocabulary, format_vocabulary, load_vocabulary,
                         vocabulary_header)
from .zeroshot import evaluate_run, existing_result, write_result

__all__ = ["add_parser", "run", "build_classifier"]

PROTOCOLS = ("zeroshot", "linear-probe", "few-shot")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``eval`` (with its ``build`` and ``explain`` subcommands) on an argparse subparsers object."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model on FER benchmarks (zero-shot, linear probe, few-shot); build tables",
        description="Evaluate a model on registered benchmarks; writes one result JSON per (model, benchmark, "
                    "split, protocol, view, prompt set), never overwritten, and prints WAR, UAR and macro F1. "
                    "Image features are cached per model/benchmark/split/view, so another prompt set or protocol "
                    "costs seconds. Images that fail to load and malformed annotation rows are skipped and "
                    "listed in the result.",
        epilog="examples:\n"
               "  emocap eval --root ../shared/data/ferplus                    # FER+ test, majority protocol\n"
               "  emocap eval --root ../shared/data/ferplus --split valid --model runs/default/best\n"
               "  emocap eval --benchmark ferplus ferplus-soft --root D D      # several benchmarks, one root each\n"
               "  emocap eval --root D --view upper-face                       # lower half of the face masked\n"
               "  emocap eval --root D --protocol linear-probe                 # logistic regression on features\n"
               "  emocap eval --root D --protocol few-shot --shots 16 --seeds 0 1 2\n"
               "  emocap eval --benchmark imagefolder --root my_faces/         # one sub-folder per class\n"
               "  emocap eval --root D --no-descriptions \\\n"
               "      --class-names neutral joy shock sadness rage disgust fear contempt   # unseen words\n"
               "  emocap eval --root D --vocabulary openvocab-report          # open vocabulary: rounds, per word\n"
               "  emocap eval --benchmark ferplus-compound --root D           # two-emotion vote splits\n"
               "  emocap eval --benchmark dfew --root DFEW/ --split fold1 --option frames=16\n"
               "  emocap eval build results/ --out results/tables             # CSV/Markdown tables and plots\n"
               "  emocap eval explain face.png                                 # which behaviour drove the score\n"
               "benchmarks: " + ", ".join(benchmark_names()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=None,
                   help="model id: a bundled model name, hf-hub:org/repo, local-dir:/path or a folder "
                        "(default: the embedded default model); any open_clip model saved in the hub format, "
                        "e.g. hf-hub:timm/vit_base_patch16_clip_224.openai, runs through the same harness")
    p.add_argument("--pretrained", default=None,
                   help="with an open_clip architecture as --model (e.g. ViT-B-16): an open_clip pretrained tag "
                        "(e.g. openai; safetensors from the hub only) or a local .safetensors file: generic CLIP "
                        "baselines through the same harness")
    p.add_argument("--benchmark", nargs="+", default=["ferplus"], choices=benchmark_names(), metavar="NAME",
                   help="benchmark registry name(s) (default: ferplus); see the list below")
    p.add_argument("--root", nargs="+", default=None,
                   help="dataset folder, one per --benchmark (or one for all), e.g. the folder holding "
                        "FER2013Test/ or FER2013Test.tar for ferplus, or a folder with one sub-folder per class")
    p.add_argument("--split", default=None, help="split name (default: the benchmark's default; test for ferplus)")
    p.add_argument("--protocol", default=PROTOCOL, choices=PROTOCOLS,
                   help="zeroshot (default): text prompts; linear-probe: logistic regression on frozen features "
                        "of the train split (C chosen on the validation split); few-shot: the same on --shots "
                        "samples per class, averaged over --seeds")
    p.add_argument("--shots", type=int, default=16, help="samples per class for few-shot (default: 16)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="few-shot seeds (default: 0 1 2)")
    p.add_argument("--train-split", default=None, help="probe training split (default: the benchmark's train)")
    p.add_argument("--val-split", default=None, help="probe validation split (default: valid/val when it exists)")
    p.add_argument("--view", default=None, choices=["none"] + view_names(),
                   help="image view: faces (the photos protocol: each image through the face pipeline as "
                        "`emocap classify` frames it, reporting the share with no face found), upper-face, "
                        "lower-face (the other half masked) or histeq (histogram-equalised)")
    p.add_argument("--slices", default=None, choices=["none", "face"],
                   help="face: also report WAR/UAR per face attribute read from landmarks (mouth open, teeth "
                        "visible, head yaw); needs the captioning extra (dlib landmarks)")
    p.add_argument("--prompts", default=None,
                   help="prompt set: a bundled name or a JSON file (default: the model's own prompts)")
    p.add_argument("--class-names", nargs="+", default=None, metavar="NAME",
                   help="score the benchmark's classes under other names, in the benchmark's class order "
                        "(e.g. joy for happiness: zero-shot with words the model never saw)")
    p.add_argument("--vocabulary", default=None, metavar="NAME_OR_FILE",
                   help="open-vocabulary protocol: score the classes under a word list's words instead of their "
                        "names (rounds over all classes, and each word alone), from the zero-shot run's cached "
                        "image features; a bundled list (" + ", ".join(bundled_vocabularies()) + ") or a JSON "
                        "file (docs/eval.md)")
    p.add_argument("--no-descriptions", action="store_true",
                   help="use the prompt set's templates only, not its class descriptions")
    p.add_argument("--no-word-bridge", action="store_true",
                   help="encode names outside the taxonomy with the model's own text tower alone, without the "
                        "word bridge to the taxonomy's emotions (WordNet, sentence encoder; docs/labels.md)")
    p.add_argument("--option", nargs="+", default=[], metavar="KEY=VALUE",
                   help="loader options of the benchmark, e.g. frames=16 (video sets), angles=all (KDEF)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default: 64)")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: automatic)")
    p.add_argument("--out", default="results", help="folder for result JSON files (default: results/)")
    p.add_argument("--skip-existing", action="store_true",
                   help="do not rerun a (model, benchmark, split, protocol, view, prompts) whose result file "
                        "exists in --out")
    p.add_argument("--cache-dir", default=None,
                   help="image feature cache (default: $EMOCAP_CACHE_DIR/features or ~/.cache/emocap/features)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write cached image features")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="evaluate only the first N samples (quick checks; recorded in the result)")
    add_output_options(p, no_progress_alias=True)
    p.set_defaults(func=run)
    sub = p.add_subparsers(dest="eval_command", metavar="{build,explain}")
    for module in ("tables", "explain"):
        try:
            mod = __import__(f"emocap.eval.{module}", fromlist=["add_parser"])
        except ImportError:  # pragma: no cover - optional plotting dependencies
            continue
        mod.add_parser(sub)
    return p


class ModelUnavailable(Exception):
    """The model id cannot be resolved or loaded (the message says why); reported without a traceback."""


def build_classifier(spec: RunSpec, labels: Sequence[str]):
    """The classifier for a run, on the benchmark's class names (kept separate so tests can swap it)."""
    from emocap import ZeroShotClassifier
    from emocap.models import ModelLoadError

    try:
        clf = ZeroShotClassifier.from_pretrained(
            model_id=spec.model, labels=list(labels), prompts=spec.prompts, device=spec.device,
            pretrained=spec.pretrained, word_bridge=False if spec.no_word_bridge else None,
        )
    except ModelLoadError as e:
        raise ModelUnavailable(str(e)) from None
    if spec.no_descriptions:
        clf.prompt_set = clf.prompt_set.without_descriptions()
    return clf


def _error(message: str) -> int:
    print(f"emocap eval: error: {message}", file=sys.stderr)
    return 2


def _report(record: dict, bench_name: str, split, path: Path) -> None:
    view = f", view {record['view']}" if record.get("view") else ""
    prompts = f", prompts {record['prompt_set']} {record['prompt_hash']}" if record.get("prompt_hash") else ""
    cached = " (cached features)" if record.get("features_from_cache") else ""
    if record.get("text_features_from_cache"):
        cached = " (cached image and text features; model not loaded)"
    print(f"{record['model_id']} on {bench_name}/{split or '-'} ({record['protocol']}{view}{prompts}): "
          f"{record['n']} images{cached}, {record.get('elapsed_s', 0):.1f} s")
    for line in format_summary(record):
        print("  " + line)
    if record.get("no_face_share") is not None:
        print(f"  no face found in {100 * record['no_face_share']:.2f}% of the images (scored whole)")
    chance = record.get("chance")
    if chance:
        print(f"  chance       UAR {100 * chance['uar']:.2f}% (1/{record['n_classes']}), "
              f"WAR {100 * chance['war']:.2f}% (uniform guess), {100 * chance['majority_class_war']:.2f}% "
              "(largest class alone)")
    pairs = (record.get("benchmark_info") or {}).get("pairs")
    if pairs:  # compound classes: images and recall per class
        recall = record.get("per_class_recall") or {}
        for name, support in (record.get("per_class_support") or {}).items():
            r = recall.get(name)
            print(f"    {name:34s} n {support:5d}  recall " + ("  -" if r is None else f"{100 * r:.1f}%"))
    print(f"  skipped      {record['n_skipped']}")
    for source, reason in record["skipped"][:5]:
        print(f"    {source}: {reason}")
    if record["n_skipped"] > 5:
        print(f"    ... {record['n_skipped'] - 5} more in the result file")
    print(f"  result       {path}")


def _report_vocabulary(record: dict, bench_name: str, split, path: Path) -> None:
    vocab = record["vocabulary"]
    view = f", view {record['view']}" if record.get("view") else ""
    cached = " (cached features)" if record.get("features_from_cache") else ""
    print(f"{record['model_id']} on {bench_name}/{split or '-'} (open vocabulary {vocab['name']} {vocab['hash']}, "
          f"purpose {vocab.get('purpose') or 'unspecified'}{view}, prompts {record.get('prompt_set')} "
          f"{record.get('prompt_hash')}; words scored with {record['word_prompts']}): {record['n']} images{cached}, "
          f"{record.get('elapsed_s', 0):.1f} s")
    if vocab.get("purpose") == "tuning":
        print("  tuning list: for model selection only; its numbers are not a result to report")
    if record.get("words_in_taxonomy"):
        print(f"  note: words the taxonomy knows (not unseen): {', '.join(record['words_in_taxonomy'])}")
    for line in format_vocabulary(record):
        print("  " + line)
    print(f"  skipped      {record['n_skipped']}")
    print(f"  result       {path}")


def _run_vocabulary(args, spec: RunSpec, data: BenchmarkData, cache: Optional[FeatureCache]) -> int:
    """``--vocabulary``: one feature pass (or the cache), then text encoding only (emocap.eval.vocabulary)."""
    try:
        classifier = build_classifier(spec, data.classes)
    except ModelUnavailable as e:
        return _error(str(e))
    if args.skip_existing:
        header = vocabulary_header(classifier, spec, data.limit(spec.limit), spec.vocabulary)
        found = existing_result(header, args.out)
        if found is not None:
            print(f"{spec.describe()} (open vocabulary {header['vocabulary']['name']}): result exists, "
                  f"skipped ({found})")
            return 0
    record = evaluate_vocabulary(classifier, spec, data, spec.vocabulary, cache=cache)
    _report_vocabulary(record, spec.benchmark, spec.split, write_result(record, args.out))
    return 0


def _classifier_for(spec: RunSpec, data: BenchmarkData, cache: Optional[FeatureCache]):
    """A cached scorer when this exact request was answered before (no model load), else the loaded model."""
    if spec.protocol == PROTOCOL and cache is not None:
        scorer = cached_scorer(cache, spec, data)  # image and text features both cached (emocap.eval.text_cache)
        if scorer is not None:
            return scorer
    return build_classifier(spec, data.classes)


def _skip_existing(spec: RunSpec, classifier, data: BenchmarkData, out: str) -> bool:
    found = existing_result(spec.header(classifier, data.limit(spec.limit)), out)
    if found is not None:
        print(f"{spec.describe()} ({spec.protocol_name}{', ' + spec.view if spec.view else ''}): result exists, "
              f"skipped ({found})")
    return found is not None


def _run_one(args, bench_name: str, root: str, cache: Optional[FeatureCache]) -> int:
    try:
        spec = RunSpec.from_args(args, bench_name, root)
        data: BenchmarkData = get_benchmark(bench_name).load(root, spec.split, **spec.options_dict)
    except (FileNotFoundError, NotADirectoryError, LabelFileError, ValueError, KeyError) as e:
        return _error(str(e))
    try:
        problem = rename_classes(data, spec.class_names)
        if problem:
            return _error(problem)
        if spec.vocabulary:
            return _run_vocabulary(args, spec, data, cache)
        try:
            classifier = _classifier_for(spec, data, cache)
        except ModelUnavailable as e:
            return _error(str(e))
        if args.skip_existing and _skip_existing(spec, classifier, data, args.out):
            return 0
        if spec.protocol == PROTOCOL:
            record = evaluate_run(classifier, spec, data, cache)
            if isinstance(classifier, CachedScorer):
                record["text_features_from_cache"] = True
            elif cache is not None:
                save_for_run(cache, spec, data.classes, classifier, record)
        else:
            record = probe_run(classifier, spec, data, cache)
    except (FileNotFoundError, LabelFileError, ImageLoadError, ValueError, TypeError, RuntimeError) as e:
        return _error(f"{bench_name}: {e}")
    finally:
        data.close()
    _report(record, bench_name, spec.split, write_result(record, args.out))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the evaluations asked for; returns the process exit code (0 ok, 2 bad input on any benchmark, 130
    interrupted: Ctrl-C ends the command with one line; results and cache entries written so far are complete)."""
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("emocap eval: interrupted; results and cached features written so far are complete, "
              "run the same command again to continue", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "eval_command", None):
        return args.eval_func(args)
    if not args.root:
        return _error("--root is required: the dataset folder of each --benchmark")
    if args.batch_size < 1:
        return _error(f"--batch-size must be positive, got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        return _error(f"--limit must be a positive number of samples, got {args.limit}")
    if args.protocol == "few-shot" and args.shots < 1:
        return _error(f"--shots must be a positive number of samples per class, got {args.shots}")
    if len(args.option) != len([o for o in args.option if "=" in o]):
        return _error(f"--option values must look like key=value, got {args.option}")
    roots: List[str] = list(args.root)
    if len(roots) == 1:
        roots = roots * len(args.benchmark)
    if len(roots) != len(args.benchmark):
        return _error(f"give one --root per --benchmark ({len(args.benchmark)}) or a single root; got {len(roots)}")
    if getattr(args, "vocabulary", None):
        clash = ([f"--protocol {args.protocol}"] if args.protocol != PROTOCOL else []) + \
            (["--class-names"] if args.class_names else []) + \
            ([f"--slices {args.slices}"] if args.slices not in (None, "none") else [])
        if clash:
            return _error("--vocabulary is a zero-shot protocol of its own; it does not combine with "
                          + ", ".join(clash))
        try:
            load_vocabulary(args.vocabulary)
        except (FileNotFoundError, ValueError) as e:
            return _error(str(e))
    if args.prompts is not None:
        from emocap.prompts import load_prompt_set

        try:
            load_prompt_set(args.prompts)
        except (FileNotFoundError, ValueError) as e:
            return _error(str(e))
    cache = None if args.no_cache else FeatureCache(args.cache_dir)
    codes = [_run_one(args, name, root, cache) for name, root in zip(args.benchmark, roots)]
    return max(codes) if codes else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Stand-alone entry point (``python -m emocap.eval.cli``) until the top-level CLI wires this in."""
    parser = argparse.ArgumentParser(prog="emocap")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
