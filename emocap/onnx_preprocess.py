"""The model's stored image preprocessing in PIL and numpy, for the ONNX runtime (no torch, no torchvision).

Where it sits: ``ZeroShotClassifier(..., runtime="onnx")`` turns each decoded image (a gray model's already
converted to ``L``, as on the torch path) into the image tower's input with :class:`ImageTransform`, built from
the ``preprocess_cfg`` that the export folder's copy of ``open_clip_config.json`` holds. It does what open_clip's
eval transform (``image_transform_v2(cfg, is_train=False)``) does to a PIL image, step by step:

* ``resize_mode "shortest"`` with a square size: torchvision's ``Resize(size)`` (shorter side to ``size``, the
  longer one ``int(size * long / short)``; an image already that size is kept), which on a PIL image is PIL's own
  ``resize`` with the named filter (PIL always antialiases; torchvision's ``antialias`` only concerns tensors),
  then ``CenterCrop`` (offsets ``int(round((side - size) / 2))``; zero padding first where a side is short);
* ``"squash"``: ``Resize((h, w))``;
* then ``convert("RGB")``, ``ToTensor`` (uint8 / 255 in float32) and ``Normalize`` (``(x - mean) / std`` in float32).

The same float32 operations in the same order give the same values as the torch transform (tests/test_onnx_light.py
compares them on real photos). Other settings (``"longest"``, a non-square ``"shortest"``) raise
:class:`UnsupportedTransform`; the runtime then uses open_clip's transform instead.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from PIL import Image

__all__ = ["ImageTransform", "UnsupportedTransform"]

_FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST,
            "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}


class UnsupportedTransform(ValueError):
    """A preprocessing config this module does not reproduce (the runtime falls back to open_clip's transform)."""


def _size_pair(size) -> Tuple[int, int]:
    """(height, width) of a config ``size`` (an int or [h, w])."""
    if isinstance(size, int):
        return size, size
    if isinstance(size, Sequence) and len(size) == 2:
        return int(size[0]), int(size[1])
    raise UnsupportedTransform(f"preprocess size {size!r}")


class ImageTransform:
    """PIL image -> float32 ``[3, H, W]`` array, as the model's open_clip eval transform gives it."""

    def __init__(self, size, mean: Sequence[float], std: Sequence[float], interpolation: str = "bicubic",
                 resize_mode: str = "shortest"):
        self.height, self.width = _size_pair(size)
        if interpolation not in _FILTERS:
            raise UnsupportedTransform(f"interpolation {interpolation!r}")
        if resize_mode not in ("shortest", "squash") or (resize_mode == "shortest" and self.height != self.width):
            raise UnsupportedTransform(f"resize_mode {resize_mode!r} with size {size!r}")
        self.filter = _FILTERS[interpolation]
        self.resize_mode = resize_mode
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)

    @classmethod
    def from_config(cls, preprocess_cfg: dict) -> "ImageTransform":
        """From a model config's ``preprocess_cfg`` (size, mean, std, interpolation, resize_mode)."""
        cfg = preprocess_cfg
        return cls(cfg["size"], cfg["mean"], cfg["std"], cfg.get("interpolation", "bicubic"),
                   cfg.get("resize_mode", "shortest"))

    def _resized(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        if self.resize_mode == "squash":
            target = (self.width, self.height)
        else:
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = self.height, int(self.height * long / short)
            target = (new_short, new_long) if w <= h else (new_long, new_short)
        return image if target == (w, h) else image.resize(target, self.filter)

    def _center_cropped(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        if self.width > w or self.height > h:  # torchvision pads with zeros before cropping
            left, top = max(self.width - w, 0) // 2, max(self.height - h, 0) // 2
            padded = Image.new(image.mode, (max(w, self.width), max(h, self.height)), 0)
            padded.paste(image, (left, top))
            image, (w, h) = padded, padded.size
            if (w, h) == (self.width, self.height):
                return image
        top, left = int(round((h - self.height) / 2.0)), int(round((w - self.width) / 2.0))
        return image.crop((left, top, left + self.width, top + self.height))

    def __call__(self, image: Image.Image) -> np.ndarray:
        image = self._center_cropped(self._resized(image))
        if image.mode != "RGB":
            image = image.convert("RGB")
        pixels = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        return (pixels - self.mean) / self.std
