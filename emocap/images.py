"""Robust image input: every stage turns user images into plain RGB PIL images through this module.

Handles paths, PIL images and numpy arrays in any mode: grayscale, RGBA/LA (composited on white), palette,
CMYK, 16-bit and float images (rescaled to 8 bit), EXIF orientation, and very large images (downscaled while
decoding). Failures raise :class:`ImageLoadError` naming the file and the problem, so batch callers can skip the
file, report it and go on.

Limits (the input checks at the edge; docs/reliability.md lists the tests that hold them):

* only regular files are opened: a named pipe, device or socket is refused, never read (it could block forever);
* an image file over :data:`MAX_IMAGE_PIXELS` (150 megapixels, e.g. 12,500 x 12,000) is refused before decoding
  as a possible decompression bomb; anything up to it is decoded and downscaled to :data:`MAX_SIDE` (4096 px)
  on its longer side (JPEGs at reduced scale while decoding). :func:`load_image_with_size` also returns the
  original (upright) size, so callers can map coordinates back to the caller's image;
* arrays and images without pixels (a (0, 0) array) and arrays holding NaN or infinity are refused;
* images under :data:`MIN_FACE_SIDE` (16 px) on a side load, but are too small to hold a face:
  :func:`too_small_for_a_face` says so and the classifier warns (:class:`SmallImageWarning`).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Tuple, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = ["ImageLoadError", "load_image", "load_image_with_size", "to_rgb", "iter_image_files", "IMAGE_EXTENSIONS",
           "ImageInput", "SmallImageWarning", "too_small_for_a_face", "MIN_FACE_SIDE", "MAX_SIDE", "MAX_IMAGE_PIXELS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
MAX_SIDE = 4096  # larger images are downscaled on load; faces are never that large
MAX_IMAGE_PIXELS = 150_000_000  # image files above this (width x height) are refused, never decoded
MIN_FACE_SIDE = 16  # an image with a side under this holds no recognisable face (FER+ faces are 48 px)
Size = Tuple[int, int]
ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]


class ImageLoadError(ValueError):
    """An input could not be turned into an image; the message names the file and the reason."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class SmallImageWarning(UserWarning):
    """An image with a side under :data:`MIN_FACE_SIDE` pixels: too small to hold a face; its scores mean little.
    Issued by :class:`emocap.ZeroShotClassifier` naming the input; ``emocap classify`` prints it."""


def too_small_for_a_face(size: Size) -> bool:
    """Whether an image of ``size`` (width, height) is under :data:`MIN_FACE_SIDE` pixels on a side."""
    return min(size) < MIN_FACE_SIDE


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
    if arr.size == 0:
        raise ImageLoadError(source, f"array of shape {arr.shape} has no pixels")
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise ImageLoadError(source, f"array of shape {arr.shape} holds NaN or infinite values")
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
    """Return ``image`` as an upright 8-bit RGB PIL image (files over :data:`MAX_SIDE` downscaled).

    Raises :class:`ImageLoadError` (a ``ValueError``) with the file name for missing, unreadable, truncated,
    oversized or non-image files, non-regular files (pipes, devices) and arrays without finite pixels.
    """
    return load_image_with_size(image, source)[0]


def load_image_with_size(image: ImageInput, source: str | None = None) -> Tuple[Image.Image, Size]:
    """``(image, original size)``: :func:`load_image`'s image and the (width, height) of the upright input before
    any downscaling, the frame that coordinates given back to the caller are in."""
    if isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise ImageLoadError(source or "<PIL image>", f"image of size {image.size} has no pixels")
        try:
            out = to_rgb(ImageOps.exif_transpose(image) or image)
        except Exception as e:  # broken lazy-loaded image
            raise ImageLoadError(source or "<PIL image>", f"cannot decode image ({e})") from None
        return out, out.size
    if isinstance(image, np.ndarray):
        out = _from_array(image, source or "<array>")
        return out, out.size
    if not isinstance(image, (str, os.PathLike)):
        raise ImageLoadError(source or repr(type(image)), f"unsupported input type {type(image).__name__}")
    return _load_file(Path(image), source or str(image))


_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def image_from_bytes(read_bytes: Callable[[], bytes], source: str) -> Image.Image:
    """The RGB image behind encoded bytes that ``read_bytes()`` returns (a tar member, a dataset row, a shard
    member), through :func:`load_image`; ImageLoadError naming ``source`` when the bytes are missing or corrupt."""
    try:
        data = read_bytes()
    except (FileNotFoundError, OSError, ValueError) as e:
        raise ImageLoadError(source, f"missing image ({e})") from None
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
    except Exception as e:
        raise ImageLoadError(source, f"corrupt or unreadable image ({e})") from None
    return load_image(im, source=source)


def _load_file(path: Path, name: str) -> Tuple[Image.Image, Size]:
    if not path.exists():
        raise ImageLoadError(name, "file not found")
    if path.is_dir():
        raise ImageLoadError(name, "is a folder, not an image file")
    if not path.is_file():
        raise ImageLoadError(name, "not a regular file (a named pipe, device or socket); give image files or folders")
    try:
        with warnings.catch_warnings():
            # PIL's own warning starts at 89 MP; emocap checks its explicit MAX_IMAGE_PIXELS limit itself below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ImageLoadError(name, f"image is {width}x{height} = {width * height:,} pixels, over emocap's "
                                               f"limit of {MAX_IMAGE_PIXELS:,} pixels for one image (decompression "
                                               "bomb guard); downscale it first")
                original = (height, width) if im.getexif().get(0x0112, 1) in _TRANSPOSED else (width, height)
                if max(im.size) > MAX_SIDE:
                    im.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at reduced scale
                im.load()
                im = ImageOps.exif_transpose(im) or im
                if max(im.size) > MAX_SIDE:
                    im.thumbnail((MAX_SIDE, MAX_SIDE))
                return to_rgb(im), original
    except UnidentifiedImageError:
        kind = _signature(path)
        if kind:
            raise ImageLoadError(name, f"corrupt or truncated image (a {kind} header, but it cannot be decoded)") from None
        raise ImageLoadError(name, "not an image file (format not recognised)") from None
    except Image.DecompressionBombError as e:
        raise ImageLoadError(name, f"image is too large to decode safely ({e}); emocap's limit is "
                                   f"{MAX_IMAGE_PIXELS:,} pixels") from None
    except OSError as e:
        raise ImageLoadError(name, f"corrupt or truncated image ({e})") from None
    except (ValueError, SyntaxError) as e:
        if isinstance(e, ImageLoadError):
            raise
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
        elif p.is_file():
            files.append(p)
        elif p.exists():
            problems.append((str(p), "not a regular file (a named pipe, device or socket); give image files or folders"))
        else:
            problems.append((str(p), "file not found"))
    return files, problems


ImageFile.LOAD_TRUNCATED_IMAGES = False
