"""Template writer: facts -> the three EmoCap caption parts (global, local, summary), offline and seeded.

Third step of the caption flow (evidence -> facts -> **writer** -> shards). Each fact has several phrasings and
several sentence shapes; a per-sample seed (from the run seed and the sample key) picks them, so a rerun gives the
same captions, while across a dataset the wording varies enough that a model cannot learn the template instead of
the face.

The emotion words used here are deliberately a subset of the taxonomy's synonyms: words such as "joy", "rage" or
"shock" never appear in template captions, so zero-shot tests with those names measure generalisation.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Dict, List, Optional, Sequence, Tuple

from .facs_knowledge import ACTION_UNITS, REGION_NAMES, intensity_word
from .facts import Facts

# emotion -> (nouns, adjectives) used in captions
CAPTION_WORDS: Dict[str, tuple] = {
    "neutral": (("neutrality", "a neutral state", "calm"), ("neutral", "calm", "expressionless", "relaxed")),
    "happiness": (("happiness", "pleasure", "cheerfulness"), ("happy", "pleased", "cheerful", "smiling")),
    "surprise": (("surprise", "astonishment", "amazement"), ("surprised", "astonished", "amazed")),
    "sadness": (("sadness", "sorrow", "unhappiness"), ("sad", "sorrowful", "unhappy", "downcast")),
    "anger": (("anger", "irritation", "annoyance"), ("angry", "irritated", "annoyed", "cross")),
    "disgust": (("disgust", "revulsion", "distaste"), ("disgusted", "repulsed", "revolted")),
    "fear": (("fear", "fright", "alarm"), ("fearful", "afraid", "scared", "alarmed")),
    "contempt": (("contempt", "disdain", "scorn"), ("contemptuous", "disdainful", "scornful")),
}

INTENSITY_PHRASES = {
    "high": ("a high-intensity", "a strong", "an unmistakable", "a clear, intense"),
    "moderate": ("a moderate", "a clear", "a noticeable", "a medium-intensity"),
    "low": ("a subtle", "a mild", "a faint", "a low-intensity"),
}

GLOBAL_SHAPES = (
    "{intensity} expression of {noun}",
    "a face showing {intensity_word} {noun}",
    "a {adj} face",
    "this person looks {adj}",
    "{intensity} {adj} facial expression",
    "a portrait of someone who appears {adj}",
)
SECONDARY_SHAPES = (
    "{base}, mixed with {noun2}",
    "{base}, with a hint of {noun2}",
    "{base} and a trace of {noun2}",
    "{base}; there is also some {noun2}",
)
AMBIGUOUS_SHAPES = (
    "an ambiguous expression between {noun} and {noun2}",
    "a face that could read as {adj} or {adj2}",
    "a mixed expression, partly {adj} and partly {adj2}",
)
LOCAL_SHAPES = (
    "{region_cap}: {behaviour} ({aus}).",
    "In the {region}, {behaviour}: {aus}.",
    "{behaviour_cap}, read as {aus}.",
    "{region_cap} - {behaviour}, {aus}.",
)
SUMMARY_SHAPES = (
    "Taken together, {evidence} {point} to {noun}.",
    "{evidence_cap} {make} the face read as {adj}.",
    "Overall the face expresses {noun}, shown by {evidence}.",
    "The combination of {evidence} is typical of {noun}.",
)
NEUTRAL_SUMMARIES = (
    "With no marked muscle activity in any region, the face reads as {adj}.",
    "The features are at rest, so the overall impression is {noun}.",
    "Nothing in the brows, eyes or mouth departs from rest: a {adj} face.",
)


_A_BEFORE_VOWEL = re.compile(r"\b([Aa]) (?=[aeiou])")


def _articles(text: str) -> str:
    """'a expressionless face' -> 'an expressionless face' (template slots are filled with either kind)."""
    return _A_BEFORE_VOWEL.sub(lambda m: m.group(1) + "n ", text)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def sample_rng(seed: int, key: str) -> random.Random:
    """A random generator for one sample, independent of processing order (so resumed runs match)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


