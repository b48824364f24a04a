"""Reliability of `emocap eval` (issue 17): caches that never serve stale or broken entries, results that appear
whole or not at all, kill -9 at seeded points followed by a rerun, and Ctrl-C.

Each case runs the real command on a tiny seeded ImageFolder with the tiny test model (tests/conftest.py). Killed
runs are subprocesses that SIGKILL (or SIGINT) themselves at a chosen point: after the k-th image is decoded,
right after a cache entry's arrays are written, or right after the result file is opened; the rerun's result
must carry the same numbers as an uninterrupted run, and every result file must be complete.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import default_sigint
from PIL import Image

from emocap.cli import main as emocap_main

NUMBERS = ("n", "n_skipped", "war", "uar", "macro_f1", "confusion_matrix", "per_class_recall", "skipped", "labels")
CLASSES = ("happy", "sad", "angry")

# The driver runs `emocap` in a subprocess and ends itself at the point named by $EVAL_KILL: "decode:K" (the K-th
# image decoded), "cache" (a cache entry's arrays written, not yet renamed), "result" (a result file opened),
# with signal $EVAL_SIGNAL (KILL or INT).
DRIVER = r'''
import builtins, os, signal, sys
import numpy as np
point, _, count = os.environ["EVAL_KILL"].partition(":")
sig = getattr(signal, "SIG" + os.environ.get("EVAL_SIGNAL", "KILL"))
out_dir = os.path.abspath(os.environ["EVAL_OUT"])
def stop():
    os.kill(os.getpid(), sig)
if point == "decode":
    import emocap.eval.loaders.common as benchmarks
    real_load, seen = benchmarks.load_image, []
    def load_image(*a, **k):
        seen.append(1)
        if len(seen) == int(count):
            stop()
        return real_load(*a, **k)
    benchmarks.load_image = load_image
elif point == "cache":
    real_savez = np.savez
    def savez(*a, **k):
        real_savez(*a, **k)
        stop()
    np.savez = savez
elif point == "result":
    real_open = builtins.open
    def opened(file, mode="r", *a, **k):
        f = real_open(file, mode, *a, **k)
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(os.fspath(file)).startswith(out_dir + os.sep) \
                and ("w" in mode or "x" in mode):
            stop()
        return f
    builtins.open = opened
from emocap.cli import main
sys.exit(main(sys.argv[1:]))
'''


def _folder(root: Path, per_class: int = 6, seed: int = 0) -> Path:
    rng = np.random.RandomState(seed)
    for cls in CLASSES:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.randint(0, 256, (36, 36, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def _argv(faces: Path, model: Path, out: Path, cache: Path = None, *extra) -> list:
    argv = ["eval", "--benchmark", "imagefolder", "--root", str(faces), "--model", str(model), "--out", str(out),
            "--no-progress", "--batch-size", "4", *extra]
    return argv + (["--cache-dir", str(cache)] if cache is not None else ["--no-cache"])


def _numbers(out: Path) -> list:
    """The numbers of every result file in ``out`` (each must be a complete JSON object)."""
    found = []
    for path in sorted(out.glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        found.append({k: record[k] for k in NUMBERS})
    return found


def _driver(tmp_path: Path, argv: list, kill: str, signal_name: str = "KILL", out: Path = None):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER, encoding="utf-8")
    env = {**os.environ, "EVAL_KILL": kill, "EVAL_SIGNAL": signal_name, "EVAL_OUT": str(out or tmp_path / "none"),
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(script), *argv], env=env, capture_output=True, text=True, timeout=120,
                          preexec_fn=default_sigint)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    return _folder(tmp_path_factory.mktemp("eval_runs") / "faces")


@pytest.fixture(scope="module")
def expected(faces, tiny_model_dir, tmp_path_factory):
    """The numbers of an uninterrupted run without any cache."""
    out = tmp_path_factory.mktemp("eval_plain")
    assert emocap_main(_argv(faces, tiny_model_dir, out)) == 0
    return _numbers(out)


def test_changed_folder_is_evaluated_again_not_served_from_the_cache(tmp_path, tiny_model_dir, capsys):
    """Issue 17, case 1: fix a truncated image, move images between classes, add images: the cached run reports
    what a --no-cache run reports, never the old count and WAR."""
    faces = _folder(tmp_path / "faces", per_class=8)
    truncated = faces / "sad" / "7.png"
    truncated.write_bytes(truncated.read_bytes()[:40])
    cache = tmp_path / "cache"
    assert emocap_main(_argv(faces, tiny_model_dir, tmp_path / "first", cache)) == 0
    (first,) = _numbers(tmp_path / "first")
    assert first["n"] == 23 and any("7.png" in s for s, _ in first["skipped"])

    Image.new("RGB", (36, 36), (200, 40, 40)).save(truncated)  # fixed
    for i in range(3):  # moved between classes
        shutil.move(str(faces / "happy" / f"{i}.png"), str(faces / "angry" / f"moved{i}.png"))
    _folder(tmp_path / "more", per_class=2, seed=5)
    for cls in CLASSES:  # added
        for f in (tmp_path / "more" / cls).iterdir():
            shutil.move(str(f), str(faces / cls / f"new_{f.name}"))
    assert emocap_main(_argv(faces, tiny_model_dir, tmp_path / "cached", cache)) == 0
    assert emocap_main(_argv(faces, tiny_model_dir, tmp_path / "fresh")) == 0
    (cached,), (fresh,) = _numbers(tmp_path / "cached"), _numbers(tmp_path / "fresh")
    assert fresh["n"] == 30 and fresh["n_skipped"] == 0
    assert cached == fresh
    assert "(cached" not in capsys.readouterr().out.split("on imagefolder")[2]  # the second run encoded again


@pytest.mark.parametrize("entry,damage", [("features", "truncated"), ("text", "empty")])
def test_broken_cache_entry_is_a_miss_reported_in_one_line(tmp_path, tiny_model_dir, faces, expected, capsys, entry,
                                                           damage):
    """Issue 17, case 6: a truncated or empty cache .npz is reported in one line, recomputed and replaced."""
    cache = tmp_path / "cache"
    assert emocap_main(_argv(faces, tiny_model_dir, tmp_path / "first", cache)) == 0
    files = [p for p in cache.rglob("*.npz") if p.name.startswith("text-") == (entry == "text")]
    assert len(files) == 1
    whole = files[0].read_bytes()
    files[0].write_bytes(b"" if damage == "empty" else whole[: len(whole) // 2])
    capsys.readouterr()
    assert emocap_main(_argv(faces, tiny_model_dir, tmp_path / "again", cache)) == 0
    err = capsys.readouterr().err
    notices = [line for line in err.splitlines() if "unreadable" in line]
    assert len(notices) == 1 and "recomputing" in notices[0] and "Traceback" not in err
    assert _numbers(tmp_path / "again") == expected
    with np.load(files[0], allow_pickle=False) as arrays:  # replaced by a readable entry
        assert arrays.files


def test_half_written_result_file_is_not_an_existing_result(tmp_path, tiny_model_dir, faces, expected, capsys):
    """What a kill while writing a result left behind (an empty file under the result's name) is not taken as a
    finished run by --skip-existing."""
    out = tmp_path / "res"
    assert emocap_main(_argv(faces, tiny_model_dir, out)) == 0
    (path,) = out.glob("*.json")
    path.write_text("")
    assert emocap_main(_argv(faces, tiny_model_dir, out, None, "--skip-existing")) == 0
    assert "not a complete result file" in capsys.readouterr().err
    path.unlink()
    assert _numbers(out) == expected


_RNG = random.Random(1717)  # seeded kill points: the k-th of the 18 decodes, plus the two write points
KILL_POINTS = [f"decode:{_RNG.randint(1, 18)}", "cache", "result"]


@pytest.mark.parametrize("kill", KILL_POINTS)
def test_kill_9_then_rerun_gives_the_uninterrupted_numbers(tmp_path, tiny_model_dir, faces, expected, kill):
    out, cache = tmp_path / "res", tmp_path / "cache"
    argv = _argv(faces, tiny_model_dir, out, cache, "--skip-existing")
    killed = _driver(tmp_path, argv, kill, out=out)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert emocap_main(argv) == 0  # the rerun
    assert _numbers(out) == expected  # one complete result file, with the uninterrupted numbers
    assert emocap_main(_argv(faces, tiny_model_dir, tmp_path / "from_cache", cache)) == 0
    assert _numbers(tmp_path / "from_cache") == expected  # and what the cache now serves is right too


def test_ctrl_c_is_one_line_and_exit_130(tmp_path, tiny_model_dir, faces):
    run = _driver(tmp_path, _argv(faces, tiny_model_dir, tmp_path / "res", tmp_path / "cache"), "decode:5", "INT")
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 130, run.stderr[-2000:]
    assert len(lines) == 1 and "interrupted" in lines[0] and "Traceback" not in run.stderr
    assert not list((tmp_path / "res").glob("*.json"))
