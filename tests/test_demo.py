"""The web demo's prediction functions (what its buttons call), without a browser or Gradio: real media photos and
videos from ``../shared/data/media`` through the embedded default model.

The photo path must agree with the library (``ZeroShotClassifier.predict(detect_faces=True)``, what ``emocap
classify --detect-faces`` prints); bad inputs must come back as a message, never an exception.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import media_file
from emocap import taxonomy
from emocap.demo import photo_outputs, video_outputs
from emocap.demo_analysis import DEFAULT_LABELS, DemoInputError, DemoModel, analyze_photo, analyze_video, parse_labels

@pytest.fixture(scope="module")
def demo_model() -> DemoModel:
    return DemoModel(device="cpu")


def test_labels_box_parses_free_text_and_rejects_fewer_than_two():
    assert parse_labels(DEFAULT_LABELS) == taxonomy.BASIC8
    assert parse_labels(" joy;a forced  smile\ncalm ,") == ["joy", "a forced smile", "calm"]
    for text in ("", "   ", " , ;", "happiness", None):
        with pytest.raises(DemoInputError, match="at least two labels"):
            parse_labels(text)
    with pytest.raises(DemoInputError, match="duplicate"):
        parse_labels("Joy, joy ")


def test_photo_faces_boxes_scores_and_behaviour_match_the_classifier(demo_model):
    path = media_file("multi_face.jpg")
    photo = Image.open(path)
    image_out, markdown, raw = photo_outputs(demo_model, photo, DEFAULT_LABELS)
    expected = demo_model.classifier(taxonomy.BASIC8).predict(str(path), detect_faces=True)[0]
    faces = raw["faces"]
    assert len(faces) == len(expected) >= 3  # five people, some faces turned or behind sunglasses
    for face, want in zip(faces, expected):
        x0, y0, x1, y1 = face["box"]
        assert 0 <= x0 < x1 <= photo.width and 0 <= y0 < y1 <= photo.height
        assert face["box"] == want["box"]
        scores = [p["score"] for p in face["predictions"]]
        assert sorted(p["label"] for p in face["predictions"]) == sorted(taxonomy.BASIC8)
        assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-4
        assert [p["label"] for p in face["predictions"]] == [p["label"] for p in want["predictions"]]
        assert np.allclose(scores, [p["score"] for p in want["predictions"]], atol=1e-5)
        assert len(face["behaviour"]) == 3 and all(b["sentence"] and "region" in b for b in face["behaviour"])
        top = face["predictions"][0]
        assert f"{top['label']} {top['score']:.3f}" in markdown
    assert f"{len(faces)} faces found" in markdown
    assert image_out.size == photo.size and np.asarray(image_out).tolist() != np.asarray(photo.convert("RGB")).tolist()


def test_photo_of_one_smiling_face_reads_happiness_with_a_smile_behaviour(demo_model):
    result = analyze_photo(demo_model, Image.open(media_file("single_face.jpg")), "happiness, sadness, anger, neutral")
    assert len(result.faces) == 1 and result.labels == ["happiness", "sadness", "anger", "neutral"]
    face = result.faces[0]
    assert face["predictions"][0]["label"] == "happiness"
    assert any("AU12" in b["aus"] for b in face["behaviour"])  # the lip-corner pull of a smile


def test_typed_words_outside_the_taxonomy_get_a_note_saying_where_the_bridge_took_them(demo_model):
    _, notes = demo_model.prepared("a forced smile, sadness, neutral")
    assert any(n.startswith("Labels outside the taxonomy") and "'a forced smile' -> happiness" in n for n in notes)
    _, notes = demo_model.prepared("happiness, sadness")
    assert not any("outside the taxonomy" in n for n in notes)


@pytest.mark.parametrize("image, labels, message", [
    (None, DEFAULT_LABELS, "Upload a photo first"),
    (Image.new("RGB", (1, 1), (200, 150, 120)), DEFAULT_LABELS, "1x1 pixels: too small to hold a face"),
    (Image.new("RGB", (160, 120), (128, 128, 128)), DEFAULT_LABELS, "No face found in the photo"),
    ("multi_face.jpg", "", "at least two labels"),
    ("multi_face.jpg", "joy, ?!", "has no letter or digit"),
])
def test_bad_photo_inputs_give_a_message_not_an_error(demo_model, image, labels, message):
    if isinstance(image, str):
        image = Image.open(media_file(image))
    image_out, markdown, raw = photo_outputs(demo_model, image, labels)
    assert image_out is None and raw == {}
    assert markdown.startswith("### ") and message in markdown


def test_video_timeline_scores_each_sampled_frame(demo_model):
    plot, markdown, raw = video_outputs(demo_model, str(media_file("single_face.mp4")), "joy, rage, calm", 8)
    frames = raw["frames"]
    assert raw["labels"] == ["joy", "rage", "calm"] and len(frames) == 8
    times = [f["time_s"] for f in frames]
    assert times == sorted(times) and times[0] > 0 and times[-1] < 72 / 30  # 72 frames at 30 fps
    assert [f["frame"] for f in frames] == [int((i + 0.5) * 72 / 8) for i in range(8)]  # segment centres
    for f in frames:
        assert f["scores"] is not None and abs(sum(f["scores"].values()) - 1) < 1e-4
    assert plot.width > 300 and plot.height > 150
    assert "Face in 8 of 8 sampled frames" in markdown


def test_video_with_a_face_that_leaves_has_gaps(demo_model):
    result = analyze_video(demo_model, str(media_file("face_noface.mov")), DEFAULT_LABELS, frames=6)
    missing = np.isnan(result.scores[:, 0])
    assert 0 < result.frames_with_face < 6 and missing.any()
    assert np.allclose(result.scores[~missing].sum(axis=1), 1, atol=1e-4)
    assert any("gaps in the plot" in note for note in result.notes)


@pytest.mark.parametrize("video, frames, message", [
    ("no_face.mp4", 6, "No face found in any of the 6 sampled frames"),
    (None, 8, "Upload a video first"),
    ("multi_face.jpg", 8, "multi_face.jpg is not a video file"),
    ("broken.mp4", 8, "Cannot read the video broken.mp4"),
    ("single_face.mp4", 0, "Frames to sample must be 1 to"),
])
def test_bad_video_inputs_give_a_message(demo_model, tmp_path, video, frames, message):
    if video == "broken.mp4":
        (tmp_path / video).write_bytes(b"not a video at all")
        path = str(tmp_path / video)
    else:
        path = str(media_file(video)) if video else None
    with pytest.raises(DemoInputError, match=message):
        analyze_video(demo_model, path, DEFAULT_LABELS, frames=frames)
    if frames:
        plot, markdown, raw = video_outputs(demo_model, path, DEFAULT_LABELS, frames)
        assert plot is None and message in markdown


def test_emocap_demo_command_passes_its_options_to_launch(monkeypatch, capsys):
    import emocap.demo
    from emocap.cli import main

    calls = []
    monkeypatch.setattr(emocap.demo, "launch", lambda model_id, **kw: calls.append((model_id, kw)))
    assert main(["demo", "--model", "local-dir:/m", "--port", "8123", "--share", "false"]) == 0
    assert main(["demo", "--share", "TRUE", "--host", "0.0.0.0"]) == 0
    assert calls == [("local-dir:/m", {"port": 8123, "share": False, "host": "127.0.0.1", "device": None}),
                     (None, {"port": None, "share": True, "host": "0.0.0.0", "device": None})]
    with pytest.raises(SystemExit) as bad:
        main(["demo", "--share", "maybe"])
    assert bad.value.code == 2 and "--share: must be true or false" in capsys.readouterr().err


def test_emocap_demo_without_gradio_says_what_to_install(monkeypatch, capsys):
    import sys

    from emocap.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError, before any model loads
    assert main(["demo"]) == 2
    assert "pip install 'emocap[demo]'" in capsys.readouterr().err


def test_space_app_builds_the_same_page(monkeypatch):
    import runpy

    import emocap.demo

    built = []
    monkeypatch.setattr(emocap.demo, "build_demo", lambda model_id=None: built.append(model_id) or "page")
    monkeypatch.setenv("EMOCAP_MODEL", "hf-hub:org/repo")
    app = Path(__file__).resolve().parents[1] / "examples" / "space" / "app.py"
    assert runpy.run_path(str(app), run_name="space")["demo"] == "page" and built == ["hf-hub:org/repo"]
