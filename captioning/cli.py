"""``emocap caption``: build an EmoCap-style caption dataset (webdataset shards) from a face dataset.

Actions: ``emocap caption [build] ...`` (the default: samples -> face analysis -> facts -> writer -> shards),
``emocap caption prompts`` (class descriptions for a label set), ``emocap caption stats`` (report with plots) and
``emocap caption export`` (HF datasets ImageFolder with ``metadata.jsonl``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from emocap.cli_options import add_output_options

EXAMPLES = """examples:
  emocap caption --root ../shared/data/ferplus --split train --out data/captions/ferplus-train
  emocap caption --dataset imagefolder --root my_faces/ --out data/captions/my-faces --seed 1
  emocap caption --dataset imagefolder --root photos/ --detect-faces --out data/captions/photos
  emocap caption --dataset labels --labels-file labels.csv --root images/ --out data/captions/mine
  emocap caption --dataset video --root clips/ --frames-per-clip 8 --out data/captions/clips
  emocap caption --root DATA --out OUT --writer openai --writer-model my-model --endpoint http://127.0.0.1:8000/v1
  emocap caption --root DATA --out OUT --num-parts 4 --part 0        # machine 0 of 4 (or: accelerate launch)
  emocap caption stats data/captions/ferplus-train
  emocap caption export data/captions/ferplus-train --out data/hf/ferplus-train
  emocap caption prompts --labels rafdb-compound --out compound.json
  emocap caption prompts --labels pain boredom --writer openai --writer-model M --out my.json   # new labels
