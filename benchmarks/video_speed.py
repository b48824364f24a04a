"""Frames/s of the video path (decode, detect, track, classify) against the image path on the same frames.

Each measurement runs in its own process (so its peak memory, ru_maxrss, is its own) with the model loaded once
before the clock starts:

- ``video``: ``emocap.analysis.iter_rows`` over the clip at a sampling rate (default 5 frames/s, or ``--every 1``),
  optionally stopped after ``--max-frames`` sampled frames;
- ``images``: the same clip's first N frames saved as JPEGs, then ``ZeroShotClassifier.predict(files,
  detect_faces=True)`` in classify's chunks (what ``emocap classify --detect-faces FOLDER`` does after start-up);
- ``cli``: the whole ``emocap classify --detect-faces FOLDER`` command on those JPEGs, start-up included.

    OMP_NUM_THREADS=2 python benchmarks/video_speed.py [--video ../shared/data/media/WolfgangLanger_Pexels.mp4]

Prints one table (docs/video.md has the numbers and the machine).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "media" / "WolfgangLanger_Pexels.mp4"


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def stage_video(video: str, fps, every, max_frames) -> dict:
    from emocap import ZeroShotClassifier
    from emocap.analysis import iter_rows
    from emocap.readers.frames import VideoStream

    clf = ZeroShotClassifier.from_pretrained()
    clf.class_text_features()
    stream = VideoStream(video)
    frames = set()
    start = time.perf_counter()
    for row in iter_rows(clf, [video], fps=fps, every=every):
        if max_frames and row["frame"] not in frames and len(frames) >= max_frames:
            break  # (the last batch of frames was already classified: a little over max_frames of work)
        frames.add(row["frame"])
    seconds = time.perf_counter() - start
    last = max(frames)
    return {"frames": len(frames), "seconds": seconds, "video_seconds": (last + 1) / stream.native_fps,
            "native_fps": stream.native_fps, "peak_mib": _peak_mib()}


def stage_images(folder: str) -> dict:
    from emocap import ZeroShotClassifier

    clf = ZeroShotClassifier.from_pretrained()
    clf.class_text_features()
    files = sorted(str(p) for p in Path(folder).glob("*.jpg"))
    start = time.perf_counter()
    for s in range(0, len(files), 256):  # classify's chunk: batch 64 x 4
        clf.predict(files[s:s + 256], top_k=3, detect_faces=True, no_face="empty", on_error="return")
    return {"frames": len(files), "seconds": time.perf_counter() - start, "peak_mib": _peak_mib()}


def save_frames(video: str, n: int, folder: Path) -> None:
    from emocap.readers.frames import iter_frames

    folder.mkdir(parents=True, exist_ok=True)
    for frame in iter_frames(video, every=1):
        if frame.index >= n:
            break
        frame.image.save(folder / f"{frame.index:05d}.jpg", quality=95)


def run_stage(*args) -> dict:
    done = subprocess.run([sys.executable, __file__, "--stage", *map(str, args)], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", default=str(DEFAULT_VIDEO))
    parser.add_argument("--frames", type=int, default=120, help="frames saved as JPEGs for the image path")
    parser.add_argument("--folder", default="/tmp/emocap_video_speed_frames")
    parser.add_argument("--stage", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        kind, *rest = args.stage
        if kind == "video":
            fps, every, max_frames = (None if v == "-" else float(v) for v in rest)
            out = stage_video(args.video, fps, None if every is None else int(every), int(max_frames or 0))
        else:
            out = stage_images(args.folder)
        print(json.dumps(out))
        return
    save_frames(args.video, args.frames, Path(args.folder))
    results = {
        f"video path, first {args.frames} frames, every frame": run_stage("video", "-", 1, args.frames),
        f"image path, the same {args.frames} frames as JPEGs": run_stage("images"),
        "video path, whole clip, default 5 frames/s": run_stage("video", "-", "-", "-"),
        "video path, whole clip, every frame": run_stage("video", "-", 1, "-"),
    }
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("emocap")), "classify", "--detect-faces", "-q", args.folder],
                   capture_output=True, check=True)
    cli_seconds = time.perf_counter() - start
    print(f"{'measurement':58} {'frames':>6} {'s':>6} {'frames/s':>8} {'x real time':>11} {'peak MiB':>8}")
    for name, r in results.items():
        real = f"{r['video_seconds'] / r['seconds']:.2f}" if "video_seconds" in r else "-"
        print(f"{name:58} {r['frames']:6d} {r['seconds']:6.1f} {r['frames'] / r['seconds']:8.1f} {real:>11} "
              f"{r['peak_mib']:8.0f}")
    print(f"{'emocap classify --detect-faces FOLDER (start-up included)':58} {args.frames:6d} {cli_seconds:6.1f} "
          f"{args.frames / cli_seconds:8.1f}")


if __name__ == "__main__":
    main()
