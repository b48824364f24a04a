"""Generic benchmark loaders: a ``path,label`` CSV, a folder of webdataset ``.tar`` shards, and HF datasets.

Place in the flow: ``emocap.eval.registry`` names ``csv``, ``webdataset`` and ``hf`` with the loaders here;
``Benchmark.load`` imports and calls them and ``emocap.eval.zeroshot.evaluate`` scores the result. They read data
that is not one of the named benchmarks, e.g. emocap's own caption shards (``captioning/`` writes ``<key>.png`` +
``<key>.json`` with ``json["label"]``) or an HF ImageFolder. The formats are read by core's readers
(:mod:`emocap.readers.labelfile`, :mod:`emocap.readers.webdataset`, :mod:`emocap.readers.hf`); this module fixes
the class list and maps labels to class indices.

Class order is fixed, never the sorted folder order: the ``labels`` option (names in index order, comma
separated, or a bundled label set such as ``basic7``) when given; else the labels found, canonical emotions in
the taxonomy's order (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, ...), then integer
ids in numeric order, then other names in order of appearance. Label names map to canonical emotions through
:mod:`emocap.taxonomy` (``happy`` -> ``happiness``). Rows with missing images or unknown labels are reported;
CSV rows whose path would lead outside the root (absolute, ``..``) are refused as problems and never read.
"""

from __future__ import annotations

import functools
import tarfile
from pathlib import Path
from typing import List, Optional, Sequence, Union

from emocap import taxonomy
from emocap.caption_records import parse_record, record_label
from emocap.images import IMAGE_EXTENSIONS, ImageLoadError, image_from_bytes, load_image
from emocap.readers import hf as hf_reader
from emocap.readers.labelfile import listed_image, read_table
from emocap.readers.webdataset import index_shard, read_member, shard_files

from ..label_maps import labels_json
from ..samples import BenchmarkData, BenchmarkSample, Problem
from .common import find_file, image_sample

__all__ = ["ClassResolver", "load_csv", "load_webdataset", "load_hf"]

_IMAGE_EXTS = tuple(e.lstrip(".") for e in IMAGE_EXTENSIONS)


def _name(value: object) -> str:
    text = str(value).strip()
    return taxonomy.canonical_or_none(text) or text


class ClassResolver:
    """Fixes the class list of a generic dataset and maps raw label values (names or integer ids) onto it."""

    def __init__(self, values: Sequence[object], labels: Union[None, str, Sequence[str]] = None):
        self.explicit = labels is not None and labels != ""
        if self.explicit:
            if isinstance(labels, str):
                known = labels_json()["label_sets"]
                names = list(known[labels]) if labels in known else [x for x in labels.split(",") if x.strip()]
            else:
                names = list(labels)
            self.classes = taxonomy.label_set([_name(x) for x in names])
        else:
            order = list(labels_json()["emotions"])
            found = list(dict.fromkeys(_name(v) for v in values if v is not None and str(v).strip() != ""))
            canon = sorted((n for n in found if n in order), key=order.index)
            ids = sorted((n for n in found if n not in order and n.lstrip("-").isdigit()), key=int)
            self.classes = canon + ids + [n for n in found if n not in canon and n not in ids]
        self._pos = {c: i for i, c in enumerate(self.classes)}

    def index(self, value: object) -> Optional[int]:
        """Class index of a raw label; an integer indexes the explicit ``labels`` list when one was given."""
        if value is None:
            return None
        if self.explicit and isinstance(value, int) and not isinstance(value, bool):
            return value if 0 <= value < len(self.classes) else None
        return self._pos.get(_name(value))

    def reason(self, value: object) -> str:
        return f"label {value!r} is not one of the classes {', '.join(self.classes)}"


# ------------------------------------------------------------------------------------------------------- csv

