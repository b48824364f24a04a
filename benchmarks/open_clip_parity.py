"""Plain open_clip vs emocap on colour photos: same top label, same probabilities (issue 16, item 3).

A measurement script beside the package (not part of it). The plain side is what a user without emocap writes:
``open_clip.create_model_and_transforms("local-dir:FOLDER")`` and its own transform, ``open_clip.get_tokenizer``,
class text features from the prompts in the folder's config (each template filled with the label, then the
label's descriptions; mean of the normalised features, normalised), ``softmax(logit_scale * img @ text.T)``. The
emocap side is ``ZeroShotClassifier.from_pretrained("local-dir:FOLDER").predict_proba``. Both get the same PIL
images.

Inputs, picked deterministically from ``faces-wild-dev`` (read its README): the photos in sorted path order whose
colour channels differ (most of the folder is gray: 109 of 2,043 photos are colour), each as the whole photo and
then as its centre crop (the middle 70%, a tighter framing of the face), the first ``--n`` of these.

With ``--before FOLDER`` (the same model saved before the gray fold: ``"grayscale": true``) it also measures
how emocap's scores moved (old emocap path: gray "L" conversion then the transform; new: RGB through the
transform, gray in the first layer): on the same colour inputs, on every faces-wild-dev photo, and with
``--ferplus ROOT`` on FER+ test (majority protocol), as prediction flips and the largest probability change.

Usage::

    python benchmarks/open_clip_parity.py --model emocap/default_model --out /tmp/parity.json
    mkdir /tmp/old && for f in open_clip_config.json open_clip_model.safetensors; do
        git show 060e782:emocap/default_model/$f > /tmp/old/$f; done   # the default model before the fold
    python benchmarks/open_clip_parity.py --before /tmp/old --ferplus ../shared/data/ferplus
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import open_clip
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"


def is_colour(image: Image.Image) -> bool:
    """Whether an RGB image's channels differ anywhere (not gray stored as RGB)."""
    pixels = np.asarray(image, dtype=np.int16)
    return bool(np.any(pixels[..., 0] != pixels[..., 1]) or np.any(pixels[..., 2] != pixels[..., 1]))


def colour_inputs(root: Path, n: int) -> List[tuple]:
    """``[(name, PIL RGB image), ...]``: each colour photo in sorted path order, then its centre crop (the middle
    70%: a tighter framing of the face, as the photos are framed loosely around it), the first ``n``."""
    out = []
    for path in sorted((root / "images").glob("*/*")):
        with Image.open(path) as im:
            image = im.convert("RGB")
        if not is_colour(image):
            continue  # gray stored as RGB
        name = str(path.relative_to(root))
        w, h = image.size
        box = (round(0.15 * w), round(0.15 * h), round(0.85 * w), round(0.85 * h))
        out += [(name, image), (name + "#centre", image.crop(box))]
        if len(out) >= n:
            break
    return out[:n]


def plain_open_clip_probs(folder: Path, images: List[Image.Image]) -> np.ndarray:
    """What a plain open_clip user computes: the folder's own transform, tokenizer and prompts."""
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    model.eval()
    meta = json.loads((folder / "open_clip_config.json").read_text(encoding="utf-8"))["emocap"]
    prompts = meta["prompts"]
    with torch.no_grad():
        text = []
        for label in meta["labels"]:
            texts = [t.format(label) for t in prompts["templates"]]
            if prompts.get("use_descriptions", True):
                texts += prompts.get("descriptions", {}).get(label, [])
            feats = model.encode_text(tokenizer(texts), normalize=True).mean(dim=0)
            text.append(feats / feats.norm())
        text = torch.stack(text)
        probs = []
        for s in range(0, len(images), 64):
            x = torch.stack([preprocess(im) for im in images[s:s + 64]])
            img = model.encode_image(x, normalize=True)
            probs.append((model.logit_scale.exp() * img @ text.T).softmax(dim=-1))
    return torch.cat(probs).numpy()


def emocap_probs(folder: Path, images: List[Image.Image]) -> np.ndarray:
    from emocap import ZeroShotClassifier

    return ZeroShotClassifier.from_pretrained(f"local-dir:{folder}").predict_proba(images)


def compare(a: np.ndarray, b: np.ndarray) -> Dict[str, float]:
    return {"n": int(len(a)), "top_label_same": int((a.argmax(1) == b.argmax(1)).sum()),
            "max_prob_diff": float(np.abs(a - b).max())}


def ferplus_images(root: Path) -> List[Image.Image]:
    from emocap.ferplus import FerPlusSplit

    data = FerPlusSplit(root, "test")
    return [data.load(record) for record, _ in data.majority()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(REPO / "emocap" / "default_model"), help="model folder (folded gray)")
    p.add_argument("--data", default=str(DATA / "faces-wild-dev"), help="faces-wild-dev folder")
    p.add_argument("--n", type=int, default=200, help="colour inputs to compare (default 200)")
    p.add_argument("--before", default=None, help="the same model saved unfolded, to measure what moved")
    p.add_argument("--ferplus", default=None, help="FER+ root, with --before: flips on FER+ test")
    p.add_argument("--out", default=None, help="write the numbers as JSON here")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    folder, data = Path(args.model), Path(args.data)
    inputs = colour_inputs(data, args.n)
    images = [im for _, im in inputs]
    new = emocap_probs(folder, images)
    result = {"model": str(folder), "inputs": f"{len(inputs)} colour inputs from {data} "
              f"({sum(1 for n, _ in inputs if not n.endswith('#centre'))} photos and their centre crops)",
              "plain_open_clip_vs_emocap": compare(plain_open_clip_probs(folder, images), new)}
    if args.before:
        before = Path(args.before)
        result["emocap_before_vs_after"] = {"colour_inputs": compare(emocap_probs(before, images), new)}
        photos = {"gray": [], "colour": []}
        for path in sorted((data / "images").glob("*/*")):
            with Image.open(path) as im:
                image = im.convert("RGB")
            photos["colour" if is_colour(image) else "gray"].append(image)
        for kind, images_of_kind in photos.items():
            result["emocap_before_vs_after"][f"faces_wild_dev_{kind}_photos"] = compare(
                emocap_probs(before, images_of_kind), emocap_probs(folder, images_of_kind))
        if args.ferplus:
            fer = ferplus_images(Path(args.ferplus))
            result["emocap_before_vs_after"]["ferplus_test_majority"] = compare(
                emocap_probs(before, fer), emocap_probs(folder, fer))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
