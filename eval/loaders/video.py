"""Loaders for the video (dynamic) FER benchmarks DFEW, FERV39k, MAFW and AFEW: a sample is a clip.

Place in the flow: ``emocap.eval.registry`` names ``dfew``, ``ferv39k``, ``mafw`` and ``afew`` with the loaders
here; ``Benchmark.load`` imports and calls them. A clip :class:`~emocap.eval.samples.BenchmarkSample` carries
``frames`` (the frame image paths it will load, sampled uniformly, or the one video file it decodes) and its
``load`` returns a :class:`~emocap.eval.samples.ClipFrames` list of RGB images; ``emocap.eval.zeroshot.evaluate`` scores
every frame and mean-pools the frame probabilities into one prediction per clip.

Frames are picked and read by core's one frame sampler (:mod:`emocap.readers.frames`, shared with the caption
builder): ``frames`` per clip (default 8, the ``frames`` option), at the centres of equal segments (the usual
test-time sampling); a clip with fewer frames uses all of them; frame folders in natural order. Pre-extracted
frame folders are read directly; video files (.avi, .mp4, ...) are decoded with OpenCV. Labels map through
``emocap/data/labels.json`` in native order; problems are reported per clip, a wrong root or missing annotation
raises FileNotFoundError naming the expected path.
"""

from __future__ import annotations

import csv
import functools
import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from emocap.images import ImageLoadError, load_image
from emocap.readers import frames as frame_reader
from emocap.readers.frames import SAMPLING, VIDEO_EXTENSIONS, frame_files, natural_key, uniform_indices

from ..label_maps import LabelMap, unknown_label
from ..samples import BenchmarkData, BenchmarkSample, ClipFrames, Problem
from .common import class_folders, find_file, option_int, read_lines

__all__ = [
    "DEFAULT_FRAMES", "load_frame_files", "read_video_frames", "folder_clip", "video_clip",
    "load_dfew", "load_ferv39k", "load_mafw", "load_afew", "FOLDS5", "DFEW", "FERV39K", "MAFW", "AFEW",
]

DEFAULT_FRAMES = 8
DFEW = LabelMap.bundled("dfew")
FERV39K = LabelMap.bundled("ferv39k")
MAFW = LabelMap.bundled("mafw")
AFEW = LabelMap.bundled("afew")
FOLDS5 = tuple(f"fold{i}" for i in range(1, 6))


def load_frame_files(paths: Sequence[Path], source: str) -> ClipFrames:
    """The frames at ``paths``; unreadable ones are listed in ``problems``; none readable raises ImageLoadError."""
    out = ClipFrames()
    for p in paths:
        try:
            out.append(load_image(p))
        except ImageLoadError as e:
            out.problems.append((e.source, f"{e.reason}; frame left out of the clip"))
    if not out:
        raise ImageLoadError(source, f"none of the {len(paths)} sampled frames could be read")
    return out


def read_video_frames(path: Path, k: int = DEFAULT_FRAMES, source: Optional[str] = None) -> ClipFrames:
    """``k`` uniformly sampled RGB frames of a video file (:func:`emocap.readers.frames.read_video_frames`)."""
    return ClipFrames(frame_reader.read_video_frames(path, k, source))


def folder_clip(folder: Path, label: int, k: int, problems: List[Problem],
                where: str = "") -> Optional[BenchmarkSample]:
    """A clip sample of ``k`` uniformly sampled frames of a frame folder, or None (reported) when it has none."""
    if not folder.is_dir():
        problems.append((str(folder), f"frame folder{' listed in ' + where if where else ''} not found"))
        return None
    files = frame_files(folder)
    if not files:
        problems.append((str(folder), "frame folder holds no image files"))
        return None
    picked = [files[i] for i in uniform_indices(len(files), k)]
    return BenchmarkSample(str(folder), functools.partial(load_frame_files, picked, str(folder)), label,
                  frames=tuple(str(p) for p in picked))


def video_clip(path: Path, label: int, k: int) -> BenchmarkSample:
    """A clip sample that decodes ``k`` uniformly sampled frames of the video file ``path`` when loaded."""
    return BenchmarkSample(str(path), functools.partial(read_video_frames, path, k, str(path)), label,
                           frames=(str(path),))


