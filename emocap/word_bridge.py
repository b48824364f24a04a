"""The word bridge: labels outside the taxonomy reach the model's emotions through a pretrained sentence encoder.

Where it sits: core, on the classifier's text side (:meth:`emocap.ZeroShotClassifier.class_text_features`). A
model's own text tower was trained on caption words only, so a label it never saw ("elated", "heartbroken")
encodes near chance. For every label that is not a taxonomy name (:func:`emocap.taxonomy.canonical_or_none` is
None), the bridge asks all-MiniLM-L6-v2 (:mod:`emocap.sentence_encoder`) how close the label is to each taxonomy
emotion's names, and mixes the model's own class features of those emotions into the label's own feature:

* ``closeness[e]`` = the highest cosine between ``"a face that looks <label>"`` and ``"a face that looks <name>"``
  over emotion ``e``'s names (canonical, adjective, synonyms in ``emocap/data/labels.json``);
* ``bridged`` = the emotions' class features (the same prompt set) weighted by ``softmax(closeness / 0.02)``;
* the share of ``bridged`` in the label's feature rises from 0 at a best closeness of 0.70 to 0.6 at 0.80 and
  above; the label's own feature keeps the rest. A phrase of facial actions ("raised eyebrows and a wide open
  mouth") is far from every emotion name, so it keeps the own tower's reading, which the captions taught.

Taxonomy names never take this path, so the canonical results of a model are unchanged. Settings were chosen on
FER+ valid with the tuning lists only (``openvocab-tune``, ``behaviour-phrases-tune``; docs/labels.md, "Words
outside the taxonomy"); :data:`BRIDGE_ID` names them in cache keys and result records.
"""

from __future__ import annotations

import json
import warnings
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from . import taxonomy

__all__ = ["WordBridge", "BRIDGE_ID", "BRIDGE_SETTINGS", "needs_bridge", "WordBridgeUnavailableWarning"]

#: how a label and an emotion name are put to the sentence encoder
BRIDGE_TEMPLATE = "a face that looks {}"
#: softmax temperature over the emotions' closeness
TEMPERATURE = 0.02
#: the own feature's least share (at a best closeness of GATE_HIGH and above)
OWN_SHARE = 0.4
#: best closeness where bridging starts (share 0) and where it is full (share 1 - OWN_SHARE)
GATE_LOW, GATE_HIGH = 0.70, 0.80
BRIDGE_SETTINGS = {"encoder": "all-MiniLM-L6-v2", "template": BRIDGE_TEMPLATE, "temperature": TEMPERATURE,
                   "own_share": OWN_SHARE, "gate": [GATE_LOW, GATE_HIGH]}
#: identifies the bridge's behaviour in cache keys and result records ("off" when a classifier turns it off)
BRIDGE_ID = "minilm-l6-v2:" + json.dumps(BRIDGE_SETTINGS, sort_keys=True, separators=(",", ":"))


class WordBridgeUnavailableWarning(UserWarning):
    """Labels outside the taxonomy were encoded by the own text tower alone: the sentence encoder is missing."""


def needs_bridge(label: str) -> bool:
    """True for a label the taxonomy does not name (after case and whitespace normalisation)."""
    return taxonomy.canonical_or_none(label) is None


def _emotion_names() -> Tuple[List[str], List[Tuple[str, int]]]:
    """The taxonomy's emotions and every (name, emotion index) pair: canonical, adjective and synonyms."""
    data = taxonomy._data()["emotions"]
    emotions = list(data)
    names = []
    for i, emotion in enumerate(emotions):
        entry = data[emotion]
        for name in sorted({emotion, entry["adjective"], *entry["synonyms"]}):
            names.append((name, i))
    return emotions, names


