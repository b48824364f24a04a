"""The torch path behind :class:`emocap.classifier.ZeroShotClassifier` (``runtime="torch"``, the default).

Where it sits: the classifier (:mod:`emocap.classifier`, torch-free itself) keeps labels, prompts, caches, face
framing and result shapes, and hands every tensor operation to a runtime object: this module's
:class:`TorchRuntime` (the open_clip module on a torch device: the model's stored transform, the towers, class
weights, softmax scores, all as torch tensors) or :class:`emocap.onnx_runtime.OnnxRuntime` (the same on numpy and
ONNX Runtime). Importing this module imports torch and open_clip; the classifier does so only for this runtime.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from .inference import optimize_for_inference
from .learned_prompts import LearnedPrompts
from .models import EmocapModel, encode_text_trimmed

__all__ = ["TorchRuntime", "pick_device"]


def pick_device(device) -> torch.device:
    """``device`` as a torch device (default: cuda when available, else cpu); ValueError in one line when it is not
    a device name or names a GPU this machine does not have."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        picked = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {device!r} is not a device name (cpu, cuda, cuda:1, mps): {e}") from None
    if picked.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available on this machine; use cpu")
        if picked.index is not None and picked.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if picked.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available on this machine; use cpu")
    return picked


class TorchRuntime:
    """The classifier's tensor operations on a loaded :class:`~emocap.models.EmocapModel`."""

    def __init__(self, model: EmocapModel, device=None, optimize: bool = False):
        self.model = model
        self.device = pick_device(device)
        model.clip.to(self.device).eval()
        self.folded_batchnorms, self.channels_last = (
            optimize_for_inference(model.clip, self.device) if optimize else (0, False))

    @staticmethod
    def inference():
        return torch.inference_mode()

    def learned_prompts(self) -> Optional[LearnedPrompts]:
        return LearnedPrompts.from_model(self.model)

    @staticmethod
    def stored_class_features(labels: Sequence[str], prompt_set) -> None:
        return None  # a model folder stores no class features: computed from its prompts

    def learned_text_features(self, learned: LearnedPrompts, labels: Sequence[str]) -> torch.Tensor:
        return learned.text_features(self.model.clip, self.model.tokenizer, labels)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.model.preprocess(image)

    @torch.inference_mode()
    def encode_prepared(self, batch: List[torch.Tensor]) -> torch.Tensor:
        x = torch.stack(batch).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model.clip.encode_image(x, normalize=True).float()

    @staticmethod
    def to_numpy(features: torch.Tensor) -> np.ndarray:
        return features.cpu().numpy()

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str], batch_size: int) -> torch.Tensor:
        """[N, D] L2-normalised text features, in batches, on padding-trimmed tokens."""
        feats = []
        for s in range(0, len(texts), batch_size):
            tokens = self.model.tokenizer(list(texts[s:s + batch_size])).to(self.device)
            feats.append(encode_text_trimmed(self.model.clip, tokens).float())
        return torch.cat(feats)

    @torch.inference_mode()
    def probs(self, features: np.ndarray, text: torch.Tensor) -> np.ndarray:
        feats = torch.as_tensor(np.asarray(features), dtype=torch.float32, device=self.device)
        scale = self.model.clip.logit_scale.exp().float()
        return (scale * feats @ text.T).softmax(dim=-1).cpu().numpy()
