"""Face analysis (core): landmarks -> action-unit intensities and face states, for users, captioning and eval.

``landmarks`` (backend: dlib landmarks on the face pipeline's boxes) -> ``action_units`` (geometry against a rest-face reference) ->
``analyzer`` (:class:`FaceAnalyzer`: detect/align/crop, reading, references; ``analyze`` is the one path from an
image to AU estimates) -> ``api`` (:func:`analyze_face`: the public call, a documented dict). Used by users
(``emocap.analyze_face``), the caption flow's evidence side (``emocap.captioning.shards``) and eval's face slices
(``emocap.eval.slices``). The landmark model needs dlib (``pip install 'emocap[analysis]'``, also in the captioning
extra); the error raised without it says so.
"""

from .analyzer import Analysis, FaceAnalyzer, NoFaceFound, build_reference, load_reference, reference_to_dict
from .api import FACE_ANALYSIS_SCHEMA, analysis_to_dict, analyze_face, default_analyzer
from .landmarks import LandmarkBackendError

__all__ = ["FaceAnalyzer", "Analysis", "NoFaceFound", "LandmarkBackendError", "analyze_face", "analysis_to_dict",
           "default_analyzer", "FACE_ANALYSIS_SCHEMA", "build_reference", "load_reference", "reference_to_dict"]
