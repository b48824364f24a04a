"""The face pipeline (core): find every face in a photo, order them, align and frame each the way models expect.

One pipeline for the whole package: ``emocap classify`` and :meth:`ZeroShotClassifier.predict`, the demo, eval's
``photos`` protocol, the caption builder's face analysis and the video path all call :func:`detect_faces`,
:func:`face_crop` and :func:`decide_framing` from here.

Flow: RGB photo -> :func:`detect_faces` (BlazeFace from :mod:`emocap.face_detection`: the full-range model for faces
in wider shots, the short-range model for faces that fill the picture, and a second short-range pass on the photo
padded by :data:`FILL_PAD` of its size, which finds faces cut by the frame edge) -> faces sorted largest first
(ties left to right) -> :func:`face_crop`: turned so the eyes are level, a square of the box side plus
``margin`` on each side, cut at the photo's edges -> the model's transform.

:func:`decide_framing` is the "no flag" rule: an image whose longer side is at most the model's
``crop_max_side`` (stored with the model, default :data:`CROP_MAX_SIDE`) is already a face crop and is used whole;
anything larger is searched for faces.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
from PIL import Image

from .face_detection import KEYPOINT_NAMES, BlazeFace, RawDetection, cv2

__all__ = ["FaceBox", "detect_faces", "box_iou", "crop_face", "face_crop", "decide_framing", "FaceDetectionError",
           "DEFAULT_MARGIN", "CROP_MAX_SIDE", "FILL_PAD", "MIN_SCORE", "FILL_MIN_SCORE"]

DEFAULT_MARGIN = 0.2  # face crop margin (fraction of the box side): classify, the demo and trained models' meta
CROP_MAX_SIDE = 128  # images up to this longer side are taken to be face crops when no flag says otherwise
FILL_PAD = 0.35  # the fallback pass pads the photo by this fraction of its longer side on every side
MIN_SCORE = 0.65  # BlazeFace score a face in the photo as given needs (MediaPipe's default is 0.5)
FILL_MIN_SCORE = 0.5  # score a face found only in the padded pass needs
# The two thresholds were chosen on faces-wild-dev (every photo shows a face) and the media videos (no_face.mp4:
# spurious detections score at most 0.63 in the photo as given and under 0.5 in the padded pass): docs/faces.md
DETECT_MAX_SIDE = 1920  # photos are searched at most at this size (boxes are mapped back to full size)
_SHORT_OVER_FULL_IOU = 0.3  # a short-range face overlapping a full-range one by this much is the same face


class FaceDetectionError(RuntimeError):
    """The face detector cannot run (OpenCV missing or too old)."""


@dataclass(frozen=True)
class FaceBox:
    """A face in pixel coordinates of the (upright) photo: box, detector score and BlazeFace's six keypoints.

    ``landmarks`` maps each name of :data:`emocap.face_detection.KEYPOINT_NAMES` (eyes, nose tip, mouth centre,
    ears; "right"/"left" are the person's own sides) to ``(x, y)``; empty for a whole-image crop.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    score: float
    landmarks: Tuple[Tuple[float, float], ...] = field(default=(), compare=False)

    @property
    def box(self) -> Tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)

    @property
    def area(self) -> int:
        return (self.x1 - self.x0) * (self.y1 - self.y0)

    def landmark(self, name: str) -> Optional[Tuple[float, float]]:
        if not self.landmarks:
            return None
        return self.landmarks[KEYPOINT_NAMES.index(name)]

    def eye_angle(self) -> float:
        """Degrees the eye line is turned from level (positive: the person's left eye lower in the picture)."""
        if not self.landmarks:
            return 0.0
        (rx, ry), (lx, ly) = self.landmark("right_eye"), self.landmark("left_eye")
        if math.hypot(lx - rx, ly - ry) < 0.15 * (self.x1 - self.x0):
            return 0.0  # eyes too close together (a profile): the line between them says nothing about roll
        return math.degrees(math.atan2(ly - ry, lx - rx))

    def to_dict(self) -> dict:
        out = {"box": list(self.box), "score": round(float(self.score), 4)}
        if self.landmarks:
            out["landmarks"] = {n: [round(float(x), 1), round(float(y), 1)] for n, (x, y) in
                                zip(KEYPOINT_NAMES, self.landmarks)}
        return out


_MODELS = {}
_MODELS_LOCK = threading.Lock()


def _model(kind: str) -> BlazeFace:
    if cv2 is None:  # pragma: no cover - opencv is a core dependency
        raise FaceDetectionError("face detection needs opencv-python-headless>=4.8")
    with _MODELS_LOCK:
        if kind not in _MODELS:
            _MODELS[kind] = BlazeFace(kind, min_score=min(MIN_SCORE, FILL_MIN_SCORE))
        return _MODELS[kind]


