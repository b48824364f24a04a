"""Face-attribute slices: per-sample groups from landmarks, so metrics can be read per mouth state or head pose.

Flow: ``emocap eval --slices face`` -> :func:`face_attributes` (core's landmark analysis, shared with the caption
builder: :class:`emocap.face_analysis.FaceAnalyzer`, on each decoded image) -> ``groups`` of the
:class:`~emocap.eval.features.FeatureSet` (cached with the features) -> per-group WAR/UAR in the result
(:func:`emocap.metrics.group_metrics`).

Groups: ``mouth_open`` (yes/no), ``teeth_visible`` (yes/no), ``head_yaw`` (``frontal`` under 15 degrees,
``turned`` 15-30, ``profile`` over 30) and ``face_found`` (``no`` when the landmark model fits no face; the other
groups are then left empty for that sample).
"""

from __future__ import annotations

import io
import threading
from typing import Callable, Dict, Optional

from PIL import Image

__all__ = ["SLICES", "face_attributes", "get_slicer", "yaw_bucket"]


def yaw_bucket(yaw: float) -> str:
    yaw = abs(float(yaw))
    return "frontal" if yaw < 15 else ("turned" if yaw <= 30 else "profile")


_ANALYZERS = threading.local()


def _analyzer():
    analyzer = getattr(_ANALYZERS, "analyzer", None)
    if analyzer is None:  # one per thread: the landmark model is not shared across decode threads
        try:
            from emocap.face_analysis import FaceAnalyzer
            from emocap.face_analysis.landmarks import LandmarkBackendError

            analyzer = FaceAnalyzer("dlib", detect=False)
        except (ImportError, LandmarkBackendError) as e:  # pragma: no cover - the captioning extra brings dlib
            raise RuntimeError(f"--slices face needs the captioning extra (pip install 'emocap[captioning]'): {e}")
        _ANALYZERS.analyzer = analyzer
    return analyzer


def face_attributes(image: Image.Image) -> Dict[str, Optional[str]]:
    """The slice groups of one aligned face crop (see the module docstring)."""
    from emocap.face_analysis import NoFaceFound

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    try:
        states = _analyzer().read(buf.getvalue()).reading.states()
    except NoFaceFound:
        return {"face_found": "no", "mouth_open": None, "teeth_visible": None, "head_yaw": None}
    return {
        "face_found": "yes",
        "mouth_open": "yes" if states["mouth_open"] else "no",
        "teeth_visible": "yes" if states["teeth_visible"] else "no",
        "head_yaw": yaw_bucket(states["head_pose"]["yaw"]),
    }


SLICES: Dict[str, Callable[[Image.Image], Dict[str, Optional[str]]]] = {"face": face_attributes}


def get_slicer(name: Optional[str]):
    if name in (None, "none"):
        return None
    if name not in SLICES:
        raise ValueError(f"unknown slices {name!r}; choose from {', '.join(sorted(SLICES))}")
    return SLICES[name]
