"""``emocap classify`` and ``emocap analyze``: images and videos in, scores as text, JSON lines or a table file.

Part of the ``emocap`` command (:mod:`emocap.cli` adds these two parsers). ``classify`` keeps its text and JSON-line
output for images (one line per image) and prints one line per face per sampled frame for videos; ``--out FILE``
writes the results table instead (:mod:`emocap.analysis` rows; CSV, Parquet or JSON lines by extension,
:mod:`emocap.table_files`). ``analyze`` always writes the table (to ``--out`` or CSV on stdout) and always finds
faces. Both: ``--fps``/``--every`` (the frame sampler, :mod:`emocap.readers.frames`), ``--smooth``, ``--summary``,
``--timeline``, ``--draw`` (:mod:`emocap.video_outputs`), a progress bar with frames/s on a terminal. Unreadable
inputs are reported by name and the rest go on; a failed video (or, for ``analyze``, any failed input) makes the
exit code 1 at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import List, Optional

from tqdm import tqdm

from .cli_options import add_output_options
from .cli_table import TableRun, format_ranked, report_warnings

__all__ = ["add_classify", "add_analyze", "split_inputs_from_labels", "positive_int"]

CLASSIFY_EXAMPLES = """examples:
  emocap classify face1.png face2.jpg                 # pre-cropped faces, basic-8 emotions
  emocap classify photo.jpg --detect-faces            # find faces in a full photo first
  emocap classify faces/ --labels joy rage calm       # any label names (zero-shot; see docs/labels.md)
  emocap classify faces/ --labels pain boredom --prompts my.json   # descriptions from `emocap caption prompts`
  emocap classify face.png --model hf-hub:org/repo    # a model from the Hugging Face hub
  emocap classify faces/ --json > scores.jsonl        # one JSON line per image
  emocap classify clip.mp4 --fps 2                    # a video: faces per sampled frame, tracked (docs/video.md)
  emocap classify clip.mp4 --out clip.csv --timeline clip.png   # the results table and a score timeline
  emocap classify face.png --runtime onnx --model emocap-default-onnx   # ONNX Runtime on the CPU (docs/speed.md)
"""

ANALYZE_EXAMPLES = """examples:
  emocap analyze clip.mp4 --out clip.csv              # one row per face per sampled frame (5 frames/s)
  emocap analyze clip.mp4 --every 1 --smooth --out clip.parquet   # every frame, smoothed scores
  emocap analyze photos/ videos/ --out all.jsonl --summary        # images and videos in one table
  emocap analyze clip.mp4 --face-analysis --out clip.csv          # + AUs, landmarks, head pose (captioning extra)
  emocap analyze clip.mp4 --draw boxed/ --timeline clip.png       # boxes drawn into a video, a timeline plot
