"""Training for real photos: the photo augmentation steps and validation on photos framed by the face pipeline."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torchvision import transforms

from conftest import faces_wild_dev
from emocap import taxonomy
from emocap.face_predictions import CropPolicy, main_face
from emocap.images import load_image
from emocap.train.config import ConfigError, load_config
from emocap.train.data import augment
from emocap.train.loop import train
from emocap.train.photo_augment import PHOTO_KEYS, photo_augment
from emocap.train.validation import PhotoValidator

BASE_AUG = {"scale": [0.7, 1.0], "rotate": 10.0, "translate": 0.1, "flip": True, "brightness": 0.2,
            "contrast": 0.2, "erase_prob": 0.5}
STEPS = {"shade": {"shade": 0.8}, "gamma": {"gamma": 0.8}, "occlude": {"occlude_prob": 1.0},
         "low_res": {"low_res_prob": 1.0, "low_res_side": [8, 8]}, "blur": {"blur_prob": 1.0},
         "noise": {"noise": 0.1}, "jpeg": {"jpeg_prob": 1.0, "jpeg_quality": [5, 10]}}


def _faces(channels=1, n=6, size=32):
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, channels, size, size, generator=g)


def test_photo_steps_off_by_default_leave_augment_as_before():
    x = _faces()
    old = augment(x, BASE_AUG, torch.Generator().manual_seed(3))
    new = augment(x, {**BASE_AUG, **PHOTO_KEYS}, torch.Generator().manual_seed(3))
    assert torch.equal(old, new)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("step", sorted(STEPS))
def test_each_photo_step_changes_faces_in_range_and_is_seeded(step, channels):
    x = _faces(channels)
    aug = {**PHOTO_KEYS, **STEPS[step]}
    a = photo_augment(x, aug, torch.Generator().manual_seed(1))
    b = photo_augment(x, aug, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert (a - x).abs().mean() > 0.005, f"{step} left the images nearly unchanged"


def test_occlusion_is_a_full_width_band_of_one_shade():
    x = _faces(n=8)
    out = photo_augment(x, {**PHOTO_KEYS, "occlude_prob": 1.0}, torch.Generator().manual_seed(0))
    for i in range(len(x)):
        flat_rows = [(out[i, 0, r] == out[i, 0, r, 0]).all().item() for r in range(x.shape[-1])]
        assert sum(flat_rows) >= 3, "no band of constant rows"


def test_low_resolution_and_blur_remove_fine_detail():
    checker = ((torch.arange(32).view(32, 1) + torch.arange(32).view(1, 32)) % 2).float().expand(4, 1, 32, 32)
    for aug in ({"low_res_prob": 1.0, "low_res_side": [8, 12]}, {"blur_prob": 1.0, "blur_sigma": [1.0, 1.5]}):
        out = photo_augment(checker.clone(), {**PHOTO_KEYS, **aug}, torch.Generator().manual_seed(0))
        assert out[:, :, 4:-4, 4:-4].std() < 0.2 * checker.std()


@pytest.mark.parametrize("override, key", [("aug.jpeg_quality=[90, 10]", "aug.jpeg_quality"),
                                           ("aug.blur_sigma=[0, 1]", "aug.blur_sigma"),
                                           ("aug.low_res_side=12", "aug.low_res_side"),
                                           ("aug.occlude_prob=1.5", "aug.occlude_prob"),
                                           ("data.photo_val_root=/x", "data.photo_val_root"),
                                           ("data.photo_val_classes=anger", "data.photo_val_classes")])
def test_bad_photo_augment_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("tiny", ["data.train_shards=/x", override])


def test_photo_stage_turns_the_photo_steps_on_and_validates_on_photos():
    cfg = load_config("default-photos")
    assert all(cfg["aug"][k] > 0 for k in ("shade", "gamma", "occlude_prob", "low_res_prob", "blur_prob",
                                           "noise", "jpeg_prob"))
    assert cfg["data"]["photo_val_root"].endswith("faces-wild-dev")
    assert "faces-wild-dev" not in str(cfg["data"]["train_shards"])  # validation only, never training data


# ---------------------------------------------------------------- photo validation
@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """A small ImageFolder of real faces-wild-dev photos (links), three classes."""
    source = faces_wild_dev() / "images"
    root = tmp_path_factory.mktemp("photos")
    for name in ("neutral", "happiness", "anger"):
        (root / name).mkdir()
        for path in sorted((source / name).iterdir())[:4]:
            (root / name / path.name).symlink_to(path)
    return root


def test_photo_validator_frames_faces_as_classify_does(photo_folder):
    labels = [taxonomy.canonical(n) for n in taxonomy.label_set("ferplus8")]
    pv = PhotoValidator(str(photo_folder), None, 64, True, labels, ["anger", "happiness", "neutral"], progress=False)
    assert pv.images.shape == (12, 1, 64, 64) and pv.images.dtype == torch.uint8
    assert pv.columns == [labels.index("anger"), labels.index("happiness"), labels.index("neutral")]
    assert sorted(np.bincount(pv.targets).tolist()) == [4, 4, 4]
    first = sorted((photo_folder / "anger").iterdir())[0]
    crop, outcome = main_face(load_image(str(first)), CropPolicy())
    assert outcome == "detected"  # a 350x350 photo is searched, as `emocap classify` does with no flag
    model_transform = transforms.Compose([transforms.Resize(64, interpolation=transforms.InterpolationMode.BICUBIC),
                                          transforms.CenterCrop(64)])  # open_clip's shortest-side transform
    expected = np.asarray(model_transform(crop.convert("L")), dtype=np.int16)
    assert np.abs(pv.images[0, 0].numpy().astype(np.int16) - expected).mean() < 1.0


def test_photo_validator_refuses_classes_outside_the_training_labels(photo_folder):
    with pytest.raises(ValueError, match="photo_val_classes"):
        PhotoValidator(str(photo_folder), None, 64, True, ["neutral", "happiness"], ["anger"], progress=False)


def test_training_logs_photo_validation_and_keeps_it_with_best(tiny_shards, photo_folder, tmp_path):
    root, shards = tiny_shards
    cfg = load_config("tiny", [f"data.train_shards={shards}", f"out={tmp_path / 'run'}", "epochs=1", "batch_size=8",
                               "checkpoint_every=100", "log_every=2", f"data.val_root={root}",
                               f"data.photo_val_root={photo_folder}", "aug.jpeg_prob=0.5", "aug.blur_prob=0.5",
                               "aug.occlude_prob=0.3", "aug.low_res_prob=0.3", "aug.shade=0.3", "aug.gamma=0.3",
                               "aug.noise=0.02"])
    train(cfg, progress=False)
    with open(tmp_path / "run" / "log.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["val_uar"]]
    assert len(rows) == 1
    photos = json.loads(rows[0]["terms"])
    assert 0 <= photos["photos_war"] <= 1 and 0 <= photos["photos_uar"] <= 1
    meta = json.loads((tmp_path / "run" / "best" / "open_clip_config.json").read_text())
    assert meta["emocap"]["validation"]["photos"]["root"] == str(photo_folder)
