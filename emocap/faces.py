"""Face detection and cropping for full photos (the classifier's ``detect_faces=True`` path).

Sits between image loading and the model: a photo goes in, face crops with their boxes come out. The default
detector is OpenCV's Haar cascade (ships inside ``opencv-python-headless<5``, works offline). Pre-cropped faces
(like FER+) skip this module.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
from PIL import Image

__all__ = ["FaceBox", "detect_faces", "crop_face", "FaceDetectionError"]


class FaceDetectionError(RuntimeError):
    """The face detector cannot run (missing cascade file or OpenCV)."""


@dataclass(frozen=True)
class FaceBox:
    """A face box in pixel coordinates of the (upright) photo, with a detector confidence score."""

    x0: int
    y0: int
    x1: int
    y1: int
    score: float

    @property
    def box(self) -> Tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)

    def to_dict(self) -> dict:
        return {"box": list(self.box), "score": round(float(self.score), 4)}


try:  # imported here, in the importing thread: cv2's bootstrap is not safe to run first from worker threads
    import cv2
except ImportError:  # pragma: no cover - opencv is a core dependency
    cv2 = None

_PER_THREAD = threading.local()


def _cascade():
    """This thread's Haar cascade (OpenCV's detector objects are not shared across threads)."""
    cascade = getattr(_PER_THREAD, "cascade", None)
    if cascade is None:
        cascade = _PER_THREAD.cascade = _load_cascade()
    return cascade


def _load_cascade():
    if cv2 is None:  # pragma: no cover - opencv is a core dependency
        raise FaceDetectionError("face detection needs opencv-python-headless<5")
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise FaceDetectionError(
            f"cannot load the Haar cascade {path}; install opencv-python-headless<5 (5.x ships no cascades)"
        )
    return cascade


def detect_faces(image: Image.Image, min_size: int = 24, max_side: int = 1024, min_score: float = 0.0) -> List[FaceBox]:
    """Faces in an RGB image, largest first. The image is downscaled to ``max_side`` for speed."""
    gray = np.asarray(image.convert("L"))
    scale = 1.0
    if max(gray.shape) > max_side:
        scale = max_side / max(gray.shape)
        gray = cv2.resize(gray, (int(gray.shape[1] * scale), int(gray.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    min_px = max(int(min_size * scale), 12)
    boxes, _, weights = _cascade().detectMultiScale3(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_px, min_px), outputRejectLevels=True
    )
    faces = []
    for (x, y, w, h), score in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).reshape(-1)):
        if float(score) < min_score:
            continue
        faces.append(
            FaceBox(int(x / scale), int(y / scale), int((x + w) / scale), int((y + h) / scale), float(score))
        )
    return sorted(faces, key=lambda f: -(f.x1 - f.x0) * (f.y1 - f.y0))


DEFAULT_MARGIN = 0.2  # face crop margin (fraction of the box side): classify, the demo and trained models' meta


def crop_face(image: Image.Image, face: FaceBox, margin: float = DEFAULT_MARGIN) -> Image.Image:
    """Square crop around ``face`` with ``margin`` (fraction of the box side) on each side, clipped to the image."""
    w, h = face.x1 - face.x0, face.y1 - face.y0
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = (face.x0 + face.x1) / 2.0, (face.y0 + face.y1) / 2.0
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x1, y1 = int(round(cx + side / 2)), int(round(cy + side / 2))
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, image.width), min(y1, image.height)
    return image.crop((x0, y0, x1, y1))
