"""Face framing sweep: which crop of a detected face the default model reads best, on full photos.

Not a test: model selection for the crop policy stored with a model (``face_crop.margin``), run by hand::

    OMP_NUM_THREADS=2 python benchmarks/face_framing.py --root ../shared/data/faces-wild-dev \
        --margins 0.2 0.35 0.5 0.7 --out results/face_framing.json
    OMP_NUM_THREADS=2 python benchmarks/face_framing.py --margins 0.2 --quality-probes   # image quality probes
    OMP_NUM_THREADS=2 python benchmarks/face_framing.py --ferplus-framing ../shared/data/ferplus   # training's framing

Each photo of an ImageFolder-style set (``images/<class>/``; the five classes with enough images by default) is
searched once with emocap's face pipeline; its largest face is then cropped at each margin, with and without
eye alignment, and scored zero-shot with the model's own prompts; the whole photo is scored as well. Reports WAR
and UAR per framing. faces-wild-dev is a validation set: choose the margin here, never train on it.

``--ferplus-framing ROOT`` instead measures how the training crops are framed: each FER+ test crop (48x48) is
brought up to 192 px and searched with the same pipeline, and the script reports the face box's side as a share of
the crop (and the margin that implies, the ``face_crop.margin`` that would frame a photo the same way) and the
eye line's roll in degrees, as 10th/50th/90th percentiles.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from emocap import ZeroShotClassifier, faces
from emocap.images import load_image
from emocap.metrics import war_uar

CLASSES = ["neutral", "happiness", "surprise", "anger", "sadness"]


def ferplus_framing(root: str, side: int = 192) -> dict:
    """How FER+ test's crops frame their faces, measured with the face pipeline (see the module docstring)."""
    from onnx_speed import ferplus_split

    images, _ = ferplus_split(root, "test")
    shares, rolls, missed = [], [], 0
    for image in images:
        found = faces.detect_faces(image.convert("RGB").resize((side, side), Image.BICUBIC))
        if not found:
            missed += 1
            continue
        face = found[0]
        shares.append(max(face.x1 - face.x0, face.y1 - face.y0) / side)
        rolls.append(abs(face.eye_angle()))
    shares, rolls = np.asarray(shares), np.asarray(rolls)

    def percentiles(values):
        return dict(zip(("p10", "p50", "p90"), np.percentile(values, [10, 50, 90]).round(3).tolist()))

    return {"crops": len(images), "no_face": missed, "box_share": percentiles(shares),
            "implied_margin": percentiles(np.clip((1 / shares - 1) / 2, 0, None)),
            "abs_roll_deg": percentiles(rolls), "roll_over_5_deg": round(float(np.mean(rolls > 5)), 3),
            "roll_over_10_deg": round(float(np.mean(rolls > 10)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("../shared/data/faces-wild-dev"))
    parser.add_argument("--model", default=None)
    parser.add_argument("--margins", type=float, nargs="+", default=[0.2, 0.35, 0.5, 0.7])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quality-probes", action="store_true",
                        help="also score the margin-0.2 aligned crop brought down to FER+'s 48 px and blurred "
                             "(sigma 1 px at 64 px): does image quality explain the gap to FER+?")
    parser.add_argument("--ferplus-framing", default=None, metavar="ROOT",
                        help="measure the framing of FER+ test's crops (box share, implied margin, roll) and stop")
    args = parser.parse_args()
    if args.ferplus_framing:
        report = ferplus_framing(args.ferplus_framing)
        print(json.dumps(report, indent=2))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")
        return
    clf = ZeroShotClassifier.from_pretrained(args.model, labels=CLASSES)
    files, labels = [], []
    for index, name in enumerate(CLASSES):
        for path in sorted((args.root / "images" / name).iterdir()):
            files.append(path)
            labels.append(index)
    labels = np.asarray(labels)
    start = time.perf_counter()
    photos = [load_image(str(p)) for p in files]
    found = [faces.detect_faces(p) for p in photos]
    detect_s = time.perf_counter() - start
    framings = {"whole photo": lambda p, f: p}
    for margin in args.margins:
        framings[f"aligned, margin {margin}"] = lambda p, f, m=margin: faces.face_crop(p, f, m) if f else p
        framings[f"unaligned, margin {margin}"] = lambda p, f, m=margin: (faces.face_crop(p, f, m, align=False)
                                                                           if f else p)
    if args.quality_probes:
        def at_48(crop):
            return crop.convert("L").resize((48, 48), Image.BOX).convert("RGB")

        def blurred(crop):
            return crop.resize((64, 64), Image.BICUBIC).filter(ImageFilter.GaussianBlur(1.0))

        framings["aligned, margin 0.2, at 48 px"] = lambda p, f: at_48(faces.face_crop(p, f, 0.2) if f else p)
        framings["aligned, margin 0.2, blurred"] = lambda p, f: blurred(faces.face_crop(p, f, 0.2) if f else p)
    report = {"photos": len(files), "no_face": sum(not f for f in found), "detect_s": round(detect_s, 1),
              "framings": {}}
    for name, frame in framings.items():
        crops = [frame(p, f[0] if f else None) for p, f in zip(photos, found)]
        probs = clf.probs_from_features(clf.encode_crops(crops, 64))
        scores = war_uar(probs.argmax(1), labels)
        war, uar = scores["war"], scores["uar"]
        report["framings"][name] = {"war": round(100 * war, 2), "uar": round(100 * uar, 2)}
        print(f"{name:28s} WAR {100 * war:6.2f}  UAR {100 * uar:6.2f}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
