"""Speed benchmark: emocap's classifier beside a plain open_clip loop and the transformers pipeline.

Not a test: a measurement to run by hand (minutes on a 2-core CPU) and paste into docs/speed.md::

    python benchmarks/speed.py --ferplus ../shared/data/ferplus --images 256 --out results/speed.json

In one run, on the same image files and the same weights, it times (images per second, end to end from files on
disk to class scores, text features computed once beforehand):

* emocap's ZeroShotClassifier on the embedded default model and on a ViT-B-16-sized model (random weights);
* the same weights called directly through open_clip in a plain loop (the floor for emocap's overhead);
* the transformers ``zero-shot-image-classification`` pipeline on a randomly initialised CLIPModel of the same
  size: a ViT-B/16 config, and for the default model (transformers has no CLIP ResNet tower) a 64-px ViT of about
  the same FLOPs per image with the default's text tower size;
* ``emocap eval`` on FER+ test end to end (a fresh process: start-up, model load, decode, encode, metrics), then
  again with a second prompt set reading the cached image features (``--ferplus``);
* peak resident memory of ``emocap classify`` over 1,000 and 10,000 image files (``--memory``): it streams, so
  the two should be about equal;
* caption building (``--captions``: ``benchmarks/captions.py``) and training (``--train-shards``:
  ``benchmarks/train_throughput.py``, emocap's loop beside open_clip's) in samples per second, run as the other
  issues' benchmark scripts in subprocesses and merged into this report;

and prints a table with the ratios and each model's FLOPs per image beside the achieved rate, as a fraction of
what this CPU does on a large fp32 matrix product.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from emocap import ZeroShotClassifier
from emocap.models import create_model, save_model

LABELS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
TEMPLATE = "a photo of a face showing {}."


def write_images(folder: Path, n: int, ferplus: str | None) -> list:
    """n face images as PNG files: FER+ test faces when available, else synthetic gray images."""
    paths = []
    if ferplus:
        from emocap.ferplus import FerPlusSplit

        split = FerPlusSplit(ferplus, "test")
        for rec in split.records[:n]:
            p = folder / rec.name
            p.write_bytes(split.image_bytes(rec))
            paths.append(str(p))
    rng = np.random.RandomState(0)
    while len(paths) < n:
        p = folder / f"synthetic_{len(paths):05d}.png"
        Image.fromarray(rng.randint(0, 256, (48, 48), dtype=np.uint8), mode="L").save(p)
        paths.append(str(p))
    return paths


REPEATS = 3  # timed runs per measurement: the median is reported, with the spread


def rate(fn, n_images: int, repeats: int = REPEATS) -> float:
    """Images per second: the median of ``repeats`` timed runs after one warm-up."""
    fn()  # warm-up (allocations, caches)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n_images / statistics.median(times)


def paired_rates(fn_a, fn_b, n_images: int, repeats: int = REPEATS) -> dict:
    """Two ways of doing the same work timed in alternation (a, b, a, b, ...) after a warm-up of each, so that a
    busy moment of a shared machine hits both: medians, spreads and the median of the per-pair ratios a/b."""
    fn_a(), fn_b()
    a_runs, b_runs = [], []
    for _ in range(repeats):
        for fn, runs in ((fn_a, a_runs), (fn_b, b_runs)):
            t0 = time.perf_counter()
            fn()
            runs.append(n_images / (time.perf_counter() - t0))
    ratios = [a / b for a, b in zip(a_runs, b_runs)]
    return {"a": statistics.median(a_runs), "b": statistics.median(b_runs), "a_runs": a_runs, "b_runs": b_runs,
            "ratio": statistics.median(ratios), "ratio_runs": ratios}


def emocap_work(clf: ZeroShotClassifier, paths, batch: int):
    clf.text_features  # computed once and cached, as in real use
    if batch == 1:
        return lambda: [clf.predict_proba(p) for p in paths]
    return lambda: clf.predict_proba(paths, batch_size=batch)


def emocap_rate(clf: ZeroShotClassifier, paths, batch: int) -> float:
    return rate(emocap_work(clf, paths, batch), len(paths))


def open_clip_loop_rate(model_dir: str, paths, batch: int, grayscale: bool) -> float:
    return rate(open_clip_loop(model_dir, paths, batch, grayscale), len(paths))


def open_clip_loop(model_dir: str, paths, batch: int, grayscale: bool):
    """The same model through plain open_clip: PIL load, transform, encode, softmax over cached text features."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{model_dir}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{model_dir}")
    model.eval()
    with torch.inference_mode():
        text = model.encode_text(tokenizer([TEMPLATE.format(l) for l in LABELS]), normalize=True)

    def run():
        with torch.inference_mode():
            for s in range(0, len(paths), batch):
                ims = []
                for p in paths[s:s + batch]:
                    im = Image.open(p)
                    im = im.convert("L").convert("RGB") if grayscale else im.convert("RGB")
                    ims.append(preprocess(im))
                feats = model.encode_image(torch.stack(ims), normalize=True)
                (100.0 * feats @ text.T).softmax(dim=-1)

    return run


