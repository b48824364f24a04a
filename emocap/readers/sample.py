"""The one dataset sample type (core): what every reader in :mod:`emocap.readers` yields.

A :class:`Sample` is one image of a dataset: a stable key, where it comes from, a callable that returns its
original encoded bytes, and the label evidence the dataset gives for it (a class distribution, votes, identity,
valence / arousal, AU intensities, landmarks). The caption builder uses it as is; eval adapts it to a
benchmark item with a class index (``emocap.eval.samples.BenchmarkSample``). Keys are unique within a dataset
by construction (:func:`sample_keys`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from emocap import taxonomy
from emocap.safe_paths import unique_keys

__all__ = ["Sample", "Problem", "ReadResult", "sample_keys", "canonical_label"]

Problem = Tuple[str, str]  # (where: path, file:line, archive:member ..., reason)


@dataclass
class Sample:
    """One dataset image with its label evidence.

    Attributes:
        key: unique within the dataset, stable across runs, webdataset-safe (letters, digits, ``-``, ``_``).
        source_file: where the image comes from (path, ``archive/member``, ``clip#frameN``), for messages.
        read_bytes: zero-argument callable returning the original encoded image bytes.
        image_ext: the encoded format's extension (``png``, ``jpg`` ...).
        distribution: class distribution over canonical emotion names (one-hot for a hard label).
        votes: raw annotator votes where the dataset has them (FER+, vote columns).
        agreement: share of the valid votes held by the top emotion (FER+).
        skip_reason: set when the label evidence already rules the sample out (FER+ not-a-face majority).
        extra: dataset-specific details (file, split, box, clip id, frame index ...).
        identity: subject id where the dataset has several images of one person.
        aus: annotated AU intensities (0..1).
        valence, arousal: annotated, -1..1.
        landmarks: annotated 68 (x, y) points.
    """

    key: str
    source_file: str
    read_bytes: Callable[[], bytes]
    image_ext: str
    distribution: Optional[Dict[str, float]] = None
    votes: Optional[Dict[str, int]] = None
    agreement: Optional[float] = None
    skip_reason: Optional[str] = None
    extra: Dict[str, object] = field(default_factory=dict)
    identity: Optional[str] = None
    aus: Optional[Dict[int, float]] = None
    valence: Optional[float] = None
    arousal: Optional[float] = None
    landmarks: Optional[List[List[float]]] = None


ReadResult = Tuple[List[Sample], List[Problem]]


def sample_keys(texts: Sequence[str], identities: Sequence[str]) -> List[str]:
    """Unique sample keys for a dataset: ``safe_key(text)`` where that collides with no other sample's key.

    ``texts`` are the readable key texts (``train_happy_img1``), ``identities`` what tells the inputs apart (their
    relative paths). Inputs whose texts are equal (``set1/1.jpg`` and ``set2/1.jpg`` both give ``..._1``) are
    told apart by their identity; keys that collide after cleaning (``x.y`` and ``x_y``) get a short hash of
    their input through :func:`emocap.safe_paths.unique_keys`. Keys that collide with nothing stay exactly
    ``safe_key(text)``, so existing shards keep their keys."""
    counts: Dict[str, int] = {}
    for text in texts:
        counts[text] = counts.get(text, 0) + 1
    names = [text if counts[text] == 1 else f"{text}|{ident}" for text, ident in zip(texts, identities)]
    return unique_keys(names)


def canonical_label(raw, names: Optional[Sequence[str]], label_map: Optional[Dict[str, str]]) -> Optional[str]:
    """A raw label (a class index into ``names``, a name, a native code) -> canonical emotion, or None.

    ``label_map`` maps native values to names first (the user's ``--label-map``)."""
    if isinstance(raw, int) and names is not None and 0 <= raw < len(names):
        raw = names[raw]
    raw = str(raw).strip()
    if label_map:
        raw = label_map.get(raw, raw)
    return taxonomy.canonical_or_none(raw)
