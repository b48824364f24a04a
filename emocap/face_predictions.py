"""Per-face predictions (core): the classifier's path for photos, between loading and the model.

Flow: inputs -> load (threads) -> framing per image (:func:`emocap.faces.decide_framing` with the model's crop
policy, unless the caller forces detection or whole images) -> :func:`emocap.faces.detect_faces` on photos ->
:func:`emocap.faces.face_crop` (eyes level, the model's margin) -> all crops encoded in batches by the classifier
-> per image a list of :class:`FaceResult` (box, detector score and keypoints in the input's own pixels, the
aligned crop size, how it was framed, the ranked predictions). Used by
:meth:`emocap.classifier.ZeroShotClassifier.predict` / ``predict_faces``, ``emocap classify``, the demo and
eval's ``photos`` protocol, so every path frames a face the same way.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from . import faces
from .images import ImageLoadError, load_image_with_size, too_small_for_a_face

if TYPE_CHECKING:  # pragma: no cover
    from .classifier import ZeroShotClassifier

__all__ = ["FaceResult", "CropPolicy", "NoFaceFoundError", "NoFaceFoundWarning", "FRAMINGS", "locate_faces", "main_face",
           "predict_faces"]

FRAMINGS = ("auto", "detect", "whole")


class NoFaceFoundError(ValueError):
    """Face detection found no face in an image (raised only with ``no_face="raise"``)."""


class NoFaceFoundWarning(UserWarning):
    """Some photos had no face; their results are empty lists (the rest of the batch is scored)."""


@dataclass(frozen=True)
class CropPolicy:
    """How a model wants faces framed, stored in its ``emocap.face_crop`` meta: margin around the detected box
    and the largest image side that counts as "already a face crop" (used whole when no flag says otherwise)."""

    margin: float = faces.DEFAULT_MARGIN
    crop_max_side: int = faces.CROP_MAX_SIDE
    align: bool = True  # turn the face so the eyes are level

    @classmethod
    def from_meta(cls, meta: dict) -> "CropPolicy":
        stored = meta.get("face_crop") or {}
        return cls(float(stored.get("margin", faces.DEFAULT_MARGIN)),
                   int(stored.get("crop_max_side", faces.CROP_MAX_SIDE)), bool(stored.get("align", True)))

    def to_meta(self) -> dict:
        return {"margin": self.margin, "crop_max_side": self.crop_max_side, "align": self.align}


@dataclass
class FaceResult:
    """One face of one input, in the input's own pixel coordinates."""

    box: List[int]
    face_score: Optional[float]  # None for a whole image taken as a face crop
    landmarks: Optional[dict]  # keypoint name -> [x, y]; None for a whole image
    crop_size: List[int]  # [width, height] in input pixels of the crop the model saw (before its own resize)
    framing: str  # "detected" or "whole image"
    predictions: List[dict]

    def to_dict(self) -> dict:
        return {"box": self.box, "face_score": self.face_score, "landmarks": self.landmarks,
                "crop_size": self.crop_size, "framing": self.framing, "predictions": self.predictions}


@dataclass
class _Located:
    photo: Image.Image  # as loaded (at most emocap.images.MAX_SIDE)
    original: Tuple[int, int]  # the input's own size
    faces: List[faces.FaceBox]  # empty with framing "whole image"
    framing: str


def _scored_whole(size: Tuple[int, int], framing: str, policy: CropPolicy) -> bool:
    """Whether an image of ``size`` is scored whole: forced (``"whole"``) or, with ``"auto"``, small enough to be a
    face crop under ``policy``."""
    return framing == "whole" or (framing == "auto" and faces.decide_framing(size, policy.crop_max_side) == "crop")


def _locate_one(item, name: str, framing: str, policy: CropPolicy):
    try:
        photo, original = load_image_with_size(item, name)
    except ImageLoadError as e:
        return e
    if _scored_whole(original, framing, policy):
        return _Located(photo, original, [], "whole image")
    return _Located(photo, original, faces.detect_faces(photo), "detected")


