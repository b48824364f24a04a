"""The training objective: every configured term from one step's gathered features, and what to log about it.

Sits after the forward pass and the cross-rank gather (forward -> distributed -> **objective** -> loop). Input is
the dict of full-batch features from :class:`~emocap.train.forward.ContrastiveForward` (gathered over ranks),
plus the batch's soft labels, sample weights and mixup partners. Terms and their config keys:

=====================  ==========================================================================================
``loss.global``        image <-> global caption InfoNCE
``loss.local``         image <-> one local (region) sentence, the sentence as a whole-image positive
``loss.local_region``  the same sentences through region-aware scores (text-conditioned token pooling)
``loss.summary``       image <-> summary sentence
``loss.class_prompts`` image vs. hand class prompts, soft-label targets
``prompt.*``           MPA-FER soft prompts: classification, description alignment, prototype alignment
=====================  ==========================================================================================

All contrastive terms share one target matrix: the identity, or the mined positives
(``loss.positive_mining``), moved by mixup when ``mixup.prob > 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch

from .image_tokens import region_scores
from .losses import (
    class_prompt_loss, guided_positive_mask, guided_soft_targets, mined_positives, mix_targets, positive_mask,
    symmetric_nce,
)
from .prompt_learning import (
    prompt_alignment_loss, prompt_class_scores, prompt_classification_loss, prototype_alignment_loss,
)


@dataclass
class BatchExtras:
    """Per-sample data of the (gathered) batch beside the features."""

    soft_labels: torch.Tensor                      # [B, C] targets (after mixup)
    raw_soft_labels: torch.Tensor                  # [B, C] before mixup (label mining)
    sample_weights: Optional[torch.Tensor] = None  # [B] class-balance weights
    mix_partner: Optional[torch.Tensor] = None     # [B] index into the batch
    mix_lambda: Optional[torch.Tensor] = None      # [B]
    hard_prompts: Optional[torch.Tensor] = None    # [C, D] class-description features
    prototypes: Optional[torch.Tensor] = None      # [C, D] frozen visual prototypes
    mining: bool = True                            # False during loss.mining_warmup_steps


def needs_tokens(cfg: Dict) -> bool:
    """Whether the step needs the image tower's spatial tokens."""
    p = cfg["prompt"]
    return cfg["loss"]["local_region"] > 0 or (p["weight"] > 0 and p["patch_weight"] > 0)


def contrastive_targets(feats: Dict[str, torch.Tensor], extras: BatchExtras, lw: Dict) -> Optional[torch.Tensor]:
    """The shared target matrix of the contrastive terms (None: plain identity targets)."""
    mode = lw["positive_mining"] if extras.mining else "none"
    if mode in ("label", "soft"):
        targets = positive_mask(extras.raw_soft_labels, mode, lw["soft_threshold"])
    elif mode == "cross_modal":
        targets = guided_positive_mask(feats["text:global"], feats["image"], lw["mining_text_threshold"],
                                       lw["mining_image_threshold"], relative=lw["mining_relative"])
    elif mode == "cross_modal_soft":
        targets = guided_soft_targets(feats["text:global"], feats["image"], lw["mining_temperature"])
    else:
        targets = None
    return targets


def compute_objective(feats: Dict[str, torch.Tensor], extras: BatchExtras, cfg: Dict) -> Tuple[torch.Tensor, Dict[str, float]]:
    """(total loss, logged values: each term, ``positives`` mined per sample) for one gathered batch."""
    lw, pc = cfg["loss"], cfg["prompt"]
    img, scale = feats["image"], feats["logit_scale"]
    targets = contrastive_targets(feats, extras, lw)
    stats = {"positives": mined_positives(targets)}
    if extras.mix_partner is not None:
        targets = mix_targets(targets, extras.mix_partner, extras.mix_lambda, img.shape[0])
    terms: Dict[str, torch.Tensor] = {}
    for name in ("global", "local", "summary"):
        if lw[name] > 0 and f"text:{name}" in feats:
            terms[name] = lw[name] * symmetric_nce(scale * img @ feats[f"text:{name}"].T, targets)
    if lw["local_region"] > 0:
        scores = region_scores(feats["image_tokens"], feats["text:local"], lw["region_tau"])
        terms["local_region"] = lw["local_region"] * symmetric_nce(scale * scores, targets)
    if lw["class_prompts"] > 0:
        terms["class_prompts"] = lw["class_prompts"] * class_prompt_loss(
            img, feats["text:class"], scale, extras.soft_labels, extras.sample_weights)
    if "prompts" in feats:
        prompts = feats["prompts"]
        if pc["weight"] > 0:
            scores = prompt_class_scores(img, feats.get("image_tokens"), prompts, pc["patch_weight"], pc["patch_topk"])
            terms["prompt_cls"] = pc["weight"] * prompt_classification_loss(scores, scale, extras.soft_labels, extras.sample_weights)
        if pc["align_weight"] > 0 and extras.hard_prompts is not None:
            terms["prompt_align"] = pc["align_weight"] * prompt_alignment_loss(prompts, extras.hard_prompts, scale)
        if pc["prototype_weight"] > 0 and extras.prototypes is not None:
            terms["prompt_proto"] = pc["prototype_weight"] * prototype_alignment_loss(prompts, extras.prototypes, scale)
    total = sum(terms.values()) if terms else torch.zeros((), device=img.device)
    stats.update({k: float(v.detach()) for k, v in terms.items()})
    return total, stats
