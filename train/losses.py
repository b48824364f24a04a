"""Training losses: image-text contrastive terms with guided positives, and the class-prompt term.

Third step of a training run (config -> data -> **losses** -> loop).

* :func:`contrastive_loss`: symmetric image-text InfoNCE. Without positive mining it is open_clip's
  ``ClipLoss`` (features gathered across ranks with gradient). With positive mining, samples whose captions mean
  the same (same dominant label, or soft-label cosine above a threshold) are positives too: the targets are the
  row-normalised positive mask (multi-positive InfoNCE), so near-identical captions are not pushed apart.
* :func:`class_prompt_loss`: image features against the text features of every class prompt, cross-entropy
  with the soft (vote) label as target. This is what zero-shot classification does at test time.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss


def positive_mask(soft_labels: torch.Tensor, mode: str, threshold: float = 0.5) -> Optional[torch.Tensor]:
    """[B, B] float mask of positives (diagonal always 1), or None for ``mode="none"``."""
    if mode == "none":
        return None
    if mode == "label":
        labels = soft_labels.argmax(dim=1)
        mask = (labels[:, None] == labels[None, :]).float()
    elif mode == "soft":
        s = F.normalize(soft_labels.float(), dim=1)
        mask = (s @ s.T >= threshold).float()
    else:
        raise ValueError(f"positive mining mode must be none, label or soft, got {mode!r}")
    mask.fill_diagonal_(1.0)
    return mask


def multi_positive_nce(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits`` [B, B'] against row-normalised positive ``mask``."""
    targets = mask / mask.sum(dim=1, keepdim=True)
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


class ContrastiveLoss(torch.nn.Module):
    """Symmetric image-text loss; multi-positive when a positive mask is given.

    On one process the plain case equals open_clip's ``ClipLoss``, which this delegates to (and which gathers
    features with gradient across ranks when ``world_size > 1``).
    """

    def __init__(self, rank: int = 0, world_size: int = 1):
        super().__init__()
        self.rank, self.world_size = rank, world_size
        self.clip_loss = ClipLoss(local_loss=False, gather_with_grad=True, cache_labels=True, rank=rank, world_size=world_size)

    def forward(self, image_features, text_features, logit_scale, soft_labels=None, mode="none", threshold=0.5):
        if mode == "none" or soft_labels is None:
            return self.clip_loss(image_features, text_features, logit_scale)
        if self.world_size > 1:
            from open_clip.loss import gather_features

            all_img, all_txt = gather_features(image_features, text_features, gather_with_grad=True, rank=self.rank, world_size=self.world_size)
            all_soft = torch.cat(torch.distributed.nn.all_gather(soft_labels), dim=0)
        else:
            all_img, all_txt, all_soft = image_features, text_features, soft_labels
        mask = positive_mask(all_soft, mode, threshold)
        logits = logit_scale * all_img @ all_txt.T
        return 0.5 * (multi_positive_nce(logits, mask) + multi_positive_nce(logits.T, mask.T))


def class_prompt_loss(image_features, class_text_features, logit_scale, soft_labels, sample_weights=None) -> torch.Tensor:
    """Cross-entropy of image vs. class-prompt similarities against soft labels [B, C], optionally weighted."""
    logits = logit_scale * image_features @ class_text_features.T
    per_sample = -(soft_labels * F.log_softmax(logits, dim=1)).sum(dim=1)
    if sample_weights is None:
        return per_sample.mean()
    return (per_sample * sample_weights).sum() / sample_weights.sum()


def positives_per_sample(mask: Optional[torch.Tensor]) -> float:
    """Mean number of mined positives per sample besides itself (for logging)."""
    return 0.0 if mask is None else float(mask.sum(dim=1).mean().item() - 1.0)
