"""One table of results (core): images and videos in, one row per face per image or sampled frame out.

Flow: inputs (image files, folders, video files, animated GIFs, PIL images, arrays) -> frames (videos through the
one frame sampler, :class:`emocap.readers.frames.VideoStream`, streamed) -> faces and scores
(:meth:`emocap.ZeroShotClassifier.predict`, the same call as ``emocap classify``, so the same frames give the
same scores) -> face ids (:class:`emocap.face_tracking.FaceTracker`) and optional smoothing -> rows.
:func:`iter_rows` yields rows one at a time (``emocap classify``/``emocap analyze`` write them as they come, so
memory stays flat); :func:`analyze_table` collects them into a pandas DataFrame (``emocap.analyze`` and
:meth:`~emocap.ZeroShotClassifier.analyze`). Writing tables to files: :mod:`emocap.table_files`; summaries, the
timeline plot and drawn boxes: :mod:`emocap.video_outputs`.

Columns (:func:`table_columns`): ``source, kind (image|video), frame, time (s; empty for images), face_id, x0, y0,
x1, y1, face_score``, one score column per label, ``top_label, top_score``; with ``face_analysis=True`` (the
captioning extra: dlib) also ``landmarks`` (points found), ``yaw, pitch, roll, eye_openness, eyes, mouth_open,
teeth_visible`` and ``AU01 .. AU26`` (estimates against the bundled rest-face reference, the ones captions use).
A frame or image without a face gets one row with an empty ``face_id`` and no box or scores, so it is reported.
"""

from __future__ import annotations

import io
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .face_predictions import NoFaceFoundWarning
from .face_tracking import DEFAULT_MAX_GAP_S, FaceTracker, ScoreSmoother
from .images import IMAGE_EXTENSIONS, ImageLoadError, load_image
from .readers.frames import VIDEO_EXTENSIONS, VideoStream, is_video

__all__ = ["table_columns", "expand_media", "iter_rows", "analyze_table", "FIXED_COLUMNS", "face_analysis_columns",
           "FRAMES_PER_BATCH"]

FIXED_COLUMNS = ["source", "kind", "frame", "time", "face_id", "x0", "y0", "x1", "y1", "face_score"]
STATE_COLUMNS = ["landmarks", "yaw", "pitch", "roll", "eye_openness", "eyes", "mouth_open", "teeth_visible"]
FRAMES_PER_BATCH = 64  # sampled video frames detected and classified together, at most ...
FRAME_BATCH_BYTES = 256 * 2**20  # ... and at most this much decoded RGB (4K frames: 10 at a time)
Row = Dict[str, object]
OnProblem = Callable[[str, str], None]


def _au_columns() -> List[str]:
    from .face_analysis.action_units import AUS

    return [f"AU{au:02d}" for au in AUS]


def face_analysis_columns() -> List[str]:
    """The face-analysis columns (the AU list lives in :mod:`emocap.face_analysis.action_units`)."""
    return STATE_COLUMNS + _au_columns()


def table_columns(labels: Sequence[str], face_analysis: bool = False) -> List[str]:
    """The table's columns in order; a label named like a fixed column is refused (ValueError naming it)."""
    clash = [label for label in labels if label in FIXED_COLUMNS + ["top_label", "top_score"] + STATE_COLUMNS]
    if clash:
        raise ValueError(f"label {clash[0]!r} has the name of a table column; rename it (e.g. '{clash[0]} face')")
    return FIXED_COLUMNS + list(labels) + ["top_label", "top_score"] + (face_analysis_columns() if face_analysis else [])


