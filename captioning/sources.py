"""Caption-builder inputs: datasets turned into a deterministic list of samples with their evidence.

First step of the caption flow (**evidence** -> facts -> writer -> shards). A source yields :class:`Sample`
objects in a fixed order (so shard assignment is stable across runs and resumes) and a list of problems found
while reading its label files. Registry: ``SOURCES`` maps a name to a reader function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from emocap import taxonomy
from emocap.ferplus import EMOTIONS, VOTE_COLUMNS, FerPlusSplit
from emocap.images import iter_image_files


@dataclass
class Sample:
    key: str  # unique, stable, webdataset-safe (no dots)
    source_file: str
    read_bytes: Callable[[], bytes]
    image_ext: str
    distribution: Optional[Dict[str, float]] = None
    votes: Optional[Dict[str, int]] = None
    agreement: Optional[float] = None
    skip_reason: Optional[str] = None  # set when the label evidence already rules the sample out
    extra: Dict[str, object] = field(default_factory=dict)


def _safe_key(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def ferplus_source(root: str, split: str = "train") -> Tuple[List[Sample], List[Tuple[str, str]]]:
    """FER+ layout: votes -> emotion distribution; agreement counts unknown votes, NF-majority faces are skipped."""
    data = FerPlusSplit(root, split)
    samples = []
    for rec in data.records:
        votes = dict(zip(VOTE_COLUMNS, rec.votes))
        emotion_votes = {e: votes[e] for e in EMOTIONS if votes[e] > 0}
        total_valid = sum(rec.votes[:9])  # everything but NF
        reason = None
        if votes["NF"] >= max(rec.votes[:9]) and votes["NF"] > 0:
            reason = "annotators marked it as not a face (NF majority)"
        elif not emotion_votes:
            reason = "no emotion votes (all unknown / NF)"
        dist = {e: v / sum(emotion_votes.values()) for e, v in emotion_votes.items()} if emotion_votes else None
        agreement = (max(emotion_votes.values()) / total_valid) if emotion_votes and total_valid else None
        samples.append(
            Sample(
                key=_safe_key(f"ferplus_{split}_{Path(rec.name).stem}"),
                source_file=f"{data.source}/{rec.name}",
                read_bytes=(lambda r=rec: data.image_bytes(r)),
                image_ext=Path(rec.name).suffix.lstrip(".").lower() or "png",
                distribution=dist,
                votes=votes,
                agreement=agreement,
                skip_reason=reason,
                extra={"dataset": "ferplus", "split": split, "file": rec.name, "box": list(rec.box)},
            )
        )
    return samples, list(data.problems)


def imagefolder_source(root: str, split: Optional[str] = None) -> Tuple[List[Sample], List[Tuple[str, str]]]:
    """ImageFolder: ``root/<class>/<image>``; class folder names go through the taxonomy."""
    base = Path(root) / split if split else Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: image folder not found")
    classes = sorted(p for p in base.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"{base}: no class sub-folders (expected {base}/<class name>/<images>)")
    samples, problems = [], []
    for folder in classes:
        canon = taxonomy.canonical_or_none(folder.name)
        files = list(iter_image_files(folder))
        if canon is None:
            problems.append((str(folder), f"class folder {folder.name!r} is not a known emotion; its {len(files)} images are skipped"))
            continue
        for f in files:
            samples.append(
                Sample(
                    key=_safe_key(f"{base.name}_{folder.name}_{f.stem}"),
                    source_file=str(f),
                    read_bytes=f.read_bytes,
                    image_ext=f.suffix.lstrip(".").lower(),
                    distribution={canon: 1.0},
                    extra={"dataset": "imagefolder", "class_folder": folder.name, "file": str(f.relative_to(base))},
                )
            )
    return samples, problems


SOURCES: Dict[str, Callable[..., Tuple[List[Sample], List[Tuple[str, str]]]]] = {
    "ferplus": ferplus_source,
    "imagefolder": imagefolder_source,
}
