"""Training losses as pure functions of full-batch features: contrastive terms, mined positives, mixup targets.

Third step of a training run (config -> data -> forward -> **losses** -> objective -> loop). Every function here
takes features that are already gathered across ranks (see :mod:`emocap.train.distributed`), so one process
with the whole batch and N processes with a slice each compute the same value.

* :func:`symmetric_nce`: image->text and text->image InfoNCE. With identity targets it is open_clip's
  ``ClipLoss``; with a target matrix it is multi-positive / soft-target InfoNCE (targets row-normalised).
* Positive mining builds that target matrix: :func:`positive_mask` from labels (``label``: same dominant
  emotion; ``soft``: soft-label cosine above a threshold) and :func:`guided_positive_mask` /
  :func:`guided_soft_targets`, EmoCapCLIP's cross-modal guided mining: a pair is a positive when both its
  captions (text-text) and its images (image-image) are near-identical, by threshold or by a temperature.
* :func:`mix_targets`: MIDAS-style mixup moves an image's targets to ``lam * row(i) + (1 - lam) * row(partner)``.
* :func:`class_prompt_loss`: image features against every class's text features, cross-entropy with soft
  (vote) targets, optionally weighted per sample.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

MINING_MODES = ("none", "label", "soft", "cross_modal", "cross_modal_soft")


def soft_target_nce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits`` [B, B'] against ``targets`` [B, B'] (each row normalised to sum 1)."""
    targets = targets / targets.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def symmetric_nce(logits: torch.Tensor, targets: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``(CE(logits, targets) + CE(logits.T, targets.T)) / 2``; ``targets`` None: the identity (ClipLoss)."""
    if targets is None:
        labels = torch.arange(logits.shape[0], device=logits.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    return 0.5 * (soft_target_nce(logits, targets) + soft_target_nce(logits.T, targets.T))


def positive_mask(soft_labels: torch.Tensor, mode: str, threshold: float = 0.5) -> Optional[torch.Tensor]:
    """[B, B] 0/1 mask of label positives (diagonal always 1), or None for ``mode="none"``."""
    if mode == "none":
        return None
    if mode == "label":
        labels = soft_labels.argmax(dim=1)
        mask = (labels[:, None] == labels[None, :]).float()
    elif mode == "soft":
        s = F.normalize(soft_labels.float(), dim=1)
        mask = (s @ s.T >= threshold).float()
    else:
        raise ValueError(f"label positive mining mode must be none, label or soft, got {mode!r}")
    mask.fill_diagonal_(1.0)
    return mask


def batch_zscores(sim: torch.Tensor) -> torch.Tensor:
    """``sim`` standardised by the mean and standard deviation of its off-diagonal entries (a [B, B] matrix)."""
    off = ~torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    values = sim[off]
    if values.numel() < 2:
        return torch.zeros_like(sim)
    return (sim - values.mean()) / values.std().clamp_min(1e-6)


def guided_positive_mask(text_features, image_features, text_threshold: float, image_threshold: float,
                         relative: bool = False) -> torch.Tensor:
    """[B, B] 0/1 mask: ``j`` is a positive of ``i`` when cos(text_i, text_j) >= text_threshold AND
    cos(image_i, image_j) >= image_threshold (features L2-normalised; no gradient flows through the mask).

    ``relative``: the thresholds apply to batch z-scores of the two similarity matrices (:func:`batch_zscores`)
    instead of raw cosines. Scale-free, so it does not mine the whole batch when training from scratch, where every
    embedding is still alike (raw cosines all near 1).
    """
    t, v = text_features.detach().float(), image_features.detach().float()
    st, sv = t @ t.T, v @ v.T
    if relative:
        st, sv = batch_zscores(st), batch_zscores(sv)
    mask = (st >= text_threshold) & (sv >= image_threshold)
    mask = mask.float()
    mask.fill_diagonal_(1.0)
    return mask


def guided_soft_targets(text_features, image_features, temperature: float) -> torch.Tensor:
    """[B, B] soft targets ``softmax_j(min(cos_text_ij, cos_image_ij) / temperature)``.

    The diagonal has similarity 1 (the largest possible), so a small temperature keeps the targets close to the
    identity and only pairs near-identical in both modalities take a visible share.
    """
    t, v = text_features.detach().float(), image_features.detach().float()
    sim = torch.minimum(t @ t.T, v @ v.T)
    return torch.softmax(sim / temperature, dim=1)


def mix_targets(targets: Optional[torch.Tensor], partner: torch.Tensor, lam: torch.Tensor, size: int) -> torch.Tensor:
    """Targets of mixed images: row ``i`` becomes ``lam_i * T[i] + (1 - lam_i) * T[partner_i]``.

    ``targets`` None means the identity of size ``size``. Rows of ``targets`` are normalised first, so a mined
    row spreads its share over its positives.
    """
    if targets is None:
        targets = torch.eye(size, device=lam.device)
    targets = targets / targets.sum(dim=1, keepdim=True)
    lam = lam.to(targets.dtype).view(-1, 1)
    return lam * targets + (1 - lam) * targets[partner]


def mined_positives(targets: Optional[torch.Tensor]) -> float:
    """Mean number of positives per sample besides itself (0/1 masks), or the mean off-diagonal target mass
    in units of the diagonal's (soft targets): the count logged per batch."""
    if targets is None:
        return 0.0
    diag = targets.diagonal()
    off = targets.sum(dim=1) - diag
    return float((off / diag.clamp(min=1e-12)).mean().item())


def class_prompt_loss(image_features, class_text_features, logit_scale, soft_labels, sample_weights=None) -> torch.Tensor:
    """Cross-entropy of image vs. class-prompt similarities against soft labels [B, C], optionally weighted."""
    logits = logit_scale * image_features @ class_text_features.T
    return soft_cross_entropy(logits, soft_labels, sample_weights)


def soft_cross_entropy(logits, soft_labels, sample_weights=None) -> torch.Tensor:
    """Mean (or ``sample_weights``-weighted mean) of ``-sum_c soft[c] log softmax(logits)[c]``."""
    per_sample = -(soft_labels * F.log_softmax(logits, dim=1)).sum(dim=1)
    if sample_weights is None:
        return per_sample.mean()
    return (per_sample * sample_weights).sum() / sample_weights.sum()
