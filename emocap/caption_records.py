"""Caption record format (core): the one module that writes and reads a captioned sample of a webdataset shard.

``emocap caption`` (``emocap.captioning.shards``) writes each sample with :func:`make_record`; training
(``emocap.train.data`` / ``streaming``), eval's webdataset loader and the caption stats/export read it back with
:func:`parse_record`, :func:`record_image` / :func:`image_member`, :func:`record_soft_label` and
:func:`record_captions`. A sample is three tar members sharing one key:

- ``<key>.<ext>``: the image (``png`` for face crops; the original bytes and extension otherwise);
- ``<key>.txt``: the global caption (what open_clip's own webdataset loader reads);
- ``<key>.json``: the record: ``key``, ``source``, ``image_size``, ``label`` (dominant emotion), ``soft_label``
  (distribution), ``captions`` (``global``, ``local`` list, ``summary``), ``writer``, ``facts`` and, when present,
  ``writer_fallback``, ``face`` and ``identity``. Keys are sorted and non-ASCII kept, so equal inputs give equal
  bytes.
"""

from __future__ import annotations

import json
from typing import Dict, Mapping, Optional, Sequence, Tuple

__all__ = [
    "IMAGE_EXTS", "CAPTION_PARTS", "make_record", "parse_record", "image_member", "record_image",
    "record_soft_label", "record_label", "record_captions", "split_member_name",
]

IMAGE_EXTS: Tuple[str, ...] = ("png", "jpg", "jpeg", "webp", "bmp")
CAPTION_PARTS: Tuple[str, ...] = ("global", "local", "summary")


def make_record(
    *, key: str, image_ext: str, image: bytes, source: Mapping[str, object], image_size: Sequence[int],
    label: str, soft_label: Mapping[str, float], captions: Mapping[str, object], facts: Mapping[str, object],
    face: Optional[Mapping[str, object]] = None, identity: Optional[str] = None,
) -> Dict[str, object]:
    """The webdataset sample (``__key__``, image, ``txt``, ``json`` members as bytes) of one captioned image.

    ``captions`` holds ``global``, ``local`` and ``summary``, plus ``writer`` and ``fallback_reason`` when a model
    writer fell back to templates."""
    record = {
        "key": key,
        "source": dict(source),
        "image_size": list(image_size),
        "label": label,
        "soft_label": soft_label,
        "captions": {k: captions[k] for k in CAPTION_PARTS},
        "writer": captions.get("writer", "unknown"),
        "facts": facts,
    }
    if captions.get("fallback_reason"):
        record["writer_fallback"] = captions["fallback_reason"]
    if face is not None:
        record["face"] = face
    if identity:
        record["identity"] = identity
    return {
        "__key__": key,
        image_ext: image,
        "txt": str(captions["global"]).encode("utf-8"),
        "json": json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8"),
    }


def parse_record(data: bytes, where: str = "caption record") -> dict:
    """The ``<key>.json`` member as a dict; ``ValueError`` naming ``where`` when it is not a JSON object."""
    try:
        record = json.loads(data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{where}: unreadable JSON record ({e})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: the JSON record is not an object")
    return record


def image_member(sample: Mapping[str, object]) -> Optional[str]:
    """The image extension present in a webdataset sample dict (``png`` first), or None."""
    return next((ext for ext in IMAGE_EXTS if ext in sample), None)


def record_image(sample: Mapping[str, object]) -> Optional[Tuple[str, bytes]]:
    """``(extension, image bytes)`` of a webdataset sample dict, or None when it holds no image."""
    ext = image_member(sample)
    return None if ext is None else (ext, sample[ext])


def record_label(record: Mapping[str, object]):
    """The dominant label of a record (None when it has none)."""
    return record.get("label")


def record_soft_label(record: Mapping[str, object]) -> Dict[str, float]:
    """Label -> probability: the record's ``soft_label``, else all mass on its ``label``."""
    return dict(record.get("soft_label", {record["label"]: 1.0}))


def record_captions(record: Mapping[str, object]) -> Dict[str, object]:
    """``{"global", "local", "summary"}`` of a record (``KeyError`` when it has no captions)."""
    return record["captions"]


def split_member_name(name: str) -> Tuple[str, str]:
    """A tar member name -> ``(key, extension)`` by webdataset's rule: the key runs to the first dot of the file
    name (folders kept), the extension is the rest; ``("", "")`` for names without one."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    if not dot or not stem:
        return "", ""
    return (f"{folder}/{stem}" if folder else stem), ext
