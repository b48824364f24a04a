"""Training data: caption shards -> in-memory tensors -> augmented, tokenised batches.

Second step of a training run (config -> **data** -> losses -> loop). Caption shards written by
``emocap caption`` are read with webdataset once; images are decoded, converted (gray when the model takes gray
input) and resized to the model's input size, and kept as one uint8 tensor; captions are tokenised once. Small
face datasets (FER+: 28k x 64 x 64 bytes = 117 MB) fit in memory, which keeps a 2-core machine busy with the
model rather than with PNG decoding. Augmentation runs batched on tensors (random resized crop, rotation,
translation, flip, brightness/contrast, erasing) through one ``affine_grid`` call per batch, then the photo steps
(lighting, occlusion, low resolution, blur, noise, JPEG: :mod:`emocap.train.photo_augment`) where the config turns
them on.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from emocap import taxonomy
from emocap.caption_records import image_member, parse_record, record_captions, record_soft_label

from .photo_augment import photo_augment, photo_augment_enabled


class DataError(ValueError):
    """Missing or unusable training data; the message names the file."""


def list_shards(spec) -> List[Path]:
    if isinstance(spec, (list, tuple)):
        paths = [Path(p) for p in spec]
    else:
        root = Path(spec)
        if root.is_file():
            paths = [root]
        elif root.is_dir():
            paths = sorted(root.glob("*.tar"))
            if not paths:
                raise DataError(f"{root}: no .tar shards (build them with `emocap caption --out {root}`)")
        else:
            raise DataError(f"{root}: caption shards not found (build them with `emocap caption --out {root}`)")
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p}: shard not found")
    return paths


@dataclass
class CaptionData:
    images: torch.Tensor          # [N, C, H, W] uint8
    global_tokens: torch.Tensor   # [N, L]
    summary_tokens: torch.Tensor  # [N, L]
    local_tokens: torch.Tensor    # [M, L] all local sentences
    local_offsets: torch.Tensor   # [N + 1] sample i owns local_tokens[off[i]:off[i+1]]
    soft_labels: torch.Tensor     # [N, C] over the label set
    labels: torch.Tensor          # [N] dominant class index
    keys: List[str]
    texts: Optional[Dict[str, List[str]]] = None  # raw captions: "global", "summary" [N], "local" [M]

    def __len__(self) -> int:
        return self.images.shape[0]


def _decode(data: bytes, size: int, grayscale: bool) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("L" if grayscale else "RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BICUBIC)
        arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if grayscale else arr.transpose(2, 0, 1)


def parse_sample(sample: dict, shard, canon_index: Dict[str, int], n_labels: int, size: int, grayscale: bool):
    """One webdataset sample -> (uint8 image [C, H, W], captions dict, soft label [n_labels]), or None when its
    labels put no mass on the training label set. Raises DataError naming the shard for a sample without image."""
    record = parse_record(sample["json"], f"{shard}: sample {sample['__key__']}")
    image_key = image_member(sample)
    if image_key is None:
        raise DataError(f"{shard}: sample {sample['__key__']} has no image")
    soft = np.zeros(n_labels, dtype=np.float32)
    for label, p in record_soft_label(record).items():
        idx = canon_index.get(taxonomy.canonical(label))
        if idx is not None:
            soft[idx] += p
    if soft.sum() <= 0:
        return None
    soft /= soft.sum()
    return _decode(sample[image_key], size, grayscale), record_captions(record), soft


def load_caption_shards(
    spec, tokenizer, label_names: Sequence[str], size: int, grayscale: bool = True,
    limit: Optional[int] = None, progress: bool = True,
) -> CaptionData:
    """Read every sample of the shards into memory (images resized to ``size``) and tokenise its captions."""
    import webdataset as wds

    shards = list_shards(spec)
    canon_index = {taxonomy.canonical(n): i for i, n in enumerate(label_names)}
    images, globals_, summaries, locals_, offsets, softs, labels, keys = [], [], [], [], [0], [], [], []
    for shard in shards:
        try:
            stream = wds.WebDataset(str(shard), shardshuffle=False, empty_check=False)
            for sample in tqdm(stream, desc=f"loading {shard.name}", disable=not progress, leave=False):
                if limit and len(keys) >= limit:
                    break
                parsed = parse_sample(sample, shard, canon_index, len(label_names), size, grayscale)
                if parsed is None:
                    continue  # no mass on the training label set
                image, caps, soft = parsed
                images.append(image)
                globals_.append(caps["global"])
                summaries.append(caps["summary"])
                locals_.extend(caps["local"] or [caps["global"]])
                offsets.append(len(locals_))
                softs.append(soft)
                labels.append(int(soft.argmax()))
                keys.append(sample["__key__"])
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
            if isinstance(e, DataError):
                raise
            raise DataError(f"{shard}: unreadable shard ({type(e).__name__}: {e})") from None
        if limit and len(keys) >= limit:
            break
    if not keys:
        raise DataError(f"no usable samples in {', '.join(str(s) for s in shards)}")

    def tok(texts):
        return torch.cat([tokenizer(texts[i:i + 4096]) for i in range(0, len(texts), 4096)])

    return CaptionData(
        images=torch.from_numpy(np.stack(images)),
        global_tokens=tok(globals_), summary_tokens=tok(summaries), local_tokens=tok(locals_),
        local_offsets=torch.tensor(offsets), soft_labels=torch.from_numpy(np.stack(softs)),
        labels=torch.tensor(labels), keys=keys,
        texts={"global": globals_, "summary": summaries, "local": locals_},
    )


def sample_local(data: CaptionData, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One random local sentence per sample in ``idx``."""
    start, end = data.local_offsets[idx], data.local_offsets[idx + 1]
    pick = start + (torch.rand(len(idx), generator=generator) * (end - start)).long()
    return data.local_tokens[pick]


