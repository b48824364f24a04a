"""Streaming training data: caption shards read with webdataset while training, for datasets too big for memory.

The alternative to the in-memory path of :mod:`emocap.train.data` (config -> **data / streaming** -> forward ->
...), switched on by ``data.streaming: true``. Shards are split over nodes (ranks) and data-loader workers, or,
with ``data.resampled: true`` (the default), drawn with replacement by every worker from its own seeded stream
(webdataset's ``ResampledShards``), which keeps every rank busy whatever the shard count. Samples are decoded
and resized in the workers, shuffled through a buffer, and batched per rank; each batch is a dict of tensors:
``images`` uint8 [B, C, H, W], ``global`` / ``summary`` / ``local`` tokens [B, L] (one random local sentence per
sample), ``soft_labels`` [B, C] and ``labels`` [B].

An "epoch" of a stream is ``data.samples_per_epoch`` samples. Resuming a streamed run restores the model,
optimiser, scheduler and RNG state and starts a fresh stream seeded by the step it resumes at; exact
continuation of the sample order is a property of the in-memory path only.
"""

from __future__ import annotations

import random
from typing import Dict, Iterator, List, Sequence

import numpy as np
import torch

from emocap import taxonomy

from .data import DataError, list_shards, parse_sample


def _split_by_rank(rank: int, world: int):
    def split(urls):
        urls = list(urls)
        if world > 1 and len(urls) < world:
            raise DataError(f"{len(urls)} shard(s) for {world} processes: use data.resampled=true or more shards")
        yield from urls[rank::world]
    return split


def _sample_decoder(tokenizer, label_names: Sequence[str], size: int, grayscale: bool, seed: int):
    canon_index = {taxonomy.canonical(n): i for i, n in enumerate(label_names)}
    rng = random.Random(seed)

    def decode(stream):
        for sample in stream:
            shard = sample.get("__url__", "<stream>")
            parsed = parse_sample(sample, shard, canon_index, len(label_names), size, grayscale)
            if parsed is None:
                continue
            image, caps, soft = parsed
            local = caps["local"] or [caps["global"]]
            yield {
                "image": image, "global": caps["global"], "summary": caps["summary"],
                "local": local[rng.randrange(len(local))], "soft": soft,
            }
    return decode


def _collate(tokenizer):
    def collate(samples: List[dict]) -> Dict[str, torch.Tensor]:
        soft = torch.from_numpy(np.stack([s["soft"] for s in samples]))
        return {
            "images": torch.from_numpy(np.stack([s["image"] for s in samples])),
            "global": tokenizer([s["global"] for s in samples]),
            "summary": tokenizer([s["summary"] for s in samples]),
            "local": tokenizer([s["local"] for s in samples]),
            "soft_labels": soft,
            "labels": soft.argmax(dim=1),
        }
    return collate


def stream_batches(
    spec, tokenizer, label_names: Sequence[str], size: int, grayscale: bool, batch_size: int, *,
    rank: int = 0, world: int = 1, workers: int = 2, resampled: bool = True, shuffle_buffer: int = 2000,
    seed: int = 0,
) -> Iterator[Dict[str, torch.Tensor]]:
    """An endless iterator of this rank's batches (``batch_size`` samples each) streamed from the shards."""
    import webdataset as wds

    urls = [str(p) for p in list_shards(spec)]
    decode = _sample_decoder(tokenizer, label_names, size, grayscale, seed * 997 + rank)
    if resampled:
        # every worker of every rank draws shards with replacement from its own seeded stream
        source = wds.ResampledShards(urls, seed=seed * 1009 + rank, deterministic=True)
        pipeline = [source]
    else:
        pipeline = [wds.SimpleShardList(urls), _split_by_rank(rank, world), wds.split_by_worker]
    pipeline += [
        wds.tarfile_to_samples(handler=_raise_naming_shard),
        decode,
        wds.shuffle(shuffle_buffer, seed=seed + rank) if shuffle_buffer > 1 else (lambda s: s),
        wds.batched(batch_size, collation_fn=_collate(tokenizer), partial=False),
    ]
    dataset = wds.DataPipeline(*pipeline)
    if not resampled:
        dataset = dataset.repeat()  # epochs are counted by samples, not by passes over the shards
    loader = wds.WebLoader(dataset, batch_size=None, num_workers=workers, persistent_workers=workers > 0)
    return iter(loader)


def _raise_naming_shard(exn):
    raise DataError(f"unreadable shard while streaming ({type(exn).__name__}: {exn})") from None
