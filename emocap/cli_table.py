"""The table side of ``emocap classify``/``emocap analyze`` (:mod:`emocap.cli_classify`): rows from
:func:`emocap.analysis.iter_rows` printed (classify) or written to a table file as they come, with a progress bar
in frames/s, the summary, timeline plots and drawn boxes at the end, and the problems reported by name."""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List, Tuple

from tqdm import tqdm

from .safe_paths import safe_key

__all__ = ["TableRun", "report_warnings", "format_ranked"]


class TableRun:
    """One command line's run over ``items`` (images and videos); :meth:`run` returns the exit code."""

    def __init__(self, args, clf, problems: List[Tuple[str, str]]):
        self.args, self.clf = args, clf
        self.problems = list(problems)  # (source, reason): failures
        self.notes: List[Tuple[str, str]] = []
        self.kept_rows: List[dict] = []  # for --summary / --timeline: one small row per face per frame
        self.video_sources: List[str] = []
        self.frames = 0
        self._frame_rows: List[dict] = []  # classify's text/JSON output: the rows of the current image or frame

    @property
    def name(self) -> str:
        return f"emocap {self.args.command_name}"

    def run(self, items) -> int:
        from .analysis import iter_rows, table_columns
        from .images import SmallImageWarning
        from .table_files import TableWriter

        args = self.args
        _quiet_opencv()  # its FFmpeg errors on a bad file are noise: the file is reported by name below
        writer = None
        drawer = self._drawer()
        bar = tqdm(total=self._expected(items) or None, unit="frame", desc=args.command_name, file=sys.stderr,
                   disable=None if not args.quiet else True, leave=False)
        started = time.perf_counter()
        try:
            columns = table_columns(self.clf.labels, args.face_analysis)
            if args.out or args.table_only:
                writer = TableWriter(args.out, columns) if args.out else _StdoutCsv(columns)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", SmallImageWarning)
                rows = iter_rows(self.clf, items, fps=args.fps, every=args.every, smooth=args.smooth,
                                 framing=args.framing, face_analysis=args.face_analysis,
                                 batch_size=args.batch_size, on_problem=self._on_problem, on_frames=bar.update,
                                 on_video=self._on_video(drawer), on_rows=self._on_rows,
                                 on_image=drawer.add if drawer is not None else None)
                for row in rows:
                    self._keep(row)
                    if writer is not None:
                        writer.write(row)
        except (ValueError, ImportError, OSError) as e:  # a label named like a column, missing extras, disk full
            print(f"{self.name}: error: {e}", file=sys.stderr)
            return 2
        finally:
            bar.close()
            if writer is not None:
                writer.close()
            if drawer is not None:
                drawer.close()
        sys.stdout.flush()
        _report_caught(caught, self.name)
        self._finish(time.perf_counter() - started, writer, drawer)
        return self._exit_code()

    def _expected(self, items) -> int:
        """Images plus the sampled frames each video declares (a wrong count only misleads the bar)."""
        from .readers.frames import VideoStream, is_video

        total = 0
        for item in items:
            if isinstance(item, Path) and is_video(item):
                try:
                    total += VideoStream(item, fps=self.args.fps, every=self.args.every).expected_samples
                except ValueError:
                    pass
            else:
                total += 1
        return total

    def _drawer(self):
        if not self.args.draw:
            return None
        from .video_outputs import BoxDrawer

        return BoxDrawer(self.args.draw, fps=self.args.fps or 5.0)

    def _on_problem(self, source: str, reason: str) -> None:
        if reason.startswith("note: "):
            self.notes.append((source, reason[len("note: "):]))
            return
        self.problems.append((source, reason))

    def _on_video(self, drawer):
        def opened(stream) -> None:
            self.video_sources.append(stream.source)
            if drawer is not None:
                drawer.fps = stream.sampler.fps or stream.native_fps / stream.sampler.every
        return opened

    def _on_rows(self, source, frame, rows) -> None:
        self.frames += 1
        if not self.args.table_only and not self.args.out:
            self._print_rows(source, frame, rows)

    def _keep(self, row: dict) -> None:
        if self.args.summary or self.args.timeline:
            self.kept_rows.append({k: row.get(k) for k in ("source", "kind", "frame", "time", "face_id", "x0", "y0",
                                                           "x1", "y1", "face_score", *self.clf.labels,
                                                           "top_label", "top_score")})

    def _print_rows(self, source: str, frame, rows: List[dict]) -> None:
        """classify's output: per image the old line(s); per sampled frame one line per face (or 'no face')."""
        args, labels = self.args, self.clf.labels
        faces = [r for r in rows if r.get("face_id") is not None]
        ranked = [sorted(({"label": lb, "score": float(r[lb])} for lb in labels), key=lambda p: -p["score"])
                  [:args.top_k] for r in faces]
        if frame is None and not faces:
            self.problems.append((source, "no face found"))
            return
        if args.json:
            record = {"file": source} if frame is None else {"file": source, "frame": frame.index,
                                                             "time": round(frame.time, 4)}
            if frame is None and _scored_whole(faces):
                record["predictions"] = ranked[0]
            else:
                record["faces"] = [{"box": [int(r[c]) for c in ("x0", "y0", "x1", "y1")],
                                    "face_score": r["face_score"], **({"face_id": r["face_id"]} if frame else {}),
                                    "predictions": p} for r, p in zip(faces, ranked)]
            print(json.dumps(record))
        elif frame is None:
            if _scored_whole(faces):
                print(f"{source}: " + format_ranked(ranked[0]))
                return
            for k, (r, p) in enumerate(zip(faces, ranked)):
                print(f"{source} face {k} {[int(r[c]) for c in ('x0', 'y0', 'x1', 'y1')]}: " + format_ranked(p))
        else:
            self._print_frame(source, frame, faces, ranked)

    @staticmethod
    def _print_frame(source, frame, faces, ranked) -> None:
        where = f"{source} frame {frame.index} ({frame.time:.2f} s)"
        if not faces:
            print(f"{where}: no face")
        for r, p in zip(faces, ranked):
            box = [int(r[c]) for c in ("x0", "y0", "x1", "y1")]
            print(f"{where} face {r['face_id']} {box}: " + format_ranked(p))

    def _finish(self, seconds: float, writer, drawer) -> None:
        quiet = self.args.quiet
        if self.kept_rows and (self.args.summary or self.args.timeline):
            self._summaries()
        for where, note in self.notes:
            if not quiet:
                print(f"note: {where}: {note}", file=sys.stderr)
        for where, reason in self.problems:
            print(f"skipped {where}: {reason}", file=sys.stderr)
        if not quiet and self.frames:
            rate = self.frames / seconds if seconds > 0 else math.inf
            wrote = f"; wrote {writer.rows_written} rows to {self.args.out}" if self.args.out else ""
            drew = f"; drew {len(drawer.written)} files in {self.args.draw}" if drawer is not None else ""
            print(f"{self.name}: {self.frames} images and frames in {seconds:.1f} s ({rate:.1f} frames/s)"
                  f"{wrote}{drew}", file=sys.stderr)
        if self.problems:
            print(f"{self.name}: {len(self.problems)} inputs failed or had no face (listed above)", file=sys.stderr)

    def _summaries(self) -> None:
        import pandas as pd

        from .video_outputs import face_summary, save_timeline, top_emotion

        table = pd.DataFrame(self.kept_rows).astype({"face_id": "Int64"})
        labels = list(self.clf.labels)
        out = sys.stderr if (self.args.table_only and not self.args.out) else sys.stdout
        if self.args.summary:
            print("top emotion per input:", file=out)
            print(top_emotion(table, labels).to_string(index=False), file=out)
            print("faces:", file=out)
            print(face_summary(table, labels).round(3).to_string(index=False), file=out)
        if self.args.timeline:
            for source, path in _timeline_paths(self.args.timeline, self.video_sources).items():
                if (table["source"] == source).any():
                    save_timeline(table, source, path, labels)
                    print(f"wrote the timeline of {source} to {path}", file=sys.stderr)

    def _exit_code(self) -> int:
        if self.args.table_only:
            return 1 if self.problems else 0
        videos = _video_extensions() + (".gif",)
        failed_videos = any(Path(source).suffix.lower() in videos for source, _ in self.problems)
        return 1 if failed_videos or (self.problems and not self.frames) else 0


