"""Safe paths (core): the one rule for every name that becomes a file path or a sample key.

Used wherever outside text turns into a path: label-file rows and archive members read under a dataset root,
tar members written by ``emocap caption export``, sample keys in caption shards, result and cache file names.
A name is accepted only if it resolves under its root (no absolute paths, no ``..`` escapes, no symlink that
leads out); otherwise :class:`UnsafePathError` names the offending text and the root. Sample keys are made
unique by construction (:func:`unique_keys`): two inputs never merge into one key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Dict, List, Sequence, Union

__all__ = ["UnsafePathError", "resolve_under", "check_relative", "safe_key", "unique_keys"]


class UnsafePathError(ValueError):
    """A name would lead outside the folder it must stay in."""


def check_relative(name: str, what: str = "path") -> PurePosixPath:
    """``name`` as a relative POSIX path with no ``..`` and no absolute or drive part, else :class:`UnsafePathError`.

    Backslashes count as separators (a Windows-made label file or archive must not escape either)."""
    text = str(name)
    if not text or "\x00" in text:
        raise UnsafePathError(f"{what} {text!r} is empty or holds a NUL byte")
    posix = PurePosixPath(text.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(text).drive or PureWindowsPath(text).is_absolute():
        raise UnsafePathError(f"{what} {text!r} is an absolute path; only paths relative to the folder are allowed")
    if ".." in posix.parts:
        raise UnsafePathError(f"{what} {text!r} climbs out of its folder with '..'")
    return posix


def resolve_under(root: Union[str, Path], name: str, what: str = "path") -> Path:
    """``root / name`` resolved (symlinks followed), refused unless it stays inside ``root``."""
    rel = check_relative(name, what)
    base = Path(root).resolve()
    target = (base / Path(*rel.parts)).resolve() if rel.parts else base
    if target != base and base not in target.parents:
        raise UnsafePathError(f"{what} {name!r} resolves to {target}, outside {base}")
    return target


def safe_key(text: str) -> str:
    """A sample key from any text: letters, digits, ``-`` and ``_`` kept, everything else ``_``.

    Not one-to-one (``x.y`` and ``x_y`` give the same key): build keys for a whole set with :func:`unique_keys`."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def unique_keys(names: Sequence[str]) -> List[str]:
    """:func:`safe_key` of each name, with keys that would collide (also when compared case-insensitively, as on
    macOS and Windows file systems) disambiguated by a short hash of the original name. Deterministic; names
    that collide with nothing keep their plain key. Equal names are an error (they are the same input twice)."""
    seen: Dict[str, str] = {}
    for name in names:
        if name in seen:
            raise ValueError(f"the same input {name!r} appears twice")
        seen[name] = safe_key(name)
    counts: Dict[str, int] = {}
    for key in seen.values():
        counts[key.lower()] = counts.get(key.lower(), 0) + 1
    keys = []
    for name in names:
        key = seen[name]
        if counts[key.lower()] > 1:
            key = f"{key}-{hashlib.sha1(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
        keys.append(key)
    return keys
