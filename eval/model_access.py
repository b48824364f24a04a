"""The few places eval reaches inside a classifier's model, kept together so that a rename lands in one file.

Where it sits: :mod:`emocap.eval.features` (model fingerprint, the one-decode image path),
:mod:`emocap.eval.text_cache` and :mod:`emocap.eval.vocabulary` (logit scale) call these instead of walking
the classifier's model themselves. Each function degrades to None (or the classifier's public methods) for
objects that have no such model, such as the stand-in classifiers of the tests or a cached scorer.
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable, List, Optional, Tuple

import numpy as np

from .feature_cache import folder_fingerprint

__all__ = ["torch_model", "logit_scale", "image_steps", "model_fingerprint"]


def torch_model(classifier):
    """The open_clip module of a :class:`emocap.ZeroShotClassifier` (``classifier.clip``), else None."""
    return getattr(classifier, "clip", None)


def logit_scale(classifier) -> float:
    """The factor cosine similarities are multiplied by before the softmax."""
    scale = getattr(classifier, "logit_scale", None)
    if scale is not None:
        return float(scale)
    return float(torch_model(classifier).logit_scale.exp().float().item())


def image_steps(classifier, batch_size: int) -> Optional[Tuple[Callable, Callable[[List], np.ndarray]]]:
    """``(prepare, encode)`` when the classifier's image path can be split: ``prepare(pil_image) -> tensor`` runs
    in eval's decode threads right after the image is read, and ``encode(tensors) -> [n, D]`` encodes them in
    chunks of ``batch_size``, exactly as :meth:`emocap.ZeroShotClassifier.encode_images` does, so an image is
    read once and handed to the model without a second pass. None for classifiers without those steps."""
    prepare = getattr(classifier, "prepare_image", None)
    encode_tensors = getattr(classifier, "encode_prepared", None)
    if prepare is None or encode_tensors is None:
        return None

    def encode(tensors: List) -> np.ndarray:
        import torch

        parts = [encode_tensors(tensors[s:s + batch_size]).cpu() for s in range(0, len(tensors), batch_size)]
        return torch.cat(parts).numpy()

    return prepare, encode


def model_fingerprint(classifier) -> Optional[str]:
    """A hash of what determines the image features: weights, model config and preprocessing.

    Uses the classifier's own ``fingerprint`` when it has one, the saved folder's files
    (:func:`~emocap.eval.feature_cache.folder_fingerprint`) when the model has a folder, else the in-memory
    weights and transform. Returns None for objects without an emocap model (their outputs are not cached).
    """
    if getattr(classifier, "fingerprint", None):
        return classifier.fingerprint
    em = getattr(classifier, "model", None)
    module = torch_model(classifier)
    if module is None:
        return None
    folder = getattr(em, "path", None)
    from_folder = folder_fingerprint(folder) if folder else None
    if from_folder is not None:
        return from_folder
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    digest.update(json.dumps({"grayscale": bool(getattr(em, "grayscale", False)),
                              "preprocess": repr(getattr(em, "preprocess", None))}, sort_keys=True).encode())
    return digest.hexdigest()[:16]
