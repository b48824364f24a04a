"""Export a trained model folder as a release: fp16 safetensors + config (+ a model card), e.g. the embedded default.

A gray model's conversion to gray is folded into its first layer on the way (:mod:`emocap.gray_fold`), so the
release takes RGB and plain open_clip gives emocap's scores.

After training (config -> data -> losses -> loop -> **export**). Usage::

    python -m emocap.train.export runs/default/best emocap/default_model --card model_cards/emocap-default.md

The result is an open_clip hub folder; ``huggingface_hub.upload_folder`` (or :func:`emocap.hub.push_to_hub`)
publishes it unchanged.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from emocap.model_card import write_model_card
from emocap.gray_fold import gray_fold_problem
from emocap.models import CONFIG_NAME, WEIGHTS_NAME, load_model, save_model


def export_model(src: str, dest: str, fp16: bool = True, card: str | None = None,
                 learned_prompts: bool = True) -> Path:
    """Write ``src`` to ``dest`` as a release. ``learned_prompts=False`` leaves out soft prompts learned in training:
    the released classifier then scores with the hand prompts and class descriptions, for any label name."""
    em = load_model(src)
    meta = dict(em.meta)
    extra = em.extra_tensors
    if not learned_prompts:
        meta.pop("learned_prompts", None)
        em.meta = meta  # save_model merges the model's own meta: drop the prompts there too
        extra = {}
    dest_path = Path(dest)
    for stale in (CONFIG_NAME, WEIGHTS_NAME, "emocap_extra.safetensors"):
        (dest_path / stale).unlink(missing_ok=True)
    # learned soft prompts (emocap_extra.safetensors) travel with the weights unless left out; a gray model saved
    # before the fold (config "grayscale": true) is folded, so the release takes RGB (emocap.gray_fold)
    problem = gray_fold_problem(em.clip, em.preprocess_cfg) if em.grayscale else None
    if problem:
        print(f"note: {dest}: kept \"grayscale\": true (emocap converts to gray, plain open_clip will not): {problem}",
              file=sys.stderr)
    save_model(em, dest_path, meta=meta, fp16=fp16, extra_tensors=extra, fold_gray=em.grayscale and not problem)
    if card:
        shutil.copyfile(card, dest_path / "README.md")
    else:
        write_model_card(dest_path)  # the generated card (emocap push regenerates it with the results)
    return dest_path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="export a trained emocap model folder (fp16 by default)")
    p.add_argument("src", help="trained model folder (e.g. runs/default/best)")
    p.add_argument("dest", help="destination folder (e.g. emocap/default_model)")
    p.add_argument("--fp32", action="store_true", help="keep fp32 weights")
    p.add_argument("--card", default=None, help="model card to copy in as README.md (default: a generated card)")
    p.add_argument("--no-learned-prompts", action="store_true",
                   help="leave out soft prompts learned in training (the classifier then uses the hand prompts)")
    args = p.parse_args(argv)
    out = export_model(args.src, args.dest, fp16=not args.fp32, card=args.card,
                       learned_prompts=not args.no_learned_prompts)
    size = (out / WEIGHTS_NAME).stat().st_size / 1e6
    print(f"exported {args.src} -> {out} ({size:.1f} MB weights)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
