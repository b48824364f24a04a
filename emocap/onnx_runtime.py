"""The ONNX Runtime towers behind ``ZeroShotClassifier(..., runtime="onnx")``.

Where it sits: an export folder (written by :mod:`emocap.onnx_export`, layout in :mod:`emocap.onnx_files`) ->
:meth:`OnnxTowers.load` checks the manifest (complete, hashes, not stale) and opens one ONNX Runtime CPU session per
tower -> the classifier preprocesses, tokenises, builds class weights and scores exactly as on the torch path, and
calls :meth:`OnnxTowers.encode_image` / :meth:`OnnxTowers.encode_text` where the torch path runs the open_clip
module. The model's weights are never loaded in torch: :meth:`OnnxTowers.model_without_weights` builds the
config's module on torch's ``meta`` device (no memory, no init cost) only for its transforms and tokenizer.

onnxruntime is imported here only, when a folder is loaded (the ``onnx`` extra; the light install lacks it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

import numpy as np
import torch

from .model_files import CONFIG_NAME
from .models import EmocapModel, read_model_config, build_from_config, check_model_config
from .onnx_files import OnnxExportError, check_manifest, read_manifest

__all__ = ["OnnxTowers", "RUNTIMES"]

RUNTIMES = ("torch", "onnx")  # what ZeroShotClassifier's runtime= and `emocap classify --runtime` take


class OnnxTowers:
    """The image and text towers of one export folder, as ONNX Runtime sessions."""

    def __init__(self, folder: Path, manifest: dict, sessions: Dict[str, object]):
        self.folder = Path(folder)
        self.manifest = manifest
        self._sessions = sessions
        self.logit_scale = float(manifest["logit_scale"])

    @classmethod
    def load(cls, folder: Union[str, Path], threads: int = 0) -> "OnnxTowers":
        """Open export ``folder``. ``threads``: ONNX Runtime intra-op threads (0: as
        many as torch uses, which follows ``OMP_NUM_THREADS``). OnnxExportError (or StaleExportError) says
        what is wrong with the folder."""
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
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        sessions = {tower: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                    for tower, path in paths.items()}
        return cls(folder, manifest, sessions)

    def model_without_weights(self, model_id: str = "") -> EmocapModel:
        """The export's model (config, transforms, tokenizer, emocap keys) with its module on the ``meta`` device:
        everything the classifier needs except the towers, which run here."""
        config_path = self.folder / CONFIG_NAME
        config = read_model_config(self.folder)
        check_model_config(config["model_cfg"], str(config_path))
        with torch.device("meta"):
            em = build_from_config(config["model_cfg"], model_id=model_id or str(self.folder),
                                   meta=config.get("emocap", {}), preprocess_cfg=config.get("preprocess_cfg") or None)
        em.path = self.folder
        return em

    def encode_image(self, pixels: np.ndarray) -> np.ndarray:
        """[N, D] normalised features of preprocessed pixels [N, 3, H, W] (float32)."""
        session = self._sessions["image"]
        return session.run(None, {"pixels": np.ascontiguousarray(pixels, dtype=np.float32)})[0]

    def encode_text(self, tokens: np.ndarray) -> np.ndarray:
        """[N, D] normalised features of token ids [N, context length] (the tokenizer's full, padded rows)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        return self._sessions["text"].run(None, {"tokens": np.ascontiguousarray(tokens)})[0]
