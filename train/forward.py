"""The training forward pass: one module that encodes a batch of images and several groups of captions.

Sits between the data and the losses. Wrapping the open_clip model in :class:`ContrastiveForward` lets
accelerate/DDP see a single ``forward`` per step (so gradient synchronisation is correct across processes) while
the text tower runs on padding-trimmed tokens: with open_clip's causal text mask and end-of-text pooling, columns
after the longest caption in a group never influence the pooled feature, so dropping them gives the same
features as ``model.encode_text`` at a fraction of the cost (captions here are 10-40 tokens, the context 64).
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch

from emocap.models import encode_text_trimmed


class ContrastiveForward(torch.nn.Module):
    """``forward(images, {group: tokens})`` -> (image features, {group: text features}, logit scale)."""

    def __init__(self, clip_model: torch.nn.Module):
        super().__init__()
        self.clip = clip_model

    def forward(self, images: torch.Tensor, texts: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        image_features = self.clip.encode_image(images, normalize=True)
        text_features = {name: encode_text_trimmed(self.clip, tokens) for name, tokens in texts.items()}
        return image_features, text_features, self.clip.logit_scale.exp()
