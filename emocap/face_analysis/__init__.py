"""Face analysis (core): landmarks -> action-unit intensities and face states, for captioning and eval.

``landmarks`` (backends: dlib, haar-dlib) -> ``action_units`` (geometry against a rest-face reference) ->
``analyzer`` (:class:`FaceAnalyzer`: detect/align/crop, reading, references). Used by the caption flow's evidence
side (``emocap.captioning.shards``) and by eval's face slices (``emocap.eval.slices``). The landmark model needs the
captioning extra (``pip install 'emocap[captioning]'``); the error raised without it says so.
"""

from .analyzer import FaceAnalyzer, NoFaceFound, build_reference, load_reference, reference_to_dict

__all__ = ["FaceAnalyzer", "NoFaceFound", "build_reference", "load_reference", "reference_to_dict"]