"""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse names the option in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1 or more), got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _smoothing(text: str) -> float:
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (the newest frame's weight), got {text!r}")
    return value


def _add_model_options(p) -> None:
    p.add_argument("inputs", nargs="*", help="image files, video files (mp4, mov, avi, webm, animated GIF ...) or "
                   "folders (anywhere on the line: after --labels, words that name an existing file or folder are "
                   "inputs, not labels)")
    p.add_argument("--model", default=None, help="model id: default (embedded), hf-hub:org/repo, local-dir:/path or a folder")
    p.add_argument("--labels", nargs="+", default=None,
                   help="label names: any words or phrases, quoted when they have spaces (default: the model's labels, basic-8)")
    p.add_argument("--prompts", default=None,
                   help="prompt set: a bundled name, a JSON file, or one template with {} for the label, e.g. "
                   "'a photo of a {} face.' (default: the model's)")
    p.add_argument("--no-word-bridge", action="store_true",
                   help="encode labels outside the taxonomy with the model's own text tower alone, without the "
                        "word bridge to the taxonomy's emotions (WordNet, sentence encoder; docs/labels.md)")


def _add_video_options(p, table_default: str) -> None:
    from .face_tracking import DEFAULT_SMOOTHING
    from .readers.frames import DEFAULT_SAMPLE_FPS

    group = p.add_argument_group("videos and tables")
    rate = group.add_mutually_exclusive_group()
    rate.add_argument("--fps", type=_positive_float, default=None,
                      help=f"video frames sampled per second of video (default {DEFAULT_SAMPLE_FPS:g})")
    rate.add_argument("--every", type=positive_int, default=None, metavar="N",
                      help="sample every N-th video frame instead (1: every frame)")
    group.add_argument("--smooth", type=_smoothing, nargs="?", const=DEFAULT_SMOOTHING, default=None,
                       metavar="ALPHA", help="smooth each tracked face's scores over the frames (moving average; "
                       f"ALPHA the newest frame's weight, default {DEFAULT_SMOOTHING:g})")
    group.add_argument("--out", default=None, metavar="FILE",
                       help=f"write the results table to FILE: .csv, .parquet or .jsonl ({table_default})")
    group.add_argument("--summary", action="store_true",
                       help="print the top emotion per input and a summary per tracked face at the end")
    group.add_argument("--timeline", default=None, metavar="FILE.png",
                       help="plot each video's scores over time (several videos: FILE_<video>.png; needs matplotlib)")
    group.add_argument("--draw", default=None, metavar="DIR",
                       help="write the images and videos with faces boxed and labelled into DIR")
    group.add_argument("--face-analysis", action="store_true",
                       help="add AU estimates, landmarks, head pose, eye and mouth state columns to the table "
                       "(needs pip install 'emocap[captioning]')")


def _add_compute_options(p) -> None:
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")


def _add_framing_options(p) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--detect-faces", dest="framing", action="store_const", const="detect",
                       help="search every image for faces (default: the model's crop policy decides per image: "
                       "small images are face crops and are scored whole, larger ones are searched)")
    group.add_argument("--no-detect", "--cropped", dest="framing", action="store_const", const="whole",
                       help="score every image whole, as a face crop (videos: faces are always searched)")
    p.set_defaults(framing="auto")


def add_classify(subparsers) -> None:
    p = subparsers.add_parser(
        "classify", help="zero-shot facial emotion scores for images, videos or folders",
        description="Score face images against emotion labels from text prompts. Inputs may be image files, video "
        "files or folders; unreadable files are reported and skipped, the rest are classified. Videos are sampled "
        "(--fps, --every), faces found and tracked in each sampled frame.",
        epilog=CLASSIFY_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_options(p)
    p.add_argument("--top-k", type=positive_int, default=3, help="labels to print per image (default 3)")
    _add_framing_options(p)
    _add_compute_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per image instead of text")
    _add_video_options(p, "default: print text or JSON lines")
    add_output_options(p)
    p.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                   help="torch (default), or onnx: ONNX Runtime on the CPU, with --model an ONNX export "
                   "folder from `emocap export onnx` (needs pip install 'emocap[onnx]')")
    p.set_defaults(func=run_classify, command_name="classify", table_only=False)


def add_analyze(subparsers) -> None:
    p = subparsers.add_parser(
        "analyze", help="a results table (CSV, Parquet, JSON lines): one row per face per image or video frame",
        description="Find the faces in images and videos, track them across video frames and write one table row "
        "per face per image or sampled frame (frames without a face get a row too): source, frame, time, face id, "
        "box, detector score, one score per label, top label (docs/video.md).",
        epilog=ANALYZE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_options(p)
    _add_framing_options(p)
    _add_compute_options(p)
    _add_video_options(p, "default: CSV on standard output")
    add_output_options(p)
    p.set_defaults(func=run_analyze, command_name="analyze", table_only=True, runtime="torch")


def split_inputs_from_labels(inputs: List[str], labels: Optional[List[str]]):
    """``(inputs, labels)`` with the ``--labels`` words that name an existing file or folder moved to the inputs:
    ``--labels joy rage faces/*.png`` takes every word after the option, so the files would be read as labels.
    A label that is really meant as a word and happens to be a file name in the current folder needs ``--``
    before the inputs or the inputs first."""
    if not labels:
        return list(inputs), labels
    as_paths = [word for word in labels if os.path.exists(word)]
    kept = [word for word in labels if not os.path.exists(word)]
    return list(inputs) + as_paths, (kept or None)


def _error(args, message: str) -> int:
    print(f"emocap {args.command_name}: error: {message}", file=sys.stderr)
    return 2


def _load_classifier(args):
    """The classifier for the command line, or an exit code after printing the error."""
    from .classifier import ZeroShotClassifier
    from .taxonomy import IndistinguishableLabelsWarning
    from .word_bridge import WordBridgeUnavailableWarning

    if args.runtime == "torch":  # the ONNX runtime never imports torch (emocap.models does)
        from .models import ModelLoadError
    else:
        from .onnx_files import OnnxExportError as ModelLoadError

    if args.runtime != "torch" and args.model is None:
        return _error(args, f"--runtime {args.runtime} needs --model ONNX_DIR, a folder written by "
                            "`emocap export onnx MODEL --out ONNX_DIR`")
    try:
        clf = ZeroShotClassifier.from_pretrained(args.model, labels=args.labels, prompts=args.prompts,
                                                 device=args.device, runtime=args.runtime,
                                                 word_bridge=False if getattr(args, "no_word_bridge", False) else None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", IndistinguishableLabelsWarning)
            warnings.simplefilter("always", WordBridgeUnavailableWarning)
            clf.class_text_features()  # once, before the images: labels it cannot tell apart are reported first
    except (ModelLoadError, FileNotFoundError, ValueError, KeyError, TypeError) as e:
        return _error(args, str(e))
    report_warnings(caught, args.command_name)
    _note_bridged(clf, args)
    return clf


def _note_bridged(clf, args) -> None:
    """One stderr line naming what the word bridge did to labels outside the taxonomy (unless ``--quiet``)."""
    from .word_bridge import bridge_note

    note = None if getattr(args, "quiet", False) else bridge_note(clf.bridged_labels())
    if note:
        print(f"emocap {args.command_name}: note: {note} (--no-word-bridge turns this off)", file=sys.stderr)


def _check_outputs(args) -> Optional[str]:
    """The first problem with ``--out``/``--timeline``, before any work (unknown format, missing pyarrow)."""
    from .table_files import table_format

    try:
        if args.out:
            if table_format(args.out) == "parquet":
                from .table_files import _pyarrow

                _pyarrow()
        if args.timeline and Path(args.timeline).suffix.lower() != ".png":
            return f"--timeline {args.timeline}: the plot is written as PNG; name a .png file"
        if args.timeline:
            import matplotlib  # noqa: F401
    except ValueError as e:
        return f"--out {e}"
    except ImportError as e:
        return str(e) if "pip install" in str(e) else f"--timeline needs matplotlib ({e}); pip install 'emocap[eval]'"
    return None


def _start(args):
    """``(classifier, inputs, problems)`` for a classify/analyze command line, or the exit code of its error."""
    from .analysis import expand_media

    inputs, args.labels = split_inputs_from_labels(args.inputs, args.labels)
    if not inputs:
        return _error(args, "no inputs: give image files, video files or folders")
    problem = _check_outputs(args)
    if problem:
        return _error(args, problem)
    items, problems = expand_media(inputs)
    clf = _load_classifier(args)
    return clf if isinstance(clf, int) else (clf, items, problems)


def run_classify(args) -> int:
    from .readers.frames import is_video

    started = _start(args)
    if isinstance(started, int):
        return started
    clf, items, problems = started
    if args.out or args.summary or args.timeline or args.draw or any(is_video(i) for i in items):
        return TableRun(args, clf, problems).run(items)
    return _classify_images(args, clf, [str(i) for i in items], problems)


def run_analyze(args) -> int:
    started = _start(args)
    if isinstance(started, int):
        return started
    clf, items, problems = started
    return TableRun(args, clf, problems).run(items)


def _classify_images(args, clf, files: List[str], problems: list) -> int:
    """The image-only path of ``classify`` (no table options): one text or JSON line per image, as before."""
    from .face_predictions import NoFaceFoundWarning
    from .images import ImageLoadError, SmallImageWarning

    n_done = 0
    # stream: classify and print one chunk at a time, so memory stays flat on folders of any size; the classifier
    # decodes each file once (its worker threads) and hands back the load error of a file it cannot read
    chunk_size = args.batch_size * 4
    bar = tqdm(total=len(files), unit="img", desc="classify", disable=None if not args.quiet else True,
               file=sys.stderr, leave=False)  # shown on a terminal only (disable=None), never with -q
    for start in range(0, len(files), chunk_size):
        names = files[start:start + chunk_size]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SmallImageWarning)
            warnings.simplefilter("ignore", NoFaceFoundWarning)  # reported per file below
            preds = clf.predict_faces(names, top_k=args.top_k, batch_size=args.batch_size, framing=args.framing,
                                      no_face="empty", on_error="return")
        report_warnings(caught, args.command_name)
        bar.update(len(names))
        for name, pred in zip(names, preds):
            if isinstance(pred, ImageLoadError):
                problems.append((pred.source, pred.reason))
            elif not pred:
                problems.append((name, "no face found"))
            else:
                n_done += 1
                print_prediction(name, pred, args)
    bar.close()
    for where, reason in problems:
        print(f"skipped {where}: {reason}", file=sys.stderr)
    if problems:
        print(f"classified {n_done} images, skipped {len(problems)}", file=sys.stderr)
    return 0 if n_done or not problems else 1


def print_prediction(name: str, faces: list, args) -> None:
    """One image's faces: an image scored whole (a face crop) as ``{"file", "predictions"}`` / ``name: labels``;
    a photo searched for faces as ``{"file", "faces": [...]}`` / one line per face."""
    whole = faces[0]["framing"] == "whole image"
    if args.json:
        record = {"file": name, "predictions": faces[0]["predictions"]} if whole else {"file": name, "faces": faces}
        print(json.dumps(record), flush=False)
    elif whole:
        print(f"{name}: " + format_ranked(faces[0]["predictions"]))
    else:
        for k, face in enumerate(faces):
            print(f"{name} face {k} {face['box']}: " + format_ranked(face["predictions"]))
