"""Uploading a model folder to the Hugging Face hub (loading is ``emocap.models.load_model("hf-hub:org/repo")``).

After training and export: a model folder (open_clip hub format + emocap keys) is uploaded as it is, so
``open_clip.create_model_and_transforms("hf-hub:org/repo")`` and emocap both load the published repo.
Only the files a model needs are uploaded: the config, safetensors weights and the model card (``README.md``).

Most users publish with the ``emocap push MODEL_DIR org/repo`` command (:mod:`emocap.publish`), which writes a
fresh model card from the config and the ``emocap eval`` result files (:mod:`emocap.model_card`), stages the
files in a temporary folder and hands that folder to :func:`push_to_hub`; ``emocap push --dry-run OUT_DIR``
writes the same folder without uploading. :func:`push_to_hub` uploads a folder as it is, card included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from .models import CONFIG_NAME, WEIGHTS_NAME, ModelLoadError

__all__ = ["push_to_hub"]

UPLOAD_PATTERNS = [CONFIG_NAME, "*.safetensors", "README.md"]


def push_to_hub(
    model_dir: Union[str, Path],
    repo_id: str,
    *,
    private: bool = False,
    token: Optional[str] = None,
    commit_message: str = "Upload emocap model",
    api=None,
) -> str:
    """Upload ``model_dir`` to ``repo_id`` (created if needed); returns the commit URL.

    The folder must hold ``open_clip_config.json`` and ``open_clip_model.safetensors`` (pickled weights are
    never uploaded). ``api`` is an ``huggingface_hub.HfApi`` (default: a new one with ``token``).
    """
    folder = Path(model_dir)
    for required in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / required).is_file():
            raise ModelLoadError(f"{folder}: missing {required}; export the model first (python -m emocap.train.export)")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id, folder_path=str(folder), allow_patterns=UPLOAD_PATTERNS, commit_message=commit_message
    )
    return str(getattr(info, "commit_url", info))
