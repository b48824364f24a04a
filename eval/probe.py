"""Linear-probe and few-shot protocols: logistic regression on frozen image features.

Flow: ``emocap eval --protocol linear-probe`` (or ``few-shot``) -> :func:`evaluate_probe`: features of the
benchmark's train split, its validation split (when it has one) and the test split, each from the
:class:`~emocap.eval.features.FeatureCache` when present -> scikit-learn ``LogisticRegression`` -> test
probabilities -> the same record and metrics as zero-shot (:func:`emocap.eval.records.scored_record`).

* **linear probe**: all train samples; the inverse regularisation ``C`` is chosen on the validation split
  (accuracy) from a log grid, else on a seeded 10% hold-out of train, then the model is refit on train.
* **few-shot**: ``k`` samples per class drawn from train with each of ``seeds``; ``C`` chosen as above per
  seed; metrics are averaged over seeds (``per_seed`` keeps each seed's WAR/UAR, ``*_std`` the spread) and the
  confusion matrix is summed over seeds.

Clip features are mean-pooled over frames and re-normalised before fitting.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .registry import Benchmark, get_benchmark
from .feature_cache import FeatureCache
from .feature_set import FeatureSet
from .features import encode_split
from .records import scored_record
from .run_spec import RunSpec, protocol_name, rename_classes

__all__ = ["evaluate_probe", "probe_run", "fit_probe", "few_shot_indices", "C_GRID", "protocol_name"]

C_GRID: Tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)


def _logreg(C: float, seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=2000, random_state=seed)


def _fit(x: np.ndarray, y: np.ndarray, C: float, seed: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings at extreme C are expected in the sweep
        return _logreg(C, seed).fit(x, y)


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: Optional[np.ndarray] = None,
              y_val: Optional[np.ndarray] = None, seed: int = 0, grid: Sequence[float] = C_GRID):
    """Fit a logistic-regression probe; returns ``(model, chosen C, {C: validation accuracy})``.

    Without a validation set, ``C`` is chosen on a seeded 10% stratified hold-out of the training data (when the
    data has at least two samples of each class; else the middle of the grid is used).
    """
    if len(np.unique(y_train)) < 2:
        raise ValueError("a probe needs training samples of at least two classes")
    if x_val is None or y_val is None or len(y_val) == 0:
        counts = np.bincount(y_train)
        if counts[counts > 0].min() >= 2 and len(y_train) >= 20:
            from sklearn.model_selection import train_test_split

            x_fit, x_val, y_fit, y_val = train_test_split(x_train, y_train, test_size=0.1, random_state=seed,
                                                          stratify=y_train)
        else:
            C = float(grid[len(grid) // 2])
            return _fit(x_train, y_train, C, seed), C, {}
    else:
        x_fit, y_fit = x_train, y_train
    scores = {float(C): float((_fit(x_fit, y_fit, C, seed).predict(x_val) == y_val).mean()) for C in grid}
    best = max(scores, key=lambda c: (scores[c], -abs(np.log10(c))))  # ties: the milder regularisation change
    return _fit(x_train, y_train, best, seed), best, scores


def few_shot_indices(labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """``shots`` sample indices per class (all of a class when it has fewer), drawn with ``seed``."""
    rng = np.random.RandomState(seed)
    picked: List[int] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        picked.extend(rng.choice(members, size=min(shots, len(members)), replace=False).tolist())
    return np.sort(np.asarray(picked, dtype=np.int64))


def _probs_for_classes(model, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over all benchmark classes (classes absent from the training data get 0)."""
    probs = np.zeros((len(x), n_classes))
    probs[:, model.classes_] = model.predict_proba(x)
    return probs


def evaluate_probe(
    classifier,
    benchmark,
    root,
    protocol: str = "linear-probe",
    split: Optional[str] = None,
    train_split: Optional[str] = None,
    val_split: Optional[str] = None,
    shots: Optional[int] = None,
    seeds: Sequence[int] = (0, 1, 2),
    batch_size: int = 64,
    view: Optional[str] = None,
    limit: Optional[int] = None,
    cache: Optional[FeatureCache] = None,
    progress: bool = True,
    options: Optional[Dict[str, str]] = None,
) -> Dict[str, object]:
    """Linear probe or few-shot evaluation of ``classifier``'s image features on ``benchmark``: :func:`probe_run`
    with the run given as keyword arguments (library use)."""
    bench: Benchmark = get_benchmark(benchmark)
    spec = RunSpec(benchmark=bench.name, root=None if root is None else str(root), split=bench.resolve_split(split),
                   protocol=protocol, shots=shots, seeds=tuple(seeds), train_split=train_split,
                   val_split=val_split, view=view, limit=limit, batch_size=batch_size, progress=progress,
                   options=tuple((options or {}).items()))
    return probe_run(classifier, spec, cache=cache)


def _split_features(classifier, spec: RunSpec, data, cache) -> FeatureSet:
    fs = encode_split(classifier, spec, data, cache)
    if fs.kind != "features":
        raise TypeError("a probe needs image features: the classifier has no encode_images")
    if not len(fs):
        raise RuntimeError(f"no image of {spec.describe()} could be encoded")
    return fs


