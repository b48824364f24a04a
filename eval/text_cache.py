"""Class text features on disk, so that re-scoring cached image features needs no model at all.

Where it sits: after a zero-shot run, ``emocap eval`` (:mod:`emocap.eval.cli`) saves the class text features and
logit scale the classifier scored with, keyed by the request (:meth:`emocap.eval.run_spec.RunSpec.text_key`: the
model folder's fingerprint, the class names, ``--prompts`` and ``--no-descriptions``), next to the image features
of :class:`emocap.eval.feature_cache.FeatureCache`.
When a later run asks for the same thing and both entries exist, :func:`cached_scorer` returns a
:class:`CachedScorer` that stands in for the classifier: :func:`emocap.eval.zeroshot.evaluate` reads the image
features from the cache and scores them in numpy, so the command neither imports torch and open_clip nor loads
the model (those imports alone take several seconds). Any miss falls back to loading the model.

Only local models (the embedded default, a folder, ``local-dir:``) take this path: their fingerprint is a hash of
the folder's files, known without loading them. Entries are ``text-<key>.npz`` files of the same cache (one file
each, written atomically, read with ``allow_pickle=False``; an unreadable one is reported and rewritten).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from emocap.model_files import DEFAULT_MODEL_ID, local_model_dir

from .feature_cache import FeatureCache, folder_fingerprint
from .features import load_feature_set
from .model_access import logit_scale, model_fingerprint
from .run_spec import TEXT_FORMAT, RunSpec

__all__ = ["CachedScorer", "cached_scorer", "save_text_features", "save_for_run", "text_request_key", "TEXT_FORMAT"]

def text_request_key(fingerprint: str, labels: Sequence[str], prompts: Optional[str], no_descriptions: bool) -> str:
    """The cache key of the class text features a request for ``labels`` scores with (:meth:`RunSpec.text_key`)."""
    return RunSpec(benchmark="", prompts=prompts, no_descriptions=no_descriptions).text_key(fingerprint, labels)


@dataclass
class CachedPromptSet:
    """The prompt set's identity as the result record reports it (``learned-prompts`` when soft prompts scored)."""

    name: Optional[str]
    hash: Optional[str]


class CachedScorer:
    """Scores cached image features with cached class text features, in numpy; has no model.

    Offers what :func:`emocap.eval.zeroshot.evaluate` uses of a classifier: ``labels``, ``model_id``,
    ``prompt_set``, ``fingerprint`` (the image-feature cache key's model part) and ``probs_from_features``.
    """

    def __init__(self, labels: List[str], model_id: str, prompt_set: CachedPromptSet, fingerprint: str,
                 text_features: np.ndarray, logit_scale: float):
        self.labels = labels
        self.model_id = model_id
        self.prompt_set = prompt_set
        self.fingerprint = fingerprint
        self.text_features = text_features
        self.logit_scale = logit_scale

    def probs_from_features(self, features: np.ndarray) -> np.ndarray:
        """Softmax over ``logit_scale`` x cosine similarity, as the classifier computes it (float32 products)."""
        logits = self.logit_scale * (np.asarray(features, dtype=np.float32) @ self.text_features.T)
        logits = logits.astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def encode_images(self, images, batch_size: int = 64) -> np.ndarray:
        raise RuntimeError("these image features are not cached and a cached scorer has no model to encode "
                           "them; run again with --no-cache")


def save_text_features(cache: FeatureCache, key: str, classifier, header: dict) -> Path:
    """Write the class text features and logit scale ``classifier`` scores its labels with under ``key``."""
    text = classifier.class_text_features().float().cpu().numpy().astype(np.float32)
    scale = logit_scale(classifier)
    # no model id: the entry is keyed by the folder's fingerprint, and each request scores under its own id
    meta = {"labels": list(classifier.labels), "prompt_set": header.get("prompt_set"),
            "prompt_hash": header.get("prompt_hash")}
    return cache.write(key, {"text_features": text, "logit_scale": np.float32(scale)}, meta)


def save_for_run(cache: FeatureCache, spec: RunSpec, labels: Sequence[str], classifier, record: dict) -> None:
    """Keep the class text features of a local model's zero-shot run, so the same request can skip the model."""
    if spec.pretrained or not hasattr(classifier, "class_text_features"):
        return
    fingerprint = request_fingerprint(spec.model)
    if fingerprint is None or fingerprint != model_fingerprint(classifier):
        return
    save_text_features(cache, spec.text_key(fingerprint, labels), classifier, record)


def _load(cache: FeatureCache, key: str, fingerprint: str, model_id: str) -> Optional[CachedScorer]:
    """The cached entry under ``key``, scoring as ``model_id`` (the id this request named: a copy of a model in
    another folder has the same fingerprint, and its records carry its own id, as a loaded model's would)."""
    entry = cache.read(key)
    if entry is None:
        return None
    arrays, meta = entry
    try:
        text = np.asarray(arrays["text_features"], dtype=np.float32)
        scale = float(arrays["logit_scale"])
        labels = [str(c) for c in meta["labels"]]
        prompt_set = CachedPromptSet(meta.get("prompt_set"), meta.get("prompt_hash"))
    except (ValueError, KeyError, TypeError) as e:
        cache.report(f"cache entry {cache.path(key)} is incomplete ({type(e).__name__}: {e}); recomputing it")
        return None
    if text.ndim != 2 or text.shape[0] != len(labels):
        cache.report(f"cache entry {cache.path(key)} does not add up; recomputing it")
        return None
    return CachedScorer(labels, model_id, prompt_set, fingerprint, text, scale)


def request_fingerprint(model_id: Optional[str]) -> Optional[str]:
    """The fingerprint of a local model id's folder without loading it, or None (hub ids, missing folders)."""
    folder = local_model_dir(model_id)
    return folder_fingerprint(folder) if folder is not None else None


def cached_scorer(cache: FeatureCache, spec: RunSpec, data) -> Optional[CachedScorer]:
    """A :class:`CachedScorer` for ``spec`` when the image features of ``data`` (exactly this content: the key
    is :meth:`RunSpec.feature_key`) and the text features of this request are both cached and readable, else
    None (the caller loads the model)."""
    if spec.pretrained:
        return None
    fingerprint = request_fingerprint(spec.model)
    if fingerprint is None:
        return None
    if load_feature_set(cache, spec.feature_key(fingerprint, data.limit(spec.limit))) is None:
        return None
    return _load(cache, spec.text_key(fingerprint, data.classes), fingerprint, spec.model or DEFAULT_MODEL_ID)
