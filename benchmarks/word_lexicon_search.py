"""How the word bridge's WordNet settings were chosen: a small grid on FER+ valid with the tuning lists only.

Not a test: the search behind the WordNet step of :mod:`emocap.word_bridge` (docs/labels.md, "Words outside the
taxonomy"). The embedded default's image features of FER+ valid are computed once; each setting scores the
tuning word list (``openvocab-tune``, mean over its rounds) and the tuning phrase list (``behaviour-phrases-tune``)
zero-shot with the classifier's own bridged text features. The report lists are never read. Settings: WordNet off
(the sentence encoder alone, as before), or WordNet links up to depth 1 or 2 with the bridged share per depth.
With ``--compound-out DIR``, also the share of compound labels composed from their words ("neutral and sad":
:func:`emocap.word_lexicon.link_label`) on FER+ valid's compound benchmark (``emocap eval --benchmark
ferplus-compound --split valid``; one result folder per setting under DIR). Usage (from the repo root; about a
minute, two with the compound part)::

    OMP_NUM_THREADS=2 python benchmarks/word_lexicon_search.py --root ../shared/data/ferplus --compound-out OUT
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from emocap import ZeroShotClassifier, taxonomy
from emocap import word_bridge as wb
from emocap.metrics import war_uar
from emocap.train.validation import Validator
from emocap.vocabularies import class_words, load_vocabulary, round_names

#: (max depth, share at depth 0, 1, 2) tried; max depth None = WordNet off
SETTINGS = [(None, None)] + [(depth, share) for depth in (1, 2)
                             for share in ((0.6, 0.6, 0.6), (0.8, 0.8, 0.6), (0.9, 0.9, 0.7), (1.0, 1.0, 0.8))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="../shared/data/ferplus")
    p.add_argument("--model", default="default", help="model id (the settings were chosen on the default before "
                   "WordNet's words were distilled into it: docs/labels.md)")
    p.add_argument("--compound-out", type=Path, default=None, help="also search the compound share; results here")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    clf = ZeroShotClassifier.from_pretrained(args.model)
    em = clf.model
    labels = [taxonomy.canonical(n) for n in taxonomy.label_set("ferplus8")]
    val = Validator(args.root, "valid", em.image_size, True, labels)
    with torch.no_grad():
        images = val.image_features(em.clip, em.preprocess_cfg["mean"], em.preprocess_cfg["std"]).float()
    rounds = {name: round_names(class_words(load_vocabulary(name), labels))
              for name in ("openvocab-tune", "behaviour-phrases-tune")}

    def uar(model: ZeroShotClassifier, names) -> float:
        pred = (images @ model.class_text_features(names).float().T).argmax(1).numpy()
        return 100 * war_uar(pred, val.targets)["uar"]

    print(f"canonical names: UAR {uar(clf, labels):.1f}")
    print("WordNet max depth | share by depth | openvocab-tune | behaviour-phrases-tune")
    for depth, share in SETTINGS:
        wb.LEXICON_MAX_DEPTH, wb.LEXICON_SHARE = (depth or 0), (share or wb.LEXICON_SHARE)
        model = ZeroShotClassifier.from_pretrained(args.model)  # a fresh text-feature cache per setting
        model.word_bridge.use_lexicon = depth is not None
        cells = [np.mean([uar(model, r) for r in rs]) for rs in rounds.values()]
        print(f"{'off' if depth is None else depth} | {share or '-'} | {cells[0]:.1f} | {cells[1]:.1f}", flush=True)
    if args.compound_out is not None:
        compound_search(args.root, args.compound_out, args.model)


def compound_search(root: str, out: Path, model: str = "default") -> None:
    """WAR / UAR on FER+ valid's compound pairs for each compound share (None: such labels go to the encoder)."""
    from emocap.eval.cli import main as emocap_main

    wb.LEXICON_MAX_DEPTH, wb.LEXICON_SHARE = 2, (0.8, 0.8, 0.6)
    print("compound share | ferplus-compound valid WAR | UAR")
    for share in (None, 0.2, 0.4, 0.6, 0.8, 1.0):
        wb.LEXICON_COMPOUND_SHARE = share
        settings = dict(wb.BRIDGE_SETTINGS, lexicon_share=list(wb.LEXICON_SHARE), lexicon_compound_share=share)
        wb.BRIDGE_ID = wb.settings_id(settings)  # eval's text-feature cache keys follow the setting
        wb.bridge_identity.cache_clear()
        folder = out / f"compound-share-{share}"
        with contextlib.redirect_stdout(io.StringIO()):  # eval's own report; the line below sums it up
            emocap_main(["eval", "--model", model, "--benchmark", "ferplus-compound", "--split", "valid",
                         "--root", root, "--out", str(folder), "--no-progress", "-q"])
        metrics = json.loads(next(folder.glob("*.json")).read_text())
        print(f"{share} | {100 * metrics['war']:.2f} | {100 * metrics['uar']:.2f}", flush=True)


if __name__ == "__main__":
    main()
