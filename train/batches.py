"""One step's batch: raw samples (from memory or a stream) -> augmented, mixed, normalised images with their
caption tokens and loss extras.

Used by the trainer's epoch (:meth:`emocap.train.trainer.Trainer.train_one_epoch`). Every random draw comes from
the run's augmentation generator (checkpointed with the run), so a resumed run draws what an uninterrupted one
would.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch

from .data import CaptionData, augment, normalise, sample_local
from .objective import BatchExtras, needs_tokens
from .step import StepBatch, apply_mixup, mixup_pairs


class BatchMaker:
    """Turns the samples of one step into a :class:`~emocap.train.step.StepBatch` on ``device``."""

    def __init__(self, cfg: Dict, data: Optional[CaptionData], class_tokens: List[torch.Tensor],
                 class_weights: Optional[torch.Tensor], mean, std, device, aug_gen: torch.Generator):
        self.cfg, self.data, self.class_tokens, self.class_weights = cfg, data, class_tokens, class_weights
        self.mean, self.std, self.device, self.aug_gen = mean, std, device, aug_gen
        lw = cfg["loss"]
        self.with_local = lw["local"] > 0 or lw["local_region"] > 0
        self.with_summary = lw["summary"] > 0
        self.with_class = lw["class_prompts"] > 0

    def from_memory(self, idx: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The in-memory path's samples ``idx``, shaped like a streamed batch."""
        data = self.data
        raw = {"images": data.images[idx], "soft_labels": data.soft_labels[idx], "labels": data.labels[idx],
               "global": data.global_tokens[idx], "summary": data.summary_tokens[idx]}
        if self.with_local:
            raw["local"] = sample_local(data, idx, self.aug_gen)
        return raw

    def step_batch(self, raw: Dict[str, torch.Tensor], hard_prompts: Optional[torch.Tensor],
                   prototypes: Optional[torch.Tensor], mining: bool) -> StepBatch:
        """Augment, mix and normalise ``raw``'s images; pick the caption groups and the loss extras."""
        cfg, gen, dev = self.cfg, self.aug_gen, self.device
        x = augment(raw["images"].float() / 255.0, cfg["aug"], gen)
        soft_raw = raw["soft_labels"]
        partner, lam = mixup_pairs(len(soft_raw), cfg["mixup"]["prob"], cfg["mixup"]["alpha"], gen)
        soft = soft_raw
        if partner is not None:
            x, soft = apply_mixup(x, soft_raw, partner, lam)
        x = normalise(x, self.mean, self.std).to(dev)
        if cfg.get("channels_last", True):
            x = x.contiguous(memory_format=torch.channels_last)
        texts = {"global": raw["global"]}
        if self.with_local:
            texts["local"] = raw["local"]
        if self.with_summary:
            texts["summary"] = raw["summary"]
        if self.with_class:
            texts["class"] = torch.stack([t[torch.randint(len(t), (1,), generator=gen).item()] for t in self.class_tokens])
        labels = raw["labels"]
        weights = self.class_weights[labels] if self.class_weights is not None else torch.ones(len(labels))
        extras = BatchExtras(
            soft_labels=soft.to(dev), raw_soft_labels=soft_raw.to(dev), sample_weights=weights.to(dev),
            mix_partner=None if partner is None else partner.to(dev), mix_lambda=None if lam is None else lam.to(dev),
            hard_prompts=hard_prompts, prototypes=prototypes, mining=mining,
        )
        return StepBatch(x, {n: t.to(dev) for n, t in texts.items()}, extras, with_tokens=needs_tokens(cfg))
