"""The ``emocap`` command: ``export``, ``push`` and ``demo`` (core commands) live here, ``classify`` and ``analyze`` in
:mod:`emocap.cli_classify`; the stages' commands (``caption``, ``train``, ``eval``) are
found through the ``emocap.commands`` entry point group (pyproject.toml), each naming a module with
``add_parser(subparsers)``, so core imports no stage by name. A stage whose extra is not installed still shows up,
and running it says what to install.

Ctrl-C ends any command with one line on stderr and exit code 130 (no traceback).
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import distributions
from typing import List, Optional

from .cli_classify import add_analyze, add_classify, positive_int, split_inputs_from_labels  # noqa: F401
from .cli_options import add_output_options, configure_output

DESCRIPTION = """emocap: vision-language facial emotion representations.

  emocap classify  faces.jpg clip.mp4 ... zero-shot emotion scores for images and videos (offline)
  emocap analyze   clip.mp4 --out t.csv   a results table: one row per face per image or video frame
  emocap demo      [--port 7860]          web demo: photo or video in, faces, scores, behaviour (needs [demo])
  emocap export    onnx MODEL --out DIR   the model's towers as ONNX, for `classify --runtime onnx`
  emocap caption   --root DATA --out DIR  EmoCap-style caption shards from a labelled face dataset
  emocap train     --config CONFIG        train an emotion CLIP model (accelerate: CPU, one or many GPUs)
  emocap eval      --root DATA            zero-shot benchmark results (WAR, UAR, macro F1, confusion)
  emocap push      MODEL_DIR org/repo     publish a model folder with a generated model card (or --dry-run)

Run `emocap <command> --help` for the options of each command."""

PUSH_EXAMPLES = """examples:
  emocap push runs/mine/final org/my-emotion-model --results results/*.json   # upload (token: HF_TOKEN or login)
  emocap push runs/mine/final org/my-emotion-model --dry-run upload/          # write exactly what would be uploaded
  emocap push default org/emocap-default --dry-run out/ --results model_cards/results/emocap-default/
"""

COMMANDS_GROUP = "emocap.commands"  # entry points: command name -> module with add_parser(subparsers)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command ended by Ctrl-C


def _true_or_false(text: str) -> bool:
    """argparse type: true/false (also yes/no, 1/0)."""
    value = text.strip().lower()
    if value in ("true", "yes", "1"):
        return True
    if value in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"must be true or false, got {text!r}")


def _add_demo(subparsers):
    p = subparsers.add_parser(
        "demo",
        help="web demo in the browser: photo or short video in, faces, scores and facial behaviour out",
        description="Serve the Gradio demo page (pip install 'emocap[demo]'): upload a photo or a short video, "
        "type any labels; see the faces boxed with their scores, the closest facial-behaviour sentences and, for "
        "a video, each label's score over time.",
        epilog="examples:\n  emocap demo\n  emocap demo --model hf-hub:org/repo --port 8080\n"
        "  emocap demo --host 0.0.0.0 --share false     # reachable from the local network",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=None, help="model id: default (embedded), hf-hub:org/repo, local-dir:/path or a folder")
    p.add_argument("--port", type=positive_int, default=None, help="port (default: 7860, or the next free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--share", type=_true_or_false, default=False, metavar="{true,false}",
                   help="also serve through a temporary public gradio.live link (default false)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    add_output_options(p)
    p.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from .demo import launch
    from .models import ModelLoadError

    try:
        launch(args.model, port=args.port, share=args.share, host=args.host, device=args.device)
    except ImportError as e:  # Gradio (the demo extra) is missing: the message says what to install
        print(f"emocap demo: error: {e}", file=sys.stderr)
        return 2
    except (ModelLoadError, FileNotFoundError, ValueError) as e:
        print(f"emocap demo: error: {e}", file=sys.stderr)
        return 2
    return 0


def _add_push(subparsers):
    p = subparsers.add_parser(
        "push",
        help="publish a model folder to the Hugging Face hub with a generated model card",
        description="Upload a model folder (open_clip_config.json, open_clip_model.safetensors, "
        "emocap_extra.safetensors if present) and a model card made from its config and result JSONs "
        "(README.md: licence, tags, model-index, usage with emocap and open_clip, results, limits).",
        epilog=PUSH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL_DIR", help="a model folder (runs/NAME/final), local-dir:/path or default")
    p.add_argument("repo_id", metavar="ORG/REPO", help="the hub repository (created when missing)")
    p.add_argument("--dry-run", metavar="OUT_DIR", default=None,
                   help="write what would be uploaded into OUT_DIR (new, empty or an earlier dry run) and stop")
    p.add_argument("--results", nargs="+", default=[], metavar="RESULT_JSON",
                   help="emocap eval result files or folders of them, for the card's results and model-index")
    p.add_argument("--notes", default=None, metavar="MARKDOWN", help="a Markdown file added to the card as it is")
    p.add_argument("--dataset", nargs="+", default=[], help="training dataset names for the card's 'datasets'")
    p.add_argument("--license", default="apache-2.0", help="the card's licence id (default apache-2.0)")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--token", default=None, help="hub token (default: HF_TOKEN or the huggingface-cli login)")
    add_output_options(p)
    p.set_defaults(func=_run_push)


def _run_push(args) -> int:
    from .model_card import CardError, read_result_files
    from .publish import PublishError, push_model, stage_upload

    try:
        records = read_result_files(args.results)
        notes = open(args.notes, encoding="utf-8").read() if args.notes else ""
        options = dict(notes=notes, datasets=args.dataset, license_id=args.license)
        if args.dry_run:
            files = stage_upload(args.model, args.dry_run, args.repo_id, records, **options)
            print(f"dry run: {len(files)} files for hf-hub:{args.repo_id} in {args.dry_run} "
                  f"({', '.join(f.name for f in files)}; {len(records)} results in the card)")
            return 0
    except (CardError, PublishError, OSError) as e:
        print(f"emocap push: error: {e}", file=sys.stderr)
        return 2
    try:
        url = push_model(args.model, args.repo_id, records, private=args.private, token=args.token, **options)
    except (CardError, PublishError) as e:
        print(f"emocap push: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # the hub client's errors: offline, network, no token, no permission
        reason = " ".join(str(e).split())[:300]
        print(f"emocap push: error: upload to hf-hub:{args.repo_id} failed ({type(e).__name__}: {reason})",
              file=sys.stderr)
        return 1
    print(f"pushed {args.model} -> https://huggingface.co/{args.repo_id} ({url})")
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
    add_output_options(onnx)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emocap", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"emocap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command")
    add_classify(sub)
    add_analyze(sub)
    _add_push(sub)
    _add_demo(sub)
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
        configure_output(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{command}: interrupted (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