def _quiet_opencv() -> None:
    import cv2

    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # an OpenCV build without the logging module
        pass


def _video_extensions():
    from .readers.frames import VIDEO_EXTENSIONS

    return VIDEO_EXTENSIONS


def _timeline_paths(timeline: str, sources: List[str]) -> Dict[str, Path]:
    """One video: ``timeline`` itself; several: ``<stem>_<video name>.png`` next to it."""
    base = Path(timeline)
    if len(sources) == 1:
        return {sources[0]: base}
    return {s: base.with_name(f"{base.stem}_{safe_key(Path(s).stem)}{base.suffix}") for s in sources}


def report_warnings(caught, command: str = "classify") -> None:
    """Print emocap's own warnings as one ``warning:`` line each; others go back to the warnings machinery."""
    from .images import SmallImageWarning
    from .taxonomy import IndistinguishableLabelsWarning
    from .word_bridge import WordBridgeUnavailableWarning

    for w in caught:
        if issubclass(w.category, (IndistinguishableLabelsWarning, SmallImageWarning, WordBridgeUnavailableWarning)):
            print(f"emocap {command}: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def _scored_whole(faces: List[dict]) -> bool:
    """An image's rows say it was scored whole, as a face crop: one face without a detector score."""
    return len(faces) == 1 and math.isnan(faces[0]["face_score"])


def format_ranked(preds) -> str:
    return ", ".join(f"{p['label']} {p['score']:.3f}" for p in preds)


def _report_caught(caught, name: str) -> None:
    report_warnings(caught, name.split()[-1])


class _StdoutCsv:
    """``emocap analyze`` without ``--out``: the table as CSV on standard output, row by row."""

    def __init__(self, columns):
        import csv

        self.columns = columns
        self.rows_written = 0
        self._csv = csv.writer(sys.stdout)
        self._csv.writerow(columns)

    def write(self, row: dict) -> None:
        from .table_files import _plain

        self._csv.writerow(["" if _plain(row.get(c)) is None else _plain(row.get(c)) for c in self.columns])
        self.rows_written += 1

    def close(self) -> None:
        sys.stdout.flush()

