"""What the web demo computes (core, no web framework): a photo or a short video + typed labels -> faces, scores,
explanations and a score timeline.

Sits between the Gradio page (:mod:`emocap.demo`, which only lays out inputs and outputs) and the library: faces
are found and cropped by :mod:`emocap.faces` (the same detector, alignment and margin as ``emocap classify
--detect-faces``: the classifier's crop policy), scored by :class:`~emocap.classifier.ZeroShotClassifier` and explained by
:mod:`emocap.explain`; video frames are picked by the core frame sampler (:mod:`emocap.readers.frames`).

Inputs a user can get wrong (no photo, a 1x1 image, no face, fewer than two labels, an unreadable or too long
video) raise :class:`DemoInputError`, whose message the page shows as it is.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

import cv2  # imported by the importing thread: cv2's bootstrap is unsafe when first run from a worker thread
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import faces as face_detection
from . import taxonomy
from .classifier import ZeroShotClassifier
from .explain import explain_feature
from .images import MIN_FACE_SIDE, to_rgb, too_small_for_a_face
from .readers.frames import VIDEO_EXTENSIONS, decode_video, uniform_indices, video_frame_count
from .word_bridge import bridge_note

__all__ = ["DEFAULT_LABELS", "DemoInputError", "DemoModel", "PhotoAnalysis", "VideoAnalysis", "parse_labels",
           "analyze_photo", "analyze_video", "draw_faces", "timeline_plot", "MAX_FACES", "MAX_VIDEO_SECONDS"]

DEFAULT_LABELS = ", ".join(taxonomy.BASIC8)  # what the labels box holds when the page opens
MAX_FACES = 20  # faces scored per photo (largest first): enough for a group photo, bounded work per click
MAX_VIDEO_SECONDS = 300.0  # the demo reads every frame up to the last one it samples: keep clips short
MAX_VIDEO_FRAMES = 64  # frames sampled per clip, at most


class DemoInputError(ValueError):
    """An input the demo cannot analyse; the message says what to change and is shown on the page."""


@dataclass
class PhotoAnalysis:
    """One photo's result: per face ``{"box", "face_score", "predictions", "behaviour"}``, largest face first."""

    labels: List[str]
    faces: List[dict]
    annotated: Image.Image
    notes: List[str] = field(default_factory=list)


@dataclass
class VideoAnalysis:
    """A clip's timeline: ``scores[i, j]`` is label ``j`` on sampled frame ``i`` (NaN: no face in that frame)."""

    labels: List[str]
    times: List[float]
    frame_indices: List[int]
    scores: np.ndarray
    plot: Image.Image
    notes: List[str] = field(default_factory=list)

    @property
    def frames_with_face(self) -> int:
        return int((~np.isnan(self.scores[:, 0])).sum()) if len(self.scores) else 0


def parse_labels(text: Optional[str]) -> List[str]:
    """Labels typed in one box, separated by commas, semicolons or new lines; at least two (scores are a softmax
    over the labels, so one label always scores 1)."""
    names = [part for part in re.split(r"[,;\n]", text or "") if part.strip()]
    if len(names) < 2:
        raise DemoInputError("Type at least two labels, separated by commas (for example: happiness, sadness, "
                             f"surprise). The default is basic-8: {DEFAULT_LABELS}.")
    try:
        return taxonomy.clean_labels(names)
    except (ValueError, TypeError) as e:
        raise DemoInputError(f"Labels: {e}") from None


