"""The ``emocap`` command: ``classify`` and ``export`` (core commands) live here; the stages' commands (``caption``, ``train``, ``eval``) are
found through the ``emocap.commands`` entry point group (pyproject.toml), each naming a module with
``add_parser(subparsers)``, so core imports no stage by name. A stage whose extra is not installed still shows up,
and running it says what to install.

Ctrl-C ends any command with one line on stderr and exit code 130 (no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from importlib.metadata import distributions
from typing import List, Optional

DESCRIPTION = """emocap: vision-language facial emotion representations.

  emocap classify  faces.jpg ...          zero-shot emotion scores (embedded default model, offline)
  emocap export    onnx MODEL --out DIR   the model's towers as ONNX, for `classify --runtime onnx`
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
  emocap classify face.png --runtime onnx --model emocap-default-onnx   # ONNX Runtime on the CPU (docs/speed.md)
"""

COMMANDS_GROUP = "emocap.commands"  # entry points: command name -> module with add_parser(subparsers)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command ended by Ctrl-C


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse names the option in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1 or more), got {text!r}")
    return value


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
    p.add_argument("--top-k", type=_positive_int, default=3, help="labels to print per image (default 3)")
    p.add_argument("--detect-faces", action="store_true", help="detect and crop faces in full photos first")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--json", action="store_true", help="print one JSON object per image instead of text")
    p.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                   help="torch (default), or onnx: ONNX Runtime on the CPU, with --model an ONNX export "
                   "folder from `emocap export onnx` (needs pip install 'emocap[onnx]')")
    p.set_defaults(func=_run_classify)


def _run_classify(args) -> int:
    from .classifier import ZeroShotClassifier
    from .images import ImageLoadError, SmallImageWarning, expand_inputs
    from .models import ModelLoadError
    from .taxonomy import IndistinguishableLabelsWarning

    files, problems = expand_inputs(args.inputs)
    if args.runtime != "torch" and args.model is None:
        print(f"emocap classify: error: --runtime {args.runtime} needs --model ONNX_DIR, a folder written by "
              "`emocap export onnx MODEL --out ONNX_DIR`", file=sys.stderr)
        return 2
    try:
        clf = ZeroShotClassifier.from_pretrained(args.model, labels=args.labels, prompts=args.prompts, device=args.device,
                                                 runtime=args.runtime)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", IndistinguishableLabelsWarning)
            clf.class_text_features()  # once, before the images: labels it cannot tell apart are reported first
    except (ModelLoadError, FileNotFoundError, ValueError, KeyError, TypeError) as e:
        print(f"emocap classify: error: {e}", file=sys.stderr)
        return 2
    _report_warnings(caught)
    n_done = 0
    # stream: classify and print one chunk at a time, so memory stays flat on folders of any size; the classifier
    # decodes each file once (its worker threads) and hands back the load error of a file it cannot read
    chunk_size = args.batch_size * 4
    for start in range(0, len(files), chunk_size):
        names = [str(f) for f in files[start:start + chunk_size]]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SmallImageWarning)
            preds = clf.predict(names, top_k=args.top_k, batch_size=args.batch_size, detect_faces=args.detect_faces,
                                no_face="empty", on_error="return")
        _report_warnings(caught)
        for name, pred in zip(names, preds):
            if isinstance(pred, ImageLoadError):
                problems.append((pred.source, pred.reason))
            elif args.detect_faces and not pred:
                problems.append((name, "no face found"))
            else:
                n_done += 1
                _print_prediction(name, pred, args)
    for where, reason in problems:
        print(f"skipped {where}: {reason}", file=sys.stderr)
    if problems:
        print(f"classified {n_done} images, skipped {len(problems)}", file=sys.stderr)
    return 0 if n_done or not problems else 1


def _add_export(subparsers):
    p = subparsers.add_parser("export", help="export a model for another runtime (onnx)",
                              description="Export a model for another runtime.")
    formats = p.add_subparsers(dest="format", metavar="format", required=True)
    onnx = formats.add_parser(
        "onnx", help="image and text towers as ONNX graphs, for `emocap classify --runtime onnx`",
        description="Export a model's image and text towers as ONNX graphs (plus its config, logit scale and a "
        "manifest of the source files' hashes, so an export of a model that changed since is refused).",
        epilog="examples:\n  emocap export onnx default --out emocap-default-onnx\n"
        "  emocap classify face.png --runtime onnx --model emocap-default-onnx",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    onnx.add_argument("model", help="model id: default (embedded), hf-hub:org/repo, local-dir:/path or a folder")
    onnx.add_argument("--out", default=None,
                      help="output folder (default ./<model name>-onnx; never inside the installed package)")
    onnx.set_defaults(func=_run_export_onnx)


def _run_export_onnx(args) -> int:
    from .models import ModelLoadError
    from .onnx_files import OnnxExportError

    try:
        from .onnx_export import export_onnx

        out = export_onnx(args.model, args.out)
    except (ModelLoadError, OnnxExportError, ImportError) as e:
        print(f"emocap export onnx: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} (run it: emocap classify --runtime onnx --model {out} IMAGES)")
    return 0


def _report_warnings(caught) -> None:
    """Print emocap's own warnings as one ``warning:`` line each; others go back to the warnings machinery."""
    from .images import SmallImageWarning
    from .taxonomy import IndistinguishableLabelsWarning

    for w in caught:
        if issubclass(w.category, (IndistinguishableLabelsWarning, SmallImageWarning)):
            print(f"emocap classify: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


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
    _add_export(sub)
    for command in stage_commands():
        try:
            module = command.load()
        except ImportError as e:  # a stage whose extra is not installed
            extra = _extra_for(command)
            p = sub.add_parser(command.name, help=f"(unavailable: {e}; pip install 'emocap[{extra}]')")
            p.set_defaults(func=lambda args, err=e, s=command.name, x=extra: _missing(s, err, x))
            continue
        module.add_parser(sub)
    return parser


def stage_commands() -> list:
    """The ``emocap.commands`` entry points (one per command name, in the order the package declares them).

    Read from every installed distribution's metadata, not only the first one of each name: a stale
    ``emocap.egg-info`` left in the working folder by an old build would otherwise hide the installed commands."""
    seen, out = set(), []
    for command in (ep for dist in distributions() for ep in dist.entry_points if ep.group == COMMANDS_GROUP):
        if command.name not in seen:
            seen.add(command.name)
            out.append(command)
    return out


def _extra_for(command) -> str:
    """The pip extra a stage command needs: the one named like the stage's package (``emocap.captioning.cli`` ->
    ``captioning``) when the distribution declares it, else ``all``."""
    parts = command.value.split(":")[0].split(".")
    declared = (command.dist.metadata.get_all("Provides-Extra") or []) if command.dist is not None else []
    return parts[1] if len(parts) > 1 and parts[1] in declared else "all"


def _missing(command: str, err: Exception, extra: str) -> int:
    print(f"emocap {command}: unavailable ({err}); install it with: pip install 'emocap[{extra}]'", file=sys.stderr)
    return 2


def main(argv: Optional[List[str]] = None) -> int:
    """Run one ``emocap`` command; returns its exit code (130 after Ctrl-C, with one line on stderr)."""
    command = "emocap"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 1
        command = f"emocap {args.command}"
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{command}: interrupted (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
