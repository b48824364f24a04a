"""HF datasets reader (core): a local folder or hub id read with ``datasets``, images kept undecoded.

Shared helpers: :func:`load_hf_split` (open one split: a local image folder through the ``imagefolder`` builder,
or ``datasets.load_dataset`` on the folder / id, or a named ``builder``), :func:`label_names` (a ClassLabel's
names) and :func:`hf_image_bytes` (the original bytes of row ``i``'s image). Eval's ``hf`` benchmark
(``emocap.eval.loaders.generic``) and the caption builder's :func:`read_hf` both use them. Needs the optional
``datasets`` package (``pip install 'emocap[captioning]'`` or ``'emocap[eval]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from emocap import taxonomy
from emocap.safe_paths import safe_key

from .sample import ReadResult, Sample, canonical_label

__all__ = ["read_hf", "load_hf_split", "label_names", "hf_image_bytes", "import_datasets"]


def import_datasets():
    try:
        import datasets
    except ImportError:
        raise ImportError("reading an HF dataset needs the datasets package: pip install 'emocap[eval]'") from None
    return datasets


def _is_plain_image_folder(root) -> bool:
    p = Path(str(root))
    return p.is_dir() and not any(p.glob("*.parquet")) and not (p / "dataset_info.json").exists()


def load_hf_split(root, split: str, builder: Optional[str] = None, cache_dir=None, auto_imagefolder: bool = True):
    """One split of an HF dataset. ``builder`` (e.g. ``imagefolder``) forces that builder with ``data_dir=root``;
    else a local folder of images (no parquet, no ``dataset_info.json``) is read with ``imagefolder`` when
    ``auto_imagefolder``, and anything else with ``load_dataset(root)``. Raises FileNotFoundError naming the
    root, ValueError naming the splits when ``split`` is not one of them."""
    datasets = import_datasets()
    where = "local folder" if Path(str(root)).exists() else "dataset id (not a local path; hub or cache)"
    try:
        if builder:
            loaded = datasets.load_dataset(str(builder), data_dir=str(root), cache_dir=cache_dir)
        elif auto_imagefolder and _is_plain_image_folder(root):
            loaded = datasets.load_dataset("imagefolder", data_dir=str(root), cache_dir=cache_dir)
        else:
            loaded = datasets.load_dataset(str(root), cache_dir=cache_dir)
    except (FileNotFoundError, ValueError, ConnectionError, OSError, datasets.exceptions.DatasetNotFoundError) as e:
        raise FileNotFoundError(f"hf: cannot load {where} {str(root)!r}: {e}") from None
    if split not in loaded:
        raise ValueError(f"hf: dataset {str(root)!r} has splits {', '.join(loaded)}; got {split!r}")
    return loaded[split]


def label_names(ds, column: str) -> Optional[List[str]]:
    """The class names of a ClassLabel column, else None."""
    names = getattr(ds.features[column], "names", None)
    return list(names) if names is not None else None


def hf_image_bytes(undecoded, i: int, column: str) -> bytes:
    """The original bytes of row ``i``'s image in a dataset whose image column is cast to ``Image(decode=False)``."""
    item = undecoded[i][column]
    if item is None:
        raise ValueError(f"row {i} has no image")
    if item.get("bytes"):
        return item["bytes"]
    return Path(item["path"]).read_bytes()


def undecoded_images(ds, column: str):
    """``ds`` with its image column left undecoded (bytes / path dicts)."""
    return ds.cast_column(column, import_datasets().Image(decode=False))


def read_hf(root: str, split: Optional[str] = None, image_column: Optional[str] = None,
            label_column: Optional[str] = None, label_map: Optional[str] = None,
            identity_column: Optional[str] = None, **_) -> ReadResult:
    """An HF dataset as samples: ``root`` is a local folder (read as ``imagefolder`` when it holds images) or a
    hub id. Optional columns: ``identity_column`` (per-identity AU references), ``valence`` / ``arousal``."""
    datasets = import_datasets()
    split = split or "train"
    ds = load_hf_split(root, split)
    features = ds.features
    image_column = image_column or next((k for k, f in features.items() if isinstance(f, datasets.Image)), None)
    if image_column is None or image_column not in features:
        raise ValueError(f"{root}: no image column (columns: {', '.join(features)}); name one with --image-column")
    label_column = label_column or next((k for k in ("label", "labels", "emotion", "expression") if k in features),
                                        None)
    if label_column is None or label_column not in features:
        raise ValueError(f"{root}: no label column (columns: {', '.join(features)}); name one with --label-column")
    if identity_column and identity_column not in features:
        raise ValueError(f"{root}: no identity column {identity_column!r} (columns: {', '.join(features)})")
    names = label_names(ds, label_column)
    mapping = taxonomy.benchmark_label_map(label_map) if label_map else None
    raw_images = undecoded_images(ds, image_column)
    identities = ds[identity_column] if identity_column else None
    affect = {k: ds[k] for k in ("valence", "arousal") if k in features}
    samples, problems = [], []
    tag = safe_key(Path(root).name or root)
    for i, raw in enumerate(ds[label_column]):
        where = f"{root}[{split}][{i}]"
        canon = canonical_label(raw, names, mapping)
        if canon is None:
            problems.append((where, f"unknown class {raw!r}"))
            continue
        values = {k: v[i] for k, v in affect.items() if v[i] is not None}
        if any(not -1.0 <= float(v) <= 1.0 for v in values.values()):
            problems.append((where, f"valence/arousal outside -1..1: {values}"))
            continue
        samples.append(Sample(
            key=f"{tag}_{split}_{i:07d}", source_file=where,
            read_bytes=(lambda i=i: hf_image_bytes(raw_images, i, image_column)), image_ext="png",
            distribution={canon: 1.0}, identity=str(identities[i]) if identities is not None else None,
            valence=values.get("valence"), arousal=values.get("arousal"),
            extra={"dataset": "hf", "root": str(root), "split": split, "index": i},
        ))
    return samples, problems