class DemoModel:
    """One loaded model and a classifier per label set typed (their text features cached, the last few kept)."""

    def __init__(self, model_id: Optional[str] = None, device=None, label_sets_kept: int = 16):
        self.base = ZeroShotClassifier.from_pretrained(model_id, device=device)
        self.model_id = self.base.model_id
        self._kept = label_sets_kept
        self._by_labels: "OrderedDict[tuple, ZeroShotClassifier]" = OrderedDict()
        self._lock = threading.Lock()  # the page's photo and video buttons may run at the same time

    def classifier(self, labels: Sequence[str]) -> ZeroShotClassifier:
        """The classifier for ``labels`` (built once per label set; the model is shared)."""
        key = tuple(labels)
        with self._lock:
            if key not in self._by_labels:
                self._by_labels[key] = ZeroShotClassifier(self.base.model, labels=list(labels),
                                                          device=self.base.device)
                while len(self._by_labels) > self._kept:
                    self._by_labels.popitem(last=False)
            self._by_labels.move_to_end(key)
            return self._by_labels[key]

    def prepared(self, labels_text: Optional[str]):
        """``(classifier, notes)`` for the typed labels: notes name labels the model cannot tell apart and say what
        the word bridge did to labels outside the taxonomy."""
        labels = parse_labels(labels_text)
        clf = self.classifier(labels)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", taxonomy.IndistinguishableLabelsWarning)
            clf.class_text_features()
        notes = [str(w.message) for w in caught if issubclass(w.category, taxonomy.IndistinguishableLabelsWarning)]
        bridged = bridge_note(clf.bridged_labels())
        if bridged:
            notes.append(bridged[0].upper() + bridged[1:] + ".")
        return clf, notes


def _ranked(labels: Sequence[str], probs: np.ndarray) -> List[dict]:
    return [{"label": labels[j], "score": float(probs[j])} for j in np.argsort(-probs)]


def _crop(clf: ZeroShotClassifier, photo: Image.Image, face) -> Image.Image:
    """The face as the library crops it (the model's margin and alignment)."""
    return face_detection.face_crop(photo, face, margin=clf.crop_policy.margin, align=clf.crop_policy.align)


def analyze_photo(model: DemoModel, image, labels_text: Optional[str], explain_top_k: int = 3) -> PhotoAnalysis:
    """Find the faces in ``image`` (a PIL image or an array), score each against the typed labels and list the
    facial-behaviour sentences closest to each face; the returned image has the faces boxed and labelled."""
    if image is None:
        raise DemoInputError("Upload a photo first.")
    photo = to_rgb(image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image)))
    if too_small_for_a_face(photo.size):
        raise DemoInputError(f"The photo is {photo.width}x{photo.height} pixels: too small to hold a face "
                             f"(at least {MIN_FACE_SIDE} pixels on each side). Upload a larger photo.")
    clf, notes = model.prepared(labels_text)
    found = face_detection.detect_faces(photo)
    if not found:
        raise DemoInputError("No face found in the photo. Try another photo, or one where the face is larger, "
                             "sharper or less turned away.")
    if len(found) > MAX_FACES:
        notes.append(f"{len(found)} faces found; the {MAX_FACES} largest are scored.")
        found = found[:MAX_FACES]
    crops = [_crop(clf, photo, face) for face in found]
    feats = clf.encode_images(crops)
    probs = clf.probs_from_features(feats)
    results = []
    for face, feat, row in zip(found, feats, probs):
        results.append({"box": list(face.box), "face_score": round(face.score, 3),
                        "predictions": _ranked(clf.labels, row),
                        "behaviour": explain_feature(clf, feat, top_k=explain_top_k)["regions"]})
    return PhotoAnalysis(labels=list(clf.labels), faces=results, annotated=draw_faces(photo, results), notes=notes)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed-size bitmap font
        return ImageFont.load_default()


def draw_faces(photo: Image.Image, faces: Sequence[dict]) -> Image.Image:
    """A copy of ``photo`` with each face boxed and tagged ``<number> <top label> <score>``."""
    out = photo.copy()
    draw = ImageDraw.Draw(out)
    line = max(2, round(max(photo.size) / 300))
    font = _font(max(12, round(max(photo.size) / 45)))
    for number, face in enumerate(faces, start=1):
        x0, y0, x1, y1 = face["box"]
        top = face["predictions"][0]
        draw.rectangle((x0, y0, x1, y1), outline=(255, 200, 0), width=line)
        tag = f"{number} {top['label']} {top['score']:.2f}"
        left, upper, right, lower = draw.textbbox((x0, y0), tag, font=font)
        height = lower - upper + 2 * line
        ty = y0 - height if y0 - height >= 0 else y1
        draw.rectangle((x0, ty, x0 + (right - left) + 2 * line, ty + height), fill=(255, 200, 0))
        draw.text((x0 + line, ty + line - (upper - y0)), tag, fill=(0, 0, 0), font=font)
    return out


