"""Image features of a benchmark split, extracted once and cached: what every eval protocol starts from.

Flow: ``BenchmarkData`` (``emocap.eval.samples``) -> :func:`extract_features` (decode each batch in a thread
pool, apply an image view from :mod:`emocap.eval.views`, optional face slices from :mod:`emocap.eval.slices`,
encode) -> :class:`FeatureSet` ->
zero-shot (:mod:`emocap.eval.zeroshot`), linear probe and few-shot (:mod:`emocap.eval.probe`).

A :class:`FeatureCache` keeps one ``.npz`` (numbers only, read with ``allow_pickle=False``) plus a ``.json``
(sources, skipped inputs, classes, groups) per (model weights, benchmark, split, root, loader options, sample
limit, image view, slices). A second prompt set or another protocol on the same split then costs a matrix product instead of
a pass over the images. Entries are written to a temporary name and renamed, so an interrupted run never leaves
a half-written entry behind.

Video clips: every sampled frame gets a feature row; ``counts`` says how many rows belong to each clip (1 for
still images), and protocols pool over them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm.auto import tqdm

from .samples import BenchmarkData, Problem, load_clips, pool_frame_probs
from .views import ImageView, get_view

__all__ = [
    "FeatureSet", "FeatureCache", "extract_features", "model_fingerprint", "default_cache_dir",
    "CACHE_FORMAT",
]

CACHE_FORMAT = 1


@dataclass
class FeatureSet:
    """Encoded images of one benchmark split.

    Attributes:
        features: ``[sum(counts), D]`` float32 rows (L2-normalised image features, or class probabilities when the
            classifier exposes no feature encoder).
        counts: ``[N]`` rows per sample (1 for a still image, the decoded frames for a clip).
        labels: ``[N]`` class indices into ``classes``.
        classes: the benchmark's class names.
        sources: ``[N]`` sample sources (paths, ``archive/member``).
        soft_labels: ``[N, C]`` vote distributions, or None when the benchmark has none.
        groups: attribute name -> ``[N]`` values (for example ``subject``), for per-group metrics.
        skipped: ``(source, reason)`` for label rows and images left out.
        kind: ``"features"`` or ``"probabilities"``.
        from_cache: True when this set was read from a :class:`FeatureCache`.
    """

    features: np.ndarray
    counts: np.ndarray
    labels: np.ndarray
    classes: List[str]
    sources: List[str]
    soft_labels: Optional[np.ndarray] = None
    groups: Dict[str, List[Optional[str]]] = field(default_factory=dict)
    skipped: List[Problem] = field(default_factory=list)
    kind: str = "features"
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.labels)

    def pooled(self) -> np.ndarray:
        """One row per sample: the mean over a clip's frame rows (re-normalised for features)."""
        rows = pool_frame_probs(self.features, self.counts)
        if self.kind == "features":
            rows = rows / np.clip(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12, None)
        return rows.astype(np.float32)

    def subset(self, index: Sequence[int]) -> "FeatureSet":
        """The samples at ``index`` (sample indices, not rows)."""
        index = np.asarray(index, dtype=np.int64)
        bounds = np.concatenate([[0], np.cumsum(self.counts)])
        rows = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in index]) if len(index) else np.zeros(0, int)
        return FeatureSet(
            self.features[rows], self.counts[index], self.labels[index], self.classes,
            [self.sources[i] for i in index],
            None if self.soft_labels is None else self.soft_labels[index],
            {k: [v[i] for i in index] for k, v in self.groups.items()}, [], self.kind, self.from_cache,
        )


# ------------------------------------------------------------------------------------------------- extraction

