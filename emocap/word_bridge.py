"""The word bridge: labels outside the taxonomy reach the model's emotions through WordNet or a sentence encoder.

Where it sits: core, on the classifier's text side (:meth:`emocap.ZeroShotClassifier.class_text_features`). A
model's own text tower was trained on caption words only, so a label it never saw ("elated", "heartbroken")
encodes near chance. For every label that is not a taxonomy name (:func:`emocap.taxonomy.canonical_or_none` is
None), the bridge mixes the model's own class features of the emotions the label means into the label's own
feature. Which emotions, and how much:

* **WordNet first** (:mod:`emocap.word_lexicon`): a word WordNet links to taxonomy emotions (a shared sense, or
  one or two meaning-keeping relations away: "irate", "gleeful", "hit the roof") takes those emotions with
  WordNet's weights; the bridged share is 0.8 (0.6 for a link two relations away). A compound of taxonomy names
  and such words ("neutral and sad", "happily surprised"; no negation) takes the mean of its words' emotions
  with share 1.0 (:func:`emocap.word_lexicon.link_label`);
* **the sentence encoder elsewhere** (all-MiniLM-L6-v2, :mod:`emocap.sentence_encoder`, loaded only then):
  ``closeness[e]`` = the highest cosine between ``"a face that looks <label>"`` and ``"a face that looks
  <name>"`` over emotion ``e``'s names (canonical, adjective, synonyms in ``emocap/data/labels.json``); the
  emotions are weighted by ``softmax(closeness / 0.02)``; the share rises from 0 at a best closeness of 0.70 to
  0.6 at 0.80 and above. A phrase of facial actions ("raised eyebrows and a wide open mouth") is far from every
  emotion name, so it keeps the own tower's reading, which the captions taught. Any other label is drawn toward
  the emotions the encoder puts nearest, even a nonsense word (``"quux"``: share 0.4, toward neutral).

The label's own feature keeps the rest of the share. :meth:`WordBridge.describe` says what the bridge does to
each label and where from, and ``emocap classify`` prints it. Taxonomy names never take this path, so the
canonical results of a model are unchanged. Settings were chosen on FER+ valid with the tuning lists only
(``openvocab-tune``, ``behaviour-phrases-tune``; docs/labels.md, "Words outside the taxonomy"); :data:`BRIDGE_ID`
names them, and :func:`bridge_identity` (with the encoder's weights and the WordNet table's hash) goes into cache
keys and result records.
"""

from __future__ import annotations

import functools
import json
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import taxonomy

__all__ = ["WordBridge", "BRIDGE_ID", "BRIDGE_SETTINGS", "bridge_identity", "needs_bridge", "bridge_features",
           "bridge_note", "WordBridgeUnavailableWarning"]

#: how a label and an emotion name are put to the sentence encoder
BRIDGE_TEMPLATE = "a face that looks {}"
#: ... to decide how much to bridge (the same sentence: tried with the words alone, which took more from the
#: facial-action phrases on the tuning list; docs/labels.md)
GATE_TEMPLATE = BRIDGE_TEMPLATE
#: softmax temperature over the emotions' closeness
TEMPERATURE = 0.02
#: the own feature's least share (at a best gate closeness of GATE_HIGH and above)
OWN_SHARE = 0.4
#: best gate closeness where bridging starts (share 0) and where it is full (share 1 - OWN_SHARE)
GATE_LOW, GATE_HIGH = 0.70, 0.80
#: the bridged share of a label WordNet links to emotions (emocap/word_lexicon.py), by the link's depth 0, 1, 2
LEXICON_SHARE = (0.8, 0.8, 0.6)
#: WordNet links further than this many relations are not used (the table holds up to word_lexicon.MAX_DEPTH)
LEXICON_MAX_DEPTH = 2
#: compound labels made of taxonomy names and WordNet-linked words ("happily surprised") take their words' mean
#: emotions (emocap.word_lexicon.link_label) with this share; None: such labels go to the sentence encoder
LEXICON_COMPOUND_SHARE: Optional[float] = 1.0
BRIDGE_SETTINGS = {"encoder": "all-MiniLM-L6-v2", "gate_template": GATE_TEMPLATE, "template": BRIDGE_TEMPLATE,
                   "temperature": TEMPERATURE, "own_share": OWN_SHARE, "gate": [GATE_LOW, GATE_HIGH],
                   "lexicon_share": list(LEXICON_SHARE), "lexicon_max_depth": LEXICON_MAX_DEPTH,
                   "lexicon_compound_share": LEXICON_COMPOUND_SHARE}


