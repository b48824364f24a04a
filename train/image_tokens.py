"""Image features with their spatial tokens, and the region-aware image-text scores built on them.

Part of the training forward pass (config -> data -> **forward** -> losses -> loop). The local (per face region)
sentences and the MPA-FER patch score need more than the pooled image embedding: they need one embedding per
feature-map cell (ModifiedResNet) or patch (ViT), projected into the joint space.

* :func:`encode_image_with_tokens` returns ``(pooled, tokens)``: the tower's usual pooled embedding (exactly
  ``model.encode_image``) and ``[B, N, D]`` token embeddings. For open_clip's ``ModifiedResNet`` the tokens are
  the attention-pool's value and output projections applied to each cell of the last feature map (the dense
  reading of CLIP's attention pool); for a ``VisionTransformer`` they are the patch tokens after ``ln_post``
  through ``proj``.
* :func:`region_scores` is the text-conditioned attention pooling of EmoCapCLIP's local term: for text ``t`` and
  image ``i``, tokens are weighted by ``softmax(<token, t> / tau)`` and the pooled region vector is compared with
  ``t``. :func:`topk_patch_scores` is MPA-FER's local score: the mean cosine of the ``k`` best-matching tokens.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


class TokensUnavailable(TypeError):
    """The image tower is of a kind whose spatial tokens this module cannot read."""


def _resnet_tokens(visual, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    x = visual.stem(x)
    x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))
    pooled = visual.attnpool(x)
    pool = visual.attnpool
    cells = x.flatten(2).transpose(1, 2)  # [B, HW, C]
    cells = cells + pool.positional_embedding[1:].to(cells.dtype)
    tokens = pool.c_proj(pool.v_proj(cells))
    return pooled, tokens


def _vit_tokens(visual, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    previous = visual.output_tokens
    visual.output_tokens = True
    try:
        pooled, tokens = visual(x)
    finally:
        visual.output_tokens = previous
    if visual.proj is not None:
        tokens = tokens @ visual.proj
    return pooled, tokens


def encode_image_with_tokens(model, images: torch.Tensor, normalize: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(pooled [B, D], tokens [B, N, D])`` of an open_clip ``CLIP`` model's image tower."""
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    visual = model.visual
    if isinstance(visual, ModifiedResNet):
        pooled, tokens = _resnet_tokens(visual, images)
    elif isinstance(visual, VisionTransformer):
        pooled, tokens = _vit_tokens(visual, images)
    else:
        raise TokensUnavailable(
            f"image tower {type(visual).__name__} exposes no spatial tokens; region-aware and patch losses "
            "need an open_clip ModifiedResNet or VisionTransformer (set loss.local_region=0 and prompt.patch_weight=0)"
        )
    if normalize:
        pooled, tokens = F.normalize(pooled, dim=-1), F.normalize(tokens, dim=-1)
    return pooled, tokens


def region_scores(tokens: torch.Tensor, text: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """[B_img, B_txt] cosine between each text and its text-conditioned pooling of each image's tokens.

    ``tokens`` [B_img, N, D] and ``text`` [B_txt, D] are L2-normalised. For image ``i`` and text ``j``:
    ``a = softmax_n(<tokens[i, n], text[j]> / tau)``, ``v = sum_n a_n tokens[i, n]``, score ``cos(v, text[j])``.
    """
    sim = torch.einsum("ind,jd->ijn", tokens, text)  # [Bi, Bj, N]
    attn = torch.softmax(sim / tau, dim=-1)
    pooled = torch.einsum("ijn,ind->ijd", attn, tokens)
    return torch.einsum("ijd,jd->ij", F.normalize(pooled, dim=-1), text)


def topk_patch_scores(tokens: torch.Tensor, text: torch.Tensor, k: int) -> torch.Tensor:
    """[B_img, B_txt] mean cosine of the ``k`` tokens of each image that best match each text (MPA-FER local)."""
    sim = torch.einsum("ind,jd->ijn", tokens, text)
    k = max(1, min(int(k), sim.shape[-1]))
    return sim.topk(k, dim=-1).values.mean(dim=-1)