def _load_batch(samples, view: Optional[ImageView], pool: Optional[ThreadPoolExecutor], slicer=None):
    """Decode a batch of samples (stills count as one-frame clips), in parallel threads when ``pool`` is given,
    and apply the view to every frame. Decoding does not overlap the encoder: on a small CPU the encoder's own
    threads need every core, and oversubscribing them costs more than the overlap gains."""
    def load_one(sample):
        loaded = load_clips([sample])
        attrs = slicer(loaded[0][0][0]) if slicer is not None and loaded[0] else None  # first frame, unviewed
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
            frames = [view(im) for im in c[0]] if view is not None else c[0]
            clips.append(frames)
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
) -> FeatureSet:
    """Encode every sample of ``data`` with ``encode(list_of_pil_images) -> [n, D]``.

    Images that fail to load are skipped and listed in ``skipped`` (with the loader's own problems); a clip is
    kept when at least one frame decodes. ``view`` (name or callable) transforms each image before encoding.
    ``decode_workers`` threads decode each batch (default: the number of CPU cores, at most 4). ``slicer``
    (see :mod:`emocap.eval.slices`) maps each sample's first image to group attributes stored in ``groups``.
    """
    if decode_workers is None:
        decode_workers = min(4, os.cpu_count() or 1)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    view_fn = get_view(view) if isinstance(view, str) else view
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
            clips, chunk_labels, chunk_sources, problems, kept, attrs = _load_batch(chunk, view_fn, pool, slicer)
            n_chunk = len(chunk)
            skipped.extend(problems)
            if clips:
                frames = [im for clip in clips for im in clip]
                out = np.asarray(encode(frames), dtype=np.float32)
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

