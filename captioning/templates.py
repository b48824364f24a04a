"""Template writer: facts -> the three EmoCap caption parts (global, local, summary), offline and seeded.

Third step of the caption flow (evidence -> facts -> **writer** -> shards). Each fact has several phrasings and
several sentence shapes; a per-sample seed (from the run seed and the sample key) picks them, so a rerun gives the
same captions, while across a dataset the wording varies enough that a model cannot learn the template instead of
the face.

What a caption may claim follows the facts: an intensity word ("strong", "mild", ...) only when the emotion
evidence is graded (votes, soft scores; ``facts.intensity`` is None for a single hard label); a summary ties the
face to its label ("point to", "shown by", "typical of") only through measured AUs of the label's FACS prototype
(``facts.prototype_seen``); otherwise it names the label and what is seen side by side. AUs that come from the
label's prototype (``prior``) carry no intensity band and are said to be expected, not measured.

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

BEHAVIOUR_ADJECTIVES = {"smiling": 12}  # adjectives that name a visible AU: unused when that AU was measured at rest

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
PLAIN_GLOBAL_SHAPES = (  # a single hard label: which emotion, never how strongly
    "a face showing {noun}",
    "a {adj} face",
    "this person looks {adj}",
    "a portrait of someone who appears {adj}",
    "a {adj} facial expression",
)
# The face shows AUs of the label's FACS prototype: the evidence named is that part, and it may support the label.
SUPPORTED_SUMMARIES = (
    "Taken together, {evidence} {point} to {noun}.",
    "{evidence_cap} {make} the face read as {adj}.",
    "Overall the face expresses {noun}, shown by {evidence}.",
    "{evidence_cap} {is} typical of {noun}.",
)
# Measured AUs, none of them in the label's prototype: the label and what is seen, side by side, no causal link.
UNSUPPORTED_SUMMARIES = (
    "The label is {label}; the face shows {evidence}.",
    "A face labelled {adj}, with {evidence}.",
    "Labelled {adj}; what the face shows is {evidence}.",
)
UNSEEN_SENTENCES = (
    " {unseen_cap}, typical of {noun}, {is_not} seen.",
    " The usual signs of {noun}, {unseen}, {are_not} visible.",
)
# No measurement at all (``--face-analysis none``): the AUs come from the label's prototype, said as such.
PRIOR_SUMMARIES = (
    "Labelled {adj}; {evidence} {is} typical of {noun}, not measured on this face.",
    "The label is {label}, which usually shows as {evidence}.",
)
QUIET_SUMMARIES = (  # a non-neutral label on a face with no active AU
    "The label is {label}, though no region departs clearly from rest.",
    "A face labelled {adj}, with the features near rest.",
)
NEUTRAL_SUMMARIES = (
    "With no marked muscle activity in any region, the face reads as {adj}.",
    "The features are at rest, so the overall impression is {noun}.",
    "Nothing in the brows, eyes or mouth departs from rest: a {adj} face.",
)
PRIOR_READINGS = ("AU{au} {name}, from the label, not measured", "{name} (AU{au}), expected for the label",
                  "an expected AU{au} (not measured)")


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


def _evidence_slots(aus, chosen) -> Dict[str, str]:
    """Template slots naming up to three of ``chosen`` AUs (strongest first): "the jaw drop and the lips part"."""
    strength = {au: (aus[au].intensity if aus.get(au) is not None else 0.0) for au in chosen}
    top = sorted(chosen, key=lambda au: (-strength[au], au))[:3]
    parts = [ACTION_UNITS[au][0] for au in top]
    evidence = ("the " + parts[0]) if len(parts) == 1 else "the " + ", the ".join(parts[:-1]) + " and the " + parts[-1]
    single = len(parts) == 1
    return {"evidence": evidence, "evidence_cap": _cap(evidence), "point": "points" if single else "point",
            "make": "makes" if single else "make", "is": "is" if single else "are"}


class TemplateWriter:
    """Deterministic, varied template captions. ``write(facts, key)`` -> dict with global, local, summary."""

    name = "templates"

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def _emotion_words(self, rng: random.Random, emotion: str, facts: Optional[Facts] = None):
        nouns, adjs = CAPTION_WORDS.get(emotion, ((emotion,), (emotion,)))
        if facts is not None and emotion == facts.dominant:  # "smiling" only where a smile was not measured absent
            adjs = tuple(a for a in adjs if BEHAVIOUR_ADJECTIVES.get(a) not in facts.prototype_unseen) or adjs
        return rng.choice(nouns), rng.choice(adjs)

    def global_caption(self, facts: Facts, rng: random.Random) -> str:
        noun, adj = self._emotion_words(rng, facts.dominant, facts)
        if facts.ambiguous and facts.secondary:
            noun2, adj2 = self._emotion_words(rng, facts.secondary[0])
            return rng.choice(AMBIGUOUS_SHAPES).format(noun=noun, noun2=noun2, adj=adj, adj2=adj2)
        if facts.intensity is None:  # a single hard label: no intensity word
            base = rng.choice(PLAIN_GLOBAL_SHAPES).format(noun=noun, adj=adj)
            if facts.secondary:
                noun2, _ = self._emotion_words(rng, facts.secondary[0])
                base = rng.choice(SECONDARY_SHAPES).format(base=base, noun2=noun2)
            return base
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
                if fact.source == "prior":  # from the label's prototype: no band, said to be expected
                    readings.append(PRIOR_READINGS[style].format(au=au, name=ACTION_UNITS[au][0]))
                elif style == 0:
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
        """The label and the evidence: support only from measured prototype AUs (``facts.prototype_seen``)."""
        noun, adj = self._emotion_words(rng, facts.dominant, facts)
        label = facts.dominant  # "The label is ..." names the label itself, never a synonym of it
        measured = {au: f for au, f in facts.aus.items() if f.source != "prior"}
        if not facts.aus:
            shapes = NEUTRAL_SUMMARIES if facts.dominant == "neutral" else QUIET_SUMMARIES
            return rng.choice(shapes).format(noun=noun, adj=adj, label=label)
        if not measured:
            text = rng.choice(PRIOR_SUMMARIES).format(**_evidence_slots(facts.aus, list(facts.aus)), noun=noun, adj=adj,
                                                      label=label)
        elif facts.prototype_seen:
            text = rng.choice(SUPPORTED_SUMMARIES).format(
                **_evidence_slots(facts.aus, facts.prototype_seen), noun=noun, adj=adj)
            others = [au for au in measured if au not in facts.prototype_seen]
            if others:
                slots = _evidence_slots(facts.aus, others)
                text += f" {slots['evidence_cap']} {slots['is']} also seen."
        else:
            text = rng.choice(UNSUPPORTED_SUMMARIES).format(**_evidence_slots(facts.aus, list(measured)), noun=noun,
                                                            adj=adj, label=label)
            if facts.prototype_unseen:
                slots = _evidence_slots({au: None for au in facts.prototype_unseen}, facts.prototype_unseen)
                text += rng.choice(UNSEEN_SENTENCES).format(
                    unseen=slots["evidence"], unseen_cap=slots["evidence_cap"], noun=noun,
                    is_not=slots["is"] + " not", are_not=slots["is"] + " not")
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
