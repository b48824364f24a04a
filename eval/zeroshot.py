"""Zero-shot evaluation: run a classifier over a registered benchmark and write one result JSON per run.

Flow: ``emocap eval`` (``emocap.eval.cli``) -> :func:`evaluate` (benchmark loader -> image batches ->
``classifier.predict_proba`` -> ``emocap.eval.metrics``) -> result record -> :func:`write_result` ->
``results/<model>__<benchmark>__<split>__zeroshot__<prompt hash>.json`` -> table builder.

The classifier is anything with ``labels``, ``model_id``, ``prompt_set`` (``.name``, ``.hash``) and
``predict_proba(images, batch_size) -> [N, C]``, e.g. :class:`emocap.ZeroShotClassifier`. Its labels are matched
to the benchmark's classes by name (or by canonical emotion); extra classifier labels are dropped and the
probabilities renormalised over the benchmark's classes.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import re
import time
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from tqdm.auto import tqdm

import emocap
from emocap import taxonomy

from .benchmarks import Benchmark, BenchmarkData, get_benchmark, load_clips, load_samples, pool_frame_probs
from .metrics import classification_metrics

__all__ = ["evaluate", "write_result", "result_filename", "align_labels", "PROTOCOL"]

PROTOCOL = "zeroshot"


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _versions() -> Dict[str, Optional[str]]:
    return {
        "emocap": emocap.__version__,
        "torch": _version("torch"),
        "open_clip": _version("open_clip_torch"),
        "numpy": np.__version__,
        "scikit-learn": _version("scikit-learn"),
        "python": platform.python_version(),
    }


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


def evaluate(
    classifier,
    benchmark: Union[str, Benchmark],
    root: Union[str, Path, None] = None,
    split: Optional[str] = None,
    batch_size: int = 64,
    progress: bool = True,
    limit: Optional[int] = None,
    data: Optional[BenchmarkData] = None,
) -> Dict[str, object]:
    """Zero-shot evaluation of ``classifier`` on ``benchmark`` read from ``root``.

    Args:
        classifier: a :class:`emocap.ZeroShotClassifier` or an object with the same attributes and methods.
        benchmark: a registry name (``"ferplus"``, ``"imagefolder"``) or a :class:`Benchmark`. For video clips
            (samples with ``frames``) every sampled frame is scored and the frame probabilities are mean-pooled.
        root: the dataset folder (not needed when ``data`` is given).
        split: split name; ``None`` uses the benchmark's default.
        batch_size: images per ``predict_proba`` call (and per load step).
        progress: show a tqdm progress bar.
        limit: only the first ``limit`` samples (quick checks); recorded in the result.
        data: an already loaded :class:`BenchmarkData` (e.g. when the caller needed its class names first).

    Returns:
        The result record: metrics (see :mod:`emocap.eval.metrics`) plus ``model_id``, ``benchmark``, ``split``,
        ``protocol``, ``labels``, ``prompt_set``, ``prompt_hash``, ``n_skipped``, ``skipped`` (``[source, reason]``
        for label rows and images left out), ``versions``, ``timestamp`` and ``elapsed_s``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    start = time.perf_counter()
    bench = get_benchmark(benchmark)
    split = bench.resolve_split(split)
    owns_data = data is None
    if data is None:
        data = bench.load(root, split)
    try:
        data = data.limit(limit)
        columns = align_labels(classifier.labels, data.classes)
        skipped = [tuple(p) for p in data.problems]
        y_true: List[int] = []
        prob_batches: List[np.ndarray] = []
        bar = tqdm(total=len(data.samples), desc=f"{bench.name}/{split or '-'}", unit="img", disable=not progress)
        try:
            for i in range(0, len(data.samples), batch_size):
                chunk = data.samples[i:i + batch_size]
                if any(s.is_clip for s in chunk):  # video clips: score every frame, mean-pool per clip
                    clips, labels, _, problems = load_clips(chunk)
                    skipped.extend(problems)
                    if clips:
                        frames = [im for clip in clips for im in clip]
                        probs = np.asarray(classifier.predict_proba(frames, batch_size=batch_size), dtype=np.float64)
                        if probs.shape != (len(frames), len(classifier.labels)):
                            raise ValueError(f"predict_proba returned shape {probs.shape} for {len(frames)} frames "
                                             f"and {len(classifier.labels)} labels")
                        prob_batches.append(pool_frame_probs(probs, [len(c) for c in clips]))
                        y_true.extend(labels)
                    bar.update(len(chunk))
                    continue
                images, labels, _, problems = load_samples(chunk)
                skipped.extend(problems)
                if images:
                    probs = np.asarray(classifier.predict_proba(images, batch_size=batch_size), dtype=np.float64)
                    if probs.shape != (len(images), len(classifier.labels)):
                        raise ValueError(f"predict_proba returned shape {probs.shape} for {len(images)} images "
                                         f"and {len(classifier.labels)} labels")
                    prob_batches.append(probs)
                    y_true.extend(labels)
                bar.update(len(chunk))
        finally:
            bar.close()
    finally:
        if owns_data:
            data.close()
    if not y_true:
        reasons = "; ".join(f"{s}: {r}" for s, r in skipped[:5])
        raise RuntimeError(f"no image of {bench.name}/{split} could be evaluated ({len(skipped)} skipped: {reasons})")

    probs = np.concatenate(prob_batches)[:, columns]
    probs = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    record: Dict[str, object] = {
        "model_id": str(classifier.model_id),
        "benchmark": bench.name,
        "split": split,
        "protocol": PROTOCOL,
        "labels": list(data.classes),
    }
    prompt_set = getattr(classifier, "prompt_set", None)
    record["prompt_set"] = getattr(prompt_set, "name", None)
    record["prompt_hash"] = getattr(prompt_set, "hash", None)
    record.update(classification_metrics(np.asarray(y_true, dtype=np.int64), probs, data.classes))
    record.update({
        "n_skipped": len(skipped),
        "skipped": [[str(s), str(r)] for s, r in skipped],
        "limit": limit,
        "root": str(root) if root is not None else None,
        "benchmark_info": data.info,
        "versions": _versions(),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "elapsed_s": round(time.perf_counter() - start, 3),
    })
    return record


