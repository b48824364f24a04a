"""Benchmark registry (eval): each FER benchmark as data (name, loader, default split, labels), no loader imported.

Flow: ``emocap eval --benchmark NAME --root PATH`` -> :func:`get_benchmark` -> ``Benchmark.load(root, split,
**options)`` -> the loader, imported on first use from its ``"module:function"`` name (as timm's model registry
does) -> :class:`~emocap.eval.samples.BenchmarkData` (items, class names, problems, protocol info) ->
``emocap.eval.features`` / ``emocap.eval.zeroshot``.

The loaders live in the package :mod:`emocap.eval.loaders` (``ferplus``, ``imagefolder``, ``in_the_wild``,
``posed``, ``video``, ``generic``, ``compound``) and import the item types (:mod:`emocap.eval.samples`), the label
maps (:mod:`emocap.eval.label_maps`) and core's dataset readers (:mod:`emocap.readers`), never this module: there
is no import circle. A loader takes ``(root, split, **options)`` and returns a ``BenchmarkData``; a wrong root or
a missing annotation file raises FileNotFoundError naming the expected path. Adding a benchmark: write its loader
in ``eval/loaders/`` and add one :class:`Benchmark` line to ``_BUILTIN`` below (or call :func:`register_benchmark`
with a callable, e.g. from a plugin). Not to be confused with the top-level ``benchmarks/`` folder, which holds
speed and ablation scripts.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

from emocap import ferplus

from .label_maps import LabelMap
from .samples import BenchmarkData

__all__ = ["Benchmark", "BENCHMARKS", "register_benchmark", "get_benchmark", "benchmark_names"]

PathLike = Union[str, Path]
LoaderRef = Union[str, Callable[..., BenchmarkData]]


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark.

    Attributes:
        name: registry name (``--benchmark``).
        loader: ``loader(root, split, **options) -> BenchmarkData`` reading the dataset's official layout, or its
            ``"package.module:function"`` name, imported on first use.
        default_split: split used when none is given (``None``: the root itself is the split).
        labels: class names in index order, or ``None`` when they come from the data (``imagefolder``).
        splits: the accepted split names, or ``None`` for any.
        description: one line for ``--help`` and tables.
        default_prompts: prompt set used when the user gives none (``None``: the model's own).
        options: names of the keyword options the loader accepts (e.g. ``frames``); recorded in ``info``.
        root_is_path: False when the root may also be a non-path id (``hf``: a hub dataset id).
    """

    name: str
    loader: LoaderRef
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

    def loader_function(self) -> Callable[..., BenchmarkData]:
        """The loader callable (importing its module the first time when it is given by name)."""
        if callable(self.loader):
            return self.loader
        module, _, function = self.loader.partition(":")
        return getattr(importlib.import_module(module), function)

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
        data = self.loader_function()(root, self.resolve_split(split), **options)
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


# ------------------------------------------------------------------------------------------ the built-in table

def _classes(key: str, first: Optional[int] = None) -> Tuple[str, ...]:
    return tuple(LabelMap.bundled(key, first).classes)


_L = "emocap.eval.loaders."
_FERPLUS = tuple(ferplus.EMOTIONS)
_FERPLUS_SPLITS = tuple(ferplus.SPLITS)
_FOLDS5 = tuple(f"fold{i}" for i in range(1, 6))
_CKPLUS_SPLITS = ("all",) + tuple(f"fold{i}" for i in range(1, 11))
_AFFECTNET_SPLITS = ("validation", "test", "train")  # test: the validation set, which is the test set

