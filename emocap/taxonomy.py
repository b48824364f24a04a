"""Emotion label taxonomy: canonical names, synonyms, label sets and benchmark label maps.

Sits at the bottom of the flow: captioning, training, the classifier and eval all name emotions through it.
The data (synonyms, sets, per-benchmark maps) lives in ``emocap/data/labels.json`` so that adding a benchmark
or a synonym is a data change, not a code change.

Canonical names are the nouns used by FER+ and most CLIP-FER codebases: ``neutral, happiness, surprise,
sadness, anger, disgust, fear, contempt``.
"""

from __future__ import annotations

import functools
import json
import unicodedata
from importlib import resources
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

__all__ = [
    "BASIC7",
    "BASIC8",
    "canonical",
    "canonical_or_none",
    "synonyms",
    "label_set",
    "clean_labels",
    "label_key",
    "normalise_name",
    "benchmark_label_map",
    "benchmark_names",
    "display_name",
    "names_by_emotion",
    "map_labels",
    "UnknownLabelError",
    "IndistinguishableLabelsWarning",
]


class UnknownLabelError(KeyError):
    """A label name that the taxonomy cannot map to a canonical emotion."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown label"


class IndistinguishableLabelsWarning(UserWarning):
    """Labels whose class text features are so alike (cosine at or above
    :data:`emocap.classifier.INDISTINGUISHABLE_COSINE`) that the model scores them almost the same on any image.

    Issued by :class:`emocap.ZeroShotClassifier` once per label set, when it computes the class text features; the
    message names each such pair with its cosine similarity.
    """


@functools.lru_cache(maxsize=1)
def _data() -> dict:
    text = resources.files("emocap").joinpath("data/labels.json").read_text(encoding="utf-8")
    return json.loads(text)


def normalise_name(name: str) -> str:
    """The form names are looked up in: lower case, ``_`` and ``-`` as spaces, single spaces, no outer spaces
    (``"Grossed_Out "`` -> ``"grossed out"``); also the key of word lists and of WordNet's emotion table."""
    return " ".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())


@functools.lru_cache(maxsize=1)
def _synonym_index() -> Dict[str, str]:
    index: Dict[str, str] = {}
    for canon, entry in _data()["emotions"].items():
        index[normalise_name(canon)] = canon
        for syn in entry["synonyms"]:
            index[normalise_name(syn)] = canon
    return index


BASIC7: List[str] = list(_data()["label_sets"]["basic7"])
BASIC8: List[str] = list(_data()["label_sets"]["basic8"])


def canonical_or_none(name: str) -> Optional[str]:
    """Canonical emotion for ``name`` (any case, synonym or native dataset code), or ``None``."""
    return _synonym_index().get(normalise_name(name))


def canonical(name: str) -> str:
    """Canonical emotion for ``name``; raises :class:`UnknownLabelError` naming the label when unknown.

    >>> canonical("Joy"), canonical("angry"), canonical("Astonished")
    ('happiness', 'anger', 'surprise')

    Native dataset codes (JAFFE's ``SU``, FER2013's ``3``) are not synonyms: map them with
    :func:`benchmark_label_map` first, since the same code means different emotions in different benchmarks.
    """
    canon = canonical_or_none(name)
    if canon is None:
        known = ", ".join(sorted(_data()["emotions"]))
        raise UnknownLabelError(f"unknown emotion label {name!r}; known canonical labels: {known} (and synonyms)")
    return canon


def synonyms(name: str) -> List[str]:
    """Synonyms of an emotion (canonical name first), e.g. for varied caption wording."""
    canon = canonical(name)
    return [canon] + [s for s in _data()["emotions"][canon]["synonyms"] if len(s) > 2]


def names_by_emotion() -> Dict[str, List[str]]:
    """Every emotion of the taxonomy with all its names (canonical, adjective, synonyms; sorted, no repeats), in
    ``labels.json`` order: the anchors of the word bridge (:mod:`emocap.word_bridge`)."""
    return {canon: sorted({canon, entry["adjective"], *entry["synonyms"]})
            for canon, entry in _data()["emotions"].items()}