def _slug(text: str, max_len: int = 60) -> str:
    """A file-name-safe version of ``text`` (model ids can be paths or ``hf-hub:org/repo``)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-._") or "none"
    if len(slug) > max_len:
        slug = slug[-max_len:].lstrip("-._")  # the end of a path names the model best
    return slug


def result_filename(record: Dict[str, object]) -> str:
    """``<model>__<benchmark>__<split>__<protocol>__<prompt hash>[__limit<N>].json`` for a result record."""
    parts = [record.get("model_id"), record.get("benchmark"), record.get("split") or "all",
             record.get("protocol"), record.get("prompt_hash") or "noprompt"]
    if (record.get("benchmark_info") or {}).get("class_names_renamed_from"):
        names = ",".join(record.get("labels") or [])
        parts.append("names-" + hashlib.sha256(names.encode("utf-8")).hexdigest()[:8])
    if record.get("limit"):
        parts.append(f"limit{record['limit']}")
    return "__".join(_slug(p) for p in parts) + ".json"


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_result(record: Dict[str, object], out_dir: Union[str, Path]) -> Path:
    """Write ``record`` as JSON into ``out_dir`` and return the path; never overwrites an existing file.

    The name comes from :func:`result_filename`; when it is taken a UTC timestamp suffix is added (and a counter
    when that is taken too). Files are created exclusively, so concurrent runs cannot clobber each other.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2, ensure_ascii=False, default=_json_default) + "\n"
    stem = result_filename(record)[: -len(".json")]
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    candidates = [f"{stem}.json", f"{stem}__{stamp}.json"] + [f"{stem}__{stamp}-{i}.json" for i in range(1, 1000)]
    for name in candidates:
        path = out / name
        try:
            with open(path, "x", encoding="utf-8") as f:
                f.write(text)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"could not find a free result file name for {stem} in {out}")
