"""Does a class prior help photos? Post-hoc logit adjustment of the embedded default, a probe for a training recipe.

Not a test: a measurement for the faces-in-the-wild issue (docs/faces.md, "Not done yet"). The default reads many
in-the-wild faces as neutral, and FER+ train (its only data) is about a third neutral. Logit adjustment subtracts
``tau * log(prior)`` (FER+ train's majority-label shares) from each class's log-probability; if it moved photos
without costing FER+, a prior at training time (logit-adjusted loss) would be worth a retrain. Scored, for each
``tau``: FER+ valid and test (8 classes, the classifier's own run) and faces-wild-dev (its 5 classes with enough
images, faces framed as ``emocap classify`` frames them with no flags; photos with no face found are left out and
counted). Usage (from the repo root; a few minutes, most of it face detection)::

    OMP_NUM_THREADS=2 python benchmarks/class_prior_probe.py --ferplus ../shared/data/ferplus \\
        --photos ../shared/data/faces-wild-dev
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
from onnx_speed import ferplus_split

from emocap import ZeroShotClassifier
from emocap.ferplus import EMOTIONS, FerPlusSplit
from emocap.metrics import war_uar

PHOTO_CLASSES = ["anger", "happiness", "neutral", "sadness", "surprise"]


def train_prior(root: str) -> np.ndarray:
    """FER+ train's majority-label shares, in EMOTIONS order."""
    data = FerPlusSplit(root, "train")
    try:
        counts = Counter(label for _, label in data.majority())
    finally:
        data.close()
    shares = np.array([counts.get(i, 0) for i in range(len(EMOTIONS))], dtype=np.float64)
    return shares / shares.sum()


def photo_rows(root: Path) -> list:
    """faces-wild-dev's labels.csv rows (``file``, ``label``, ...) of the PHOTO_CLASSES, in file order."""
    with open(root / "labels.csv", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["label"] in PHOTO_CLASSES]


def photo_probs(root: Path):
    """faces-wild-dev: probabilities over PHOTO_CLASSES for each photo's main face, labels, photos without a face."""
    rows = photo_rows(root)
    clf = ZeroShotClassifier.from_pretrained(labels=PHOTO_CLASSES)
    faces = clf.predict_faces([str(root / r["file"]) for r in rows], no_face="empty")
    probs, labels, missed = [], [], 0
    for row, found in zip(rows, faces):
        if not found:
            missed += 1
            continue
        scores = {p["label"]: p["score"] for p in found[0]["predictions"]}
        probs.append([scores[c] for c in PHOTO_CLASSES])
        labels.append(PHOTO_CLASSES.index(row["label"]))
    return np.array(probs), np.array(labels), missed


def adjusted(probs: np.ndarray, log_prior: np.ndarray, tau: float) -> np.ndarray:
    return (np.log(np.clip(probs, 1e-12, None)) - tau * log_prior).argmax(axis=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ferplus", default="../shared/data/ferplus")
    p.add_argument("--photos", default="../shared/data/faces-wild-dev")
    p.add_argument("--taus", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    p.add_argument("--out", default=None)
    args = p.parse_args()
    prior = train_prior(args.ferplus)
    clf = ZeroShotClassifier.from_pretrained(labels=list(EMOTIONS))
    sets = {}
    for split in ("valid", "test"):
        images, labels = ferplus_split(args.ferplus, split)
        sets[f"ferplus-{split}"] = (np.asarray(clf.predict_proba(images, batch_size=64)), labels, np.log(prior))
    probs, labels, missed = photo_probs(Path(args.photos))
    photo_prior = prior[[list(EMOTIONS).index(c) for c in PHOTO_CLASSES]]
    sets["faces-wild-dev"] = (probs, labels, np.log(photo_prior / photo_prior.sum()))
    out = {"prior": dict(zip(EMOTIONS, prior.round(4).tolist())), "photos_without_face": missed, "rows": []}
    print(f"FER+ train prior: {out['prior']}; faces-wild-dev photos without a face: {missed}")
    print("tau   " + "  ".join(f"{name:>22}" for name in sets))
    for tau in args.taus:
        row = {"tau": tau}
        cells = []
        for name, (pr, y, log_prior) in sets.items():
            m = war_uar(adjusted(pr, log_prior, tau), y)
            row[name] = {"war": 100 * m["war"], "uar": 100 * m["uar"]}
            cells.append(f"WAR {100 * m['war']:5.2f} UAR {100 * m['uar']:5.2f}")
        out["rows"].append(row)
        print(f"{tau:<5} " + "  ".join(f"{c:>22}" for c in cells), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
