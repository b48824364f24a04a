"""Face tracking and score smoothing across the sampled frames of one video (core).

Sits between face detection (:mod:`emocap.faces`, per frame) and the results table (:mod:`emocap.analysis`):
:class:`FaceTracker` gives each detected box a stable integer face id across frames, and :class:`ScoreSmoother`
optionally smooths each face's scores over time.

- Matching: each frame's boxes are matched greedily to the live tracks, best overlap first, by intersection over
  union (IoU at least ``min_iou``) or, for a fast-moving face whose boxes no longer overlap much, by centre
  distance under ``max_centre_shift`` box sides. A box that matches no track starts a new id.
- Ids are never reused: a face that leaves and comes back after more than ``max_gap_s`` seconds gets a new id
  (within the gap it keeps its id, so a missed detection or two does not break a track).
- Smoothing: an exponential moving average per face id, ``s_t = alpha * x_t + (1 - alpha) * s_(t-1)``; a new id
  starts from its own first scores. ``alpha = 1`` is no smoothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .faces import box_iou  # one owner of box overlap: the face pipeline (it merges its two detectors' faces)

__all__ = ["FaceTracker", "ScoreSmoother", "box_iou", "DEFAULT_MAX_GAP_S", "DEFAULT_SMOOTHING"]

Box = Sequence[float]  # (x0, y0, x1, y1)
DEFAULT_MAX_GAP_S = 1.0  # a face unseen for longer than this gets a new id when it comes back
DEFAULT_SMOOTHING = 0.5  # --smooth without a value: the weight of the newest frame in the moving average


def _centre_shift(a: Box, b: Box) -> float:
    """Distance between the boxes' centres, in units of their mean side."""
    side = max(((a[2] - a[0]) + (a[3] - a[1]) + (b[2] - b[0]) + (b[3] - b[1])) / 4.0, 1e-6)
    dx = (a[0] + a[2] - b[0] - b[2]) / 2.0
    dy = (a[1] + a[3] - b[1] - b[3]) / 2.0
    return float(np.hypot(dx, dy) / side)


@dataclass
class _Track:
    face_id: int
    box: Tuple[float, float, float, float]
    last_seen: float


class FaceTracker:
    """Stable integer face ids for the boxes of successive frames of one video (see the module docstring)."""

    def __init__(self, min_iou: float = 0.3, max_centre_shift: float = 0.5, max_gap_s: float = DEFAULT_MAX_GAP_S):
        self.min_iou = float(min_iou)
        self.max_centre_shift = float(max_centre_shift)
        self.max_gap_s = float(max_gap_s)
        self._tracks: List[_Track] = []
        self._next_id = 0

    def update(self, time: float, boxes: Sequence[Box]) -> List[int]:
        """The face id of each box found at ``time`` seconds (boxes in any order; ids in the same order)."""
        self._tracks = [t for t in self._tracks if time - t.last_seen <= self.max_gap_s]
        pairs = []  # (cost, box index, track index): IoU matches first (cost < 0), then centre matches
        for b, box in enumerate(boxes):
            for k, track in enumerate(self._tracks):
                iou = box_iou(box, track.box)
                if iou >= self.min_iou:
                    pairs.append((-iou, b, k))
                else:
                    shift = _centre_shift(box, track.box)
                    if shift <= self.max_centre_shift:
                        pairs.append((shift, b, k))
        ids: List[int] = [-1] * len(boxes)
        used_tracks = set()
        for _, b, k in sorted(pairs):
            if ids[b] == -1 and k not in used_tracks:
                ids[b] = self._tracks[k].face_id
                used_tracks.add(k)
                self._tracks[k].box, self._tracks[k].last_seen = tuple(map(float, boxes[b])), time
        for b, box in enumerate(boxes):
            if ids[b] == -1:
                ids[b] = self._next_id
                self._tracks.append(_Track(self._next_id, tuple(map(float, box)), time))
                self._next_id += 1
        return ids


class ScoreSmoother:
    """Exponential moving average of each face id's scores over the frames (``alpha``: the newest frame's weight,
    in (0, 1]; 1 keeps the raw scores). Smoothed scores still sum to 1 when the inputs do."""

    def __init__(self, alpha: float = DEFAULT_SMOOTHING):
        if not 0 < float(alpha) <= 1:
            raise ValueError(f"smoothing must be in (0, 1] (the newest frame's weight; 1: none), got {alpha!r}")
        self.alpha = float(alpha)
        self._state: Dict[int, np.ndarray] = {}

    def update(self, face_id: int, scores: Sequence[float]) -> np.ndarray:
        """The smoothed scores of ``face_id`` after this frame's ``scores``."""
        x = np.asarray(scores, dtype=np.float64)
        previous = self._state.get(face_id)
        out = x if previous is None else self.alpha * x + (1.0 - self.alpha) * previous
        self._state[face_id] = out
        return out
