"""Class descriptions for any label set: short, medium and detailed sentences per class (``emocap caption prompts``).

Beside the caption flow: the same writers (``writers.py``) turn class names into the class -> sentences JSON that
``emocap.prompts`` reads (the classifier's and trainer's hard prompts). A model writer gets one request per class
and granularity, asking for a JSON list of sentences about visible facial behaviour; the answer is validated
(a list of strings, the level's length limits, no emotion named that the class name does not contain) and
falls back to FACS sentences built from the emotion prototypes (``facs_knowledge.py``), recorded per class. With the
template writer the FACS sentences are the output (offline).

Labels may be new words outside the taxonomy (``pain``, ``boredom``): a model writer describes them; the template
writer cannot (no emotion of the taxonomy, so no FACS prototype to build sentences from) and says so with
:class:`UndescribableLabelsError` instead of writing sentences that belong to another class. Validated model
answers are cached on disk (:class:`DescriptionCache`), keyed by everything that shapes them (writer and its
model, the request text, the label's emotions, the level's limits), so regenerating does not repeat requests and
a changed input is asked again. The output carries the content hash its prompt set will have.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from emocap import taxonomy
from emocap.prompts import PromptSet, load_prompt_set

from .facs_knowledge import ACTION_UNITS, EMOTION_PROTOTYPES
from .model_writer import ModelWriter, WriterError, emotions_named, first_json

LEVELS: Dict[str, Tuple[int, int, str]] = {
    # level -> (min words, max words, instruction)
    "short": (2, 12, "a short phrase of at most 12 words"),
    "medium": (6, 30, "one sentence of 8 to 30 words"),
    "detailed": (12, 70, "one or two sentences of 15 to 70 words that name the facial action units (AU numbers)"),
}


CACHE_VERSION = 1


class UndescribableLabelsError(ValueError):
    """Labels the writer cannot describe (the template writer: labels that name no emotion of the taxonomy)."""

    def __init__(self, labels: Sequence[str], reason: str):
        self.labels = list(labels)
        super().__init__(f"cannot describe {', '.join(repr(x) for x in self.labels)}: {reason}")


TEMPLATE_WRITER_CANNOT = (
    "the template writer builds descriptions from the FACS prototypes of the emotions a label names, and these "
    "labels name no emotion of the taxonomy (emocap/data/labels.json). Use a language-model writer (--writer "
    "openai --writer-model M, or --writer llm --writer-model PATH), write the descriptions yourself (a JSON "
    "file {\"descriptions\": {label: [sentences]}}), or classify with the label words alone (no --prompts)")


def class_emotions(label: str) -> List[str]:
    """Canonical emotions a class name stands for: itself, or the parts of a compound name ("sadly angry")."""
    canon = taxonomy.canonical_or_none(label)
    if canon is not None:
        return [canon]
    parts = []
    for word in label.replace("-", " ").split():
        for form in (word, word[:-2] if word.endswith("ly") else word, word[:-3] + "y" if word.endswith("ily") else word):
            c = taxonomy.canonical_or_none(form)
            if c is not None:
                parts.append(c)
                break
    found = sorted(emotions_named(label))
    return list(dict.fromkeys(parts + found))


def describable_offline(label: str) -> bool:
    """Whether the template writer can describe ``label``: it names at least one emotion of the taxonomy."""
    return bool(class_emotions(label))


def facs_descriptions(label: str, per_level: int = 1) -> Dict[str, List[str]]:
    """Offline descriptions from the FACS prototypes of the class's emotions (the template writer's answer).

    Raises :class:`UndescribableLabelsError` for a label that names no emotion of the taxonomy."""
    emotions = class_emotions(label)
    if not emotions:
        raise UndescribableLabelsError([label], TEMPLATE_WRITER_CANNOT)
    aus: Dict[int, float] = {}
    for e in emotions:
        for au, v in EMOTION_PROTOTYPES.get(e, {}).items():
            aus[au] = max(aus.get(au, 0.0), v)
    ranked = sorted(aus, key=lambda a: -aus[a])
    if not ranked:  # neutral (or a class without a prototype): the face at rest
        rest = {
            "short": ["a relaxed face at rest", "a calm face with no muscle activity", "a blank, still face"],
            "medium": ["the brows, eyes and mouth are at rest with no visible muscle activity.",
                       "level brows, normally open eyes and closed, relaxed lips."],
            "detailed": ["no action unit is active: the brows rest level, the eyelids are relaxed, the cheeks are "
                         "flat and the lips are closed without tension.",
                         "a face at rest: no brow movement, no lid tightening, no lip-corner pull or depression and "
                         "no jaw drop."],
        }
        return {level: [rest[level][k % len(rest[level])] for k in range(per_level)] for level in rest}
    phrases = [ACTION_UNITS[a][2][0] for a in ranked if a in ACTION_UNITS]
    short_bits = [ACTION_UNITS[a][0] for a in ranked[:2]]
    out = {"short": [], "medium": [], "detailed": []}
    for k in range(per_level):
        rot = phrases[k % len(phrases):] + phrases[:k % len(phrases)]
        out["short"].append(f"a face with {' and '.join(short_bits)}" if k == 0 else f"{label}: {rot[0]}")
        out["medium"].append(", ".join(rot[:2]) + (f" and {rot[2]}" if len(rot) > 2 else "") + ".")
        names = ", ".join(f"AU{a} {ACTION_UNITS[a][0]}" for a in ranked[:4] if a in ACTION_UNITS)
        out["detailed"].append(f"{'; '.join(rot[:3])}: a face showing {label}, with {names}.")
    return out


def _class_messages(label: str, level: str, n: int) -> List[Dict[str, str]]:
    _, _, instruction = LEVELS[level]
    return [
        {"role": "system", "content": (
            "You write class descriptions for a facial expression classifier. Describe only the visible facial "
            "behaviour (brows, eyes, nose, cheeks, mouth, jaw), never context, causes, age or identity. Answer "
            "with a JSON list of strings and nothing else.")},
        {"role": "user", "content": f"Write {n} different descriptions, each {instruction}, of a face showing: {label}."},
    ]


def _parse_list(text: str, label: str, level: str, n: int) -> List[str]:
    items = first_json(text, "[")
    if not isinstance(items, list) or not all(isinstance(s, str) and s.strip() for s in items):
        raise WriterError("output is not a list of sentences")
    lo, hi, _ = LEVELS[level]
    allowed = set(class_emotions(label)) | {"neutral"}
    good = []
    for s in items:
        words = len(s.split())
        if not lo <= words <= hi:
            raise WriterError(f"{level} description of {words} words (allowed {lo}..{hi})")
        wrong = emotions_named(s) - allowed
        if wrong:
            raise WriterError(f"description names {', '.join(sorted(wrong))}, not part of {label!r}")
        good.append(s.strip())
    if len(good) < n:
        raise WriterError(f"{len(good)} descriptions, {n} asked")
    return good[:n]


def _hash(obj) -> str:
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:24]


def writer_identity(writer) -> dict:
    """What makes a writer's answers differ: its kind and its plain settings (model name, endpoint, sampling)."""
    ident = {"writer": getattr(writer, "name", type(writer).__name__), "class": type(writer).__name__}
    for attr in ("model", "model_id", "url", "temperature", "max_tokens", "max_new_tokens", "do_sample"):
        value = getattr(writer, attr, None)
        if isinstance(value, (str, int, float, bool)):
            ident[attr] = value
    return ident