def settings_id(settings: Optional[dict] = None) -> str:
    """The bridge's settings (default :data:`BRIDGE_SETTINGS`) as one string: :data:`BRIDGE_ID`."""
    return "minilm-l6-v2:" + json.dumps(BRIDGE_SETTINGS if settings is None else settings, sort_keys=True,
                                        separators=(",", ":"))


#: identifies the bridge's behaviour in cache keys and result records ("off" when a classifier turns it off)
BRIDGE_ID = settings_id()


_SHARED_NAME_VECTORS: Dict[str, np.ndarray] = {}


@functools.lru_cache(maxsize=1)
def bridge_identity() -> str:
    """:data:`BRIDGE_ID` plus the installed encoder's weights fingerprint (``@unavailable`` without it) and the
    WordNet table's hash: what cache keys and result records carry, so features made with other weights or another
    table are never served."""
    from .sentence_encoder import SentenceEncoderUnavailable, sentence_model_dir, weights_fingerprint
    from .word_lexicon import lexicon_id

    try:
        encoder = weights_fingerprint(sentence_model_dir())
    except (SentenceEncoderUnavailable, OSError):
        encoder = "unavailable"
    return f"{BRIDGE_ID}@{encoder}+{lexicon_id()}"


class WordBridgeUnavailableWarning(UserWarning):
    """Labels outside the taxonomy were encoded by the own text tower alone: the sentence encoder is missing."""


def needs_bridge(label: str) -> bool:
    """True for a label the taxonomy does not name (after case and whitespace normalisation)."""
    return taxonomy.canonical_or_none(label) is None


def _emotion_names() -> Tuple[List[str], List[Tuple[str, int]]]:
    """The taxonomy's emotions and every (name, emotion index) pair: canonical, adjective and synonyms."""
    by_emotion = taxonomy.names_by_emotion()
    emotions = list(by_emotion)
    return emotions, [(name, i) for i, emotion in enumerate(emotions) for name in by_emotion[emotion]]


