"""The carry-over benchmark's own pieces: the fixed photo corruptions and the paired bootstrap of model differences."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def robustness():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports its sibling onnx_speed, as it does when run by hand
    try:
        spec = importlib.util.spec_from_file_location("photo_robustness", BENCHMARKS / "photo_robustness.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


def _face(mode: str) -> Image.Image:
    rng = np.random.default_rng(0)
    pixels = rng.integers(40, 220, size=(48, 48, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    return image.convert("L") if mode == "L" else image


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_every_corruption_changes_the_face_and_keeps_its_size_and_mode(robustness, mode):
    face = _face(mode)
    for name, corrupt in robustness.CORRUPTIONS.items():
        out = corrupt(face)
        assert out.size == face.size and out.mode == face.mode, name
        assert np.abs(np.asarray(out, dtype=np.int16) - np.asarray(face, dtype=np.int16)).mean() > 1.0, name


def test_dark_shade_and_eye_band_darken_where_they_should(robustness):
    face = Image.new("L", (48, 48), 200)
    assert np.asarray(robustness.CORRUPTIONS["dark"](face)).max() < 200
    shaded = np.asarray(robustness.CORRUPTIONS["shade"](face), dtype=float)
    assert shaded[:, 0].mean() > 190 and shaded[:, -1].mean() < 80  # full brightness on one side, 35% on the other
    banded = np.asarray(robustness.CORRUPTIONS["eye-band"](face))
    assert banded[18].max() == 0 and banded[5].min() == 200 and banded[40].min() == 200


def test_paired_bootstrap_of_a_model_against_itself_is_zero(robustness):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 1000)
    pred = np.where(rng.random(1000) < 0.7, labels, rng.integers(0, 5, 1000))
    out = robustness.paired_bootstrap(pred, pred, labels, n_rounds=200)
    for key in ("war", "uar", "war+uar"):
        assert out[key] == {"diff": 0.0, "ci95": [0.0, 0.0]}


def test_paired_bootstrap_finds_a_real_gain_and_brackets_it(robustness):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 5, 2000)
    a = np.where(rng.random(2000) < 0.6, labels, (labels + 1) % 5)
    b = np.where(rng.random(2000) < 0.2, labels, a)  # b fixes about a fifth of a's errors
    out = robustness.paired_bootstrap(a, b, labels, n_rounds=500)
    gain = 100 * ((b == labels).mean() - (a == labels).mean())
    assert out["war"]["diff"] == pytest.approx(gain, abs=0.01)
    low, high = out["war"]["ci95"]
    assert 0 < low < gain < high
    assert out["war+uar"]["diff"] == pytest.approx(out["war"]["diff"] + out["uar"]["diff"], abs=0.02)
    worse = robustness.paired_bootstrap(b, a, labels, n_rounds=500)  # the other way round: the same, negated
    assert worse["war"]["diff"] == pytest.approx(-gain, abs=0.01) and worse["war"]["ci95"][1] < 0
