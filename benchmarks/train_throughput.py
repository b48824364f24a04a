"""Training throughput (samples/s): emocap's loop (global-only config) beside open_clip's own training loop.

Same model (emocap-rn-small by default), same FER+ caption data, same batch size, fp32 on the same device:

* **ours**: ``emocap.train.loop.train`` with only ``loss.global`` on, as a user runs it: batched augmentation in
  the loop, padding-trimmed text, channels-last convolutions, accelerate, checkpoint/log machinery. The rate is
  taken between two log rows after warm-up, from ``log.csv``.
* **open_clip**: ``open_clip_train.train.train_one_epoch`` (the training loop of open_clip's ``open_clip_train``
  package, which the ``open-clip-torch`` 3.x wheel ships; no extra install) with open_clip's ``ClipLoss``, AdamW
  and ``cosine_lr``. Its data loader is given the most favourable input: the same images already decoded,
  resized and normalised in memory (no augmentation, no PNG decoding), and the full-context tokens that
  ``open_clip.tokenize`` produces. A warm-up epoch is run first; the timed epoch follows.

Runs alternate (ours, theirs, ours, theirs, ...) so load from other processes affects both alike; the median of
each is reported. Usage::

    python benchmarks/train_throughput.py --shards data/captions/ferplus-train --steps 20 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import csv
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch


def ours(shards: str, model: str, batch: int, warmup: int, steps: int, threads: int, limit: int) -> float:
    from emocap.train.config import load_config
    from emocap.train.loop import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [
            f"data.train_shards={shards}", f"model={model}", f"batch_size={batch}", f"out={tmp}/run",
            f"max_steps={warmup + steps}", f"log_every={math.gcd(warmup, steps)}", f"data.train_limit={limit}",
            "loss.global=1.0", "loss.local=0", "loss.summary=0", "loss.class_prompts=0", "checkpoint_every=100000",
            f"num_threads={threads}", "tensorboard=false", "warmup_steps=5",
        ])
        train(cfg, progress=False)
        with open(Path(tmp) / "run" / "log.csv", newline="") as f:
            rows = {int(r["step"]): float(r["time"]) for r in csv.DictReader(f) if r["loss"]}
    return steps * batch / (rows[warmup + steps] - rows[warmup])


def open_clip_loop(data, model_name: str, batch: int, warmup: int, steps: int, threads: int) -> float:
    from open_clip.loss import ClipLoss
    from open_clip_train.data import DataInfo
    from open_clip_train.scheduler import cosine_lr
    from open_clip_train.train import train_one_epoch

    from emocap.models import create_model

    torch.set_num_threads(threads)
    em = create_model(model_name)
    model = em.model
    model.output_dict = True  # what open_clip_train's main sets up
    images, tokens = data

    class Loader:
        def __init__(self, n_batches):
            self.num_batches, self.num_samples = n_batches, n_batches * batch

        def __iter__(self):
            for i in range(self.num_batches):
                j = (i * batch) % (len(images) - batch + 1)
                yield images[j:j + batch], tokens[j:j + batch]

    args = SimpleNamespace(
        device="cpu", precision="fp32", accum_freq=1, distill=False, skip_scheduler=False, grad_clip_norm=1.0,
        horovod=False, log_every_n_steps=100, batch_size=batch, world_size=1, wandb=False, save_logs=False,
        val_frequency=0, epochs=2, distributed=False, rank=0, local_rank=0, checkpoint_path=None,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    scheduler = cosine_lr(optimizer, 1e-3, 5, warmup + steps)
    loss = ClipLoss()
    train_one_epoch(model, {"train": DataInfo(Loader(warmup))}, loss, 0, optimizer, None, scheduler, None, args)
    start = time.perf_counter()
    train_one_epoch(model, {"train": DataInfo(Loader(steps))}, loss, 1, optimizer, None, scheduler, None, args)
    return steps * batch / (time.perf_counter() - start)


def load_open_clip_data(shards: str, model_name: str, limit: int):
    """The same samples as ours: decoded to the model's size, normalised, full-context tokens."""
    from emocap.ferplus import EMOTIONS
    from emocap.models import create_model
    from emocap.train.data import load_caption_shards, to_model_input

    em = create_model(model_name)
    data = load_caption_shards(shards, em.tokenizer, EMOTIONS, em.image_size, True, limit=limit, progress=False)
    images = to_model_input(data.images, em.preprocess_cfg["mean"], em.preprocess_cfg["std"]).contiguous()
    return images, data.global_tokens


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shards", default="data/captions/ferplus-train")
    p.add_argument("--model", default="emocap-rn-small")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--limit", type=int, default=4096, help="samples loaded (the steps cycle over them)")
    p.add_argument("--out", default=None, help="also write the medians as JSON here (benchmarks/speed.py reads it)")
    args = p.parse_args(argv)
    data = load_open_clip_data(args.shards, args.model, args.limit)
    rates = {"ours": [], "open_clip": []}
    for r in range(args.repeats):
        rates["ours"].append(ours(args.shards, args.model, args.batch_size, args.warmup, args.steps, args.threads, args.limit))
        rates["open_clip"].append(open_clip_loop(data, args.model, args.batch_size, args.warmup, args.steps, args.threads))
        print(f"repeat {r + 1}: ours {rates['ours'][-1]:.1f} samples/s, open_clip_train {rates['open_clip'][-1]:.1f} samples/s",
              flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\n{args.model}, batch {args.batch_size}, fp32, {args.threads} threads, {args.steps} timed steps x {args.repeats}")
    print("| loop | samples/s (median) | runs |\n|---|---|---|")
    for k, label in (("ours", "emocap train (global only)"), ("open_clip", "open_clip_train train_one_epoch")):
        print(f"| {label} | {med[k]:.1f} | {', '.join(f'{v:.1f}' for v in rates[k])} |")
    print(f"ratio ours / open_clip: {med['ours'] / med['open_clip']:.2f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"emocap samples/s": med["ours"], "open_clip_train samples/s": med["open_clip"],
                                              "emocap / open_clip_train": med["ours"] / med["open_clip"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