class TemplateWriter:
    """Deterministic, varied template captions. ``write(facts, key)`` -> dict with global, local, summary."""

    name = "templates"

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def _emotion_words(self, rng: random.Random, emotion: str):
        nouns, adjs = CAPTION_WORDS.get(emotion, ((emotion,), (emotion,)))
        return rng.choice(nouns), rng.choice(adjs)

    def global_caption(self, facts: Facts, rng: random.Random) -> str:
        noun, adj = self._emotion_words(rng, facts.dominant)
        if facts.ambiguous and facts.secondary:
            noun2, adj2 = self._emotion_words(rng, facts.secondary[0])
            return rng.choice(AMBIGUOUS_SHAPES).format(noun=noun, noun2=noun2, adj=adj, adj2=adj2)
        intensity = rng.choice(INTENSITY_PHRASES[facts.intensity])
        base = rng.choice(GLOBAL_SHAPES).format(
            intensity=intensity, intensity_word=intensity.split(" ", 1)[1], noun=noun, adj=adj
        )
        if facts.secondary:
            noun2, _ = self._emotion_words(rng, facts.secondary[0])
            base = rng.choice(SECONDARY_SHAPES).format(base=base, noun2=noun2)
        return base

    def local_sentences(self, facts: Facts, rng: random.Random) -> List[str]:
        sentences = []
        for region, aus in facts.regions.items():
            region_name = rng.choice(REGION_NAMES[region])
            behaviours = [rng.choice(ACTION_UNITS[au][2]) for au in aus]
            behaviour = " and ".join(behaviours) if len(behaviours) < 3 else ", ".join(behaviours[:-1]) + " and " + behaviours[-1]
            readings = []
            for au in aus:
                fact = facts.aus[au]
                band = intensity_word(fact.intensity)
                style = rng.randrange(3)
                if style == 0:
                    readings.append(f"AU{au} {ACTION_UNITS[au][0]} at {band} intensity")
                elif style == 1:
                    readings.append(f"{ACTION_UNITS[au][0]} (AU{au}), {band}")
                else:
                    readings.append(f"a {band} AU{au}")
            aus_text = "; ".join(readings)
            if region == "mouth" and facts.face.get("teeth_visible"):
                behaviour += rng.choice((", with the teeth showing", ", baring the teeth", " and the teeth are visible"))
            shape = rng.choice(LOCAL_SHAPES)
            sentences.append(
                shape.format(
                    region=region_name, region_cap=_cap(f"the {region_name}"), behaviour=behaviour,
                    behaviour_cap=_cap(behaviour), aus=aus_text,
                )
            )
        if facts.face.get("eyes") == "closed" and "eyes" not in facts.regions:
            sentences.append(rng.choice(("The eyes are closed.", "Both eyelids are shut.", "The eyes are shut.")))
        rng.shuffle(sentences)
        return sentences

    def summary(self, facts: Facts, rng: random.Random) -> str:
        noun, adj = self._emotion_words(rng, facts.dominant)
        strongest = sorted(facts.aus.items(), key=lambda kv: -kv[1].intensity)[:3]
        if not strongest:
            return rng.choice(NEUTRAL_SUMMARIES).format(noun=noun, adj=adj)
        parts = [ACTION_UNITS[au][0] for au, _ in strongest]
        evidence = ("the " + parts[0]) if len(parts) == 1 else "the " + ", the ".join(parts[:-1]) + " and the " + parts[-1]
        single = len(parts) == 1
        text = rng.choice(SUMMARY_SHAPES).format(
            evidence=evidence, evidence_cap=_cap(evidence), noun=noun, adj=adj,
            point="points" if single else "point", make="makes" if single else "make",
        )
        if facts.ambiguous:
            text += rng.choice((" The annotators did not fully agree.", " The reading is uncertain.", " Opinions on it differ."))
        return text

    def write(self, facts: Facts, key: str, image: Optional[bytes] = None) -> Dict[str, object]:
        rng = sample_rng(self.seed, key)
        return {
            "global": _articles(self.global_caption(facts, rng)),
            "local": [_articles(s) for s in self.local_sentences(facts, rng)],
            "summary": _articles(self.summary(facts, rng)),
            "writer": self.name,
        }

    def write_many(self, items: Sequence[Tuple[Facts, str, Optional[bytes]]]) -> List[Dict[str, object]]:
        return [self.write(f, k, im) for f, k, im in items]
