"""Reliability of caption runs (issue 17): kill -9 and Ctrl-C then resume, changed settings, key collisions,
``caption export`` that must never write outside its folder nor overwrite one image with another.

The kill cases run ``emocap caption`` in a child process on 40 faces made from the bundled astronaut crop (dlib
reads every one, so the rest-face reference and AU estimates are in play), with shards of 6 samples. The child
counts events (a sample prepared, a face read, a file renamed into place) and kills itself with SIGKILL (or
sends itself SIGINT) at a seeded event; the resumed folder is then compared byte for byte with an uninterrupted
run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import default_sigint
from PIL import Image

from emocap.captioning.shards import build_captions
from emocap.captioning.sources import Sample
from emocap.cli import main as emocap_main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLASSES = ("happiness", "neutral", "sadness", "surprise")

CHILD = r"""
import os, signal, sys
from emocap.captioning import shards
from emocap.face_analysis import analyzer
from emocap.cli import main

signum, stop_at, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
events = []

def hook(kind, fn):
    def wrapped(*a, **k):
        events.append(kind)
        if len(events) == stop_at:
            os.kill(os.getpid(), signum)
        return fn(*a, **k)
    return wrapped

shards.prepare_sample = hook("sample", shards.prepare_sample)
analyzer.FaceAnalyzer.read = hook("face", analyzer.FaceAnalyzer.read)
os.replace = hook("rename", os.replace)
try:
    rc = main(sys.argv[4:])
finally:
    with open(log, "w") as f:
        f.write("\n".join(events))
sys.exit(rc)
"""


def _face_folder(root: Path, n: int = 40) -> Path:
    """``n`` distinct faces (the astronaut crop, shifted, scaled and brightened by a seeded amount) in class folders."""
    face = Image.open(EXAMPLES / "astronaut_face.png").convert("RGB")
    rng = np.random.default_rng(0)
    for i in range(n):
        dx, dy = (int(v) for v in rng.integers(-6, 7, 2))
        side = int(rng.integers(190, 224))
        img = face.resize((side, side), Image.BICUBIC).transform((side, side), Image.AFFINE, (1, 0, dx, 0, 1, dy))
        arr = np.clip(np.asarray(img, dtype=np.float32) * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8)
        folder = root / CLASSES[i % len(CLASSES)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(folder / f"face{i:02d}.png")
    return root


def _args(root: Path, out: Path):
    return ["caption", "--dataset", "imagefolder", "--root", str(root), "--out", str(out), "--shard-size", "6",
            "--quiet"]


def _run_child(root: Path, out: Path, signum: int, stop_at: int):
    """The command in a child process that sends itself ``signum`` at event ``stop_at``."""
    log = out.parent / f"{out.name}.events"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", CHILD, str(signum), str(stop_at), str(log), *_args(root, out)],
                          capture_output=True, text=True, timeout=120, env=env, preexec_fn=default_sigint)


def _outputs(folder: Path):
    """sha256 of everything a run promises to reproduce: shards, their sidecars, sizes.json."""
    names = sorted(p.name for p in folder.glob("imagefolder-*"))
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in names + ["sizes.json"]}


def _run_here(root: Path, out: Path, capsys=None):
    """The same command in this process (the uninterrupted run and the resumes: no second torch import)."""
    assert emocap_main(_args(root, out)) == 0
    return capsys.readouterr() if capsys else None


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The uninterrupted run's outputs and its event sequence (counted as the child counts them)."""
    from emocap.captioning import shards
    from emocap.face_analysis import analyzer

    base = tmp_path_factory.mktemp("caption_runs")
    root = _face_folder(base / "faces")
    events = []

    def counting(kind, fn):
        def wrapped(*a, **k):
            events.append(kind)
            return fn(*a, **k)
        return wrapped

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shards, "prepare_sample", counting("sample", shards.prepare_sample))
        mp.setattr(analyzer.FaceAnalyzer, "read", counting("face", analyzer.FaceAnalyzer.read))
        mp.setattr(os, "replace", counting("rename", os.replace))
        _run_here(root, base / "full")
    report = json.loads((base / "full" / "report.json").read_text())
    assert report["samples_written"] == 40 and report["shards"] == 7
    assert (base / "full" / "reference.json").is_file()
    return root, _outputs(base / "full"), events


