"""Speed benchmark: emocap's classifier beside a plain open_clip loop and the transformers pipeline.

Not a test: a measurement to run by hand (minutes on a 2-core CPU) and paste into docs/speed.md::

    python benchmarks/speed.py --ferplus ../shared/data/ferplus --images 256 --out results/speed.json

In one run, on the same image files and the same weights, it times (images per second, end to end from files on
disk to class scores, text features computed once beforehand):

* emocap's ZeroShotClassifier on the embedded default model and on a ViT-B-16-sized model (random weights);
* the same weights called directly through open_clip in a plain loop (the floor for emocap's overhead);
* the transformers ``zero-shot-image-classification`` pipeline on a CLIPModel built from a ViT-B/16 config
  (transformers has no CLIP ResNet tower, so this row exists for the ViT-B-16 size only);
* ``emocap eval`` on FER+ test end to end (a fresh process: start-up, model load, decode, encode, metrics), then
  again with a second prompt set reading the cached image features (``--ferplus``);
* peak resident memory of ``emocap classify`` over 1,000 and 10,000 image files (``--memory``): it streams, so
  the two should be about equal;

and prints a table with the ratios and each model's FLOPs per image beside the achieved rate, as a fraction of
what this CPU does on a large fp32 matrix product.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from emocap import ZeroShotClassifier
from emocap.models import create_model, load_model, save_model

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


def rate(fn, n_images: int, repeats: int = 2) -> float:
    fn()  # warm-up (allocations, caches)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n_images / best


def emocap_rate(clf: ZeroShotClassifier, paths, batch: int) -> float:
    clf.text_features  # computed once and cached, as in real use
    if batch == 1:
        return rate(lambda: [clf.predict_proba(p) for p in paths], len(paths))
    return rate(lambda: clf.predict_proba(paths, batch_size=batch), len(paths))


def open_clip_loop_rate(model_dir: str, paths, batch: int, grayscale: bool) -> float:
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

    return rate(run, len(paths))


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


def pipeline_rate(paths, batch: int, workdir: Path) -> float:
    """transformers' zero-shot-image-classification pipeline on a randomly initialised ViT-B/16 CLIPModel."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer, pipeline

    config = CLIPConfig(
        text_config={"hidden_size": 512, "intermediate_size": 2048, "num_attention_heads": 8, "num_hidden_layers": 12,
                     "max_position_embeddings": 77, "vocab_size": 49408},
        vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                       "num_hidden_layers": 12, "image_size": 224, "patch_size": 16},
        projection_dim=512,
    )
    model = CLIPModel(config).eval()
    files = clip_tokenizer_files(workdir)
    tokenizer = CLIPTokenizer(str(files / "vocab.json"), str(files / "merges.txt"))
    processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    pipe = pipeline("zero-shot-image-classification", model=model, tokenizer=tokenizer, image_processor=processor,
                    device="cpu")
    images = paths  # the pipeline loads files itself

    def run():
        pipe(images, candidate_labels=LABELS, hypothesis_template=TEMPLATE, batch_size=batch)

    return rate(run, len(paths), repeats=1)


def eval_times(ferplus: str, workdir: Path) -> dict:
    """Seconds for `emocap eval` on FER+ test in a fresh process: cold (encode) and cached (second prompt set)."""
    import subprocess
    import sys

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


def classify_peak_rss_mb(paths, n: int, workdir: Path) -> float:
    """Peak RSS (MB) of `emocap classify FOLDER` over ``n`` image files (hard links to ``paths``, cycled)."""
    import subprocess
    import sys

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


def matmul_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ferplus", default=None, help="FER+ root (FER2013Test/ or .tar) for real face files")
    p.add_argument("--images", type=int, default=256, help="number of image files (default 256)")
    p.add_argument("--skip-vit", action="store_true", help="only the default model (the ViT-B-16 rows take minutes)")
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
                row["emocap"] = emocap_rate(clf, paths, batch)
                row["open_clip_loop"] = open_clip_loop_rate(folder, paths, batch, clf.model.grayscale)
                if model_id is not None:
                    row["transformers_pipeline"] = pipeline_rate(paths[: min(len(paths), 64)], batch, tmp)
                row["cpu_fraction"] = row["emocap"] * flops / peak
                rows.append(row)
                print(json.dumps(row), flush=True)
        extra = {}
        if args.ferplus:
            extra.update(eval_times(args.ferplus, tmp))
        if args.memory:
            for n in (1000, 10000):
                extra[f"classify_{n}_files_peak_rss_mb"] = classify_peak_rss_mb(paths, n, tmp)
                print(f"classify {n} files: peak RSS {extra[f'classify_{n}_files_peak_rss_mb']:.0f} MB", flush=True)
    print(f"\nCPU: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'model':20s} {'batch':>5s} {'emocap img/s':>13s} {'open_clip':>10s} {'pipeline':>9s} "
          f"{'emocap/oc':>9s} {'emocap/pipe':>11s} {'GFLOP/img':>9s} {'of peak':>8s}")
    for r in rows:
        pipe = r.get("transformers_pipeline")
        pipe_text = f"{pipe:9.1f}" if pipe else "        -"
        ratio_text = f"{r['emocap'] / pipe:11.2f}" if pipe else "          -"
        print(f"{r['model']:20s} {r['batch']:5d} {r['emocap']:13.1f} {r['open_clip_loop']:10.1f} {pipe_text} "
              f"{r['emocap'] / r['open_clip_loop']:9.2f} {ratio_text} {r['gflops_per_image']:9.3f} "
              f"{r['cpu_fraction']:8.1%}")
    for key, value in extra.items():
        print(f"{key:40s} {value:10.1f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"peak_flops": peak, "rows": rows, **extra}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
