"""Open-vocabulary protocol: zero-shot with every class named by words the taxonomy does not know.

Flow: ``emocap eval --vocabulary NAME`` (:mod:`emocap.eval.cli`) -> :func:`load_vocabulary` (a bundled list of
``emocap/data/vocabularies/`` or a JSON file) -> :func:`evaluate_vocabulary`: the benchmark's image features
(:func:`emocap.eval.features.encode_split`, the same cache entry as a plain zero-shot run, so a vocabulary
run costs at most one feature pass) -> class text rows for the canonical names and for every word
(:func:`class_rows`: one text-encoder pass) -> :func:`vocabulary_scores` (numpy only) -> one result record ->
``write_result``.

Definitions (``docs/eval.md``, "Open-vocabulary protocol"):

* **rounds**: a list with ``k`` words per class gives ``k`` rounds; round ``r`` names every class ``c`` by
  ``classes[c][r]`` (a class with fewer words reuses its last word). Each round reports WAR, UAR, macro F1 and
  per-class recall; the record's ``war`` / ``uar`` / ``macro_f1`` are the means over rounds.
* **per word**: only that word's class is renamed, every other class keeps its canonical name and is scored
  exactly as in the model's normal zero-shot run (its prompt set with class descriptions, or its learned
  prompts); reported: that class's recall and the overall WAR / UAR, with their differences to the canonical run.
* **canonical**: the normal zero-shot run on the same features, for reference; **chance**: ``1/C``.

A renamed word is scored with the prompt set's templates only (never with class descriptions: descriptions
describe a canonical class, and a word the taxonomy does not know has none), or with the model's shared learned
prompts when the normal zero-shot run would use them for that word.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from emocap import taxonomy
from emocap.vocabularies import (PURPOSES, Vocabulary, bundled_vocabularies, class_words, load_vocabulary,  # noqa: F401
                                 round_names, taxonomy_words)

from .samples import BenchmarkData, pool_frame_probs
from .feature_cache import FeatureCache
from .feature_set import FeatureSet
from .features import encode_split
from emocap.metrics import chance_levels, classification_metrics
from .model_access import logit_scale
from .records import scored_record
from .run_spec import RunSpec
from .zeroshot import zero_shot_probs

__all__ = ["Vocabulary", "load_vocabulary", "bundled_vocabularies", "vocabulary_scores", "class_rows",
           "evaluate_vocabulary", "vocabulary_header", "format_vocabulary", "taxonomy_words", "PROTOCOL", "PURPOSES"]

PROTOCOL = "open-vocabulary"
def _softmax_probs(features: np.ndarray, counts: np.ndarray, text: np.ndarray, logit_scale: float) -> np.ndarray:
    """Per-sample class probabilities: softmax over ``logit_scale`` x cosine per frame (float32 products, as the
    classifier), mean-pooled over a clip's frames and renormalised (as :func:`zero_shot_probs`)."""
    logits = logit_scale * (np.asarray(features, dtype=np.float32) @ np.asarray(text, dtype=np.float32).T)
    logits = logits.astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    probs = pool_frame_probs(e / e.sum(axis=1, keepdims=True), counts)
    return probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)


def _summary(m: dict) -> dict:
    return {"war": m["war"], "uar": m["uar"], "macro_f1": m["macro_f1"], "per_class_recall": m["per_class_recall"]}


