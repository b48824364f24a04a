"""Image features of a benchmark split, extracted once and cached: what every eval protocol starts from.

Flow: ``BenchmarkData`` (``emocap.eval.samples``) -> :func:`extract_features` (each batch read in a thread
pool: decode, image view from :mod:`emocap.eval.views`, optional face slices from :mod:`emocap.eval.slices`, and
the model's preprocessing, so every image is decoded once; then encode) -> :class:`~emocap.eval.feature_set.FeatureSet`
-> zero-shot (:mod:`emocap.eval.zeroshot`), linear probe and few-shot (:mod:`emocap.eval.probe`).

:func:`encode_split` reads and writes the :class:`~emocap.eval.feature_cache.FeatureCache` under the key of the
run's :class:`~emocap.eval.run_spec.RunSpec` (content-addressed: a changed dataset is encoded again). A second
prompt set or another protocol on the same split then costs a matrix product instead of a pass over the images.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
from tqdm.auto import tqdm

from .samples import BenchmarkData, load_clips
from .feature_cache import CACHE_FORMAT, FeatureCache, default_cache_dir, folder_fingerprint
from .feature_set import FeatureSet, Problem
from .model_access import image_steps, model_fingerprint
from .run_spec import RunSpec
from .views import ImageView, get_view

__all__ = [
    "FeatureSet", "FeatureCache", "extract_features", "encode_split", "encode_benchmark", "model_fingerprint",
    "folder_fingerprint", "default_cache_dir", "load_feature_set", "save_feature_set", "CACHE_FORMAT",
]


# ------------------------------------------------------------------------------------------------- extraction

def _load_batch(samples, view: Optional[ImageView], pool: Optional[ThreadPoolExecutor], slicer=None,
                prepare: Optional[Callable] = None):
    """Read a batch of samples (stills count as one-frame clips), in parallel threads when ``pool`` is given:
    decode, apply the view to every frame and, with ``prepare``, turn each frame into the model's input right
    away (the image is not decoded again by the encoder). Reading does not overlap the encoder: on a small CPU
    the encoder's own threads need every core, and oversubscribing them costs more than the overlap gains."""
    def load_one(sample):
        loaded = load_clips([sample])
        clips = loaded[0]
        attrs = slicer(clips[0][0]) if slicer is not None and clips else None  # first frame, unviewed
        if clips:
            frames = [view(im) for im in clips[0]] if view is not None else clips[0]
            if getattr(view, "reports_face", False) and frames:  # the photos protocol: was a face found?
                attrs = {**(attrs or {}), "face_found": frames[0].info.get("face_found")}
            clips[0] = [prepare(im) for im in frames] if prepare is not None else frames
        return loaded, attrs

    if pool is None or len(samples) < 2:
        parts = [load_one(s) for s in samples]
    else:
        parts = list(pool.map(load_one, samples))
    clips, labels, sources, problems, kept, attributes = [], [], [], [], [], []
    for sample, ((c, l, src, probs), attrs) in zip(samples, parts):
        problems.extend(probs)
        if c:
            attributes.append(attrs or {})
            clips.append(c[0])
            labels.extend(l)
            sources.extend(src)
            kept.append(sample)
    return clips, labels, sources, problems, kept, attributes


def extract_features(
    encode: Callable[[List], np.ndarray],
    data: BenchmarkData,
    batch_size: int = 64,
    view: Union[str, ImageView, None] = None,
    progress: bool = True,
    kind: str = "features",
    desc: Optional[str] = None,
    decode_workers: Optional[int] = None,
    slicer: Optional[Callable] = None,
    steps: Optional[Tuple[Callable, Callable[[List], np.ndarray]]] = None,
) -> FeatureSet:
    """Encode every sample of ``data`` with ``encode(list_of_pil_images) -> [n, D]``.

    Images that fail to load are skipped and listed in ``skipped`` (with the loader's own problems); a clip is
    kept when at least one frame decodes. ``view`` (name or callable) transforms each image before encoding.
    ``decode_workers`` threads decode each batch (default: the number of CPU cores, at most 4). ``slicer``
    (see :mod:`emocap.eval.slices`) maps each sample's first image to group attributes stored in ``groups``.
    ``steps`` (:func:`emocap.eval.model_access.image_steps`) replaces ``encode`` by ``prepare`` (run in the
    decode threads on each viewed frame) and ``encode`` of the prepared frames.
    """
    if decode_workers is None:
        decode_workers = min(4, os.cpu_count() or 1)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    view_fn = get_view(view) if isinstance(view, str) else view
    prepare, encode_frames = steps if steps is not None else (None, encode)
    skipped: List[Problem] = [tuple(p) for p in data.problems]
    rows, counts, labels, sources = [], [], [], []
    soft, groups = [], {}
    has_soft = any(s.soft_label is not None for s in data.samples)
    group_names = sorted({k for s in data.samples for k in (s.groups or {})})
    if any(s.subject is not None for s in data.samples):
        group_names = ["subject"] + group_names
    groups = {g: [] for g in group_names}
    sliced_rows: List[dict] = []
    bar = tqdm(total=len(data.samples), desc=desc or "encoding", unit="img", disable=not progress)
    pool = ThreadPoolExecutor(decode_workers) if decode_workers > 1 else None
    try:
        for start in range(0, len(data.samples), batch_size):
            chunk = data.samples[start:start + batch_size]
            clips, chunk_labels, chunk_sources, problems, kept, attrs = _load_batch(chunk, view_fn, pool, slicer,
                                                                                    prepare)
            n_chunk = len(chunk)
            skipped.extend(problems)
            if clips:
                frames = [im for clip in clips for im in clip]
                out = np.asarray(encode_frames(frames), dtype=np.float32)
                if out.ndim != 2 or out.shape[0] != len(frames):
                    raise ValueError(f"the encoder returned shape {out.shape} for {len(frames)} images")
                rows.append(out)
                counts.extend(len(c) for c in clips)
                labels.extend(chunk_labels)
                sources.extend(chunk_sources)
                for s, sliced in zip(kept, attrs):
                    if has_soft:
                        soft.append(s.soft_label if s.soft_label is not None else [np.nan] * len(data.classes))
                    for g in group_names:
                        groups[g].append(s.subject if g == "subject" else (s.groups or {}).get(g))
                    sliced_rows.append(sliced)
            bar.update(n_chunk)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown()
    for key in sorted({k for row in sliced_rows for k in row}):
        groups[key] = [row.get(key) for row in sliced_rows]
    dim = rows[0].shape[1] if rows else 0
    return FeatureSet(
        features=np.concatenate(rows) if rows else np.zeros((0, dim), np.float32),
        counts=np.asarray(counts, dtype=np.int64),
        labels=np.asarray(labels, dtype=np.int64),
        classes=list(data.classes),
        sources=sources,
        soft_labels=np.asarray(soft, dtype=np.float64) if has_soft else None,
        groups=groups,
        skipped=skipped,
        kind=kind,
    )


