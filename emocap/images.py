"""Robust image input: every stage turns user images into plain RGB PIL images through this module.

Handles paths, PIL images and numpy arrays in any mode: grayscale, RGBA/LA (composited on white), palette,
CMYK, 16-bit and float images (rescaled to 8 bit), EXIF orientation, and very large images (downscaled while
decoding). Failures raise :class:`ImageLoadError` naming the file and the problem, so batch callers can skip the
file, report it and go on.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable, Iterator, List, Tuple, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = ["ImageLoadError", "load_image", "to_rgb", "iter_image_files", "IMAGE_EXTENSIONS", "ImageInput"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MAX_SIDE = 4096  # larger images are downscaled on load; faces are never that large
ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]


class ImageLoadError(ValueError):
    """An input could not be turned into an image; the message names the file and the reason."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


def _rescale_to_uint8(arr: np.ndarray) -> np.ndarray:
    kind, itemsize = arr.dtype.kind, arr.dtype.itemsize  # before the cast: the type says how to scale
    arr = arr.astype(np.float64)
    if arr.size == 0:
        raise ValueError("empty array")
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    if kind == "u" and itemsize == 2:  # 16-bit data: always the full type range, even for a dark image
        return np.clip(arr / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if kind in "fb" and lo >= 0.0 and hi <= 1.0:
        return np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if hi > 255 or lo < 0:
        # 16-bit (or wider) data: scale by the type's full range when it fits, else by the data range
        top = 65535.0 if (lo >= 0 and hi <= 65535) else max(hi - lo, 1e-9)
        base = 0.0 if (lo >= 0 and hi <= 65535) else lo
        return np.clip((arr - base) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a PIL image of any mode to 8-bit RGB (alpha composited on white, 16-bit rescaled)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = _rescale_to_uint8(np.asarray(image))
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        return image.convert("RGB")
    return image.convert("RGB")


def _from_array(arr: np.ndarray, source: str) -> Image.Image:
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[-1] not in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # CHW -> HWC
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ImageLoadError(source, f"array of shape {arr.shape} is not an image (expected HxW, HxWx3 or HxWx4)")
    if arr.dtype != np.uint8:
        arr = _rescale_to_uint8(arr)
    if arr.ndim == 2:
        return Image.fromarray(arr, mode="L").convert("RGB")
    if arr.shape[-1] == 4:
        return to_rgb(Image.fromarray(arr, mode="RGBA"))
    return Image.fromarray(arr, mode="RGB")


_SIGNATURES = ((b"\x89PNG", "PNG"), (b"\xff\xd8", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"),
               (b"MM\x00*", "TIFF"), (b"RIFF", "WebP"))


def _signature(path: Path) -> str:
    """The image format a file's first bytes announce, or '' (tells truncated images from non-images)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return ""
    return next((kind for magic, kind in _SIGNATURES if head.startswith(magic)), "")


def load_image(image: ImageInput, source: str | None = None) -> Image.Image:
    """Return ``image`` as an upright 8-bit RGB PIL image.

    Raises :class:`ImageLoadError` (a ``ValueError``) with the file name for missing, unreadable, truncated
    or non-image files.
    """
    if isinstance(image, Image.Image):
        try:
            return to_rgb(ImageOps.exif_transpose(image) or image)
        except Exception as e:  # broken lazy-loaded image
            raise ImageLoadError(source or "<PIL image>", f"cannot decode image ({e})") from None
    if isinstance(image, np.ndarray):
        return _from_array(image, source or "<array>")
    if not isinstance(image, (str, os.PathLike)):
        raise ImageLoadError(source or repr(type(image)), f"unsupported input type {type(image).__name__}")
    path = Path(image)
    name = source or str(path)
    if not path.exists():
        raise ImageLoadError(name, "file not found")
    if path.is_dir():
        raise ImageLoadError(name, "is a folder, not an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if max(im.size) > MAX_SIDE:
                    im.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at reduced scale
                im.load()
                im = ImageOps.exif_transpose(im) or im
                if max(im.size) > MAX_SIDE:
                    im.thumbnail((MAX_SIDE, MAX_SIDE))
                return to_rgb(im)
    except UnidentifiedImageError:
        kind = _signature(path)
        if kind:
            raise ImageLoadError(name, f"corrupt or truncated image (a {kind} header, but it cannot be decoded)") from None
        raise ImageLoadError(name, "not an image file (format not recognised)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageLoadError(name, "image is too large to decode safely (decompression bomb limit)") from None
    except OSError as e:
        raise ImageLoadError(name, f"corrupt or truncated image ({e})") from None
    except (ValueError, SyntaxError) as e:
        raise ImageLoadError(name, f"cannot decode image ({e})") from None


def iter_image_files(root: Union[str, os.PathLike], recursive: bool = True) -> Iterator[Path]:
    """Image files under ``root`` (sorted, by extension)."""
    root = Path(root)
    pattern = "**/*" if recursive else "*"
    for p in sorted(root.glob(pattern)):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
            yield p


def expand_inputs(inputs: Iterable[Union[str, os.PathLike]]) -> Tuple[List[Path], List[Tuple[str, str]]]:
    """Expand paths and folders into image files; returns (files, problems) where problems are (path, reason)."""
    files: List[Path] = []
    problems: List[Tuple[str, str]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = list(iter_image_files(p))
            if not found:
                problems.append((str(p), f"folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})"))
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            problems.append((str(p), "file not found"))
    return files, problems


ImageFile.LOAD_TRUNCATED_IMAGES = False
