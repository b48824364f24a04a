"""Benchmark label maps (eval): a benchmark's native labels in native order and the class names they map to.

Read by the registry (``emocap.eval.registry``: each benchmark's class list) and by the loaders
(``emocap.eval.loaders``: a native id / code / folder name -> class index). Built from ``emocap/data/labels.json``
(``benchmarks`` through :func:`emocap.taxonomy.benchmark_label_map`, ``compound_benchmarks`` as given).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Dict, Optional, Tuple

from emocap import taxonomy

__all__ = ["LabelMap", "labels_json", "unknown_label"]


@functools.lru_cache(maxsize=1)
def labels_json() -> dict:
    return json.loads(resources.files("emocap").joinpath("data/labels.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class LabelMap:
    """A benchmark's native labels (ids, codes or folder names) in native order and the class names they map to.

    The class index of a sample is the position of its native label here, never a sorted folder order.
    """

    benchmark: str
    native: Tuple[str, ...]
    classes: Tuple[str, ...]

    @classmethod
    def bundled(cls, key: str, first: Optional[int] = None) -> "LabelMap":
        """The map ``key`` of ``emocap/data/labels.json``: ``benchmarks`` (canonical emotions, through
        :func:`emocap.taxonomy.benchmark_label_map`) or ``compound_benchmarks`` (names kept as given).
        ``first`` keeps only the first native labels (AffectNet-7 is ids 0-6 of AffectNet's 8)."""
        if key in taxonomy.benchmark_names():
            mapping = taxonomy.benchmark_label_map(key)
            classes = [taxonomy.canonical(v) for v in mapping.values()]
        else:
            compound_maps = labels_json().get("compound_benchmarks", {})
            if key not in compound_maps:
                raise KeyError(f"no label map {key!r} in emocap/data/labels.json")
            mapping = dict(compound_maps[key]["labels"])
            classes = list(mapping.values())
        native = list(mapping)[:first]
        return cls(key, tuple(native), tuple(classes[:len(native)]))

    @functools.cached_property
    def _index(self) -> Dict[str, int]:
        index: Dict[str, int] = {}
        for i, n in enumerate(self.native):
            index.setdefault(n, i)
            index.setdefault(n.lower(), i)
        return index

    def index(self, native: object) -> Optional[int]:
        """Class index of a native label (exact, then case-insensitive, then as an integer: ``4.0`` -> ``4``)."""
        key = str(native).strip()
        found = self._index.get(key, self._index.get(key.lower()))
        if found is None:
            try:
                number = float(key)
            except ValueError:
                return None
            if number.is_integer():
                found = self._index.get(str(int(number)))
        return found

    def describe(self) -> str:
        """``1 (surprise), 2 (fear), ...`` for messages."""
        return ", ".join(f"{n} ({c})" if n != c else n for n, c in zip(self.native, self.classes))


def unknown_label(labels: LabelMap, value: object) -> str:
    """The problem reason for a label the benchmark does not know."""
    return f"unknown label {str(value).strip()!r}; {labels.benchmark} labels are {labels.describe()}"