# ------------------------------------------------------------------------------------------------------ cache

def load_feature_set(cache: FeatureCache, key: str) -> Optional[FeatureSet]:
    """The cached set under ``key``, or None (missing or unreadable entries are reported and ignored)."""
    entry = cache.read(key)
    if entry is None:
        return None
    try:
        fs = FeatureSet.from_entry(*entry)
    except (KeyError, TypeError, ValueError) as e:
        cache.report(f"cache entry {cache.path(key)} is incomplete ({type(e).__name__}: {e}); recomputing it")
        return None
    if fs is None:
        cache.report(f"cache entry {cache.path(key)} does not add up (sources, labels and rows differ); "
                     "recomputing it")
    return fs


def save_feature_set(cache: FeatureCache, key: str, fs: FeatureSet, description: Optional[dict] = None):
    """Write ``fs`` under ``key`` atomically; returns the entry's path."""
    return cache.write(key, *fs.arrays_and_meta(description))


def classifier_encoder(classifier, batch_size: int) -> Tuple[Callable[[List], np.ndarray], str]:
    """``(encode, kind)`` for a classifier: its image features when it has an encoder (``encode_images`` and
    ``probs_from_features``, as :class:`emocap.ZeroShotClassifier`), else its class probabilities."""
    if hasattr(classifier, "encode_images") and hasattr(classifier, "probs_from_features"):
        return (lambda images: classifier.encode_images(images, batch_size=batch_size)), "features"
    return (lambda images: classifier.predict_proba(images, batch_size=batch_size)), "probabilities"


def encode_split(classifier, spec: RunSpec, data: BenchmarkData, cache: Optional[FeatureCache] = None) -> FeatureSet:
    """The features of ``data`` (``spec``'s split, already limited) for ``classifier``, from ``cache`` when an
    entry for exactly this content is there. Only feature encoders with a model fingerprint are cached (class
    probabilities depend on the prompts). Class names come from ``data`` (``--class-names`` may rename them)."""
    encode, kind = classifier_encoder(classifier, spec.batch_size)
    key = None
    if cache is not None and kind == "features":
        fingerprint = model_fingerprint(classifier)
        if fingerprint is not None:
            key = spec.feature_key(fingerprint, data)
            cached = load_feature_set(cache, key)
            if cached is not None:
                cached.classes = list(data.classes)
                return cached
    desc = spec.describe() + (f" [{spec.view}]" if spec.view else "")
    from .slices import get_slicer

    steps = image_steps(classifier, spec.batch_size) if kind == "features" else None
    view = get_view(spec.view, getattr(classifier, "crop_policy", None))
    fs = extract_features(encode, data, batch_size=spec.batch_size, view=view, progress=spec.progress,
                          kind=kind, desc=desc, slicer=get_slicer(spec.slices), steps=steps)
    if key is not None and len(fs):
        save_feature_set(cache, key, fs, {"model_id": str(getattr(classifier, "model_id", "")),
                                          "benchmark": spec.benchmark, "split": spec.split, "view": spec.view,
                                          "limit": spec.limit})
    return fs


def encode_benchmark(classifier, bench, data: BenchmarkData, root=None, split: Optional[str] = None,
                     batch_size: int = 64, view: Optional[str] = None, limit: Optional[int] = None,
                     cache: Optional[FeatureCache] = None, progress: bool = True,
                     slices: Optional[str] = None) -> FeatureSet:
    """:func:`encode_split` with the run given as keyword arguments (library use)."""
    spec = RunSpec(benchmark=bench.name, root=None if root is None else str(root), split=split, view=view,
                   limit=limit, slices=slices, batch_size=batch_size, progress=progress,
                   options=tuple(((data.info or {}).get("options") or {}).items()))
    return encode_split(classifier, spec, data, cache)
