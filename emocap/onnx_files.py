"""The ONNX export folder's layout and its manifest: names, hashes, and the staleness check (no torch, no ONNX).

Where it sits: :mod:`emocap.onnx_export` writes an export folder (``emocap export onnx``) and
:mod:`emocap.onnx_runtime` reads it for ``ZeroShotClassifier(..., runtime="onnx")``; both go through this module
for what the folder holds::

    image.onnx            image tower: pixels [N, 3, H, W] float32 (the model's transform) -> features [N, D]
    text.onnx             text tower: tokens [N, context] int64 -> features [N, D] (both L2-normalised)
    tokenizer.json        the text tokenizer's vocabulary and merges (tokenizers format; :mod:`emocap.onnx_tokenizer`)
    class_features.json   the model's own labels' class features (its prompts), as the ONNX runtime computes them
    open_clip_config.json the source model's config (preprocessing, labels, prompts, gray input)
    onnx_manifest.json    written last: the logit scale, each file's sha256 (towers, tokenizer with its word pattern,
                          special ids and context length), and the source model's files and hashes

An export is **stale** when the model folder it came from still exists and one of its files no longer has the
recorded hash (the model was retrained or replaced): :func:`check_manifest` refuses it, naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

from .file_hashes import file_sha256

__all__ = ["MANIFEST_NAME", "FORMAT", "IMAGE_FILE", "TEXT_FILE", "CLASS_FEATURES_FILE", "read_manifest",
           "check_manifest", "source_folder", "StaleExportError", "OnnxExportError"]

MANIFEST_NAME = "onnx_manifest.json"
FORMAT = "emocap-onnx/1"
IMAGE_FILE = "image.onnx"
TEXT_FILE = "text.onnx"
CLASS_FEATURES_FILE = "class_features.json"


class OnnxExportError(ValueError):
    """An ONNX export folder that cannot be used (missing, incomplete, not an export); the message says why."""


class StaleExportError(OnnxExportError):
    """An ONNX export whose source model files changed after it was exported."""


def read_manifest(folder: Path) -> dict:
    """The manifest of export folder ``folder``; OnnxExportError naming the path when there is none or it is bad."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        hint = " (a model folder? export it first: emocap export onnx MODEL --out DIR)" if (
            Path(folder) / "open_clip_config.json").is_file() else ""
        raise OnnxExportError(f"{folder}: no {MANIFEST_NAME}; not a complete emocap ONNX export{hint}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise OnnxExportError(f"{path}: malformed manifest ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise OnnxExportError(f"{path}: format {manifest.get('format') if isinstance(manifest, dict) else None!r} "
                              f"is not {FORMAT!r}")
    return manifest


def source_folder(manifest: dict) -> Optional[Path]:
    """The model folder the export came from, where it is now (the embedded model: this install's copy)."""
    source = manifest.get("source", {})
    if source.get("embedded"):
        from .model_files import default_model_dir

        return default_model_dir()
    return Path(source["path"]) if source.get("path") else None


def check_manifest(folder: Path, manifest: dict) -> Dict[str, Path]:
    """``{"image": path, "text": path}`` of the tower files to run, after checking that each one is there with
    its recorded hash and that the source model has not changed since the export (StaleExportError naming the
    changed file). A source folder that no longer exists is not checked: the export folder stands alone."""
    folder = Path(folder)
    paths = {}
    for tower, entry in manifest["towers"].items():
        path = folder / entry["file"]
        if not path.is_file():
            raise OnnxExportError(f"{path}: missing (listed in {MANIFEST_NAME})")
        if file_sha256(path) != entry["sha256"]:
            raise OnnxExportError(f"{path}: sha256 differs from {MANIFEST_NAME} (changed or truncated); export again")
        paths[tower] = path
    source = source_folder(manifest)
    if source is not None and source.is_dir():
        for name, digest in manifest["source"]["files"].items():
            current = source / name
            if not current.is_file() or file_sha256(current) != digest:
                raise StaleExportError(
                    f"{folder} is stale: {current} changed (or is gone) since it was exported; export the model "
                    f"again: emocap export onnx {manifest['source'].get('model_id') or source} --out {folder}")
    return paths
