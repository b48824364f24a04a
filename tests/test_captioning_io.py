"""Caption builder inputs and outputs at scale: label files, HF datasets, webdataset, video; HF ImageFolder export,
stats; parallel workers, parts, dedup, a hard kill and resume, bad input."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emocap.captioning.shards import build_captions, parts_from_env
from emocap.captioning.cli import run as caption_run
from emocap.captioning.sources import Sample, get_source, hf_source, labelfile_source, video_source, webdataset_source
from emocap.captioning.stats import export_imagefolder, write_stats_report
from emocap.cli import build_parser

LABELS = ["happiness", "sadness", "anger", "surprise", "neutral", "fear"]


def _image(i: int, size: int = 32) -> Image.Image:
    rng = np.random.default_rng(i)
    return Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8), mode="L")


def _samples(n: int, duplicate_every: int = 0):
    out = []
    for i in range(n):
        buf = io.BytesIO()
        _image(i if not duplicate_every or i % duplicate_every else 0).save(buf, format="PNG")
        data = buf.getvalue()
        out.append(Sample(key=f"s{i:03d}", source_file=f"s{i}.png", read_bytes=lambda d=data: d, image_ext="png",
                          distribution={LABELS[i % len(LABELS)]: 0.8, "neutral": 0.2} if i % 6 else {"neutral": 1.0}))
    return out


def _digests(folder: Path):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.tar"))}


def _records(shard: Path):
    with tarfile.open(shard) as tar:
        return {m.name.split(".")[0]: json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")}


def test_label_file_csv_with_votes_aus_identity_and_bad_rows(tmp_path):
    for i in range(4):
        _image(i).save(tmp_path / f"f{i}.png")
    (tmp_path / "labels.csv").write_text(
        "path,happiness,sadness,anger,subject,valence,arousal,AU12,AU4\n"
        "f0.png,8,2,0,S1,0.7,0.4,4,0\n"
        "f1.png,0,0,0,S1,,,,\n"          # all votes zero
        "f2.png,1,x,0,S2,,,,\n"          # not a number
        "f3.png,0,3,1,S2,1.5,0,,\n"      # valence out of range
    )
    samples, problems = labelfile_source(str(tmp_path), labels_file=str(tmp_path / "labels.csv"))
    assert [s.source_file for s in samples] == [str(tmp_path / "f0.png")]
    s = samples[0]
    assert s.distribution == {"happiness": 0.8, "sadness": 0.2} and s.identity == "S1"
    assert s.aus == {12: 0.8, 4: 0.0} and s.valence == 0.7  # 0..5 FACS intensity scaled to 0..1
    where = {w.rsplit(":", 1)[1]: r for w, r in problems}
    assert where == {"3": "all vote columns are zero", "4": "vote column 'sadness' is not a number: 'x'",
                     "5": "valence 1.5 is outside -1..1"}
    assert all(w.startswith(str(tmp_path / "labels.csv")) for w, _ in problems)
    build_captions(samples, tmp_path / "o", progress=False, label_problems=problems)
    rec = next(iter(_records(tmp_path / "o" / "captions-000000.tar").values()))
    # annotated AU12 wins, annotated AU4 = 0 is absent, unmeasured AU6 is filled from its partner AU12 (a prior)
    assert rec["facts"]["aus"] == {"12": {"intensity": 0.8, "source": "annotation"}, "6": {"intensity": 0.4, "source": "prior"}}
    assert rec["facts"]["affect"] == {"valence": 0.7, "arousal": 0.4} and rec["identity"] == "S1"
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert len(report["label_file_problems"]) == 3


def test_label_file_json_and_jsonl_with_unknown_class_and_native_codes(tmp_path):
    for i in range(3):
        _image(i).save(tmp_path / f"f{i}.png")
    (tmp_path / "l.json").write_text(json.dumps({"items": [
        {"file": "f0.png", "label": "joyful"}, {"file": "f1.png", "label": "banana"}, {"file": "f2.png", "label": "sad"}]}))
    samples, problems = labelfile_source(str(tmp_path), labels_file=str(tmp_path / "l.json"))
    assert [next(iter(s.distribution)) for s in samples] == ["happiness", "sadness"]
    assert problems == [(f"{tmp_path / 'l.json'}:2", "unknown class 'banana'")]
    (tmp_path / "l.jsonl").write_text('{"image": "f0.png", "emotion": "3"}\n{bad json\n{"image": "f1.png", "emotion": "0"}\n')
    samples, problems = labelfile_source(str(tmp_path), labels_file=str(tmp_path / "l.jsonl"), label_map="fer2013")
    assert [next(iter(s.distribution)) for s in samples] == ["happiness", "anger"]
    assert len(problems) == 1 and problems[0][0].endswith("l.jsonl:2") and "not valid JSON" in problems[0][1]
    with pytest.raises(FileNotFoundError, match="label file not found"):
        labelfile_source(str(tmp_path), labels_file=str(tmp_path / "nope.csv"))


def test_unreadable_and_missing_images_are_skipped_with_reasons(tmp_path):
    _image(0).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "l.csv").write_text("path,label\nok.png,happy\nbroken.png,sad\ngone.png,angry\n")
    samples, problems = labelfile_source(str(tmp_path), labels_file=str(tmp_path / "l.csv"))
    report = build_captions(samples, tmp_path / "o", progress=False)
    reasons = {Path(s["file"]).name: s["reason"] for s in report["skipped"]}
    assert report["samples_written"] == 1
    assert "unreadable image" in reasons["broken.png"] and "cannot read image" in reasons["gone.png"]


def test_hf_imagefolder_roundtrip_export_and_source(tmp_path):
    samples = _samples(12)
    build_captions(samples, tmp_path / "shards", shard_size=5, progress=False)
    n = export_imagefolder(tmp_path / "shards", tmp_path / "hf", "train")
    assert n == 12
    import datasets

    ds = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "hf"), split="train")
    assert len(ds) == 12 and {"image", "caption", "local", "summary", "label"} <= set(ds.column_names)
    row = ds[0]
    assert row["image"].size == (32, 32) and row["caption"] and isinstance(row["local"], list)
    # and the HF source reads it back as captioning input, labels from the metadata column
    back, problems = hf_source(str(tmp_path / "hf"), "train", label_column="label")
    assert len(back) == 12 and not problems
    assert sorted(next(iter(s.distribution)) for s in back) == sorted(r["label"] for r in ds)
    assert Image.open(io.BytesIO(back[0].read_bytes())).size == (32, 32)
    back, _ = hf_source(str(tmp_path / "hf"), "train", identity_column="writer")
    assert {s.identity for s in back} == {"templates"}
    with pytest.raises(ValueError, match="no identity column 'subject'"):
        hf_source(str(tmp_path / "hf"), "train", identity_column="subject")


def test_webdataset_source_reads_existing_shards(tmp_path):
    samples = _samples(7)
    build_captions(samples, tmp_path / "shards", shard_size=3, progress=False)
    back, problems = webdataset_source(str(tmp_path / "shards"))
    assert len(back) == 7 and not problems
    assert back[0].read_bytes() == samples[0].read_bytes()
    assert back[1].distribution == pytest.approx(samples[1].distribution)  # from the soft label
    with pytest.raises(FileNotFoundError, match="no webdataset shards"):
        webdataset_source(str(tmp_path / "none-{000..002}.tar"))


def test_video_files_and_frame_folders_keep_clip_ids(tmp_path):
    import cv2

    (tmp_path / "happy").mkdir()
    writer = cv2.VideoWriter(str(tmp_path / "happy" / "clip1.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32))
    for i in range(20):
        writer.write(np.full((32, 32, 3), i * 10, np.uint8))
    writer.release()
    frames = tmp_path / "sad" / "clip2"
    frames.mkdir(parents=True)
    for i in range(6):
        _image(i).save(frames / f"{i:04d}.png")
    (tmp_path / "sad" / "notes.txt").write_text("x")
    samples, problems = video_source(str(tmp_path), frames_per_clip=4)
    clips = {}
    for s in samples:
        clips.setdefault(s.extra["clip"], []).append(s.extra["frame"])
    assert clips == {"happy/clip1": [2, 7, 12, 17], "sad/clip2": [0, 2, 3, 5]}
    video_frame = next(s for s in samples if s.extra["clip"] == "happy/clip1" and s.extra["frame"] == 12)
    pixel = np.asarray(Image.open(io.BytesIO(video_frame.read_bytes())))[16, 16]
    assert abs(int(pixel[0]) - 120) < 12  # the right frame was decoded
    assert problems and "notes.txt" in problems[0][0]
    report = build_captions(samples, tmp_path / "o", progress=False, dedup=False)
    assert report["samples_written"] == 8
    rec = next(iter(_records(next((tmp_path / "o").glob("*.tar"))).values()))
    assert rec["source"]["clip"] in clips


def test_stats_report_counts_and_plots(tmp_path):
    build_captions(_samples(18), tmp_path / "s", shard_size=10, progress=False)
    stats = write_stats_report(tmp_path / "s")
    assert stats["samples"] == 18 and sum(stats["classes"].values()) == 18
    assert stats["classes"]["neutral"] == 6
    assert stats["vocabulary_size"] > 20 and stats["caption_words"]["global"]["mean"] > 2
    out = tmp_path / "s" / "stats"
    for f in ("stats.json", "stats.md", "caption_lengths.png", "classes.png", "au_active_rate.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 100, f
    assert Image.open(out / "classes.png").size[0] > 300
    assert stats["au_active_rate"]["sadness"]["AU15"] == 1.0  # FACS prior for sadness
    assert stats["au_active_rate"]["neutral"]["AU15"] == 0.0


def test_dedup_skips_identical_images_after_the_first(tmp_path):
    samples = _samples(9, duplicate_every=4)  # s000, s004, s008 share bytes
    report = build_captions(samples, tmp_path / "o", progress=False)
    dups = {s["key"]: s["reason"] for s in report["skipped"]}
    assert dups == {"s004": "duplicate image of s000", "s008": "duplicate image of s000"}
    assert report["duplicates"] == 2 and report["samples_written"] == 7


def test_workers_and_parts_make_the_same_shards(tmp_path, monkeypatch):
    samples = _samples(23)
    build_captions(samples, tmp_path / "one", shard_size=4, progress=False)
    build_captions(samples, tmp_path / "two", shard_size=4, progress=False, workers=2)
    assert _digests(tmp_path / "one") == _digests(tmp_path / "two")
    for part in range(3):
        build_captions(samples, tmp_path / "parts", shard_size=4, progress=False, num_parts=3, part=part)
    assert _digests(tmp_path / "parts") == _digests(tmp_path / "one")
    assert json.loads((tmp_path / "parts" / "sizes.json").read_text()) == json.loads((tmp_path / "one" / "sizes.json").read_text())
    assert sorted(p.name for p in (tmp_path / "parts").glob("report-part*.json")) == [f"report-part{i}.json" for i in range(3)]
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert parts_from_env(None, None) == (4, 3)
    with pytest.raises(ValueError, match="--part must be in 0..1"):
        parts_from_env(2, 2)


def test_workers_read_tar_backed_sources_safely(ferplus_writer, tmp_path):
    from emocap.captioning.sources import ferplus_source

    rows = [f'fer{i:07d}.png,"(0, 0, 48, 48)",{i % 5},{10 - i % 5},0,0,0,0,0,0,0,0' for i in range(24)]
    folder = ferplus_writer(rows=rows, split_folder="FER2013Train", as_tar=True)
    samples, _ = ferplus_source(str(folder.parent), "train")
    samples[0].read_bytes()  # the parent opens the tar before forking, as the reference pass does
    one = build_captions(samples, tmp_path / "one", shard_size=3, progress=False, dedup=False)
    two = build_captions(samples, tmp_path / "two", shard_size=3, progress=False, dedup=False, workers=2)
    assert one["samples_written"] == two["samples_written"] == 24 and not two["skipped"]
    assert _digests(tmp_path / "one") == _digests(tmp_path / "two")


KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from test_captioning_io import _samples
from emocap.captioning import shards as build
real = build.prepare_sample
calls = [0]
def dying(*a, **k):
    calls[0] += 1
    if calls[0] == 7:  # in the middle of the second shard: a hard kill, no clean-up
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **k)
build.prepare_sample = dying
build.build_captions(_samples(14), {out!r}, shard_size=4, progress=False)
"""


