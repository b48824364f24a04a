"""Caption-builder inputs that need more than files and label tables: HF datasets, webdataset shards, videos.

First step of the caption flow (**evidence** -> facts -> writer -> shards), like ``sources.py`` whose ``Sample``
and problem conventions these readers follow:

- ``hf``: ``datasets.load_dataset`` on a local folder (``imagefolder``, parquet ...) or a hub id; the image column
  is read undecoded (original bytes), the label column may be a ClassLabel, a name or a native code.
- ``webdataset``: existing shards (a folder, a file, or a brace pattern); members are indexed once and read by
  offset, so no sample is held in memory; the label comes from ``json`` (``label`` / ``soft_label``), ``cls``
  (with class names) or ``txt``.
- ``video``: ``root/<class>/<clip>.mp4`` or ``root/<class>/<clip>/<frames>``; ``frames_per_clip`` frames are taken
  evenly from each clip, each a sample with its clip id and frame index (``extra``).
"""

from __future__ import annotations

import glob
import io
import json
import tarfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from emocap import taxonomy
from emocap.images import IMAGE_EXTENSIONS, iter_image_files

from .sources import Sample, _safe_key

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
IMAGE_KEYS = ("png", "jpg", "jpeg", "webp", "bmp")


def _label(raw, names: Optional[Sequence[str]], label_map: Optional[Dict[str, str]]) -> Optional[str]:
    if isinstance(raw, int) and names is not None and 0 <= raw < len(names):
        raw = names[raw]
    raw = str(raw).strip()
    if label_map:
        raw = label_map.get(raw, raw)
    return taxonomy.canonical_or_none(raw)


def hf_source(root: str, split: Optional[str] = None, image_column: Optional[str] = None,
              label_column: Optional[str] = None, label_map: Optional[str] = None,
              identity_column: Optional[str] = None, **_) -> Tuple[List[Sample], List[Tuple[str, str]]]:
    """An HF dataset: ``root`` is a local folder (loaded as ``imagefolder`` when it holds images) or a hub id.

    Optional columns: ``identity_column`` (per-identity AU references), ``valence`` / ``arousal`` (-1..1).
    """
    import datasets

    split = split or "train"
    try:
        if Path(root).is_dir() and not any(Path(root).glob("*.parquet")) and not (Path(root) / "dataset_info.json").exists():
            ds = datasets.load_dataset("imagefolder", data_dir=root, split=split)
        else:
            ds = datasets.load_dataset(root, split=split)
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as e:
        raise FileNotFoundError(f"{root}: cannot load split {split!r} with datasets.load_dataset ({e})") from None
    features = ds.features
    image_column = image_column or next((k for k, f in features.items() if isinstance(f, datasets.Image)), None)
    if image_column is None or image_column not in features:
        raise ValueError(f"{root}: no image column (columns: {', '.join(features)}); name one with --image-column")
    label_column = label_column or next((k for k in ("label", "labels", "emotion", "expression") if k in features), None)
    if label_column is None or label_column not in features:
        raise ValueError(f"{root}: no label column (columns: {', '.join(features)}); name one with --label-column")
    names = features[label_column].names if isinstance(features[label_column], datasets.ClassLabel) else None
    mapping = taxonomy.benchmark_label_map(label_map) if label_map else None
    raw_images = ds.cast_column(image_column, datasets.Image(decode=False))
    labels = ds[label_column]
    if identity_column and identity_column not in features:
        raise ValueError(f"{root}: no identity column {identity_column!r} (columns: {', '.join(features)})")
    identities = ds[identity_column] if identity_column else None
    affect = {k: ds[k] for k in ("valence", "arousal") if k in features}
    samples, problems = [], []
    tag = _safe_key(Path(root).name or root)
    for i, raw in enumerate(labels):
        canon = _label(raw, names, mapping)
        if canon is None:
            problems.append((f"{root}[{split}][{i}]", f"unknown class {raw!r}"))
            continue

        def read(i=i) -> bytes:
            item = raw_images[i][image_column]
            if item.get("bytes"):
                return item["bytes"]
            return Path(item["path"]).read_bytes()

        values = {k: v[i] for k, v in affect.items() if v[i] is not None}
        if any(not -1.0 <= float(v) <= 1.0 for v in values.values()):
            problems.append((f"{root}[{split}][{i}]", f"valence/arousal outside -1..1: {values}"))
            continue
        samples.append(Sample(
            key=f"{tag}_{split}_{i:07d}", source_file=f"{root}[{split}][{i}]", read_bytes=read, image_ext="png",
            distribution={canon: 1.0}, identity=str(identities[i]) if identities is not None else None,
            valence=values.get("valence"), arousal=values.get("arousal"),
            extra={"dataset": "hf", "root": str(root), "split": split, "index": i},
        ))
    return samples, problems


