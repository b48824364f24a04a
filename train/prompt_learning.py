"""MPA-FER prompt alignment: learnable soft prompts, their alignment losses and the frozen visual prototypes.

Part of the training objective (forward -> **prompt_learning** / losses -> objective -> loop), switched on by
``prompt.weight > 0`` in the config. Three terms, each with its own weight:

* classification (``prompt.weight``): images against the soft-prompt class features with a global plus
  top-k-patch local score, ``s(i, c) = cos(img_i, p_c) + patch_weight * mean_topk_n cos(token_in, p_c)``;
  cross-entropy with the soft (vote) labels;
* prompt-level alignment (``prompt.align_weight``): soft prompt ``p_c`` against the LLM-written class
  descriptions (hard prompts) of every class, cross-entropy toward its own class (:func:`prompt_alignment_loss`);
* prototype-guided visual alignment (``prompt.prototype_weight``): ``p_c`` against class prototypes (the mean
  image feature of each class under a frozen copy of the image encoder), cross-entropy toward its own class.

``prompt.only: true`` is the stage after contrastive training: both towers frozen, only the context vectors
learn. Otherwise the prompts train jointly with the towers. The learned vectors are saved with the model
(:mod:`emocap.learned_prompts`) and the classifier uses them.
"""

from __future__ import annotations

import copy
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from emocap.class_weights import class_text_weights, encoder_for
from emocap.learned_prompts import LearnedPrompts, encode_soft_prompts, prompt_tokens

from .image_tokens import topk_patch_scores
from .losses import soft_cross_entropy


class SoftPrompts(torch.nn.Module):
    """``n_ctx`` learnable context vectors (shared, or one set per class) for ``class_names``."""

    def __init__(self, clip_model, tokenizer, class_names: Sequence[str], n_ctx: int = 4, per_class: bool = False,
                 init: Optional[str] = None, seed: int = 0):
        super().__init__()
        self.class_names = list(class_names)
        width = clip_model.token_embedding.weight.shape[1]
        ctx = None
        if init:
            ids = tokenizer([init])[0]
            ids = ids[1:int((ids != 0).sum()) - 1]  # without SOT / EOT
            if len(ids) == n_ctx:
                with torch.no_grad():
                    ctx = clip_model.token_embedding(ids).detach().clone().float()
        if ctx is None:
            ctx = torch.randn(n_ctx, width, generator=torch.Generator().manual_seed(seed)) * 0.02
        if per_class:
            ctx = ctx.unsqueeze(0).repeat(len(self.class_names), 1, 1)
        self.ctx = torch.nn.Parameter(ctx)
        self.register_buffer("tokens", prompt_tokens(tokenizer, self.class_names, n_ctx), persistent=False)

    def forward(self, clip_model) -> torch.Tensor:
        """[C, D] normalised soft-prompt class features."""
        return encode_soft_prompts(clip_model, self.tokens, self.ctx)

    def learned(self) -> LearnedPrompts:
        return LearnedPrompts(ctx=self.ctx.detach().cpu().clone(), classes=self.class_names if self.ctx.dim() == 3 else None)


def prompt_class_scores(image_features, image_tokens, prompt_features, patch_weight: float, topk: int) -> torch.Tensor:
    """[B, C] global + top-k-patch local image-prompt scores (unscaled)."""
    scores = image_features @ prompt_features.T
    if patch_weight > 0 and image_tokens is not None:
        scores = scores + patch_weight * topk_patch_scores(image_tokens, prompt_features, topk)
    return scores


def prompt_alignment_loss(prompt_features, hard_features, logit_scale) -> torch.Tensor:
    """Cross-entropy of each soft prompt against the hard-prompt (class description) features of all classes."""
    logits = logit_scale * prompt_features @ hard_features.T
    return F.cross_entropy(logits, torch.arange(len(prompt_features), device=logits.device))


def prototype_alignment_loss(prompt_features, prototypes, logit_scale) -> torch.Tensor:
    """Cross-entropy of each soft prompt against the frozen visual class prototypes, toward its own class."""
    return prompt_alignment_loss(prompt_features, prototypes, logit_scale)


def prompt_classification_loss(scores, logit_scale, soft_labels, sample_weights=None) -> torch.Tensor:
    return soft_cross_entropy(logit_scale * scores, soft_labels, sample_weights)


@torch.no_grad()
def hard_prompt_features(clip_model, tokenizer, class_names, prompt_set) -> torch.Tensor:
    """[C, D] mean normalised text feature of each class's LLM descriptions (templates when it has none)."""
    texts = [prompt_set.descriptions_for(name) or prompt_set.texts_for(name) for name in class_names]
    return class_text_weights(encoder_for(clip_model, tokenizer), texts)


@torch.no_grad()
def class_prototypes(frozen_clip, images_uint8, labels, n_classes, to_input, batch_size: int = 256) -> torch.Tensor:
    """[C, D] normalised mean image feature per class under ``frozen_clip`` (classes without images: zeros)."""
    device = next(frozen_clip.parameters()).device
    sums = None
    counts = torch.zeros(n_classes)
    for s in range(0, len(images_uint8), batch_size):
        f = frozen_clip.encode_image(to_input(images_uint8[s:s + batch_size]).to(device), normalize=True).float().cpu()
        if sums is None:
            sums = torch.zeros(n_classes, f.shape[1])
        y = labels[s:s + batch_size]
        sums.index_add_(0, y, f)
        counts += torch.bincount(y, minlength=n_classes).float()
    protos = sums / counts.clamp(min=1).unsqueeze(1)
    return F.normalize(protos, dim=1)


def frozen_copy(clip_model) -> torch.nn.Module:
    """An eval-mode, gradient-free copy of the model for prototypes."""
    copied = copy.deepcopy(clip_model).eval()
    for p in copied.parameters():
        p.requires_grad_(False)
    return copied
