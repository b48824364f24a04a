"""Webdataset reader (core): existing ``.tar`` shards, members grouped by sample key and read by offset.

Shared helpers: :func:`shard_files` (a folder, a file or a brace pattern), :func:`index_shard` (members grouped
as ``{key: {ext: TarInfo}}``, in archive order; hidden and extension-less names skipped) and
:func:`read_member` (one member's bytes by offset: nothing held in memory, safe from several threads).
Eval's ``webdataset`` benchmark builds on these (``emocap.eval.loaders.generic``); :func:`read_webdataset` is
the caption builder's reader: the label from ``json`` (``soft_label`` / ``label``), ``cls`` (with class names)
or ``txt``.
"""

from __future__ import annotations

import glob
import json
import tarfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from emocap import taxonomy

from .sample import ReadResult, Sample, canonical_label, sample_keys

__all__ = ["read_webdataset", "shard_files", "index_shard", "read_member", "IMAGE_KEYS"]

IMAGE_KEYS = ("png", "jpg", "jpeg", "webp", "bmp")


def shard_files(spec) -> List[Path]:
    """The shards a spec names: a folder (its ``*.tar``, sorted), one file, or a brace / glob pattern."""
    p = Path(spec)
    if p.is_dir():
        return sorted(p.glob("*.tar"))
    if p.is_file():
        return [p]
    import braceexpand

    files = sorted({Path(f) for pattern in braceexpand.braceexpand(str(spec)) for f in glob.glob(pattern)})
    if not files:
        raise FileNotFoundError(f"{spec}: no webdataset shards found")
    return files


def index_shard(shard: Path) -> Dict[str, Dict[str, tarfile.TarInfo]]:
    """``{key: {extension: member}}`` for the file members of a shard, keys in archive order
    (``dir/stem`` keeps its folder). Raises ``tarfile.TarError`` / ``OSError`` for an unreadable shard."""
    members: Dict[str, Dict[str, tarfile.TarInfo]] = {}
    with tarfile.open(shard, "r:") as tar:
        for m in tar:
            if not m.isfile():
                continue
            folder, _, base = m.name.rpartition("/")
            stem, dot, ext = base.partition(".")
            if not dot or not stem:
                continue
            members.setdefault(f"{folder}/{stem}" if folder else stem, {})[ext.lower()] = m
    return members


def read_member(shard: Path, member: tarfile.TarInfo) -> bytes:
    """One member's bytes, read by offset (a fresh file handle per call)."""
    with open(shard, "rb") as f:
        f.seek(member.offset_data)
        return f.read(member.size)


def _distribution(shard: Path, parts, class_names, mapping) -> Optional[Dict[str, float]]:
    """The label of one sample from its ``json`` / ``cls`` / ``txt`` members; ValueError for an unknown class."""
    dist = None
    if "json" in parts:
        meta = json.loads(read_member(shard, parts["json"]))
        soft = meta.get("soft_label")
        if soft:
            dist = {}
            for k, v in soft.items():
                canon = canonical_label(k, None, mapping)
                if canon is None:
                    raise ValueError(f"unknown class {k!r} in soft_label")
                dist[canon] = dist.get(canon, 0.0) + float(v)
        elif "label" in meta:
            canon = canonical_label(meta["label"], class_names, mapping)
            if canon is None:
                raise ValueError(f"unknown class {meta['label']!r}")
            dist = {canon: 1.0}
    if dist is None and "cls" in parts:
        raw = read_member(shard, parts["cls"]).decode().strip()
        canon = canonical_label(int(raw) if raw.isdigit() and class_names else raw, class_names, mapping)
        if canon is None:
            raise ValueError(f"unknown class {raw!r} (give --class-names for numeric cls)")
        dist = {canon: 1.0}
    if dist is None and "txt" in parts:
        raw = read_member(shard, parts["txt"]).decode().strip()
        canon = canonical_label(raw, None, mapping)
        if canon is None:
            raise ValueError(f"txt {raw[:40]!r} is not a class name")
        dist = {canon: 1.0}
    return dist


def read_webdataset(root: str, split: Optional[str] = None, class_names: Optional[Sequence[str]] = None,
                    label_map: Optional[str] = None, **_) -> ReadResult:
    """Existing webdataset shards: each sample's image plus ``json`` (label / soft_label), ``cls`` or ``txt``."""
    shards = shard_files(root)
    if not shards:
        raise FileNotFoundError(f"{root}: no .tar shards")
    mapping = taxonomy.benchmark_label_map(label_map) if label_map else None
    found, problems = [], []  # found: (shard, key, image member, ext, distribution)
    for shard in shards:
        try:
            members = index_shard(shard)
        except (tarfile.TarError, OSError) as e:
            problems.append((str(shard), f"unreadable shard ({e})"))
            continue
        for key, parts in members.items():
            where = f"{shard}:{key}"
            ext = next((e for e in IMAGE_KEYS if e in parts), None)
            if ext is None:
                problems.append((where, "no image member"))
                continue
            try:
                dist = _distribution(shard, parts, class_names, mapping)
            except (ValueError, UnicodeDecodeError) as e:
                problems.append((where, str(e)))
                continue
            if not dist:
                problems.append((where, "no label (json label/soft_label, cls or txt)"))
                continue
            found.append((shard, key, parts[ext], ext, dist))
    keys = sample_keys([f"{shard.stem}_{key.rsplit('/', 1)[-1]}" for shard, key, *_ in found],
                       [f"{shard}:{key}" for shard, key, *_ in found])
    samples = [
        Sample(key=sk, source_file=f"{shard}:{key}", read_bytes=(lambda s=shard, m=image: read_member(s, m)),
               image_ext=ext, distribution=dist, extra={"dataset": "webdataset", "shard": str(shard), "key": key})
        for (shard, key, image, ext, dist), sk in zip(found, keys)
    ]
    return samples, problems