def _other_split(classifier, spec: RunSpec, test_data, cache) -> Tuple[FeatureSet, list]:
    """Features of a probe's train or validation split (renamed as the test split was) and its original classes."""
    bench = get_benchmark(spec.benchmark)
    data = bench.load(spec.root, spec.split, **spec.options_dict)
    try:
        original = list(data.classes)
        renamed_from = test_data.info.get("class_names_renamed_from")
        if renamed_from is not None:
            rename_classes(data, test_data.classes, original=renamed_from)
        return _split_features(classifier, spec, data, cache), original
    finally:
        data.close()


def probe_run(classifier, spec: RunSpec, data=None, cache: Optional[FeatureCache] = None) -> Dict[str, object]:
    """Linear probe or few-shot evaluation of ``classifier``'s image features for ``spec``.

    ``data`` is the test split when the caller has loaded it already (the CLI: it is read once, with
    ``--class-names`` applied; the train and validation splits get the same names). ``spec.train_split`` /
    ``spec.val_split`` default to the benchmark's (``train`` / ``valid``); ``spec.limit`` caps the test split
    only. The view applies to train, validation and test images alike; slices are not computed. Returns a result
    record like :func:`emocap.eval.zeroshot.evaluate`, with ``protocol`` ``linear-probe`` or ``few-shot-<k>``
    and a ``probe`` block (train split, sizes, chosen C per seed, validation scores).
    """
    start = time.perf_counter()
    bench: Benchmark = get_benchmark(spec.benchmark)
    name = protocol_name(spec.protocol, spec.shots)
    spec = dataclasses.replace(spec, slices=None)
    split, shots = spec.split, spec.shots
    train_split = spec.train_split or bench.train_split
    if train_split is None:
        raise ValueError(f"benchmark {bench.name!r} has no train split; give one with --train-split")
    if train_split == split:
        raise ValueError(f"the probe's train split and test split are both {split!r}")
    val_split = spec.val_split if spec.val_split is not None else bench.val_split
    owns_data = data is None
    if data is None:
        data = bench.load(spec.root, split, **spec.options_dict)
    try:
        test_data = data.limit(spec.limit)
        train, train_classes = _other_split(classifier, spec.for_split(train_split), test_data, cache)
        val, val_classes = (_other_split(classifier, spec.for_split(val_split), test_data, cache)
                            if val_split and val_split != split else (None, None))
        test = _split_features(classifier, spec, test_data, cache)
    finally:
        if owns_data:
            data.close()
    test_classes = test_data.info.get("class_names_renamed_from") or list(test_data.classes)
    for classes, which in ((train_classes, train_split), (val_classes, val_split)):
        if classes is not None and list(classes) != list(test_classes):  # e.g. ferplus-compound's vote pairs
            raise ValueError(f"{bench.name}: split {which!r} has classes {list(classes)} but the test split "
                             f"{split!r} has {list(test_classes)}; a probe needs the same classes in both")
    n_classes = len(test.classes)
    x_train, x_test = train.pooled(), test.pooled()
    x_val, y_val = (val.pooled(), val.labels) if val is not None else (None, None)

    runs = []
    seeds = spec.seeds
    seed_list = list(seeds) if name != "linear-probe" else [int(seeds[0]) if len(seeds) else 0]
    for seed in seed_list:
        idx = few_shot_indices(train.labels, shots, seed) if shots and name != "linear-probe" else np.arange(len(train))
        model, C, scores = fit_probe(x_train[idx], train.labels[idx], x_val, y_val, seed=seed)
        runs.append((seed, len(idx), C, scores, _probs_for_classes(model, x_test, n_classes)))

    header = spec.header(classifier, test_data)
    record = scored_record(header, test, runs[0][4])
    if len(runs) > 1:
        per_seed = [scored_record(header, test, probs) for *_, probs in runs]
        for key in ("war", "uar", "macro_f1", "acc1", "mean_per_class_recall", "ece"):
            values = [r[key] for r in per_seed if r.get(key) is not None]
            if values:
                record[key] = float(np.mean(values))
                record[f"{key}_std"] = float(np.std(values))
        record["per_class_recall"] = {
            c: (None if per_seed[0]["per_class_recall"][c] is None
                else float(np.mean([r["per_class_recall"][c] for r in per_seed])))
            for c in test.classes
        }
        record["confusion_matrix"] = np.sum([r["confusion_matrix"] for r in per_seed], axis=0).tolist()
        record["per_seed"] = [{"seed": s, "war": r["war"], "uar": r["uar"]} for (s, *_), r in zip(runs, per_seed)]
    record["probe"] = {
        "train_split": train_split, "val_split": val_split if val is not None else None,
        "n_train": int(len(train)), "n_val": int(len(val)) if val is not None else 0,
        "shots": shots if name != "linear-probe" else None, "seeds": [r[0] for r in runs],
        "n_fit": [r[1] for r in runs], "C": [r[2] for r in runs],
        "val_accuracy_by_C": [{str(k): v for k, v in r[3].items()} for r in runs],
        "train_features_from_cache": train.from_cache,
    }
    record["elapsed_s"] = round(time.perf_counter() - start, 3)
    return record
