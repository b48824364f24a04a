"""File hashes (core): the one sha256-of-a-file helper, read in 1 MiB blocks.

Used where a file's content is checked or keys a result: training checkpoint manifests
(:mod:`emocap.train.checkpoints`), ONNX export manifests (:mod:`emocap.onnx_files`) and eval's model fingerprints
(:mod:`emocap.eval.feature_cache`).
"""

from __future__ import annotations

import hashlib
import os
from typing import Union

__all__ = ["file_sha256"]


def file_sha256(path: Union[str, os.PathLike]) -> str:
    """Hex sha256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