_BUILTIN = (
    # FER+ (core's FER+ reader) -------------------------------------------------------------------------------
    Benchmark("ferplus", _L + "ferplus:load_ferplus", "test", _FERPLUS, _FERPLUS_SPLITS,
              "FER+ (FER2013 relabelled by 10 annotators), 8 classes, majority-vote protocol"),
    Benchmark("ferplus-soft", _L + "ferplus:load_ferplus_soft", "test", _FERPLUS, _FERPLUS_SPLITS,
              "FER+ with all images having an emotion vote; label = vote argmax, sample carries the votes"),
    Benchmark("ferplus-compound", _L + "compound:load_ferplus_compound", "test", None, _FERPLUS_SPLITS,
              "FER+ images whose votes split between two emotions (each >= 3 votes, together >= 70%); "
              "class = the pair (e.g. 'happy and surprised'), pairs with >= 10 images",
              options=("min_votes", "min_share", "min_images", "phrase")),
    Benchmark("imagefolder", _L + "imagefolder:load_imagefolder", None, None, None,
              "any folder with one sub-folder per class; folder names mapped through the emotion taxonomy"),
    # in the wild (eval/loaders/in_the_wild.py) ----------------------------------------------------------------
    Benchmark("rafdb", _L + "in_the_wild:load_rafdb", "test", _classes("rafdb"), ("test", "train"),
              "RAF-DB basic, 7 classes, official test split (3,068)", options=("aligned",)),
    Benchmark("rafdb-compound", _L + "in_the_wild:load_rafdb_compound", "test", _classes("rafdb-compound"),
              ("test", "train"), "RAF-DB compound, 11 compound classes, official test split (792)",
              options=("aligned",)),
    Benchmark("affectnet7", _L + "in_the_wild:load_affectnet7", "validation", _classes("affectnet", 7),
              _AFFECTNET_SPLITS, "AffectNet, 7 classes, validation set as test (3,500)", options=("crop",)),
    Benchmark("affectnet8", _L + "in_the_wild:load_affectnet8", "validation", _classes("affectnet"),
              _AFFECTNET_SPLITS, "AffectNet, 8 classes, validation set as test (4,000)", options=("crop",)),
    Benchmark("fer2013", _L + "in_the_wild:load_fer2013", "test", _classes("fer2013"), ("test", "valid", "train"),
              "FER2013, 7 classes, PrivateTest (3,589) from fer2013.csv, or test/<class>/ folders"),
    Benchmark("sfew", _L + "in_the_wild:load_sfew", "val", _classes("sfew"), ("val", "train"),
              "SFEW 2.0, 7 classes, Val (436) used as test"),
    Benchmark("caer-s", _L + "in_the_wild:load_caer_s", "test", _classes("caer-s"), ("test", "train"),
              "CAER-S, 7 classes, test/<class>/ folders"),
    Benchmark("expw", _L + "in_the_wild:load_expw", "all", _classes("expw"), None,
              "ExpW, 7 classes, face crops; no official split (all, or --split FILE of image names)"),
    # posed (eval/loaders/posed.py) -----------------------------------------------------------------------------
    Benchmark("ckplus", _L + "posed:load_ckplus", "all", _classes("ckplus"), _CKPLUS_SPLITS,
              "CK+, 7 classes, last 3 frames of the 327 labelled sequences (981); fold1-10 subject-disjoint",
              options=("last_frames",)),
    Benchmark("jaffe", _L + "posed:load_jaffe", "all", _classes("jaffe"), ("all",),
              "JAFFE, 7 classes, all 213 images"),
    Benchmark("kdef", _L + "posed:load_kdef", "all", _classes("kdef"), ("all",),
              "KDEF, 7 classes, frontal images (980) by default", options=("angles",)),
    # video (eval/loaders/video.py, core's frame sampler) -------------------------------------------------------
    Benchmark("dfew", _L + "video:load_dfew", "fold1", _classes("dfew"), _FOLDS5,
              "DFEW, 7 classes, single-labelled clips, 5 folds (test of fold1 by default)", options=("frames",)),
    Benchmark("ferv39k", _L + "video:load_ferv39k", "test", _classes("ferv39k"), ("test", "train"),
              "FERV39k, 7 classes, All_scenes test set (7,847 clips)", options=("frames",)),
    Benchmark("mafw", _L + "video:load_mafw", "fold1", _classes("mafw"), _FOLDS5,
              "MAFW single-expression set, 11 classes, 5 folds (test of fold1 by default)", options=("frames",)),
    Benchmark("afew", _L + "video:load_afew", "val", _classes("afew"), ("val", "train"),
              "AFEW (EmotiW), 7 classes, Val (383 clips) used as test", options=("frames",)),
    # generic formats (eval/loaders/generic.py, core's readers) -------------------------------------------------
    Benchmark("csv", _L + "generic:load_csv", "test", None, None,
              "a CSV of path,label rows (paths relative to the root)",
              options=("labels", "path_column", "label_column", "group_columns")),
    Benchmark("webdataset", _L + "generic:load_webdataset", None, None, None,
              "a folder of webdataset .tar shards (image + json['label'] or .cls), e.g. emocap caption shards",
              options=("labels",)),
    Benchmark("hf", _L + "generic:load_hf", "test", None, None, "an HF datasets dataset (local folder or hub id)",
              options=("image_column", "label_column", "labels", "builder", "cache_dir"), root_is_path=False),
)

for _benchmark in _BUILTIN:
    register_benchmark(_benchmark)