def expand_media(inputs: Iterable) -> Tuple[list, List[Tuple[str, str]]]:
    """``(items, problems)``: files as they are, folders as their image and video files (sorted paths, recursive),
    PIL images and arrays as they are; missing paths and empty folders become ``(path, reason)`` problems."""
    items: list = []
    problems: List[Tuple[str, str]] = []
    for item in inputs:
        if not isinstance(item, (str, os.PathLike)):
            items.append(item)
            continue
        path = Path(item)
        if path.is_dir():  # sorted paths, as emocap.images.iter_image_files (a frame folder as a clip: VideoStream)
            found = sorted(p for p in path.glob("**/*") if p.is_file() and
                           p.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
            if not found:
                problems.append((str(path), "folder holds no image files or video files"))
            items.extend(found)
        elif path.exists():
            items.append(path)
        else:
            problems.append((str(path), "file not found"))
    return items, problems


def _source(item, index: int) -> str:
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"image {index} ({type(item).__name__})"


class _Rows:
    """Turns the classifier's faces into table rows (scores in label order, top label, face analysis)."""

    def __init__(self, labels: Sequence[str], face_analysis: bool):
        self.labels = list(labels)
        self.columns = table_columns(self.labels, face_analysis)
        self.analyzer = _face_analyzer() if face_analysis else None

    def scores(self, face: dict) -> np.ndarray:
        by_label = {p["label"]: p["score"] for p in face["predictions"]}
        return np.array([by_label[label] for label in self.labels], dtype=np.float64)

    def face_row(self, base: Row, face_id: int, face: dict, scores: np.ndarray, photo=None) -> Row:
        score = face.get("face_score")
        row = dict(base, face_id=face_id, face_score=math.nan if score is None else float(score))
        row.update(zip(("x0", "y0", "x1", "y1"), (int(v) for v in face["box"])))
        row.update(zip(self.labels, (float(s) for s in scores)))
        top = int(np.argmax(scores))
        row["top_label"], row["top_score"] = self.labels[top], float(scores[top])
        if self.analyzer is not None and photo is not None:
            row.update(_face_analysis_values(self.analyzer, photo, face["box"]))
        return row

    def empty_row(self, base: Row) -> Row:
        row = dict(base, face_id=None, face_score=math.nan, top_label="", top_score=math.nan)
        row.update({c: math.nan for c in ("x0", "y0", "x1", "y1", *self.labels)})
        return row


def _face_analyzer():
    """A :class:`~emocap.face_analysis.FaceAnalyzer` on face crops with the bundled rest-face reference."""
    try:
        from .face_analysis import FaceAnalyzer
        from .face_analysis.analyzer import bundled_reference

        analyzer = FaceAnalyzer("dlib", detect=False)
    except ImportError as e:
        raise ImportError(f"face analysis needs dlib ({e}); pip install 'emocap[captioning]'") from None
    analyzer.reference = bundled_reference()
    return analyzer


def _face_analysis_values(analyzer, photo, box) -> Row:
    """Landmarks, head pose, eyes, mouth and AU estimates of the face at ``box`` (NaN where no landmarks fit)."""
    from .face_analysis import NoFaceFound
    from .faces import FaceBox, crop_face

    crop = crop_face(photo, FaceBox(*[int(v) for v in box], 1.0))
    buf = io.BytesIO()
    crop.save(buf, format="PNG")
    try:
        reading = analyzer.read(buf.getvalue()).reading
    except (NoFaceFound, ValueError):
        return {"landmarks": 0}
    states = reading.states()
    aus, _ = analyzer.aus(reading)
    out: Row = {"landmarks": len(reading.landmarks), **states["head_pose"], "eye_openness": states["eye_openness"],
                "eyes": states["eyes"], "mouth_open": states["mouth_open"], "teeth_visible": states["teeth_visible"]}
    out.update({f"AU{au:02d}": value for au, value in (aus or {}).items()})
    return out


def iter_rows(clf, inputs: Iterable, fps: Optional[float] = None, every: Optional[int] = None,
              smooth: Optional[float] = None, framing: str = "auto", face_analysis: bool = False,
              batch_size: int = 64, on_problem: Optional[OnProblem] = None, on_frames: Optional[Callable] = None,
              on_video: Optional[Callable] = None, on_image: Optional[Callable] = None,
              on_rows: Optional[Callable] = None) -> Iterator[Row]:
    """Table rows for ``inputs``, streamed (see the module docstring). An input that cannot be read is passed to
    ``on_problem(source, reason)`` (default: raise its ImageLoadError) and the rest go on. ``on_frames(n)`` is
    called after each batch of ``n`` images or frames (progress); ``on_video(stream)`` when a video opens;
    ``on_image(source, frame, image, rows)`` with each image or sampled frame (``frame``: a
    :class:`~emocap.readers.frames.VideoFrame`, None for an image) and its rows (drawing boxes; image files are
    loaded again for it), ``on_rows(source, frame, rows)`` the same without the image (printing).
    ``framing`` for images: ``"auto"`` (the model's crop policy decides per image), ``"detect"`` or ``"whole"``
    (each image is one face crop); video frames are always searched for faces."""
    hooks = _Hooks(on_problem, on_frames, on_video, on_image, on_rows)
    rows = _Rows(clf.labels, face_analysis)
    items, problems = expand_media(inputs)

    for source, reason in problems:
        hooks.report(source, reason)
    pending: list = []  # (index, image item) waiting for a batch
    for index, item in enumerate(items):
        if isinstance(item, Path) and is_video(item):
            yield from _image_rows(clf, rows, pending, framing, batch_size, hooks)
            pending = []
            yield from _video_rows(clf, rows, item, fps, every, smooth, batch_size, hooks)
            continue
        pending.append((index, item))
        if len(pending) >= batch_size * 4:
            yield from _image_rows(clf, rows, pending, framing, batch_size, hooks)
            pending = []
    yield from _image_rows(clf, rows, pending, framing, batch_size, hooks)


class _Hooks:
    """The callbacks of :func:`iter_rows`; ``report`` raises the problem when no ``on_problem`` is given."""

    def __init__(self, on_problem, on_frames, on_video, on_image, on_rows):
        self.on_problem, self.on_frames, self.on_video = on_problem, on_frames, on_video
        self.on_image, self.on_rows = on_image, on_rows

    def seen(self, source: str, frame, image, rows: List[Row]) -> None:
        if self.on_rows is not None:
            self.on_rows(source, frame, rows)
        if self.on_image is not None:
            self.on_image(source, frame, image, rows)

    def report(self, source: str, reason: str) -> None:
        if self.on_problem is None:
            raise ImageLoadError(source, reason)
        self.on_problem(source, reason)

    def note(self, source: str, text: str) -> None:
        """Something to know that is no failure (a container whose frame count is wrong): ``on_problem`` gets it
        as ``"note: ..."``; without one it is logged."""
        if self.on_problem is None:
            logging.getLogger("emocap").warning("%s: %s", source, text)
        else:
            self.on_problem(source, f"note: {text}")

    def frames_done(self, n: int) -> None:
        if self.on_frames is not None:
            self.on_frames(n)


def _image_rows(clf, rows: _Rows, pending: list, framing: str, batch_size: int, hooks: _Hooks
                ) -> Iterator[Row]:
    if not pending:
        return
    images = [item for _, item in pending]
    with warnings.catch_warnings():  # a photo without a face is a row of its own, not a warning
        warnings.simplefilter("ignore", NoFaceFoundWarning)
        preds = clf.predict_faces(images, top_k=None, batch_size=batch_size, framing=framing, no_face="empty",
                                  on_error="return")
    for (index, item), pred in zip(pending, preds):
        source = _source(item, index)
        if isinstance(pred, ImageLoadError):
            hooks.report(pred.source, pred.reason)
            continue
        base: Row = {"source": source, "kind": "image", "frame": 0, "time": math.nan}
        faces = pred
        photo = load_image(item) if (rows.analyzer is not None and faces) or hooks.on_image else None
        out = [rows.face_row(base, face_id, face, rows.scores(face), photo) for face_id, face in enumerate(faces)]
        out = out or [rows.empty_row(base)]
        hooks.seen(source, None, photo, out)
        yield from out
    hooks.frames_done(len(pending))


def _frames_per_batch(image) -> int:
    """Frames per batch: :data:`FRAMES_PER_BATCH`, fewer for large frames (memory), at least 4. The encoder runs
    about twice as fast per frame at 64 as at 16 on this CPU (docs/video.md)."""
    return max(4, min(FRAMES_PER_BATCH, FRAME_BATCH_BYTES // max(1, image.width * image.height * 3)))


def _video_rows(clf, rows: _Rows, path: Path, fps, every, smooth, batch_size: int, hooks: _Hooks
                ) -> Iterator[Row]:
    """Rows of one video: sampled frames in batches (:func:`_frames_per_batch`), faces tracked across them."""
    try:
        stream = VideoStream(path, fps=fps, every=every)
    except ImageLoadError as e:
        hooks.report(e.source, e.reason)
        return
    if hooks.on_video is not None:
        hooks.on_video(stream)
    tracker = FaceTracker(max_gap_s=max(DEFAULT_MAX_GAP_S, 2.5 / (stream.sampler.fps or stream.native_fps)))
    smoother = ScoreSmoother(smooth) if smooth is not None else None
    batch: list = []
    frames = iter(stream)
    while True:
        try:
            frame = next(frames, None)
        except ImageLoadError as e:  # nothing decodable, raised when the stream ends
            hooks.report(e.source, e.reason)
            return
        if frame is not None:
            batch.append(frame)
        if batch and (frame is None or len(batch) >= _frames_per_batch(batch[0].image)):
            yield from _frame_rows(clf, rows, str(path), batch, tracker, smoother, batch_size, hooks)
            hooks.frames_done(len(batch))
            batch = []
        if frame is None:
            break
    for note in stream.notes:
        hooks.note(str(path), note)


def _frame_rows(clf, rows: _Rows, source: str, frames: list, tracker: FaceTracker, smoother, batch_size: int,
                hooks: "_Hooks") -> Iterator[Row]:
    with warnings.catch_warnings():  # a frame without a face is a row of its own, not a warning
        warnings.simplefilter("ignore", NoFaceFoundWarning)
        preds = clf.predict_faces([f.image for f in frames], top_k=None, batch_size=batch_size, framing="detect",
                                  no_face="empty")
    for frame, faces in zip(frames, preds):
        base: Row = {"source": source, "kind": "video", "frame": frame.index, "time": round(frame.time, 4)}
        ids = tracker.update(frame.time, [face["box"] for face in faces])
        out = []
        for face_id, face in zip(ids, faces):
            scores = rows.scores(face)
            if smoother is not None:
                scores = smoother.update(face_id, scores)
            out.append(rows.face_row(base, face_id, face, scores, frame.image if rows.analyzer is not None else None))
        out = out or [rows.empty_row(base)]
        hooks.seen(source, frame, frame.image, out)
        yield from out


def analyze_table(clf, inputs, **options):
    """:func:`iter_rows` collected into a pandas DataFrame (columns: :func:`table_columns`; ``face_id`` a nullable
    integer). Problems reported through ``on_problem`` are also listed in ``DataFrame.attrs["problems"]``."""
    import pandas as pd

    problems: List[Tuple[str, str]] = []
    user_callback = options.pop("on_problem", None)
    errors = options.pop("errors", "raise")
    if errors not in ("raise", "report"):
        raise ValueError(f"errors must be 'raise' or 'report', got {errors!r}")

    def on_problem(source: str, reason: str) -> None:
        if reason.startswith("note: "):
            problems.append((source, reason))
            return
        if errors == "raise" and user_callback is None:
            raise ImageLoadError(source, reason)
        problems.append((source, reason))
        if user_callback is not None:
            user_callback(source, reason)

    columns = table_columns(clf.labels, options.get("face_analysis", False))
    frame = pd.DataFrame(list(iter_rows(clf, inputs, on_problem=on_problem, **options)), columns=columns)
    frame["face_id"] = frame["face_id"].astype("Int64")
    frame["frame"] = frame["frame"].astype("int64")
    frame.attrs["problems"] = problems
    return frame
