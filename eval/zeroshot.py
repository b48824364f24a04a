"""Zero-shot evaluation: score a benchmark's images against text prompts and write one result JSON per run.

Flow: ``emocap eval`` (``emocap.eval.cli``) -> :func:`evaluate`: benchmark loader -> image features
(:func:`emocap.eval.features.encode_split`, cached under the key of the run's
:class:`~emocap.eval.run_spec.RunSpec`) -> class probabilities from the classifier's text features
(:func:`zero_shot_probs`) -> metrics and record (:func:`emocap.eval.records.scored_record`) -> :func:`write_result`
-> table builder.

The classifier is anything with ``labels``, ``model_id``, ``prompt_set`` (``.name``, ``.hash``) and
``predict_proba(images, batch_size) -> [N, C]``, e.g. :class:`emocap.ZeroShotClassifier`; when it also has
``encode_images`` and ``probs_from_features`` the features are computed once and reused for every prompt set.
Its labels are matched to the benchmark's classes by name (or by canonical emotion); extra classifier labels are
dropped and the probabilities renormalised over the benchmark's classes. Video clips: frame probabilities are
mean-pooled per clip.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from emocap import taxonomy

from .registry import Benchmark, get_benchmark
from .samples import BenchmarkData, pool_frame_probs
from .feature_cache import FeatureCache
from .feature_set import FeatureSet
from .features import encode_split
from .records import existing_result, result_filename, scored_record, write_result
from .run_spec import ZEROSHOT as PROTOCOL, RunSpec

__all__ = ["evaluate", "evaluate_run", "zero_shot_probs", "run_header", "write_result", "result_filename",
           "existing_result",
           "align_labels", "PROTOCOL"]


def align_labels(classifier_labels: Sequence[str], classes: Sequence[str]) -> List[int]:
    """Column of the classifier's output for each benchmark class, matched by exact name, else canonical emotion.

    Raises ValueError naming the benchmark classes the classifier cannot score.
    """
    clf = [str(c) for c in classifier_labels]
    canon = [taxonomy.canonical_or_none(c) for c in clf]
    columns, missing = [], []
    for cls in classes:
        if cls in clf:
            columns.append(clf.index(cls))
            continue
        target = taxonomy.canonical_or_none(cls)
        if target is not None and target in canon:
            columns.append(canon.index(target))
        else:
            missing.append(cls)
    if missing:
        raise ValueError(f"the classifier's labels {clf} do not cover benchmark classes {missing}; "
                         "build the classifier with labels=<the benchmark's class names>")
    if len(set(columns)) != len(columns):
        raise ValueError(f"benchmark classes {list(classes)} map onto the same classifier label; labels: {clf}")
    return columns


def zero_shot_probs(classifier, fs: FeatureSet, classes: Optional[Sequence[str]] = None) -> np.ndarray:
    """[N, C] probabilities over ``classes`` (default: the feature set's) from the classifier's text features."""
    if fs.kind == "features":
        frame_probs = np.asarray(classifier.probs_from_features(fs.features), dtype=np.float64)
    else:
        frame_probs = np.asarray(fs.features, dtype=np.float64)
    if frame_probs.shape[1] != len(classifier.labels):
        raise ValueError(f"got {frame_probs.shape[1]} class scores for {len(classifier.labels)} labels")
    probs = pool_frame_probs(frame_probs, fs.counts)[:, align_labels(classifier.labels, classes or fs.classes)]
    return probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)


def run_header(classifier, bench: Benchmark, split, data: BenchmarkData, protocol: str = PROTOCOL,
               view: Optional[str] = None, limit: Optional[int] = None, root=None,
               slices: Optional[str] = None) -> Dict[str, object]:
    """The identifying part of a result record: :meth:`RunSpec.header` of the run given as arguments."""
    spec = RunSpec(benchmark=get_benchmark(bench).name, root=None if root is None else str(root), split=split,
                   protocol=protocol, view=view, limit=limit, slices=slices)
    return spec.header(classifier, data)


def evaluate_run(classifier, spec: RunSpec, data: BenchmarkData,
                 cache: Optional[FeatureCache] = None) -> Dict[str, object]:
    """Zero-shot record of ``classifier`` on ``data`` (loaded for ``spec``; ``spec.limit`` is applied here)."""
    start = time.perf_counter()
    data = data.limit(spec.limit)
    align_labels(classifier.labels, data.classes)  # fail before encoding anything
    fs = encode_split(classifier, spec, data, cache)
    if not len(fs):
        reasons = "; ".join(f"{s}: {r}" for s, r in fs.skipped[:5])
        raise RuntimeError(f"no image of {spec.benchmark}/{spec.split} could be evaluated "
                           f"({len(fs.skipped)} skipped: {reasons})")
    probs = zero_shot_probs(classifier, fs, data.classes)
    record = scored_record(spec.header(classifier, data), fs, probs)
    record["elapsed_s"] = round(time.perf_counter() - start, 3)
    return record


def evaluate(
    classifier,
    benchmark: Union[str, Benchmark],
    root: Union[str, Path, None] = None,
    split: Optional[str] = None,
    batch_size: int = 64,
    progress: bool = True,
    limit: Optional[int] = None,
    data: Optional[BenchmarkData] = None,
    view: Optional[str] = None,
    cache: Optional[FeatureCache] = None,
    slices: Optional[str] = None,
) -> Dict[str, object]:
    """Zero-shot evaluation of ``classifier`` on ``benchmark`` read from ``root``.

    Args:
        classifier: a :class:`emocap.ZeroShotClassifier` or an object with the same attributes and methods.
        benchmark: a registry name (``"ferplus"``, ``"imagefolder"``) or a :class:`Benchmark`.
        root: the dataset folder (not needed when ``data`` is given).
        split: split name; ``None`` uses the benchmark's default.
        batch_size: images per encoder call.
        progress: show a tqdm progress bar.
        limit: only the first ``limit`` samples (quick checks); recorded in the result.
        data: an already loaded :class:`BenchmarkData` (e.g. when the caller needed its class names first).
        view: an image view of :mod:`emocap.eval.views` (``upper-face``, ``lower-face``, ``histeq``).
        cache: a :class:`FeatureCache`; image features are read from it or written to it.
        slices: per-sample attribute groups to report metrics for (``"face"``: :mod:`emocap.eval.slices`).

    Returns:
        The result record: metrics (see :mod:`emocap.metrics`) plus ``model_id``, ``benchmark``, ``split``,
        ``protocol``, ``view``, ``labels``, ``prompt_set``, ``prompt_hash``, ``n_skipped``, ``skipped``
        (``[source, reason]`` for label rows and images left out), ``versions``, ``timestamp`` and ``elapsed_s``.
    """
    start = time.perf_counter()
    bench = get_benchmark(benchmark)
    spec = RunSpec(benchmark=bench.name, root=None if root is None else str(root), split=bench.resolve_split(split),
                   batch_size=batch_size, progress=progress, limit=limit, view=view, slices=slices)
    owns_data = data is None
    if data is None:
        data = bench.load(root, spec.split)
    try:
        record = evaluate_run(classifier, spec, data, cache)
    finally:
        if owns_data:
            data.close()
    record["elapsed_s"] = round(time.perf_counter() - start, 3)
    return record