class WordBridge:
    """Closeness of labels to the taxonomy's emotions, and the bridged class features built from it.

    ``encoder`` turns texts into L2-normalised sentence vectors (default: the shared all-MiniLM-L6-v2,
    loaded on first use, and only for labels WordNet does not link); ``lexicon=False`` leaves WordNet out (every
    label then goes to the encoder)."""

    def __init__(self, encoder: Optional[Callable[[Sequence[str]], np.ndarray]] = None, lexicon: bool = True):
        self._encoder = encoder
        self.use_lexicon = lexicon
        self.unavailable: Optional[str] = None  # why the encoder could not be used, once it failed
        self.emotions, self._names = _emotion_names()
        self._owner = np.array([e for _, e in self._names])
        # the names' vectors per template: shared by every bridge on the shared encoder (a classifier per label
        # set, as the demo makes, encodes them once per process), private with an encoder of the caller's
        self._name_vectors: Dict[str, np.ndarray] = _SHARED_NAME_VECTORS if encoder is None else {}
        # each label's closeness row per template, so describing labels after bridging them encodes nothing again
        self._rows: Dict[Tuple[str, str], np.ndarray] = {}

    def _encode(self, texts: Sequence[str], template: str) -> np.ndarray:
        if self._encoder is None:
            from .sentence_encoder import shared_sentence_encoder

            self._encoder = shared_sentence_encoder().encode
        return np.asarray(self._encoder([template.format(t) for t in texts]), dtype=np.float32)

    def closeness(self, labels: Sequence[str], template: str = BRIDGE_TEMPLATE) -> np.ndarray:
        """[N, E] the best cosine between each label and each emotion's names, both put in ``template``
        (E = the taxonomy's emotions, in :attr:`emotions` order)."""
        if template not in self._name_vectors:
            self._name_vectors[template] = self._encode([n for n, _ in self._names], template)
        todo = list(dict.fromkeys(label for label in labels if (template, label) not in self._rows))
        if todo:
            sims = self._encode(todo, template) @ self._name_vectors[template].T
            rows = np.stack([sims[:, self._owner == e].max(axis=1) for e in range(len(self.emotions))], axis=1)
            self._rows.update(((template, label), row) for label, row in zip(todo, rows))
        return np.stack([self._rows[(template, label)] for label in labels]) if labels else \
            np.zeros((0, len(self.emotions)), dtype=np.float32)

    @staticmethod
    def shares(gate_closeness: np.ndarray, closeness: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(bridged share [N], emotion weights [N, E]): the share from the best of ``gate_closeness`` (the words
        alone), the weights from ``closeness`` (in a face context)."""
        best = gate_closeness.max(axis=1)
        share = np.clip((best - GATE_LOW) / (GATE_HIGH - GATE_LOW), 0.0, 1.0) * (1.0 - OWN_SHARE)
        logits = (closeness - closeness.max(axis=1, keepdims=True)) / TEMPERATURE
        weights = np.exp(logits)
        return share, weights / weights.sum(axis=1, keepdims=True)

    def _links(self, labels: Sequence[str], kept: Sequence[int]) -> List[Optional[Tuple[float, np.ndarray]]]:
        """Per label, (bridged share, weights over ``kept``) from WordNet (:mod:`emocap.word_lexicon`), or None where
        WordNet links it to none of those emotions (or the lexicon is off)."""
        if not self.use_lexicon:
            return [None] * len(labels)
        from . import word_lexicon

        out: List[Optional[Tuple[float, np.ndarray]]] = []
        for label in labels:
            link = word_lexicon.link_label(label) if LEXICON_COMPOUND_SHARE is not None else word_lexicon.lookup(label)
            link = link if link is not None and link.depth <= LEXICON_MAX_DEPTH else None
            weights = None if link is None else \
                np.array([link.emotions.get(self.emotions[i], 0.0) for i in kept], dtype=np.float64)
            if weights is None or weights.sum() <= 0:
                out.append(None)
                continue
            share = LEXICON_COMPOUND_SHARE if link.parts > 1 else LEXICON_SHARE[min(link.depth, len(LEXICON_SHARE) - 1)]
            out.append((share, weights / weights.sum()))
        return out

    def _plan(self, labels: Sequence[str], kept: Optional[Sequence[int]] = None
              ) -> Tuple[np.ndarray, np.ndarray, List[str]]:
        kept = list(range(len(self.emotions))) if kept is None else list(kept)
        links = self._links(labels, kept)
        share = np.zeros(len(labels), dtype=np.float64)
        weights = np.zeros((len(labels), len(kept)), dtype=np.float64)
        rest = [n for n, link in enumerate(links) if link is None]
        sources = ["wordnet" if link is not None else "encoder" for link in links]
        if rest:  # the sentence encoder only for labels WordNet does not link (loaded only then)
            from .sentence_encoder import SentenceEncoderUnavailable

            try:
                close = self.closeness([labels[n] for n in rest], BRIDGE_TEMPLATE)[:, kept]
                gate = close if GATE_TEMPLATE == BRIDGE_TEMPLATE else \
                    self.closeness([labels[n] for n in rest], GATE_TEMPLATE)[:, kept]
                share[rest], weights[rest] = self.shares(gate, close)
            except SentenceEncoderUnavailable as e:  # those labels keep the own tower's reading (share 0)
                self.unavailable = str(e)
                weights[rest] = 1.0 / len(kept)
                for n in rest:
                    sources[n] = "unavailable"
        for n, link in enumerate(links):
            if link is not None:
                share[n], weights[n] = link
        return share, weights, sources

    def plan(self, labels: Sequence[str], kept: Optional[Sequence[int]] = None) -> Tuple[np.ndarray, np.ndarray]:
        """(bridged share [N], emotion weights [N, E]) for ``labels``; with ``kept`` (emotion indices), over
        those emotions only ([N, K] weights). WordNet's link decides where it has one, the encoder elsewhere."""
        share, weights, _ = self._plan(labels, kept)
        return share, weights

    def describe(self, labels: Sequence[str], top: int = 2, kept: Optional[Sequence[int]] = None) -> List[dict]:
        """Per label: ``{"label", "share", "toward": [(emotion, weight), ...], "source"}`` (the ``top`` heaviest
        emotions; source ``"wordnet"``, ``"encoder"``, or ``"unavailable"`` when the encoder is missing and the label
        keeps its own reading), what :meth:`blend` does to it (``kept``: as there); what ``emocap classify`` prints
        as a note."""
        share, weights, sources = self._plan(labels, kept)
        names = [self.emotions[i] for i in kept] if kept is not None else self.emotions
        out = []
        for label, s, w, source in zip(labels, share, weights, sources):
            order = np.argsort(-w, kind="stable")[:top]
            out.append({"label": label, "share": float(s), "toward": [(names[i], float(w[i])) for i in order],
                        "source": source})
        return out

    def blend(self, labels: Sequence[str], own: np.ndarray, emotion_features: np.ndarray,
              kept: Optional[Sequence[int]] = None) -> np.ndarray:
        """[N, D] normalised features of ``labels``: ``own`` ([N, D], the own tower's) mixed with the bridged
        feature from ``emotion_features`` ([E, D], the taxonomy emotions' class features in :attr:`emotions`
        order; or [K, D] for the emotions at indices ``kept`` only, the weights renormalised over them)."""
        return self.mix(own, emotion_features, *self.plan(labels, kept))

    @staticmethod
    def mix(own: np.ndarray, emotion_features: np.ndarray, share: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """:meth:`blend` for a plan already made (``share`` [N], ``weights`` [N, K] over ``emotion_features``)."""
        bridged = weights @ emotion_features
        bridged /= np.linalg.norm(bridged, axis=1, keepdims=True)
        mixed = (1.0 - share)[:, None] * own + share[:, None] * bridged
        return mixed / np.linalg.norm(mixed, axis=1, keepdims=True)


def bridge_note(described: Sequence[dict], limit: int = 10) -> Optional[str]:
    """One line saying what the bridge did (:meth:`WordBridge.describe` output; labels with share 0 left out),
    or None when it did nothing: what ``emocap classify`` prints and the demo shows."""
    acted = [b for b in described if b["share"] > 0]
    if not acted:
        return None
    parts = [f"{b['label']!r} -> " + ", ".join(f"{e} {w:.2f}" for i, (e, w) in enumerate(b["toward"])
                                                if i == 0 or w >= 0.05)
             + f" (share {b['share']:.2f}, {'WordNet' if b.get('source') == 'wordnet' else 'encoder'})"
             for b in acted[:limit]]
    more = f"; and {len(acted) - limit} more" if len(acted) > limit else ""
    return ("labels outside the taxonomy drawn toward the emotions WordNet links them to or a sentence encoder "
            f"finds them close to (docs/labels.md): {'; '.join(parts)}{more}")


def bridge_features(bridge: Optional[WordBridge], labels: Sequence[str], feats,
                    emotion_features: Callable[[List[str]], object],
                    usable: Optional[Callable[[str], bool]] = None):
    """``feats`` ([C, D] class features of ``labels``, torch or numpy) with the rows of non-taxonomy labels bridged.

    ``emotion_features(emotions)`` computes taxonomy emotions' class features the same way ``feats`` were;
    ``usable(emotion)`` says whether it can (a prompt set of descriptions only covers some emotions): the others
    get no weight. Without a bridge, with every label in the taxonomy or with no usable emotion, ``feats`` come
    back unchanged. A missing sentence encoder warns (:class:`WordBridgeUnavailableWarning`) and leaves ``feats``
    unchanged."""
    rows = [i for i, label in enumerate(labels) if needs_bridge(label)]
    if bridge is None or not rows:
        return feats
    kept = [i for i, e in enumerate(bridge.emotions) if usable is None or usable(e)]
    if not kept:
        return feats
    is_numpy = isinstance(feats, np.ndarray)
    own = feats if is_numpy else feats.detach().float().cpu().numpy()
    emo = emotion_features([bridge.emotions[i] for i in kept])
    emo = emo if isinstance(emo, np.ndarray) else emo.detach().float().cpu().numpy()
    share, weights, sources = bridge._plan([labels[i] for i in rows], kept)
    alone = [labels[i] for i, source in zip(rows, sources) if source == "unavailable"]
    if alone:
        warnings.warn(WordBridgeUnavailableWarning(
            f"labels outside the taxonomy that WordNet does not link ({', '.join(map(repr, alone[:5]))}"
            f"{', ...' if len(alone) > 5 else ''}) are encoded by the model's own text tower alone: "
            f"{bridge.unavailable}"), stacklevel=3)
        if len(alone) == len(rows):
            return feats
    mixed = bridge.mix(own[rows], emo, share, weights)
    out = np.array(own, dtype=np.float32, copy=True)
    out[rows] = mixed
    if is_numpy:
        return out.astype(feats.dtype, copy=False)
    import torch

    return torch.from_numpy(out).to(device=feats.device, dtype=feats.dtype)
