"""Base of the language-model caption writers: the facts prompt, output parsing and validation, template fallback.

Third step of the caption flow (evidence -> facts -> **writer** -> shards). Every writer has
``write(facts, key, image=None) -> {"global", "local", "summary", "writer"}`` and ``write_many(items)``.

:class:`ModelWriter` is the shared base of the language-model writers (``llm_local.py``: transformers LLM/VLM;
``endpoint.py``: an OpenAI-compatible chat endpoint); they import this module, and ``writers.py`` (which picks a
writer by kind) imports them, so no import runs in a circle. It puts the facts into a prompt that forbids inventing
behaviour the facts do not contain, asks for a JSON object with the three parts, and validates the answer:
parts present, length limits, no emotion named in the global caption or summary that contradicts the dominant
one. Anything invalid (or a failed call) falls back to the template writer; the returned captions then carry
``writer="templates"`` and ``fallback_reason``, which the shard sidecars count and record.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

from emocap import taxonomy

from .facs_knowledge import ACTION_UNITS
from .facts import Facts
from .templates import TemplateWriter

MAX_GLOBAL_CHARS = 200
MAX_LOCAL_CHARS = 250
MAX_SUMMARY_CHARS = 400
MAX_LOCAL_SENTENCES = 8

SYSTEM_PROMPT = (
    "You write captions for a facial expression dataset. You are given FACTS about one face as JSON. "
    "Describe only what the facts state: do not invent expressions, movements, objects, age, gender, identity "
    "or context that the facts do not contain. Answer with one JSON object and nothing else, with the keys "
    '"global" (one sentence naming the dominant emotion, and its intensity only when the facts give one: an '
    'intensity of null means a single hard label, so use no intensity word; at most 200 characters), "local" '
    "(a list with one sentence per face region listed under regions: the visible behaviour in plain language, "
    'then the action unit reading, e.g. "AU12 lip corner puller, moderate"; an AU with source prior was not '
    'measured, say it is expected) and "summary" (one or two sentences, at most 400 characters: say that the '
    "face supports the emotion only through the AUs under label_prototype_aus_seen; when that list is empty, "
    "name the emotion and what is seen side by side without saying one shows or points to the other). Mention "
    "no emotion other than the dominant one and the listed secondary ones."
)


class WriterError(RuntimeError):
    """A model writer's call failed or its output was invalid (the message is the recorded reason)."""


def facts_for_prompt(facts: Facts) -> dict:
    """The part of the facts a model writer sees: emotions, active AUs with names and sources, region states."""
    out = {
        "dominant_emotion": facts.dominant,
        "secondary_emotions": list(facts.secondary),
        "intensity": facts.intensity,
        "annotator_agreement": round(facts.agreement, 2),
        "ambiguous": facts.ambiguous,
        "action_units": [
            {"au": f"AU{au}", "name": ACTION_UNITS[au][0], "region": ACTION_UNITS[au][1],
             "intensity": round(f.intensity, 2), "source": f.source}
            for au, f in sorted(facts.aus.items()) if au in ACTION_UNITS
        ],
        "regions": {r: facts.region_states.get(r, "active") for r in facts.regions},
        "label_prototype_aus_seen": [f"AU{au}" for au in facts.prototype_seen],
        "label_prototype_aus_not_seen": [f"AU{au}" for au in facts.prototype_unseen],
    }
    if facts.region_states:
        out["region_states"] = dict(facts.region_states)
    if facts.face:
        out["face"] = {k: facts.face[k] for k in ("eyes", "mouth_open", "teeth_visible", "head_pose") if k in facts.face}
    if facts.affect:
        out["valence_arousal"] = dict(facts.affect)
    return out


