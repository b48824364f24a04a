"""Caption builder throughput: images per second on this machine, end to end from image bytes to shards.

Not a test: a measurement to run by hand (a few minutes on a 2-core CPU) and paste into docs/captions.md::

    python benchmarks/captions.py --ferplus ../shared/data/ferplus --crops 2000 --photos 200 --out results/captions-speed.json

Rows (one process, ``workers=1``; each build writes real shards to a temporary folder):

* pre-cropped faces (FER+ train, 48x48) with the template writer: FACS priors only (``--face-analysis none``),
  and with dlib landmarks + AU estimates (the default);
* full photos with detection + landmarks + alignment + crop + captions: ``examples/astronaut.jpg`` and FER+
  faces upscaled 4x and pasted at random places on 640x480 gray backgrounds, found by emocap's face pipeline
  (BlazeFace, :mod:`emocap.faces`), landmarks by dlib;
* the same dlib crop build with ``workers=2`` (both cores).

The rest-face reference is built before the clock starts (it is a one-off per dataset, timed separately).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import webdataset  # noqa: F401  (imported before the clock starts, as a long run would have it)
from PIL import Image

from emocap.face_analysis import FaceAnalyzer, build_reference
from emocap.captioning.shards import build_captions
from emocap.captioning.sources import Sample, ferplus_source

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def full_photos(crops, n: int, seed: int = 0):
    """n full-photo samples: the astronaut photo, then FER+ faces upscaled 4x on 640x480 gray backgrounds."""
    rng = np.random.default_rng(seed)
    astronaut = (EXAMPLES / "astronaut.jpg").read_bytes()
    out = [Sample(key="astronaut", source_file="examples/astronaut.jpg", read_bytes=lambda: astronaut,
                  image_ext="jpg", distribution={"happiness": 1.0})]
    for s in crops[: n - 1]:
        face = Image.open(io.BytesIO(s.read_bytes())).convert("L").resize((192, 192), Image.BICUBIC)
        canvas = Image.new("L", (640, 480), int(rng.integers(60, 200)))
        canvas.paste(face, (int(rng.integers(0, 640 - 192)), int(rng.integers(0, 480 - 192))))
        data = _png(canvas)
        out.append(Sample(key=f"photo_{s.key}", source_file=f"synthetic photo of {s.source_file}",
                          read_bytes=lambda d=data: d, image_ext="png", distribution=s.distribution))
    return out


def timed_build(samples, analyzer=None, workers: int = 1) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="emocap-bench-"))
    try:
        if analyzer is not None:
            t0 = time.perf_counter()
            data = build_reference(analyzer, samples, max_faces=2000)
            (folder / "reference.json").write_text(json.dumps(data))
            ref_s = time.perf_counter() - t0
        else:
            ref_s = 0.0
        t0 = time.perf_counter()
        report = build_captions(samples, folder, analyzer=analyzer, progress=False, workers=workers,
                                shard_size=max(1, -(-len(samples) // max(2, workers * 2))), dedup=False)
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"images": len(samples), "written": report["samples_written"], "skipped": report["samples_skipped"],
            "seconds": round(seconds, 2), "images_per_s": round(len(samples) / seconds, 1),
            "reference_seconds": round(ref_s, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ferplus", default="../shared/data/ferplus", help="FER+ root (faces for both rows)")
    ap.add_argument("--crops", type=int, default=2000, help="pre-cropped faces to caption")
    ap.add_argument("--photos", type=int, default=200, help="full photos to caption")
    ap.add_argument("--out", default=None, help="write the results as JSON here too")
    args = ap.parse_args()

    samples, _ = ferplus_source(args.ferplus, "train")
    crops = [s for s in samples if not s.skip_reason][: args.crops]
    photos = full_photos(crops, args.photos)
    dlib_crops = FaceAnalyzer("dlib")
    rows = {
        "crops, templates, FACS priors only": timed_build(crops),
        "crops, templates, dlib landmarks + AUs": timed_build(crops, dlib_crops),
        "crops, templates, dlib landmarks + AUs, 2 workers": timed_build(crops, FaceAnalyzer(dlib_crops.backend), workers=2),
        "full photos, face pipeline detect + dlib landmarks + align": timed_build(
            photos, FaceAnalyzer(dlib_crops.backend, detect=True)),
    }
    print(f"caption builder throughput ({platform.processor() or platform.machine()}, "
          f"{__import__('os').cpu_count()} cores)\n")
    print(f"{'row':55s} {'images':>7s} {'written':>8s} {'s':>7s} {'img/s':>8s}")
    for name, r in rows.items():
        print(f"{name:55s} {r['images']:7d} {r['written']:8d} {r['seconds']:7.1f} {r['images_per_s']:8.1f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
