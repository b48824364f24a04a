"""The public face-analysis call: one image (and optionally a face box) -> AUs, landmarks, head pose, eyes, mouth.

Core, behind the dlib extra. :func:`analyze_face` is what users (and the ``emocap.analyze`` table) call; it runs
:meth:`FaceAnalyzer.analyze`, the same method the caption builder uses, so the AU estimates it returns are the
numbers captions are written from (given the same rest-face reference; the default is the bundled one, the
statistics of 2000 neutral-labelled FER+ train faces). Schema of the returned dict (:data:`FACE_ANALYSIS_SCHEMA`):

- ``box``: ``[x0, y0, x1, y1]`` of the face in the input image, or None when the whole image is the face crop;
- ``landmarks``: 68 ``[x, y]`` points (iBUG 300-W order) in the input image's pixels; ``landmark_source``;
- ``aus``: ``{"AU01": 0..1, ...}`` for AU1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26 (geometry
  against the rest-face reference: 0 = at rest, 1 = at or beyond 4 robust spreads from it); ``au_reference``;
- ``head_pose``: yaw, pitch (of the face-centred aligned crop, as captions) and roll (the eye line's tilt in the
  input image), degrees;
- ``eyes`` (closed / narrowed / open / wide open), ``eye_openness`` (eye aspect ratio);
- ``mouth`` (open / closed), ``mouth_open``, ``lip_gap`` (inner-lip gap, inter-ocular units),
  ``teeth_visible``, ``teeth_fraction``.

Limits are measured in ``docs/face_analysis.md`` (``benchmarks/au_validity.py``).
"""

from __future__ import annotations

import os
import threading
from typing import Dict, Optional, Sequence, Union

import numpy as np
from PIL import Image

from .action_units import eye_line_roll
from .analyzer import Analysis, FaceAnalyzer, bundled_reference, decode_rgb

FACE_ANALYSIS_SCHEMA: Dict[str, str] = {
    "box": "[x0, y0, x1, y1] of the face in the input image; None when the whole image is the face",
    "landmarks": "68 [x, y] points, iBUG 300-W order, input image pixels",
    "landmark_source": "estimate (dlib) | annotation (landmarks passed in)",
    "aus": "{'AU01': 0..1, ...} 16 AUs from landmark geometry; None without a rest-face reference",
    "au_reference": "what the rest-face reference was built from",
    "head_pose": "{'yaw', 'pitch', 'roll'} degrees; yaw/pitch towards the viewer, roll of the eye line in the image",
    "eyes": "closed | narrowed | open | wide open",
    "eye_openness": "eye aspect ratio (about 0.3 open, under 0.13 closed)",
    "mouth": "open | closed",
    "mouth_open": "bool (inner lips apart, AU25 >= 0.2)",
    "lip_gap": "inner-lip gap in inter-ocular units",
    "teeth_visible": "bool",
    "teeth_fraction": "share of bright, unsaturated pixels inside the inner lips",
}

ImageLike = Union[bytes, str, os.PathLike, Image.Image, np.ndarray]

_DEFAULTS: Dict[bool, FaceAnalyzer] = {}
_DEFAULTS_LOCK = threading.Lock()


def default_analyzer(face_crop: bool = False) -> FaceAnalyzer:
    """The shared dlib analyzer with the bundled rest-face reference (``face_crop``: the image is the face).

    Raises :class:`~emocap.face_analysis.landmarks.LandmarkBackendError` naming the extra when dlib is missing.
    """
    with _DEFAULTS_LOCK:
        if face_crop not in _DEFAULTS:
            other = _DEFAULTS.get(not face_crop)
            analyzer = FaceAnalyzer(other.backend if other else "dlib", detect=not face_crop)
            analyzer.reference = bundled_reference()
            _DEFAULTS[face_crop] = analyzer
        return _DEFAULTS[face_crop]


def _rgb_array(image: ImageLike) -> np.ndarray:
    if isinstance(image, (bytes, bytearray)):
        return decode_rgb(bytes(image))
    from emocap.images import load_image

    return np.asarray(load_image(image))


def _box_of(box) -> Optional[Sequence[float]]:
    if box is None:
        return None
    if hasattr(box, "box"):  # emocap.faces.FaceBox
        box = box.box
    return [float(v) for v in box]


def analysis_to_dict(analysis: Analysis) -> dict:
    """The public schema (:data:`FACE_ANALYSIS_SCHEMA`) of an :class:`Analysis` from ``FaceAnalyzer.analyze``."""
    r = analysis.reading
    pts = analysis.image_landmarks if analysis.image_landmarks is not None else r.landmarks
    states = r.states()
    # yaw and pitch as captions read them (on the face-centred crop: relative to the line of sight to the face,
    # not to the camera axis); roll from the eye line in the input image (the crop is rotated eyes-level)
    pose = dict(states["head_pose"], roll=round(eye_line_roll(pts), 1))
    return {
        "box": [int(v) for v in r.box] if r.box is not None else None,
        "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in pts],
        "landmark_source": r.landmark_source,
        "aus": None if analysis.aus is None else {f"AU{au:02d}": float(v) for au, v in sorted(analysis.aus.items())},
        "au_reference": analysis.reference_basis,
        "head_pose": {k: pose[k] for k in ("yaw", "pitch", "roll")},
        "eyes": states["eyes"],
        "eye_openness": states["eye_openness"],
        "mouth": "open" if states["mouth_open"] else "closed",
        "mouth_open": states["mouth_open"],
        "lip_gap": round(float(r.lip_gap), 4),
        "teeth_visible": states["teeth_visible"],
        "teeth_fraction": float(r.teeth[1]),
    }


def analyze_face(image: ImageLike, box=None, *, face_crop: bool = False, landmarks=None,
                 analyzer: Optional[FaceAnalyzer] = None) -> dict:
    """AU estimates, 68 landmarks, head pose, eye and mouth state of one face (schema: module docstring).

    ``image``: a path, encoded bytes, a PIL image or an RGB/gray array. ``box``: the face's ``(x0, y0, x1, y1)``
    (or an ``emocap.faces.FaceBox``) from any detector; without it, dlib's detector picks the largest face, or,
    with ``face_crop=True``, the whole image is the face (pre-cropped faces such as FER+). ``landmarks``: 68 (x, y)
    points of your own instead of dlib's. ``analyzer``: a :class:`FaceAnalyzer` with its own reference (the
    caption builder's, for instance); default: dlib with the bundled FER+ rest-face reference.

    Raises :class:`~emocap.face_analysis.NoFaceFound` when no face fits, ``ValueError`` for an unreadable image or a
    bad box, and ``LandmarkBackendError`` (naming the extra to install) without dlib.
    """
    analyzer = analyzer or default_analyzer(face_crop=face_crop)
    rgb = _rgb_array(image)
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=-1)
    return analysis_to_dict(analyzer.analyze(rgb, landmarks=landmarks, box=_box_of(box)))
