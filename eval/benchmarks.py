"""Benchmark registry: each FER benchmark as data (name, loader, default split, label list), not an if/elif chain.

Flow: ``--benchmark NAME --root PATH`` -> :func:`get_benchmark` -> ``Benchmark.load(root, split)`` ->
:class:`BenchmarkData` (samples, class names, problems) -> ``emocap.eval.zeroshot.evaluate`` loads the images in
batches (:func:`load_samples`), skipping and reporting the ones that fail, and scores them.

A loader takes ``(root, split)`` and returns a :class:`BenchmarkData`. Each :class:`Sample` carries a source
string (path, or ``archive/member``), a zero-argument callable that returns an RGB PIL image (raising
:class:`emocap.images.ImageLoadError` on failure) and an integer label. ``problems`` lists ``(source, reason)``
for inputs the loader left out (malformed label rows, empty class folders, non-image files).

Adding a benchmark means writing a loader for its official layout and calling :func:`register_benchmark`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from PIL import Image

from emocap import ferplus, taxonomy
from emocap.images import IMAGE_EXTENSIONS, ImageLoadError, iter_image_files, load_image

__all__ = [
    "Sample", "BenchmarkData", "Benchmark", "BENCHMARKS", "register_benchmark", "get_benchmark",
    "benchmark_names", "load_samples", "load_ferplus", "load_imagefolder",
]

Problem = Tuple[str, str]
PathLike = Union[str, Path]


@dataclass(frozen=True)
class Sample:
    """One test image: where it comes from, how to load it, and its class index."""

    source: str
    load: Callable[[], Image.Image]
    label: int


@dataclass
class BenchmarkData:
    """What a loader returns: samples, class names (index order) and the inputs it left out."""

    samples: List[Sample]
    classes: List[str]
    problems: List[Problem] = field(default_factory=list)
    info: Dict[str, object] = field(default_factory=dict)  # protocol details recorded in results
    closers: List[Callable[[], None]] = field(default_factory=list, repr=False)

    def limit(self, n: Optional[int]) -> "BenchmarkData":
        """A copy holding only the first ``n`` samples (all when ``n`` is None)."""
        if n is None:
            return self
        if n < 1:
            raise ValueError(f"limit must be a positive number of samples, got {n}")
        return BenchmarkData(self.samples[:n], self.classes, self.problems, dict(self.info), self.closers)

    def close(self) -> None:
        """Release open archives."""
        for close in self.closers:
            close()


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark.

    Attributes:
        name: registry name (``--benchmark``).
        loader: ``loader(root, split) -> BenchmarkData`` reading the dataset's official layout.
        default_split: split used when none is given (``None``: the root itself is the split).
        labels: class names in index order, or ``None`` when they come from the data (``imagefolder``).
        splits: the accepted split names, or ``None`` for any.
        description: one line for ``--help`` and tables.
        default_prompts: prompt set used when the user gives none (``None``: the model's own).
    """

    name: str
    loader: Callable[[Path, Optional[str]], BenchmarkData]
    default_split: Optional[str]
    labels: Optional[Tuple[str, ...]] = None
    splits: Optional[Tuple[str, ...]] = None
    description: str = ""
    default_prompts: Optional[str] = None

    def resolve_split(self, split: Optional[str]) -> Optional[str]:
        split = split if split is not None else self.default_split
        if self.splits is not None and split not in self.splits:
            raise ValueError(f"benchmark {self.name!r} has splits {', '.join(self.splits)}; got {split!r}")
        return split

    def load(self, root: PathLike, split: Optional[str] = None) -> BenchmarkData:
        """Read the benchmark from ``root``; raises FileNotFoundError / ValueError naming the path when unusable."""
        if root is None or str(root).strip() == "":
            raise ValueError(f"benchmark {self.name!r} needs a data root (--root)")
        root = Path(root).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"benchmark {self.name!r}: data root {root} does not exist")
        data = self.loader(root, self.resolve_split(split))
        if self.labels is not None and list(data.classes) != list(self.labels):
            raise RuntimeError(f"loader for {self.name!r} returned classes {data.classes}, expected {list(self.labels)}")
        return data


BENCHMARKS: Dict[str, Benchmark] = {}


def register_benchmark(benchmark: Benchmark, overwrite: bool = False) -> Benchmark:
    """Add ``benchmark`` to the registry; an existing name is an error unless ``overwrite``."""
    if benchmark.name in BENCHMARKS and not overwrite:
        raise KeyError(f"benchmark {benchmark.name!r} is already registered")
    BENCHMARKS[benchmark.name] = benchmark
    return benchmark


def benchmark_names() -> List[str]:
    return sorted(BENCHMARKS)