def vocabulary_scores(fs: FeatureSet, classes: Sequence[str], vocab: Vocabulary,
                      rows: Mapping[str, np.ndarray], logit_scale: float,
                      canonical_probs: Optional[np.ndarray] = None) -> Dict[str, object]:
    """Rounds, per-word runs, the canonical run and chance for image features ``fs``.

    Args:
        fs: image features (``kind == "features"``) with labels indexing ``classes``.
        classes: the benchmark's class names (canonical emotions or names the taxonomy maps to them).
        vocab: the word list.
        rows: name -> class text feature row, for every class name and every word of the list used here.
        logit_scale: the model's logit scale (softmax temperature).
        canonical_probs: the normal zero-shot probabilities, when already computed (else from ``rows``).

    Returns:
        ``{"canonical", "rounds", "per_word", "chance", "war", "uar", "macro_f1", *_std}``; see the module docstring.
    """
    if fs.kind != "features":
        raise TypeError("the open-vocabulary protocol needs image features: the classifier has no encode_images")
    classes = list(classes)
    words = class_words(vocab, classes)
    y = np.asarray(fs.labels)

    def closest_pair(names: Sequence[str]) -> dict:
        """The two names of a label set whose text rows are most alike (cosine): near 1, the model cannot tell
        them apart and the round scores near chance for them."""
        text = np.stack([rows[n] for n in names]).astype(np.float64)
        text /= np.clip(np.linalg.norm(text, axis=1, keepdims=True), 1e-12, None)
        sims = text @ text.T
        np.fill_diagonal(sims, -np.inf)
        i, j = np.unravel_index(int(np.argmax(sims)), sims.shape)
        return {"names": [names[min(i, j)], names[max(i, j)]], "cosine": round(float(sims[i, j]), 4)}

    def metrics(names: Sequence[str], probs: Optional[np.ndarray] = None) -> dict:
        if probs is None:
            probs = _softmax_probs(fs.features, fs.counts, np.stack([rows[n] for n in names]), logit_scale)
        return classification_metrics(y, probs, classes, top_k=())

    canonical = metrics(classes, canonical_probs)
    rounds = []
    for r, names in enumerate(round_names(words)):
        m = metrics(names)
        rounds.append({"round": r + 1, "names": dict(zip(classes, names)), **_summary(m),
                       "closest_pair": closest_pair(names) if len(names) > 1 else None})
    per_word: Dict[str, Dict[str, dict]] = {}
    for c, cls in enumerate(classes):
        entries = {}
        for word in words[c]:
            names = list(classes)
            names[c] = word
            m = metrics(names)
            recall, base = m["per_class_recall"][cls], canonical["per_class_recall"][cls]
            entries[word] = {
                "recall": recall, "war": m["war"], "uar": m["uar"],
                "recall_delta": None if recall is None or base is None else recall - base,
                "uar_delta": m["uar"] - canonical["uar"], "war_delta": m["war"] - canonical["war"],
            }
        per_word[cls] = entries
    out: Dict[str, object] = {
        "canonical": {**_summary(canonical), "closest_pair": closest_pair(classes) if len(classes) > 1 else None},
        "rounds": rounds,
        "per_word": per_word,
        "chance": chance_levels(y, len(classes)),
    }
    for key in ("war", "uar", "macro_f1"):
        values = [r[key] for r in rounds]
        out[key] = float(np.mean(values))
        out[f"{key}_std"] = float(np.std(values))
    return out


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def word_prompts(classifier, words: Sequence[str]) -> str:
    """How renamed words are scored: ``learned-prompts`` (the model's shared soft prompts, as its normal
    zero-shot run would score these names) or ``templates`` (the prompt set's templates, no descriptions)."""
    uses_learned = getattr(classifier, "_uses_learned_prompts", None)
    try:
        learned = uses_learned is not None and uses_learned(list(words), classifier.prompt_set)
    except KeyError:  # per-class learned prompts cannot name an unknown word
        learned = False
    return "learned-prompts" if learned else "templates"


def class_rows(classifier, classes: Sequence[str], words: Sequence[str]) -> Dict[str, np.ndarray]:
    """Class text feature rows: ``classes`` exactly as the classifier's normal zero-shot run scores them (its
    prompt set with descriptions, or its learned prompts), and ``words`` without descriptions (one pass each)."""
    rows = dict(zip(classes, _as_numpy(classifier.class_text_features(list(classes)))))
    words = [w for w in dict.fromkeys(words) if w not in rows]
    if words:
        # the words are encoded together but never all scored against each other: a warning about look-alike
        # labels among them would be about no real label set (each round reports its own closest pair instead)
        quiet = getattr(taxonomy, "IndistinguishableLabelsWarning", None)
        with warnings.catch_warnings():
            if quiet is not None:
                warnings.simplefilter("ignore", quiet)
            if word_prompts(classifier, words) == "learned-prompts":
                feats = classifier.class_text_features(words)
            else:
                templates = classifier.prompt_set.without_descriptions()
                if not templates.templates:
                    raise ValueError(f"prompt set {classifier.prompt_set.name!r} has no templates: renamed words "
                                     "need templates (descriptions are never used for them)")
                feats = classifier.class_text_features(words, templates)
        rows.update(zip(words, _as_numpy(feats)))
    return rows


def vocabulary_header(classifier, spec: RunSpec, data: BenchmarkData, vocabulary) -> Dict[str, object]:
    """The identifying part of a vocabulary record (also what ``--skip-existing`` checks before running)."""
    vocab = load_vocabulary(vocabulary)
    header = spec.header(classifier, data)
    header["protocol"] = PROTOCOL  # after the header, which keeps the prompt set only for zero-shot protocols
    header["vocabulary"] = vocab.describe()
    words = [w for c in data.classes for w in vocab.classes.get(taxonomy.canonical_or_none(c) or "", [])]
    header["word_prompts"] = word_prompts(classifier, words)
    # the words are outside the taxonomy by the lists' rule: how they are encoded is part of the result's identity
    header["word_bridge"] = getattr(classifier, "bridge_id", spec.word_bridge_id)
    return header


