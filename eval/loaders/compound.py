"""FER+ compound benchmark (``ferplus-compound``): images whose annotators split between two emotions.

Flow: ``emocap eval --benchmark ferplus-compound --root DIR`` -> :func:`load_ferplus_compound` (core's FER+
reader, :mod:`emocap.readers.ferplus`: label.csv votes -> :func:`compound_pair` per image -> pairs with enough
images) -> the usual zero-shot harness (:mod:`emocap.eval.zeroshot`), with one class per emotion pair named by a
compound phrase ("happy and surprised").

The rule (``docs/eval.md``, "Compound test"), on the 8 emotion vote columns only (``unknown`` and ``NF`` votes
are ignored):

1. rank the 8 emotions by votes; the two top-voted each hold at least ``min_votes`` (3) votes and together at
   least ``min_share`` (70%) of the image's emotion votes;
2. the pair must be unambiguous: the third-ranked emotion has fewer votes than the second;
3. the class is the unordered pair; pairs with fewer than ``min_images`` (10) images in the split are dropped
   (listed in the result's ``benchmark_info``).

Class names are ``phrase`` (default ``"{a} and {b}"``) filled with the taxonomy adjectives of the two emotions
in FER+ column order (:func:`emocap.taxonomy.display_name`): ``"happy and surprised"``, ``"sad and angry"``.
``--option phrase=...`` or ``--class-names`` choose other names. Loader options: ``min_votes``, ``min_share``,
``min_images``, ``phrase``.

Classes depend on the split's votes, so probes (train split -> test split) refuse this benchmark when the two
splits end up with different pairs; it is meant for zero-shot.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from emocap import ferplus, taxonomy
from emocap.readers.ferplus import ferplus_samples, vote_tuple

from ..samples import BenchmarkData
from .common import option_int, reader_item

__all__ = ["compound_pair", "pair_name", "load_ferplus_compound", "MIN_VOTES", "MIN_SHARE", "MIN_IMAGES",
           "PHRASE"]

MIN_VOTES = 3
MIN_SHARE = 0.7
MIN_IMAGES = 10
PHRASE = "{a} and {b}"


def compound_pair(votes: Sequence[float], min_votes: int = MIN_VOTES,
                  min_share: float = MIN_SHARE) -> Optional[Tuple[int, int]]:
    """The emotion pair ``(i, j)`` (indices into :data:`emocap.ferplus.EMOTIONS`, ``i < j``) an image's votes split
    between, or None.

    ``votes`` are the 10 FER+ counts (or just the 8 emotion counts); unknown / not-a-face votes are ignored.
    """
    v = np.asarray(votes, dtype=np.float64)[: len(ferplus.EMOTIONS)]
    total = v.sum()
    if total <= 0:
        return None
    order = np.argsort(-v, kind="stable")
    first, second, third = (float(v[k]) for k in order[:3])
    if second < min_votes or first + second < min_share * total - 1e-9:
        return None
    if third == second:  # the second place is shared: no single pair
        return None
    i, j = sorted(int(k) for k in order[:2])
    return i, j


def pair_name(pair: Tuple[int, int], phrase: str = PHRASE) -> str:
    """The class name of an emotion pair: ``phrase`` with ``{a}`` / ``{b}`` the adjectives in FER+ column order."""
    a, b = (taxonomy.display_name(ferplus.EMOTIONS[k], "adjective") for k in pair)
    return phrase.format(a=a, b=b)


def _option_float(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"option {name} must be a number, got {value!r}") from None
    if not 0.0 < number <= 1.0:
        raise ValueError(f"option {name} must be in (0, 1], got {number}")
    return number


def load_ferplus_compound(root: Path, split: Optional[str], min_votes=MIN_VOTES, min_share=MIN_SHARE,
                          min_images=MIN_IMAGES, phrase: str = PHRASE) -> BenchmarkData:
    """FER+ images whose votes split between two emotions, one class per emotion pair (see the module docstring).

    Classes are in FER+ column order of the pairs (``(neutral, happiness)`` first); ``info`` holds the rule,
    ``pairs`` (class name -> images) and ``pairs_dropped`` (pairs under ``min_images``).
    """
    min_votes = option_int(min_votes, "min_votes")
    min_share = _option_float(min_share, "min_share")
    min_images = option_int(min_images, "min_images")
    if "{a}" not in str(phrase) or "{b}" not in str(phrase):
        raise ValueError(f"option phrase must contain {{a}} and {{b}}, got {phrase!r}")
    fer = ferplus.FerPlusSplit(root, split or "test")
    found = [(row, compound_pair(vote_tuple(row), min_votes, min_share)) for row in ferplus_samples(fer)]
    counts = Counter(pair for _, pair in found if pair is not None)
    kept = sorted(pair for pair, n in counts.items() if n >= min_images)
    names = [pair_name(pair, phrase) for pair in kept]
    if len(set(names)) != len(names):
        raise ValueError(f"option phrase {phrase!r} gives two pairs the same name")
    index = {pair: k for k, pair in enumerate(kept)}
    samples = [reader_item(row, index[pair]) for row, pair in found if pair in index]
    if not samples:
        fer.close()
        raise ValueError(f"ferplus-compound: no emotion pair of {fer.source} has {min_images} images under the rule "
                         f"(pairs found: {dict((pair_name(p), n) for p, n in counts.items()) or 'none'})")
    pairs: Dict[str, int] = {name: counts[pair] for name, pair in zip(names, kept)}
    dropped = {pair_name(p, phrase): n for p, n in sorted(counts.items()) if n < min_images}
    info = {
        "protocol": f"compound: the two top-voted of the 8 emotions each hold >= {min_votes} votes and together "
                    f">= {min_share:.0%} of the emotion votes (unknown/NF ignored, no tie for second place); "
                    f"class = the unordered pair; pairs with >= {min_images} images",
        "rule": {"min_votes": min_votes, "min_share": min_share, "min_images": min_images, "phrase": phrase},
        "source": str(fer.source),
        "n_label_rows": len(fer.records),
        "n_excluded_by_protocol": len(fer.records) - len(samples),
        "pairs": pairs,
        "pairs_dropped": dropped,
    }
    return BenchmarkData(samples, names, list(fer.problems), info, [fer.close])