def load_csv(root: Path, split: Optional[str], labels=None, path_column="path", label_column="label",
             group_columns=None) -> BenchmarkData:
    """A CSV with ``path,label`` columns (names configurable), image paths relative to the root folder.

    The CSV is the root itself when the root is a file, else ``<root>/<split>.csv`` (default ``test.csv``) or the
    split given as a path to a CSV. ``group_columns`` (comma-separated names, e.g. ``gender,age``) are group
    annotations: results then carry WAR/UAR per value of each (empty cells stay out of that group's metrics).
    """
    groups = [g.strip() for g in str(group_columns).split(",") if g.strip()] if group_columns else []
    if root.is_file():
        csv_path, base = root, root.parent
    else:
        split = split or "test"
        given = Path(split).expanduser()
        candidates = [root / f"{split}.csv", root / given, given] if not given.is_absolute() else [given]
        csv_path, base = find_file("csv", candidates, "csv file"), root
    header, rows = read_table(csv_path)
    missing = [c for c in (path_column, label_column, *groups) if c not in header]
    if missing:
        raise ValueError(f"csv: {csv_path} lacks the column(s) {', '.join(missing)} (header: {', '.join(header)})")
    resolver = ClassResolver([row.get(label_column) for _, row in rows], labels)
    samples: List[BenchmarkSample] = []
    problems: List[Problem] = []
    for lineno, row in rows:
        where = f"{csv_path}:{lineno}"
        rel, value = (row.get(path_column) or "").strip(), (row.get(label_column) or "").strip()
        if not rel or not value:
            problems.append((where, f"empty {path_column if not rel else label_column}"))
            continue
        idx = resolver.index(value)
        if idx is None:
            problems.append((where, resolver.reason(value)))
            continue
        try:
            path = listed_image(base, rel, where)
        except ValueError as e:
            problems.append((where, str(e)))
            continue
        if not path.is_file():
            problems.append((str(base / rel), f"image listed in {where} not found"))
            continue
        extra = {"groups": {g: (row.get(g) or "").strip() or None for g in groups}} if groups else {}
        samples.append(image_sample(base / rel, idx, **extra))
    info = {"protocol": "all rows", "annotation": str(csv_path), "n_kept": len(samples),
            "class_order": "labels option" if resolver.explicit else "taxonomy order"}
    return BenchmarkData(samples, resolver.classes, problems, info)


# ------------------------------------------------------------------------------------------------ webdataset

def _soft(record: dict, resolver: ClassResolver):
    dist = record.get("soft_label")
    if not isinstance(dist, dict):
        return None
    vec = [0.0] * len(resolver.classes)
    for name, p in dist.items():
        idx = resolver.index(name)
        if idx is not None and isinstance(p, (int, float)):
            vec[idx] += float(p)
    total = sum(vec)
    return tuple(v / total for v in vec) if total > 0 else None


def _shard_entries(shard: Path, problems: List[Problem]) -> list:
    """(shard, image member, raw label, record) per labelled sample of one shard; the rest as problems."""
    try:
        groups = index_shard(shard)
    except (tarfile.TarError, OSError) as e:
        problems.append((str(shard), f"not a readable tar shard ({e})"))
        return []
    entries = []
    for key, members in groups.items():
        where = f"{shard}/{key}"
        image = next((members[e] for e in _IMAGE_EXTS if e in members), None)
        if image is None:
            problems.append((where, f"no image member (found {', '.join(sorted(members))})"))
            continue
        record, raw = {}, None
        try:
            if "json" in members:
                record = parse_record(read_member(shard, members["json"]), where)
                raw = record_label(record)
            elif "cls" in members:
                raw = int(read_member(shard, members["cls"]).decode("utf-8").strip())
        except (ValueError, UnicodeDecodeError) as e:
            problems.append((where, f"unreadable label member ({e})"))
            continue
        if raw is None or str(raw).strip() == "":
            problems.append((where, "no label: expected json['label'] or a .cls member"))
            continue
        entries.append((shard, image, raw, record))
    return entries


