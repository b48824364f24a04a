"""Benchmark items (eval): what a benchmark loader returns and how its images are loaded in batches.

Flow: a loader (``emocap.eval.loaders``) -> :class:`BenchmarkData` (items, class names, problems, protocol info)
-> ``emocap.eval.features`` loads the images in batches (:func:`load_clips`; a still image is a one-frame clip),
skipping and reporting the ones that fail, encodes them, and protocols pool clip frames with
:func:`pool_frame_probs`.

A :class:`BenchmarkSample` is a dataset item scored against a benchmark's class list: a source string (path,
``archive/member`` or ``file:line``), a zero-argument callable that returns an RGB PIL image (raising
:class:`emocap.images.ImageLoadError` on failure), an integer class index, and optionally the vote distribution
(``soft_label``), the subject (subject-disjoint folds), groups, and for a video clip its sampled frame sources
(``frames``; then ``load`` returns a :class:`ClipFrames` list). The formats eval shares with the caption builder
are read by core's :mod:`emocap.readers` (whose :class:`emocap.readers.Sample` carries the bytes and evidence)
and turned into these items by the loaders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from emocap.images import ImageLoadError

__all__ = ["Problem", "BenchmarkSample", "ClipFrames", "BenchmarkData", "load_samples", "load_clips",
           "pool_frame_probs"]

Problem = Tuple[str, str]


@dataclass(frozen=True)
class BenchmarkSample:
    """One test item: where it comes from, how to load it, and its class index.

    Attributes:
        source: path, ``archive/member`` or ``annotation:line`` naming the item in messages and results.
        load: zero-argument callable; an RGB PIL image, or for a clip a :class:`ClipFrames` list of them.
        label: class index into ``BenchmarkData.classes``.
        soft_label: the annotators' vote distribution over the classes (FER+ soft protocol), else None.
        frames: for a video clip, the sampled frame sources in time order (frame image paths, or the one video
            file that ``load`` decodes); None for a still image.
        subject: the person's id where the benchmark has one (CK+, JAFFE, KDEF): subject-disjoint folds.
        groups: other per-sample attributes for per-group metrics (e.g. ``{"gender": "female"}`` from a
            dataset's group annotations, or face attributes such as ``mouth_open``).
    """

    source: str
    load: Callable[[], Any]
    label: int
    soft_label: Optional[Tuple[float, ...]] = None
    frames: Optional[Tuple[str, ...]] = None
    subject: Optional[str] = None
    groups: Optional[Dict[str, str]] = field(default=None, compare=False, hash=False)

    @property
    def is_clip(self) -> bool:
        return self.frames is not None


class ClipFrames(list):
    """The decoded frames of a clip (RGB PIL images) plus ``problems`` for frames that could not be read."""

    def __init__(self, frames: Iterable[Image.Image] = (), problems: Optional[List[Problem]] = None):
        super().__init__(frames)
        self.problems: List[Problem] = list(problems or [])


@dataclass
class BenchmarkData:
    """What a loader returns: samples, class names (index order) and the inputs it left out."""

    samples: List[BenchmarkSample]
    classes: List[str]
    problems: List[Problem] = field(default_factory=list)
    info: Dict[str, object] = field(default_factory=dict)  # protocol details recorded in results
    closers: List[Callable[[], None]] = field(default_factory=list, repr=False)

    def limit(self, n: Optional[int]) -> "BenchmarkData":
        """A copy holding only the first ``n`` samples (all when ``n`` is None)."""
        if n is None:
            return self
        if n < 1:
            raise ValueError(f"limit must be a positive number of samples, got {n}")
        return BenchmarkData(self.samples[:n], self.classes, self.problems, dict(self.info), self.closers)

    def close(self) -> None:
        """Release open archives."""
        for close in self.closers:
            close()


def load_samples(samples: Sequence[BenchmarkSample]) -> Tuple[List[Image.Image], List[int], List[str], List[Problem]]:
    """Load a batch of still-image samples; failures are skipped and returned as ``(source, reason)`` problems.

    Returns (images, labels, sources, problems) where the first three are aligned. Clips: :func:`load_clips`
    (which this wraps: a still image is a one-frame clip).
    """
    clips, labels, sources, problems = load_clips(samples)
    return [frames[0] for frames in clips], labels, sources, problems


def load_clips(
    samples: Sequence[BenchmarkSample],
) -> Tuple[List[List[Image.Image]], List[int], List[str], List[Problem]]:
    """Load a batch of clips (a still image counts as a one-frame clip), skipping failures as problems.

    Returns (frame lists, labels, sources, problems). A clip is kept when at least one of its frames decodes;
    the unreadable frames of a kept clip are reported as problems too.
    """
    clips: List[List[Image.Image]] = []
    labels: List[int] = []
    sources: List[str] = []
    problems: List[Problem] = []
    for s in samples:
        try:
            loaded = s.load()
        except ImageLoadError as e:
            problems.append((s.source, e.reason))
            continue
        frames = list(loaded) if s.is_clip else [loaded]
        problems.extend(getattr(loaded, "problems", []))
        if not frames:
            problems.append((s.source, "clip has no readable frame"))
            continue
        clips.append(frames)
        labels.append(s.label)
        sources.append(s.source)
    return clips, labels, sources, problems


def pool_frame_probs(frame_probs: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """Mean-pool per-frame rows ``[sum(counts), C]`` into one row per clip ``[len(counts), C]`` (float64).

    Used for frame probabilities and frame features alike; when every clip has one row the input comes back as is.
    """
    frame_probs = np.asarray(frame_probs, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    if frame_probs.shape[0] != int(counts.sum()):
        raise ValueError(f"{frame_probs.shape[0]} frame rows for clips of {counts.tolist()[:10]} frames")
    if len(counts) == 0 or np.all(counts == 1):
        return frame_probs
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.add.reduceat(frame_probs, starts, axis=0) / counts[:, None]
