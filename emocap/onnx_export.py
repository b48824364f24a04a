"""``emocap export onnx``: a model's image and text towers as ONNX graphs, for the ONNX Runtime CPU path.

Where it sits: model id -> :func:`emocap.models.load_model` (torch, fp32) -> ``torch.onnx.export`` of each tower
(dynamic batch axis; the text tower takes the full context length), plus the tokenizer's vocabulary and merges as
``tokenizer.json`` (:func:`emocap.onnx_tokenizer.write_tokenizer`) and the class features of the model's own labels
and prompts, computed by the finished export (``class_features.json``) -> an export folder whose layout and manifest
:mod:`emocap.onnx_files` defines -> read back by :mod:`emocap.onnx_runtime` without torch. Preprocessing, prompts
and class weights are the classifier's (the copied model config carries them), so both runtimes share them.

The folder is written atomically: into a temporary sibling, manifest last, then renamed into place. An existing
``--out`` is replaced only when it is itself an emocap ONNX export; the installed package is never written to.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Optional, Union

import torch

from . import __version__
from .model_files import CONFIG_NAME, DEFAULT_MODEL_ID
from .model_ids import parse_model_id
from .models import EmocapModel, load_model
from .file_hashes import file_sha256
from .onnx_files import CLASS_FEATURES_FILE, FORMAT, IMAGE_FILE, MANIFEST_NAME, TEXT_FILE, OnnxExportError
from .onnx_tokenizer import write_tokenizer

__all__ = ["export_onnx", "default_out_dir", "OPSET"]

OPSET = 17


class _ImageTower(torch.nn.Module):
    def __init__(self, clip: torch.nn.Module):
        super().__init__()
        self.clip = clip

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(pixels, normalize=True).float()


class _TextTower(torch.nn.Module):
    """Tokens [N, context length] -> normalised features. The length is fixed: the TorchScript exporter bakes the
    traced sequence length into the attention reshapes, so trimmed (shorter) token batches would fail; under the
    causal mask the padding columns change nothing, so the features equal the torch path's trimmed ones."""

    def __init__(self, clip: torch.nn.Module):
        super().__init__()
        self.clip = clip

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_text(tokens, normalize=True).float()


def default_out_dir(model_id: Optional[str]) -> Path:
    """``./<model name>-onnx`` in the current folder (``./emocap-default-onnx`` for the embedded model)."""
    parsed = parse_model_id(model_id)
    if parsed.scheme == "default":
        name = "emocap-default"
    else:
        name = Path(str(parsed.value).rstrip("/")).name or "model"
    return Path.cwd() / f"{name}-onnx"


def _refuse_package_folder(out: Path) -> None:
    package = Path(__file__).resolve().parent
    resolved = out.resolve()
    if resolved == package or package in resolved.parents:
        raise OnnxExportError(f"--out {out} is inside the installed emocap package ({package}); "
                              "write the export somewhere else")


def _source_record(em: EmocapModel, model_id: Optional[str]) -> dict:
    folder = Path(em.path)
    files = {p.name: file_sha256(p) for p in sorted(folder.iterdir())
             if p.is_file() and (p.suffix == ".safetensors" or p.name == CONFIG_NAME)}
    embedded = parse_model_id(model_id).scheme == "default"
    return {"model_id": str(model_id) if model_id else DEFAULT_MODEL_ID, "embedded": embedded,
            "path": None if embedded else str(folder.resolve()), "files": files}


def _export_towers(em: EmocapModel, folder: Path) -> dict:
    """Write image.onnx and text.onnx into ``folder``; their manifest entries."""
    size = em.preprocess_cfg.get("size", em.image_size)
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    pixels = torch.zeros(2, 3, height, width)
    tokens = em.tokenizer(["a photo of a face.", "a facial expression of happiness."])
    jobs = [(IMAGE_FILE, _ImageTower(em.clip), pixels, "pixels"), (TEXT_FILE, _TextTower(em.clip), tokens, "tokens")]
    entries = {}
    for name, module, example, input_name in jobs:
        with torch.no_grad(), warnings.catch_warnings():
            # the tracer's notes on shape checks that are constant for a fixed image size and context length, and on
            # the end-of-text gather (its indices come from argmax: never negative)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Exporting aten::index operator")
            torch.onnx.export(module.eval(), (example,), str(folder / name), input_names=[input_name],
                              output_names=["features"], dynamic_axes={input_name: {0: "batch"}, "features": {0: "batch"}},
                              opset_version=OPSET, do_constant_folding=True, dynamo=False)
        entries[name.split(".")[0]] = {"file": name, "input": input_name, "sha256": file_sha256(folder / name)}
    entries["image"]["shape"] = [3, height, width]
    entries["text"]["context_length"] = int(tokens.shape[1])
    return entries


def export_onnx(model_id: Optional[str] = None, out: Union[str, os.PathLike, None] = None) -> Path:
    """Export ``model_id`` (any id :func:`emocap.models.load_model` takes; None: the embedded model) to the folder
    ``out`` (default :func:`default_out_dir`); returns the folder. See the module docstring for what it holds."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export writes through it)
    except ImportError as e:
        raise OnnxExportError(f"exporting to ONNX needs the onnx package ({e}); pip install 'emocap[onnx]'") from None
    out = Path(out) if out is not None else default_out_dir(model_id)
    _refuse_package_folder(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST_NAME).is_file())):
        raise OnnxExportError(f"--out {out} exists and is not an emocap ONNX export; give an empty or new folder")
    em = load_model(model_id)
    if em.path is None:
        raise OnnxExportError(f"{model_id}: only model folders (default, local-dir:, a folder, hf-hub:) can be exported")
    if em.meta.get("learned_prompts"):
        raise OnnxExportError(f"{em.path}: models with learned soft prompts cannot be exported to ONNX yet "
                              "(their class features need the torch text tower); use runtime torch")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; the export is an ordinary folder
    try:
        towers = _export_towers(em, staging)
        tokenizer = write_tokenizer(em.tokenizer, staging)
        shutil.copyfile(Path(em.path) / CONFIG_NAME, staging / CONFIG_NAME)
        manifest = {
            "format": FORMAT, "source": _source_record(em, model_id),
            "logit_scale": float(em.clip.logit_scale.detach().exp().float()),
            "towers": towers, "tokenizer": tokenizer,
            "opset": OPSET, "versions": {"emocap": __version__, "torch": torch.__version__},
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        manifest["class_features"] = _store_class_features(staging)
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        _replace_folder(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out


def _store_class_features(folder: Path) -> dict:
    """Class features of the model's own labels and prompts, computed by the finished export itself (the ONNX
    runtime, as ``classify --runtime onnx`` would) and stored as ``class_features.json``: a run with those labels
    then skips the text tower, and its session is never opened. Its manifest entry (labels, prompt hash, sha256)."""
    from .classifier import ZeroShotClassifier

    clf = ZeroShotClassifier.from_pretrained(str(folder), runtime="onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # labels it cannot tell apart are reported when a classifier uses them
        feats = clf.class_text_features()
    path = folder / CLASS_FEATURES_FILE
    path.write_text(json.dumps({"labels": clf.labels, "prompt_hash": clf.prompt_set.hash,
                                "features": feats.tolist()}), encoding="utf-8")
    return {"file": CLASS_FEATURES_FILE, "sha256": file_sha256(path), "labels": clf.labels,
            "prompt_hash": clf.prompt_set.hash}


def _replace_folder(staging: Path, out: Path) -> None:
    """Move the finished ``staging`` folder to ``out`` (an old export there is removed only once the new one is
    complete)."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)
