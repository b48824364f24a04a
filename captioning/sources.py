"""Caption-builder inputs: ``--dataset NAME`` -> a core dataset reader -> samples with their evidence.

First step of the caption flow (**evidence** -> facts -> writer -> shards). The readers themselves live in core
(:mod:`emocap.readers`, one per format, shared with eval); this module is the caption builder's view of them:
:func:`get_source` / :func:`source_names` for the CLI, and the ``*_source`` names the builder's callers use.
A source returns ``(samples, problems)``: :class:`~emocap.readers.Sample` objects in a fixed order (so shard
assignment is stable across runs and resumes) and the ``(where, reason)`` problems found while reading (bad
rows are reported and skipped, never fatal). The media readers (``hf``, ``webdataset``, ``video``) import their
optional dependencies only when called.
"""

from __future__ import annotations

from typing import Callable, List

from emocap.readers import ReadResult, Sample, get_reader, reader_names
from emocap.readers.ferplus import read_ferplus as ferplus_source
from emocap.readers.imagefolder import read_imagefolder as imagefolder_source
from emocap.readers.labelfile import parse_label_row
from emocap.readers.labelfile import read_labelfile as labelfile_source

__all__ = ["Sample", "get_source", "source_names", "ferplus_source", "imagefolder_source", "labelfile_source",
           "hf_source", "webdataset_source", "video_source", "parse_label_row"]


def get_source(name: str) -> Callable[..., ReadResult]:
    """The reader for a dataset layout name (``ferplus``, ``imagefolder``, ``labels``, ``hf``, ``webdataset``,
    ``video``); ValueError listing the names for any other."""
    return get_reader(name)


def source_names() -> List[str]:
    return reader_names()


def hf_source(root, split=None, **options) -> ReadResult:
    """HF datasets (:func:`emocap.readers.hf.read_hf`)."""
    return get_reader("hf")(root, split, **options)


def webdataset_source(root, split=None, **options) -> ReadResult:
    """Existing webdataset shards (:func:`emocap.readers.webdataset.read_webdataset`)."""
    return get_reader("webdataset")(root, split, **options)


def video_source(root, split=None, **options) -> ReadResult:
    """Videos and frame folders (:func:`emocap.readers.video.read_video`)."""
    return get_reader("video")(root, split, **options)