def _shard_phase(events):
    """Event numbers (1-based) after the rest-face reference is saved: where a resume reads it back from disk."""
    first_sample = events.index("sample")
    return list(range(first_sample + 1, len(events) - 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill9_at_a_seeded_point_then_resume_is_byte_identical(uninterrupted, tmp_path, seed):
    root, expected, events = uninterrupted
    stop_at = random.Random(seed).choice(_shard_phase(events))
    out = tmp_path / "killed"
    proc = _run_child(root, out, signal.SIGKILL, stop_at)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    _run_here(root, out)
    assert _outputs(out) == expected  # nothing lost, nothing duplicated, the same bytes (AU values included)
    assert not list(out.glob("*.tmp"))


def test_sigint_prints_one_line_exits_130_and_resumes(uninterrupted, tmp_path, capsys):
    root, expected, events = uninterrupted
    out = tmp_path / "interrupted"
    proc = _run_child(root, out, signal.SIGINT, _shard_phase(events)[30])  # in the third shard
    assert proc.returncode == 130, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "interrupted" in lines[0] and "resume" in lines[0]
    assert "resumed: 12 samples" in _run_here(root, out, capsys).out
    assert _outputs(out) == expected


def _samples(n: int, same_key: bool = False, same_bytes: bool = False):
    out = []
    for i in range(n):
        buf = io.BytesIO()
        rng = np.random.default_rng(0 if same_bytes else i)
        Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8), mode="L").save(buf, format="PNG")
        data = buf.getvalue()
        out.append(Sample(key="dup" if same_key else f"s{i:03d}", source_file=f"in/{i}/img.png",
                          read_bytes=lambda d=data: d, image_ext="png", distribution={CLASSES[i % 4]: 1.0}))
    return out


def _members(folder: Path):
    return sorted(m for shard in sorted(folder.glob("*.tar")) for m in tarfile.open(shard).getnames())


def test_rerun_with_another_shard_size_is_refused_not_duplicated(tmp_path):
    samples = _samples(10)
    out = tmp_path / "out"
    assert build_captions(samples, out, shard_size=4, progress=False)["samples_written"] == 10
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "report.json"}
    with pytest.raises(ValueError, match=r"shard_size: 3 now, 4 before"):
        build_captions(samples, out, shard_size=3, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != "report.json"} == before
    with pytest.raises(ValueError, match="sample list"):  # another --limit: another sample list
        build_captions(samples[:7], out, shard_size=4, progress=False)
    report = build_captions(samples, out, shard_size=4, progress=False)  # the same settings resume
    assert report["resumed_samples"] == 10 and report["samples_written"] == 10
    assert len(_members(out)) == 3 * 10


@pytest.mark.parametrize("same_bytes", [True, False])
def test_colliding_keys_are_refused_never_merged_or_dropped(tmp_path, same_bytes):
    samples = _samples(2, same_key=True, same_bytes=same_bytes)
    with pytest.raises(ValueError, match=r"collision.*in/0/img.png and in/1/img.png"):
        build_captions(samples, tmp_path / "out", shard_size=4, progress=False)
    assert not list((tmp_path / "out").glob("*.tar"))
    # the same bytes under keys of their own: the second is a duplicate of the first (not of itself), and the
    # count reported is what is on disk
    samples = _samples(9)
    samples[4] = Sample(key="s004", source_file="in/4/img.png", read_bytes=samples[0].read_bytes, image_ext="png",
                        distribution={"anger": 1.0})
    report = build_captions(samples, tmp_path / "other", shard_size=4, progress=False)
    on_disk = [m for m in _members(tmp_path / "other") if m.endswith(".json")]
    assert report["samples_written"] == len(on_disk) == 8
    assert [(s["key"], s["reason"]) for s in report["skipped"]] == [("s004", "duplicate image of s000")]


def _record_json(key: str) -> bytes:
    return json.dumps({"key": key, "label": "happiness", "soft_label": {"happiness": 1.0}, "writer": "templates",
                       "captions": {"global": "a happy face", "local": [], "summary": "happy"},
                       "facts": {"aus": {}}}).encode("utf-8")


def _shard(path: Path, members):
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("kind", ["absolute", "dotdot"])
def test_export_refuses_members_outside_out(tmp_path, capsys, kind):
    target = tmp_path / "outside" / "evil"
    stem = str(target) if kind == "absolute" else "../../outside/evil"
    shards = tmp_path / "shards"
    shards.mkdir()
    (tmp_path / "outside").mkdir()
    _shard(shards / "bad-000000.tar", [(f"{stem}.png", b"not an image"), (f"{stem}.json", _record_json("evil"))])
    out = tmp_path / "out" / "hf"
    rc = emocap_main(["caption", "export", str(shards), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "bad-000000.tar" in err and f"{stem}.png" in err
    assert not target.with_suffix(".png").exists()
    assert not any(p.is_file() for p in (tmp_path / "outside").rglob("*"))


def test_export_never_overwrites_one_image_with_another(tmp_path, capsys):
    shards = tmp_path / "shards"
    shards.mkdir()
    images = [b"image from shard zero", b"image from shard one"]
    for i, data in enumerate(images):  # two shards (e.g. two folders' 1.jpg) holding the same key
        _shard(shards / f"x-{i:06d}.tar", [("1.png", data), ("1.json", _record_json("1"))])
    out = tmp_path / "hf"
    assert emocap_main(["caption", "export", str(shards), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    files = sorted((out / "train").glob("*.png"))
    assert "wrote 2 images" in printed and len(files) == 2
    assert sorted(p.read_bytes() for p in files) == sorted(images)
    rows = [json.loads(line) for line in (out / "train" / "metadata.jsonl").read_text().splitlines()]
    assert sorted(r["file_name"] for r in rows) == [p.name for p in files]
