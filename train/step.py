"""One optimisation step's gradients: forward, cross-rank gather, objective, backward; with the feature cache.

Called by the loop once per step (loop -> **step** -> forward / distributed / objective). With
``accum_steps == 1`` the local batch goes through the model once. With ``accum_steps = M > 1`` the contrastive
gradient is still the full batch's (GradCache): every micro-batch's features are first computed without
gradient and cached; then each micro-batch is encoded again with gradient and its slice replaces the cached one
in the full-batch features, the full-batch objective is evaluated and back-propagated. The other slices are
constants, so each backward sends gradient through one micro-batch only and the sum over micro-batches is the
full batch's gradient, at the activation memory of one micro-batch. Features that do not depend on the samples
(soft prompts, the logit scale) keep their gradient in the first micro-batch only, so they are counted once.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch

from .distributed import gather_with_grad, offset_partner
from .objective import BatchExtras, compute_objective

SHARED_KEYS = ("prompts", "logit_scale")  # same on every rank and micro-batch: not gathered, not sliced


@dataclass
class StepBatch:
    """One rank's share of a step."""

    images: torch.Tensor
    texts: Dict[str, torch.Tensor]
    extras: BatchExtras        # per-sample tensors local to this rank (hard prompts / prototypes shared)
    with_tokens: bool = False


def mixup_pairs(n: int, prob: float, alpha: float, generator: torch.Generator) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """(partner index, lambda) for MIDAS mixup of ``n`` samples: a share ``prob`` of them is mixed with a random
    partner from the batch with weight ``lam ~ Beta(alpha, alpha)`` (kept >= 0.5 so a sample stays its own
    majority); the rest get ``lam = 1``. ``prob`` 0: (None, None)."""
    if prob <= 0:
        return None, None
    partner = torch.randperm(n, generator=generator)
    u = torch.rand(n, generator=generator)
    # torch's Beta takes no generator: draw it from numpy, seeded from the (checkpointed) augmentation generator
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    lam = torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, n)).float()
    lam = torch.maximum(lam, 1 - lam)
    lam = torch.where(u < prob, lam, torch.ones(n))
    return partner, lam


def apply_mixup(images, soft_labels, partner, lam):
    """Mixed images and soft labels (MIDAS: the soft labels mix with the same weight as the pixels)."""
    w = lam.view(-1, *([1] * (images.dim() - 1))).to(images.dtype)
    mixed = w * images + (1 - w) * images[partner]
    soft = lam.view(-1, 1) * soft_labels + (1 - lam.view(-1, 1)) * soft_labels[partner]
    return mixed, soft


def _gathered_objective(feats: Dict[str, torch.Tensor], extras: BatchExtras, cfg, rank, world):
    per_sample = {k: v for k, v in feats.items() if k not in SHARED_KEYS}
    local = {
        "soft_labels": extras.soft_labels, "raw_soft_labels": extras.raw_soft_labels,
        "sample_weights": extras.sample_weights, "mix_lambda": extras.mix_lambda,
        "mix_partner": None if extras.mix_partner is None else offset_partner(extras.mix_partner, rank).float(),
    }
    gathered = gather_with_grad({**per_sample, **{f"extra:{k}": v for k, v in local.items()}}, rank, world)
    full = {k: v for k, v in gathered.items() if not k.startswith("extra:")}
    full.update({k: feats[k] for k in SHARED_KEYS if k in feats})
    ex = {k: gathered[f"extra:{k}"] for k in local}
    if ex["mix_partner"] is not None:
        ex["mix_partner"] = ex["mix_partner"].round().long()
    all_extras = replace(extras, **ex)
    return compute_objective(full, all_extras, cfg)


def step_gradients(
    forward: torch.nn.Module, batch: StepBatch, cfg: Dict, rank: int = 0, world: int = 1, accum_steps: int = 1,
    backward: Callable[[torch.Tensor], None] = lambda loss: loss.backward(),
    no_sync: Callable[[], object] = nullcontext, autocast: Callable[[], object] = nullcontext,
) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Accumulate the step's gradients into ``forward``'s parameters; returns (detached loss, logged stats).

    A non-finite loss is returned without any backward pass (the caller skips the step).
    """
    if accum_steps <= 1:
        with autocast():
            feats = forward(batch.images, batch.texts, batch.with_tokens)
            loss, stats = _gathered_objective(feats, batch.extras, cfg, rank, world)
        if torch.isfinite(loss):
            backward(loss)
        return loss.detach(), stats

    n = batch.images.shape[0]
    if n % accum_steps:
        raise ValueError(f"per-rank batch of {n} does not split into accum_steps={accum_steps} micro-batches")
    size = n // accum_steps
    slices = [slice(m * size, (m + 1) * size) for m in range(accum_steps)]

    def encode(s: slice):
        return forward(batch.images[s], {k: v[s] for k, v in batch.texts.items()}, batch.with_tokens)

    with torch.no_grad(), autocast():
        cached = [encode(s) for s in slices]
        keys = [k for k in cached[0] if k not in SHARED_KEYS]
        full_cached = {k: torch.cat([c[k] for c in cached]) for k in keys}
        full_cached.update({k: cached[0][k] for k in SHARED_KEYS if k in cached[0]})
        loss, stats = _gathered_objective(full_cached, batch.extras, cfg, rank, world)
    if not torch.isfinite(loss):
        return loss.detach(), stats
    for m, s in enumerate(slices):
        context = no_sync() if m < accum_steps - 1 else nullcontext()
        with context:
            with autocast():
                fresh = encode(s)
                merged = {k: torch.cat([fresh[k] if j == m else cached[j][k] for j in range(accum_steps)]) for k in keys}
                for k in SHARED_KEYS:
                    if k in fresh:
                        merged[k] = fresh[k] if m == 0 else fresh[k].detach()
                micro_loss, _ = _gathered_objective(merged, batch.extras, cfg, rank, world)
            backward(micro_loss)
    return loss.detach(), stats