def augment(images: torch.Tensor, aug: Dict, generator: torch.Generator) -> torch.Tensor:
    """Batched augmentation of float images in [0, 1], shape [B, C, H, W]."""
    b = images.shape[0]
    g = generator

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(b, generator=g)

    scale = torch.sqrt(uniform(*aug["scale"]))  # area scale -> side scale
    angle = uniform(-aug["rotate"], aug["rotate"]) * math.pi / 180.0
    tx, ty = uniform(-aug["translate"], aug["translate"]) * 2, uniform(-aug["translate"], aug["translate"]) * 2
    flip = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0) if aug["flip"] else torch.ones(b)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if aug["brightness"]:
        out = out + uniform(-aug["brightness"], aug["brightness"]).view(b, 1, 1, 1) * 0.5
    if aug["contrast"]:
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * uniform(1 - aug["contrast"], 1 + aug["contrast"]).view(b, 1, 1, 1) + mean
    if aug["erase_prob"]:
        h, w = out.shape[-2:]
        do = torch.rand(b, generator=g) < aug["erase_prob"]
        eh, ew = (uniform(0.15, 0.4) * h).long(), (uniform(0.15, 0.4) * w).long()
        y0 = (torch.rand(b, generator=g) * (h - eh)).long()
        x0 = (torch.rand(b, generator=g) * (w - ew)).long()
        yy = torch.arange(h).view(1, h, 1)
        xx = torch.arange(w).view(1, 1, w)
        mask = (yy >= y0.view(b, 1, 1)) & (yy < (y0 + eh).view(b, 1, 1)) & (xx >= x0.view(b, 1, 1)) & (xx < (x0 + ew).view(b, 1, 1))
        mask = mask & do.view(b, 1, 1)
        out = torch.where(mask.unsqueeze(1), torch.rand(b, 1, 1, 1, generator=g), out)
    if photo_augment_enabled(aug):
        out = photo_augment(out, aug, g)
    return out.clamp(0.0, 1.0)


def to_model_input(images_uint8: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 [B, 1|3, H, W] -> normalised float [B, 3, H, W]."""
    x = images_uint8.float() / 255.0
    return normalise(x, mean, std)


def normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s
