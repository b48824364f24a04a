"""Tests for emocap.classifier.ZeroShotClassifier on a tiny saved model (random weights, so only the plumbing
and the maths are checked here, not accuracy)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emocap.models import load_model
from PIL import Image

import emocap
from emocap import taxonomy
from emocap.classifier import NoFaceFoundError, ZeroShotClassifier
from emocap.face_predictions import NoFaceFoundWarning
from emocap.faces import detect_faces, face_crop
from emocap.images import ImageLoadError

PROMPT_DIR = Path(emocap.__file__).parent / "data" / "prompts"


@pytest.fixture(scope="module")
def clf(tiny_model):
    return ZeroShotClassifier(tiny_model, device="cpu")


@pytest.fixture(scope="module")
def sample_images():
    rng = np.random.RandomState(42)
    return [Image.fromarray(rng.randint(0, 256, (48 + 5 * i, 48, 3), dtype=np.uint8)) for i in range(4)]


def _bundled_texts(label):
    """Prompt texts for ``label`` built straight from the bundled JSON files."""
    templates = json.loads((PROMPT_DIR / "basic8_templates.json").read_text())["templates"]
    desc = json.loads((PROMPT_DIR / "basic8_descriptions.json").read_text())["descriptions"]
    canon = taxonomy.canonical_or_none(label)
    return [t.replace("{}", label) for t in templates] + (desc.get(canon, []) if canon else [])


@torch.no_grad()
def _reference_probs(em, images, labels):
    """Zero-shot probabilities computed by hand from the open_clip module."""
    model = em.model
    x = torch.stack([em.preprocess(im.convert("RGB")) for im in images])
    img = torch.nn.functional.normalize(model.encode_image(x), dim=-1)
    cls = []
    for label in labels:
        t = torch.nn.functional.normalize(model.encode_text(em.tokenizer(_bundled_texts(label))), dim=-1)
        m = t.mean(0)
        cls.append(m / m.norm())
    cls = torch.stack(cls)
    logits = model.logit_scale.exp() * img @ cls.T
    return torch.softmax(logits, dim=-1).numpy()


def test_defaults(clf, tiny_model):
    assert clf.labels == taxonomy.BASIC8
    assert clf.prompt_set.name == "basic8"
    assert not tiny_model.model.training
    assert clf.text_features.shape == (8, tiny_model.model_cfg["embed_dim"])
    norms = clf.text_features.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_predict_proba_shape_and_sum(clf, sample_images):
    probs = clf.predict_proba(sample_images)
    assert probs.shape == (len(sample_images), len(clf.labels))
    assert np.all(np.isfinite(probs)) and np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_predict_proba_matches_hand_computation(clf, tiny_model, sample_images):
    expected = _reference_probs(tiny_model, sample_images, clf.labels)
    np.testing.assert_allclose(clf.predict_proba(sample_images), expected, atol=1e-5)


def test_batch_size_does_not_change_results(clf, sample_images):
    np.testing.assert_allclose(
        clf.predict_proba(sample_images, batch_size=3), clf.predict_proba(sample_images, batch_size=64), atol=1e-6
    )


def test_predict_sorted_and_complete(clf, sample_images):
    probs = clf.predict_proba(sample_images)
    results = clf.predict(sample_images)
    assert len(results) == len(sample_images)
    for row, p in zip(results, probs):
        assert sorted(r["label"] for r in row) == sorted(clf.labels)
        scores = [r["score"] for r in row]
        assert scores == sorted(scores, reverse=True)
        for r in row:
            assert r["score"] == pytest.approx(float(p[clf.labels.index(r["label"])]), abs=1e-6)
        assert row[0]["label"] == clf.labels[int(np.argmax(p))]


def test_top_k(clf, sample_images):
    full = clf.predict(sample_images)
    top = clf.predict(sample_images, top_k=3)
    for f, t in zip(full, top):
        assert len(t) == 3
        assert [r["label"] for r in t] == [r["label"] for r in f[:3]]
    assert len(clf.predict(sample_images[0], top_k=1)[0]) == 1


def test_single_input_and_empty_list(clf, sample_images):
    assert clf.predict_proba(sample_images[0]).shape == (1, 8)
    assert len(clf.predict(sample_images[0])) == 1
    assert clf.predict_proba([]).shape == (0, 8)


def test_arbitrary_label_names(tiny_model, sample_images):
    labels = ["joy", "rage", "quux"]
    # the text tower alone, as the hand computation does it (the word bridge has its own tests)
    c = ZeroShotClassifier(tiny_model, labels=labels, device="cpu", word_bridge=False)
    assert c.labels == labels
    probs = c.predict_proba(sample_images)
    assert probs.shape == (len(sample_images), 3)
    np.testing.assert_allclose(probs, _reference_probs(tiny_model, sample_images, labels), atol=1e-5)
    assert {r["label"] for r in c.predict(sample_images[0])[0]} == set(labels)
    # "joy" gets the happiness descriptions, the unknown word gets templates only
    n_templates = len(c.prompt_set.templates)
    assert len(c.prompt_set.texts_for("joy")) > n_templates
    assert len(c.prompt_set.texts_for("quux")) == n_templates


def test_prompt_list_and_saved_prompts(tiny_model, sample_images):
    c = ZeroShotClassifier(tiny_model, labels=["happy", "sad"], prompts=["a {} face"], device="cpu")
    with torch.no_grad():
        t = tiny_model.model.encode_text(tiny_model.tokenizer(["a happy face", "a sad face"]), normalize=True)
    torch.testing.assert_close(c.text_features, t, atol=1e-6, rtol=0)
    # prompts stored in the model's metadata are used when none are given
    em = dataclasses.replace(tiny_model, meta={**tiny_model.meta, "prompts": {"templates": ["a {} face"]}})
    c2 = ZeroShotClassifier(em, labels=["happy", "sad"], device="cpu")
    assert c2.prompt_set.hash == c.prompt_set.hash
    np.testing.assert_allclose(c2.predict_proba(sample_images), c.predict_proba(sample_images), atol=1e-6)


def test_inputs_of_all_kinds(clf, tmp_path):
    rng = np.random.RandomState(5)
    rgb = rng.randint(0, 256, (40, 44, 3), dtype=np.uint8)
    gray = rgb.mean(axis=2).astype(np.uint8)
    rgb_path = tmp_path / "face.png"
    Image.fromarray(rgb).save(rgb_path)
    gray_path = tmp_path / "gray.jpg"
    Image.fromarray(gray, mode="L").save(gray_path, quality=100)
    rgba = Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), mode="RGBA")
    cmyk = Image.fromarray(rgb).convert("CMYK")

    inputs = [str(rgb_path), rgb_path, gray_path, Image.fromarray(gray, mode="L"), rgba, cmyk, rgb,
              np.moveaxis(rgb, -1, 0), rgb.astype(np.float32) / 255.0]
    probs = clf.predict_proba(inputs)
    assert probs.shape == (len(inputs), 8)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    p_rgb = probs[0]
    # the same pixels in any container give the same answer
    for i in (1, 4, 6, 7):
        np.testing.assert_allclose(probs[i], p_rgb, atol=1e-5, err_msg=str(i))
    np.testing.assert_allclose(probs[8], p_rgb, atol=1e-3)  # float rounding to 8 bit
    np.testing.assert_allclose(probs[3], clf.predict_proba(Image.fromarray(gray).convert("RGB"))[0], atol=1e-5)


def test_grayscale_models_ignore_colour(tiny_model, sample_images):
    em = dataclasses.replace(tiny_model, meta={**tiny_model.meta, "grayscale": True})
    c = ZeroShotClassifier(em, device="cpu")
    gray_versions = [im.convert("L") for im in sample_images]
    np.testing.assert_allclose(c.predict_proba(sample_images), c.predict_proba(gray_versions), atol=1e-6)


def test_text_features_are_cached(tiny_model, sample_images, monkeypatch):
    c = ZeroShotClassifier(tiny_model, labels=["happy", "sad", "quux"], device="cpu")
    calls = []
    original = tiny_model.tokenizer

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny_model, "tokenizer", counting)
    first = c.predict_proba(sample_images)
    n_first = len(calls)
    assert n_first >= 1
    assert len(c._text_cache) == 1
    second = c.predict_proba(sample_images)
    c.predict(sample_images[:1])
    assert len(calls) == n_first  # no re-encoding
    np.testing.assert_array_equal(first, second)
    # another label set is a new cache entry
    c.class_text_features(["anger"])
    assert len(calls) > n_first and len(c._text_cache) == 2


def test_detect_faces_on_astronaut(clf, astronaut_path, astronaut_image):
    results = clf.predict([astronaut_path], detect_faces=True, top_k=None)
    assert len(results) == 1
    faces = results[0]
    assert len(faces) == 1
    face = faces[0]
    x0, y0, x1, y1 = face["box"]
    assert 0 <= x0 < x1 <= astronaut_image.width and 0 <= y0 < y1 <= astronaut_image.height
    assert face["face_score"] > 0
    preds = face["predictions"]
    assert sorted(p["label"] for p in preds) == sorted(clf.labels)
    assert [p["score"] for p in preds] == sorted((p["score"] for p in preds), reverse=True)
    assert sum(p["score"] for p in preds) == pytest.approx(1.0, abs=1e-5)
    # the scores are those of the face crop, not of the whole photo
    box = detect_faces(astronaut_image)[0]
    assert list(box.box) == face["box"]
    expected = clf.predict_proba(face_crop(astronaut_image, box, margin=clf.crop_policy.margin,
                                           align=clf.crop_policy.align))[0]
    for p in preds:
        assert p["score"] == pytest.approx(float(expected[clf.labels.index(p["label"])]), abs=1e-5)


def test_no_face_raises_naming_input(clf, gray_image_path, astronaut_image):
    for item in (str(gray_image_path), gray_image_path):
        with pytest.raises(NoFaceFoundError) as info:
            clf.predict([item], detect_faces=True, no_face="raise")
        assert gray_image_path.name in str(info.value)
    # in-memory images are named by their position
    with pytest.raises(NoFaceFoundError, match="image 1"):
        clf.predict([astronaut_image, Image.new("RGB", (64, 64), (90, 90, 90))], detect_faces=True, no_face="raise")


def test_a_faceless_photo_does_not_fail_the_batch(clf, tmp_path, astronaut_path):
    """By default a photo without a face gets an empty result and a warning naming it; the others are scored."""
    wall = tmp_path / "plain_wall.png"
    Image.new("RGB", (400, 300), (140, 120, 100)).save(wall)
    with pytest.warns(NoFaceFoundWarning, match="plain_wall.png"):
        faces = clf.predict([astronaut_path, wall], detect_faces=True)
    assert len(faces[0]) == 1 and faces[1] == []
    with pytest.warns(NoFaceFoundWarning):  # the default framing: the photo's main face, or nothing
        ranked = clf.predict([astronaut_path, wall])
    assert ranked[0] == faces[0][0]["predictions"] and ranked[1] == []


def test_corrupt_file_raises_naming_it(clf, tmp_path, sample_images):
    bad = tmp_path / "broken_face.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a whole jpeg")
    for detect in (False, True):
        with pytest.raises(ImageLoadError) as info:
            clf.predict([bad, sample_images[0]], detect_faces=detect)
        assert "broken_face.jpg" in str(info.value)
    with pytest.raises(ImageLoadError, match="broken_face.jpg"):
        clf.predict_proba([sample_images[0], bad])
    with pytest.raises(ImageLoadError, match="missing_face.png"):
        clf.predict_proba([tmp_path / "missing_face.png"])


def test_from_pretrained(tiny_model_dir, sample_images, clf):
    c = ZeroShotClassifier.from_pretrained("local-dir:" + str(tiny_model_dir), device="cpu")
    assert c.model_id == "local-dir:" + str(tiny_model_dir)
    np.testing.assert_allclose(c.predict_proba(sample_images), clf.predict_proba(sample_images), atol=1e-6)


def test_batched_trimmed_text_features_equal_plain_open_clip(tiny_model):
    """All prompts of all labels in one padding-trimmed pass == per-label model.encode_text means."""
    import torch

    c = ZeroShotClassifier(tiny_model, labels=["happy", "sad", "quux"], prompts=["a photo of a {} face.",
                           "a {} looking person, with a much longer prompt than the others here."], device="cpu",
                           word_bridge=False)  # the text tower alone, as computed by hand below
    with torch.inference_mode():
        expected = []
        for label in c.labels:
            feats = tiny_model.model.encode_text(tiny_model.tokenizer(c.prompt_set.texts_for(label)), normalize=True)
            mean = feats.mean(dim=0)
            expected.append(mean / mean.norm())
    np.testing.assert_allclose(c.text_features.numpy(), torch.stack(expected).numpy(), atol=1e-5)


def test_inference_optimisation_keeps_outputs_of_a_conv_tower(tmp_path):
    """from_pretrained folds conv+BN pairs and uses channels_last; scores stay those of the plain model."""
    from emocap.models import create_model, save_model

    em = create_model("emocap-rn-small")
    with torch.no_grad():  # non-trivial batch-norm statistics, as after training
        for m in em.model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    em.meta = {"labels": ["happy", "sad", "calm"]}
    folder = save_model(em, tmp_path / "rn")
    images = [Image.new("RGB", (48, 48), (i * 60, 100, 200 - i * 50)) for i in range(4)]
    plain = ZeroShotClassifier(load_model(str(folder)), device="cpu")
    fast = ZeroShotClassifier.from_pretrained(str(folder), device="cpu")
    assert plain.folded_batchnorms == 0 and fast.folded_batchnorms > 10 and fast.channels_last
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.model.model.visual.modules())
    np.testing.assert_allclose(fast.encode_images(images), plain.encode_images(images), atol=1e-4)
