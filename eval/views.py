"""Image views for robustness and cue protocols: what part of the face (and which contrast) the model may see.

Flow: ``emocap eval --view upper-face`` -> :func:`get_view` -> applied to every decoded image (and video frame)
in :func:`emocap.eval.features.extract_features`, before the model's own preprocessing. The view's name goes
into the feature-cache key and the result file name, so views never mix.

Views (on aligned face crops, as the FER benchmarks ship them):

* ``upper-face``: the lower part of the face is filled with the image's mean grey from ``split`` (a fraction of
  the height, 0.5 by default: on aligned crops the line under the eyes and above the nostrils); brows and eyes
  remain, so the model must read the expression from the upper face (AU1, AU2, AU4, AU5, AU6, AU7).
* ``lower-face``: the upper part is filled instead; nose, mouth and jaw remain (AU9 to AU27).
* ``histeq``: per-channel histogram equalisation (contrast and lighting robustness).

And one for full photos, the **photos protocol** (``--view faces``): each image goes through core's face pipeline
as ``emocap classify`` sends it (:func:`emocap.face_predictions.main_face` with the model's crop policy: an image
no larger than the policy's ``crop_max_side`` is used whole, a larger one is scored on its largest face, aligned,
with the model's margin). An image where no face is found is scored whole and counted: the result's groups get
``face_found`` (yes/no) and the record a ``no_face_share`` beside WAR/UAR.
"""

from __future__ import annotations

import functools
from typing import Callable, Dict, List, Optional

import numpy as np
from PIL import Image, ImageOps

__all__ = ["ImageView", "VIEWS", "FaceView", "get_view", "view_names", "mask_face_half", "equalize"]

ImageView = Callable[[Image.Image], Image.Image]


def mask_face_half(image: Image.Image, keep: str, split: float = 0.5) -> Image.Image:
    """Fill the half of an aligned face crop that is not kept (``keep``: ``"upper"`` or ``"lower"``) with its mean."""
    if keep not in ("upper", "lower"):
        raise ValueError(f"keep must be 'upper' or 'lower', got {keep!r}")
    if not 0.0 < split < 1.0:
        raise ValueError(f"split must be a fraction of the height in (0, 1), got {split}")
    arr = np.array(image.convert("RGB"))
    line = int(round(split * arr.shape[0]))
    fill = arr.reshape(-1, 3).mean(axis=0).round().astype(arr.dtype)
    if keep == "upper":
        arr[line:] = fill
    else:
        arr[:line] = fill
    return Image.fromarray(arr)


def equalize(image: Image.Image) -> Image.Image:
    """Histogram-equalised copy (per channel, PIL's ``ImageOps.equalize``)."""
    return ImageOps.equalize(image.convert("RGB"))


class FaceView:
    """The photos protocol's view: the largest face of each image, framed by the model's crop policy; the outcome
    is stored in the returned image's ``info["face_found"]`` ("yes"/"no") for the ``face_found`` group."""

    reports_face = True

    def __init__(self, policy=None):
        from emocap.face_predictions import CropPolicy

        self.policy = policy if policy is not None else CropPolicy()

    def __call__(self, image: Image.Image) -> Image.Image:
        from emocap.face_predictions import main_face

        crop, outcome = main_face(image, self.policy)
        crop = crop.copy() if crop is image else crop
        crop.info["face_found"] = "no" if outcome == "no face" else "yes"
        return crop


VIEWS: Dict[str, ImageView] = {
    "faces": FaceView(),
    "upper-face": functools.partial(mask_face_half, keep="upper"),
    "lower-face": functools.partial(mask_face_half, keep="lower"),
    "histeq": equalize,
}


def view_names() -> List[str]:
    return sorted(VIEWS)


def get_view(name: Optional[str], crop_policy=None) -> Optional[ImageView]:
    """The view called ``name`` (``None`` or ``"none"``: no view); ``crop_policy`` (a model's
    :class:`emocap.face_predictions.CropPolicy`) frames the ``faces`` view as that model wants."""
    if name is None or name == "none":
        return None
    if name not in VIEWS:
        raise ValueError(f"unknown image view {name!r}; choose from {', '.join(view_names())}")
    if name == "faces" and crop_policy is not None:
        return FaceView(crop_policy)
    return VIEWS[name]