def get_benchmark(name: Union[str, Benchmark]) -> Benchmark:
    """The registered benchmark called ``name`` (a Benchmark passes through)."""
    if isinstance(name, Benchmark):
        return name
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; registered: {', '.join(benchmark_names())}")
    return BENCHMARKS[name]


def load_samples(samples: Sequence[Sample]) -> Tuple[List[Image.Image], List[int], List[str], List[Problem]]:
    """Load a batch of samples; failures are skipped and returned as ``(source, reason)`` problems.

    Returns (images, labels, sources, problems) where the first three are aligned.
    """
    images: List[Image.Image] = []
    labels: List[int] = []
    sources: List[str] = []
    problems: List[Problem] = []
    for s in samples:
        try:
            im = s.load()
        except ImageLoadError as e:
            problems.append((s.source, e.reason))
            continue
        images.append(im)
        labels.append(s.label)
        sources.append(s.source)
    return images, labels, sources, problems


# --------------------------------------------------------------------------------------------------------- FER+

def load_ferplus(root: Path, split: Optional[str]) -> BenchmarkData:
    """FER+ (``FER2013<Split>/`` folder or ``.tar`` with ``label.csv``) under the majority-vote protocol.

    Images whose votes have no clear emotion majority are excluded by the protocol (counted in ``info``, not
    reported as problems); malformed label rows are reported as problems.
    """
    fer = ferplus.FerPlusSplit(root, split or "test")
    kept = fer.majority()
    samples = [
        Sample(f"{fer.source}/{record.name}", functools.partial(fer.load, record), int(label))
        for record, label in kept
    ]
    info = {
        "protocol": "majority",
        "source": str(fer.source),
        "n_label_rows": len(fer.records),
        "n_excluded_by_protocol": len(fer.records) - len(kept),
    }
    return BenchmarkData(samples, list(ferplus.EMOTIONS), list(fer.problems), info, [fer.close])


# --------------------------------------------------------------------------------------------------- imagefolder

def _class_name(folder: str) -> str:
    """Canonical emotion for a folder name, or the folder name itself (zero-shot on an unknown label)."""
    return taxonomy.canonical_or_none(folder) or folder


def load_imagefolder(root: Path, split: Optional[str]) -> BenchmarkData:
    """A root with one sub-folder per class (``root/<class>/**/*.png``), optionally under ``root/<split>/``.

    Folder names are mapped to canonical emotions through the taxonomy (``happy`` -> ``happiness``); names the
    taxonomy does not know are kept as given. Folders that map to the same emotion are merged. Classes are in
    sorted folder-name order (as torchvision's ImageFolder). Empty class folders and non-image files are reported.
    """
    base = root / split if split else root
    if not base.is_dir():
        what = "is not a folder" if base.exists() else "does not exist"
        raise FileNotFoundError(f"imagefolder: {base} {what}")
    folders = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"imagefolder: {base} has no class sub-folders (expected {base}/<class name>/<images>)")

    problems: List[Problem] = []
    classes: List[str] = []
    index: Dict[str, int] = {}
    merged_from: Dict[str, str] = {}
    samples: List[Sample] = []
    for folder in folders:
        files = list(iter_image_files(folder))
        for other in sorted(folder.rglob("*")):
            if other.is_file() and not other.name.startswith(".") and other.suffix.lower() not in IMAGE_EXTENSIONS:
                problems.append((str(other), "not an image file extension; ignored"))
        if not files:
            problems.append((str(folder), "class folder holds no image files; class left out"))
            continue
        name = _class_name(folder.name)
        if name not in index:
            index[name] = len(classes)
            classes.append(name)
            merged_from[name] = folder.name
        else:
            problems.append((str(folder), f"merged with folder {merged_from[name]!r} as class {name!r}"))
        samples.extend(Sample(str(f), functools.partial(load_image, f), index[name]) for f in files)
    if not samples:
        raise ValueError(f"imagefolder: no image files in any class folder under {base}")
    info = {"protocol": "folder-label", "source": str(base),
            "folders": {f.name: _class_name(f.name) for f in folders}}
    return BenchmarkData(samples, classes, problems, info)


register_benchmark(Benchmark(
    name="ferplus",
    loader=load_ferplus,
    default_split="test",
    labels=tuple(ferplus.EMOTIONS),
    splits=tuple(ferplus.SPLITS),
    description="FER+ (FER2013 relabelled by 10 annotators), 8 classes, majority-vote protocol",
))
register_benchmark(Benchmark(
    name="imagefolder",
    loader=load_imagefolder,
    default_split=None,
    labels=None,
    splits=None,
    description="any folder with one sub-folder per class; folder names mapped through the emotion taxonomy",
))
