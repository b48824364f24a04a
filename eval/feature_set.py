"""The encoded images of one benchmark split (:class:`FeatureSet`): what every eval protocol scores.

Where it sits: :func:`emocap.eval.features.extract_features` builds one from a ``BenchmarkData``,
:class:`emocap.eval.feature_cache.FeatureCache` stores it, and the protocols (:mod:`emocap.eval.zeroshot`,
:mod:`emocap.eval.probe`, :mod:`emocap.eval.vocabulary`) turn it into class probabilities.

Video clips: every sampled frame gets a feature row; ``counts`` says how many rows belong to each clip (1 for
still images), and protocols pool over them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .samples import pool_frame_probs

__all__ = ["FeatureSet", "Problem"]

Problem = Tuple[str, str]


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
        from_cache: True when this set was read from a :class:`~emocap.eval.feature_cache.FeatureCache`.
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

    def arrays_and_meta(self, description: Optional[dict] = None) -> Tuple[Dict[str, np.ndarray], dict]:
        """The set as a cache entry: numbers (``features``, ``counts``, ``labels``, ``soft_labels``) and the rest."""
        arrays = {"features": self.features, "counts": self.counts, "labels": self.labels}
        if self.soft_labels is not None:
            arrays["soft_labels"] = self.soft_labels
        meta = {"classes": self.classes, "sources": self.sources, "groups": self.groups,
                "skipped": [list(p) for p in self.skipped], "kind": self.kind, "describe": description or {}}
        return arrays, meta

    @classmethod
    def from_entry(cls, arrays: Dict[str, np.ndarray], meta: dict) -> Optional["FeatureSet"]:
        """The set stored by :meth:`arrays_and_meta`, or None when the parts do not fit together."""
        fs = cls(arrays["features"], arrays["counts"], arrays["labels"], list(meta["classes"]), list(meta["sources"]),
                 arrays.get("soft_labels"), meta.get("groups", {}), [tuple(p) for p in meta.get("skipped", [])],
                 meta.get("kind", "features"), True)
        if len(fs.sources) != len(fs.labels) or len(fs.counts) != len(fs.labels) \
                or int(fs.counts.sum()) != fs.features.shape[0]:
            return None
        return fs
