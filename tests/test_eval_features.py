"""Feature extraction and caching, image views, and the zero-shot path through cached features."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from emocap import ZeroShotClassifier
from emocap.eval.registry import get_benchmark
from emocap.eval.samples import pool_frame_probs
from emocap.eval import features as features_module
from emocap.eval.features import (FeatureCache, FeatureSet, encode_benchmark, extract_features, load_feature_set,
                                  save_feature_set)
from emocap.eval.run_spec import RunSpec
from emocap.eval.views import equalize, get_view, mask_face_half
from emocap.eval.zeroshot import evaluate


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "faces"
    rng = np.random.RandomState(0)
    for cls in ("happy", "sad", "angry"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.randint(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    (root / "sad" / "broken.png").write_bytes(b"not a png")
    return root


def test_pool_frame_probs_means_groups():
    rows = np.arange(12, dtype=np.float64).reshape(6, 2)
    np.testing.assert_allclose(pool_frame_probs(rows, [1, 2, 3]), [[0, 1], [3, 4], [8, 9]])
    assert pool_frame_probs(rows, [1] * 6) is rows
    with pytest.raises(ValueError):
        pool_frame_probs(rows, [2, 2])


def test_views_mask_the_right_half_and_equalise():
    im = Image.fromarray(np.tile(np.arange(0, 200, 10, dtype=np.uint8)[:, None, None], (1, 10, 3)))  # 20 rows
    upper = np.asarray(mask_face_half(im, "upper"))
    lower = np.asarray(mask_face_half(im, "lower"))
    original = np.asarray(im)
    assert (upper[:10] == original[:10]).all() and len(np.unique(upper[10:])) == 1
    assert (lower[10:] == original[10:]).all() and len(np.unique(lower[:10])) == 1
    low_contrast = np.repeat(original // 4 + 50, 40, axis=1)  # 20 grey levels in 50..97, 8,000 pixels
    eq = np.asarray(equalize(Image.fromarray(low_contrast)))
    assert eq.max() - eq.min() > 200  # contrast stretched over the full range
    assert get_view(None) is None and get_view("none") is None
    with pytest.raises(ValueError, match="unknown image view"):
        get_view("left-face")


def test_extract_features_skips_bad_images_and_keeps_order(folder):
    data = get_benchmark("imagefolder").load(folder)
    seen = []

    def encode(images):
        seen.extend(images)
        return np.stack([np.asarray(im, dtype=np.float32).mean(axis=(0, 1)) for im in images])

    fs = extract_features(encode, data, batch_size=4, progress=False)
    assert len(fs) == 9 and fs.features.shape == (9, 3) and (fs.counts == 1).all()
    assert [s for s, _ in fs.skipped] == [str(folder / "sad" / "broken.png")]
    assert fs.sources == [s.source for s in data.samples if "broken" not in s.source]
    np.testing.assert_array_equal(fs.labels, [s.label for s in data.samples if "broken" not in s.source])


def test_cache_round_trip_and_second_prompt_set_reuses_features(tiny_model, folder, tmp_path, monkeypatch):
    clf = ZeroShotClassifier(tiny_model, labels=["happiness", "sadness", "anger"], device="cpu")
    cache = FeatureCache(tmp_path / "cache")
    first = evaluate(clf, "imagefolder", folder, progress=False, cache=cache, batch_size=4)
    assert not first["features_from_cache"] and first["n"] == 9 and first["n_skipped"] == 1
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("images were encoded again")

    monkeypatch.setattr(clf, "encode_images", fail)
    monkeypatch.setattr(features_module, "image_steps", lambda *a: (lambda im: im, fail))
    again = evaluate(clf, "imagefolder", folder, progress=False, cache=cache)
    assert again["features_from_cache"] and again["confusion_matrix"] == first["confusion_matrix"]
    assert again["skipped"] == first["skipped"]  # skipped inputs survive the cache
    clf.prompt_set = clf.prompt_set.without_descriptions()
    other = evaluate(clf, "imagefolder", folder, progress=False, cache=cache)
    assert other["features_from_cache"] and other["prompt_hash"] != first["prompt_hash"]
    with pytest.raises(AssertionError, match="encoded again"):  # a view is a different cache entry
        evaluate(clf, "imagefolder", folder, progress=False, cache=cache, view="upper-face")


def test_cache_ignores_corrupt_entries(tmp_path):
    notes = []
    cache = FeatureCache(tmp_path, report=notes.append)
    fs = FeatureSet(np.ones((2, 4), np.float32), np.array([1, 1]), np.array([0, 1]), ["a", "b"], ["x", "y"],
                    soft_labels=np.array([[0.5, 0.5], [0.0, 1.0]]), groups={"g": ["u", None]})
    path = save_feature_set(cache, "k", fs)
    assert [p.name for p in tmp_path.iterdir()] == ["k.npz"]  # one file per entry, no temporary left over
    back = load_feature_set(FeatureCache(tmp_path), "k")
    assert back.from_cache and back.groups == {"g": ["u", None]}
    np.testing.assert_array_equal(back.soft_labels, fs.soft_labels)
    whole = path.read_bytes()
    for broken in (b"", b"truncated", whole[: len(whole) // 2]):
        path.write_bytes(broken)
        assert load_feature_set(FeatureCache(tmp_path, report=notes.append), "k") is None
    assert len(notes) == 3 and all("unreadable" in n and "recomputing" in n for n in notes)
    assert load_feature_set(cache, "missing") is None and len(notes) == 3  # a miss is not a notice


def test_cache_key_separates_model_split_view_limit_and_content(folder):
    data = get_benchmark("imagefolder").load(folder)
    spec = RunSpec("imagefolder", root=str(folder))
    base = spec.feature_key("m", data)
    variants = [spec.feature_key("m2", data), spec.for_split("valid").feature_key("m", data),
                RunSpec("imagefolder", root=str(folder), limit=10).feature_key("m", data),
                RunSpec("imagefolder", root=str(folder), view="histeq").feature_key("m", data),
                RunSpec("imagefolder", root=str(folder), slices="face").feature_key("m", data)]
    assert len({base, *variants}) == 6
    assert spec.feature_key("m", get_benchmark("imagefolder").load(folder)) == base  # same content, same key
    Image.new("RGB", (40, 40), (1, 2, 3)).save(folder / "sad" / "broken.png")  # a fixed file: new size and mtime
    assert spec.feature_key("m", get_benchmark("imagefolder").load(folder)) != base
    renamed = get_benchmark("imagefolder").load(folder)
    key = spec.feature_key("m", renamed)
    from emocap.eval.run_spec import rename_classes

    assert rename_classes(renamed, ["a", "b", "c"]) is None and renamed.classes == ["a", "b", "c"]
    assert spec.feature_key("m", renamed) == key  # class names do not change image features


def test_one_decode_path_matches_encode_images(tiny_model, folder):
    """The eval path decodes each image once and hands it to the model's preprocessing: same features, bit for bit."""
    clf = ZeroShotClassifier(tiny_model, labels=["happiness", "sadness", "anger"], device="cpu")
    data = get_benchmark("imagefolder").load(folder)
    calls = []
    real = clf.encode_images
    clf.encode_images = lambda *a, **k: calls.append(1) or real(*a, **k)
    fs = encode_benchmark(clf, get_benchmark("imagefolder"), data, batch_size=4, progress=False)
    assert not calls  # the classifier's own load-and-decode pass is not used
    expected = real([s.source for s in data.samples if "broken" not in s.source], batch_size=4)
    np.testing.assert_array_equal(fs.features, expected)


