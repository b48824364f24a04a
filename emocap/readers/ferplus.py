"""FER+ reader (core): the FER+ split as samples with their votes, for the caption builder and eval.

Reads through :class:`emocap.ferplus.FerPlusSplit` (folder or ``.tar``; malformed label rows become problems).
Each label row is one :class:`~emocap.readers.Sample` in label-file order: the 10 votes, the emotion
distribution (unknown / not-a-face votes dropped), the agreement (top emotion's share of the valid votes) and a
``skip_reason`` when the annotators marked it as not a face or gave no emotion vote. Eval's FER+ protocols
(majority, soft votes, compound) select from these samples by their votes (``emocap.eval.loaders.ferplus``).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from emocap.ferplus import EMOTIONS, VOTE_COLUMNS, FerPlusRecord, FerPlusSplit

from .sample import ReadResult, Sample, sample_keys

__all__ = ["read_ferplus", "ferplus_samples", "vote_tuple"]


def _evidence(record: FerPlusRecord):
    votes = dict(zip(VOTE_COLUMNS, record.votes))
    emotion_votes = {e: votes[e] for e in EMOTIONS if votes[e] > 0}
    total_valid = sum(record.votes[:9])  # everything but NF
    reason: Optional[str] = None
    if votes["NF"] >= max(record.votes[:9]) and votes["NF"] > 0:
        reason = "annotators marked it as not a face (NF majority)"
    elif not emotion_votes:
        reason = "no emotion votes (all unknown / NF)"
    dist = {e: v / sum(emotion_votes.values()) for e, v in emotion_votes.items()} if emotion_votes else None
    agreement = (max(emotion_votes.values()) / total_valid) if emotion_votes and total_valid else None
    return votes, dist, agreement, reason


def ferplus_samples(data: FerPlusSplit) -> List[Sample]:
    """One sample per label row of an opened FER+ split, in label-file order (the caller closes ``data``)."""
    split = data.split
    texts = [f"ferplus_{split}_{Path(r.name).stem}" for r in data.records]
    keys = sample_keys(texts, [r.name for r in data.records])
    samples = []
    for record, key in zip(data.records, keys):
        votes, dist, agreement, reason = _evidence(record)
        samples.append(Sample(
            key=key,
            source_file=f"{data.source}/{record.name}",
            read_bytes=(lambda r=record: data.image_bytes(r)),
            image_ext=Path(record.name).suffix.lstrip(".").lower() or "png",
            distribution=dist,
            votes=votes,
            agreement=agreement,
            skip_reason=reason,
            extra={"dataset": "ferplus", "split": split, "file": record.name, "box": list(record.box)},
        ))
    return samples


def vote_tuple(sample: Sample) -> tuple:
    """The 10 FER+ vote counts of a FER+ sample in :data:`emocap.ferplus.VOTE_COLUMNS` order."""
    return tuple(sample.votes[c] for c in VOTE_COLUMNS)


def read_ferplus(root: str, split: str = "train", **_) -> ReadResult:
    """FER+ layout under ``root``: votes -> emotion distribution; NF-majority faces carry a ``skip_reason``."""
    data = FerPlusSplit(root, split)
    return ferplus_samples(data), list(data.problems)
