"""Video reader (core, for the caption builder): ``root[/<split>]/<class>/<clip file or frame folder>``.

Each clip gives ``frames_per_clip`` samples, the frames :func:`emocap.readers.frames.uniform_indices` picks
(segment centres; frame folders in natural order), each with its clip id and frame index in ``extra``. Class
folders are the ones that map to an emotion (:func:`emocap.readers.imagefolder.emotion_folders`); the others are
listed as ignored. Eval's video benchmarks use the same sampler (``emocap.eval.loaders.video``).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from emocap.images import IMAGE_EXTENSIONS

from .frames import VIDEO_EXTENSIONS, frame_files, uniform_indices, video_frame_count, video_frame_png
from .imagefolder import emotion_folders, imagefolder_base
from .sample import Problem, ReadResult, Sample, sample_keys

__all__ = ["read_video"]


def _clip_frames(clip: Path, k: int, problems: List[Problem]) -> Optional[list]:
    """(frame index, read_bytes, ext, where) for the picked frames of one clip; None (reported or not a clip)."""
    if clip.is_file() and clip.suffix.lower() in VIDEO_EXTENSIONS:
        try:
            picks = uniform_indices(video_frame_count(clip), k)
        except ValueError as e:
            problems.append((str(clip), str(e)))
            return None
        return [(i, (lambda i=i, c=clip: video_frame_png(c, i)), "png", f"{clip}#frame{i}") for i in picks]
    if clip.is_dir():
        files = frame_files(clip)
        if not files:
            problems.append((str(clip), "frame folder without images"))
            return None
        return [(i, files[i].read_bytes, files[i].suffix.lstrip(".").lower(), str(files[i]))
                for i in uniform_indices(len(files), k)]
    if clip.suffix.lower() not in IMAGE_EXTENSIONS:
        problems.append((str(clip), "neither a video file nor a frame folder"))
    return None


def read_video(root: str, split: Optional[str] = None, frames_per_clip: int = 8, **_) -> ReadResult:
    """``frames_per_clip`` evenly spaced frames of each clip, one sample per frame (see the module docstring)."""
    base = imagefolder_base(root, split)
    folders, problems = emotion_folders(base)
    found = []  # (class folder, canonical, clip id, frame index, read, ext, where)
    for folder, canon in folders:
        for clip in sorted(folder.iterdir()):
            frames = _clip_frames(clip, frames_per_clip, problems)
            clip_id = f"{folder.name}/{clip.stem if clip.is_file() else clip.name}"
            for index, read, ext, where in frames or []:
                found.append((folder, canon, clip_id, index, read, ext, where))
    keys = sample_keys([f"{clip_id}_f{index:06d}" for _, _, clip_id, index, *_ in found],
                       [where for *_, where in found])
    samples = [
        Sample(key=key, source_file=where, read_bytes=read, image_ext=ext, distribution={canon: 1.0},
               extra={"dataset": "video", "clip": clip_id, "frame": index, "class_folder": folder.name})
        for (folder, canon, clip_id, index, read, ext, where), key in zip(found, keys)
    ]
    return samples, problems
