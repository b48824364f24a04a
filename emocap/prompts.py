"""Prompts as data: template lists and class-description sets, each with a content hash.

Used by the zero-shot classifier (text side of every prediction), by training (class prompts for validation and
prompt alignment) and by eval (the prompt hash goes into every result file).

Two file formats, both JSON:

* a **template set**: ``{"name": ..., "templates": ["a photo of a face showing {}.", ...]}``; ``{}`` is
  replaced by the label name exactly as the user gave it;
* a **description set**: ``{"name": ..., "descriptions": {"happiness": ["the cheeks are raised ...", ...]}}``,
  the class -> sentences format that LLM-generated class descriptions come in. Keys are any label names;
  they are matched to labels through the taxonomy, so ``"happy"`` descriptions serve the label ``"happiness"``.

A :class:`PromptSet` combines a template set with an optional description set.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Union

from . import taxonomy

__all__ = ["PromptSet", "load_prompt_set", "bundled_prompt_sets", "DEFAULT_PROMPT_SET"]

DEFAULT_PROMPT_SET = "basic8"
_BUNDLED_DIR = "data/prompts"


def _content_hash(obj) -> str:
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class PromptSet:
    """Templates plus optional class descriptions, with a stable content hash.

    Args:
        templates: strings with one ``{}`` placeholder for the label name.
        descriptions: label name -> sentences describing the visible facial behaviour of that class.
        name: a short name recorded in results.
        use_descriptions: when False, descriptions are kept (and hashed) but not used for prompts.
    """

    templates: tuple
    descriptions: Mapping[str, tuple] = field(default_factory=dict)
    name: str = "custom"
    use_descriptions: bool = True

    def __post_init__(self):
        if not self.templates and not self.descriptions:
            raise ValueError("a prompt set needs templates or descriptions")
        for t in self.templates:
            if t.count("{}") != 1:
                raise ValueError(f"template {t!r} must contain exactly one '{{}}' placeholder")

    @functools.cached_property
    def hash(self) -> str:  # computed once: the classifier keys its text-feature cache on it for every call
        """A 16-hex-digit hash of the content (templates, descriptions, whether descriptions are used)."""
        return _content_hash(
            {
                "templates": list(self.templates),
                "descriptions": {k: list(v) for k, v in sorted(self.descriptions.items())},
                "use_descriptions": self.use_descriptions,
            }
        )

    def descriptions_for(self, label: str) -> List[str]:
        """Description sentences for ``label``: an exact key first, then a key equal up to case and whitespace,
        else a key with the same canonical emotion. A label outside the taxonomy (``"pain"``) gets only a key of its
        own, never another class's sentences."""
        if not self.use_descriptions or not self.descriptions:
            return []
        if label in self.descriptions:
            return list(self.descriptions[label])
        by_key, by_emotion = self._lookup
        found = by_key.get(taxonomy.label_key(label))
        if found is None:
            canon = taxonomy.canonical_or_none(label)
            found = by_emotion.get(canon, ()) if canon is not None else ()
        return list(found)

    @functools.cached_property
    def _lookup(self):
        """Description keys by :func:`~emocap.taxonomy.label_key` and by canonical emotion (first key wins), built
        once: looking up 1,000 labels in a 1,000-class set stays linear."""
        by_key: Dict[str, tuple] = {}
        by_emotion: Dict[str, tuple] = {}
        for key, sentences in self.descriptions.items():
            by_key.setdefault(taxonomy.label_key(key), sentences)
            canon = taxonomy.canonical_or_none(key)
            if canon is not None:
                by_emotion.setdefault(canon, sentences)
        return by_key, by_emotion

    def texts_for(self, label: str) -> List[str]:
        """All prompt texts for one label: each template filled with the label, then its descriptions.

        Raises ``ValueError`` only for a prompt set without templates that has no descriptions for ``label``."""
        texts = [t.format(label) for t in self.templates] + self.descriptions_for(label)
        if not texts:
            raise ValueError(
                f"prompt set {self.name!r} has no templates and no descriptions for label {label!r}; describe it "
                f"(emocap caption prompts --labels {label!r} ...) or use a prompt set with templates")
        return texts

    def without_descriptions(self) -> "PromptSet":
        return PromptSet(self.templates, self.descriptions, self.name + "-templates", use_descriptions=False)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "templates": list(self.templates),
            "descriptions": {k: list(v) for k, v in self.descriptions.items()},
            "use_descriptions": self.use_descriptions,
            "hash": self.hash,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "PromptSet":
        return cls(
            templates=tuple(data.get("templates", ())),
            descriptions={k: tuple(v) for k, v in dict(data.get("descriptions", {})).items()},
            name=data.get("name", "custom"),
            use_descriptions=bool(data.get("use_descriptions", True)),
        )


