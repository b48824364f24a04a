"""Class descriptions for any label set: short, medium and detailed sentences per class (``emocap caption prompts``).

Beside the caption flow: the same writers (``writers.py``) turn class names into the class -> sentences JSON that
``emocap.prompts`` reads (the classifier's and trainer's hard prompts). A model writer gets one request per class
and granularity, asking for a JSON list of sentences about visible facial behaviour; the answer is validated
(a list of strings, the level's length limits, no emotion named that the class name does not contain) and
falls back to FACS sentences built from the emotion prototypes (``facs.py``), recorded per class. With the
template writer the FACS sentences are the output (offline).
"""

from __future__ import annotations

import json
from typing import Dict, List, Optional, Sequence, Tuple

from emocap import taxonomy

from .facs import ACTION_UNITS, EMOTION_PROTOTYPES
from .writers import ModelWriter, WriterError, emotions_named, first_json

LEVELS: Dict[str, Tuple[int, int, str]] = {
    # level -> (min words, max words, instruction)
    "short": (2, 12, "a short phrase of at most 12 words"),
    "medium": (6, 30, "one sentence of 8 to 30 words"),
    "detailed": (12, 70, "one or two sentences of 15 to 70 words that name the facial action units (AU numbers)"),
}


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


def facs_descriptions(label: str, per_level: int = 1) -> Dict[str, List[str]]:
    """Offline descriptions from the FACS prototypes of the class's emotions (the template writer's answer)."""
    emotions = class_emotions(label)
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


def describe_classes(labels: Sequence[str], writer=None, per_level: int = 2, name: str = "custom") -> dict:
    """``{"name", "descriptions": {label: [sentences]}, "levels": {label: {level: [...]}}, "generated_by"}``."""
    levels: Dict[str, Dict[str, List[str]]] = {}
    fallbacks: List[Dict[str, str]] = []
    model = isinstance(writer, ModelWriter)
    for label in labels:
        offline = facs_descriptions(label, per_level)
        levels[label] = {}
        for level in LEVELS:
            if not model:
                levels[label][level] = offline[level]
                continue
            try:
                text = writer.generate(_class_messages(label, level, per_level))
                levels[label][level] = _parse_list(text, label, level, per_level)
            except Exception as e:  # invalid output or a failed call: FACS sentences, recorded
                levels[label][level] = offline[level]
                fallbacks.append({"class": label, "level": level, "reason": str(e)[:200]})
    return {
        "name": name,
        "descriptions": {label: [s for level in LEVELS for s in levels[label][level]] for label in labels},
        "levels": levels,
        "generated_by": {"writer": getattr(writer, "name", "templates"), "per_level": per_level,
                         "fallbacks": fallbacks},
    }


def resolve_labels(spec: Sequence[str]) -> List[str]:
    """Label names from the command line: names, or one label set / compound benchmark name."""
    if len(spec) == 1:
        data = taxonomy._data()
        if spec[0] in data.get("compound_benchmarks", {}):
            return list(data["compound_benchmarks"][spec[0]]["labels"].values())
        if spec[0] in data.get("label_sets", {}):
            return list(data["label_sets"][spec[0]])
    return list(spec)


def write_descriptions(data: dict, path: str) -> Optional[str]:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return path