def main_face(image: Image.Image, policy: CropPolicy, framing: str = "auto") -> Tuple[Image.Image, str]:
    """The crop a model scores for ``image`` when it reads one face: ``(crop, outcome)`` with outcome
    ``"whole image"`` (framing decided it is a face crop), ``"detected"`` (its largest face, aligned) or
    ``"no face"`` (nothing found: the whole image is returned so the caller can still score it, and report it)."""
    if _scored_whole(image.size, framing, policy):
        return image, "whole image"
    found = faces.detect_faces(image)
    if not found:
        return image, "no face"
    return faces.face_crop(image, found[0], margin=policy.margin, align=policy.align), "detected"


def locate_faces(items: Sequence, names: Sequence[str], framing: str, policy: CropPolicy, mapper) -> list:
    """Per input a :class:`_Located` or its :class:`ImageLoadError`; ``mapper`` runs the work in threads."""
    if framing not in FRAMINGS:
        raise ValueError(f"framing must be one of {FRAMINGS}, got {framing!r}")
    jobs = list(zip(items, names))
    return list(mapper.map(lambda job: _locate_one(job[0], job[1], framing, policy), jobs))


def _scale(loaded: Tuple[int, int], original: Tuple[int, int]) -> Tuple[float, float]:
    return original[0] / loaded[0], original[1] / loaded[1]


def _face_result(face: faces.FaceBox, located: _Located, crop: Image.Image, ranked: List[dict]) -> FaceResult:
    sx, sy = _scale(located.photo.size, located.original)
    w, h = located.original
    box = [min(int(round(face.x0 * sx)), w), min(int(round(face.y0 * sy)), h),
           min(int(round(face.x1 * sx)), w), min(int(round(face.y1 * sy)), h)]
    points = {name: [round(x * sx, 1), round(y * sy, 1)] for name, (x, y) in
              zip(faces.KEYPOINT_NAMES, face.landmarks)} if face.landmarks else None
    size = [int(round(crop.width * sx)), int(round(crop.height * sy))]
    return FaceResult(box, round(float(face.score), 3), points, size, "detected", ranked)


def predict_faces(clf: "ZeroShotClassifier", items: list, names: List[str], framing: str, margin: float,
                  top_k: Optional[int], batch_size: int, no_face: str, on_error: str, mapper) -> list:
    """Per input a list of :class:`FaceResult` dicts (see the module docstring), or its ImageLoadError."""
    policy = dataclasses.replace(clf.crop_policy, margin=margin)
    located = locate_faces(items, names, framing, policy, mapper)
    crops, faceless = [], []
    for name, done in zip(names, located):
        if isinstance(done, ImageLoadError):
            if on_error == "raise":
                raise done
            continue
        if too_small_for_a_face(done.original):
            clf.warn_small(name, done.original)
        if done.framing == "whole image":
            crops.append(done.photo)
            continue
        if not done.faces:
            if no_face == "raise":
                raise NoFaceFoundError(f"{name}: no face found")
            faceless.append(name)
        crops.extend(faces.face_crop(done.photo, face, margin=margin, align=policy.align) for face in done.faces)
    if faceless:
        shown = ", ".join(faceless[:5]) + (f" and {len(faceless) - 5} more" if len(faceless) > 5 else "")
        warnings.warn(NoFaceFoundWarning(f"no face found in {len(faceless)} of {len(items)} images: {shown}"),
                      stacklevel=4)
    feats = clf.encode_crops(crops, batch_size) if crops else None  # crops stay: their sizes are reported
    probs = clf.probs_from_features(feats) if crops else np.zeros((0, len(clf.labels)))
    results, k = [], 0
    for done in located:
        if isinstance(done, ImageLoadError):
            results.append(done)
            continue
        if done.framing == "whole image":
            w, h = done.original
            results.append([FaceResult([0, 0, w, h], None, None, [w, h], "whole image",
                                       clf.ranked(probs[k], top_k)).to_dict()])
            k += 1
            continue
        results.append([])
        for face in done.faces:
            results[-1].append(_face_result(face, done, crops[k], clf.ranked(probs[k], top_k)).to_dict())
            k += 1
    return results
