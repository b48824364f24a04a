"""FER+ reader: the ``FER2013<Split>/`` layout (``ferNNNNNNN.png`` + ``label.csv`` with 10 votes per image).

Shared by the caption builder (votes -> captions), training (validation split) and eval (the FER+ benchmark).
A split may be an unpacked folder or the ``FER2013<Split>.tar`` archive of it; both read the same way.

``label.csv`` rows: ``image name, "(x, y, w, h)", then 10 vote counts`` in the order of :data:`VOTE_COLUMNS`.
Malformed rows are reported (file, line, reason) and skipped, never fatal for the rest.
"""

from __future__ import annotations

import csv
import io
import os
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
from PIL import Image

from .images import image_from_bytes

__all__ = [
    "VOTE_COLUMNS", "EMOTIONS", "SPLITS", "FerPlusRecord", "FerPlusSplit", "majority_label", "soft_label",
    "LabelFileError",
]

VOTE_COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"]
EMOTIONS = VOTE_COLUMNS[:8]
SPLITS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}


class LabelFileError(ValueError):
    """A label file that cannot be used at all (missing, empty, no valid row)."""


@dataclass(frozen=True)
class FerPlusRecord:
    name: str
    box: Tuple[int, int, int, int]
    votes: Tuple[int, ...]  # 10 counts in VOTE_COLUMNS order

    @property
    def votes_array(self) -> np.ndarray:
        return np.asarray(self.votes, dtype=np.float64)


def majority_label(votes) -> Optional[int]:
    """Index into :data:`EMOTIONS` under the FER+ majority protocol, or None when the image is dropped.

    Single stray votes are removed; the image is kept when its top class holds more than half of the remaining
    votes and that class is an emotion (not unknown / not-a-face).
    """
    v = np.asarray(votes, dtype=np.float64).copy()
    v[v == 1] = 0
    total = v.sum()
    if total <= 0:
        return None
    top = int(np.argmax(v))
    if v[top] * 2 <= total or top >= len(EMOTIONS):
        return None
    return top


def soft_label(votes) -> Optional[np.ndarray]:
    """Vote distribution over the 8 emotions (unknown and NF dropped), or None when no emotion vote exists."""
    v = np.asarray(votes, dtype=np.float64)[: len(EMOTIONS)]
    total = v.sum()
    return None if total <= 0 else v / total


def parse_label_rows(text: str, source: str) -> Tuple[List[FerPlusRecord], List[Tuple[str, str]]]:
    """Parse ``label.csv`` text; returns (records, problems) where a problem is (``file:line``, reason)."""
    records: List[FerPlusRecord] = []
    problems: List[Tuple[str, str]] = []
    seen = set()
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        where = f"{source}:{lineno}"
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 12:
            problems.append((where, f"expected 12 fields (name, box, 10 votes), found {len(row)}"))
            continue
        name = row[0].strip()
        if not name:
            problems.append((where, "empty image name"))
            continue
        try:
            box = tuple(int(x) for x in row[1].strip().strip("()").split(","))
            if len(box) != 4:
                raise ValueError
        except ValueError:
            problems.append((where, f"face box {row[1]!r} is not '(x, y, w, h)'"))
            continue
        try:
            votes = tuple(int(x) for x in row[2:])
        except ValueError:
            problems.append((where, f"vote counts {row[2:]} are not all integers"))
            continue
        if any(v < 0 for v in votes) or sum(votes) == 0:
            problems.append((where, f"vote counts {list(votes)} are negative or all zero"))
            continue
        if name in seen:
            problems.append((where, f"duplicate row for {name}"))
            continue
        seen.add(name)
        records.append(FerPlusRecord(name, box, votes))
    return records, problems


class FerPlusSplit:
    """One FER+ split read from ``root`` (folder holding ``FER2013<Split>/`` or ``FER2013<Split>.tar``).

    ``root`` may also point straight at the split folder or tar. ``records`` holds the parsed label rows and
    ``problems`` the rows that were skipped with their reasons.
    """

    def __init__(self, root: Union[str, Path], split: str = "test"):
        if split not in SPLITS:
            raise ValueError(f"FER+ split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.split = split
        self.source = self._locate(Path(root), SPLITS[split])
        self._tar: Optional[tarfile.TarFile] = None
        self._tar_lock = threading.Lock()  # one file handle: member reads must not interleave across threads
        self._tar_pid = os.getpid()
        self._members: Dict[str, tarfile.TarInfo] = {}
        label_text = self._read_text("label.csv")
        self.records, self.problems = parse_label_rows(label_text, f"{self.source}/label.csv")
        if not self.records:
            raise LabelFileError(f"{self.source}/label.csv: no valid rows ({len(self.problems)} malformed)")

    @staticmethod
    def _locate(root: Path, folder: str) -> Path:
        candidates = [root / folder, root / f"{folder}.tar", root]
        for c in candidates:
            if c.is_dir() and (c / "label.csv").is_file():
                return c
            if c.is_file() and c.suffix == ".tar" and c.stem == folder:
                return c
        raise FileNotFoundError(
            f"no FER+ split {folder!r} under {root}: expected {root / folder}/label.csv or {root / folder}.tar"
        )

    def _open_tar(self) -> tarfile.TarFile:
        if self._tar is not None and self._tar_pid != os.getpid():
            # a forked worker (caption builder processes) must not share the parent's file offset: reopen; the
            # member index stays valid (same file)
            self._tar = tarfile.open(self.source)
            self._tar_pid = os.getpid()
        if self._tar is None:
            self._tar = tarfile.open(self.source)
            self._tar_pid = os.getpid()
            for m in self._tar.getmembers():
                if m.isfile():
                    self._members[Path(m.name).name] = m
        return self._tar

    def _read_bytes(self, name: str) -> bytes:
        if self.source.is_dir():
            return (self.source / name).read_bytes()
        with self._tar_lock:
            tar = self._open_tar()
            if name not in self._members:
                raise FileNotFoundError(f"{self.source}: no member {name}")
            return tar.extractfile(self._members[name]).read()

    def _read_text(self, name: str) -> str:
        try:
            return self._read_bytes(name).decode("utf-8")
        except FileNotFoundError:
            raise LabelFileError(f"{self.source}: missing {name}") from None
        except UnicodeDecodeError as e:
            raise LabelFileError(f"{self.source}/{name}: not UTF-8 text ({e})") from None

    def __len__(self) -> int:
        return len(self.records)

    def image_bytes(self, record: FerPlusRecord) -> bytes:
        return self._read_bytes(record.name)

    def load(self, record: FerPlusRecord) -> Image.Image:
        """The record's face as an RGB image; raises ImageLoadError naming the file."""
        return image_from_bytes(lambda: self._read_bytes(record.name), f"{self.source}/{record.name}")

    def majority(self) -> List[Tuple[FerPlusRecord, int]]:
        """(record, class index into EMOTIONS) for the images kept by the majority protocol."""
        out = []
        for r in self.records:
            label = majority_label(r.votes)
            if label is not None:
                out.append((r, label))
        return out

    def __iter__(self) -> Iterator[FerPlusRecord]:
        return iter(self.records)

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None
