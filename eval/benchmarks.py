"""Benchmark registry: each FER benchmark as data (name, loader, default split, label list), not an if/elif chain.

Flow: ``--benchmark NAME --root PATH`` -> :func:`get_benchmark` -> ``Benchmark.load(root, split, **options)`` ->
:class:`BenchmarkData` (samples, class names, problems, protocol info) -> ``emocap.eval.features`` loads the
images in batches (:func:`load_clips`; a still image is a one-frame clip), skipping and reporting the ones that
fail, encodes them, and protocols pool clip frames with :func:`pool_frame_probs`.

A loader takes ``(root, split, **options)`` and returns a :class:`BenchmarkData`. Each :class:`Sample` carries a
source string (path, ``archive/member`` or ``file:line``), a zero-argument callable that returns an RGB PIL image
(raising :class:`emocap.images.ImageLoadError` on failure), an integer label, and optionally the vote
distribution (``soft_label``), the subject (for subject-disjoint folds) and, for a video clip, its sampled frame
sources (``frames``; then ``load`` returns a :class:`ClipFrames` list). ``problems`` lists ``(source, reason)``
for inputs the loader left out (malformed label rows, unknown label ids, missing files, empty class folders).
A wrong root or a missing annotation file raises FileNotFoundError naming the expected path.

This module holds the registry, the shared loader helpers (:class:`LabelMap`, :func:`find_file`,
:func:`read_lines`, :func:`class_folders`) and the FER+ / imagefolder loaders. The other loaders live in
:mod:`.loaders_images` (in-the-wild still images), :mod:`.loaders_posed` (CK+, JAFFE, KDEF),
:mod:`.loaders_video` (clips), :mod:`.loaders_generic` (csv, webdataset, hf) and :mod:`.compound` (FER+
two-emotion vote splits); importing this module registers them all. Adding a benchmark means writing a
loader for its official layout and calling :func:`register_benchmark`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from emocap import ferplus, taxonomy
from emocap.images import IMAGE_EXTENSIONS, ImageLoadError, iter_image_files, load_image

__all__ = [
    "Sample", "BenchmarkData", "Benchmark", "BENCHMARKS", "register_benchmark", "get_benchmark",
    "benchmark_names", "load_samples", "load_clips", "pool_frame_probs", "ClipFrames", "LabelMap",
    "load_ferplus", "load_ferplus_soft", "load_imagefolder",
]

Problem = Tuple[str, str]
PathLike = Union[str, Path]


@dataclass(frozen=True)
class Sample:
    """One test item: where it comes from, how to load it, and its class index.

    Attributes:
        source: path, ``archive/member`` or ``annotation:line`` naming the item in messages and results.
        load: zero-argument callable; an RGB PIL image, or for a clip a :class:`ClipFrames` list of them.
        label: class index into ``BenchmarkData.classes``.
        soft_label: the annotators' vote distribution over the classes (FER+ soft protocol), else None.
        frames: for a video clip, the sampled frame sources in time order (frame image paths, or the one video
            file that ``load`` decodes); None for a still image.
        subject: the person's id where the benchmark has one (CK+, JAFFE, KDEF): subject-disjoint folds.
        groups: other per-sample attributes for per-group metrics (e.g. ``{"gender": "female"}`` from a
            dataset's group annotations, or face attributes such as ``mouth_open``).
    """

    source: str
    load: Callable[[], Any]
    label: int
    soft_label: Optional[Tuple[float, ...]] = None
    frames: Optional[Tuple[str, ...]] = None
    subject: Optional[str] = None
    groups: Optional[Dict[str, str]] = field(default=None, compare=False, hash=False)

    @property
    def is_clip(self) -> bool:
        return self.frames is not None


class ClipFrames(list):
    """The decoded frames of a clip (RGB PIL images) plus ``problems`` for frames that could not be read."""

    def __init__(self, frames: Iterable[Image.Image] = (), problems: Optional[List[Problem]] = None):
        super().__init__(frames)
        self.problems: List[Problem] = list(problems or [])


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
        loader: ``loader(root, split, **options) -> BenchmarkData`` reading the dataset's official layout.
        default_split: split used when none is given (``None``: the root itself is the split).
        labels: class names in index order, or ``None`` when they come from the data (``imagefolder``).
        splits: the accepted split names, or ``None`` for any.
        description: one line for ``--help`` and tables.
        default_prompts: prompt set used when the user gives none (``None``: the model's own).
        options: names of the keyword options the loader accepts (e.g. ``frames``); recorded in ``info``.
        root_is_path: False when the root may also be a non-path id (``hf``: a hub dataset id).
    """

    name: str
    loader: Callable[..., BenchmarkData]
    default_split: Optional[str]
    labels: Optional[Tuple[str, ...]] = None
    splits: Optional[Tuple[str, ...]] = None
    description: str = ""
    default_prompts: Optional[str] = None
    options: Tuple[str, ...] = ()
    root_is_path: bool = True

    def resolve_split(self, split: Optional[str]) -> Optional[str]:
        split = split if split is not None else self.default_split
        if self.splits is not None and split not in self.splits:
            raise ValueError(f"benchmark {self.name!r} has splits {', '.join(self.splits)}; got {split!r}")
        return split

    @property
    def train_split(self) -> Optional[str]:
        """The split a linear probe or few-shot classifier trains on (``train`` when the benchmark has one)."""
        return "train" if self.splits and "train" in self.splits else None

    @property
    def val_split(self) -> Optional[str]:
        """A validation split distinct from the default (test) split, for choosing probe hyper-parameters."""
        for name in ("valid", "val", "validation"):
            if self.splits and name in self.splits and name != self.default_split:
                return name
        return None

    def load(self, root: PathLike, split: Optional[str] = None, **options) -> BenchmarkData:
        """Read the benchmark from ``root``; raises FileNotFoundError / ValueError naming the path when unusable."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            takes = ", ".join(self.options) if self.options else "no options"
            raise ValueError(f"benchmark {self.name!r} takes {takes}; got {', '.join(unknown)}")
        if root is None or str(root).strip() == "":
            raise ValueError(f"benchmark {self.name!r} needs a data root (--root)")
        path = Path(root).expanduser()
        if path.exists() or self.root_is_path:
            if not path.exists():
                raise FileNotFoundError(f"benchmark {self.name!r}: data root {path} does not exist")
            root = path
        data = self.loader(root, self.resolve_split(split), **options)
        if self.labels is not None and list(data.classes) != list(self.labels):
            raise RuntimeError(f"loader for {self.name!r} returned classes {data.classes}, expected {list(self.labels)}")
        if options:
            data.info = {**data.info, "options": {k: _jsonable(v) for k, v in sorted(options.items())}}
        return data


def _jsonable(value):
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


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
    """Load a batch of still-image samples; failures are skipped and returned as ``(source, reason)`` problems.

    Returns (images, labels, sources, problems) where the first three are aligned. Clips: :func:`load_clips`
    (which this wraps: a still image is a one-frame clip).
    """
    clips, labels, sources, problems = load_clips(samples)
    return [frames[0] for frames in clips], labels, sources, problems


def load_clips(samples: Sequence[Sample]) -> Tuple[List[List[Image.Image]], List[int], List[str], List[Problem]]:
    """Load a batch of clips (a still image counts as a one-frame clip), skipping failures as problems.

    Returns (frame lists, labels, sources, problems). A clip is kept when at least one of its frames decodes;
    the unreadable frames of a kept clip are reported as problems too.
    """
    clips: List[List[Image.Image]] = []
    labels: List[int] = []
    sources: List[str] = []
    problems: List[Problem] = []
    for s in samples:
        try:
            loaded = s.load()
        except ImageLoadError as e:
            problems.append((s.source, e.reason))
            continue
        frames = list(loaded) if s.is_clip else [loaded]
        problems.extend(getattr(loaded, "problems", []))
        if not frames:
            problems.append((s.source, "clip has no readable frame"))
            continue
        clips.append(frames)
        labels.append(s.label)
        sources.append(s.source)
    return clips, labels, sources, problems


def pool_frame_probs(frame_probs: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """Mean-pool per-frame rows ``[sum(counts), C]`` into one row per clip ``[len(counts), C]`` (float64).

    Used for frame probabilities and frame features alike; when every clip has one row the input comes back as is.
    """
    frame_probs = np.asarray(frame_probs, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    if frame_probs.shape[0] != int(counts.sum()):
        raise ValueError(f"{frame_probs.shape[0]} frame rows for clips of {counts.tolist()[:10]} frames")
    if len(counts) == 0 or np.all(counts == 1):
        return frame_probs
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.add.reduceat(frame_probs, starts, axis=0) / counts[:, None]


# ------------------------------------------------------------------------------------------ shared loader helpers

@functools.lru_cache(maxsize=1)
def _labels_json() -> dict:
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
            compound_maps = _labels_json().get("compound_benchmarks", {})
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


def find_file(bench: str, candidates: Sequence[Path], what: str, folder: bool = False) -> Path:
    """The first existing candidate; else FileNotFoundError naming the expected path (and the alternatives)."""
    for c in candidates:
        if (c.is_dir() if folder else c.is_file()):
            return c
    others = f" (or {', '.join(str(c) for c in candidates[1:])})" if len(candidates) > 1 else ""
    raise FileNotFoundError(f"{bench}: {what} not found: expected {candidates[0]}{others}")


def read_lines(path: Path) -> List[Tuple[int, str]]:
    """Non-blank lines of a text annotation file as (line number, stripped text); UTF-8, else Latin-1."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def option_int(value: object, name: str, minimum: int = 1) -> int:
    """An integer option (CLI options arrive as strings)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"option {name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"option {name} must be >= {minimum}, got {number}")
    return number


def option_bool(value: object, name: str) -> bool:
    """A yes/no option (``True``, ``"false"``, ``"0"``, ``"yes"`` ...)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "on"):
        return True
    if text in ("0", "false", "no", "n", "off"):
        return False
    raise ValueError(f"option {name} must be true or false, got {value!r}")


