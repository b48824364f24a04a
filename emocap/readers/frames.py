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
- Streaming at a rate (:class:`VideoStream`, :func:`iter_frames`; ``emocap classify``/``emocap analyze`` and
  :func:`emocap.analyze`): frames of a video file, an animated GIF or a frame folder one at a time (memory flat
  in the video's length), kept by :class:`FrameSampler`: ``fps`` per second of video time (default
  :data:`DEFAULT_SAMPLE_FPS` = 5) or every ``every``-th frame. The same grab/retrieve loop as
  :func:`decode_video` (:func:`_grab_frames`). Unreadable inputs raise :class:`VideoReadError` naming them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import cv2  # imported by the importing thread: cv2's bootstrap is unsafe when first run from a worker thread
import numpy as np
from PIL import Image

from emocap.images import IMAGE_EXTENSIONS, ImageLoadError, load_image, to_rgb

__all__ = ["VIDEO_EXTENSIONS", "SAMPLING", "uniform_indices", "natural_key", "frame_files", "video_frame_count",
           "decode_video", "read_video_frames", "video_frame_png", "DEFAULT_SAMPLE_FPS", "FRAME_FOLDER_FPS",
           "VideoReadError", "VideoFrame", "FrameSampler", "VideoStream", "iter_frames", "is_video"]

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
        for i, bgr in _grab_frames(cap, (lambda i: True) if wanted is None else wanted.__contains__, last):
            frames[i] = bgr
    finally:
        cap.release()
    return frames


def _grab_frames(cap, want: Callable[[int], bool], last: Optional[int] = None) -> Iterator[Tuple[int, np.ndarray]]:
    """``(index, BGR frame)`` for each frame ``want(index)`` accepts, in decoding order, up to ``last``.

    The one decode loop of this module: every frame is grabbed (cheap: no colour conversion), only the wanted
    ones are retrieved; no seeking (seeks are inexact for many codecs). Ends at the first frame that cannot be
    grabbed (the end of the stream, or a corrupt tail)."""
    i = 0
    while last is None or i <= last:
        if not cap.grab():
            return
        if want(i):
            ok, bgr = cap.retrieve()
            if ok and bgr is not None:
                yield i, bgr
        i += 1


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


# ------------------------------------------------------------------------------------ streaming at a rate

DEFAULT_SAMPLE_FPS = 5.0  # classify/analyze default: 5 frames per second of video (every 5th frame at 25 fps)
FRAME_FOLDER_FPS = 25.0  # the rate a frame folder is taken to have (it declares none); times and --fps use it
ASSUMED_VIDEO_FPS = 25.0  # a video file that declares no frame rate


class VideoReadError(ImageLoadError):
    """A video (file, animated GIF or frame folder) that cannot be read; the message names it and the reason."""


@dataclass(frozen=True)
class VideoFrame:
    """One sampled frame: its index in decoding order, its time in seconds and the upright RGB image."""

    index: int
    time: float
    image: Image.Image