def _expand_shards(spec: str) -> List[Path]:
    p = Path(spec)
    if p.is_dir():
        return sorted(p.glob("*.tar"))
    if p.is_file():
        return [p]
    import braceexpand

    files = sorted({Path(f) for pattern in braceexpand.braceexpand(spec) for f in glob.glob(pattern)})
    if not files:
        raise FileNotFoundError(f"{spec}: no webdataset shards found")
    return files


def _read_member(shard: Path, offset: int, size: int) -> bytes:
    with open(shard, "rb") as f:
        f.seek(offset)
        return f.read(size)


def webdataset_source(root: str, split: Optional[str] = None, class_names: Optional[Sequence[str]] = None,
                      label_map: Optional[str] = None, **_) -> Tuple[List[Sample], List[Tuple[str, str]]]:
    """Existing webdataset shards: each sample's image plus ``json`` (label / soft_label), ``cls`` or ``txt``."""
    shards = _expand_shards(root)
    if not shards:
        raise FileNotFoundError(f"{root}: no .tar shards")
    mapping = taxonomy.benchmark_label_map(label_map) if label_map else None
    samples, problems = [], []
    for shard in shards:
        members: Dict[str, Dict[str, tarfile.TarInfo]] = {}
        try:
            with tarfile.open(shard) as tar:
                for m in tar:
                    if not m.isfile():
                        continue
                    folder, _, base = m.name.rpartition("/")
                    stem, dot, ext = base.partition(".")
                    if not dot:
                        continue
                    key = f"{folder}/{stem}" if folder else stem
                    members.setdefault(key, {})[ext.lower()] = m
        except (tarfile.TarError, OSError) as e:
            problems.append((str(shard), f"unreadable shard ({e})"))
            continue
        for key, parts in members.items():
            where = f"{shard}:{key}"
            image = next((parts[e] for e in IMAGE_KEYS if e in parts), None)
            if image is None:
                problems.append((where, "no image member"))
                continue
            dist, soft = None, None
            try:
                if "json" in parts:
                    meta = json.loads(_read_member(shard, parts["json"].offset_data, parts["json"].size))
                    soft = meta.get("soft_label")
                    if soft:
                        dist = {}
                        for k, v in soft.items():
                            canon = _label(k, None, mapping)
                            if canon is None:
                                raise ValueError(f"unknown class {k!r} in soft_label")
                            dist[canon] = dist.get(canon, 0.0) + float(v)
                    elif "label" in meta:
                        canon = _label(meta["label"], class_names, mapping)
                        dist = {canon: 1.0} if canon else None
                        if canon is None:
                            raise ValueError(f"unknown class {meta['label']!r}")
                if dist is None and "cls" in parts:
                    raw = _read_member(shard, parts["cls"].offset_data, parts["cls"].size).decode().strip()
                    canon = _label(int(raw) if raw.isdigit() and class_names else raw, class_names, mapping)
                    if canon is None:
                        raise ValueError(f"unknown class {raw!r} (give --class-names for numeric cls)")
                    dist = {canon: 1.0}
                if dist is None and "txt" in parts:
                    raw = _read_member(shard, parts["txt"].offset_data, parts["txt"].size).decode().strip()
                    canon = _label(raw, None, mapping)
                    if canon is None:
                        raise ValueError(f"txt {raw[:40]!r} is not a class name")
                    dist = {canon: 1.0}
            except (ValueError, UnicodeDecodeError) as e:
                problems.append((where, str(e)))
                continue
            if not dist:
                problems.append((where, "no label (json label/soft_label, cls or txt)"))
                continue
            ext = next(e for e in IMAGE_KEYS if e in parts)
            samples.append(Sample(
                key=_safe_key(f"{shard.stem}_{key.rsplit('/', 1)[-1]}"), source_file=where,
                read_bytes=(lambda s=shard, m=image: _read_member(s, m.offset_data, m.size)), image_ext=ext,
                distribution=dist, extra={"dataset": "webdataset", "shard": str(shard), "key": key},
            ))
    return samples, problems


