"""Gray conversion folded into a model's first layer, so the model takes RGB and ignores colour by itself.

Where it sits: model saving (:func:`emocap.models.save_model` with ``fold_gray=True``, used by training's export,
``train/export.py`` and WiSE-FT) calls :func:`fold_gray_into_state` on the weights it writes; loading reads the record
(:func:`is_gray_folded`) so the classifier knows not to convert again.

Why it is exact. A gray model was trained on gray images given as three equal channels. With the same mean ``m``
and std ``s`` for every channel, a gray pixel normalises to ``(g - m) / s`` in all three channels, and the first
convolution (no bias) sees ``sum_c W[:, c] * (g - m) / s = S * (g - m) / s`` with ``S = sum_c W[:, c]``. Gray
conversion is linear, ``g = sum_k a_k x_k`` with ``sum_k a_k = 1`` (PIL's "L": ITU-R 601), so on normalised RGB
``x'_k = (x_k - m) / s`` the folded weight ``W'[:, k] = a_k * S`` gives ``sum_k a_k S (x_k - m) / s = S * (g - m)
/ s``: the same numbers. Zero padding is the pixel ``m`` in every channel in both views, so borders match too.
On gray input (R = G = B) the folded layer computes what the unfolded one did (``sum_k a_k = 1``); folding twice
changes nothing, since it keeps ``S`` (and an already folded weight is written back bit for bit). What the new
path drops on colour photos is PIL's rounding of "L" to uint8 and the one-channel resize (the resize now runs per
colour channel, with its own rounding and clipping): up to 0.03 in a class probability on faces-wild-dev's colour
photos (``benchmarks/open_clip_parity.py``).

Foldable towers: open_clip's ``ModifiedResNet`` (stem ``visual.conv1``) and ``VisionTransformer`` (patch
embedding ``visual.conv1``), both without bias. Anything else is refused with :class:`GrayFoldError`.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

import torch

__all__ = ["GRAY_WEIGHTS", "FIRST_LAYER", "GrayFoldError", "first_layer_key", "check_equal_normalisation",
           "folded_weight", "fold_gray_into_state", "fold_gray_into_model", "gray_fold_problem", "gray_fold_record",
           "is_gray_folded"]

# PIL's "L" conversion: L = (19595 R + 38470 G + 7471 B + 2**15) >> 16 (ITU-R 601 luma); the weights sum to 1
GRAY_WEIGHTS = (19595 / 65536, 38470 / 65536, 7471 / 65536)
FIRST_LAYER = "visual.conv1"
FOLDED = "folded"  # the value of the config's emocap "grayscale" key for a folded model


class GrayFoldError(ValueError):
    """A model whose gray conversion cannot be folded into its first layer; the message says why."""


def first_layer_key(clip: torch.nn.Module) -> str:
    """The state-dict key of the first layer's weight (``visual.conv1.weight``); GrayFoldError for other towers."""
    visual = getattr(clip, "visual", None)
    kind = type(visual).__name__
    if kind not in ("ModifiedResNet", "VisionTransformer"):
        raise GrayFoldError(f"cannot fold gray conversion into a {kind} image tower: only open_clip's "
                            "ModifiedResNet and VisionTransformer (first layer visual.conv1) are supported")
    conv = getattr(visual, "conv1", None)
    if not isinstance(conv, torch.nn.Conv2d) or conv.in_channels != 3 or conv.bias is not None:
        raise GrayFoldError(f"cannot fold gray conversion: {kind}.conv1 is not a 3-channel convolution without "
                            f"bias ({conv!r})")
    return FIRST_LAYER + ".weight"


def check_equal_normalisation(preprocess_cfg: Mapping[str, Any]) -> None:
    """GrayFoldError unless the preprocessing uses one mean and one std for all three channels (the fold's premise)."""
    for key in ("mean", "std"):
        values = [float(v) for v in preprocess_cfg.get(key, ())]
        if len(values) != 3 or len(set(values)) != 1:
            raise GrayFoldError(f"cannot fold gray conversion: preprocess_cfg {key} {values} is not the same for "
                                "the three channels, so normalising and converting to gray do not commute")


def gray_fold_problem(clip: torch.nn.Module, preprocess_cfg: Mapping[str, Any]) -> Optional[str]:
    """Why the gray conversion cannot be folded into ``clip`` with this preprocessing, or None when it can."""
    try:
        first_layer_key(clip)
        check_equal_normalisation(preprocess_cfg)
    except GrayFoldError as e:
        return str(e)
    return None


def folded_weight(weight: torch.Tensor, gray_weights: Sequence[float] = GRAY_WEIGHTS) -> torch.Tensor:
    """A new tensor ``W'[:, k] = a_k * sum_c W[:, c]`` in ``weight``'s dtype (computed in float64).

    A weight that is already folded (up to its dtype's rounding) comes back unchanged, bit for bit, so saving a
    folded model again (a prompt-only stage, a re-export) does not move its weights by a rounding step.
    """
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise GrayFoldError(f"cannot fold gray conversion: first-layer weight has shape {tuple(weight.shape)}, "
                            "expected [out, 3, kh, kw]")
    exact = weight.detach().to(torch.float64)
    total = exact.sum(dim=1, keepdim=True)
    a = torch.tensor(list(gray_weights), dtype=torch.float64, device=weight.device).view(1, 3, 1, 1)
    folded = a * total
    info = torch.finfo(weight.dtype)
    slack = 4 * info.eps * total.abs() + info.smallest_normal  # rounding of a folded weight stored in this dtype
    if bool(((exact - folded).abs() <= slack).all()):
        return weight.detach().clone()
    return folded.to(weight.dtype)


def gray_fold_record() -> Dict[str, Any]:
    """What the config's emocap keys say about the fold (``"gray_fold"``), for people and tools reading it."""
    return {"layer": FIRST_LAYER, "weights": list(GRAY_WEIGHTS),
            "input": "RGB: the first layer converts to gray (PIL 'L' weights), so no gray step before the transform"}


def fold_gray_into_state(clip: torch.nn.Module, state: Dict[str, torch.Tensor],
                         preprocess_cfg: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """``state`` (a state dict of ``clip``) with the first layer's weight replaced by its folded copy (new dict;
    the tensors of ``state`` and the module are left untouched)."""
    key = first_layer_key(clip)
    check_equal_normalisation(preprocess_cfg)
    if key not in state:
        raise GrayFoldError(f"cannot fold gray conversion: the weights have no {key}")
    return {**state, key: folded_weight(state[key])}


@torch.no_grad()
def fold_gray_into_model(clip: torch.nn.Module, preprocess_cfg: Mapping[str, Any]) -> None:
    """Fold the gray conversion into ``clip``'s first layer in place."""
    first_layer_key(clip)  # refuses other towers
    check_equal_normalisation(preprocess_cfg)
    conv = clip.visual.conv1
    conv.weight.copy_(folded_weight(conv.weight))


def is_gray_folded(meta: Mapping[str, Any]) -> bool:
    """Whether a model's emocap keys say its gray conversion is folded into the first layer."""
    return meta.get("grayscale") == FOLDED