def _video_fps(path: str) -> float:
    cap = cv2.VideoCapture(path)
    try:
        return float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()


def analyze_video(model: DemoModel, path, labels_text: Optional[str], frames: int = 16) -> VideoAnalysis:
    """Sample ``frames`` frames of a short video (segment centres), score the largest face in each against the
    typed labels and plot each label's score over time (frames without a face are gaps)."""
    if path is None or not str(path).strip():
        raise DemoInputError("Upload a video first.")
    path = str(path)
    if not Path(path).is_file():
        raise DemoInputError(f"Video not found: {Path(path).name}")
    if Path(path).suffix.lower() not in VIDEO_EXTENSIONS:
        raise DemoInputError(f"{Path(path).name} is not a video file; upload one of: {', '.join(VIDEO_EXTENSIONS)}.")
    if not 1 <= int(frames) <= MAX_VIDEO_FRAMES:
        raise DemoInputError(f"Frames to sample must be 1 to {MAX_VIDEO_FRAMES}, got {frames}.")
    try:
        n = video_frame_count(Path(path))
    except ValueError as e:
        raise DemoInputError(f"Cannot read the video {Path(path).name}: {e}.") from None
    fps = _video_fps(path) or 25.0
    if n / fps > MAX_VIDEO_SECONDS:
        raise DemoInputError(f"The video is {n / fps:.0f} s long; the demo takes clips up to "
                             f"{MAX_VIDEO_SECONDS:.0f} s. Trim it first.")
    clf, notes = model.prepared(labels_text)
    picks = uniform_indices(n, int(frames))
    decoded = decode_video(Path(path), picks)
    if not decoded:
        raise DemoInputError(f"No frame of {Path(path).name} could be decoded (unsupported codec?).")
    indices = sorted(decoded)
    crops, rows = [], []
    for row, index in enumerate(indices):
        frame = Image.fromarray(np.ascontiguousarray(decoded[index][:, :, ::-1]))  # BGR -> RGB
        found = face_detection.detect_faces(frame)
        if found:
            crops.append(_crop(clf, frame, found[0]))
            rows.append(row)
    if not crops:
        raise DemoInputError(f"No face found in any of the {len(indices)} sampled frames of {Path(path).name}.")
    scores = np.full((len(indices), len(clf.labels)), np.nan)
    scores[rows] = clf.probs_from_features(clf.encode_images(crops))
    times = [index / fps for index in indices]
    if len(rows) < len(indices):
        notes.append(f"No face in {len(indices) - len(rows)} of {len(indices)} sampled frames (gaps in the plot).")
    return VideoAnalysis(labels=list(clf.labels), times=times, frame_indices=indices, scores=scores,
                         plot=timeline_plot(times, clf.labels, scores), notes=notes)


def timeline_plot(times: Sequence[float], labels: Sequence[str], scores: np.ndarray) -> Image.Image:
    """Each label's score over the clip's time as a line chart (a PIL image; NaN rows are gaps)."""
    try:  # the figure and its Agg canvas directly: no pyplot, so no global backend or figure registry
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(f"the video timeline needs matplotlib ({e}); pip install 'emocap[demo]'") from None
    fig = Figure(figsize=(8, 3.2), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for j, label in enumerate(labels):
        ax.plot(times, scores[:, j], marker="o", markersize=3, label=label)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("score")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    canvas.draw()
    return Image.fromarray(np.asarray(canvas.buffer_rgba())[:, :, :3].copy())
