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
import torch.nn.functional as F
from open_clip.transformer import text_global_pool


def encode_text_trimmed(model, text: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(text, normalize=True)`` for an open_clip ``CLIP`` with a causal mask, on trimmed tokens."""
    if not hasattr(model, "token_embedding") or getattr(model, "attn_mask", None) is None:
        return model.encode_text(text, normalize=True)  # other text towers: no trimming
    length = int((text != 0).sum(dim=1).max().item())
    text = text[:, : max(length, 1)]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(text).to(cast_dtype)
    x = x + model.positional_embedding[: text.shape[1]].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[: text.shape[1], : text.shape[1]])
    x = model.ln_final(x)
    x = text_global_pool(x, text, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection
    return F.normalize(x, dim=-1)


class ContrastiveForward(torch.nn.Module):
    """``forward(images, {group: tokens})`` -> (image features, {group: text features}, logit scale)."""

    def __init__(self, clip_model: torch.nn.Module):
        super().__init__()
        self.clip = clip_model

    def forward(self, images: torch.Tensor, texts: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        image_features = self.clip.encode_image(images, normalize=True)
        text_features = {name: encode_text_trimmed(self.clip, tokens) for name, tokens in texts.items()}
        return image_features, text_features, self.clip.logit_scale.exp()