class WordBridge:
    """Closeness of labels to the taxonomy's emotions, and the bridged class features built from it.

    ``encoder`` turns texts into L2-normalised sentence vectors (default: the shared all-MiniLM-L6-v2,
    loaded on first use)."""

    def __init__(self, encoder: Optional[Callable[[Sequence[str]], np.ndarray]] = None):
        self._encoder = encoder
        self.emotions, self._names = _emotion_names()
        self._name_vectors: Optional[np.ndarray] = None

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._encoder is None:
            from .sentence_encoder import shared_sentence_encoder

            self._encoder = shared_sentence_encoder().encode
        return np.asarray(self._encoder([BRIDGE_TEMPLATE.format(t) for t in texts]), dtype=np.float32)

    def closeness(self, labels: Sequence[str]) -> np.ndarray:
        """[N, E] the best cosine between each label and each emotion's names (E = taxonomy emotions)."""
        if self._name_vectors is None:
            self._name_vectors = self._encode([n for n, _ in self._names])
        sims = self._encode(labels) @ self._name_vectors.T
        owner = np.array([e for _, e in self._names])
        return np.stack([sims[:, owner == e].max(axis=1) for e in range(len(self.emotions))], axis=1)

    @staticmethod
    def shares(closeness: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(bridged share [N], emotion weights [N, E]) from :meth:`closeness`."""
        best = closeness.max(axis=1)
        share = np.clip((best - GATE_LOW) / (GATE_HIGH - GATE_LOW), 0.0, 1.0) * (1.0 - OWN_SHARE)
        logits = (closeness - best[:, None]) / TEMPERATURE
        weights = np.exp(logits)
        return share, weights / weights.sum(axis=1, keepdims=True)

    def blend(self, labels: Sequence[str], own: np.ndarray, emotion_features: np.ndarray) -> np.ndarray:
        """[N, D] normalised features of ``labels``: ``own`` ([N, D], the own tower's) mixed with the bridged
        feature from ``emotion_features`` ([E, D], the taxonomy emotions' class features, in :attr:`emotions`
        order)."""
        share, weights = self.shares(self.closeness(labels))
        bridged = weights @ emotion_features
        bridged /= np.linalg.norm(bridged, axis=1, keepdims=True)
        mixed = (1.0 - share)[:, None] * own + share[:, None] * bridged
        return mixed / np.linalg.norm(mixed, axis=1, keepdims=True)


def bridge_features(bridge: Optional[WordBridge], labels: Sequence[str], feats,
                    emotion_features: Callable[[List[str]], object]):
    """``feats`` ([C, D] class features of ``labels``, torch or numpy) with the rows of non-taxonomy labels bridged.

    ``emotion_features(emotions)`` computes the taxonomy emotions' class features the same way ``feats`` were.
    Without a bridge, or with every label in the taxonomy, ``feats`` come back unchanged. A missing sentence
    encoder warns once per call (:class:`WordBridgeUnavailableWarning`) and leaves ``feats`` unchanged."""
    rows = [i for i, label in enumerate(labels) if needs_bridge(label)]
    if bridge is None or not rows:
        return feats
    from .sentence_encoder import SentenceEncoderUnavailable

    is_numpy = isinstance(feats, np.ndarray)
    own = feats if is_numpy else feats.detach().float().cpu().numpy()
    emo = emotion_features(bridge.emotions)
    emo = emo if isinstance(emo, np.ndarray) else emo.detach().float().cpu().numpy()
    try:
        mixed = bridge.blend([labels[i] for i in rows], own[rows], emo)
    except SentenceEncoderUnavailable as e:
        warnings.warn(WordBridgeUnavailableWarning(
            f"labels outside the taxonomy ({', '.join(repr(labels[i]) for i in rows[:5])}"
            f"{', ...' if len(rows) > 5 else ''}) are encoded by the model's own text tower alone: {e}"), stacklevel=3)
        return feats
    out = np.array(own, dtype=np.float32, copy=True)
    out[rows] = mixed
    if is_numpy:
        return out.astype(feats.dtype, copy=False)
    import torch

    return torch.from_numpy(out).to(device=feats.device, dtype=feats.dtype)
