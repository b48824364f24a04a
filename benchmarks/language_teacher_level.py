"""The language stage's upper bound: FER+ test scored through the align step's head on teacher sentence vectors.

After ``emocap train --config default-language`` a run folder holds ``align/`` (the aligned image tower and
``head.safetensors``). This script scores FER+ test with class text features made by the frozen teacher
(all-MiniLM-L6-v2) and that head, i.e. what the released model's distilled text tower tries to imitate: canonical
names (templates + descriptions), the report word list's rounds and the behaviour phrases (templates only).
docs/training.md quotes its output as the "teacher level" row.

Usage (from the repo root)::

    python benchmarks/language_teacher_level.py runs/default-language --root ../shared/data/ferplus
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from emocap import taxonomy
from emocap.models import load_model
from emocap.prompts import load_prompt_set
from emocap.train.language import TeacherHead, _grouped_mean
from emocap.metrics import war_uar
from emocap.train.loop import Validator
from emocap.train.teacher_text import SentenceTeacher
from emocap.vocabularies import class_words, load_vocabulary, round_names


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="language-stage run folder (holds align/)")
    p.add_argument("--root", default="../shared/data/ferplus", help="FER+ root")
    p.add_argument("--split", default="test")
    p.add_argument("--cache-dir", default=None, help="teacher vector cache (default: <run>/teacher_cache)")
    args = p.parse_args(argv)
    run = Path(args.run)
    em = load_model(str(run / "align"))
    state = load_file(str(run / "align" / "head.safetensors"))
    weights = {k: v for k, v in state.items() if k != "logit_scale"}
    head = TeacherHead(weights["net.0.weight"].shape[1], weights["net.0.weight"].shape[0], weights["net.2.weight"].shape[0])
    head.load_state_dict(weights)
    head.eval()
    labels = [taxonomy.canonical(n) for n in taxonomy.label_set("ferplus8")]
    prompt_set = load_prompt_set("basic8")
    data = Validator(args.root, args.split, em.image_size, True, labels)
    feats = data.image_features(em.model, em.preprocess_cfg["mean"], em.preprocess_cfg["std"])
    teacher = SentenceTeacher(cache_dir=args.cache_dir or str(run / "teacher_cache"))

    def score(names, descriptions: bool):
        texts, sizes = [], []
        for n in names:
            t = prompt_set.texts_for(n) if descriptions else [x.format(n) for x in prompt_set.templates]
            texts += t
            sizes.append(len(t))
        with torch.inference_mode():
            text = _grouped_mean(head(torch.from_numpy(teacher.encode(texts, progress=False))), sizes)
        return war_uar((feats @ text.T).argmax(1).numpy(), data.targets)

    rows = {"canonical": [score(labels, True)]}
    for name in ("openvocab-report", "behaviour-phrases"):
        rows[name] = [score(names, False) for names in round_names(class_words(load_vocabulary(name), labels))]
    print(f"{run} at teacher level, FER+ {args.split} ({len(data.targets)} images), WAR / UAR (mean over rounds):")
    for name, results in rows.items():
        war = 100 * np.mean([r["war"] for r in results])
        uar = 100 * np.mean([r["uar"] for r in results])
        print(f"  {name:20s} {war:6.2f} / {uar:6.2f}   ({len(results)} round{'s' if len(results) > 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