def clip_tokenizer_files(folder: Path) -> Path:
    """vocab.json + merges.txt for transformers' CLIPTokenizer, converted from open_clip's bundled BPE (offline)."""
    from open_clip.tokenizer import SimpleTokenizer

    tok = SimpleTokenizer()
    names = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}  # transformers' names
    vocab = {names.get(k, k): v for k, v in tok.encoder.items()}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    merges = sorted(tok.bpe_ranks.items(), key=lambda kv: kv[1])
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m, _ in merges) + "\n", encoding="utf-8")
    return folder


VIT_B16_CONFIG = {
    "text_config": {"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8, "num_hidden_layers": 12,
                    "max_position_embeddings": 77, "vocab_size": 49408},
    "vision_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                      "num_hidden_layers": 12, "image_size": 224, "patch_size": 16},
    "projection_dim": 512,
}
# transformers has no CLIP ResNet tower: the default model's counterpart is a ViT of about the same FLOPs per image
# (64 px, patch 8, width 128, 4 layers: ~0.1 GFLOP) with the default model's text tower size (3 layers, width 128)
DEFAULT_EQUIVALENT_CONFIG = {
    "text_config": {"hidden_size": 128, "intermediate_size": 512, "num_attention_heads": 2, "num_hidden_layers": 3,
                    "max_position_embeddings": 64, "vocab_size": 49408},
    "vision_config": {"hidden_size": 128, "intermediate_size": 512, "num_attention_heads": 2, "num_hidden_layers": 4,
                      "image_size": 64, "patch_size": 8},
    "projection_dim": 128,
}


