"""The public face-analysis call (emocap.analyze_face): schema, boxes, the caption builder's numbers, real media."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

import emocap
from conftest import faces_wild_dev, media_file
from emocap.captioning.shards import build_captions
from emocap.captioning.sources import labelfile_source
from emocap.face_analysis import (
    FACE_ANALYSIS_SCHEMA, FaceAnalyzer, LandmarkBackendError, NoFaceFound, analyze_face, api,
)
from emocap.face_analysis.action_units import AUS



@pytest.fixture(scope="module")
def photo():
    return Image.open(media_file("single_face.jpg"))


@pytest.fixture(scope="module")
def result(photo):
    return analyze_face(photo)


def test_schema_on_a_real_photo(result):
    assert emocap.analyze_face is analyze_face
    assert set(result) == set(FACE_ANALYSIS_SCHEMA)
    x0, y0, x1, y1 = result["box"]
    pts = np.asarray(result["landmarks"])
    assert pts.shape == (68, 2)
    inside = (pts[:, 0] > x0 - 20) & (pts[:, 0] < x1 + 20) & (pts[:, 1] > y0 - 20) & (pts[:, 1] < y1 + 20)
    assert inside.all()  # landmarks are in the input photo's pixels, around the face box
    assert list(result["aus"]) == [f"AU{au:02d}" for au in AUS]
    assert all(0.0 <= v <= 1.0 for v in result["aus"].values())
    assert result["au_reference"].startswith("bundled")
    assert all(abs(result["head_pose"][k]) < 30 for k in ("yaw", "pitch", "roll"))  # a frontal portrait
    assert result["eyes"] in ("open", "wide open", "narrowed") and result["mouth"] in ("open", "closed")
    assert result["mouth_open"] == (result["mouth"] == "open")
    json.dumps(result)  # plain JSON types only


def test_a_given_box_or_facebox_skips_detection_and_roll_follows_the_image(photo, result):
    same = analyze_face(np.asarray(photo.convert("RGB")), box=result["box"])
    assert same["aus"] == result["aus"] and same["box"] == result["box"]

    class FaceBoxLike:  # emocap.faces.FaceBox carries .box
        box = tuple(result["box"])

    assert analyze_face(photo, box=FaceBoxLike())["aus"] == result["aus"]
    tilted = analyze_face(photo.convert("RGB").rotate(20, resample=Image.BICUBIC))
    assert tilted["head_pose"]["roll"] == pytest.approx(result["head_pose"]["roll"] - 20, abs=4)
    assert abs(tilted["aus"]["AU12"] - result["aus"]["AU12"]) < 0.15  # AUs are read in the face's own frame
    with pytest.raises(ValueError, match="outside"):
        analyze_face(photo, box=(5000, 5000, 5100, 5100))


def test_no_face_and_missing_dlib_say_what_is_wrong(monkeypatch):
    with pytest.raises(NoFaceFound, match="no face"):
        analyze_face(np.full((240, 320, 3), 127, np.uint8))
    monkeypatch.setattr(api, "_DEFAULTS", {})
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib now fails
    with pytest.raises(LandmarkBackendError, match=r"pip install 'emocap\[analysis\]'"):
        analyze_face(media_file("single_face.jpg"))


def test_importing_emocap_does_not_load_dlib():
    code = "import sys, emocap; emocap.analyze_face; print('dlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_api_reports_the_numbers_captions_are_written_from(tmp_path):
    wild = faces_wild_dev()
    samples, _ = labelfile_source(str(wild), None, labels_file=str(wild / "labels.csv"))
    chosen = [s for s in samples if s.key.endswith(("Pierce_Brosnan_0012", "Jude_Law_0002", "Yao_Ming_0004"))]
    assert len(chosen) == 3
    analyzer = FaceAnalyzer("dlib", detect=True)
    build_captions(chosen, tmp_path, analyzer=analyzer, progress=False)
    with tarfile.open(next(tmp_path.glob("*.tar"))) as tar:
        recs = {json.loads(tar.extractfile(m).read())["key"]: json.loads(tar.extractfile(m).read())
                for m in tar.getmembers() if m.name.endswith(".json")}
    assert len(recs) == 3
    for s in chosen:
        face = recs[s.key]["face"]
        for via in (analyze_face(s.read_bytes(), analyzer=analyzer), analyze_face(s.read_bytes())):
            assert {int(k[2:]): v for k, v in via["aus"].items()} == {int(k): v for k, v in face["au_estimates"].items()}
            assert via["box"] == face["box"] and via["eyes"] == face["eyes"]
            assert via["head_pose"]["yaw"] == face["head_pose"]["yaw"]


def test_steady_video_frames_agree():
    import cv2

    cap = cv2.VideoCapture(str(media_file("single_face.mp4")))
    rows = []
    for _ in range(8):
        ok, bgr = cap.read()
        assert ok
        rows.append(list(analyze_face(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))["aus"].values()))
    cap.release()
    change = np.abs(np.diff(np.asarray(rows), axis=0))
    assert change.mean() < 0.05 and change.max() < 0.3  # consecutive frames of one face read alike
