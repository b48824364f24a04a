"""OpenVINO beside ONNX Runtime and torch on the CPU, on the default model's ONNX export (issue 16, item 4).

Not a test: a measurement to run by hand (about five minutes on a 2-core CPU) and paste into docs/speed.md::

    pip install openvino            # not an emocap dependency; without it the OpenVINO rows are skipped
    OMP_NUM_THREADS=2 python benchmarks/openvino_speed.py --ferplus ../shared/data/ferplus --out openvino_speed.json

It exports the default model (``emocap export onnx``, to a temporary folder unless ``--onnx-dir`` names one) and
builds one classifier per runtime, all on the same export and with the same number of threads (torch's, which
follows ``OMP_NUM_THREADS``):

* **torch**: ``from_pretrained(device="cpu")``; **onnx**: ``from_pretrained(DIR, runtime="onnx")`` (ONNX Runtime);
* **openvino-latency** / **openvino-throughput**: the ONNX classifier with both tower sessions replaced by OpenVINO
  models compiled from the same ``image.onnx`` / ``text.onnx`` for the ``CPU`` plugin (read directly, no
  conversion step), fp32 inference precision, with the ``LATENCY`` hint (one stream over every thread) or the
  ``THROUGHPUT`` hint (one stream per thread; a batch is split across that many asynchronous requests);
* **onnx-nospin** (``--onnx-nospin``): ONNX Runtime with ``session.intra_op.allow_spinning=0``, its pool threads
  sleeping between calls instead of spinning (what matters when the CPU is shared with other jobs).

Each runtime runs in its own spawned worker process, so no runtime's thread pool (torch's OpenMP, ONNX Runtime's,
OpenVINO's TBB) spins or pins threads beside another's. As in ``benchmarks/onnx_speed.py`` (whose helpers it
reuses), it measures images per second at batch 1 and 64, end to end (``predict_proba`` on decoded FER+ test faces)
and for the image tower alone, plus the text tower (64 prompts in batches of 64, prompts per second); the workers
take turns inside each of ``--runs`` rounds, and the report gives the median with the spread (min-max) and each
runtime's ratio to ONNX Runtime and to torch within a round. Accuracy: WAR and UAR on every FER+ test image with a
majority label (the eval protocol), and the largest probability difference to ONNX Runtime.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from emocap import ZeroShotClassifier
from emocap.metrics import war_uar
from emocap.onnx_export import export_onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_speed import ferplus_probs, ferplus_test, image_rates, rate, spread  # noqa: E402  (the sibling benchmark's helpers)

OPENVINO_HINTS = {"openvino-latency": "LATENCY", "openvino-throughput": "THROUGHPUT"}


class OpenVinoSession:
    """An OpenVINO model compiled from one tower's ONNX file, behind the ``run(None, feeds)`` call that
    :class:`emocap.onnx_runtime.OnnxTowers` makes on an ONNX Runtime session."""

    def __init__(self, core, path: Path, hint: str, threads: int):
        config = {"PERFORMANCE_HINT": hint, "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
        start = time.perf_counter()
        self.compiled = core.compile_model(str(path), "CPU", config)
        self.compile_s = time.perf_counter() - start
        self.streams = int(self.compiled.get_property("NUM_STREAMS"))
        self.request = self.compiled.create_infer_request()
        self.parallel = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.queue = None
        if self.parallel > 1:
            import openvino as ov

            self.queue = ov.AsyncInferQueue(self.compiled, self.parallel)
            self.queue.set_callback(self._collect)
        self._parts: dict = {}

    def _collect(self, request, index: int) -> None:
        self._parts[index] = request.get_output_tensor(0).data.copy()

    def run(self, _outputs, feeds: dict) -> list:
        (inputs,) = feeds.values()
        if self.queue is None or len(inputs) < self.parallel:
            return [self.request.infer({0: inputs})[0]]
        self._parts = {}
        for index, chunk in enumerate(np.array_split(inputs, self.parallel)):
            self.queue.start_async({0: np.ascontiguousarray(chunk)}, userdata=index)
        self.queue.wait_all()
        return [np.concatenate([self._parts[i] for i in range(len(self._parts))])]


def build_classifier(runtime: str, onnx_dir: Path, threads: int):
    """``(classifier, setup facts)`` for one runtime; OpenVINO ones need openvino (ImportError otherwise)."""
    if runtime == "torch":
        return ZeroShotClassifier.from_pretrained(device="cpu"), {}
    clf = ZeroShotClassifier.from_pretrained(str(onnx_dir), runtime="onnx")
    if runtime == "onnx-nospin":  # ONNX Runtime's pool threads sleep instead of spinning between calls
        clf.onnx_towers._options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return clf, {"session.intra_op.allow_spinning": "0"}
    if runtime not in OPENVINO_HINTS:
        return clf, {}
    import openvino as ov

    core, hint = ov.Core(), OPENVINO_HINTS[runtime]
    sessions = {tower: OpenVinoSession(core, onnx_dir / f"{tower}.onnx", hint, threads) for tower in ("image", "text")}
    clf.onnx_towers._sessions.update(sessions)  # the benchmark swaps the sessions; emocap ships ONNX Runtime's
    return clf, {"openvino": ov.__version__, "hint": hint, "streams": sessions["image"].streams,
                 "requests": sessions["image"].parallel,
                 "compile_s": {t: round(s.compile_s, 3) for t, s in sessions.items()}}


def worker(runtime: str, onnx_dir: str, ferplus: str, connection) -> None:
    """One runtime in its own process (no thread pool of another runtime spins beside it): builds the classifier,
    decodes the FER+ test faces, then answers ``("speed", min_seconds)``, ``("probs",)`` and ``("stop",)``."""
    threads = torch.get_num_threads()  # follows OMP_NUM_THREADS, as every runtime here does
    clf, facts = build_classifier(runtime, Path(onnx_dir), threads)
    images, _ = ferplus_test(ferplus)
    prepared = [clf.prepare_image(im) for im in images[:64]]
    texts = [f"a photo of a face showing {word}, number {i}" for i, word in
             enumerate(["joy", "anger", "calm", "surprise", "fear", "disgust", "contempt", "sadness"] * 8)]
    connection.send(facts)
    while True:
        command = connection.recv()
        if command[0] == "speed":
            seconds = command[1]
            connection.send({
                **image_rates(clf, images, prepared, seconds),
                "text_b64": rate(lambda: clf.encode_texts(texts, batch_size=64), len(texts), seconds),
            })
        elif command[0] == "probs":
            connection.send(ferplus_probs(clf, images))
        else:
            return


def start_workers(runtimes: list, onnx_dir: Path, ferplus: str) -> dict:
    """``{runtime: (process, connection, facts)}``, each runtime in a fresh (spawned) process."""
    context = multiprocessing.get_context("spawn")
    workers = {}
    for runtime in runtimes:
        mine, theirs = context.Pipe()
        process = context.Process(target=worker, args=(runtime, str(onnx_dir), ferplus, theirs), daemon=True)
        process.start()
        workers[runtime] = (process, mine, mine.recv())
    return workers


def summarise(rounds: list) -> dict:
    """Median and spread of each rate, and of its ratio to ONNX Runtime and to torch within the same round."""
    summary = {}
    for runtime in rounds[0]:
        for key in rounds[0][runtime]:
            entry = spread([r[runtime][key] for r in rounds])
            for base in ("onnx", "torch"):
                entry[f"x_{base}"] = list(spread([r[runtime][key] / r[base][key] for r in rounds]).values())
            summary.setdefault(runtime, {})[key] = entry
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ferplus", required=True, help="FER+ root (FER2013Test folder or .tar inside)")
    ap.add_argument("--onnx-dir", default=None, help="an existing export of the default model (default: export now)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=1.5, help="time per measurement")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--onnx-nospin", action="store_true",
                    help="add ONNX Runtime with session.intra_op.allow_spinning=0 (for a CPU shared with other jobs)")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    runtimes = ["torch", "onnx"] + (["onnx-nospin"] if args.onnx_nospin else [])
    if importlib.util.find_spec("openvino") is None:
        print("openvino is not installed: skipping the OpenVINO rows (pip install openvino to add them)",
              file=sys.stderr)
    else:
        runtimes += list(OPENVINO_HINTS)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = Path(args.onnx_dir) if args.onnx_dir else export_onnx(None, Path(tmp) / "onnx")
        workers = start_workers(runtimes, onnx_dir, args.ferplus)
        report = {"threads": torch.get_num_threads(), "runtimes": {r: w[2] for r, w in workers.items()}}
        rounds = []
        for _ in range(args.runs):  # the runtimes take turns inside each round
            rounds.append({})
            for runtime, (_, connection, _) in workers.items():
                connection.send(("speed", args.min_seconds))
                rounds[-1][runtime] = connection.recv()
        report["speed"] = summarise(rounds)
        if not args.skip_accuracy:
            _, labels = ferplus_test(args.ferplus)
            probs = {}
            for runtime, (_, connection, _) in workers.items():
                connection.send(("probs",))
                probs[runtime] = connection.recv()
            report["n_test"] = len(labels)
            report["ferplus_test"] = {r: {k: round(100 * v, 2) for k, v in war_uar(p.argmax(1), labels).items()}
                                      for r, p in probs.items()}
            report["max_prob_diff_to_onnx"] = {r: float(np.abs(p - probs["onnx"]).max()) for r, p in probs.items()}
        for process, connection, _ in workers.values():
            connection.send(("stop",))
            process.join()
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
