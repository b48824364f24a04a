"""WiSE-FT: interpolate the weights of a model before and after fine-tuning (Wortsman et al., 2022).

After training (config -> ... -> loop -> **wise_ft** / export). Fine-tuning a zero-shot model on one dataset
can cost robustness elsewhere; the weight-space average ``(1 - alpha) * theta_zero_shot + alpha * theta_fine_tuned``
often keeps most of both. Both models must share one architecture. The result is an open_clip hub folder with
the fine-tuned model's emocap keys (labels, prompts, grayscale, face crop); learned soft prompts are
interpolated too when both models have them of the same shape, otherwise the fine-tuned model's are kept.

Usage::

    python -m emocap.train.wise_ft runs/zeroshot/final runs/finetuned/final runs/wise-0.5 --alpha 0.5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from emocap.learned_prompts import CTX_KEY
from emocap.models import ModelLoadError, load_model, save_model


def interpolate_state(zero_shot: dict, fine_tuned: dict, alpha: float) -> dict:
    """``(1 - alpha) * zero_shot + alpha * fine_tuned`` for floating tensors; others (counters) from fine_tuned."""
    if zero_shot.keys() != fine_tuned.keys():
        only = sorted(set(zero_shot) ^ set(fine_tuned))[:5]
        raise ValueError(f"the two models have different parameters (e.g. {only}); WiSE-FT needs one architecture")
    out = {}
    for key, ft in fine_tuned.items():
        zs = zero_shot[key]
        if zs.shape != ft.shape:
            raise ValueError(f"parameter {key!r} has shape {tuple(zs.shape)} in one model and {tuple(ft.shape)} in the other")
        out[key] = torch.lerp(zs.float(), ft.float(), alpha).to(ft.dtype) if ft.is_floating_point() else ft.clone()
    return out


def wise_ft(zero_shot_id: str, fine_tuned_id: str, out: str, alpha: float = 0.5) -> Path:
    """Write the interpolated model to ``out`` and return the folder."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (0: the zero-shot model, 1: the fine-tuned one), got {alpha}")
    zs, ft = load_model(zero_shot_id), load_model(fine_tuned_id)
    if zs.model_cfg != ft.model_cfg:
        raise ValueError(f"{zero_shot_id} and {fine_tuned_id} have different architectures (model_cfg differs)")
    ft.model.load_state_dict(interpolate_state(zs.model.state_dict(), ft.model.state_dict(), alpha))
    extra = dict(ft.extra_tensors)
    zs_ctx = zs.extra_tensors.get(CTX_KEY)
    if CTX_KEY in extra and zs_ctx is not None and zs_ctx.shape == extra[CTX_KEY].shape:
        extra[CTX_KEY] = torch.lerp(zs_ctx.float(), extra[CTX_KEY].float(), alpha)
    meta = dict(ft.meta)
    meta["wise_ft"] = {"zero_shot": zero_shot_id, "fine_tuned": fine_tuned_id, "alpha": alpha}
    # the fine-tuned model's keys say "folded" (takes RGB): fold the mix again, in case the zero-shot model was not
    return save_model(ft, out, meta=meta, extra_tensors=extra, fold_gray=ft.gray_folded)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="WiSE-FT: interpolate a zero-shot and a fine-tuned model's weights")
    p.add_argument("zero_shot", help="model id before fine-tuning (folder, local-dir:, hf-hub:)")
    p.add_argument("fine_tuned", help="model id after fine-tuning")
    p.add_argument("out", help="folder for the interpolated model")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the fine-tuned model (default 0.5)")
    args = p.parse_args(argv)
    try:
        folder = wise_ft(args.zero_shot, args.fine_tuned, args.out, args.alpha)
    except (ValueError, ModelLoadError) as e:
        print(f"wise_ft: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {folder} (alpha {args.alpha})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
