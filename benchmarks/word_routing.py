"""How well all-MiniLM-L6-v2 alone puts an emotion word with its class: the word bridge's ceiling.

Not a test: a measurement for the open-vocabulary issue (docs/labels.md, "Words outside the taxonomy"). For each
word of the tuning list (``openvocab-tune``; the report lists are never read) and, with ``--nrc``, each
single-word entry of the NRC Emotion Lexicon that names exactly one of the six basic emotions FER+ shares (minus
every taxonomy word and every word of the shipped lists), the emotion whose taxonomy names are closest in the
encoder's space is taken as the word's class (FER+'s 8 classes only); the balanced accuracy over classes is
printed per sentence template and per way of pooling a class's names, then for WordNet's links
(:mod:`emocap.word_lexicon`, as the bridge uses them: up to its depth, the encoder's "face best" route for words
WordNet does not link to one of the 8 classes) with the share of words WordNet decides. It also prints the
words-alone closeness (the best cosine with any emotion name, no template) that a gate on the words alone would read, for the tuning
words and for ``--words``. Usage (from the repo root; under a minute)::

    OMP_NUM_THREADS=2 python benchmarks/word_routing.py [--nrc nrc_en.json] [--words quux table]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from emocap import taxonomy, word_lexicon
from emocap.sentence_encoder import SentenceEncoder
from emocap.vocabularies import bundled_vocabularies, load_vocabulary
from emocap.word_bridge import LEXICON_MAX_DEPTH

TEMPLATES = {"word": "{}", "feel": "I feel {}", "face": "a face that looks {}"}
NRC_TO_CLASS = {"joy": "happiness", "anger": "anger", "disgust": "disgust", "fear": "fear", "sadness": "sadness",
                "surprise": "surprise"}


def balanced_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return 100 * float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nrc", default=None, help="NRC Emotion Lexicon JSON (nrc_en.json of the NRCLex wheel)")
    p.add_argument("--words", nargs="*", default=["quux", "table", "pain", "boredom"])
    args = p.parse_args()
    classes = [taxonomy.canonical(n) for n in taxonomy.label_set("ferplus8")]
    names = taxonomy.names_by_emotion()
    anchors = [(n, i) for i, c in enumerate(classes) for n in names[c]]
    owner = np.array([i for _, i in anchors])
    tune = load_vocabulary("openvocab-tune")
    sets = {"openvocab-tune": [(w, classes.index(c)) for c, ws in tune.classes.items() for w in ws]}
    if args.nrc:
        held = {n.lower() for ns in names.values() for n in ns}
        held |= {w.lower() for v in bundled_vocabularies() for ws in load_vocabulary(v).classes.values() for w in ws}
        entries = json.loads(open(args.nrc, encoding="utf-8").read())
        nrc = []
        for word, emotions in entries.items():
            found = {NRC_TO_CLASS[e] for e in emotions if e in NRC_TO_CLASS}
            if len(found) == 1 and word.isalpha() and word.lower() not in held:
                nrc.append((word, classes.index(found.pop())))
        sets[f"NRC single-emotion words ({len(nrc)})"] = nrc
    enc = SentenceEncoder()
    print("template pooling | " + " | ".join(sets))
    for key, template in TEMPLATES.items():
        anchor_vecs = enc.encode([template.format(n) for n, _ in anchors])
        for pooling in ("best", "top2", "centroid"):
            cells = []
            for words in sets.values():
                vecs = enc.encode([template.format(w) for w, _ in words])
                y = np.array([c for _, c in words])
                if pooling == "centroid":
                    cent = np.stack([anchor_vecs[owner == c].mean(0) for c in range(len(classes))])
                    scores = vecs @ (cent / np.linalg.norm(cent, axis=1, keepdims=True)).T
                else:
                    sims = vecs @ anchor_vecs.T
                    k = 1 if pooling == "best" else 2
                    scores = np.stack([np.sort(sims[:, owner == c], 1)[:, -k:].mean(1) for c in range(len(classes))], 1)
                cells.append(f"{balanced_accuracy(scores.argmax(1), y):.1f}")
            print(f"{key} {pooling} | " + " | ".join(cells))
    face = enc.encode([TEMPLATES["face"].format(n) for n, _ in anchors])
    cells = []
    for words in sets.values():
        sims = enc.encode([TEMPLATES["face"].format(w) for w, _ in words]) @ face.T
        pred = np.stack([sims[:, owner == c].max(1) for c in range(len(classes))], 1).argmax(1)
        linked = 0
        for n, (word, _) in enumerate(words):
            link = word_lexicon.lookup(word)
            weights = [link.emotions.get(c, 0.0) for c in classes] if link and link.depth <= LEXICON_MAX_DEPTH else []
            if sum(weights) > 0:
                pred[n], linked = int(np.argmax(weights)), linked + 1
        y = np.array([c for _, c in words])
        cells.append(f"{balanced_accuracy(pred, y):.1f} (WordNet decides {100 * linked / len(words):.0f}%)")
    print("WordNet, then face best | " + " | ".join(cells))
    all_names = [n for ns in names.values() for n in ns]
    name_vecs = enc.encode(all_names)
    tune_words = [w for w, _ in sets["openvocab-tune"]]
    best = (enc.encode(tune_words) @ name_vecs.T).max(1)
    print(f"words-alone closeness, tuning words: {best.min():.2f}-{best.max():.2f}")
    if args.words:
        best = (enc.encode(args.words) @ name_vecs.T).max(1)
        print("words-alone closeness: " + ", ".join(f"{w} {b:.2f}" for w, b in zip(args.words, best)))


if __name__ == "__main__":
    main()