def display_name(name: str, form: str = "adjective") -> str:
    """A natural word for ``name`` in a sentence: ``form`` is ``noun`` or ``adjective`` (``happy``)."""
    canon = canonical(name)
    entry = _data()["emotions"][canon]
    if form == "noun":
        return canon
    if form == "adjective":
        return entry["adjective"]
    raise ValueError(f"form must be 'noun' or 'adjective', got {form!r}")


def label_set(name_or_labels: "str | Sequence[str]") -> List[str]:
    """Resolve a label set: a bundled name (``basic7``, ``basic8``) or a list of names, checked by
    :func:`clean_labels` (whitespace tidied, empty and duplicate names rejected)."""
    if isinstance(name_or_labels, str):
        sets = _data()["label_sets"]
        if name_or_labels not in sets:
            raise KeyError(f"unknown label set {name_or_labels!r}; bundled sets: {', '.join(sorted(sets))}")
        return list(sets[name_or_labels])
    return clean_labels(name_or_labels)


def label_key(label: str) -> str:
    """The form two labels are compared in: case folded, whitespace runs as one space, no outer whitespace."""
    return " ".join(str(label).casefold().split())


def _has_word(label: str) -> bool:
    """Whether ``label`` has a letter, a digit or a pictograph (emoji): something a text encoder can read."""
    return any(unicodedata.category(ch)[0] in "LN" or unicodedata.category(ch) == "So" for ch in label)


def clean_labels(labels: Sequence[str]) -> List[str]:
    """Check and tidy label names typed by a user; the one place the classifier and the CLIs validate labels.

    Any word or phrase is a label (``"joy"``, ``"a forced smile"``, ``"happily surprised"``). Each label has its
    leading and trailing whitespace removed and inner runs of whitespace (tabs, newlines) made one space; case is
    kept. Raises ``ValueError`` naming the label and its position (counted from 1) for an empty label or one with
    no letter, digit or emoji (``"  "``, ``"?!"``), and naming all of them for labels that are the same once case
    and whitespace are ignored (``"Joy"`` and ``"joy "``). ``TypeError`` for a label that is not a string (numbers
    are taken as their text). There is no upper limit on the number of labels.

    >>> clean_labels([" joy", "a  forced\tsmile"])
    ['joy', 'a forced smile']
    """
    if isinstance(labels, (str, bytes)):
        raise TypeError(f"labels must be a list of names, not one string ({labels!r})")
    raw = list(labels)
    if not raw:
        raise ValueError("a label set needs at least one label")
    n = len(raw)
    out: List[str] = []
    for i, label in enumerate(raw, start=1):
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise TypeError(f"label {i} of {n} is not a string: {label!r} ({type(label).__name__})")
        text = " ".join(str(label).split())
        if not text:
            raise ValueError(f"label {i} of {n} ({label!r}) is {'only whitespace' if label else 'empty'}")
        if not _has_word(text):
            raise ValueError(f"label {i} of {n} ({label!r}) has no letter or digit: only whitespace or punctuation")
        out.append(text)
    positions: Dict[str, List[int]] = {}
    for i, text in enumerate(out):
        positions.setdefault(label_key(text), []).append(i)
    dups = [where for where in positions.values() if len(where) > 1]
    if dups:
        groups = "; ".join(" = ".join(f"{raw[i]!r} (label {i + 1})" for i in where) for where in dups)
        raise ValueError(f"duplicate labels (case and whitespace are ignored): {groups}")
    return out


def benchmark_names() -> List[str]:
    """Names of the benchmarks whose native label maps ship with emocap."""
    return sorted(_data()["benchmarks"])


def benchmark_label_map(benchmark: str) -> Dict[str, str]:
    """Native label (id or name, as a string) -> canonical emotion, in the benchmark's native order."""
    maps = _data()["benchmarks"]
    if benchmark not in maps:
        raise KeyError(f"no label map for benchmark {benchmark!r}; known: {', '.join(sorted(maps))}")
    return dict(maps[benchmark]["labels"])


def map_labels(names: Iterable[str], mapping: Optional[Mapping[str, str]] = None) -> List[str]:
    """Map native names through ``mapping`` (when given) and then the synonym table to canonical names."""
    out = []
    for name in names:
        key = str(name)
        if mapping is not None and key in mapping:
            key = mapping[key]
        out.append(canonical(key))
    return out
