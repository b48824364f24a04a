"""Frame reader and sampler (core): the one rule for which frames of a clip are used, and how they are read.

Used by the caption builder's video reader (:mod:`.video`: one sample per picked frame) and eval's video
benchmarks (``emocap.eval.loaders.video``: a clip sample whose frames are mean-pooled).

- Frame order: a frame folder's images in natural order (``2.jpg`` before ``10.jpg``, :func:`frame_files`);
  a video file's frames in decoding order.
- Sampling (:func:`uniform_indices`): ``k`` frames of ``n`` at the centres of ``k`` equal segments, index
  ``floor((i + 0.5) * n / k)`` for ``i = 0..k-1`` (16 frames, k = 8: 1, 3, 5, ..., 15); all ``n`` frames when
  ``n <= k``.
- Decoding (:func:`decode_video`): OpenCV, frames read in order with ``grab`` and only the wanted ones retrieved
  (no seeking: seeks are inexact for many codecs). When a file's frame count is missing or wrong,
  :func:`read_video_frames` decodes every frame and samples those.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import cv2  # imported by the importing thread: cv2's bootstrap is unsafe when first run from a worker thread
import numpy as np
from PIL import Image

from emocap.images import IMAGE_EXTENSIONS, ImageLoadError

__all__ = ["VIDEO_EXTENSIONS", "SAMPLING", "uniform_indices", "natural_key", "frame_files", "video_frame_count",
           "decode_video", "read_video_frames", "video_frame_png"]

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".flv", ".wmv", ".m4v")
SAMPLING = "uniform: centres of equal segments; all frames when a clip has fewer"


def uniform_indices(n: int, k: int) -> List[int]:
    """``k`` frame indices spread uniformly over ``n`` frames (segment centres); all ``n`` when ``n <= k``."""
    if n <= 0:
        return []
    if n <= k:
        return list(range(n))
    return [int((i + 0.5) * n / k) for i in range(k)]


def natural_key(path: Path):
    """Sort key that orders numbers by value: ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def frame_files(folder: Path) -> List[Path]:
    """The image files of a frame folder in natural order (``2.jpg`` before ``10.jpg``)."""
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                  key=natural_key)


def video_frame_count(path: Path) -> int:
    """The frame count a video file declares; ValueError when it cannot be opened or declares none."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ValueError("cannot open the video (not a video file or unsupported codec)")
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    if total <= 0:
        raise ValueError("video has no frames")
    return total


def decode_video(path: Path, wanted: Optional[Iterable[int]] = None) -> Dict[int, np.ndarray]:
    """``{index: BGR frame}`` for the ``wanted`` frame indices (all frames when None), decoded in order."""
    wanted = None if wanted is None else set(wanted)
    last = max(wanted) if wanted else None
    frames: Dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(str(path))
    try:
        i = 0
        while last is None or i <= last:
            if not cap.grab():
                break
            if wanted is None or i in wanted:
                ok, bgr = cap.retrieve()
                if ok and bgr is not None:
                    frames[i] = bgr
            i += 1
    finally:
        cap.release()
    return frames


def _rgb(bgr: np.ndarray) -> Image.Image:
    return Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def read_video_frames(path: Path, k: int, source: Optional[str] = None) -> List[Image.Image]:
    """``k`` uniformly sampled RGB frames of a video file; raises ImageLoadError naming it."""
    source = source or str(path)
    if not Path(path).is_file():
        raise ImageLoadError(source, "video file not found")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ImageLoadError(source, "cannot open the video (not a video file or unsupported codec)")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    picks = uniform_indices(n, k)
    decoded = decode_video(path, picks) if picks else {}
    frames = [_rgb(decoded[i]) for i in picks if i in decoded]
    if not frames:  # frame count missing or wrong: decode everything, then sample
        everything = decode_video(path)
        ordered = [everything[i] for i in sorted(everything)]
        frames = [_rgb(ordered[i]) for i in uniform_indices(len(ordered), k)]
    if not frames:
        raise ImageLoadError(source, "no decodable frame in the video")
    return frames


def video_frame_png(path: Path, index: int) -> bytes:
    """Frame ``index`` of a video file as PNG bytes; OSError when it cannot be decoded."""
    frame = decode_video(path, [index]).get(index)
    if frame is None:
        raise OSError(f"cannot decode frame {index} of {path}")
    ok, buf = cv2.imencode(".png", frame)
    if not ok:
        raise OSError(f"cannot encode frame {index} of {path} as PNG")
    return buf.tobytes()