def load_webdataset(root: Path, split: Optional[str], labels=None) -> BenchmarkData:
    """A folder (``<root>`` or ``<root>/<split>``) of webdataset ``.tar`` shards, or one shard: each sample is an
    image member (``<key>.png``/``.jpg``/...) with its label in ``<key>.json`` (``json["label"]``, and the vote
    distribution in ``json["soft_label"]`` when present, as in emocap caption shards) or ``<key>.cls``."""
    if root.is_file():
        shards = [root]
    else:
        base = root / split if split else root
        if not base.is_dir():
            raise FileNotFoundError(f"webdataset: split folder not found: expected {base}/*.tar")
        shards = shard_files(base)
        if not shards:
            raise FileNotFoundError(f"webdataset: no .tar shards: expected {base}/*.tar")
    problems: List[Problem] = []
    entries = [e for shard in shards for e in _shard_entries(shard, problems)]
    resolver = ClassResolver([e[2] for e in entries], labels)
    samples: List[BenchmarkSample] = []
    for shard, image, raw, record in entries:
        idx = resolver.index(raw)
        source = f"{shard}/{image.name}"
        if idx is None:
            problems.append((source, resolver.reason(raw)))
            continue
        read = functools.partial(read_member, shard, image)
        samples.append(BenchmarkSample(source, functools.partial(image_from_bytes, read, source), idx,
                                       soft_label=_soft(record, resolver)))
    info = {"protocol": "all samples", "shards": [str(s) for s in shards], "n_kept": len(samples),
            "class_order": "labels option" if resolver.explicit else "taxonomy order"}
    return BenchmarkData(samples, resolver.classes, problems, info)


# ------------------------------------------------------------------------------------------------ HF datasets

def _hf_item_loader(ds, column: str):
    """``load(i, source)`` for row ``i``'s image: original bytes for an Image column, else the value as given."""
    datasets = hf_reader.import_datasets()
    if isinstance(ds.features[column], datasets.Image):
        undecoded = hf_reader.undecoded_images(ds, column)
        return lambda i, source: image_from_bytes(functools.partial(hf_reader.hf_image_bytes, undecoded, i, column),
                                              source)

    def load_value(i: int, source: str):
        value = ds[i][column]
        if value is None:
            raise ImageLoadError(source, "no image in this row")
        return load_image(value, source=source)

    return load_value


def load_hf(root: Union[Path, str], split: Optional[str], image_column="image", label_column="label", labels=None,
            builder=None, cache_dir=None) -> BenchmarkData:
    """An HF dataset: ``datasets.load_dataset`` on a local folder (an ImageFolder, parquet files, ...; ``builder``
    e.g. ``imagefolder`` forces the builder with ``data_dir=root``) or a hub id (cached or online). The image and
    label columns are options; a ClassLabel column gives the label names, which map through the taxonomy."""
    split = split or "test"
    ds = hf_reader.load_hf_split(root, split, builder=builder, cache_dir=cache_dir, auto_imagefolder=False)
    missing = [c for c in (image_column, label_column) if c not in ds.column_names]
    if missing:
        raise ValueError(f"hf: dataset {str(root)!r} has no column(s) {', '.join(missing)} "
                         f"(columns: {', '.join(ds.column_names)}); set image_column / label_column")
    names = hf_reader.label_names(ds, label_column)
    values = list(ds[label_column])
    raw = [names[v] if names is not None and isinstance(v, int) and 0 <= v < len(names) else v for v in values]
    resolver = ClassResolver(raw, labels)
    load = _hf_item_loader(ds, image_column)
    samples: List[BenchmarkSample] = []
    problems: List[Problem] = []
    for i, value in enumerate(raw):
        source = f"{root}[{split}][{i}]"
        idx = resolver.index(value)
        if idx is None:
            problems.append((source, resolver.reason(value)))
            continue
        samples.append(BenchmarkSample(source, functools.partial(load, i, source), idx))
    info = {"protocol": f"{split} split", "dataset": str(root), "builder": builder, "n_kept": len(samples),
            "label_names": list(names) if names is not None else None,
            "class_order": "labels option" if resolver.explicit else "taxonomy order"}
    return BenchmarkData(samples, resolver.classes, problems, info)