_FINGERPRINTS: Dict[Tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FINGERPRINTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _FINGERPRINTS[key] = digest.hexdigest()
    return _FINGERPRINTS[key]


def folder_fingerprint(folder: Union[str, Path]) -> Optional[str]:
    """A hash of a saved model folder's weights and configs (``*.safetensors``, ``*.json``), or None if it has none.

    The config holds the preprocessing (image size, mean/std, grayscale), so this is all that determines the
    image features of a saved model; it needs neither torch nor the model loaded.
    """
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.json"))
    if not files:
        return None
    digest = hashlib.sha256(b"emocap-model-folder-v1")
    for f in files:
        digest.update(f.name.encode() + _file_sha256(f).encode())
    return digest.hexdigest()[:16]


def model_fingerprint(classifier) -> Optional[str]:
    """A hash of what determines the image features: weights, model config and preprocessing.

    Uses the classifier's own ``fingerprint`` when it has one, the saved folder's files
    (:func:`folder_fingerprint`) when the model has a folder, else the in-memory weights and transform.
    Returns None for objects without an emocap model (their outputs are not cached).
    """
    if getattr(classifier, "fingerprint", None):
        return classifier.fingerprint
    em = getattr(classifier, "model", None)
    torch_model = getattr(em, "model", None)
    if torch_model is None:
        return None
    folder = getattr(em, "path", None)
    from_folder = folder_fingerprint(folder) if folder else None
    if from_folder is not None:
        return from_folder
    digest = hashlib.sha256()
    for name, tensor in torch_model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())
    digest.update(json.dumps({"grayscale": bool(getattr(em, "grayscale", False)),
                              "preprocess": repr(getattr(em, "preprocess", None))}, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$EMOCAP_CACHE_DIR/features``, else ``$XDG_CACHE_HOME/emocap/features``, else ``~/.cache/emocap/features``."""
    if os.environ.get("EMOCAP_CACHE_DIR"):
        return Path(os.environ["EMOCAP_CACHE_DIR"]).expanduser() / "features"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "emocap" / "features"


class FeatureCache:
    """Feature sets on disk, keyed by everything that determines them (see the module docstring)."""

    def __init__(self, folder: Union[str, Path, None] = None):
        self.folder = Path(folder) if folder is not None else default_cache_dir()

    @staticmethod
    def key(fingerprint: str, benchmark: str, split: Optional[str], root, info: dict, limit: Optional[int],
            view: Optional[str], slices: Optional[str] = None) -> str:
        """The cache key (hex) of one extraction."""
        root_text = str(Path(root).expanduser().resolve()) if root is not None and Path(str(root)).exists() else str(root)
        payload = {"format": CACHE_FORMAT, "model": fingerprint, "benchmark": benchmark, "split": split,
                   "root": root_text, "options": info.get("options"), "protocol": info.get("protocol"),
                   "limit": limit, "view": view or "none", "slices": slices or "none"}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def paths(self, key: str) -> Tuple[Path, Path]:
        """The ``.npz`` (numbers) and ``.json`` (everything else) files of an entry."""
        return self.folder / f"{key}.npz", self.folder / f"{key}.json"

    def write(self, key: str, arrays: Dict[str, np.ndarray], meta: dict) -> Path:
        """Write one entry atomically (temporary names, then rename); returns the ``.npz`` path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        arrays_path, meta_path = self.paths(key)
        tmp_arrays = arrays_path.with_name(f".{arrays_path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp_arrays, **arrays)
        tmp_meta = meta_path.with_name(f".{meta_path.stem}.{os.getpid()}.tmp.json")
        tmp_meta.write_text(json.dumps(meta, default=str), encoding="utf-8")
        os.replace(tmp_meta, meta_path)
        os.replace(tmp_arrays, arrays_path)
        return arrays_path

    def has(self, key: str) -> bool:
        """Whether an entry for ``key`` exists (it may still prove unreadable on :meth:`load`)."""
        return all(p.is_file() for p in self.paths(key))

    def load(self, key: str) -> Optional[FeatureSet]:
        """The cached set for ``key``, or None (missing or unreadable entries are ignored, never trusted)."""
        arrays_path, meta_path = self.paths(key)
        if not (arrays_path.is_file() and meta_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            with np.load(arrays_path, allow_pickle=False) as arrays:
                soft = arrays["soft_labels"] if "soft_labels" in arrays.files else None
                fs = FeatureSet(arrays["features"], arrays["counts"], arrays["labels"], meta["classes"],
                                meta["sources"], soft, meta.get("groups", {}),
                                [tuple(p) for p in meta.get("skipped", [])], meta.get("kind", "features"), True)
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            return None
        if len(fs.sources) != len(fs.labels) or int(fs.counts.sum()) != fs.features.shape[0]:
            return None
        return fs

    def save(self, key: str, fs: FeatureSet, description: Optional[dict] = None) -> Path:
        """Write ``fs`` under ``key`` atomically (see :meth:`write`); returns the ``.npz`` path."""
        arrays = {"features": fs.features, "counts": fs.counts, "labels": fs.labels}
        if fs.soft_labels is not None:
            arrays["soft_labels"] = fs.soft_labels
        meta = {"classes": fs.classes, "sources": fs.sources, "groups": fs.groups,
                "skipped": [list(p) for p in fs.skipped], "kind": fs.kind, "describe": description or {}}
        return self.write(key, arrays, meta)


def classifier_encoder(classifier, batch_size: int) -> Tuple[Callable[[List], np.ndarray], str]:
    """``(encode, kind)`` for a classifier: its image features when it has an encoder (``encode_images`` and
    ``probs_from_features``, as :class:`emocap.ZeroShotClassifier`), else its class probabilities."""
    if hasattr(classifier, "encode_images") and hasattr(classifier, "probs_from_features"):
        return (lambda images: classifier.encode_images(images, batch_size=batch_size)), "features"
    return (lambda images: classifier.predict_proba(images, batch_size=batch_size)), "probabilities"


def encode_benchmark(
    classifier,
    bench,
    data: BenchmarkData,
    root=None,
    split: Optional[str] = None,
    batch_size: int = 64,
    view: Optional[str] = None,
    limit: Optional[int] = None,
    cache: Optional[FeatureCache] = None,
    progress: bool = True,
    slices: Optional[str] = None,
) -> FeatureSet:
    """The features of ``data`` (already limited) for ``classifier``, read from ``cache`` when present there.

    Only feature encoders with a model fingerprint are cached (class probabilities depend on the prompts).
    """
    encode, kind = classifier_encoder(classifier, batch_size)
    key = None
    if cache is not None and kind == "features":
        fingerprint = model_fingerprint(classifier)
        if fingerprint is not None:
            key = cache.key(fingerprint, bench.name, split, root, data.info, limit, view, slices)
            cached = cache.load(key)
            if cached is not None:
                return cached
    desc = f"{bench.name}/{split or '-'}" + (f" [{view}]" if view else "")
    from .slices import get_slicer

    fs = extract_features(encode, data, batch_size=batch_size, view=view, progress=progress, kind=kind, desc=desc,
                          slicer=get_slicer(slices))
    if key is not None and len(fs):
        cache.save(key, fs, {"model_id": str(getattr(classifier, "model_id", "")), "benchmark": bench.name,
                             "split": split, "view": view, "limit": limit})
    return fs
