"""FER+ benchmark loaders (eval): ``ferplus`` (majority vote) and ``ferplus-soft`` (vote distributions).

Place in the flow: ``emocap.eval.registry`` names these functions; ``Benchmark.load`` imports and calls them.
The split is read by core's FER+ reader (:func:`emocap.readers.ferplus.ferplus_samples`: one sample per label
row, in label-file order, with its votes); the protocols here only select and label those samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from emocap import ferplus
from emocap.readers.ferplus import ferplus_samples, vote_tuple

from ..samples import BenchmarkData
from .common import reader_item

__all__ = ["load_ferplus", "load_ferplus_soft"]


def load_ferplus(root: Path, split: Optional[str]) -> BenchmarkData:
    """FER+ (``FER2013<Split>/`` folder or ``.tar`` with ``label.csv``) under the majority-vote protocol.

    Images whose votes have no clear emotion majority are excluded by the protocol (counted in ``info``, not
    reported as problems); malformed label rows are reported as problems.
    """
    fer = ferplus.FerPlusSplit(root, split or "test")
    rows = ferplus_samples(fer)
    samples = []
    for row in rows:
        label = ferplus.majority_label(vote_tuple(row))
        if label is not None:
            samples.append(reader_item(row, int(label)))
    info = {
        "protocol": "majority",
        "source": str(fer.source),
        "n_label_rows": len(rows),
        "n_excluded_by_protocol": len(rows) - len(samples),
    }
    return BenchmarkData(samples, list(ferplus.EMOTIONS), list(fer.problems), info, [fer.close])


def load_ferplus_soft(root: Path, split: Optional[str]) -> BenchmarkData:
    """FER+ under the soft-label protocol: every image with at least one emotion vote is kept.

    The sample label is the argmax of the 8 emotion votes (first class on ties) and ``soft_label`` holds the vote
    distribution over the 8 emotions (unknown and not-a-face votes dropped), so metrics can compare to the votes.
    """
    fer = ferplus.FerPlusSplit(root, split or "test")
    rows = ferplus_samples(fer)
    samples = []
    for row in rows:
        dist = ferplus.soft_label(vote_tuple(row))
        if dist is None:
            continue
        samples.append(reader_item(row, int(np.argmax(dist)), soft_label=tuple(float(x) for x in dist)))
    info = {
        "protocol": "soft-votes (label = argmax of the emotion votes)",
        "source": str(fer.source),
        "n_label_rows": len(rows),
        "n_excluded_by_protocol": len(rows) - len(samples),
        "excluded_reason": "no vote for any of the 8 emotions (only unknown / not-a-face)",
    }
    return BenchmarkData(samples, list(ferplus.EMOTIONS), list(fer.problems), info, [fer.close])
