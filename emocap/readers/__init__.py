"""Dataset readers (core): one reader per input format, shared by the caption builder and eval.

Flow: ``emocap caption --dataset NAME`` (``emocap.captioning.sources``) and eval's benchmark loaders
(``emocap.eval.loaders``) call the readers here; each returns ``(samples, problems)``: :class:`Sample` objects in
a fixed, deterministic order and ``(where, reason)`` problems for inputs left out (bad label rows, unknown
classes, unreadable shards, names that would lead outside the root). Nothing here imports a stage.

Formats and their modules (``READERS`` maps a name to ``"module:function"``, imported on first use so that the
optional dependencies, ``datasets`` and ``webdataset``, load only when needed):

- ``ferplus`` (:mod:`.ferplus`): the FER+ layout, votes -> distribution (reads through :mod:`emocap.ferplus`).
- ``imagefolder`` (:mod:`.imagefolder`): ``root/<class>/<images>``; only folders that map to an emotion are classes.
- ``labels`` (:mod:`.labelfile`): CSV / TSV / JSON / JSON-lines label files; rows resolved safely under the root.
- ``webdataset`` (:mod:`.webdataset`): existing ``.tar`` shards, members indexed and read by offset.
- ``hf`` (:mod:`.hf`): HF datasets (local folder or hub id), images read undecoded.
- ``video`` (:mod:`.video`): ``root/<class>/<clip>``; frames picked by :mod:`.frames` (the one frame sampler).
"""

from __future__ import annotations

import importlib
from typing import Callable, Dict, List

from .sample import Problem, ReadResult, Sample, sample_keys

__all__ = ["Sample", "Problem", "ReadResult", "sample_keys", "READERS", "reader_names", "get_reader"]

READERS: Dict[str, str] = {
    "ferplus": "emocap.readers.ferplus:read_ferplus",
    "imagefolder": "emocap.readers.imagefolder:read_imagefolder",
    "labels": "emocap.readers.labelfile:read_labelfile",
    "hf": "emocap.readers.hf:read_hf",
    "webdataset": "emocap.readers.webdataset:read_webdataset",
    "video": "emocap.readers.video:read_video",
}


def reader_names() -> List[str]:
    return sorted(READERS)


def get_reader(name: str) -> Callable[..., ReadResult]:
    """The reader function ``reader(root, split, **options) -> (samples, problems)`` for a format name."""
    if name not in READERS:
        raise ValueError(f"unknown dataset layout {name!r}; choose from {', '.join(reader_names())}")
    module, _, function = READERS[name].partition(":")
    return getattr(importlib.import_module(module), function)
