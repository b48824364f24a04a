"""Face detection recall on real photos: emocap's face pipeline beside the Haar cascade it replaced.

Not a test: a measurement to run by hand and paste into docs/faces.md::

    OMP_NUM_THREADS=2 python benchmarks/face_detection.py --root ../shared/data/faces-wild-dev \
        --out results/face_detection.json

Every photo of ``faces-wild-dev`` shows a face, so a photo where a detector returns nothing is a miss. For each
detector it reports misses overall and per class, photos per second (detection only, decoded photos in memory),
and, to see whether misses fall on some people more than others, the miss rate split by head yaw (from the
pipeline's eye and nose keypoints, on photos where it found the face) and by face brightness (a proxy for skin
tone and lighting: the mean luminance of the central half of the face box, in tertiles; only where it found the
face) and by colour vs gray photos. ``--media`` adds the face counts on ``../shared/data/media`` photos.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from emocap import faces


def haar_detect(image: Image.Image) -> list:
    """The detector emocap used before the face pipeline: OpenCV's frontal Haar cascade (emocap 0.1 settings)."""
    gray = np.asarray(image.convert("L"))
    scale = min(1.0, 1024 / max(gray.shape))
    if scale < 1:
        gray = cv2.resize(gray, (int(gray.shape[1] * scale), int(gray.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    boxes = cascade.detectMultiScale(cv2.equalizeHist(gray), scaleFactor=1.1, minNeighbors=5,
                                     minSize=(max(int(24 * scale), 12),) * 2)
    return list(np.asarray(boxes).reshape(-1, 4))


def yaw_bin(face: faces.FaceBox) -> str:
    """Head yaw from keypoints: the nose tip's offset from the eye midpoint, in eye distances."""
    rx, lx = face.landmark("right_eye")[0], face.landmark("left_eye")[0]
    nose_x = face.landmark("nose_tip")[0]
    eye_dist = max(1e-6, abs(lx - rx))
    offset = abs(nose_x - (rx + lx) / 2) / eye_dist
    return "frontal (<0.15)" if offset < 0.15 else "turned (0.15-0.4)" if offset < 0.4 else "profile (>0.4)"


def brightness(image: Image.Image, face: faces.FaceBox) -> float:
    w, h = face.x1 - face.x0, face.y1 - face.y0
    inner = image.convert("L").crop((face.x0 + w // 4, face.y0 + h // 4, face.x1 - w // 4, face.y1 - h // 4))
    return float(np.asarray(inner).mean()) if inner.width and inner.height else float("nan")


def measure(root: Path) -> dict:
    rows = list(csv.DictReader(open(root / "labels.csv")))
    photos = [(r["label"], Image.open(root / r["file"]).convert("RGB"), r["file"]) for r in rows]
    detectors = {"haar (before)": haar_detect, "emocap face pipeline": faces.detect_faces}
    report = {"photos": len(photos), "detectors": {}}
    found_by_pipeline, all_missed = {}, {}
    for name, detect in detectors.items():
        misses, per_class, missed_files = 0, Counter(), []
        start = time.perf_counter()
        results = [detect(image) for _, image, _ in photos]
        seconds = time.perf_counter() - start
        for (label, _, file), found in zip(photos, results):
            per_class[label, "n"] += 1
            if len(found) == 0:
                misses += 1
                per_class[label, "miss"] += 1
                missed_files.append(file)
        all_missed[name] = missed_files
        if name == "emocap face pipeline":
            found_by_pipeline = {file: found for (_, _, file), found in zip(photos, results)}
        classes = sorted({label for label, _ in per_class})
        report["detectors"][name] = {
            "missed": misses, "missed_pct": round(100 * misses / len(photos), 2),
            "photos_per_s": round(len(photos) / seconds, 1),
            "missed_per_class": {c: f"{per_class[c, 'miss']}/{per_class[c, 'n']}" for c in classes},
            "missed_files": missed_files[:50],
        }
    report["haar_misses_by_group"] = _groups(photos, found_by_pipeline, set(all_missed["haar (before)"]))
    report["pipeline_misses_by_group"] = _groups(photos, found_by_pipeline, set(all_missed["emocap face pipeline"]))
    return report


def _groups(photos, found_by_pipeline, missed: set) -> dict:
    """A detector's miss rate by yaw, brightness tertile and colour, on photos where the pipeline found the face
    (yaw and brightness need its box and keypoints)."""
    table = defaultdict(Counter)
    light = []
    for _, image, file in photos:
        found = found_by_pipeline.get(file)
        if not found:
            continue
        face = found[0]
        light.append((brightness(image, face), file))
        rgb = np.asarray(image).astype(int)
        colour = "colour" if np.abs(rgb[..., 0] - rgb[..., 1]).mean() + np.abs(rgb[..., 1] - rgb[..., 2]).mean() > 4 else "gray"
        for group in (("yaw", yaw_bin(face)), ("photo", colour)):
            table[group]["n"] += 1
            table[group]["miss"] += file in missed
    light.sort()
    for i, (_, file) in enumerate(light):
        group = ("face brightness", ["darkest third", "middle third", "brightest third"][min(2, 3 * i // len(light))])
        table[group]["n"] += 1
        table[group]["miss"] += file in missed
    return {f"{kind}: {value}": f"{c['miss']}/{c['n']} ({100 * c['miss'] / c['n']:.1f}%)"
            for (kind, value), c in sorted(table.items())}


def media_counts(media: Path) -> dict:
    out = {}
    for path in sorted(media.glob("*.jpg")):
        image = Image.open(path).convert("RGB")
        out[path.name] = {"haar (before)": len(haar_detect(image)), "emocap face pipeline": len(faces.detect_faces(image))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("../shared/data/faces-wild-dev"))
    parser.add_argument("--media", type=Path, default=Path("../shared/data/media"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    report = measure(args.root)
    if args.media.is_dir():
        report["media_face_counts"] = media_counts(args.media)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
