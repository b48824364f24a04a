"""Gathering a step's features from every rank, with gradient, before the losses see them.

Between the forward pass and the losses (forward -> **distributed** -> objective). Contrastive losses need the
whole global batch: every image against every caption on every rank. Features are gathered with open_clip's
``gather_features`` (``gather_with_grad=True``: ``torch.distributed.nn.all_gather``, whose backward sends each
rank the gradient of its own slice), not ``accelerator.gather`` (which has no gradient). Each rank then computes
the same full-batch loss; DDP's gradient averaging over ranks then gives exactly the one-process gradient of
that loss (tested with two gloo processes in ``tests/test_train_distributed.py``).

Tensors that carry no gradient (soft labels, mixup partners) go through the same gather; mixup partner indices
are local to a rank and are shifted by the rank's offset so they index the gathered batch.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch


def gather_with_grad(tensors: Dict[str, Optional[torch.Tensor]], rank: int, world_size: int) -> Dict[str, Optional[torch.Tensor]]:
    """Concatenate each tensor over ranks along dim 0 (rank order), keeping the autograd graph. None stays None."""
    if world_size <= 1:
        return dict(tensors)
    from open_clip.loss import gather_features

    names = [n for n, t in tensors.items() if t is not None]
    out: Dict[str, Optional[torch.Tensor]] = {n: None for n in tensors}
    # open_clip gathers (image, text) pairs; feed it two tensors at a time
    for a, b in zip(names[0::2], names[1::2] + [None]):
        second = tensors[b] if b is not None else tensors[a]
        ga, gb = gather_features(tensors[a], second, gather_with_grad=True, rank=rank, world_size=world_size)
        out[a] = ga
        if b is not None:
            out[b] = gb
    return out


def offset_partner(partner: torch.Tensor, rank: int) -> torch.Tensor:
    """Local mixup partner indices -> indices into the gathered batch (ranks hold equal slices)."""
    return partner + rank * partner.numel()
