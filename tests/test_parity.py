"""Plain open_clip gives emocap's scores: a gray model's conversion folded into its first layer (emocap.gray_fold).

Tiny seeded models (CPU, seconds): a folded gray folder scored by plain open_clip and by emocap on colour images;
folding keeps gray images' features; an old unfolded gray folder still loads and emocap still converts it; towers
and preprocessing that cannot be folded are refused. The embedded default model is compared on real colour photos
from ``../shared/data/media``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from emocap import ZeroShotClassifier
from emocap.gray_fold import (GRAY_WEIGHTS, GrayFoldError, fold_gray_into_model, folded_weight,
                              gray_fold_problem)
from emocap.models import CONFIG_NAME, create_model, default_model_dir, load_model, save_model

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "media"


def _colour_images(n: int = 6, size: int = 50):
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (size, size + 9, 3), dtype=np.uint8)) for _ in range(n)]


def _gray_model(arch: str = "emocap-tiny", **overrides):
    torch.manual_seed(99)
    em = create_model(arch, **overrides)
    em.clip.eval()
    return em


@pytest.fixture(scope="module")
def gray_folders(tmp_path_factory):
    """The same seeded tiny gray model saved twice: unfolded (old layout) and folded."""
    em = _gray_model()
    root = tmp_path_factory.mktemp("gray")
    meta = {"labels": "basic8", "grayscale": True}
    return (save_model(em, root / "unfolded", meta=meta),
            save_model(em, root / "folded", meta=meta, fold_gray=True))


def _plain_open_clip_probs(folder: Path, images, text: torch.Tensor) -> np.ndarray:
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    model.eval()
    with torch.no_grad():
        feats = model.encode_image(torch.stack([preprocess(im) for im in images]), normalize=True)
        return (model.logit_scale.exp() * feats @ text.T).softmax(dim=-1).numpy()


def test_folded_config_says_so_and_only_the_first_layer_changes(gray_folders):
    unfolded, folded = gray_folders
    meta = json.loads((folded / CONFIG_NAME).read_text())["emocap"]
    assert meta["grayscale"] == "folded" and meta["gray_fold"]["layer"] == "visual.conv1"
    old, new = load_model(str(unfolded)), load_model(str(folded))
    assert old.grayscale and not old.gray_folded and old.gray_model
    assert new.gray_folded and not new.grayscale and new.gray_model
    a, b = old.clip.state_dict(), new.clip.state_dict()
    assert [k for k in a if not torch.equal(a[k], b[k])] == ["visual.conv1.weight"]
    w = b["visual.conv1.weight"]
    for k in range(3):  # every input channel is its gray weight times the old channel sum
        torch.testing.assert_close(w[:, k], GRAY_WEIGHTS[k] * a["visual.conv1.weight"].sum(1), rtol=1e-6, atol=1e-7)


def test_plain_open_clip_equals_emocap_on_colour_images_for_a_folded_model(gray_folders):
    folded = gray_folders[1]
    images = _colour_images()
    clf = ZeroShotClassifier.from_pretrained(f"local-dir:{folded}")
    ours = clf.predict_proba(images)
    plain = _plain_open_clip_probs(folded, images, clf.class_text_features())
    np.testing.assert_allclose(plain, ours, atol=1e-5, rtol=0)
    assert (plain.argmax(1) == ours.argmax(1)).all()


def test_folding_keeps_the_features_of_gray_images(gray_folders):
    unfolded, folded = (load_model(str(f)) for f in gray_folders)
    gray = [im.convert("L").convert("RGB") for im in _colour_images()]
    x = torch.stack([unfolded.preprocess(im) for im in gray])
    with torch.no_grad():
        before, after = unfolded.clip.encode_image(x, normalize=True), folded.clip.encode_image(x, normalize=True)
        colour = torch.stack([unfolded.preprocess(im) for im in _colour_images()])
        colour_before = unfolded.clip.encode_image(colour, normalize=True)
        colour_after = folded.clip.encode_image(colour, normalize=True)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)
    assert (colour_after - colour_before).abs().max() > 1e-3  # on colour the layers do differ


def test_folded_model_on_rgb_equals_unfolded_model_on_exact_gray():
    # the algebra, without PIL's uint8 rounding: normalised RGB through the folded layer == float gray, normalised,
    # through the old layer, borders (zero padding) included
    em = _gray_model()
    x = torch.rand(4, 3, 32, 32) * 4 - 2  # normalised pixels
    a = torch.tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)
    with torch.no_grad():
        before = em.clip.encode_image((x * a).sum(1, keepdim=True).expand(-1, 3, -1, -1))
        fold_gray_into_model(em.clip, em.preprocess_cfg)
        after = em.clip.encode_image(x)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_old_unfolded_gray_folder_loads_and_emocap_still_converts(gray_folders):
    unfolded = gray_folders[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the old layout loads without a warning
        clf = ZeroShotClassifier.from_pretrained(f"local-dir:{unfolded}")
    images = _colour_images(3)
    as_gray = [im.convert("L").convert("RGB") for im in images]
    np.testing.assert_allclose(clf.predict_proba(images), clf.predict_proba(as_gray), atol=1e-6, rtol=0)
    assert torch.equal(clf.prepare_image(images[0]), clf.model.preprocess(images[0].convert("L")))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_folding_twice_changes_nothing(dtype):
    w = (torch.randn(12, 3, 3, 3, dtype=torch.float64) * 0.05).to(dtype)
    once = folded_weight(w)
    assert not torch.equal(once, w)
    assert torch.equal(folded_weight(once), once)  # bit for bit, fp16 rounding included
    torch.testing.assert_close(once.double().sum(1), w.double().sum(1), rtol=2e-3 if dtype == torch.float16 else 1e-6,
                               atol=1e-4 if dtype == torch.float16 else 1e-9)
    nearly = once.clone()
    nearly += 1e-2  # a folded layer trained further on gray input moves every channel alike: folded again
    assert not torch.equal(folded_weight(nearly), nearly)


def test_vit_patch_embedding_folds_too():
    em = _gray_model(vision_cfg={"layers": 1, "width": 32, "patch_size": 8, "head_width": 16})
    assert type(em.clip.visual).__name__ == "VisionTransformer" and gray_fold_problem(em.clip, em.preprocess_cfg) is None
    x = torch.rand(2, 3, 32, 32) * 4 - 2
    gray = (x * torch.tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)).sum(1, keepdim=True).expand(-1, 3, -1, -1)
    with torch.no_grad():
        before = em.clip.encode_image(gray)
        fold_gray_into_model(em.clip, em.preprocess_cfg)
        torch.testing.assert_close(em.clip.encode_image(x), before, rtol=1e-5, atol=1e-5)


def test_unfoldable_models_are_refused_with_the_reason(tmp_path):
    em = _gray_model()
    with pytest.raises(GrayFoldError, match="mean .* not the same for the three channels"):
        fold_gray_into_model(em.clip, {**em.preprocess_cfg, "mean": [0.48, 0.45, 0.40]})
    em.clip.visual = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    with pytest.raises(GrayFoldError, match="Sequential image tower"):
        save_model(em, tmp_path / "x", meta={"grayscale": True}, fold_gray=True)
    with pytest.raises(GrayFoldError, match="grayscale False"):
        save_model(_gray_model(), tmp_path / "colour", meta={"grayscale": False}, fold_gray=True)
    assert not (tmp_path / "x").exists() and not (tmp_path / "colour").exists()


def test_embedded_default_model_agrees_with_plain_open_clip_on_colour_photos():
    photos = [MEDIA / "multi_face.jpg", MEDIA / "single_face.jpg"]
    missing = [p for p in photos if not p.is_file()]
    if missing:
        pytest.skip(f"real photos not found: {', '.join(map(str, missing))} (../shared/data/media is absent)")
    images = []
    for path in photos:
        with Image.open(path) as im:
            image = im.convert("RGB")
        w, h = image.size
        images += [image, image.crop((w // 4, h // 4, 3 * w // 4, 3 * h // 4))]
    assert any(np.asarray(im)[..., 0].tolist() != np.asarray(im)[..., 2].tolist() for im in images)  # colour
    clf = ZeroShotClassifier.from_pretrained()
    assert clf.model.gray_folded
    ours = clf.predict_proba(images)
    plain = _plain_open_clip_probs(default_model_dir(), images, clf.class_text_features())
    np.testing.assert_allclose(plain, ours, atol=1e-4, rtol=0)
    assert (plain.argmax(1) == ours.argmax(1)).all()


def test_release_export_and_wise_ft_save_gray_models_folded(gray_folders, tmp_path):
    from emocap.train.export import export_model
    from emocap.train.wise_ft import wise_ft

    unfolded, folded = gray_folders
    key = "visual.conv1.weight"
    reference = load_model(str(folded)).clip.state_dict()[key]
    release = load_model(str(export_model(str(unfolded), str(tmp_path / "release"), fp16=False)))
    assert release.gray_folded and torch.equal(release.clip.state_dict()[key], reference)
    again = load_model(str(export_model(str(folded), str(tmp_path / "again"), fp16=False)))
    assert again.gray_folded and torch.equal(again.clip.state_dict()[key], reference)  # not folded twice
    # the fine-tuned model says "folded": a mix with an unfolded zero-shot model is folded again
    mix = load_model(str(wise_ft(str(unfolded), str(folded), str(tmp_path / "mix"), alpha=0.5)))
    w = mix.clip.state_dict()[key]
    assert mix.gray_folded
    for k in range(3):
        torch.testing.assert_close(w[:, k], GRAY_WEIGHTS[k] * w.sum(1), rtol=1e-5, atol=1e-7)
