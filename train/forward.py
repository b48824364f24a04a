"""The training forward pass: one module that encodes a batch of images, several groups of captions and the
soft prompts.

Sits between the data and the losses (data -> **forward** -> distributed gather -> objective). Wrapping the
open_clip model (and the MPA-FER soft prompts) in :class:`ContrastiveForward` lets accelerate/DDP see a single
``forward`` per step (so gradient synchronisation is correct across processes) while the text tower runs on
padding-trimmed tokens: with open_clip's causal text mask and end-of-text pooling, columns after the longest
caption in a group never influence the pooled feature, so dropping them gives the same features as
``model.encode_text`` at a fraction of the cost (captions here are 10-40 tokens, the context 64).
"""

from __future__ import annotations

from typing import Dict, Optional

import torch

from emocap.models import encode_text_trimmed

from .image_tokens import encode_image_with_tokens


class ContrastiveForward(torch.nn.Module):
    """``forward(images, {group: tokens}, with_tokens)`` -> dict of features.

    Keys: ``image`` [B, D], ``image_tokens`` [B, N, D] (when asked), ``text:<group>`` [B, D] per caption group,
    ``prompts`` [C, D] (when soft prompts are attached) and ``logit_scale`` (exponentiated).
    """

    def __init__(self, clip_model: torch.nn.Module, soft_prompts: Optional[torch.nn.Module] = None):
        super().__init__()
        self.clip = clip_model
        self.soft_prompts = soft_prompts

    def forward(self, images: torch.Tensor, texts: Dict[str, torch.Tensor], with_tokens: bool = False) -> Dict[str, torch.Tensor]:
        out: Dict[str, torch.Tensor] = {}
        if with_tokens:
            out["image"], out["image_tokens"] = encode_image_with_tokens(self.clip, images)
        else:
            out["image"] = self.clip.encode_image(images, normalize=True)
        for name, tokens in texts.items():
            out[f"text:{name}"] = encode_text_trimmed(self.clip, tokens)
        if self.soft_prompts is not None:
            out["prompts"] = self.soft_prompts(self.clip)
        out["logit_scale"] = self.clip.logit_scale.exp()
        return out