def test_killed_run_resumes_to_identical_shards(tmp_path):
    samples = _samples(14)
    build_captions(samples, tmp_path / "full", shard_size=4, progress=False)
    out = tmp_path / "killed"
    script = KILL_SCRIPT.format(tests=str(Path(__file__).parent), out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (out / "captions-000000.tar").is_file() and (out / "captions-000000.json").is_file()
    assert (out / "captions-000001.tar.tmp").is_file()  # the shard being written when it died
    assert not (out / "captions-000001.tar").exists()
    report = build_captions(samples, out, shard_size=4, progress=False)
    assert report["resumed_samples"] == 4 and not list(out.glob("*.tmp"))
    assert _digests(out) == _digests(tmp_path / "full")
    assert (out / "sizes.json").read_text() == (tmp_path / "full" / "sizes.json").read_text()


def test_cli_build_with_endpoint_writer_unreachable_and_no_face(tmp_path, capsys):
    import socket

    folder = tmp_path / "imgs" / "happy"
    folder.mkdir(parents=True)
    for i in range(3):
        _image(i, 64).save(folder / f"{i}.png")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = build_parser().parse_args([
        "caption", "--dataset", "imagefolder", "--root", str(tmp_path / "imgs"), "--out", str(tmp_path / "o"),
        "--face-analysis", "none", "--writer", "openai", "--writer-model", "m", "--endpoint",
        f"http://127.0.0.1:{port}/v1", "--retries", "0", "--quiet", "--concurrency", "1",
    ])
    assert caption_run(args) == 0
    out = capsys.readouterr().out
    assert "3 fell back to templates" in out
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["writer_counts"] == {"templates": 3} and "cannot reach" in report["fallbacks"][0]["reason"]

    args = build_parser().parse_args([
        "caption", "--dataset", "imagefolder", "--root", str(tmp_path / "imgs"), "--out", str(tmp_path / "o2"),
        "--detect-faces", "--quiet",
    ])
    assert caption_run(args) == 0  # noise images: no face anywhere, each one recorded, the run finishes
    report = json.loads((tmp_path / "o2" / "report.json").read_text())
    assert report["samples_written"] == 0 and report["samples_skipped"] == 3
    assert all("no face found" in s["reason"] for s in report["skipped"])
    with pytest.raises(ValueError, match="unknown dataset layout"):
        get_source("nope")


def test_cli_actions_stats_export_prompts(tmp_path, capsys):
    build_captions(_samples(6), tmp_path / "s", progress=False)
    parser = build_parser()
    for argv in (["caption", "stats", str(tmp_path / "s")],
                 ["caption", "export", str(tmp_path / "s"), "--out", str(tmp_path / "hf")],
                 ["caption", "prompts", "--labels", "basic8", "--out", str(tmp_path / "p.json")]):
        args = parser.parse_args(argv)
        assert args.func(args) == 0, argv
    assert (tmp_path / "s" / "stats" / "stats.md").is_file()
    assert len((tmp_path / "hf" / "train" / "metadata.jsonl").read_text().splitlines()) == 6
    assert len(json.loads((tmp_path / "p.json").read_text())["descriptions"]) == 8
    args = parser.parse_args(["caption", "stats", str(tmp_path / "empty")])
    assert args.func(args) == 2 and "no .tar caption shards" in capsys.readouterr().err


def test_video_frames_caption_and_eval_pick_the_same_frames_in_natural_order(tmp_path):
    """One frame sampler for both stages: natural frame order (2 before 10), segment centres (1, 3, ..., 15 of 16)."""
    from emocap.eval.loaders.video import folder_clip

    clip = tmp_path / "happy" / "clip1"
    for i in range(1, 17):
        clip.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), i * 10, dtype=np.uint8), mode="L").save(clip / f"{i}.png")
    samples, problems = video_source(str(tmp_path), frames_per_clip=8)
    assert problems == []
    assert [s.extra["frame"] for s in samples] == [1, 3, 5, 7, 9, 11, 13, 15]
    picked = [Path(s.source_file).name for s in samples]
    assert picked == [f"{i}.png" for i in (2, 4, 6, 8, 10, 12, 14, 16)]
    item = folder_clip(clip, 0, 8, [])
    assert [Path(f).name for f in item.frames] == picked
