"""Zero-shot class weights: class names -> one L2-normalised text feature per class.

The one place where prompts become a zero-shot head. Used by the classifier (:mod:`emocap.classifier`), by
training's validation and prompt alignment (:mod:`emocap.train.validation`, :mod:`emocap.train.prompt_learning`), and
through the classifier by eval. Each class's weight is the mean of its prompts' normalised text features,
normalised again (CLIP's prompt ensembling). Features may be torch tensors or, on the classifier's ONNX runtime,
numpy arrays: this module imports torch only for tensors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["class_text_weights", "encoder_for"]


def class_text_weights(encode_texts: Callable[[Sequence[str]], "torch.Tensor"],
                       texts_per_class: Sequence[Sequence[str]]) -> "torch.Tensor":
    """[C, D] weights: ``encode_texts`` (texts -> [N, D] normalised features) is called once on every prompt of
    every class; each class's features are averaged and the mean normalised."""
    if any(len(texts) == 0 for texts in texts_per_class):
        raise ValueError("every class needs at least one prompt")
    flat = [t for texts in texts_per_class for t in texts]
    feats = encode_texts(flat)
    if isinstance(feats, np.ndarray):
        bounds = np.cumsum([len(texts) for texts in texts_per_class])[:-1]
        means = np.stack([g.mean(axis=0) for g in np.split(feats, bounds)])
        return means / np.linalg.norm(means, axis=1, keepdims=True)
    import torch

    groups = feats.split([len(texts) for texts in texts_per_class])
    means = torch.stack([g.mean(dim=0) for g in groups])
    return means / means.norm(dim=1, keepdim=True)


def encoder_for(clip_model, tokenizer, batch_size: int = 256) -> Callable[[Sequence[str]], "torch.Tensor"]:
    """A text encoder for :func:`class_text_weights`: tokenises and encodes in batches on the model's device,
    normalised, keeping the caller's grad mode and the model's dtype."""
    import torch

    device = next(clip_model.parameters()).device

    def encode(texts: Sequence[str]) -> torch.Tensor:
        return torch.cat([clip_model.encode_text(tokenizer(list(texts[s:s + batch_size])).to(device), normalize=True)
                          for s in range(0, len(texts), batch_size)])
    return encode
