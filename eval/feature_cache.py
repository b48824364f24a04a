"""The eval cache on disk: one ``.npz`` per entry, content-addressed, written atomically, checked when read.

Where it sits: :func:`emocap.eval.features.encode_split` asks it for a split's image features under the key
:meth:`emocap.eval.run_spec.RunSpec.feature_key` builds, and :mod:`emocap.eval.text_cache` keeps class text
features in the same folder. The key covers everything the entry depends on: the model's files
(:func:`folder_fingerprint`), the benchmark, split, loader options, limit, view and slices, and the content of
the sample list (:func:`sample_list_digest`: every sample's source, label, soft label, groups, and the size and
modification time (ns) of the file it is read from, plus the loader's skipped inputs). A folder whose images
were fixed, moved between classes or added therefore gets a new key and is encoded again: a stale entry is
never served. The check costs one ``stat`` per file on every run.

An entry is one ``<key>.npz`` holding the arrays plus a ``__meta__`` array (UTF-8 JSON: sources, skipped inputs,
classes, groups), read with ``allow_pickle=False``. It is written to a temporary name in the same folder,
flushed to disk and renamed over the final name, so a killed run leaves either the old entry or the new one,
never half of one. An entry that cannot be read (truncated, empty, parts that do not fit) is reported in one
line and treated as a miss; the recomputed entry replaces it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import zipfile
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np

from emocap.file_hashes import file_sha256
from emocap.safe_paths import check_relative

__all__ = ["FeatureCache", "default_cache_dir", "folder_fingerprint", "sample_list_digest", "CACHE_FORMAT"]

CACHE_FORMAT = 2  # 2: content-addressed keys, one file per entry
_META = "__meta__"
_UNREADABLE = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, json.JSONDecodeError)

_FILE_HASHES: Dict[Tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    info = path.stat()
    key = (str(path.resolve()), info.st_size, info.st_mtime_ns)
    if key not in _FILE_HASHES:
        _FILE_HASHES[key] = file_sha256(path)
    return _FILE_HASHES[key]


def folder_fingerprint(folder: Union[str, Path]) -> Optional[str]:
    """A hash of a saved model folder's weights and configs (``*.safetensors``, ``*.json``), or None if it has none.

    The config holds the preprocessing (image size, mean/std, grayscale), so this is all that determines the
    image features of a saved model; it needs neither torch nor the model loaded.
    """
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.json"))
    if not files:
        return None
    digest = hashlib.sha256(b"emocap-model-folder-v1")
    for f in files:
        digest.update(f.name.encode() + _file_sha256(f).encode())
    return digest.hexdigest()[:16]


class _FileStates:
    """``[size, mtime_ns]`` of the file a sample source is read from (memoised per path for one digest)."""

    def __init__(self):
        self.seen: Dict[str, object] = {}  # path -> [size, mtime_ns] for a file, "dir", or None

    def _stat(self, path: str):
        if path not in self.seen:
            try:
                st = os.stat(path)
            except (OSError, ValueError):
                self.seen[path] = None
            else:
                self.seen[path] = "dir" if stat.S_ISDIR(st.st_mode) else [st.st_size, st.st_mtime_ns]
        return self.seen[path]

    def of(self, source: str) -> Optional[list]:
        """The source itself, else without a ``#face``/``:line`` suffix, else the nearest file above it (the
        archive of ``archive.tar/member``, the CSV of ``table.csv:12``); None when no file backs it (hub data)."""
        text = str(source)
        for candidate in (text, text.split("#", 1)[0], text.rsplit(":", 1)[0]):
            state = self._stat(candidate)
            if isinstance(state, list):
                return state
        parent = os.path.dirname(text)
        while parent and parent != os.path.dirname(parent):
            state = self._stat(parent)
            if state is not None:
                return state if isinstance(state, list) else None  # a folder: no file above it holds the sample
            parent = os.path.dirname(parent)
        return None


def sample_list_digest(data) -> str:
    """A hash of what a ``BenchmarkData``'s features depend on: per sample its source, label, soft label, frame
    sources, subject and groups with the size and mtime of the files behind them; plus the loader's problems."""
    files = _FileStates()
    digest = hashlib.sha256(b"emocap-samples-v1")
    for s in data.samples:
        frames = list(s.frames or ())
        row = [s.source, int(s.label), s.soft_label, frames, s.subject, s.groups, files.of(s.source),
               [files.of(f) for f in frames]]
        digest.update(json.dumps(row, sort_keys=True, default=str).encode("utf-8"))
        digest.update(b"\n")
    digest.update(json.dumps([list(p) for p in data.problems], default=str).encode("utf-8"))
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """``$EMOCAP_CACHE_DIR/features``, else ``$XDG_CACHE_HOME/emocap/features``, else ``~/.cache/emocap/features``."""
    if os.environ.get("EMOCAP_CACHE_DIR"):
        return Path(os.environ["EMOCAP_CACHE_DIR"]).expanduser() / "features"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "emocap" / "features"


def _say(message: str) -> None:
    print(f"emocap eval: {message}", file=sys.stderr)


class FeatureCache:
    """Cache entries on disk (see the module docstring); ``report`` receives the one-line notices."""

    def __init__(self, folder: Union[str, Path, None] = None, report: Callable[[str], None] = _say):
        self.folder = Path(folder) if folder is not None else default_cache_dir()
        self.report = report
        self._recent: Dict[str, Tuple[Dict[str, np.ndarray], dict]] = {}
        self._broken: set = set()  # keys found unreadable in this process: reported once, then a plain miss

    def path(self, key: str) -> Path:
        """The entry's file; ``key`` must be a plain name (keys are hex digests, optionally prefixed)."""
        check_relative(key, "cache key")
        if "/" in key or "\\" in key:
            raise ValueError(f"cache key {key!r} must be a plain file name")
        return self.folder / f"{key}.npz"

    def write(self, key: str, arrays: Dict[str, np.ndarray], meta: dict) -> Path:
        """Write one entry atomically (temporary file, fsync, rename); returns its path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.path(key)
        tmp = final.with_name(f".{key}.{os.getpid()}.tmp.npz")
        payload = dict(arrays)
        payload[_META] = np.frombuffer(json.dumps(meta, default=str).encode("utf-8"), dtype=np.uint8)
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        self._recent.pop(key, None)
        self._broken.discard(key)
        return final

    def read(self, key: str) -> Optional[Tuple[Dict[str, np.ndarray], dict]]:
        """``(arrays, meta)`` of the entry, or None when it is missing or unreadable (reported, never trusted)."""
        if key in self._recent:
            return self._recent[key]
        path = self.path(key)
        if key in self._broken or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as entry:
                arrays = {name: entry[name] for name in entry.files}
            meta = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("its metadata is not an object")
        except _UNREADABLE as e:
            self._broken.add(key)
            self.report(f"cache entry {path} is unreadable ({type(e).__name__}: {e}); recomputing it")
            return None
        self._recent = {key: (arrays, meta)}  # the last entry read: a check followed by the use reads it once
        return arrays, meta
