"""The ONNX Runtime path behind ``ZeroShotClassifier(..., runtime="onnx")``, without torch, torchvision or open_clip.

Where it sits: an export folder (written by :mod:`emocap.onnx_export`, layout in :mod:`emocap.onnx_files`) ->
:meth:`OnnxTowers.load` checks the manifest (complete, hashes, not stale) and opens one ONNX Runtime CPU session per
tower -> :meth:`OnnxTowers.exported_model` reads the copied model config into an :class:`ExportedModel` (labels,
prompts, gray input, crop policy; its preprocessing is :mod:`emocap.onnx_preprocess`, its tokenizer
:mod:`emocap.onnx_tokenizer`) -> the classifier (:mod:`emocap.classifier`) runs through :class:`OnnxRuntime`, the
numpy counterpart of :class:`emocap.torch_runtime.TorchRuntime`: preprocess, encode, class weights and scores on
numpy arrays. Nothing here imports torch, so ``emocap classify --runtime onnx`` starts without it (docs/speed.md).

onnxruntime and tokenizers are imported here only (the ``onnx`` extra): when a folder is loaded, and each tower's
session and the tokenizer on first use.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from PIL import Image

from .file_hashes import file_sha256
from .model_files import CONFIG_NAME
from .onnx_files import OnnxExportError, check_manifest, read_manifest
from .onnx_preprocess import ImageTransform, UnsupportedTransform
from .onnx_tokenizer import ClipTokenizer

__all__ = ["OnnxTowers", "OnnxRuntime", "ExportedModel", "RUNTIMES"]

RUNTIMES = ("torch", "onnx")  # what ZeroShotClassifier's runtime= and `emocap classify --runtime` take


def _default_threads() -> int:
    """Intra-op threads as torch would pick them: torch's own setting when torch is already loaded, else
    ``OMP_NUM_THREADS``, else 0 (ONNX Runtime's default: one per physical core, like torch's)."""
    if "torch" in sys.modules:
        return sys.modules["torch"].get_num_threads()
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else 0


@dataclass
class ExportedModel:
    """What the classifier needs from an export's model config, torch-free: the fields and properties of
    :class:`emocap.models.EmocapModel` that do not involve the towers (which run in ONNX Runtime)."""

    model_cfg: Dict
    preprocess_cfg: Dict
    meta: Dict = field(default_factory=dict)
    model_id: str = ""
    path: Optional[Path] = None
    tokenizer_spec: Dict = field(default_factory=dict)  # the manifest's tokenizer entry

    @functools.cached_property
    def tokenizer(self) -> ClipTokenizer:
        """The export's tokenizer, loaded on first use (not at all when the stored class features serve)."""
        return ClipTokenizer.load(self.path, self.tokenizer_spec)

    @property
    def clip(self):
        raise AttributeError("an ONNX export has no open_clip module: its towers run in ONNX Runtime "
                             "(use runtime='torch' with the model folder for the module)")

    @property
    def image_size(self) -> int:
        size = self.model_cfg["vision_cfg"]["image_size"]
        return size if isinstance(size, int) else size[0]

    @property
    def gray_folded(self) -> bool:
        return self.meta.get("grayscale") == "folded"  # emocap.gray_fold.FOLDED (that module needs torch)

    @property
    def grayscale(self) -> bool:
        return bool(self.meta.get("grayscale", False)) and not self.gray_folded

    @property
    def gray_model(self) -> bool:
        return self.grayscale or self.gray_folded

    @functools.cached_property
    def preprocess(self):
        """PIL image -> the image tower's float32 [3, H, W] input (the stored open_clip eval transform)."""
        try:
            return ImageTransform.from_config(self.preprocess_cfg)
        except UnsupportedTransform:  # settings onnx_preprocess does not reproduce: open_clip's own (loads torch)
            import open_clip

            cfg = open_clip.transform.PreprocessCfg(**{k: v for k, v in self.preprocess_cfg.items()
                                                       if k in open_clip.transform._PREPROCESS_KEYS})
            torch_transform = open_clip.transform.image_transform_v2(cfg, is_train=False)
            return lambda image: torch_transform(image).numpy()


