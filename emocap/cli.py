"""The ``emocap`` command: ``classify`` lives here; ``caption``, ``train`` and ``eval`` are registered by their
stages (each stage's ``cli.add_parser``), imported only when the package is installed with that stage.
"""

from __future__ import annotations

import argparse
import importlib
from concurrent.futures import ThreadPoolExecutor
import json
import sys
import warnings
from typing import List, Optional

DESCRIPTION = """emocap: vision-language facial emotion representations.

  emocap classify  faces.jpg ...          zero-shot emotion scores (embedded default model, offline)
  emocap caption   --root DATA --out DIR  EmoCap-style caption shards from a labelled face dataset
  emocap train     --config CONFIG        train an emotion CLIP model (accelerate: CPU, one or many GPUs)
  emocap eval      --root DATA            zero-shot benchmark results (WAR, UAR, macro F1, confusion)

Run `emocap <command> --help` for the options of each command."""

CLASSIFY_EXAMPLES = """examples:
  emocap classify face1.png face2.jpg                 # pre-cropped faces, basic-8 emotions
  emocap classify photo.jpg --detect-faces            # find faces in a full photo first
  emocap classify faces/ --labels joy rage calm       # any label names (zero-shot; see docs/labels.md)
  emocap classify faces/ --labels pain boredom --prompts my.json   # descriptions from `emocap caption prompts`
  emocap classify face.png --model hf-hub:org/repo    # a model from the Hugging Face hub
  emocap classify faces/ --json > scores.jsonl        # one JSON line per image
"""

STAGES = ("emocap.captioning.cli", "emocap.train.cli", "emocap.eval.cli")


def _add_classify(subparsers):
    p = subparsers.add_parser(
        "classify",
        help="zero-shot facial emotion scores for images or folders",
        description="Score face images against emotion labels from text prompts. Inputs may be files or "
        "folders; unreadable files are reported and skipped, the rest are classified.",
        epilog=CLASSIFY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help="image files or folders of images")
    p.add_argument("--model", default=None, help="model id: default (embedded), hf-hub:org/repo, local-dir:/path or a folder")
    p.add_argument("--labels", nargs="+", default=None,
                   help="label names: any words or phrases, quoted when they have spaces (default: the model's labels, basic-8)")
    p.add_argument("--prompts", default=None, help="prompt set: bundled name or JSON file (default: the model's)")
    p.add_argument("--top-k", type=int, default=3, help="labels to print per image (default 3)")
    p.add_argument("--detect-faces", action="store_true", help="detect and crop faces in full photos first")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--json", action="store_true", help="print one JSON object per image instead of text")
    p.set_defaults(func=_run_classify)


def _run_classify(args) -> int:
    from .classifier import ZeroShotClassifier
    from .images import ImageLoadError, expand_inputs
    from .models import ModelLoadError
    from .taxonomy import IndistinguishableLabelsWarning

    files, problems = expand_inputs(args.inputs)
    try:
        clf = ZeroShotClassifier.from_pretrained(args.model, labels=args.labels, prompts=args.prompts, device=args.device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", IndistinguishableLabelsWarning)
            clf.class_text_features()  # once, before the images: labels it cannot tell apart are reported first
    except (ModelLoadError, FileNotFoundError, ValueError, KeyError, TypeError) as e:
        print(f"emocap classify: error: {e}", file=sys.stderr)
        return 2
    for w in caught:
        if issubclass(w.category, IndistinguishableLabelsWarning):
            print(f"emocap classify: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    n_done = 0
    # stream: load, classify and print one chunk at a time, so memory stays flat on folders of any size
    chunk_size = max(args.batch_size, 1) * 4
    with ThreadPoolExecutor(clf.decode_workers) as pool:
        for start in range(0, len(files), chunk_size):
            chunk = files[start:start + chunk_size]
            images, names = [], []
            for f, loaded in zip(chunk, pool.map(_try_load, chunk)):
                if isinstance(loaded, ImageLoadError):
                    problems.append((loaded.source, loaded.reason))
                else:
                    images.append(loaded)
                    names.append(str(f))
            if not images:
                continue
            if args.detect_faces:
                preds = clf.predict(images, top_k=args.top_k, batch_size=args.batch_size, detect_faces=True,
                                    no_face="empty")
            else:
                preds = clf.predict(images, top_k=args.top_k, batch_size=args.batch_size)
            for name, pred in zip(names, preds):
                if args.detect_faces and not pred:
                    problems.append((name, "no face found"))
                    continue
                n_done += 1
                _print_prediction(name, pred, args)
    for where, reason in problems:
        print(f"skipped {where}: {reason}", file=sys.stderr)
    if problems:
        print(f"classified {n_done} images, skipped {len(problems)}", file=sys.stderr)
    return 0 if n_done or not problems else 1


def _try_load(path):
    from .images import ImageLoadError, load_image

    try:
        return load_image(path)
    except ImageLoadError as e:
        return e


def _print_prediction(name: str, pred, args) -> None:
    if args.json:
        key = "faces" if args.detect_faces else "predictions"
        print(json.dumps({"file": name, key: pred}), flush=False)
    elif args.detect_faces:
        for k, face in enumerate(pred):
            print(f"{name} face {k} {face['box']}: " + _fmt(face["predictions"]))
    else:
        print(f"{name}: " + _fmt(pred))


def _fmt(preds) -> str:
    return ", ".join(f"{p['label']} {p['score']:.3f}" for p in preds)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emocap", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"emocap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command")
    _add_classify(sub)
    for module_name in STAGES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:  # a stage whose extra is not installed
            stage = module_name.split(".")[1]
            p = sub.add_parser(stage, help=f"(unavailable: {e}; pip install 'emocap[{stage}]')")
            p.set_defaults(func=lambda args, err=e, s=stage: _missing(s, err))
            continue
        module.add_parser(sub)
    return parser


def _missing(stage, err) -> int:
    print(f"emocap {stage}: unavailable ({err}); install it with: pip install 'emocap[{stage}]'", file=sys.stderr)
    return 2


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
