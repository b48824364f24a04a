"""Where a model's files are, without loading it: the names of a saved model's files and the folder of a local id.

Sits under :mod:`emocap.models` (which loads models with open_clip and torch) and is imported by code that only
needs to find or fingerprint a model's files, such as ``emocap eval`` re-scoring cached features (imports of
torch and open_clip take seconds; this module imports neither).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "DEFAULT_MODEL_ID", "default_model_dir", "local_model_dir", "local_path"]

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"
DEFAULT_MODEL_ID = "default"


def default_model_dir() -> Path:
    """Folder of the embedded default model inside the installed package."""
    return Path(str(resources.files("emocap").joinpath("default_model")))


def local_model_dir(model_id: Optional[str]) -> Optional[Path]:
    """The folder of a local model id (``None``/``"default"``, ``local-dir:/path`` or a folder holding
    ``open_clip_config.json``), or None for hub and open_clip ids and for anything that is not such a folder
    (:func:`emocap.models.resolve_model_dir` explains those)."""
    if model_id is None or model_id == DEFAULT_MODEL_ID:
        folder = default_model_dir()
    elif model_id.startswith(("hf-hub:", "open_clip:")):
        return None
    else:
        folder = local_path(model_id)
    return folder if (folder / CONFIG_NAME).is_file() else None


def local_path(model_id: str) -> Path:
    """The path a local id names (``local-dir:`` stripped, ``~`` expanded, a config file's folder); unchecked."""
    path = model_id[len("local-dir:"):] if model_id.startswith("local-dir:") else model_id
    folder = Path(path).expanduser()
    if folder.is_file() and folder.name == CONFIG_NAME:
        folder = folder.parent
    return folder