def test_clip_features_pool_frame_probabilities(tiny_model, tmp_path):
    from emocap.eval.samples import BenchmarkData, BenchmarkSample as Sample, ClipFrames

    frames = [Image.new("RGB", (32, 32), (i * 40, 90, 200 - i * 40)) for i in range(3)]
    samples = [Sample("clip-a", lambda: ClipFrames(frames), 0, frames=("f0", "f1", "f2")),
               Sample("still-b", lambda: frames[0], 1)]
    data = BenchmarkData(samples, ["happiness", "sadness"])
    clf = ZeroShotClassifier(tiny_model, labels=["happiness", "sadness"], device="cpu")
    fs = encode_benchmark(clf, get_benchmark("imagefolder"), data, progress=False)
    assert fs.counts.tolist() == [3, 1] and fs.features.shape[0] == 4
    from emocap.eval.zeroshot import zero_shot_probs

    probs = zero_shot_probs(clf, fs)
    expected = clf.predict_proba(frames).mean(axis=0)
    np.testing.assert_allclose(probs[0], expected / expected.sum(), atol=1e-5)


def test_face_slices_on_real_ferplus_faces(tiny_model, ferplus_dir, tmp_path):
    """--slices face: landmark-derived groups per sample, cached with the features, metrics per group."""
    clf = ZeroShotClassifier(tiny_model, device="cpu")
    cache = FeatureCache(tmp_path)
    rec = evaluate(clf, "ferplus", ferplus_dir, limit=40, progress=False, cache=cache, slices="face")
    groups = rec["groups"]
    assert set(groups) == {"face_found", "mouth_open", "teeth_visible", "head_yaw"}
    assert sum(g["n"] for g in groups["face_found"].values()) == rec["n"] == 40
    assert groups["face_found"]["yes"]["n"] >= 35  # dlib fits nearly every FER+ crop
    assert sum(g["n"] for g in groups["mouth_open"].values()) == groups["face_found"]["yes"]["n"]
    assert set(groups["head_yaw"]) <= {"frontal", "turned", "profile"}
    again = evaluate(clf, "ferplus", ferplus_dir, limit=40, progress=False, cache=cache, slices="face")
    assert again["features_from_cache"] and again["groups"] == groups
    plain = evaluate(clf, "ferplus", ferplus_dir, limit=40, progress=False, cache=cache)
    assert "groups" not in plain and not plain["features_from_cache"]  # slices are part of the cache key
