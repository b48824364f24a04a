"""What a training run draws from step to step: the learning-rate curve, each epoch's sample order, the loss
weights per class.

Used by the trainer (:mod:`emocap.train.trainer`) when it builds a run and at the start of each epoch, and by the
language stage (:mod:`emocap.train.language`). Everything here is a pure function of its arguments (seeded), so a
resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import math
from typing import Callable, Dict

import torch


def cosine_with_warmup(step: int, total_steps: int, warmup: int, floor: float) -> float:
    """Learning-rate factor: linear warmup over ``warmup`` steps, then cosine decay from 1 to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_factor_schedule(cfg: Dict, total_steps: int) -> Callable[[int], float]:
    """The ``LambdaLR`` factor of a run: warmup over ``warmup_steps``, cosine decay down to ``min_lr / lr``."""
    warmup = max(1, int(cfg["warmup_steps"]))
    floor = cfg["min_lr"] / cfg["lr"]
    return lambda step: cosine_with_warmup(step, total_steps, warmup, floor)


def class_loss_weights(labels: torch.Tensor, n_classes: int, power: float) -> torch.Tensor:
    """Per-class loss weights ``count ** -power`` scaled to mean 1 over samples (power 0: no reweighting)."""
    counts = torch.bincount(labels, minlength=n_classes).float().clamp(min=1)
    w = counts.pow(-float(power))
    return w / (w[labels].mean())


def epoch_order(labels: torch.Tensor, n_classes: int, balance_power: float, seed: int) -> torch.Tensor:
    """The sample order of one epoch (deterministic in ``seed``, so a resumed run continues it exactly).

    ``balance_power`` 0 is a plain permutation; p > 0 draws samples with replacement with probability
    proportional to ``count(class) ** -p`` (p = 0.5: class shares go with the square root of their counts).
    """
    gen = torch.Generator().manual_seed(seed)
    if not balance_power:
        return torch.randperm(len(labels), generator=gen)
    counts = torch.bincount(labels, minlength=n_classes).float().clamp(min=1)
    weights = counts.pow(-float(balance_power))[labels]
    return torch.multinomial(weights, len(labels), replacement=True, generator=gen)
