"""Word lists: class -> words outside the taxonomy, with a purpose (``tuning`` or ``report``) and a source.

Sits in core because more than one stage reads them: eval's open-vocabulary protocol (:mod:`emocap.eval.vocabulary`)
scores benchmarks under a list's words, and training's language stage (:mod:`emocap.train.language`) uses the
tuning list for model selection. The bundled lists are ``emocap/data/vocabularies/*.json`` (rules in its README).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

from . import taxonomy

__all__ = ["Vocabulary", "load_vocabulary", "bundled_vocabularies", "taxonomy_words", "round_names",
           "class_words", "PURPOSES"]

PURPOSES = ("tuning", "report")
_BUNDLED_DIR = "data/vocabularies"


def taxonomy_words() -> List[str]:
    """Every emotion word of ``emocap/data/labels.json``: canonical names, adjectives and synonyms (normalised)."""
    return sorted({taxonomy.normalise_name(name) for names in taxonomy.names_by_emotion().values() for name in names})


@dataclass(frozen=True)
class Vocabulary:
    """A word list: canonical class -> words, with its name, purpose (``tuning`` / ``report``) and source."""

    name: str
    classes: Dict[str, List[str]]
    purpose: Optional[str] = None
    source: Optional[str] = None
    path: Optional[str] = None

    @property
    def hash(self) -> str:
        """16 hex digits of SHA-256 over the canonical JSON of ``classes`` (what determines the scores)."""
        blob = json.dumps({k: list(v) for k, v in sorted(self.classes.items())}, sort_keys=True,
                          ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return hashlib.sha256(blob).hexdigest()[:16]

    def words_in_taxonomy(self) -> List[str]:
        """Words of this list that the taxonomy knows (none in a shipped list: those are not unseen words)."""
        known = set(taxonomy_words())
        return [w for words in self.classes.values() for w in words if taxonomy.normalise_name(w) in known]

    def describe(self) -> dict:
        """What a result record keeps of the list."""
        return {"name": self.name, "hash": self.hash, "purpose": self.purpose, "source": self.source,
                "file": self.path, "classes": {k: list(v) for k, v in self.classes.items()}}


def bundled_vocabularies() -> List[str]:
    """Names of the word lists shipped in ``emocap/data/vocabularies/``."""
    folder = resources.files("emocap").joinpath(_BUNDLED_DIR)
    return sorted(item.name[:-len(".json")] for item in folder.iterdir() if item.name.endswith(".json"))


def _parse(data: object, where: str, default_name: str) -> Vocabulary:
    if not isinstance(data, dict) or not isinstance(data.get("classes"), dict) or not data["classes"]:
        raise ValueError(f"{where}: expected a JSON object with 'classes' mapping each class to a list of words")
    purpose = data.get("purpose")
    if purpose is not None and purpose not in PURPOSES:
        raise ValueError(f"{where}: 'purpose' must be one of {', '.join(PURPOSES)}, got {purpose!r}")
    classes: Dict[str, List[str]] = {}
    seen: Dict[str, str] = {}
    for key, words in data["classes"].items():
        canon = taxonomy.canonical_or_none(key)
        if canon is None:
            raise ValueError(f"{where}: class {key!r} is not an emotion the taxonomy knows")
        if canon in classes:
            raise ValueError(f"{where}: two entries for class {canon!r}")
        if (not isinstance(words, list) or not words
                or not all(isinstance(w, str) and w.strip() for w in words)):
            raise ValueError(f"{where}: class {key!r} needs a non-empty list of non-empty words")
        for w in words:
            norm = taxonomy.normalise_name(w)
            if norm in seen:
                raise ValueError(f"{where}: word {w!r} appears twice (classes {seen[norm]!r} and {canon!r}); "
                                 "each word must name one class")
            seen[norm] = canon
        classes[canon] = [w.strip() for w in words]
    return Vocabulary(str(data.get("name") or default_name), classes, purpose, data.get("source"))


def load_vocabulary(spec: Union[str, Path, Mapping, Vocabulary]) -> Vocabulary:
    """A word list: a bundled name (``openvocab-report``), a JSON file, a dict in the file format or a Vocabulary.

    Raises FileNotFoundError for an unknown name and ValueError for a malformed list (unknown class, empty or
    repeated words).
    """
    if isinstance(spec, Vocabulary):
        return spec
    if isinstance(spec, Mapping):
        return _parse(dict(spec), "vocabulary dict", "custom")
    text = str(spec)
    if text in bundled_vocabularies():
        item = resources.files("emocap").joinpath(_BUNDLED_DIR, f"{text}.json")
        vocab = _parse(json.loads(item.read_text(encoding="utf-8")), f"emocap/{_BUNDLED_DIR}/{text}.json", text)
        return Vocabulary(vocab.name, vocab.classes, vocab.purpose, vocab.source, f"emocap/{_BUNDLED_DIR}/{text}.json")
    path = Path(text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary {text!r} is neither a bundled list ({', '.join(bundled_vocabularies())}) "
                                "nor a JSON file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    vocab = _parse(data, str(path), path.stem)
    return Vocabulary(vocab.name, vocab.classes, vocab.purpose, vocab.source, str(path))


def class_words(vocab: Vocabulary, classes: Sequence[str]) -> List[List[str]]:
    """The list's words for each benchmark class (matched by canonical emotion); ValueError for a class it lacks."""
    out, missing = [], []
    for cls in classes:
        canon = taxonomy.canonical_or_none(cls)
        if canon is None or canon not in vocab.classes:
            missing.append(cls)
        else:
            out.append(vocab.classes[canon])
    if missing:
        raise ValueError(f"vocabulary {vocab.name!r} has no words for the benchmark's classes {missing} "
                         f"(it has {', '.join(vocab.classes)})")
    return out


def round_names(words: Sequence[Sequence[str]]) -> List[List[str]]:
    """Class names of every round: round ``r`` uses word ``r`` of each class, or its last word when it has fewer."""
    k = max(len(w) for w in words)
    return [[w[min(r, len(w) - 1)] for w in words] for r in range(k)]