class OnnxTowers:
    """The image and text towers of one export folder, as ONNX Runtime sessions, each opened on first use (a process
    that scores the model's own labels from the stored class features never opens the text tower)."""

    def __init__(self, folder: Path, manifest: dict, paths: Dict[str, Path], options):
        self.folder = Path(folder)
        self.manifest = manifest
        self._paths = paths
        self._options = options
        self._sessions: Dict[str, object] = {}
        self.logit_scale = float(manifest["logit_scale"])

    def _session(self, tower: str):
        if tower not in self._sessions:
            import onnxruntime as ort

            self._sessions[tower] = ort.InferenceSession(str(self._paths[tower]), self._options,
                                                         providers=["CPUExecutionProvider"])
        return self._sessions[tower]

    @classmethod
    def load(cls, folder: Union[str, Path], threads: int = 0) -> "OnnxTowers":
        """Open export ``folder``. ``threads``: ONNX Runtime intra-op threads (0: as torch would use, which follows
        ``OMP_NUM_THREADS``). OnnxExportError (or StaleExportError) says what is wrong with the folder."""
        folder = Path(str(folder)[len("local-dir:"):] if str(folder).startswith("local-dir:") else folder)
        if not folder.is_dir():
            raise OnnxExportError(f"ONNX export folder {folder} does not exist (emocap export onnx MODEL --out DIR)")
        manifest = read_manifest(folder)
        paths = check_manifest(folder, manifest)
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise OnnxExportError(f"runtime onnx needs onnxruntime ({e}); pip install 'emocap[onnx]'") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or _default_threads()
        options.inter_op_num_threads = 1
        return cls(folder, manifest, paths, options)

    def exported_model(self, model_id: str = "") -> ExportedModel:
        """The export's model config (labels, prompts, preprocessing, gray input) and tokenizer, without torch."""
        config_path = self.folder / CONFIG_NAME
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            model_cfg = config["model_cfg"]
        except (OSError, json.JSONDecodeError, KeyError) as e:
            raise OnnxExportError(f"{config_path}: missing or malformed model config ({e}); export again") from None
        spec = self.manifest.get("tokenizer")
        if not spec:
            source = self.manifest.get("source", {}).get("model_id") or "MODEL"
            raise OnnxExportError(f"{self.folder}: no tokenizer in {self.folder / 'onnx_manifest.json'} (exported by "
                                  f"an older emocap); export again: emocap export onnx {source} --out {self.folder}")
        return ExportedModel(model_cfg, config.get("preprocess_cfg") or _default_preprocess_cfg(model_cfg),
                             config.get("emocap", {}), model_id or str(self.folder), self.folder, spec)

    def encode_image(self, pixels: np.ndarray) -> np.ndarray:
        """[N, D] normalised features of preprocessed pixels [N, 3, H, W] (float32)."""
        return self._session("image").run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.float32)})[0]

    def encode_text(self, tokens: np.ndarray) -> np.ndarray:
        """[N, D] normalised features of token ids [N, context length] (the tokenizer's full, padded rows)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        return self._session("text").run(None, {"tokens": np.ascontiguousarray(tokens)})[0]

    def stored_class_features(self, labels: Sequence[str], prompt_hash: str) -> Optional[np.ndarray]:
        """[C, D] class features the export stored for ``labels`` with the prompt set of hash ``prompt_hash`` (the
        model's own labels and prompts, computed at export through this runtime), or None for any other set."""
        entry = self.manifest.get("class_features")
        if not entry or entry["labels"] != list(labels) or entry["prompt_hash"] != prompt_hash:
            return None
        path = self.folder / entry["file"]
        if not path.is_file() or file_sha256(path) != entry["sha256"]:
            raise OnnxExportError(f"{path}: missing, or its sha256 differs from the manifest; export again")
        return np.asarray(json.loads(path.read_text(encoding="utf-8"))["features"], dtype=np.float32)


def _default_preprocess_cfg(model_cfg: dict) -> dict:
    """open_clip's defaults for a config without ``preprocess_cfg`` (as :func:`emocap.models.default_preprocess_cfg`)."""
    cfg = model_cfg.get("preprocess_cfg", {})
    return {"size": model_cfg["vision_cfg"]["image_size"], "mode": "RGB",
            "mean": list(cfg.get("mean", (0.5, 0.5, 0.5))), "std": list(cfg.get("std", (0.25, 0.25, 0.25))),
            "interpolation": cfg.get("interpolation", "bicubic"), "resize_mode": cfg.get("resize_mode", "shortest")}


class OnnxRuntime:
    """The classifier's numpy operations on an export: what :class:`emocap.torch_runtime.TorchRuntime` does with
    torch, on the same inputs, giving the same numbers to float rounding (features agree to 1e-5)."""

    device = "cpu"
    folded_batchnorms, channels_last = 0, False

    def __init__(self, model, towers: OnnxTowers):
        self._exported = model if isinstance(model, ExportedModel) else towers.exported_model()
        self.towers = towers
        self._transform = self._exported.preprocess  # PIL -> float32 [3, H, W]

    def inference(self):
        return contextlib.nullcontext()

    def learned_prompts(self):
        return None  # `emocap export onnx` refuses models with learned prompts

    def stored_class_features(self, labels: Sequence[str], prompt_set) -> Optional[np.ndarray]:
        return self.towers.stored_class_features(labels, prompt_set.hash)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self._transform(image)

    def encode_prepared(self, batch: List[np.ndarray]) -> np.ndarray:
        return self.towers.encode_image(np.stack(batch))

    @staticmethod
    def to_numpy(features: np.ndarray) -> np.ndarray:
        return features

    def encode_texts(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        tokenizer = self._exported.tokenizer
        return np.concatenate([self.towers.encode_text(tokenizer(list(texts[s:s + batch_size])))
                               for s in range(0, len(texts), batch_size)])

    def probs(self, features: np.ndarray, text: np.ndarray) -> np.ndarray:
        logits = (np.float32(self.towers.logit_scale) * np.asarray(features, dtype=np.float32)) @ text.T
        logits = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return logits / logits.sum(axis=-1, keepdims=True)
