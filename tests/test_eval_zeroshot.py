"""emocap.eval.zeroshot and emocap.eval.cli end to end, with a fake classifier (no trained model needed)."""

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from emocap import taxonomy
from emocap.eval import cli as eval_cli
from emocap.eval.zeroshot import evaluate, result_filename, write_result
from emocap.ferplus import EMOTIONS
from emocap.prompts import PromptSet

# The fake reads the colour of the (solid) image: red -> happiness, blue -> sadness, grey -> neutral.
COLOURS = {"red": (220, 10, 10), "blue": (10, 10, 220)}


class FakeClassifier:
    """Same surface as emocap.ZeroShotClassifier, deciding by the image's mean colour."""

    def __init__(self, labels, confidence=0.7):
        self.labels = list(labels)
        self.model_id = "local-dir:/tmp/runs/fake model"
        self.prompt_set = PromptSet(("a photo of a {} face.",), name="fake-prompts")
        self.confidence = confidence
        self.calls = []

    def _decide(self, image):
        r, g, b = np.asarray(image, dtype=np.float64).reshape(-1, 3).mean(axis=0)
        if r > 2 * b and r > 2 * g:
            return "happiness"
        if b > 2 * r and b > 2 * g:
            return "sadness"
        return "neutral"

    def predict_proba(self, images, batch_size=64):
        self.calls.append(len(images))
        c = len(self.labels)
        probs = np.full((len(images), c), (1 - self.confidence) / (c - 1))
        for i, im in enumerate(images):
            assert isinstance(im, Image.Image) and im.mode == "RGB"
            canon = [taxonomy.canonical_or_none(x) for x in self.labels]
            probs[i, canon.index(self._decide(im))] = self.confidence
        return probs

    # no encode_images / probs_from_features: evaluation falls back to predict_proba (nothing cached)


def _img(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


@pytest.fixture
def faces(tmp_path):
    root = tmp_path / "faces"
    _img(root / "happy" / "a.png", COLOURS["red"])
    _img(root / "happy" / "b.png", COLOURS["red"])
    _img(root / "sad" / "c.png", COLOURS["blue"])
    _img(root / "sad" / "d.png", COLOURS["red"])  # the fake calls this one happiness: wrong
    (root / "sad" / "e.png").write_bytes(b"corrupt")
    return root


def test_evaluate_imagefolder_end_to_end(faces, tmp_path):
    clf = FakeClassifier(["happiness", "sadness", "neutral"])
    rec = evaluate(clf, "imagefolder", faces, batch_size=2, progress=False)
    assert rec["labels"] == ["happiness", "sadness"]
    assert rec["n"] == 4
    assert rec["war"] == pytest.approx(3 / 4) and rec["acc1"] == rec["war"]
    assert rec["per_class_recall"] == pytest.approx({"happiness": 1.0, "sadness": 0.5})
    assert rec["uar"] == pytest.approx(0.75) and rec["mean_per_class_recall"] == rec["uar"]
    assert rec["confusion_matrix"] == [[2, 0], [1, 1]]
    assert rec["n_skipped"] == 1 and rec["skipped"][0][0].endswith("sad/e.png")
    assert rec["protocol"] == "zeroshot" and rec["benchmark"] == "imagefolder" and rec["split"] is None
    assert rec["model_id"] == clf.model_id
    assert rec["prompt_set"] == "fake-prompts" and rec["prompt_hash"] == clf.prompt_set.hash
    assert set(rec["versions"]) >= {"emocap", "torch", "open_clip"} and rec["versions"]["emocap"]
    assert rec["timestamp"] and rec["elapsed_s"] >= 0
    # batches of 2 samples: [a, b], [c, d], [e]; the last holds only the corrupt file and makes no call
    assert clf.calls == [2, 2]
    # the extra "neutral" column was dropped: probabilities over the 2 classes are renormalised
    assert rec["ece"] == pytest.approx(abs(0.75 - 0.7 / 0.85))


def test_evaluate_matches_labels_by_name_in_any_order(faces):
    a = evaluate(FakeClassifier(["happiness", "sadness"]), "imagefolder", faces, progress=False)
    b = evaluate(FakeClassifier(["sad", "happy"]), "imagefolder", faces, progress=False)
    assert a["confusion_matrix"] == b["confusion_matrix"] == [[2, 0], [1, 1]]
    with pytest.raises(ValueError, match="sadness"):
        evaluate(FakeClassifier(["happiness", "neutral"]), "imagefolder", faces, progress=False)


def test_evaluate_with_limit_and_nothing_loadable(faces, tmp_path):
    rec = evaluate(FakeClassifier(["happiness", "sadness"]), "imagefolder", faces, limit=3, progress=False)
    assert rec["n"] == 3 and rec["limit"] == 3
    broken = tmp_path / "broken"
    for name in ("happy", "sad"):  # two classes (one is refused), every image unreadable
        (broken / name).mkdir(parents=True)
        (broken / name / "x.png").write_bytes(b"nope")
    with pytest.raises(RuntimeError, match="x.png"):
        evaluate(FakeClassifier(["happiness", "sadness"]), "imagefolder", broken, progress=False)


def test_write_result_never_overwrites(faces, tmp_path):
    clf = FakeClassifier(["happiness", "sadness"])
    rec = evaluate(clf, "imagefolder", faces, progress=False)
    out = tmp_path / "results"
    first = write_result(rec, out)
    assert first.name == result_filename(rec)
    for part in ("fake-model", "imagefolder", "zeroshot", clf.prompt_set.hash):
        assert part in first.name
    assert "/" not in first.name and ":" not in first.name
    saved = json.loads(first.read_text())
    assert saved["acc1"] == pytest.approx(0.75) and saved["mean_per_class_recall"] == pytest.approx(0.75)
    assert saved["confusion_matrix"] == rec["confusion_matrix"]
    assert saved["skipped"] == rec["skipped"]

    rec2 = dict(rec, war=0.0)
    second = write_result(rec2, out)
    third = write_result(rec2, out)
    assert len({first, second, third}) == 3
    assert json.loads(first.read_text())["war"] == pytest.approx(0.75)  # untouched
    assert json.loads(second.read_text())["war"] == 0.0
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (first, second, third))


