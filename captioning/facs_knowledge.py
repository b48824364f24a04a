"""FACS knowledge used to turn emotions and action units into facts about face regions.

First step of the caption flow's knowledge side: action unit (AU) names and regions, plain-language readings of
each AU, and the prototypical AU sets of the basic emotions (EMFACS-style). Where a face brings no AU evidence,
the prototypes give *prior* AUs for the emotion the annotators saw, marked with ``source="prior"`` in the facts.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

# AU number -> (FACS name, region, plain-language phrasings of the visible behaviour)
ACTION_UNITS: Dict[int, Tuple[str, str, Tuple[str, ...]]] = {
    1: ("inner brow raiser", "brows", ("the inner corners of the brows are raised", "the inner brows lift upward")),
    2: ("outer brow raiser", "brows", ("the outer brows are raised", "the outer ends of the brows lift and arch")),
    4: ("brow lowerer", "brows", ("the brows are lowered and drawn together", "the brows knit into a frown")),
    5: ("upper lid raiser", "eyes", ("the upper eyelids are raised, widening the eyes", "the eyes are opened wide")),
    6: ("cheek raiser", "cheeks", ("the cheeks are raised, bunching the skin below the eyes", "the cheeks lift")),
    7: ("lid tightener", "eyes", ("the lower eyelids are tightened", "the eyes narrow as the lids tense")),
    9: ("nose wrinkler", "nose", ("the nose is wrinkled", "the skin along the nose scrunches up")),
    10: ("upper lip raiser", "mouth", ("the upper lip is raised", "the upper lip curls upward")),
    12: ("lip corner puller", "mouth", ("the lip corners are pulled up and back", "the mouth corners turn up")),
    14: ("dimpler", "mouth", ("the lip corners are tightened into dimples", "one lip corner tightens")),
    15: ("lip corner depressor", "mouth", ("the lip corners are pulled down", "the corners of the mouth sag")),
    17: ("chin raiser", "jaw", ("the chin is pushed up", "the chin boss wrinkles as it is raised")),
    20: ("lip stretcher", "mouth", ("the lips are stretched sideways", "the mouth is pulled wide and tense")),
    23: ("lip tightener", "mouth", ("the lips are tightened", "the lips narrow and tense")),
    24: ("lip pressor", "mouth", ("the lips are pressed together", "the lips are pressed firmly shut")),
    25: ("lips part", "mouth", ("the lips are parted", "the mouth is slightly open")),
    26: ("jaw drop", "jaw", ("the jaw drops open", "the jaw hangs open")),
    27: ("mouth stretch", "jaw", ("the mouth is stretched wide open", "the jaw is pulled far down")),
}

REGIONS: Tuple[str, ...] = ("brows", "eyes", "nose", "cheeks", "mouth", "jaw")
REGION_NAMES = {
    "brows": ("brows", "eyebrows", "brow region"),
    "eyes": ("eyes", "eye region", "eyelids"),
    "nose": ("nose", "nose region"),
    "cheeks": ("cheeks", "cheek region"),
    "mouth": ("mouth", "lips", "mouth region"),
    "jaw": ("jaw", "chin and jaw", "lower face"),
}

# Prototypical AUs per emotion with a typical intensity on a 0..1 scale (EMFACS-style prototypes).
EMOTION_PROTOTYPES: Dict[str, Dict[int, float]] = {
    "happiness": {6: 0.8, 12: 0.9, 25: 0.5},
    "sadness": {1: 0.7, 4: 0.5, 15: 0.7, 17: 0.4},
    "surprise": {1: 0.8, 2: 0.8, 5: 0.7, 25: 0.6, 26: 0.7},
    "fear": {1: 0.7, 2: 0.6, 4: 0.5, 5: 0.8, 20: 0.6, 25: 0.5},
    "anger": {4: 0.9, 5: 0.4, 7: 0.7, 23: 0.7, 24: 0.4},
    "disgust": {9: 0.8, 10: 0.7, 15: 0.4, 17: 0.3},
    "contempt": {12: 0.3, 14: 0.7},
    "neutral": {},
}

# The FACS prototypes of the basic emotions that evidence is checked against (EMFACS, as commonly tabulated:
# happiness 6+12, sadness 1+4+15, surprise 1+2+5+26, fear 1+2+4+5+20+26, anger 4+5+7+23, disgust 9+15(+16),
# contempt R12A+R14A). AU16 (lower lip depressor) is not measured and is left out; contempt keeps only AU14,
# since its AU12 is one-sided and a symmetric smile must not count for it. A caption's summary says the face
# supports its label only when a measured active AU is in the label's set (``facts.prototype_seen``).
PROTOTYPE_AUS: Dict[str, Tuple[int, ...]] = {
    "happiness": (6, 12),
    "sadness": (1, 4, 15),
    "surprise": (1, 2, 5, 26),
    "fear": (1, 2, 4, 5, 20, 26),
    "anger": (4, 5, 7, 23),
    "disgust": (9, 15),
    "contempt": (14,),
    "neutral": (),
}

# Upper/lower-face AU co-occurrence priors (pairs that usually appear together), used to fill or check gaps.
CO_OCCURRENCE: Tuple[Tuple[int, int], ...] = ((1, 2), (6, 12), (9, 10), (25, 26), (4, 7), (1, 4), (15, 17), (23, 24))


def intensity_word(value: float) -> str:
    """Band of a *measured* AU's 0..1 intensity (landmark estimate or annotation), as a word. Prior AUs (from
    the label's prototype) get no band: their strength is not evidence about the face."""
    if value >= 0.8:
        return "high"
    if value >= 0.5:
        return "moderate"
    return "slight"


def aus_for_region(aus: Dict[int, float], region: str) -> List[Tuple[int, float]]:
    """AUs of ``aus`` that belong to ``region``, strongest first."""
    items = [(au, v) for au, v in aus.items() if au in ACTION_UNITS and ACTION_UNITS[au][1] == region]
    return sorted(items, key=lambda kv: (-kv[1], kv[0]))
