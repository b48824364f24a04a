"""How the word bridge's settings were chosen: a grid on FER+ valid with the tuning lists only.

Not a test: the search behind :mod:`emocap.word_bridge` (docs/labels.md, "Words outside the taxonomy"). The
embedded default's image features of FER+ valid are computed once; for each setting, the tuning word list
(``openvocab-tune``, its rounds) and the tuning phrase list (``behaviour-phrases-tune``) are scored zero-shot with
text features made as the bridge makes them, beside the own text tower alone and the canonical names. The report
lists are never read. Settings: the sentence template, closeness as the best name or the mean of the two best,
the softmax temperature, the own tower's least share and the gate (the template its closeness is measured in, and
the best closeness where bridging starts and where it is full). Usage (from the repo root; about a minute)::

    OMP_NUM_THREADS=2 python benchmarks/word_bridge_search.py --root ../shared/data/ferplus
"""

from __future__ import annotations

import argparse
import itertools
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from emocap import ZeroShotClassifier, taxonomy
from emocap.metrics import war_uar
from emocap.sentence_encoder import shared_sentence_encoder
from emocap.train.validation import Validator
from emocap.vocabularies import class_words, load_vocabulary, round_names
from emocap.word_bridge import WordBridge

TEMPLATES = {"word": "{}", "feel": "I feel {}", "face": "a face that looks {}", "expression": "a {} facial expression"}
#: (template the gate compares in, (closeness where bridging starts, where it is full)) pairs tried
GATES = [("word", (0.35, 0.5)), ("word", (0.4, 0.55)), ("word", (0.45, 0.6)), ("face", (0.65, 0.8)),
         ("face", (0.7, 0.8)), ("expression", (0.7, 0.8))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="../shared/data/ferplus")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    clf = ZeroShotClassifier.from_pretrained(word_bridge=False)
    em = clf.model
    labels = [taxonomy.canonical(n) for n in taxonomy.label_set("ferplus8")]
    val = Validator(args.root, "valid", em.image_size, True, labels)
    with torch.no_grad():
        images = val.image_features(em.clip, em.preprocess_cfg["mean"], em.preprocess_cfg["std"]).float()
    bridge = WordBridge(encoder=lambda texts: None)
    emotion_feats = clf.class_text_features(bridge.emotions).float()
    encoder = shared_sentence_encoder()
    owner = np.array([e for _, e in bridge._names])

    def uar(feats) -> float:
        pred = (images @ F.normalize(feats.float(), dim=-1).T).argmax(1).numpy()
        return 100 * war_uar(pred, val.targets)["uar"]

    rounds = {name: round_names(class_words(load_vocabulary(name), labels))
              for name in ("openvocab-tune", "behaviour-phrases-tune")}
    print(f"canonical names {uar(clf.class_text_features(labels)):.1f}; own tower alone: " + ", ".join(
        f"{name} {np.mean([uar(clf.class_text_features(r)) for r in rs]):.1f}" for name, rs in rounds.items()))

    def closeness(words, template, pool):
        names = encoder.encode([template.format(n) for n, _ in bridge._names])
        sims = encoder.encode([template.format(w) for w in words]) @ names.T
        if pool == "best":
            return np.stack([sims[:, owner == e].max(1) for e in range(len(bridge.emotions))], 1)
        return np.stack([np.sort(sims[:, owner == e], 1)[:, -2:].mean(1) for e in range(len(bridge.emotions))], 1)

    def score(name, template, gate_template, pool, tau, own_share, low, high) -> float:
        out = []
        for words in rounds[name]:
            close = torch.from_numpy(closeness(words, template, pool)).float()
            gate = torch.from_numpy(closeness(words, gate_template, "best")).float().max(1).values
            bridged = F.normalize(torch.softmax(close / tau, dim=1) @ emotion_feats, dim=-1)
            share = ((gate - low) / (high - low)).clamp(0, 1)[:, None] * (1 - own_share)
            own = clf.class_text_features(words).float()
            out.append(uar(F.normalize((1 - share) * own + share * bridged, dim=-1)))
        return float(np.mean(out))

    print("template gate_template pool temperature own_share gate | openvocab-tune behaviour-phrases-tune")
    for key, pool, tau, own_share, (gate_key, (low, high)) in itertools.product(
            TEMPLATES, ["best", "top2"], [0.02, 0.05], [0.2, 0.3, 0.4, 0.5], GATES):
        setting = dict(template=TEMPLATES[key], gate_template=TEMPLATES[gate_key], pool=pool, tau=tau,
                       own_share=own_share, low=low, high=high)
        print(f"{key} {gate_key} {pool} {tau} {own_share} {low}-{high} | {score('openvocab-tune', **setting):.1f} "
              f"{score('behaviour-phrases-tune', **setting):.1f}", flush=True)


if __name__ == "__main__":
    main()