def build_messages(facts: Facts) -> List[Dict[str, str]]:
    """Chat messages (system + user) asking for the three caption parts of ``facts``."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "FACTS: " + json.dumps(facts_for_prompt(facts), sort_keys=True)},
    ]


def _emotion_words() -> Dict[str, str]:
    """word -> canonical emotion, for the contradiction check (single words only, longest first)."""
    index: Dict[str, str] = {}
    for emotion in taxonomy.label_set("basic8"):
        for word in taxonomy.synonyms(emotion):
            if " " not in word and len(word) > 3:
                index[word.lower()] = emotion
    return index


_WORDS = _emotion_words()
_WORD_RE = re.compile(r"[a-z]+")


def emotions_named(text: str) -> set:
    """Canonical emotions that ``text`` names through a taxonomy synonym."""
    return {_WORDS[w] for w in _WORD_RE.findall(text.lower()) if w in _WORDS}


def first_json(text: str, opener: str = "{"):
    """The first JSON value in ``text`` that starts with ``opener`` (models wrap answers in chatter)."""
    what = "object" if opener == "{" else "list"
    start = text.find(opener)
    if start < 0:
        raise WriterError(f"no JSON {what} in the output")
    try:
        return json.JSONDecoder().raw_decode(text[start:])[0]
    except json.JSONDecodeError as e:
        raise WriterError(f"output is not a valid JSON {what} ({e.msg})") from None


def parse_captions(text: str) -> Dict[str, object]:
    """The first JSON object in ``text`` with global / local / summary; raises WriterError otherwise."""
    obj = first_json(text, "{")
    if not isinstance(obj, dict):
        raise WriterError("output JSON is not an object")
    missing = [k for k in ("global", "local", "summary") if k not in obj]
    if missing:
        raise WriterError(f"output lacks {', '.join(missing)}")
    local = obj["local"]
    if isinstance(local, str):
        local = [local]
    if not isinstance(local, list) or not all(isinstance(s, str) for s in local):
        raise WriterError("'local' is not a list of sentences")
    if not isinstance(obj["global"], str) or not isinstance(obj["summary"], str):
        raise WriterError("'global' and 'summary' must be strings")
    return {"global": obj["global"].strip(), "local": [s.strip() for s in local if s.strip()], "summary": obj["summary"].strip()}


def validate_captions(captions: Dict[str, object], facts: Facts) -> None:
    """Raise WriterError when captions are empty, too long, or name an emotion the facts do not support."""
    g, local, summary = captions["global"], captions["local"], captions["summary"]
    if not g or not summary:
        raise WriterError("empty global caption or summary")
    if len(g) > MAX_GLOBAL_CHARS:
        raise WriterError(f"global caption longer than {MAX_GLOBAL_CHARS} characters")
    if len(summary) > MAX_SUMMARY_CHARS:
        raise WriterError(f"summary longer than {MAX_SUMMARY_CHARS} characters")
    if facts.regions and not local:
        raise WriterError("no local sentence although regions are active")
    if len(local) > MAX_LOCAL_SENTENCES or any(len(s) > MAX_LOCAL_CHARS for s in local):
        raise WriterError(f"local sentences: at most {MAX_LOCAL_SENTENCES}, each at most {MAX_LOCAL_CHARS} characters")
    allowed = {facts.dominant, *facts.secondary}
    for part, text in (("global caption", g), ("summary", summary)):
        wrong = emotions_named(text) - allowed
        if wrong:
            raise WriterError(f"{part} names {', '.join(sorted(wrong))}, contradicting the dominant emotion {facts.dominant}")
    if facts.dominant not in emotions_named(g + " " + summary) and facts.dominant != "neutral":
        raise WriterError(f"neither the global caption nor the summary names the dominant emotion {facts.dominant}")


class ModelWriter:
    """Base of the language-model writers: prompt, parse, validate, fall back to templates (recorded)."""

    name = "model"

    def __init__(self, fallback: Optional[TemplateWriter] = None, concurrency: int = 1, uses_image: bool = False):
        self.fallback = fallback or TemplateWriter(seed=0)
        self.concurrency = max(1, int(concurrency))
        self.uses_image = uses_image

    def generate(self, messages: List[Dict[str, str]], image: Optional[bytes] = None) -> str:
        raise NotImplementedError

    def write(self, facts: Facts, key: str, image: Optional[bytes] = None) -> Dict[str, object]:
        try:
            text = self.generate(build_messages(facts), image if self.uses_image else None)
            captions = parse_captions(text)
            validate_captions(captions, facts)
            return {**captions, "writer": self.name}
        except WriterError as e:
            reason = str(e)
        except Exception as e:  # a model or network failure must not stop the run: fall back, recorded
            reason = f"{type(e).__name__}: {e}"
        out = self.fallback.write(facts, key)
        out["fallback_reason"] = f"{self.name}: {reason}"[:300]
        return out

    def write_many(self, items: Sequence[Tuple[Facts, str, Optional[bytes]]]) -> List[Dict[str, object]]:
        if self.concurrency == 1 or len(items) < 2:
            return [self.write(f, k, im) for f, k, im in items]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda it: self.write(*it), items))