def pipeline_rate(paths, batch: int, workdir: Path, config: dict) -> tuple:
    """(images/s, vision GFLOP/image) of transformers' zero-shot-image-classification pipeline on a randomly
    initialised CLIPModel built from ``config``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer, pipeline

    model = CLIPModel(CLIPConfig(**config)).eval()
    size = config["vision_config"]["image_size"]
    files = clip_tokenizer_files(workdir)
    tokenizer = CLIPTokenizer(str(files / "vocab.json"), str(files / "merges.txt"))
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    pipe = pipeline("zero-shot-image-classification", model=model, tokenizer=tokenizer, image_processor=processor,
                    device="cpu")
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.get_image_features(pixel_values=torch.rand(1, 3, size, size))
    images = paths  # the pipeline loads files itself

    def run():
        pipe(images, candidate_labels=LABELS, hypothesis_template=TEMPLATE, batch_size=batch)

    return rate(run, len(paths), repeats=1), counter.get_total_flops() / 1e9


def eval_in_process(ferplus: str, workdir: Path) -> dict:
    """Seconds of `evaluate()` on FER+ test in this process: encoding, cached features, a second prompt set."""
    from emocap.eval.features import FeatureCache
    from emocap.eval.zeroshot import evaluate

    clf = ZeroShotClassifier.from_pretrained(device="cpu")
    cache = FeatureCache(workdir / "cache-in-process")
    times = {}
    for name in ("evaluate_ferplus_test_s", "evaluate_ferplus_test_cached_s"):
        t0 = time.perf_counter()
        evaluate(clf, "ferplus", ferplus, cache=cache, progress=False)
        times[name] = time.perf_counter() - t0
    clf.prompt_set = clf.prompt_set.without_descriptions()
    t0 = time.perf_counter()
    evaluate(clf, "ferplus", ferplus, cache=cache, progress=False)
    times["evaluate_ferplus_test_second_prompt_set_s"] = time.perf_counter() - t0
    return times


def eval_times(ferplus: str, workdir: Path) -> dict:
    """Seconds for `emocap eval` on FER+ test in a fresh process: cold (encode) and cached (second prompt set)."""
    base = [sys.executable, "-m", "emocap.cli", "eval", "--root", ferplus, "--out", str(workdir / "results"),
            "--cache-dir", str(workdir / "cache"), "--no-progress"]
    times = {}
    for name, extra in (("eval_ferplus_test_s", []), ("eval_ferplus_test_cached_s", ["--no-descriptions"])):
        t0 = time.perf_counter()
        done = subprocess.run(base + extra, capture_output=True, text=True)
        times[name] = time.perf_counter() - t0
        if done.returncode != 0:
            raise RuntimeError(f"emocap eval failed: {done.stderr[-2000:]}")
        print(done.stdout.strip().splitlines()[0], flush=True)
    return times


MEMORY_PROBE = """
import resource, subprocess, sys
out = subprocess.run([sys.executable, "-m", "emocap.cli", "classify", sys.argv[1], "--top-k", "1"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
assert out.returncode == 0, out.stderr[-2000:]
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def sibling_benchmark(script: str, args: list, workdir: Path) -> dict:
    """Run another benchmark script of this folder with ``--out`` and return its JSON."""
    out = workdir / f"{Path(script).stem}.json"
    path = Path(__file__).resolve().parent / script
    done = subprocess.run([sys.executable, str(path), *args, "--out", str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{script} failed: {done.stderr[-2000:]}")
    print(done.stdout.strip(), flush=True)
    return json.loads(out.read_text())


def classify_peak_rss_mb(paths, n: int, workdir: Path) -> float:
    """Peak RSS (MB) of `emocap classify FOLDER` over ``n`` image files (hard links to ``paths``, cycled)."""
    folder = workdir / f"mem{n}"
    folder.mkdir()
    for i in range(n):
        os.link(paths[i % len(paths)], folder / f"{i:05d}.png")
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return int(done.stdout.strip()) / 1024.0


def flops_per_image(model, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 3, size, size)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.encode_image(x)
    return float(counter.get_total_flops())


def matmul_peak_flops(n: int = 3072, trials: int = 3) -> float:
    """fp32 FLOP/s of a large square matrix product with torch's threads: the best of ``trials`` after a warm-up."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = float("inf")
    for _ in range(trials):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ferplus", default=None, help="FER+ root (FER2013Test/ or .tar) for real face files")
    p.add_argument("--images", type=int, default=256, help="number of image files (default 256)")
    p.add_argument("--skip-vit", action="store_true", help="only the default model (the ViT-B-16 rows take minutes)")
    p.add_argument("--skip-compile", action="store_true", help="skip the torch.compile row (compiling takes a minute)")
    p.add_argument("--captions", action="store_true",
                   help="also run benchmarks/captions.py (caption builder images/s; needs --ferplus)")
    p.add_argument("--train-shards", default=None, metavar="DIR",
                   help="also run benchmarks/train_throughput.py on these caption shards (training samples/s)")
    p.add_argument("--memory", action="store_true", help="also measure peak memory over 1,000 and 10,000 files")
    p.add_argument("--out", default=None, help="write the measurements as JSON here")
    args = p.parse_args(argv)

    torch.manual_seed(0)
    peak = matmul_peak_flops()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "img").mkdir()
        paths = write_images(tmp / "img", args.images, args.ferplus)
        models = [("default", None)]
        if not args.skip_vit:
            vit = create_model("ViT-B-16")
            vit.meta = {"labels": LABELS, "grayscale": True}
            models.append(("ViT-B-16 (random)", str(save_model(vit, tmp / "vit"))))
        for name, model_id in models:
            clf = ZeroShotClassifier.from_pretrained(model_id, labels=LABELS, prompts=[TEMPLATE], device="cpu")
            folder = str(clf.model.path)
            flops = flops_per_image(clf.model.model, clf.model.image_size)
            for batch in (1, 64):
                row = {"model": name, "batch": batch, "gflops_per_image": flops / 1e9}
                paired = paired_rates(emocap_work(clf, paths, batch),
                                      open_clip_loop(folder, paths, batch, clf.model.grayscale), len(paths))
                row["emocap"], row["open_clip_loop"] = paired["a"], paired["b"]
                row.update(emocap_runs=paired["a_runs"], open_clip_runs=paired["b_runs"],
                           emocap_over_open_clip=paired["ratio"], ratio_runs=paired["ratio_runs"])
                config = VIT_B16_CONFIG if model_id is not None else DEFAULT_EQUIVALENT_CONFIG
                n_pipe = min(len(paths), 64 if model_id is not None else 256)
                row["transformers_pipeline"], row["pipeline_gflops_per_image"] = pipeline_rate(
                    paths[:n_pipe], batch, tmp, config)
                if model_id is not None:
                    # same ViT-B/16 architecture on both sides: torch's FlopCounterMode misses the projections
                    # inside nn.MultiheadAttention's fused path in open_clip, so the transformers count is the
                    # complete one (about 2 x 17 GMAC)
                    row["gflops_per_image"] = max(row["gflops_per_image"], row["pipeline_gflops_per_image"])
                row["cpu_fraction"] = row["emocap"] * row["gflops_per_image"] * 1e9 / peak
                rows.append(row)
                print(json.dumps(row), flush=True)
            if model_id is None and not args.skip_compile:
                # optional export of the image tower: torch.compile (inductor, CPU), measured at batch 64
                compiled = ZeroShotClassifier.from_pretrained(None, labels=LABELS, prompts=[TEMPLATE], device="cpu")
                compiled.model.model.visual = torch.compile(compiled.model.model.visual)
                t0 = time.perf_counter()
                compiled.predict_proba(paths[:64], batch_size=64)
                compile_s = time.perf_counter() - t0
                row = {"model": "default+compile", "batch": 64, "gflops_per_image": flops / 1e9,
                       "emocap": emocap_rate(compiled, paths, 64), "compile_s": compile_s,
                       "open_clip_loop": rows[-1]["open_clip_loop"],
                       "transformers_pipeline": rows[-1].get("transformers_pipeline"),
                       "pipeline_gflops_per_image": rows[-1].get("pipeline_gflops_per_image")}
                row["cpu_fraction"] = row["emocap"] * flops / peak
                rows.append(row)
                print(json.dumps(row), flush=True)
        extra = {}
        if args.ferplus:
            extra.update(eval_in_process(args.ferplus, tmp))
            extra.update(eval_times(args.ferplus, tmp))
        if args.captions and args.ferplus:
            caps = sibling_benchmark("captions.py", ["--ferplus", args.ferplus, "--crops", "1000", "--photos", "100"], tmp)
            extra.update({f"captions: {k} (img/s)": v["images_per_s"] for k, v in caps.items()})
        if args.train_shards:
            trained = sibling_benchmark("train_throughput.py", ["--shards", args.train_shards], tmp)
            extra.update({f"train: {k}": v for k, v in trained.items() if isinstance(v, (int, float))})
        if args.memory:
            for n in (1000, 10000):
                extra[f"classify_{n}_files_peak_rss_mb"] = classify_peak_rss_mb(paths, n, tmp)
                print(f"classify {n} files: peak RSS {extra[f'classify_{n}_files_peak_rss_mb']:.0f} MB", flush=True)
    print(f"\nCPU: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'model':20s} {'batch':>5s} {'emocap img/s':>13s} {'open_clip':>10s} {'pipeline':>9s} "
          f"{'emocap/oc':>9s} {'emocap/pipe':>11s} {'GFLOP/img':>9s} {'pipe GFLOP':>10s} {'of peak':>8s}")
    for r in rows:
        pipe = r.get("transformers_pipeline")  # pipeline GFLOP/image: see pipeline_gflops_per_image in the JSON
        pipe_text = f"{pipe:9.1f}" if pipe else "        -"
        ratio_text = f"{r['emocap'] / pipe:11.2f}" if pipe else "          -"
        print(f"{r['model']:20s} {r['batch']:5d} {r['emocap']:13.1f} {r['open_clip_loop']:10.1f} {pipe_text} "
              f"{r.get('emocap_over_open_clip', r['emocap'] / r['open_clip_loop']):9.2f} {ratio_text} {r['gflops_per_image']:9.3f} "
              f"{r.get('pipeline_gflops_per_image', float('nan')):10.3f} {r['cpu_fraction']:8.1%}")
    for r in rows:
        if "ratio_runs" in r:
            print(f"{r['model']} batch {r['batch']}: emocap/open_clip per alternating pair "
                  f"{', '.join(f'{x:.2f}' for x in r['ratio_runs'])} (median {r['emocap_over_open_clip']:.2f}); "
                  f"emocap img/s {', '.join(f'{x:.0f}' for x in r['emocap_runs'])}; "
                  f"open_clip {', '.join(f'{x:.0f}' for x in r['open_clip_runs'])}")
    for key, value in extra.items():
        print(f"{key:62s} {value:10.1f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"peak_flops": peak, "rows": rows, **extra}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