def default_cache_dir() -> Path:
    """``$EMOCAP_CACHE_DIR/class_prompts``, else ``$XDG_CACHE_HOME/emocap/class_prompts``, else ``~/.cache/...``."""
    if os.environ.get("EMOCAP_CACHE_DIR"):
        return Path(os.environ["EMOCAP_CACHE_DIR"]) / "class_prompts"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "emocap" / "class_prompts"


class DescriptionCache:
    """Validated model-writer answers on disk: one small JSON file per request key (written atomically)."""

    def __init__(self, folder: Union[str, Path, None] = None):
        self.folder = Path(folder) if folder is not None else default_cache_dir()

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> Optional[List[str]]:
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
            sentences = data["sentences"]
        except (OSError, ValueError, KeyError, TypeError):
            return None  # missing or unreadable entries are asked again
        return sentences if isinstance(sentences, list) else None

    def put(self, key: str, sentences: List[str], request: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self._path(key).with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"request": request, "sentences": sentences}, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self._path(key))


def request_key(writer, label: str, level: str, per_level: int) -> Tuple[str, dict]:
    """The cache key of one request and what it is made of (change any part and the answer is asked again)."""
    request = {"version": CACHE_VERSION, "writer": writer_identity(writer), "label": label, "level": level,
               "limits": list(LEVELS[level][:2]), "per_level": per_level,
               "messages": _class_messages(label, level, per_level), "emotions": class_emotions(label)}
    return _hash(request), request