def box_iou(a, b) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (0 when either is empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _search(rgb: np.ndarray, min_score: float) -> List[RawDetection]:
    """Full-range faces, plus short-range faces that no full-range face already covers; if there are none, the
    short-range model on the photo padded by :data:`FILL_PAD` (faces that fill the frame or are cut by its edge)."""
    found = [det for det in _model("full")(rgb) if det.score >= min_score]
    for det in _model("short")(rgb):
        if det.score >= min_score and all(box_iou(det.box, other.box) < _SHORT_OVER_FULL_IOU for other in found):
            found.append(det)
    if found:
        return found
    height, width = rgb.shape[:2]
    pad = int(round(max(height, width) * FILL_PAD))
    padded = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="constant")
    shifted = []
    for det in _model("short")(padded):
        if det.score < min(min_score, FILL_MIN_SCORE):
            continue
        x0, y0, x1, y1 = det.box
        shifted.append(RawDetection((x0 - pad, y0 - pad, x1 - pad, y1 - pad), det.score, det.keypoints - pad))
    return shifted


def _rgb(image: Image.Image) -> Image.Image:
    """The image itself when it is RGB already (loaded photos are): no full-size copy per face."""
    return image if image.mode == "RGB" else image.convert("RGB")


def detect_faces(image: Image.Image, min_size: int = 8, max_side: int = DETECT_MAX_SIDE,
                 min_score: float = MIN_SCORE) -> List[FaceBox]:
    """Faces in an RGB photo, largest first (equal sizes left to right), boxes clipped to the photo.

    The photo is searched at most at ``max_side`` pixels (boxes come back in full-size coordinates); faces whose
    box side is under ``min_size`` pixels are dropped, and so are faces scoring under ``min_score`` (under
    :data:`FILL_MIN_SCORE`, or ``min_score`` if lower, for faces found only in the padded pass).
    """
    rgb = np.asarray(_rgb(image))
    scale = 1.0
    if max(rgb.shape[:2]) > max_side:
        scale = max_side / max(rgb.shape[:2])
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    width, height = image.size
    faces = []
    for det in _search(rgb, min_score):
        x0, y0, x1, y1 = (v / scale for v in det.box)
        box = (max(0, int(round(x0))), max(0, int(round(y0))), min(width, int(round(x1))), min(height, int(round(y1))))
        if min(box[2] - box[0], box[3] - box[1]) < min_size:
            continue
        points = tuple((float(x / scale), float(y / scale)) for x, y in det.keypoints)
        faces.append(FaceBox(*box, score=float(det.score), landmarks=points))
    return sorted(faces, key=lambda f: (-f.area, f.x0, f.y0))


def face_crop(image: Image.Image, face: FaceBox, margin: float = DEFAULT_MARGIN, align: bool = True) -> Image.Image:
    """The face as models see it: a square of side ``box side x (1 + 2 margin)`` about the box centre, cut at the
    photo's edges (a face at the edge gives a narrower crop; nothing is invented beyond the photo), in the
    photo's own resolution. With ``align``, the photo is first turned about the box centre so the eyes are level
    (the corners the turn brings in from outside the photo are black)."""
    side = max(face.x1 - face.x0, face.y1 - face.y0) * (1.0 + 2.0 * margin)
    cx, cy = (face.x0 + face.x1) / 2.0, (face.y0 + face.y1) / 2.0
    x0, y0 = max(0, int(round(cx - side / 2.0))), max(0, int(round(cy - side / 2.0)))
    x1, y1 = min(image.width, int(round(cx + side / 2.0))), min(image.height, int(round(cy + side / 2.0)))
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    angle = face.eye_angle() if align else 0.0
    if abs(angle) < 1.0:  # level enough: a plain crop
        return _rgb(image).crop((x0, y0, x1, y1))
    matrix = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    matrix[:, 2] -= (x0, y0)  # the turned photo, shifted so the crop's corner is the origin
    rgb = np.asarray(_rgb(image))
    turned = cv2.warpAffine(rgb, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return Image.fromarray(turned)


def crop_face(image: Image.Image, face: FaceBox, margin: float = DEFAULT_MARGIN) -> Image.Image:
    """The unaligned crop (:func:`face_crop` with ``align=False``)."""
    return face_crop(image, face, margin, align=False)


def decide_framing(size: Tuple[int, int], crop_max_side: int = CROP_MAX_SIDE) -> str:
    """``"crop"`` (use the image whole: it already is a face crop) or ``"detect"`` (search it for faces)."""
    return "crop" if max(size) <= crop_max_side else "detect"
