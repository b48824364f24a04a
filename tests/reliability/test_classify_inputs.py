"""Reliability of the classify path on hostile or odd inputs (issue 17, item 6): each case is refused or handled
with a clear message naming the input, never a hang, a traceback or a silent wrong answer.

Small synthetic inputs only (a 12000x9000 one-colour PNG compresses to a few hundred kB); the model is the tiny
random one from conftest, except the SIGINT case, which runs the real command in a subprocess.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
from conftest import default_sigint
from PIL import Image

from emocap import images
from emocap.cli import main
from emocap.images import ImageLoadError, SmallImageWarning, load_image


@pytest.fixture(scope="module")
def clf(tiny_model):
    from emocap.classifier import ZeroShotClassifier

    return ZeroShotClassifier(tiny_model, device="cpu")


@pytest.fixture()
def face_png(tmp_path):
    path = tmp_path / "face.png"
    Image.new("RGB", (48, 48), (120, 90, 60)).save(path)
    return path


# ------------------------------------------------------------------ a named pipe is refused, never read


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_fifo_argument_is_refused_not_read(tiny_model_dir, face_png, tmp_path, capsys):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)

    def keep_unblocking():  # every open() of the pipe for reading blocks until a writer comes: be that writer
        for _ in range(200):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            time.sleep(0.05)

    def unblock_and_fail(signum, frame):  # old code hangs reading the pipe: let its readers go, then fail the test
        threading.Thread(target=keep_unblocking, daemon=True).start()
        raise TimeoutError(f"classify hung reading the named pipe {fifo}")

    previous = signal.signal(signal.SIGALRM, unblock_and_fail)
    signal.alarm(20)
    try:
        rc = main(["classify", str(fifo), str(face_png), "--model", str(tiny_model_dir)])
        with pytest.raises(ImageLoadError, match="not a regular file") as info:
            load_image(fifo)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out, err = capsys.readouterr()
    assert rc == 0 and f"{face_png}:" in out  # the good image is still classified
    assert f"skipped {fifo}: not a regular file" in err
    assert str(fifo) in str(info.value)


# ------------------------------------------------------------------ numeric options are range-checked at the edge


@pytest.mark.parametrize("option, value", [("--batch-size", "0"), ("--batch-size", "-1"), ("--top-k", "0"),
                                           ("--top-k", "-3"), ("--batch-size", "many")])
def test_numeric_options_are_range_checked(face_png, option, value, capsys):
    with pytest.raises(SystemExit) as info:
        main(["classify", str(face_png), option, value])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert f"argument {option}: must be a positive integer" in err and "Traceback" not in err


@pytest.mark.parametrize("name, value", [("batch_size", 0), ("batch_size", -1), ("top_k", 0), ("top_k", -2)])
def test_library_numbers_are_range_checked(clf, name, value):
    with pytest.raises(ValueError, match=f"{name} must be a positive integer, got {value}"):
        clf.predict(np.zeros((32, 32, 3), np.uint8), **{name: value})


# ------------------------------------------------------------------ empty labels


def test_empty_label_is_refused(tiny_model, tiny_model_dir, face_png, capsys):
    from emocap import taxonomy
    from emocap.classifier import ZeroShotClassifier

    for labels in ([""], ["joy", ""], ["joy", " \t"]):
        with pytest.raises(ValueError, match="label"):
            taxonomy.clean_labels(labels)
        with pytest.raises(ValueError, match="label"):
            ZeroShotClassifier(tiny_model, labels=labels, device="cpu")
    clf = ZeroShotClassifier(tiny_model, labels=["joy", "rage"], device="cpu")
    with pytest.raises(ValueError, match="empty"):
        clf.probs_from_features(np.zeros((1, clf.text_features.shape[1]), np.float32), labels=["joy", ""])
    assert main(["classify", str(face_png), "--model", str(tiny_model_dir), "--labels", "joy", ""]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "label 2 of 2 ('') is empty" in err


# ------------------------------------------------------------------ arrays without finite pixels


@pytest.mark.parametrize("array, problem", [
    (np.full((32, 32), np.nan, np.float32), "NaN or infinite"),
    (np.array([[0.5, np.inf], [0.1, 0.2]]), "NaN or infinite"),
    (np.zeros((0, 0)), "no pixels"),
    (np.zeros((0, 0), np.uint8), "no pixels"),
    (np.zeros((0, 5, 3), np.uint8), "no pixels"),
])
def test_nan_and_empty_arrays_are_refused_naming_the_input(clf, array, problem):
    good = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=problem) as info:
        clf.predict([good, array])
    assert isinstance(info.value, ImageLoadError) and "image 1" in str(info.value)
    results = clf.predict([good, array], on_error="return")
    assert isinstance(results[1], ImageLoadError) and isinstance(results[0], list)


# ------------------------------------------------------------------ images too small to hold a face


def test_tiny_images_are_flagged(clf, tiny_model_dir, tmp_path, capsys):
    one = tmp_path / "one_pixel.png"
    Image.new("RGB", (1, 1), (200, 10, 10)).save(one)
    with pytest.warns(SmallImageWarning, match=r"one_pixel\.png: image is 1x1 px, under 16 px"):
        assert len(clf.predict([one])) == 1  # still scored, but flagged
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallImageWarning)
        clf.predict(Image.new("RGB", (images.MIN_FACE_SIDE, 40)))  # at the minimum: no warning
    with pytest.warns(SmallImageWarning, match=r"image 0 \(ndarray\): image is 40x15 px"):
        clf.predict(np.zeros((15, 40), np.uint8))
    assert main(["classify", str(one), "--model", str(tiny_model_dir)]) == 0
    out, err = capsys.readouterr()
    assert f"{one}:" in out and f"emocap classify: warning: {one}: image is 1x1 px" in err


# ------------------------------------------------------------------ boxes in the caller's coordinates


def test_face_boxes_are_in_the_original_image_coordinates(clf, astronaut_image, tmp_path):
    from emocap.faces import detect_faces

    side = 9000  # loaded at 4096 px (images.MAX_SIDE): the boxes must still be in 9000 px coordinates
    path = tmp_path / "big_photo.jpg"
    astronaut_image.convert("L").resize((side, side), Image.BICUBIC).save(path, quality=90)
    faces = clf.predict(path, detect_faces=True)[0]
    assert faces, "the face was not found"
    ref = detect_faces(astronaut_image)[0]  # the same face in the 512 px portrait
    expected = [round(v * side / astronaut_image.width) for v in ref.box]
    width = expected[2] - expected[0]
    for got, want in zip(faces[0]["box"], expected):
        assert abs(got - want) < 0.15 * width, (faces[0]["box"], expected)


# ------------------------------------------------------------------ very large images: downscaled, with a limit


def test_very_large_image_is_downscaled_not_refused(clf, tmp_path):
    path = tmp_path / "huge_12000x9000.png"
    Image.new("L", (12000, 9000), 100).save(path)
    assert load_image(path).size == (images.MAX_SIDE, 3072)  # 108 MP: over PIL's warning level, under the limit
    assert images.load_image_with_size(path)[1] == (12000, 9000)  # the original size, for coordinates
    assert len(clf.predict([path], detect_faces=False)[0]) == len(clf.labels)  # scored whole
    assert clf.predict_faces([path]) == [[]]  # no flag: a photo this large is searched, and holds no face


def test_image_over_the_pixel_limit_is_refused_naming_file_and_limit(tmp_path, monkeypatch):
    path = tmp_path / "over_limit.png"
    Image.new("L", (60, 50), 100).save(path)
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 60 * 50 - 1, raising=False)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message and "60x50 = 3,000 pixels" in message and "limit of 2,999 pixels" in message
    assert images.MAX_IMAGE_PIXELS < 200_000_000  # the documented default is 150 MP


# ------------------------------------------------------------------ Ctrl-C


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_ctrl_c_ends_classify_with_one_line_and_code_130(tiny_model_dir, face_png):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "emocap.cli", "classify", *[str(face_png)] * 4000, "--model", str(tiny_model_dir),
           "--batch-size", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=default_sigint)
    try:
        first = proc.stdout.readline()  # classifying has started
        assert first.startswith(str(face_png)), first
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [line for line in err.splitlines() if line.strip() and "warning:" not in line]  # label warnings
    assert proc.returncode == 130, err[-2000:]
    assert lines == ["emocap classify: interrupted (Ctrl-C)"], err[-2000:]