def evaluate_vocabulary(classifier, spec: RunSpec, data: BenchmarkData,
                        vocabulary: Union[str, Path, Mapping, Vocabulary],
                        cache: Optional[FeatureCache] = None) -> Dict[str, object]:
    """The open-vocabulary record of ``classifier`` on ``data`` (already loaded for ``spec``) with ``vocabulary``.

    The classifier is a :class:`emocap.ZeroShotClassifier` built on the benchmark's class names (or anything
    with ``labels``, ``model_id``, ``prompt_set``, ``encode_images``, ``probs_from_features``,
    ``class_text_features(labels, prompt_set)`` and a logit scale).
    """
    start = time.perf_counter()
    vocab = load_vocabulary(vocabulary)
    data = data.limit(spec.limit)
    words = class_words(vocab, data.classes)  # fail before encoding anything
    fs = encode_split(classifier, spec, data, cache)
    if not len(fs):
        reasons = "; ".join(f"{s}: {r}" for s, r in fs.skipped[:5])
        raise RuntimeError(f"no image of {spec.benchmark}/{spec.split} could be evaluated "
                           f"({len(fs.skipped)} skipped: {reasons})")
    rows = class_rows(classifier, data.classes, [w for ws in words for w in ws])
    canonical_probs = zero_shot_probs(classifier, fs, data.classes)
    scores = vocabulary_scores(fs, data.classes, vocab, rows, logit_scale(classifier), canonical_probs)
    header = vocabulary_header(classifier, spec, data, vocab)
    record = scored_record(header, fs, canonical_probs)
    # the plain zero-shot metrics stay under "canonical"; the record's headline numbers are the round means
    for key in ("acc1", "mean_per_class_recall", "per_class_recall", "confusion_matrix", "ece", "reliability",
                "soft_n", "soft_accuracy", "soft_top1", "soft_kl", "soft_js", "groups"):
        record.pop(key, None)
    record.update(scores)
    record["acc1"], record["mean_per_class_recall"] = record["war"], record["uar"]
    record["words_in_taxonomy"] = vocab.words_in_taxonomy()
    record["elapsed_s"] = round(time.perf_counter() - start, 3)
    return record


def format_vocabulary(record: dict) -> List[str]:
    """A compact table of a vocabulary record: canonical, chance, each round and its mean, each word.

    ``cos``: the largest cosine between two class text rows of the label set (near 1: two classes the model
    cannot tell apart)."""
    pct = lambda v: "  -  " if v is None else f"{100 * v:5.1f}"  # noqa: E731
    signed = lambda v: "" if v is None else f" ({100 * v:+.1f})"  # noqa: E731
    cos = lambda pair: "  -  " if not pair else f"{pair['cosine']:.3f}"  # noqa: E731
    join = lambda names: (" | " if any("," in n for n in names) else ", ").join(names)  # noqa: E731
    classes = list(record["labels"])
    canon = record["canonical"]
    chance = record["chance"]
    lines = [f"{'':10s} {'WAR':>5s}  {'UAR':>5s}  {'F1':>5s}  {'cos':>5s}  names",
             f"{'canonical':10s} {pct(canon['war'])}  {pct(canon['uar'])}  {pct(canon['macro_f1'])}  "
             f"{cos(canon.get('closest_pair'))}  " + join(classes),
             f"{'chance':10s} {pct(chance['war'])}  {pct(chance['uar'])}  {'':5s}  {'':5s}  1/{len(classes)} "
             f"(largest class alone: WAR {pct(chance['majority_class_war']).strip()})"]
    for r in record["rounds"]:
        lines.append(f"{'round ' + str(r['round']):10s} {pct(r['war'])}  {pct(r['uar'])}  {pct(r['macro_f1'])}  "
                     f"{cos(r.get('closest_pair'))}  " + join([r["names"][c] for c in classes]))
    n_rounds = len(record["rounds"])
    lines.append(f"{'mean':10s} {pct(record['war'])}  {pct(record['uar'])}  {pct(record['macro_f1'])}  "
                 f"{'':5s}  over {n_rounds} round{'s' if n_rounds != 1 else ''} "
                 f"(sd WAR {100 * record['war_std']:.1f}, UAR {100 * record['uar_std']:.1f})")
    lines.append("per word (only that class renamed; the others keep their canonical names):")
    for cls in classes:
        lines.append(f"  {cls} (canonical recall {pct(canon['per_class_recall'][cls]).strip()})")
        for word, m in record["per_word"][cls].items():
            lines.append(f"    recall {pct(m['recall'])}{signed(m['recall_delta']):9s} "
                         f"UAR {pct(m['uar'])}{signed(m['uar_delta']):8s}  {word}")
    return lines
