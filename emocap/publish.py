"""``emocap push``: publish a model folder to the Hugging Face hub with a generated model card.

Where it sits: the last step of the flow (train -> eval -> **push**). :func:`stage_upload` writes exactly what
is uploaded into a folder: the model's files (``open_clip_config.json``, ``open_clip_model.safetensors``,
``emocap_extra.safetensors`` when present) and a ``README.md`` card made by :mod:`emocap.model_card` from the
config and the result JSONs. ``--dry-run OUT_DIR`` stops there; a real push stages into a temporary folder and
uploads that folder with :func:`emocap.hub.push_to_hub`, so the dry run and the upload are the same files.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import List, Optional, Sequence, Union

from .model_card import CARD_NAME, render_model_card
from .model_files import CONFIG_NAME, EXTRA_TENSORS_NAME, WEIGHTS_NAME, default_model_dir, local_model_dir
from .model_ids import parse_model_id

__all__ = ["UPLOAD_NAMES", "PublishError", "model_folder", "check_repo_id", "stage_upload", "push_model"]

MODEL_FILES = (CONFIG_NAME, WEIGHTS_NAME, EXTRA_TENSORS_NAME)
UPLOAD_NAMES = MODEL_FILES + (CARD_NAME,)
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class PublishError(ValueError):
    """A model, repo id or output folder that cannot be published (the message names it and the problem)."""


def model_folder(model: str) -> Path:
    """The folder of a local model id (``default``, ``local-dir:/path`` or a folder) with its config and weights."""
    folder = local_model_dir(model)
    if folder is None:
        raise PublishError(f"model {model!r}: not a model folder (it needs {CONFIG_NAME}); push a local folder, "
                           "e.g. runs/NAME/final or default")
    if not (folder / WEIGHTS_NAME).is_file():
        raise PublishError(f"{folder}: missing {WEIGHTS_NAME}; only safetensors weights are published")
    return folder


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it has the hub's ``org/name`` form, else :class:`PublishError`."""
    if not REPO_ID.match(repo_id or "") or ".." in repo_id or len(repo_id) > 96:
        raise PublishError(f"repo id {repo_id!r}: expected ORG/NAME (letters, digits, '-', '_', '.')")
    return repo_id


def _is_previous_dry_run(out: Path, folder: Path) -> bool:
    """True when every entry of ``out`` is a plain file with an upload name and its config is this model's."""
    entries = list(out.iterdir())
    if any(e.is_symlink() or not e.is_file() or e.name not in UPLOAD_NAMES for e in entries):
        return False
    config = out / CONFIG_NAME
    return config.is_file() and config.read_bytes() == (folder / CONFIG_NAME).read_bytes()


def _prepare_out_dir(out: Path, folder: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise PublishError(f"--dry-run {out}: not a folder")
    if out.exists() and out.resolve() == folder.resolve():
        raise PublishError(f"--dry-run {out}: that is the model folder itself; choose another folder")
    if out.is_dir() and any(out.iterdir()) and not _is_previous_dry_run(out, folder):
        raise PublishError(f"--dry-run {out}: the folder is not empty and not a previous dry run of this model; "
                           "choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)


def _place(out: Path, name: str, write) -> None:
    """Write ``out/name`` through a temporary file in ``out`` and a rename (a link there is replaced, never
    followed, so nothing is written outside ``out``)."""
    tmp = out / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        write(tmp)
        os.replace(tmp, out / name)
    finally:
        if tmp.exists():
            tmp.unlink()


def stage_upload(model: str, out_dir: Union[str, Path], repo_id: str, results: Sequence[dict] = (), *,
                 notes: str = "", datasets: Sequence[str] = (), license_id: str = "apache-2.0") -> List[Path]:
    """Write into ``out_dir`` exactly the files ``emocap push`` uploads for ``model`` to ``repo_id``; returns them.

    ``out_dir`` must be new, empty, or a previous dry run of the same model (then its files are replaced and a
    file the model no longer has is removed). ``results`` are result records (:func:`emocap.model_card.
    read_result_files`); they must all be of one model."""
    import json

    check_repo_id(repo_id)
    folder = model_folder(model)
    models = sorted({str(r["model_id"]) for r in results})
    if len(models) > 1:
        raise PublishError(f"the result files hold several models ({', '.join(models)}); give the results of one")
    out = Path(out_dir)
    _prepare_out_dir(out, folder)
    config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    is_default = parse_model_id(model).scheme == "default" or folder.resolve() == default_model_dir().resolve()
    card = render_model_card(config, f"hf-hub:{repo_id}", results, name=repo_id.split("/")[1], folder=folder,
                             default_model=is_default, datasets=datasets, license_id=license_id, notes=notes)
    written = []
    for name in MODEL_FILES:
        if (folder / name).is_file():
            _place(out, name, lambda tmp, src=folder / name: shutil.copyfile(src, tmp))
            written.append(out / name)
        elif (out / name).is_file():
            (out / name).unlink()  # left by a dry run of an earlier version of this model folder
    _place(out, CARD_NAME, lambda tmp: tmp.write_text(card, encoding="utf-8"))
    return written + [out / CARD_NAME]


def push_model(model: str, repo_id: str, results: Sequence[dict] = (), *, private: bool = False,
               token: Optional[str] = None, api=None, **card_options) -> str:
    """Stage the upload in a temporary folder and upload it to ``repo_id`` (created when missing); returns the
    commit URL. ``api`` is an ``huggingface_hub.HfApi`` (default: one with ``token``, which otherwise comes
    from ``HF_TOKEN`` or ``huggingface-cli login``)."""
    from .hub import push_to_hub

    with tempfile.TemporaryDirectory(prefix="emocap-push-") as tmp:
        staged = Path(tmp) / "upload"
        stage_upload(model, staged, repo_id, results, **card_options)
        return push_to_hub(staged, repo_id, private=private, token=token, api=api,
                           commit_message=f"Upload emocap model ({Path(model_folder(model)).name})")
