"""Photo augmentation: make training crops look like faces cut from real photos and video frames.

Where it sits: called by :func:`emocap.train.data.augment` after the geometric step and the erasing, for the
keys of the config's ``aug`` section that it owns (all off by default, so older configs train as before). FER+
crops are small, gray, evenly lit and registered; a face cut from a photo by the face pipeline
(:mod:`emocap.faces`) is sharper or blurrier, lit from one side, compressed, sometimes partly covered. Each step
here draws its own random numbers from the batch's generator, only when its key is on:

- ``shade``: one-sided lighting, a linear brightness ramp across the face in a random direction (max strength);
- ``gamma``: exposure, gamma drawn log-uniformly in ``[1 / (1 + gamma), 1 + gamma]``;
- ``occlude_prob``: a band across the eyes (dark, like sunglasses) or the lower face (light, like a mask or hand);
- ``low_res_prob`` / ``low_res_side``: down to a side drawn from the range and back up (small faces in photos);
- ``blur_prob`` / ``blur_sigma``: Gaussian blur, sigma in pixels of the model input (focus, motion);
- ``noise``: Gaussian sensor noise, standard deviation drawn up to this value;
- ``jpeg_prob`` / ``jpeg_quality``: JPEG round trip at a quality drawn from the range.
"""

from __future__ import annotations

import io
import math
from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = ["PHOTO_KEYS", "photo_augment", "photo_augment_enabled"]

PHOTO_KEYS = {  # key -> default (off)
    "shade": 0.0,
    "gamma": 0.0,
    "occlude_prob": 0.0,
    "low_res_prob": 0.0,
    "low_res_side": [20, 44],
    "blur_prob": 0.0,
    "blur_sigma": [0.4, 1.6],
    "noise": 0.0,
    "jpeg_prob": 0.0,
    "jpeg_quality": [20, 80],
}
_SWITCHES = ("shade", "gamma", "occlude_prob", "low_res_prob", "blur_prob", "noise", "jpeg_prob")


def photo_augment_enabled(aug: Dict) -> bool:
    return any(aug.get(key) for key in _SWITCHES)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def _chosen(n: int, prob: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) < prob


def _shade(x: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    angle = _uniform(b, 0.0, 2 * math.pi, g).view(b, 1, 1, 1)
    amount = _uniform(b, 0.0, strength, g).view(b, 1, 1, 1)
    yy = torch.linspace(-1, 1, h).view(1, 1, h, 1)
    xx = torch.linspace(-1, 1, w).view(1, 1, 1, w)
    ramp = (torch.cos(angle) * xx + torch.sin(angle) * yy) / math.sqrt(2)
    return x * (1.0 + amount * ramp)


def _gamma(x: torch.Tensor, spread: float, g: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    log_gamma = _uniform(b, -math.log1p(spread), math.log1p(spread), g).view(b, 1, 1, 1)
    return x.clamp(0.0, 1.0) ** torch.exp(log_gamma)


def _occlude(x: torch.Tensor, prob: float, g: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    do = _chosen(b, prob, g)
    eyes = torch.rand(b, generator=g) < 0.5
    centre = torch.where(eyes, _uniform(b, 0.32, 0.45, g), _uniform(b, 0.68, 0.85, g))
    height = torch.where(eyes, _uniform(b, 0.12, 0.2, g), _uniform(b, 0.2, 0.35, g))
    shade = torch.where(eyes, _uniform(b, 0.0, 0.15, g), _uniform(b, 0.55, 0.95, g))
    yy = torch.linspace(0, 1, h).view(1, h, 1).expand(b, h, w)
    band = (yy - centre.view(b, 1, 1)).abs() < (height / 2).view(b, 1, 1)
    mask = (band & do.view(b, 1, 1)).unsqueeze(1)
    return torch.where(mask, shade.view(b, 1, 1, 1).expand_as(x), x)


def _low_res(x: torch.Tensor, prob: float, sides, g: torch.Generator) -> torch.Tensor:
    b, _, h, w = x.shape
    do = _chosen(b, prob, g)
    side = _uniform(b, float(sides[0]), float(sides[1]), g).round().long()
    out = x.clone()
    for i in torch.nonzero(do).flatten().tolist():
        s = int(side[i])
        small = F.interpolate(x[i:i + 1], size=(s, s), mode="area")
        out[i:i + 1] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return out


def _blur(x: torch.Tensor, prob: float, sigmas, g: torch.Generator) -> torch.Tensor:
    b, c = x.shape[:2]
    do = _chosen(b, prob, g)
    sigma = _uniform(b, float(sigmas[0]), float(sigmas[1]), g)
    radius = int(math.ceil(3 * float(sigmas[1])))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype)
    out = x.clone()
    for i in torch.nonzero(do).flatten().tolist():
        k = torch.exp(-0.5 * (taps / sigma[i]) ** 2)
        k = (k / k.sum()).to(x.dtype)
        img = F.pad(x[i:i + 1], (radius, radius, radius, radius), mode="replicate")
        img = F.conv2d(img, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        out[i:i + 1] = F.conv2d(img, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return out


def _jpeg(x: torch.Tensor, prob: float, qualities, g: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    do = _chosen(b, prob, g)
    quality = _uniform(b, float(qualities[0]), float(qualities[1]), g).round().long()
    out = x.clone()
    for i in torch.nonzero(do).flatten().tolist():
        arr = (x[i].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        img = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(quality[i]))
        back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert(img.mode), dtype=np.float32) / 255.0
        back = back[..., None] if back.ndim == 2 else back
        out[i] = torch.from_numpy(back).permute(2, 0, 1).to(x.dtype)
    return out


def photo_augment(x: torch.Tensor, aug: Dict, g: torch.Generator) -> torch.Tensor:
    """The enabled photo steps on float images in [0, 1], shape [B, C, H, W] (see the module docstring)."""
    get = lambda key: aug.get(key, PHOTO_KEYS[key])  # noqa: E731
    if get("occlude_prob"):
        x = _occlude(x, get("occlude_prob"), g)
    if get("shade"):
        x = _shade(x, get("shade"), g)
    if get("gamma"):
        x = _gamma(x, get("gamma"), g)
    if get("low_res_prob"):
        x = _low_res(x.clamp(0, 1), get("low_res_prob"), get("low_res_side"), g)
    if get("blur_prob"):
        x = _blur(x, get("blur_prob"), get("blur_sigma"), g)
    if get("noise"):
        b = x.shape[0]
        std = _uniform(b, 0.0, get("noise"), g).view(b, 1, 1, 1)
        x = x + std * torch.randn(x.shape, generator=g)
    if get("jpeg_prob"):
        x = _jpeg(x, get("jpeg_prob"), get("jpeg_quality"), g)
    return x.clamp(0.0, 1.0)