def class_folders(bench: str, base: Path, labels: LabelMap) -> Tuple[List[Tuple[Path, int]], List[Problem]]:
    """The class sub-folders of ``base`` matched to ``labels`` by name (case-insensitive), in native order.

    Folders that are not classes of the benchmark and expected class folders that are missing are reported as
    problems; a missing ``base`` raises FileNotFoundError naming it.
    """
    if not base.is_dir():
        raise FileNotFoundError(f"{bench}: class folders not found: expected {base}/<{'|'.join(labels.native)}>/")
    found: Dict[int, Path] = {}
    problems: List[Problem] = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        idx = labels.index(folder.name)
        if idx is None:
            problems.append((str(folder), f"not a class folder of {bench} (expected {', '.join(labels.native)}); "
                                          "ignored"))
        elif idx in found:
            problems.append((str(folder), f"second folder for class {labels.native[idx]!r}; ignored"))
        else:
            found[idx] = folder
    for idx, name in enumerate(labels.native):
        if idx not in found:
            problems.append((str(base / name), f"class folder missing: no samples of {labels.classes[idx]}"))
    if not found:
        raise FileNotFoundError(f"{bench}: no class folder under {base}; expected {base}/<{'|'.join(labels.native)}>/")
    return [(found[i], i) for i in sorted(found)], problems


