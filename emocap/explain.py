"""Explanations (core): which facial behaviour, in words, is closest to an image and so drove its scores.

Used by ``emocap eval explain`` (:mod:`emocap.eval.explain`, the command) and the web demo (:mod:`emocap.demo`).
Flow: the classifier's image feature -> cosine similarity to (a) a bank of local face-region sentences with their
FACS action units (``emocap/data/face_regions.json``, the EmoCap "local" caption style) and (b) the class
descriptions of the classifier's prompt set -> the most similar sentences, beside the prediction. The sentence
features are encoded once per bank and cached on the classifier.

This is a similarity read-out of the same embedding the classifier scores with, not a causal attribution: a
sentence ranks high when its text embedding lies near the image's.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = ["explain", "explain_feature", "region_sentences"]


def region_sentences() -> List[dict]:
    """The bundled face-region sentences: ``{"region", "aus", "sentence"}`` each."""
    data = json.loads(resources.files("emocap").joinpath("data/face_regions.json").read_text(encoding="utf-8"))
    return list(data["sentences"])


def _sentence_features(classifier, sentences: Sequence[str]) -> np.ndarray:
    cache: Dict[tuple, np.ndarray] = classifier.__dict__.setdefault("_explain_cache", {})
    key = tuple(sentences)
    if key not in cache:
        cache[key] = classifier.encode_texts(sentences).cpu().numpy()
    return cache[key]


def explain(classifier, image, top_k: int = 5, regions: Optional[Sequence[dict]] = None) -> dict:
    """Prediction plus the ``top_k`` region sentences and class descriptions most similar to ``image``.

    Returns ``{"predictions": [{"label", "score"}...], "regions": [{"sentence", "region", "aus",
    "similarity"}...], "descriptions": [{"label", "sentence", "similarity"}...]}``, each list sorted by
    similarity (cosine between the image and the sentence embedding).
    """
    if top_k < 1:
        raise ValueError(f"top_k must be positive, got {top_k}")
    feature = classifier.encode_images([image])[0]
    predictions = classifier.ranked(classifier.probs_from_features(feature[None])[0], None)
    return {"predictions": predictions, **explain_feature(classifier, feature, top_k, regions)}


def explain_feature(classifier, feature: np.ndarray, top_k: int = 5,
                    regions: Optional[Sequence[dict]] = None) -> dict:
    """The ``"regions"`` and ``"descriptions"`` lists of :func:`explain` for an already encoded image feature
    (one normalised row of :meth:`~emocap.classifier.ZeroShotClassifier.encode_images`)."""
    if top_k < 1:
        raise ValueError(f"top_k must be positive, got {top_k}")
    bank = list(regions) if regions is not None else region_sentences()
    region_sims = _sentence_features(classifier, [b["sentence"] for b in bank]) @ feature
    order = np.argsort(-region_sims)[:top_k]
    region_out = [{"sentence": bank[i]["sentence"], "region": bank[i]["region"], "aus": list(bank[i]["aus"]),
                   "similarity": float(region_sims[i])} for i in order]
    described = [(label, s) for label in classifier.labels for s in classifier.prompt_set.descriptions_for(label)]
    desc_out: List[dict] = []
    if described:
        sims = _sentence_features(classifier, [s for _, s in described]) @ feature
        desc_out = [{"label": described[i][0], "sentence": described[i][1], "similarity": float(sims[i])}
                    for i in np.argsort(-sims)[:top_k]]
    return {"regions": region_out, "descriptions": desc_out}
