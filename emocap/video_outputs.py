"""What users do with a results table (core): top emotion per video, per-face summaries, a video's timeline plot,
and images or videos with the faces boxed and labelled.

Sits after :mod:`emocap.analysis` (the table) and is used by ``emocap classify``/``emocap analyze``
(``--summary``, ``--timeline``, ``--draw``) and the API. The plot and the drawn labels reuse the web demo's
(:func:`emocap.demo_analysis.timeline_plot`, :func:`emocap.demo_analysis.draw_faces`), so they look the same.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .safe_paths import safe_key

__all__ = ["top_emotion", "face_summary", "timeline_scores", "save_timeline", "BoxDrawer", "score_columns"]

NON_SCORE_COLUMNS = {"source", "kind", "frame", "time", "face_id", "x0", "y0", "x1", "y1", "face_score",
                     "top_label", "top_score"}


def score_columns(frame, labels: Optional[Sequence[str]] = None) -> List[str]:
    """The label score columns of a table (those between ``face_score`` and ``top_label``)."""
    if labels is not None:
        return list(labels)
    columns = list(frame.columns)
    return columns[columns.index("face_score") + 1:columns.index("top_label")]


def top_emotion(frame, labels: Optional[Sequence[str]] = None):
    """Per source (image or video): the label with the highest mean score over its faces and frames, that mean,
    the rows with a face and all rows. A source without any face has an empty ``top_label``."""
    import pandas as pd

    labels = score_columns(frame, labels)
    out = []
    for source, rows in frame.groupby("source", sort=False):
        faces = rows[rows["face_id"].notna()]
        means = faces[labels].mean() if len(faces) else None
        best = str(means.idxmax()) if means is not None else ""
        out.append({"source": source, "top_label": best, "mean_score": float(means.max()) if best else math.nan,
                    "rows_with_face": int(len(faces)), "rows": int(len(rows))})
    return pd.DataFrame(out, columns=["source", "top_label", "mean_score", "rows_with_face", "rows"])


def face_summary(frame, labels: Optional[Sequence[str]] = None):
    """Per source and face id: first and last time seen, frames seen, mean score per label and its top label."""
    import pandas as pd

    labels = score_columns(frame, labels)
    faces = frame[frame["face_id"].notna()]
    out = []
    for (source, face_id), rows in faces.groupby(["source", "face_id"], sort=False):
        means = rows[labels].mean()
        out.append({"source": source, "face_id": int(face_id), "first_time": float(rows["time"].min()),
                    "last_time": float(rows["time"].max()), "frames": int(len(rows)),
                    **{label: float(means[label]) for label in labels}, "top_label": str(means.idxmax())})
    columns = ["source", "face_id", "first_time", "last_time", "frames", *labels, "top_label"]
    return pd.DataFrame(out, columns=columns).astype({"face_id": "Int64"})


def timeline_scores(frame, source: str, labels: Optional[Sequence[str]] = None):
    """``(times, scores)`` of one video: per sampled frame, the largest face's scores (NaN: no face)."""
    labels = score_columns(frame, labels)
    rows = frame[frame["source"] == source]
    times, scores = [], []
    for _, group in rows.groupby("frame", sort=True):
        times.append(float(group["time"].iloc[0]))
        faces = group[group["face_id"].notna()]
        if len(faces):
            area = (faces["x1"] - faces["x0"]) * (faces["y1"] - faces["y0"])
            scores.append(faces.loc[area.idxmax(), labels].to_numpy(dtype=float))
        else:
            scores.append(np.full(len(labels), np.nan))
    return times, np.array(scores).reshape(len(times), len(labels))


def save_timeline(frame, source: str, path, labels: Optional[Sequence[str]] = None) -> Path:
    """A PNG line chart of each label's score over the video ``source`` (the largest face per frame; gaps where
    no face was found). Needs matplotlib: ImportError naming the extra."""
    from .demo_analysis import timeline_plot

    labels = score_columns(frame, labels)
    times, scores = timeline_scores(frame, source, labels)
    if not times:
        raise ValueError(f"{source}: no rows in the table for this video")
    try:
        image = timeline_plot(times, labels, scores)
    except ImportError as e:
        raise ImportError(f"the timeline plot needs matplotlib ({e}); pip install 'emocap[eval]' (or [demo])") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


class BoxDrawer:
    """Writes each image with its faces boxed and labelled to ``folder/<name>_boxes.jpg`` and each video's sampled
    frames to ``folder/<name>_boxes.mp4`` (at the sampling rate); pass :meth:`add` as ``iter_rows(on_image=)``
    and call :meth:`close` at the end."""

    def __init__(self, folder, fps: float):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fps = float(fps)
        self._videos: Dict[str, object] = {}
        self.written: List[Path] = []

    def _name(self, source: str, suffix: str) -> Path:
        path = self.folder / f"{safe_key(Path(source).stem)}_boxes{suffix}"
        if path in self.written and source not in self._videos:
            path = self.folder / f"{safe_key(Path(source).stem)}_{len(self.written)}_boxes{suffix}"
        return path

    def add(self, source: str, frame, image, rows: Sequence[dict]) -> None:
        from .demo_analysis import draw_faces

        faces = [{"box": [r["x0"], r["y0"], r["x1"], r["y1"]],
                  "predictions": [{"label": r["top_label"], "score": r["top_score"]}]}
                 for r in rows if r.get("face_id") is not None]
        drawn = draw_faces(image, faces)
        if frame is None:
            path = self._name(source, ".jpg")
            drawn.save(path, quality=92)
            self.written.append(path)
            return
        self._video_writer(source, drawn.size).write(np.asarray(drawn)[:, :, ::-1].copy())

    def _video_writer(self, source: str, size):
        import cv2

        writer = self._videos.get(source)
        if writer is None:
            path = self._name(source, ".mp4")
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
            if not writer.isOpened():
                raise OSError(f"{path}: OpenCV cannot write an mp4 video here")
            self._videos[source] = writer
            self.written.append(path)
        return writer

    def close(self) -> None:
        for writer in self._videos.values():
            writer.release()
        self._videos = {}