def bundled_prompt_sets() -> List[str]:
    """Names of the prompt sets shipped with emocap."""
    folder = resources.files("emocap").joinpath(_BUNDLED_DIR)
    names = set()
    for item in folder.iterdir():
        for suffix in ("_templates.json", "_descriptions.json"):
            if item.name.endswith(suffix):
                names.add(item.name[: -len(suffix)])
    return sorted(names)


def _read_json(path_or_text, where: str) -> dict:
    try:
        data = json.loads(path_or_text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object with 'templates' and/or 'descriptions'")
    return data


def _validate_descriptions(data: dict, where: str) -> Dict[str, tuple]:
    desc = data.get("descriptions", {})
    if not isinstance(desc, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) for s in v) for v in desc.values()
    ):
        raise ValueError(f"{where}: 'descriptions' must map each class name to a list of sentences")
    return {k: tuple(v) for k, v in desc.items()}


def _check_template(template: str) -> str:
    """A template must take the label once, through ``{}``; ValueError naming it otherwise."""
    try:
        filled = template.format("LABEL")
    except (IndexError, KeyError, ValueError) as e:
        raise ValueError(f"template {template!r}: use {{}} once where the label goes, no other braces ({e})") from None
    if filled.count("LABEL") != 1:
        raise ValueError(f"template {template!r}: needs exactly one {{}} where the label goes")
    return template


def load_prompt_set(
    spec: Union[str, Path, "PromptSet", Mapping, Sequence[str], None] = None,
    descriptions: Union[str, Path, Mapping, None] = None,
) -> PromptSet:
    """Load a prompt set.

    ``spec`` may be ``None`` (the bundled default), a bundled name (``"basic8"``), a JSON file holding
    templates and/or descriptions, a dict in the file format, one template string (``"a photo of a {} face."``),
    a list of template strings, or a PromptSet.
    ``descriptions`` optionally adds (or replaces) a description set: a bundled name, a JSON file or a dict.
    """
    if isinstance(spec, PromptSet):
        base = spec
    elif spec is None or (isinstance(spec, str) and spec in bundled_prompt_sets()):
        name = spec or DEFAULT_PROMPT_SET
        folder = resources.files("emocap").joinpath(_BUNDLED_DIR)
        templates = json.loads(folder.joinpath(f"{name}_templates.json").read_text(encoding="utf-8"))
        desc_file = folder.joinpath(f"{name}_descriptions.json")
        desc = json.loads(desc_file.read_text(encoding="utf-8")) if desc_file.is_file() else {}
        base = PromptSet(
            tuple(templates["templates"]), _validate_descriptions(desc, str(desc_file)), name=name
        )
    elif isinstance(spec, Mapping):
        base = PromptSet(
            tuple(spec.get("templates", ())), _validate_descriptions(dict(spec), "prompt dict"),
            name=str(spec.get("name", "custom")),
        )
    elif isinstance(spec, str) and "{}" in spec and not Path(spec).is_file():
        base = PromptSet((_check_template(spec),), {}, name="custom")  # one template: "a photo of a {} face."
    elif isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.is_file():
            raise FileNotFoundError(
                f"prompt set {str(spec)!r} is neither a bundled name ({', '.join(bundled_prompt_sets())}), a file, "
                "nor a template with {} where the label goes"
            )
        data = _read_json(path.read_text(encoding="utf-8"), str(path))
        templates = data.get("templates", [])
        if not isinstance(templates, list) or not all(isinstance(t, str) for t in templates):
            raise ValueError(f"{path}: 'templates' must be a list of strings")
        base = PromptSet(tuple(templates), _validate_descriptions(data, str(path)), name=data.get("name", path.stem))
    else:
        base = PromptSet(tuple(spec), {}, name="custom")

    if descriptions is not None:
        if isinstance(descriptions, Mapping):
            extra = _validate_descriptions({"descriptions": dict(descriptions.get("descriptions", descriptions))}, "dict")
        elif isinstance(descriptions, str) and descriptions in bundled_prompt_sets():
            extra = load_prompt_set(descriptions).descriptions
        else:
            path = Path(descriptions)
            if not path.is_file():
                raise FileNotFoundError(f"description set {str(descriptions)!r} not found")
            extra = _validate_descriptions(_read_json(path.read_text(encoding="utf-8"), str(path)), str(path))
        base = PromptSet(base.templates, extra, name=base.name, use_descriptions=True)
    return base
