"""CPU runtimes side by side: torch fp32 vs ONNX Runtime fp32 vs two ONNX Runtime int8 variants, on the default model.

Not a test: a measurement to run by hand (a few minutes on a 2-core CPU) and paste into docs/speed.md::

    OMP_NUM_THREADS=1 python benchmarks/onnx_speed.py --ferplus ../shared/data/ferplus --out onnx_speed.json

In one process it exports the model (``emocap export onnx``, to a temporary folder unless ``--onnx-dir`` names
one) and makes two int8 copies of its image tower with ``onnxruntime.quantization`` (the text tower runs once per
label set and stays fp32): **int8-dynamic** (``quantize_dynamic``: int8 weights, activations quantized per batch)
and **int8-static** (``quantize_static``, QDQ, per-channel weights, calibrated on 256 FER+ *valid* faces). Then,
for each runtime (torch: ``from_pretrained(device="cpu")``; onnx: ``from_pretrained(DIR, runtime="onnx")``; the
int8 variants: the same classifier over the int8 image session; every runtime uses torch's number of threads):

* **speed**, images per second, at batch 1 and 64: ``predict_proba`` end to end on decoded FER+ test faces
  (preprocessing + image tower + scores) and the image tower alone on preprocessed tensors. The runtimes take
  turns inside each of ``--runs`` rounds, so a neighbour's load hits all of them alike; the report gives the
  median over rounds with the spread (min-max), and each runtime's ratio to torch computed within a round;
* **accuracy**: WAR and UAR on every FER+ test image with a majority label (the eval protocol), per runtime;
* **start-up**: wall time of ``emocap classify [--runtime onnx --model DIR] photo.jpg`` in a fresh process
  (median of ``--runs``), beside ``python -c "import torch"`` and ``import onnxruntime``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from emocap import ZeroShotClassifier
from emocap.ferplus import EMOTIONS, FerPlusSplit
from emocap.images import image_from_bytes
from emocap.metrics import war_uar
from emocap.onnx_export import export_onnx

RUNTIMES = ("torch", "onnx", "int8-dynamic", "int8-static")


def ferplus_test(root: str):
    """Decoded FER+ test faces with a majority label, and the labels (indices into EMOTIONS)."""
    return ferplus_split(root, "test")


def ferplus_split(root: str, name: str):
    """Decoded faces with a majority label of one FER+ split, and the labels (indices into EMOTIONS)."""
    split = FerPlusSplit(root, name)
    try:
        pairs = split.majority()
        images = [image_from_bytes(lambda r=r: split.image_bytes(r), r.name) for r, _ in pairs]
    finally:
        split.close()
    return images, np.array([label for _, label in pairs])


def quantize_image_tower(onnx_dir: Path, out: Path, ferplus: str) -> dict:
    """``{"int8-dynamic": path, "int8-static": path}``: int8 copies of the export's image tower."""
    import logging

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.getLogger().setLevel(logging.ERROR)
    source = onnx_dir / "image.onnx"
    paths = {"int8-dynamic": out / "image.int8-dynamic.onnx", "int8-static": out / "image.int8-static.onnx"}
    quantize_dynamic(str(source), str(paths["int8-dynamic"]), weight_type=QuantType.QInt8)
    clf = ZeroShotClassifier.from_pretrained(str(onnx_dir), runtime="onnx")
    split = FerPlusSplit(ferplus, "valid")
    try:
        calib = np.stack([np.asarray(clf.prepare_image(image_from_bytes(lambda r=r: split.image_bytes(r), r.name)))
                          for r in split.records[:256]])
    finally:
        split.close()

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.start = 0

        def get_next(self):
            if self.start >= len(calib):
                return None
            self.start += 32
            return {"pixels": calib[self.start - 32:self.start]}

    quant_pre_process(str(source), str(out / "image.pre.onnx"))
    quantize_static(str(out / "image.pre.onnx"), str(paths["int8-static"]), Batches(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return paths


def classifier(runtime: str, onnx_dir: Path, int8_paths: dict) -> ZeroShotClassifier:
    if runtime == "torch":
        return ZeroShotClassifier.from_pretrained(device="cpu")
    clf = ZeroShotClassifier.from_pretrained(str(onnx_dir), runtime="onnx")
    if runtime in int8_paths:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = torch.get_num_threads(), 1
        # the benchmark swaps in the int8 image session; the product path only runs exported fp32 towers
        clf.onnx_towers._sessions["image"] = ort.InferenceSession(str(int8_paths[runtime]), options,
                                                                  providers=["CPUExecutionProvider"])
    return clf


def rate(fn, n_images: int, min_seconds: float) -> float:
    """Images per second of ``fn()`` (which handles ``n_images``), repeated for at least ``min_seconds``."""
    fn()  # warm-up
    done, start = 0, time.perf_counter()
    while True:
        fn()
        done += n_images
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def spread(values: list) -> dict:
    """Median, min and max of repeated measurements (what every table here reports)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def image_rates(clf: ZeroShotClassifier, images: list, prepared: list, min_seconds: float) -> dict:
    """Images per second of one classifier: end to end and image tower only, at batch 1 and 64."""
    return {
        "e2e_b1": rate(lambda: clf.predict_proba(images[:16], batch_size=1), 16, min_seconds),
        "e2e_b64": rate(lambda: clf.predict_proba(images[:256], batch_size=64), 256, min_seconds),
        "tower_b1": rate(lambda: [clf.encode_prepared([t]) for t in prepared[:16]], 16, min_seconds),
        "tower_b64": rate(lambda: clf.encode_prepared(prepared), 64, min_seconds),
    }


def ferplus_probs(clf: ZeroShotClassifier, images: list) -> np.ndarray:
    """Class probabilities with the columns in FER+ class order."""
    order = [clf.labels.index(e) for e in EMOTIONS]
    return np.asarray(clf.predict_proba(images, batch_size=64))[:, order]


def speed_round(clfs: dict, images: list, min_seconds: float) -> dict:
    """One round: ``{runtime: {"e2e_b1", "e2e_b64", "tower_b1", "tower_b64"}}`` images per second."""
    prepared = [clfs["torch"].prepare_image(im) for im in images[:64]]
    return {runtime: image_rates(clf, images, prepared, min_seconds) for runtime, clf in clfs.items()}


def summarise(rounds: list) -> dict:
    """Median and spread of each rate, and of each runtime's ratio to torch within a round."""
    summary = {}
    for runtime in rounds[0]:
        for key in rounds[0][runtime]:
            ratios = [r[runtime][key] / r["torch"][key] for r in rounds]
            summary.setdefault(runtime, {})[key] = {
                **spread([r[runtime][key] for r in rounds]), **{f"ratio_{k}": v for k, v in spread(ratios).items()}}
    return summary


def accuracy(clfs: dict, images: list, labels: np.ndarray) -> dict:
    out = {}
    for runtime, clf in clfs.items():
        probs = ferplus_probs(clf, images)
        out[runtime] = {k: round(100 * v, 2) for k, v in war_uar(probs.argmax(1), labels).items()}
    return out


def startup(onnx_dir: Path, photo: Path, runs: int) -> dict:
    emocap = str(Path(sys.executable).with_name("emocap"))
    commands = {
        "import torch": [sys.executable, "-c", "import torch"],
        "import onnxruntime": [sys.executable, "-c", "import onnxruntime"],
        "classify torch": [emocap, "classify", str(photo), "--device", "cpu"],
        "classify onnx": [emocap, "classify", str(photo), "--runtime", "onnx", "--model", str(onnx_dir)],
    }
    out = {}
    for _ in range(runs):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            out.setdefault(name, []).append(time.perf_counter() - start)
    return {name: spread(v) for name, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ferplus", required=True, help="FER+ root (FER2013Test folder or .tar inside)")
    ap.add_argument("--onnx-dir", default=None, help="an existing export of the default model (default: export now)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=2.0, help="time per measurement")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = Path(args.onnx_dir) if args.onnx_dir else export_onnx(None, Path(tmp) / "onnx")
        int8_paths = quantize_image_tower(onnx_dir, Path(tmp), args.ferplus)
        images, labels = ferplus_test(args.ferplus)
        clfs = {runtime: classifier(runtime, onnx_dir, int8_paths) for runtime in RUNTIMES}
        report = {"threads": torch.get_num_threads(), "n_test": len(images)}
        report["speed"] = summarise([speed_round(clfs, images, args.min_seconds) for _ in range(args.runs)])
        if not args.skip_accuracy:
            report["ferplus_test"] = accuracy(clfs, images, labels)
        photo = Path(tmp) / "face.png"
        images[0].save(photo)
        report["startup_s"] = startup(onnx_dir, photo, args.runs)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