def _info(protocol: str, k: int, samples: List[BenchmarkSample], **extra) -> dict:
    return {"protocol": protocol, "frames_per_clip": k, "frame_sampling": SAMPLING, "n_clips": len(samples),
            "pooling": "mean of frame probabilities", **extra}


# ------------------------------------------------------------------------------------------------------ DFEW

def load_dfew(root: Path, split: Optional[str], frames=DEFAULT_FRAMES) -> BenchmarkData:
    """DFEW: ``[EmoLabel_DataSplit/]test(single-labeled)/set_<fold>.csv`` (``video_name,label``, ids 1-7 = happiness,
    sadness, neutral, anger, surprise, disgust, fear) + frames in ``Clip/clip_224x224/<video_name>/*.jpg`` (names
    zero-padded to 5 digits when needed). Split ``fold1``..``fold5`` is that fold's test set."""
    k = option_int(frames, "frames")
    fold = int((split or "fold1")[len("fold"):])
    dirs = [root, root / "EmoLabel_DataSplit", root / "Annotation", root / "label"]
    ann = find_file("dfew", [d / "test(single-labeled)" / f"set_{fold}.csv" for d in dirs], "annotation")
    clip_root = find_file("dfew", [root / "Clip" / "clip_224x224", root / "clip_224x224",
                                   root / "Clip" / "clip_224x224_16f", root / "Clip" / "clip_224x16f"],
                          "frame folder", folder=True)
    samples: List[BenchmarkSample] = []
    problems: List[Problem] = []
    with open(ann, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    for lineno, row in enumerate(rows, start=1):
        where = f"{ann}:{lineno}"
        if not row or all(not c.strip() for c in row):
            continue
        if lineno == 1 and row[0].strip().lower() == "video_name":
            continue
        if len(row) < 2:
            problems.append((where, f"expected 'video_name,label', found {','.join(row)!r}"))
            continue
        name, value = row[0].strip(), row[1].strip()
        idx = DFEW.index(value)
        if idx is None:
            problems.append((where, unknown_label(DFEW, value)))
            continue
        folder = clip_root / name
        if not folder.is_dir() and name.isdigit():
            folder = clip_root / name.zfill(5)
        clip = folder_clip(folder, idx, k, problems, where)
        if clip is not None:
            samples.append(clip)
    info = _info(f"5-fold protocol, test set of fold {fold}", k, samples, annotation=str(ann), frames=str(clip_root))
    return BenchmarkData(samples, list(DFEW.classes), problems, info)


# --------------------------------------------------------------------------------------------------- FERV39k

def load_ferv39k(root: Path, split: Optional[str], frames=DEFAULT_FRAMES) -> BenchmarkData:
    """FERV39k: ``4_setups/All_scenes/test_All.csv`` rows ``Action/Sad/0010 Sad`` (clip path, then the label name:
    Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise) + frame folders ``2_ClipsforFaceCrop/<clip path>/``.
    Split ``test`` (7,847 clips) or ``train``."""
    k = option_int(frames, "frames")
    split = split or "test"
    name = f"{split}_All.csv"
    ann = find_file("ferv39k", [root / "4_setups" / "All_scenes" / name, root / "All_scenes" / name, root / name],
                    "annotation")
    clip_root = find_file("ferv39k", [root / "2_ClipsforFaceCrop", root / "Image" / "CropFace" / "2_ClipsforFaceCrop"],
                          "frame folder", folder=True)
    samples: List[BenchmarkSample] = []
    problems: List[Problem] = []
    header = None
    for lineno, line in read_lines(ann):
        where = f"{ann}:{lineno}"
        parts = [p for p in re.split(r"[\s,]+", line) if p]
        if len(parts) < 2:
            problems.append((where, f"expected 'clip_path label', found {line!r}"))
            continue
        idx = FERV39K.index(parts[-1])
        if idx is None:
            if lineno == 1 and "/" not in parts[0]:
                header = line  # a column header row
            else:
                problems.append((where, unknown_label(FERV39K, parts[-1])))
            continue
        clip = folder_clip(clip_root / parts[0], idx, k, problems, where)
        if clip is not None:
            samples.append(clip)
    info = _info(f"All_scenes {split} set", k, samples, annotation=str(ann), frames=str(clip_root))
    if header:
        info["header"] = header
    return BenchmarkData(samples, list(FERV39K.classes), problems, info)


# ------------------------------------------------------------------------------------------------------ MAFW

def _mafw_media(root: Path) -> Tuple[Optional[Path], Optional[Path]]:
    frames = next((d for d in (root / "data" / "frames", root / "frames") if d.is_dir()), None)
    clips = next((d for d in (root / "data" / "clips", root / "clips") if d.is_dir()), None)
    if frames is None and clips is None:
        raise FileNotFoundError(f"mafw: no clips: expected frame folders {root / 'data' / 'frames'}/<clip>/ "
                                f"or video files {root / 'data' / 'clips'}/<clip>.mp4")
    return frames, clips


def load_mafw(root: Path, split: Optional[str], frames=DEFAULT_FRAMES) -> BenchmarkData:
    """MAFW single-expression set, 11 classes in native order (anger, disgust, fear, happiness, neutral, sadness,
    surprise, contempt, anxiety, helplessness, disappointment): ``Train & Test Set/single/no_caption/set_<n>/
    test.txt`` rows ``00025.mp4 anger`` + frame folders ``data/frames/00025/`` (else videos ``data/clips/``).
    Split ``fold1``..``fold5`` is that fold's test set."""
    k = option_int(frames, "frames")
    fold = int((split or "fold1")[len("fold"):])
    rel = Path("Train & Test Set") / "single" / "no_caption" / f"set_{fold}" / "test.txt"
    ann = find_file("mafw", [root / rel, root / "train_test_set" / rel, root / rel.relative_to("Train & Test Set")],
                    "annotation")
    frames_root, clips_root = _mafw_media(root)
    samples: List[BenchmarkSample] = []
    problems: List[Problem] = []
    for lineno, line in read_lines(ann):
        where = f"{ann}:{lineno}"
        parts = line.split()
        if len(parts) != 2:
            problems.append((where, f"expected 'clip label', found {line!r}"))
            continue
        idx = MAFW.index(parts[1])
        if idx is None:
            problems.append((where, unknown_label(MAFW, parts[1])))
            continue
        stem = Path(parts[0]).stem
        if frames_root is not None and (frames_root / stem).is_dir():
            clip = folder_clip(frames_root / stem, idx, k, problems, where)
        elif clips_root is not None and (clips_root / parts[0]).is_file():
            clip = video_clip(clips_root / parts[0], idx, k)
        else:
            missing = frames_root / stem if frames_root is not None else clips_root / parts[0]
            problems.append((str(missing), f"clip listed in {where} not found"))
            clip = None
        if clip is not None:
            samples.append(clip)
    info = _info(f"5-fold protocol, test set of fold {fold}", k, samples, annotation=str(ann))
    return BenchmarkData(samples, list(MAFW.classes), problems, info)


# ------------------------------------------------------------------------------------------------------ AFEW

def load_afew(root: Path, split: Optional[str], frames=DEFAULT_FRAMES) -> BenchmarkData:
    """AFEW (EmotiW): ``Val_AFEW/<Angry|Disgust|Fear|Happy|Neutral|Sad|Surprise>/<clip>.avi`` or ``<clip>/``
    frame folders. Val (383 clips) is the test set (test labels are hidden); ``split='train'``: ``Train_AFEW/``."""
    k = option_int(frames, "frames")
    split = split or "val"
    title = "Val" if split == "val" else "Train"
    candidates = [root / f"{title}_AFEW", root / title, root / "AFEW" / f"{title}_AFEW"]
    base = find_file("afew", candidates, "split folder", folder=True)
    folders, problems = class_folders("afew", base, AFEW)
    samples: List[BenchmarkSample] = []
    for folder, idx in folders:
        for entry in sorted(folder.iterdir(), key=natural_key):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                clip = folder_clip(entry, idx, k, problems)
                if clip is not None:
                    samples.append(clip)
            elif entry.suffix.lower() in VIDEO_EXTENSIONS:
                samples.append(video_clip(entry, idx, k))
            else:
                problems.append((str(entry), "neither a video file nor a frame folder; ignored"))
    info = _info(f"{base.name} as the {split} split", k, samples, source=str(base))
    return BenchmarkData(samples, list(AFEW.classes), problems, info)

