"""ImageFolder reader (core): ``root[/<split>]/<class>/**/<image>``, the class from the folder name.

Classes are only the folders whose names map to an emotion through :mod:`emocap.taxonomy` (``happy`` ->
``happiness``, ``rage`` -> ``anger``); every other folder (``weirdo/``, ``__MACOSX/``) is listed as ignored in the
problems, never made a class. Hidden folders (``.git``) are passed over silently. Images are all image files
under a class folder, sorted; keys are ``<split>_<folder>_<stem>``, unique by construction (two files with one
stem in different sub-folders are told apart, :func:`emocap.readers.sample_keys`).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from emocap import taxonomy
from emocap.images import iter_image_files

from .sample import Problem, ReadResult, Sample, sample_keys

__all__ = ["read_imagefolder", "emotion_folders", "imagefolder_base"]


def imagefolder_base(root, split: Optional[str]) -> Path:
    """``root/split`` (or ``root``), which must be a folder."""
    base = Path(root) / split if split else Path(root)
    if not base.is_dir():
        what = "is not a folder" if base.exists() else "does not exist"
        raise FileNotFoundError(f"{base}: image folder not found ({what})")
    return base


def emotion_folders(base: Path) -> Tuple[List[Tuple[Path, str]], List[Problem]]:
    """The class folders of ``base`` in sorted name order with their canonical emotion, and the ignored ones.

    Raises FileNotFoundError naming ``base`` when it holds no sub-folder at all."""
    folders = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise FileNotFoundError(f"{base}: no class sub-folders (expected {base}/<class name>/<images>)")
    kept: List[Tuple[Path, str]] = []
    problems: List[Problem] = []
    for folder in folders:
        canon = taxonomy.canonical_or_none(folder.name)
        if canon is None:
            n = sum(1 for _ in iter_image_files(folder))
            problems.append((str(folder), f"folder {folder.name!r} is not a known emotion, so not a class; "
                                          f"ignored with its {n} images"))
        else:
            kept.append((folder, canon))
    return kept, problems


def read_imagefolder(root: str, split: Optional[str] = None, **_) -> ReadResult:
    """ImageFolder as samples with a one-hot distribution (see the module docstring)."""
    base = imagefolder_base(root, split)
    folders, problems = emotion_folders(base)
    found = [(folder, canon, f) for folder, canon in folders for f in iter_image_files(folder)]
    keys = sample_keys([f"{base.name}_{folder.name}_{f.stem}" for folder, _, f in found],
                       [f.relative_to(base).as_posix() for _, _, f in found])
    samples = [
        Sample(
            key=key,
            source_file=str(f),
            read_bytes=f.read_bytes,
            image_ext=f.suffix.lstrip(".").lower(),
            distribution={canon: 1.0},
            extra={"dataset": "imagefolder", "class_folder": folder.name, "file": str(f.relative_to(base))},
        )
        for (folder, canon, f), key in zip(found, keys)
    ]
    return samples, problems