def describe_classes(labels: Sequence[str], writer=None, per_level: int = 2, name: str = "custom",
                     cache: Union[DescriptionCache, str, Path, None] = None,
                     templates: Optional[Sequence[str]] = None, stats: Optional[dict] = None) -> dict:
    """``{"name", "descriptions": {label: [sentences]}, "levels": {label: {level: [...]}}, "generated_by", "hash"}``.

    ``labels`` are checked by :func:`emocap.taxonomy.clean_labels`. With the template writer (``writer`` None or
    not a model writer) every label must name an emotion of the taxonomy, else :class:`UndescribableLabelsError`
    lists those that do not. A model writer describes any label; a failed or invalid answer falls back to the FACS
    sentences where the label has them, and a label left with no sentence at all raises the same error. ``cache``
    (a :class:`DescriptionCache` or a folder) keeps validated model answers: only requests not seen before are
    sent. ``templates`` are stored with the descriptions, making the file a complete prompt set. ``stats``, when a
    dict, receives ``{"requests": sent, "cached": reused}``.
    """
    labels = taxonomy.clean_labels(labels)
    model = isinstance(writer, ModelWriter)
    if not model:
        unknown = [label for label in labels if not describable_offline(label)]
        if unknown:
            raise UndescribableLabelsError(unknown, TEMPLATE_WRITER_CANNOT)
    if cache is not None and not isinstance(cache, DescriptionCache):
        cache = DescriptionCache(cache)
    levels: Dict[str, Dict[str, List[str]]] = {}
    fallbacks: List[Dict[str, str]] = []
    sent = reused = 0
    for label in labels:
        offline = facs_descriptions(label, per_level) if describable_offline(label) else None
        levels[label] = {}
        for level in LEVELS:
            if not model:
                levels[label][level] = offline[level]
                continue
            key, request = request_key(writer, label, level, per_level)
            cached = cache.get(key) if cache is not None else None
            if cached is not None:
                try:  # checked again: the rules may have changed since it was stored
                    levels[label][level] = _parse_list(json.dumps(cached), label, level, per_level)
                    reused += 1
                    continue
                except WriterError:
                    pass
            try:
                sent += 1
                text = writer.generate(_class_messages(label, level, per_level))
                levels[label][level] = _parse_list(text, label, level, per_level)
                if cache is not None:
                    cache.put(key, levels[label][level], request)
            except Exception as e:  # invalid output or a failed call: FACS sentences where there are any, recorded
                levels[label][level] = offline[level] if offline else []
                fallbacks.append({"class": label, "level": level, "reason": str(e)[:200],
                                  "fallback": "facs" if offline else "none"})
    empty = [label for label in labels if not any(levels[label].values())]
    if empty:
        reasons = "; ".join(f"{f['class']} {f['level']}: {f['reason']}" for f in fallbacks if f["class"] in empty)
        raise UndescribableLabelsError(empty, f"the {getattr(writer, 'name', 'model')} writer gave no valid "
                                       f"description and there is no FACS fallback outside the taxonomy ({reasons}); "
                                       "valid answers of this run are cached, run again to retry the rest")
    if stats is not None:
        stats.update(requests=sent, cached=reused)
    descriptions = {label: [s for level in LEVELS for s in levels[label][level]] for label in labels}
    out = {"name": name}
    if templates:
        out["templates"] = list(templates)
    out.update({
        "descriptions": descriptions,
        "levels": levels,
        "generated_by": {"writer": getattr(writer, "name", "templates"), "per_level": per_level,
                         "fallbacks": fallbacks},
    })
    out["hash"] = PromptSet(tuple(templates or ()), {k: tuple(v) for k, v in descriptions.items()}, name=name).hash
    return out


def templates_from(spec: str) -> List[str]:
    """Templates of a bundled prompt set name or a prompt JSON file (for ``--templates``)."""
    templates = list(load_prompt_set(spec).templates)
    if not templates:
        raise ValueError(f"{spec!r} has no templates")
    return templates


def resolve_labels(spec: Sequence[str]) -> List[str]:
    """Label names from the command line: names, or one label set / compound benchmark name; checked by
    :func:`emocap.taxonomy.clean_labels` (whitespace tidied; empty, punctuation-only and duplicate names rejected)."""
    if len(spec) == 1:
        data = taxonomy._data()
        if spec[0] in data.get("compound_benchmarks", {}):
            return list(data["compound_benchmarks"][spec[0]]["labels"].values())
        if spec[0] in data.get("label_sets", {}):
            return list(data["label_sets"][spec[0]])
    return taxonomy.clean_labels(spec)


def write_descriptions(data: dict, path: str) -> Optional[str]:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return path
