"""ImageFolder benchmark loader (eval): ``imagefolder``, any ``root[/<split>]/<class>/**/<image>`` folder.

Place in the flow: ``emocap.eval.registry`` names :func:`load_imagefolder`; ``Benchmark.load`` imports and calls
it. Class folders come from core's ImageFolder reader (:func:`emocap.readers.imagefolder.emotion_folders`): only
folders whose names map to an emotion through the taxonomy are classes; the others (``weirdo/``,
``__MACOSX/``) are listed as ignored in the problems and ``info["ignored_folders"]``, never scored as classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from emocap.images import IMAGE_EXTENSIONS, iter_image_files
from emocap.readers.imagefolder import emotion_folders

from ..samples import BenchmarkData, BenchmarkSample, Problem
from .common import image_sample

__all__ = ["load_imagefolder"]


def _non_images(folder: Path) -> List[Problem]:
    return [(str(p), "not an image file extension; ignored") for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in IMAGE_EXTENSIONS]


def emotion_folders_or_none(base: Path):
    """The emotion class folders directly under ``base``, or an empty list when it has none (or is unreadable)."""
    try:
        return emotion_folders(base)[0]
    except (FileNotFoundError, OSError):
        return []


def load_imagefolder(root: Path, split: Optional[str]) -> BenchmarkData:
    """A root with one sub-folder per class (``root/<class>/**/*.png``), optionally under ``root/<split>/``.

    Folder names are mapped to canonical emotions through the taxonomy (``happy`` -> ``happiness``); folders
    that map to no emotion are ignored and listed. Folders that map to the same emotion are merged. Classes are
    in sorted folder-name order (as torchvision's ImageFolder). Empty class folders and non-image files are
    reported.
    """
    base = root / split if split else root
    if not base.is_dir():
        what = "is not a folder" if base.exists() else "does not exist"
        raise FileNotFoundError(f"imagefolder: {base} {what}")
    try:
        folders, problems = emotion_folders(base)
    except FileNotFoundError as e:
        raise ValueError(f"imagefolder: {e}") from None
    ignored = [Path(where).name for where, _ in problems]
    classes: List[str] = []
    index: Dict[str, int] = {}
    merged_from: Dict[str, str] = {}
    samples: List[BenchmarkSample] = []
    for folder, name in folders:
        files = list(iter_image_files(folder))
        problems.extend(_non_images(folder))
        if not files:
            problems.append((str(folder), "class folder holds no image files; class left out"))
            continue
        if name not in index:
            index[name] = len(classes)
            classes.append(name)
            merged_from[name] = folder.name
        else:
            problems.append((str(folder), f"merged with folder {merged_from[name]!r} as class {name!r}"))
        samples.extend(image_sample(f, index[name]) for f in files)
    splits_inside = [name for name in ignored if (base / name).is_dir() and emotion_folders_or_none(base / name)]
    hint = f"; {', '.join(splits_inside)} looks like a split folder: add --split {splits_inside[0]}" if splits_inside else ""
    if not samples:
        raise ValueError(f"imagefolder: no image files in any class folder under {base}"
                         + (f" (ignored folders, not emotions: {', '.join(ignored)})" if ignored else "") + hint)
    if len(classes) < 2:
        raise ValueError(f"imagefolder: only one class ({classes[0]}) under {base}: a benchmark needs at least two "
                         f"class folders{hint}")
    info = {"protocol": "folder-label", "source": str(base),
            "folders": {f.name: name for f, name in folders}, "ignored_folders": ignored}
    return BenchmarkData(samples, classes, problems, info)
