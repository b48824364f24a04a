"""Shared loader helpers (eval): locating annotation files, reading their lines, options, class folders, items.

Used by every module of ``emocap.eval.loaders``; nothing here registers a benchmark (that is
``emocap.eval.registry``'s table). A wrong root or a missing annotation file raises FileNotFoundError naming the
expected path; row-level trouble becomes ``(source, reason)`` problems.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from emocap.images import IMAGE_EXTENSIONS, load_image
from emocap.images import image_from_bytes
from emocap.readers import Sample

from ..label_maps import LabelMap
from ..samples import BenchmarkSample, Problem

__all__ = ["find_file", "read_lines", "option_int", "option_bool", "class_folders", "image_files", "image_sample",
           "reader_item"]


def find_file(bench: str, candidates: Sequence[Path], what: str, folder: bool = False) -> Path:
    """The first existing candidate; else FileNotFoundError naming the expected path (and the alternatives)."""
    for c in candidates:
        if (c.is_dir() if folder else c.is_file()):
            return c
    others = f" (or {', '.join(str(c) for c in candidates[1:])})" if len(candidates) > 1 else ""
    raise FileNotFoundError(f"{bench}: {what} not found: expected {candidates[0]}{others}")


def read_lines(path: Path) -> List[Tuple[int, str]]:
    """Non-blank lines of a text annotation file as (line number, stripped text); UTF-8, else Latin-1."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def option_int(value: object, name: str, minimum: int = 1) -> int:
    """An integer option (CLI options arrive as strings)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"option {name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"option {name} must be >= {minimum}, got {number}")
    return number


def option_bool(value: object, name: str) -> bool:
    """A yes/no option (``True``, ``"false"``, ``"0"``, ``"yes"`` ...)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "on"):
        return True
    if text in ("0", "false", "no", "n", "off"):
        return False
    raise ValueError(f"option {name} must be true or false, got {value!r}")


def class_folders(bench: str, base: Path, labels: LabelMap) -> Tuple[List[Tuple[Path, int]], List[Problem]]:
    """The class sub-folders of ``base`` matched to ``labels`` by name (case-insensitive), in native order.

    Folders that are not classes of the benchmark and expected class folders that are missing are reported as
    problems; a missing ``base`` raises FileNotFoundError naming it.
    """
    if not base.is_dir():
        raise FileNotFoundError(f"{bench}: class folders not found: expected {base}/<{'|'.join(labels.native)}>/")
    found: Dict[int, Path] = {}
    problems: List[Problem] = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        idx = labels.index(folder.name)
        if idx is None:
            problems.append((str(folder), f"not a class folder of {bench} (expected {', '.join(labels.native)}); "
                                          "ignored"))
        elif idx in found:
            problems.append((str(folder), f"second folder for class {labels.native[idx]!r}; ignored"))
        else:
            found[idx] = folder
    for idx, name in enumerate(labels.native):
        if idx not in found:
            problems.append((str(base / name), f"class folder missing: no samples of {labels.classes[idx]}"))
    if not found:
        raise FileNotFoundError(f"{bench}: no class folder under {base}; expected {base}/<{'|'.join(labels.native)}>/")
    return [(found[i], i) for i in sorted(found)], problems


def image_files(folder: Path, problems: List[Problem]) -> List[Path]:
    """Image files under ``folder`` (sorted); other files are reported as problems."""
    files = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            files.append(p)
        else:
            problems.append((str(p), "not an image file extension; ignored"))
    return files


def image_sample(path: Path, label: int, **extra) -> BenchmarkSample:
    """An item that loads the image file ``path``."""
    return BenchmarkSample(str(path), functools.partial(load_image, path), label, **extra)


def reader_item(sample: Sample, label: int, source: Optional[str] = None, **extra) -> BenchmarkSample:
    """The benchmark item for a core reader's sample (its bytes decoded on load) with class index ``label``."""
    source = source or sample.source_file
    return BenchmarkSample(source, functools.partial(image_from_bytes, sample.read_bytes, source), label, **extra)
