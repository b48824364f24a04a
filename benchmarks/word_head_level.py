"""Open vocabulary, teacher level with a frozen model: how far a word head on all-MiniLM-L6-v2 carries new words.

Not a test: a measurement for the open-vocabulary issue (docs/training.md, "Language stage"). The model's image
tower and its class text features stay as they are; a small head maps the frozen sentence teacher's vectors of
labelled words (in the language stage's prompt templates) onto the model's class text features. FER+ valid is
then scored zero-shot with class text features made by teacher + head for

* the canonical names (what the head must keep), and
* the tuning word list (``openvocab-tune``), which is never trained on.

Labelled words: the taxonomy's names for each class (always); with ``--nrc FILE`` also every single-word entry of
the NRC Emotion Lexicon's JSON (``nrc_en.json`` from the NRCLex wheel) that names exactly one of the six basic
emotions it shares with FER+ (joy -> happiness, ...). Every word of the tuning and report lists is left out of
training. The report list is never read for scoring. Usage (from the repo root)::

    OMP_NUM_THREADS=2 python benchmarks/word_head_level.py --root ../shared/data/ferplus [--nrc nrc_en.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from emocap import taxonomy
from emocap.class_weights import class_text_weights, encoder_for
from emocap.metrics import war_uar
from emocap.models import load_model
from emocap.prompts import load_prompt_set
from emocap.train.language import VOCAB_TEMPLATES, class_name_pool
from emocap.train.teacher_text import SentenceTeacher
from emocap.train.validation import Validator
from emocap.vocabularies import class_words, load_vocabulary, round_names

NRC_TO_CLASS = {"joy": "happiness", "anger": "anger", "disgust": "disgust", "fear": "fear", "sadness": "sadness",
                "surprise": "surprise"}


def nrc_words(path: str, labels, held) -> list:
    entries = json.loads(open(path, encoding="utf-8").read())
    out = []
    for word, emotions in entries.items():
        classes = {NRC_TO_CLASS[e] for e in emotions if e in NRC_TO_CLASS}
        if len(classes) == 1 and word.isalpha() and word.lower() not in held:
            out.append((word, labels.index(classes.pop())))
    return out


def train_head(x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor, epochs: int = 400) -> torch.nn.Module:
    """Teacher vectors -> the model's class text features: cross-entropy over classes plus a cosine pull."""
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 256), torch.nn.GELU(), torch.nn.Linear(256, targets.shape[1]))
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=0.05)
    weight = torch.bincount(y, minlength=len(targets)).float().clamp(min=1) ** -0.5
    for _ in range(epochs):
        noisy = F.normalize(x + 0.3 * torch.randn_like(x) / x.shape[1] ** 0.5, dim=-1)
        out = F.normalize(head(noisy), dim=-1)
        loss = F.cross_entropy(30 * out @ targets.T, y, weight=weight) + (1 - (out * targets[y]).sum(-1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--root", default="../shared/data/ferplus")
    p.add_argument("--nrc", default=None, help="NRC Emotion Lexicon JSON (nrc_en.json of the NRCLex wheel)")
    p.add_argument("--cache-dir", default=None, help="teacher vector cache folder (default: none)")
    args = p.parse_args()
    em = load_model(args.model)
    labels = [taxonomy.canonical(n) for n in taxonomy.label_set("ferplus8")]
    prompt_set = load_prompt_set("basic8")
    with torch.no_grad():
        targets = class_text_weights(encoder_for(em.model, em.tokenizer),
                                     [prompt_set.texts_for(label) for label in labels]).float().clone()
    val = Validator(args.root, "valid", em.image_size, True, labels)
    images = val.image_features(em.model, em.preprocess_cfg["mean"], em.preprocess_cfg["std"]).float().clone()
    tune, report = load_vocabulary("openvocab-tune"), load_vocabulary("openvocab-report")
    held = {w.lower() for vocab in (tune, report) for words in vocab.classes.values() for w in words}
    teacher = SentenceTeacher(cache_dir=args.cache_dir)
    canonical = load_vocabulary({"name": "canonical", "purpose": "tuning", "classes": {n: [n] for n in labels}})

    def uar(text_features, vocab) -> float:
        scores = []
        for names in round_names(class_words(vocab, labels)):
            feats = torch.stack([F.normalize(text_features([t.format(n) for t in VOCAB_TEMPLATES]), dim=-1).mean(0)
                                 for n in names])
            pred = (images @ F.normalize(feats, dim=-1).T).argmax(1).numpy()
            scores.append(war_uar(pred, val.targets)["uar"])
        return 100 * float(np.mean(scores))

    def own_tower(texts):
        return em.model.encode_text(em.tokenizer(texts)).float()

    with torch.no_grad():
        print(f"model's own text tower: canonical UAR {uar(own_tower, canonical):.1f}, tune UAR {uar(own_tower, tune):.1f}")
    names = [(n, i) for i, pool in enumerate(class_name_pool(labels)) for n in pool if n.lower() not in held]
    word_sets = {"taxonomy names": names}
    if args.nrc:
        word_sets["taxonomy names + NRC words"] = names + nrc_words(args.nrc, labels, held)
    for title, words in word_sets.items():
        pairs = [(t.format(w), c) for w, c in words for t in VOCAB_TEMPLATES]
        x = torch.from_numpy(teacher.encode([s for s, _ in pairs], progress=False)).float()
        head = train_head(x, torch.tensor([c for _, c in pairs]), targets)
        with torch.no_grad():
            def through_head(texts):
                return head(torch.from_numpy(teacher.encode(texts, progress=False)).float())
            print(f"teacher + head on {title} ({len(words)} words): canonical UAR {uar(through_head, canonical):.1f}, "
                  f"tune UAR {uar(through_head, tune):.1f}", flush=True)


if __name__ == "__main__":
    main()
