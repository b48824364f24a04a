"""Carry-over to photos: several models side by side on FER+, on real photos and under photo-like corruptions.

Not a test: model selection for the faces-in-the-wild work (docs/training.md, "Photos"), run by hand::

    OMP_NUM_THREADS=2 python benchmarks/photo_robustness.py --models default runs/default-photos/best \
        --out results/photo_robustness.json

For each model, WAR / UAR (majority protocol, the model's own prompts, canonical names) on

* FER+ valid and test (8 classes), each also with flip averaging (the mean of the probabilities for the image and
  its mirror image);
* FER+ test under fixed corruptions of the kind photos bring, each applied to the 48x48 crop: Gaussian blur
  (``blur``, radius 1 px), JPEG at quality 15 (``jpeg``), down to 20 px and back (``low-res``), a darkening gamma
  of 2 (``dark``), a linear shade from full to 35% brightness across the face (``shade``) and a dark band over the
  eyes (``eye-band``, like sunglasses); and their mean (``corrupted mean``);
* faces-wild-dev (its 5 classes with enough images), each photo's main face framed exactly as ``emocap classify``
  frames it with no flags, clean, flip-averaged, and under the blur and JPEG corruptions.

The photos are searched once and their crops shared by all models. faces-wild-dev is a validation set (model
selection only, never trained on); FER+ test is reported for the record, not for choosing. Each model after the
first is compared with the first on the two selection sets (FER+ valid and faces-wild-dev, clean): the
differences in WAR, UAR and WAR + UAR with paired-bootstrap 95% intervals (the same resampled images for both
models, 2,000 rounds, seed 0), and the selection score training uses for ``best/`` (FER+ valid WAR + UAR plus
the photos' WAR + UAR).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from pathlib import Path

import numpy as np
from class_prior_probe import PHOTO_CLASSES, photo_rows
from onnx_speed import ferplus_split
from PIL import Image, ImageFilter, ImageOps

from emocap import ZeroShotClassifier
from emocap.face_predictions import CropPolicy, main_face
from emocap.ferplus import EMOTIONS
from emocap.images import load_image
from emocap.metrics import war_uar


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert(image.mode if image.mode in ("L", "RGB") else "RGB")


def _low_res(image: Image.Image, side: int) -> Image.Image:
    small = image.resize((side, side), Image.BILINEAR)
    return small.resize(image.size, Image.BILINEAR)


def _dark(image: Image.Image, gamma: float) -> Image.Image:
    table = [round(255 * (i / 255) ** gamma) for i in range(256)]
    return image.point(table * len(image.getbands()))


def _shade(image: Image.Image, low: float) -> Image.Image:
    width, height = image.size
    ramp = np.linspace(1.0, low, width, dtype=np.float32)[None, :]
    pixels = np.asarray(image, dtype=np.float32)
    ramp = ramp[..., None] if pixels.ndim == 3 else ramp
    return Image.fromarray(np.clip(pixels * ramp, 0, 255).astype(np.uint8), mode=image.mode)


def _eye_band(image: Image.Image) -> Image.Image:
    width, height = image.size
    out = image.copy()
    band = Image.new(image.mode, (width, round(0.16 * height)), 0)
    out.paste(band, (0, round(0.30 * height)))
    return out


CORRUPTIONS = {
    "blur": lambda im: im.filter(ImageFilter.GaussianBlur(radius=1.0)),
    "jpeg": lambda im: _jpeg(im, 15),
    "low-res": lambda im: _low_res(im, 20),
    "dark": lambda im: _dark(im, 2.0),
    "shade": lambda im: _shade(im, 0.35),
    "eye-band": _eye_band,
}
PHOTO_CORRUPTIONS = ("blur", "jpeg")


def _scores(probs: np.ndarray, labels: np.ndarray) -> list:
    m = war_uar(probs.argmax(axis=1), labels)
    return [round(100 * m["war"], 2), round(100 * m["uar"], 2)]


def _war_uar_rounds(correct: np.ndarray, labels: np.ndarray, rounds: np.ndarray) -> np.ndarray:
    """[R, 2] WAR and UAR (points) of one model on each bootstrap round (rows of image indices)."""
    hits, classes = correct[rounds], labels[rounds]
    war = hits.mean(axis=1)
    recalls = []
    for c in np.unique(labels):
        members = classes == c
        recalls.append((hits & members).sum(axis=1) / np.maximum(members.sum(axis=1), 1))
    return 100 * np.stack([war, np.mean(recalls, axis=0)], axis=1)


def paired_bootstrap(pred_a: np.ndarray, pred_b: np.ndarray, labels: np.ndarray, n_rounds: int = 2000,
                     seed: int = 0) -> dict:
    """B minus A in WAR, UAR and WAR + UAR (points): the difference on all images and its paired 95% interval."""
    rounds = np.random.default_rng(seed).integers(0, len(labels), size=(n_rounds, len(labels)))
    diff = (_war_uar_rounds(pred_b == labels, labels, rounds) - _war_uar_rounds(pred_a == labels, labels, rounds))
    diff = np.concatenate([diff, diff.sum(axis=1, keepdims=True)], axis=1)
    a, b = war_uar(pred_a, labels), war_uar(pred_b, labels)
    point = [100 * (b["war"] - a["war"]), 100 * (b["uar"] - a["uar"])]
    point.append(point[0] + point[1])
    low, high = np.percentile(diff, [2.5, 97.5], axis=0)
    return {name: {"diff": round(p, 2), "ci95": [round(float(lo), 2), round(float(hi), 2)]}
            for name, p, lo, hi in zip(("war", "uar", "war+uar"), point, low, high)}


def photo_crops(root: Path, policy: CropPolicy):
    """faces-wild-dev's main-face crops (as classify frames them), labels, and the number of photos with no face."""
    crops, labels, missed = [], [], 0
    for row in photo_rows(root):
        crop, outcome = main_face(load_image(str(root / row["file"])), policy)
        if outcome == "no face":
            missed += 1
            continue
        crops.append(crop)
        labels.append(PHOTO_CLASSES.index(row["label"]))
    return crops, np.array(labels), missed