def _video_frames(path: Path, n: int) -> Tuple[List[int], Callable[[int], bytes]]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError("cannot open video")
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    if total <= 0:
        raise ValueError("video has no frames")
    picks = sorted({int(round(x)) for x in _spread(total, n)})

    def read(index: int) -> bytes:
        c = cv2.VideoCapture(str(path))
        try:
            c.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = c.read()
        finally:
            c.release()
        if not ok:
            raise OSError(f"cannot decode frame {index} of {path}")
        ok, buf = cv2.imencode(".png", frame)
        return buf.tobytes()

    return picks, read


def _spread(total: int, n: int) -> List[float]:
    if n >= total:
        return list(range(total))
    step = total / n
    return [step * (k + 0.5) - 0.5 for k in range(n)]


def video_source(root: str, split: Optional[str] = None, frames_per_clip: int = 8, **_) -> Tuple[List[Sample], List[Tuple[str, str]]]:
    """``root/<class>/<clip file or frame folder>``: ``frames_per_clip`` evenly spaced frames of each clip."""
    base = Path(root) / split if split else Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: video folder not found")
    samples, problems = [], []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        canon = taxonomy.canonical_or_none(folder.name)
        if canon is None:
            problems.append((str(folder), f"class folder {folder.name!r} is not a known emotion; its clips are skipped"))
            continue
        for clip in sorted(folder.iterdir()):
            clip_id = f"{folder.name}/{clip.stem if clip.is_file() else clip.name}"
            if clip.is_file() and clip.suffix.lower() in VIDEO_EXTENSIONS:
                try:
                    picks, read = _video_frames(clip, frames_per_clip)
                except ValueError as e:
                    problems.append((str(clip), str(e)))
                    continue
                frames = [(i, (lambda i=i, r=read: r(i)), "png", f"{clip}#frame{i}") for i in picks]
            elif clip.is_dir():
                files = list(iter_image_files(clip, recursive=False))
                if not files:
                    problems.append((str(clip), "frame folder without images"))
                    continue
                picks = sorted({int(round(x)) for x in _spread(len(files), frames_per_clip)})
                frames = [(i, files[i].read_bytes, files[i].suffix.lstrip(".").lower(), str(files[i])) for i in picks]
            else:
                if clip.suffix.lower() not in IMAGE_EXTENSIONS:
                    problems.append((str(clip), "neither a video file nor a frame folder"))
                continue
            for index, read, ext, where in frames:
                samples.append(Sample(
                    key=_safe_key(f"{clip_id}_f{index:06d}"), source_file=where, read_bytes=read, image_ext=ext,
                    distribution={canon: 1.0},
                    extra={"dataset": "video", "clip": clip_id, "frame": index, "class_folder": folder.name},
                ))
    return samples, problems


MEDIA_SOURCES = {"hf": hf_source, "webdataset": webdataset_source, "video": video_source}