class FrameSampler:
    """Which frames of a stream to keep: ``fps`` frames per second of video time, or every ``every``-th frame
    (0, N, 2N, ...), or all frames (``fps=None, every=None`` given explicitly as ``every=1``).

    With ``fps``, sample ``k`` is the first frame whose time reaches ``k / fps`` (less half a frame, so a 25 fps
    clip sampled at 5 frames/s keeps frames 0, 5, 10, ...); a rate at or above the video's keeps every frame."""

    def __init__(self, fps: Optional[float] = None, every: Optional[int] = None):
        if fps is not None and every is not None:
            raise ValueError("give fps or every, not both")
        if every is not None and (isinstance(every, bool) or int(every) != every or every < 1):
            raise ValueError(f"every must be a positive integer (1: every frame), got {every!r}")
        if fps is not None and not (float(fps) > 0 and np.isfinite(float(fps))):
            raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}")
        self.every = int(every) if every is not None else None
        self.fps = None if self.every is not None else float(fps if fps is not None else DEFAULT_SAMPLE_FPS)

    def describe(self) -> str:
        return f"every {self.every} frames" if self.every is not None else f"{self.fps:g} frames/s"

    def picker(self, native_fps: float) -> Callable[[int, float], bool]:
        """A fresh ``keep(index, time)`` for one stream of ``native_fps`` frames per second."""
        if self.every is not None:
            return lambda index, time: index % self.every == 0
        period, half_frame = 1.0 / self.fps, 0.5 / max(native_fps, 1e-6)
        next_time = [0.0]

        def keep(index: int, time: float) -> bool:
            if time + half_frame < next_time[0]:
                return False
            while next_time[0] <= time + half_frame:
                next_time[0] += period
            return True

        return keep

    def expected(self, n_frames: int, native_fps: float) -> int:
        """About how many frames of ``n_frames`` this keeps (for progress bars; 0 when unknown)."""
        if n_frames <= 0:
            return 0
        if self.every is not None:
            return -(-n_frames // self.every)
        return int(min(n_frames, np.ceil(n_frames / max(native_fps, 1e-6) * self.fps)))


def is_video(path) -> bool:
    """Whether ``path`` is read as a video: a video file (by extension), an animated GIF, or a frame folder is not
    (folders of images stay image inputs for ``classify``; :class:`VideoStream` reads them as clips)."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return True
    if path.suffix.lower() == ".gif":
        try:
            with Image.open(path) as im:
                return bool(getattr(im, "is_animated", False))
        except Exception:  # unreadable: the image path reports it
            return False
    return False


class VideoStream:
    """The sampled frames of a video file, animated GIF or frame folder (natural order), one at a time: memory
    stays flat in the video's length. Iterate it for :class:`VideoFrame` objects; ``declared_frames`` and
    ``native_fps`` are known on opening, ``decoded`` (frames read) and ``notes`` (a container whose frame count
    is wrong) once it is exhausted. Raises :class:`VideoReadError` naming the source when it cannot be opened
    (missing, 0-byte, not a video, unsupported codec) or yields no frame at all."""

    def __init__(self, path, fps: Optional[float] = None, every: Optional[int] = None, source: Optional[str] = None):
        self.path = Path(path)
        self.source = source or str(path)
        self.sampler = FrameSampler(fps, every)
        self.decoded = 0
        self.notes: List[str] = []
        self.kind = self._check()
        self.declared_frames, self.native_fps = self._probe()

    def _check(self) -> str:
        p = self.path
        if p.is_dir():
            if not frame_files(p):
                raise VideoReadError(self.source, "frame folder holds no image files")
            return "folder"
        if not p.exists():
            raise VideoReadError(self.source, "file not found")
        if not p.is_file():
            raise VideoReadError(self.source, "not a regular file (a named pipe, device or socket)")
        if p.stat().st_size == 0:
            raise VideoReadError(self.source, "empty file (0 bytes)")
        return "gif" if p.suffix.lower() == ".gif" else "video"

    def _probe(self) -> Tuple[int, float]:
        if self.kind == "folder":
            return len(frame_files(self.path)), FRAME_FOLDER_FPS
        if self.kind == "gif":
            try:
                with Image.open(self.path) as im:
                    n = int(getattr(im, "n_frames", 1))
                    duration = float(im.info.get("duration") or 0) / 1000.0
            except Exception as e:
                raise VideoReadError(self.source, f"corrupt or unreadable GIF ({e})") from None
            return n, (1.0 / duration if duration > 0 else 10.0)  # browsers show 0-delay GIFs at about 10 fps
        cap = cv2.VideoCapture(str(self.path))
        try:
            if not cap.isOpened():
                raise VideoReadError(self.source, "cannot open the video (corrupt, not a video file, or a container "
                                                  "or codec OpenCV's FFmpeg cannot read)")
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        finally:
            cap.release()
        return max(n, 0), (fps if 0 < fps < 1000 else ASSUMED_VIDEO_FPS)

    @property
    def expected_samples(self) -> int:
        return self.sampler.expected(self.declared_frames, self.native_fps)

    def __iter__(self) -> Iterator[VideoFrame]:
        keep = self.sampler.picker(self.native_fps)
        self.decoded = 0
        if self.kind == "video":
            def want(index: int) -> bool:  # called once per grabbed frame
                self.decoded += 1
                return keep(index, index / self.native_fps)

            cap = cv2.VideoCapture(str(self.path))
            try:
                for index, bgr in _grab_frames(cap, want):
                    yield VideoFrame(index, index / self.native_fps, _rgb(bgr))
            finally:
                cap.release()
        else:
            frames = self._folder_frames() if self.kind == "folder" else self._gif_frames()
            for index, time, load in frames:
                self.decoded += 1
                if keep(index, time):
                    image = load()
                    if image is not None:
                        yield VideoFrame(index, time, image)
        self._finish()

    def _folder_frames(self):
        """``(index, time, load)`` per file of a frame folder, in natural order; ``load()`` reads it."""
        for i, file in enumerate(frame_files(self.path)):
            yield i, i / self.native_fps, lambda f=file: self._folder_frame(f)

    def _folder_frame(self, file: Path) -> Optional[Image.Image]:
        try:
            return load_image(file)
        except ImageLoadError as e:
            self.notes.append(f"frame {e.source} left out: {e.reason}")
            return None

    def _gif_frames(self):
        try:
            with Image.open(self.path) as im:
                time = 0.0
                for i in range(int(getattr(im, "n_frames", 1))):
                    im.seek(i)
                    frame = to_rgb(im.convert("RGBA"))
                    yield i, time, lambda f=frame: f
                    time += float(im.info.get("duration") or 100) / 1000.0
        except (OSError, ValueError, EOFError) as e:
            self.notes.append(f"GIF decoding stopped after {self.decoded} frames ({e})")

    def _finish(self) -> None:
        if self.decoded == 0:
            raise VideoReadError(self.source, "no decodable frame (a video without frames, a corrupt file or an "
                                              "unsupported codec)")
        if self.declared_frames and abs(self.declared_frames - self.decoded) > 1:
            self.notes.append(f"the container declares {self.declared_frames} frames, {self.decoded} were decoded "
                              "(a wrong header or a truncated file); times assume the declared frame rate")


def iter_frames(path, fps: Optional[float] = None, every: Optional[int] = None) -> Iterator[VideoFrame]:
    """The sampled frames of a video (see :class:`VideoStream`): ``fps`` per second (default
    :data:`DEFAULT_SAMPLE_FPS`) or every ``every``-th frame (``every=1``: all frames)."""
    return iter(VideoStream(path, fps=fps, every=every))
