"""Where a model's files are, without loading it: the names of a saved model's files and the folder of a local id.

Sits under :mod:`emocap.models` (which loads models with open_clip and torch) and is imported by code that only
needs to find or fingerprint a model's files, such as ``emocap eval`` re-scoring cached features (imports of
torch and open_clip take seconds; this module imports neither). Model ids are parsed by
:func:`emocap.model_ids.parse_model_id`, never here.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional, Union

from .model_ids import DEFAULT_MODEL_ID, ModelId, parse_model_id

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "EXTRA_TENSORS_NAME", "DEFAULT_MODEL_ID", "default_model_dir",
           "local_model_dir", "local_path"]

CONFIG_NAME = "open_clip_config.json"
WEIGHTS_NAME = "open_clip_model.safetensors"
EXTRA_TENSORS_NAME = "emocap_extra.safetensors"  # tensors beside the weights (learned prompts); open_clip ignores it


def default_model_dir() -> Path:
    """Folder of the embedded default model inside the installed package."""
    return Path(str(resources.files("emocap").joinpath("default_model")))


def local_model_dir(model_id: Union[str, ModelId, None]) -> Optional[Path]:
    """The folder of a local model id (``None``/``"default"``, ``local-dir:/path`` or a folder holding
    ``open_clip_config.json``), or None for hub and open_clip ids and for anything that is not such a folder
    (:func:`emocap.models.resolve_model_dir` explains those)."""
    parsed = parse_model_id(model_id)
    if not parsed.is_local:
        return None
    folder = default_model_dir() if parsed.scheme == "default" else local_path(parsed)
    return folder if (folder / CONFIG_NAME).is_file() else None


def local_path(model_id: Union[str, ModelId]) -> Path:
    """The path a local id names (``~`` expanded, a config file's folder); unchecked."""
    parsed = parse_model_id(model_id)
    if parsed.scheme == "default":
        return default_model_dir()
    folder = Path(parsed.value).expanduser()
    if folder.is_file() and folder.name == CONFIG_NAME:
        folder = folder.parent
    return folder