"""

ACTIONS = ("build", "prompts", "stats", "export")


def _add_writer_options(p) -> None:
    g = p.add_argument_group("writer")
    g.add_argument("--writer", choices=("templates", "llm", "vlm", "openai"), default="templates",
                   help="caption writer (default templates: offline, seeded)")
    g.add_argument("--writer-model", default=None, help="llm/vlm: model folder or hub id; openai: the endpoint's model name")
    g.add_argument("--endpoint", default="http://127.0.0.1:8000/v1", help="openai: base URL of the chat endpoint")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY", help="openai: environment variable holding the key")
    g.add_argument("--concurrency", type=int, default=4, help="openai: parallel requests (default 4)")
    g.add_argument("--rate-limit", type=float, default=0.0, help="openai: requests per second, 0 = unlimited")
    g.add_argument("--retries", type=int, default=3, help="openai: retries with exponential backoff (default 3)")
    g.add_argument("--send-image", action="store_true", help="openai: send the face image too (vision endpoints)")
    g.add_argument("--max-new-tokens", type=int, default=320, help="llm/vlm: generation length (default 320)")


def _add_build_options(p) -> None:
    from .sources import source_names

    p.add_argument("--dataset", choices=source_names(), default="ferplus", help="input layout (default: ferplus)")
    p.add_argument("--root", help="dataset root (FER+: folder with FER2013Train/ or its .tar; hf: folder or hub id; "
                   "webdataset: shard folder, file or brace pattern)")
    p.add_argument("--split", default=None, help="split to caption (FER+: train, valid or test; default train)")
    p.add_argument("--out", help="output folder for the shards, sizes.json and report.json")
    p.add_argument("--labels-file", default=None, help="labels: CSV/TSV/JSON/JSON-lines label file")
    p.add_argument("--label-map", default=None, help="native label codes through this benchmark's map (e.g. fer2013)")
    p.add_argument("--image-column", default=None, help="hf: image column (default: the first Image feature)")
    p.add_argument("--label-column", default=None, help="hf: label column (default: label)")
    p.add_argument("--identity-column", default=None, help="hf: subject id column (per-identity AU references)")
    p.add_argument("--class-names", nargs="+", default=None, help="webdataset: names for numeric cls labels")
    p.add_argument("--frames-per-clip", type=int, default=8, help="video: frames taken evenly from each clip")
    p.add_argument("--shard-size", type=int, default=5000, help="samples per shard (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="wording seed: same seed, same captions (default 0)")
    p.add_argument("--limit", type=int, default=None, help="caption only the first N samples (quick checks)")
    p.add_argument("--face-analysis", choices=("dlib", "none"), default="dlib",
                   help="landmark backend for AU estimates and face states (default dlib); none: FACS priors only")
    p.add_argument("--detect-faces", action="store_true", help="full photos: detect, align and crop the face first")
    p.add_argument("--no-dedup", action="store_true", help="keep byte-identical duplicate images")
    p.add_argument("--workers", type=int, default=1, help="processes on this machine, each writing whole shards")
    p.add_argument("--num-parts", type=int, default=None, help="split the shards across this many processes/machines")
    p.add_argument("--part", type=int, default=None, help="this process's part, 0..num-parts-1 (default: $RANK)")
    p.add_argument("--shards", default=None, help="only these shard indices, e.g. '0,2'")
    p.add_argument("--hf-out", default=None, help="also export an HF datasets ImageFolder (metadata.jsonl) here")
    p.add_argument("--stats", action="store_true", help="also write the stats report (OUT/stats/)")
    add_output_options(p)
    _add_writer_options(p)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "caption",
        help="build EmoCap-style caption shards (global, local, summary) from a face dataset",
        description="Turn a labelled face dataset into webdataset shards with EmoCap-style captions: a global "
        "caption from the label or vote distribution, one local sentence per active face region with an "
        "action-unit reading (landmark estimates, dataset annotations or FACS priors, each marked), and a "
        "summary. Interrupted runs resume: complete shards are kept. Other actions: prompts, stats, export.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_build_options(p)
    sub = p.add_subparsers(dest="caption_action", metavar="action")
    b = sub.add_parser("build", help="build caption shards (the default action)")
    _add_build_options(b)
    b.set_defaults(func=run)

    pr = sub.add_parser("prompts", help="class descriptions (short, medium, detailed) for a label set")
    pr.add_argument("--labels", nargs="+", required=True,
                    help="class names (any words; names outside the taxonomy need a model writer), a label set "
                    "(basic8) or rafdb-compound")
    pr.add_argument("--out", required=True, help="output JSON (class -> sentences, the format emocap.prompts reads; "
                    "emocap classify --prompts OUT)")
    pr.add_argument("--templates", default=None,
                    help="also store these templates (bundled prompt set name such as basic8, or a JSON file) so the "
                    "prompts carry the label words too (default: descriptions only)")
    pr.add_argument("--cache-dir", default=None, help="cache of model-writer answers (default: "
                    "$EMOCAP_CACHE_DIR/class_prompts or ~/.cache/emocap/class_prompts)")
    pr.add_argument("--no-cache", action="store_true", help="ask the model writer again for every class and level")
    pr.add_argument("--per-level", type=int, default=2, help="descriptions per class and level (default 2)")
    pr.add_argument("--name", default=None, help="prompt set name (default: the output file's stem)")
    pr.add_argument("--seed", type=int, default=0)
    _add_writer_options(pr)
    add_output_options(pr)
    pr.set_defaults(func=run_prompts)

    st = sub.add_parser("stats", help="stats report with plots for finished caption shards")
    st.add_argument("shards", help="folder with caption shards")
    st.add_argument("--out", default=None, help="report folder (default SHARDS/stats)")
    add_output_options(st)
    st.set_defaults(func=run_stats)

    ex = sub.add_parser("export", help="HF datasets ImageFolder (images + metadata.jsonl) from caption shards")
    ex.add_argument("shards", help="folder with caption shards")
    ex.add_argument("--out", required=True, help="ImageFolder root")
    ex.add_argument("--split", default="train", help="split folder name (default train)")
    add_output_options(ex)
    ex.set_defaults(func=run_export)
    p.set_defaults(func=run)
    return p


def _error(msg: str) -> int:
    print(f"emocap caption: error: {msg}", file=sys.stderr)
    return 2


def _writer_from_args(args):
    from .writers import make_writer

    options = {}
    if args.writer == "openai":
        options = dict(base_url=args.endpoint, api_key_env=args.api_key_env, concurrency=args.concurrency,
                       rate_limit=args.rate_limit, retries=args.retries, send_image=args.send_image)
    elif args.writer in ("llm", "vlm"):
        options = dict(max_new_tokens=args.max_new_tokens)
    return make_writer(args.writer, seed=args.seed, model=args.writer_model, **options)


def run(args) -> int:
    """``emocap caption [build]``; Ctrl-C ends it with one line and exit status 130, the run left resumable."""
    try:
        return _build(args)
    except KeyboardInterrupt:
        print(f"emocap caption: interrupted; complete shards in {args.out} are kept, rerun the same command "
              "to resume", file=sys.stderr)
        return 130


def _build(args) -> int:
    from .shards import build_captions, parts_from_env
    from .sources import get_source

    if not args.root or not args.out:
        return _error("--root and --out are required to build captions (or give an action: prompts, stats, export)")
    if args.shard_size < 1:
        return _error("--shard-size must be at least 1")
    split = args.split or ("train" if args.dataset == "ferplus" else None)
    try:
        reader = get_source(args.dataset)
        samples, problems = reader(
            args.root, split, labels_file=args.labels_file, label_map=args.label_map, image_column=args.image_column,
            label_column=args.label_column, identity_column=args.identity_column, class_names=args.class_names, frames_per_clip=args.frames_per_clip,
        )
        num_parts, part = parts_from_env(args.num_parts, args.part)
        writer = _writer_from_args(args)
        analyzer = None
        if args.face_analysis != "none":
            from emocap.face_analysis import FaceAnalyzer

            analyzer = FaceAnalyzer(args.face_analysis, detect=args.detect_faces)
    except (FileNotFoundError, ValueError, KeyError, ImportError, RuntimeError) as e:
        return _error(str(e).strip("'\""))
    if args.limit:
        samples = samples[: args.limit]
    if not samples:
        return _error(f"{args.root}: no samples to caption")
    shards = [int(x) for x in args.shards.split(",")] if args.shards else None
    prefix = f"{args.dataset}-{split}" if split else args.dataset
    settings = {"dataset": args.dataset, "split": split, "limit": args.limit}
    try:
        report = build_captions(
            samples, args.out, writer=writer, shard_size=args.shard_size, prefix=prefix, label_problems=problems,
            progress=not args.quiet, shard_indices=shards, analyzer=analyzer, dedup=not args.no_dedup,
            workers=args.workers, num_parts=num_parts, part=part, settings=settings,
        )
    except ValueError as e:  # settings that differ from the folder's run, colliding sample keys
        return _error(str(e))
    print(f"wrote {report['samples_written']} captioned samples in {report['shards']} shards to {args.out}"
          + (f" (part {part} of {num_parts})" if num_parts > 1 else ""))
    if report["resumed_samples"]:
        print(f"resumed: {report['resumed_samples']} samples were already in complete shards")
    if report["writer_counts"]:
        print("writers: " + ", ".join(f"{k} {v}" for k, v in report["writer_counts"].items())
              + (f"; {report['writer_fallbacks']} fell back to templates" if report["writer_fallbacks"] else ""))
    if problems:
        print(f"{len(problems)} label-file rows skipped, e.g. {problems[0][0]}: {problems[0][1]}")
    if report["samples_skipped"]:
        reasons = Counter(s["reason"] for s in report["skipped"])
        print(f"skipped {report['samples_skipped']} samples:")
        for reason, n in reasons.most_common(5):
            print(f"  {n:6d}  {reason}")
    if args.stats or args.hf_out:
        if num_parts > 1:
            print("note: --stats/--hf-out cover the shards finished so far; run `emocap caption stats` when all parts are done")
        if args.stats:
            from .stats import write_stats_report

            print(f"stats: {write_stats_report(Path(args.out))['out_dir']}/stats.md")
        if args.hf_out:
            from .stats import export_imagefolder

            n = export_imagefolder(Path(args.out), Path(args.hf_out), split or "train")
            print(f"HF ImageFolder: {n} images + metadata.jsonl in {args.hf_out}/{split or 'train'}")
    print(f"report: {args.out}/report.json")
    return 0


def run_prompts(args) -> int:
    from .class_prompts import DescriptionCache, describe_classes, resolve_labels, templates_from, write_descriptions

    try:
        labels = resolve_labels(args.labels)
        templates = templates_from(args.templates) if args.templates else None
        writer = _writer_from_args(args)
        cache = None if args.no_cache else DescriptionCache(args.cache_dir)
        stats: dict = {}
        name = args.name or Path(args.out).stem
        data = describe_classes(labels, writer, per_level=args.per_level, name=name, cache=cache,
                                templates=templates, stats=stats)
    except (ValueError, TypeError, ImportError, FileNotFoundError) as e:
        return _error(str(e))
    write_descriptions(data, args.out)
    fb = data["generated_by"]["fallbacks"]
    asked = (f"; {stats['requests']} requests, {stats['cached']} answers from the cache"
             if stats.get("requests") or stats.get("cached") else "")
    print(f"wrote descriptions for {len(labels)} classes to {args.out} (prompt set hash {data['hash']})" + asked
          + (f"; {len(fb)} fell back to FACS sentences" if fb else ""))
    return 0


def run_stats(args) -> int:
    from .stats import write_stats_report

    try:
        stats = write_stats_report(Path(args.shards), Path(args.out) if args.out else None)
    except (FileNotFoundError, ValueError) as e:
        return _error(str(e))
    print(json.dumps({k: stats[k] for k in ("samples", "classes", "vocabulary_size", "distinct_global_captions")}))
    print(f"report: {stats['out_dir']}/stats.md")
    return 0


def run_export(args) -> int:
    from .stats import export_imagefolder

    renamed: list = []
    try:
        n = export_imagefolder(Path(args.shards), Path(args.out), args.split, renamed=renamed)
    except (FileNotFoundError, ValueError) as e:  # UnsafePathError: a member would land outside --out
        return _error(str(e))
    print(f"wrote {n} images + metadata.jsonl to {Path(args.out) / args.split}")
    if renamed:
        print(f"{len(renamed)} images renamed because their keys collided, e.g. {renamed[0]}")
    return 0