def score_model(model: str, ferplus: dict, photos, batch_size: int):
    """Every WAR / UAR of one model (see the module docstring), and its predictions on the two selection sets."""
    out, predictions = {}, {}
    clf = ZeroShotClassifier.from_pretrained(model, labels=list(EMOTIONS))

    def probs(clf_, images):
        return np.asarray(clf_.probs_from_features(clf_.encode_crops(images, batch_size)))

    for split, (images, labels) in ferplus.items():
        plain = probs(clf, images)
        mirrored = probs(clf, [ImageOps.mirror(im) for im in images])
        out[f"ferplus-{split}"] = _scores(plain, labels)
        predictions[f"ferplus-{split}"] = plain.argmax(axis=1)
        out[f"ferplus-{split} flip-avg"] = _scores((plain + mirrored) / 2, labels)
    images, labels = ferplus["test"]
    corrupted = []
    for name, corrupt in CORRUPTIONS.items():
        out[f"ferplus-test {name}"] = _scores(probs(clf, [corrupt(im) for im in images]), labels)
        corrupted.append(out[f"ferplus-test {name}"])
    out["ferplus-test corrupted mean"] = [round(float(v), 2) for v in np.mean(corrupted, axis=0)]
    crops, labels = photos
    clf5 = ZeroShotClassifier.from_pretrained(model, labels=PHOTO_CLASSES)
    plain = probs(clf5, crops)
    out["faces-wild-dev"] = _scores(plain, labels)
    predictions["faces-wild-dev"] = plain.argmax(axis=1)
    out["faces-wild-dev flip-avg"] = _scores((plain + probs(clf5, [ImageOps.mirror(c) for c in crops])) / 2, labels)
    for name in PHOTO_CORRUPTIONS:
        out[f"faces-wild-dev {name}"] = _scores(probs(clf5, [CORRUPTIONS[name](c) for c in crops]), labels)
    out["selection score"] = [round(sum(out["ferplus-valid"]) + sum(out["faces-wild-dev"]), 2)]
    return out, predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["default"])
    parser.add_argument("--ferplus", default="../shared/data/ferplus")
    parser.add_argument("--photos", type=Path, default=Path("../shared/data/faces-wild-dev"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    start = time.time()
    ferplus = {split: ferplus_split(args.ferplus, split) for split in ("valid", "test")}
    policy = ZeroShotClassifier.from_pretrained(args.models[0]).crop_policy
    crops, labels, missed = photo_crops(args.photos, policy)
    print(f"faces-wild-dev: {len(crops)} faces, {missed} photos without a face ({time.time() - start:.0f} s)",
          flush=True)
    results = {"photos_without_face": missed, "models": {}, "against_first": {}}
    selection_labels = {"ferplus-valid": ferplus["valid"][1], "faces-wild-dev": labels}
    first = None
    for model in args.models:
        scores, predictions = score_model(model, ferplus, (crops, labels), args.batch_size)
        results["models"][model] = scores
        print(f"\n{model} ({time.time() - start:.0f} s)")
        for key, values in scores.items():
            print(f"  {key:32s} " + ("  ".join(f"{k} {v:6.2f}" for k, v in zip(("WAR", "UAR"), values))
                                     if len(values) == 2 else f"{values[0]:6.2f}"), flush=True)
        if first is None:
            first = predictions
        else:
            results["against_first"][model] = {
                name: paired_bootstrap(first[name], predictions[name], y) for name, y in selection_labels.items()}
            for name, diffs in results["against_first"][model].items():
                print(f"  vs {args.models[0]} on {name}: " + "; ".join(
                    f"{k} {d['diff']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]" for k, d in diffs.items()))
        if args.out:  # after every model, so a stopped run keeps the models it finished
            args.out.parent.mkdir(parents=True, exist_ok=True)
            partial = args.out.with_name(args.out.name + ".partial")
            partial.write_text(json.dumps(results, indent=1), encoding="utf-8")
            os.replace(partial, args.out)  # a kill mid-write leaves the last whole file


if __name__ == "__main__":
    main()