def image_files(folder: Path, problems: List[Problem]) -> List[Path]:
    """Image files under ``folder`` (sorted); other files are reported as problems."""
    files = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix.lower() in IMAGE_EXTENSIONS:
            files.append(p)
        else:
            problems.append((str(p), "not an image file extension; ignored"))
    return files


def image_sample(path: Path, label: int, **extra) -> Sample:
    """A sample that loads the image file ``path``."""
    return Sample(str(path), functools.partial(load_image, path), label, **extra)


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


def load_ferplus_soft(root: Path, split: Optional[str]) -> BenchmarkData:
    """FER+ under the soft-label protocol: every image with at least one emotion vote is kept.

    The sample label is the argmax of the 8 emotion votes (first class on ties) and ``soft_label`` holds the vote
    distribution over the 8 emotions (unknown and not-a-face votes dropped), so metrics can compare to the votes.
    """
    fer = ferplus.FerPlusSplit(root, split or "test")
    samples = []
    for record in fer.records:
        dist = ferplus.soft_label(record.votes)
        if dist is None:
            continue
        samples.append(Sample(f"{fer.source}/{record.name}", functools.partial(fer.load, record),
                              int(np.argmax(dist)), soft_label=tuple(float(x) for x in dist)))
    info = {
        "protocol": "soft-votes (label = argmax of the emotion votes)",
        "source": str(fer.source),
        "n_label_rows": len(fer.records),
        "n_excluded_by_protocol": len(fer.records) - len(samples),
        "excluded_reason": "no vote for any of the 8 emotions (only unknown / not-a-face)",
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
    name="ferplus-soft",
    loader=load_ferplus_soft,
    default_split="test",
    labels=tuple(ferplus.EMOTIONS),
    splits=tuple(ferplus.SPLITS),
    description="FER+ with all images having an emotion vote; label = vote argmax, sample carries the votes",
))
register_benchmark(Benchmark(
    name="imagefolder",
    loader=load_imagefolder,
    default_split=None,
    labels=None,
    splits=None,
    description="any folder with one sub-folder per class; folder names mapped through the emotion taxonomy",
))

# The loaders of the other benchmarks register themselves on import (they import the names above).
from . import compound, loaders_generic, loaders_images, loaders_posed, loaders_video  # noqa: E402,F401
