"""What the word bridge costs: image rate, text-feature time and load time, with and without it.

Not a test: a measurement for the open-vocabulary issue (docs/labels.md, "Words outside the taxonomy"). In one
process, on FER+ test faces (decoded once) and the embedded default model:

* image rate (images/s, end to end from decoded images to probabilities, batch 64) with the 8 canonical names and
  with 8 words outside the taxonomy (the tuning list's first round): text features are cached after the first
  call, so the two should be equal; measured in alternation, ``--rounds`` pairs, ratio per pair;
* the first ``class_text_features`` call for those 8 words: with the bridge cold (the WordNet table read in the
  call; WordNet links all 8, so the sentence encoder is not used), warm (another classifier after it) and without
  the bridge;
* the same for 8 facial-action phrases (the tuning phrase list), which WordNet does not link: cold (the sentence
  encoder loaded and the emotion names encoded in the call) and warm (only the 8 phrases encoded);
* ``ZeroShotClassifier.from_pretrained()`` time (the bridge adds nothing here: the encoder loads on first use).

Every figure is the median of ``--rounds`` runs with min and max. Usage (from the repo root)::

    OMP_NUM_THREADS=2 python benchmarks/word_bridge_cost.py --ferplus ../shared/data/ferplus --out bridge_cost.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

from onnx_speed import ferplus_test, rate, spread

from emocap import ZeroShotClassifier, sentence_encoder, taxonomy, word_bridge, word_lexicon
from emocap.vocabularies import class_words, load_vocabulary, round_names


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ferplus", default="../shared/data/ferplus")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--min-seconds", type=float, default=3.0)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    warnings.simplefilter("ignore")
    images = ferplus_test(args.ferplus)[0][:args.images]
    canonical = [taxonomy.canonical(n) for n in taxonomy.label_set("ferplus8")]
    words = round_names(class_words(load_vocabulary("openvocab-tune"), canonical))[0]
    phrases = round_names(class_words(load_vocabulary("behaviour-phrases-tune"), canonical))[0]

    out = {"words": words, "phrases": phrases, "images": len(images), "rounds": args.rounds}
    loads, cold, warm, own, rate_canon, rate_words, ratios = [], [], [], [], [], [], []
    phrase_cold, phrase_warm = [], []
    for _ in range(args.rounds):
        loads.append(timed(lambda: ZeroShotClassifier.from_pretrained()))
        sentence_encoder.shared_sentence_encoder.cache_clear()  # cold: the encoder and the names' vectors anew
        word_bridge._SHARED_NAME_VECTORS.clear()
        word_lexicon._table.cache_clear()  # ... and the WordNet table
        word_lexicon._table_bytes.cache_clear()
        clf = ZeroShotClassifier.from_pretrained(labels=canonical)
        cold.append(timed(lambda: clf.class_text_features(words)))
        again = ZeroShotClassifier.from_pretrained()
        warm.append(timed(lambda: again.class_text_features(words)))
        phrase_cold.append(timed(lambda: clf.class_text_features(phrases)))
        other = ZeroShotClassifier.from_pretrained()
        phrase_warm.append(timed(lambda: other.class_text_features(phrases)))
        off = ZeroShotClassifier.from_pretrained(word_bridge=False)
        own.append(timed(lambda: off.class_text_features(words)))
        with_words = ZeroShotClassifier.from_pretrained(labels=words)
        with_words.class_text_features()
        a = rate(lambda: clf.predict_proba(images, batch_size=64), len(images), args.min_seconds)
        b = rate(lambda: with_words.predict_proba(images, batch_size=64), len(images), args.min_seconds)
        rate_canon.append(a)
        rate_words.append(b)
        ratios.append(b / a)
        print(f"round: load {loads[-1]:.2f} s, words cold {cold[-1]:.3f} s / warm {warm[-1]:.3f} s / own "
              f"{own[-1]:.3f} s, phrases cold {phrase_cold[-1]:.2f} s / warm {phrase_warm[-1]:.3f} s, "
              f"images/s canonical {a:.0f} words {b:.0f} (ratio {b / a:.2f})", flush=True)
    out.update({"load_s": spread(loads), "text_bridge_cold_s": spread(cold), "text_bridge_warm_s": spread(warm),
                "text_own_only_s": spread(own), "phrases_bridge_cold_s": spread(phrase_cold),
                "phrases_bridge_warm_s": spread(phrase_warm), "images_per_s_canonical": spread(rate_canon),
                "images_per_s_words": spread(rate_words), "rate_ratio_words_over_canonical": spread(ratios)})
    print(json.dumps(out, indent=1))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