def test_evaluate_ferplus_fixture(tmp_path):
    split = tmp_path / "FER2013Test"
    split.mkdir()
    Image.new("L", (48, 48), 120).save(split / "fer0000001.png")
    Image.new("L", (48, 48), 130).save(split / "fer0000002.png")
    (split / "fer0000003.png").write_bytes(b"broken")
    (split / "label.csv").write_text(
        'fer0000001.png,"(0, 0, 48, 48)",0,9,1,0,0,0,0,0,0,0\n'   # happiness
        'fer0000002.png,"(0, 0, 48, 48)",8,0,0,1,0,0,0,0,1,0\n'   # neutral
        'fer0000003.png,"(0, 0, 48, 48)",0,0,0,10,0,0,0,0,0,0\n'  # sadness, corrupt image
        'bad row\n'
    )
    rec = evaluate(FakeClassifier(EMOTIONS), "ferplus", tmp_path, progress=False)  # grey -> neutral
    assert rec["split"] == "test" and rec["labels"] == list(EMOTIONS)
    assert rec["n"] == 2 and rec["war"] == pytest.approx(0.5)
    assert rec["per_class_recall"]["neutral"] == 1.0 and rec["per_class_recall"]["happiness"] == 0.0
    assert rec["per_class_recall"]["fear"] is None
    assert rec["n_skipped"] == 2
    sources = sorted(s for s, _ in rec["skipped"])
    assert sources[0].endswith("fer0000003.png") and sources[1].endswith("label.csv:4")
    assert rec["benchmark_info"]["protocol"] == "majority"


# ---------------------------------------------------------------------------------------------------------- CLI

def _parser():
    parser = argparse.ArgumentParser(prog="emocap")
    eval_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser


def test_cli_requires_root(capsys):
    args = _parser().parse_args(["eval"])
    assert args.func(args) == 2 and "--root is required" in capsys.readouterr().err


def test_cli_wrong_root_is_a_clear_error(tmp_path, capsys):
    args = _parser().parse_args(["eval", "--root", str(tmp_path / "missing")])
    assert args.func is eval_cli.run and args.benchmark == ["ferplus"] and args.split is None
    assert args.func(args) == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err


def test_cli_runs_and_writes_a_result(faces, tmp_path, capsys, monkeypatch):
    built = {}

    def fake_build(args, labels):
        built["labels"] = list(labels)
        return FakeClassifier(labels)

    monkeypatch.setattr(eval_cli, "build_classifier", fake_build)
    out = tmp_path / "res"
    argv = ["eval", "--benchmark", "imagefolder", "--root", str(faces), "--out", str(out), "--no-progress",
            "--batch-size", "3"]
    args = _parser().parse_args(argv)
    assert args.func(args) == 0
    assert built["labels"] == ["happiness", "sadness"]
    text = capsys.readouterr().out
    assert "WAR" in text and "75.00%" in text and "skipped      1" in text
    files = list(out.glob("*.json"))
    assert len(files) == 1 and str(files[0]) in text

    args = _parser().parse_args(argv + ["--limit", "2"])
    assert args.func(args) == 0
    assert len(list(out.glob("*.json"))) == 2
    assert json.loads(next(out.glob("*limit2*.json")).read_text())["n"] == 2


def test_cli_unloadable_model_is_a_clear_error(faces, tmp_path, capsys, monkeypatch):
    def no_model(args, labels):
        raise eval_cli.ModelUnavailable(f"model {args.model!r} not found")

    monkeypatch.setattr(eval_cli, "build_classifier", no_model)
    args = _parser().parse_args(["eval", "--benchmark", "imagefolder", "--root", str(faces), "--model", "nope",
                                 "--out", str(tmp_path / "res")])
    assert args.func(args) == 2
    assert "'nope' not found" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()
