"""Open-vocabulary protocol (`emocap eval --vocabulary`, eval/vocabulary.py) and its bundled word lists."""

from __future__ import annotations

import argparse
import json
import re
from importlib import resources

import numpy as np
import pytest

from emocap.eval import cli as eval_cli
from emocap.eval.features import FeatureSet
from emocap.eval.vocabulary import (Vocabulary, bundled_vocabularies, load_vocabulary, round_names,
                                    vocabulary_scores)

CANONICAL8 = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]


# ------------------------------------------------------------------------------------------- the shipped lists

def _labels_json_words():
    """Every name in emocap/data/labels.json that names an emotion: canonical names, adjectives, synonyms, and the
    compound class names (read here directly, not through the code under test)."""
    data = json.loads(resources.files("emocap").joinpath("data/labels.json").read_text(encoding="utf-8"))
    words = set()
    for canon, entry in data["emotions"].items():
        words.update([canon, entry["adjective"], *entry["synonyms"]])
    for bench in data.get("compound_benchmarks", {}).values():
        words.update(bench["labels"].values())
    return {" ".join(w.lower().replace("-", " ").split()) for w in words}


def _tokens(text):
    return re.findall(r"[a-z]+", text.lower())


def test_every_bundled_list_is_well_formed_and_avoids_every_taxonomy_word():
    names = bundled_vocabularies()
    assert {"openvocab-tune", "openvocab-report", "behaviour-phrases"} <= set(names)
    forbidden = _labels_json_words()
    assert {"happy", "joy", "astonished", "contemptuous", "calm"} <= forbidden  # the check reads the real file
    single = {w for w in forbidden if " " not in w}
    multi = {w for w in forbidden if " " in w}
    for name in names:
        raw = json.loads(resources.files("emocap").joinpath(f"data/vocabularies/{name}.json").read_text("utf-8"))
        assert set(raw) == {"name", "purpose", "source", "classes"}, name
        assert raw["name"] == name and raw["purpose"] in ("tuning", "report") and raw["source"]
        assert sorted(raw["classes"]) == sorted(CANONICAL8), name
        for cls, words in raw["classes"].items():
            assert words and all(isinstance(w, str) and w.strip() for w in words), (name, cls)
            for word in words:
                tokens = _tokens(word)
                assert not set(tokens) & single, (name, cls, word)  # no emotion word, not even inside a phrase
                padded = " " + " ".join(tokens) + " "
                assert not [m for m in multi if f" {m} " in padded], (name, cls, word)
        vocab = load_vocabulary(name)
        assert vocab.words_in_taxonomy() == [] and vocab.purpose == raw["purpose"]


def test_the_lists_hold_the_agreed_words():
    tune, report, phrases = (load_vocabulary(n) for n in ("openvocab-tune", "openvocab-report", "behaviour-phrases"))
    assert tune.purpose == "tuning" and report.purpose == "report" and phrases.purpose == "report"
    assert tune.classes["contempt"] == ["derisive", "sarcastic"] and tune.classes["neutral"] == ["unemotional", "stoic"]
    assert report.classes["surprise"] == ["stunned", "astounded", "flabbergasted"]
    assert report.classes["neutral"] == ["placid", "composed", "indifferent"]
    assert all(len(w) == 2 for w in tune.classes.values()) and all(len(w) == 3 for w in report.classes.values())
    assert phrases.classes["surprise"] == ["raised eyebrows and a wide open mouth"]
    assert all(len(w) == 1 for w in phrases.classes.values())
    assert "NRC Emotion Lexicon" in report.source and report.source == tune.source
    # no word is shared between the tuning list and a report list
    tune_words = {w for ws in tune.classes.values() for w in ws}
    assert not tune_words & {w for ws in report.classes.values() for w in ws}
    # the phrase list for tuning (the word bridge's settings) is worded apart from the reported phrases
    phrases_tune = load_vocabulary("behaviour-phrases-tune")
    assert phrases_tune.purpose == "tuning" and all(len(w) == 1 for w in phrases_tune.classes.values())
    assert all(phrases_tune.classes[c] != phrases.classes[c] for c in CANONICAL8)


def test_the_exclusion_check_would_catch_a_taxonomy_word():
    vocab = load_vocabulary({"name": "bad", "classes": {"happiness": ["overjoyed", "Joyful"], "anger": ["irate"]}})
    assert vocab.words_in_taxonomy() == ["Joyful"]
    assert "joyful" in _labels_json_words()


def test_load_vocabulary_rejects_malformed_lists(tmp_path):
    with pytest.raises(ValueError, match="twice"):
        load_vocabulary({"classes": {"happiness": ["glad-ish"], "sadness": ["Glad-ish"]}})
    with pytest.raises(ValueError, match="not an emotion"):
        load_vocabulary({"classes": {"wistfulness": ["pensive"]}})
    with pytest.raises(ValueError, match="purpose"):
        load_vocabulary({"purpose": "final", "classes": {"happiness": ["overjoyed"]}})
    with pytest.raises(ValueError, match="non-empty"):
        load_vocabulary({"classes": {"happiness": []}})
    with pytest.raises(FileNotFoundError, match="openvocab-report"):
        load_vocabulary("no-such-list")
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"classes": {"happy": ["overjoyed"]}}))
    vocab = load_vocabulary(str(path))
    assert vocab.name == "mine" and vocab.classes == {"happiness": ["overjoyed"]} and vocab.path == str(path)
    # the hash follows the words only
    same = Vocabulary("other", {"happiness": ["overjoyed"]}, "report", "elsewhere")
    assert same.hash == vocab.hash != Vocabulary("x", {"happiness": ["blissful"]}).hash


# ------------------------------------------------------------------------------ rounds and per word, by hand

def _unit(deg):
    rad = np.deg2rad(deg)
    return np.array([np.cos(rad), np.sin(rad)], dtype=np.float32)


def test_rounds_and_per_word_match_a_hand_computation():
    """2-D features: each image and each name is a direction; the predicted class is the nearest name."""
    classes = ["happiness", "sadness", "anger"]
    angles = [0, 10, 120, 130, 240, 250]  # two images per class
    fs = FeatureSet(np.stack([_unit(a) for a in angles]), np.ones(6, np.int64), np.array([0, 0, 1, 1, 2, 2]),
                    classes, [f"img{i}" for i in range(6)])
    rows = {"happiness": _unit(5), "sadness": _unit(125), "anger": _unit(245),
            "h1": _unit(5), "h2": _unit(185), "s1": _unit(125), "a1": _unit(60), "a2": _unit(245)}
    vocab = Vocabulary("hand", {"happiness": ["h1", "h2"], "sadness": ["s1"], "anger": ["a1", "a2"]})
    out = vocabulary_scores(fs, classes, vocab, rows, logit_scale=50.0)

    assert out["canonical"]["war"] == 1.0 and out["canonical"]["uar"] == 1.0
    assert [r["names"] for r in out["rounds"]] == [
        {"happiness": "h1", "sadness": "s1", "anger": "a1"},
        {"happiness": "h2", "sadness": "s1", "anger": "a2"},  # sadness has one word: reused
    ]
    r1, r2 = out["rounds"]
    # round 1: a1 (60 deg) points away from the anger images: 240 deg -> sadness (125), 250 deg -> happiness (5)
    assert r1["per_class_recall"] == {"happiness": 1.0, "sadness": 1.0, "anger": 0.0}
    assert r1["war"] == pytest.approx(4 / 6) and r1["uar"] == pytest.approx(2 / 3)
    assert r1["macro_f1"] == pytest.approx((0.8 + 0.8 + 0) / 3)  # happiness, sadness: precision 2/3, recall 1
    # round 2: h2 (185 deg) points away from the happy images: 0 deg -> anger (245), 10 deg -> sadness (125)
    assert r2["per_class_recall"] == {"happiness": 0.0, "sadness": 1.0, "anger": 1.0}
    assert r2["war"] == pytest.approx(4 / 6) and r2["uar"] == pytest.approx(2 / 3)
    assert r2["macro_f1"] == pytest.approx((0 + 0.8 + 0.8) / 3)  # sadness and anger: precision 2/3, recall 1
    assert out["war"] == pytest.approx(4 / 6) and out["uar"] == pytest.approx(2 / 3)
    assert out["macro_f1"] == pytest.approx(1.6 / 3) and out["uar_std"] == pytest.approx(0.0)

    pw = out["per_word"]
    assert list(pw) == classes and list(pw["happiness"]) == ["h1", "h2"] and list(pw["sadness"]) == ["s1"]
    assert pw["happiness"]["h1"]["recall"] == 1.0 and pw["happiness"]["h1"]["uar"] == 1.0
    assert pw["happiness"]["h2"]["recall"] == 0.0 and pw["happiness"]["h2"]["uar"] == pytest.approx(2 / 3)
    assert pw["happiness"]["h2"]["war"] == pytest.approx(4 / 6)
    assert pw["happiness"]["h2"]["recall_delta"] == -1.0 and pw["happiness"]["h2"]["uar_delta"] == pytest.approx(-1 / 3)
    assert pw["sadness"]["s1"]["recall"] == 1.0 and pw["sadness"]["s1"]["uar_delta"] == 0.0
    # a1 alone: 240 deg -> sadness (125), 250 deg -> happiness (5); the other classes keep their images
    assert pw["anger"]["a1"]["recall"] == 0.0 and pw["anger"]["a1"]["uar"] == pytest.approx(2 / 3)
    assert pw["anger"]["a2"]["recall"] == 1.0 and pw["anger"]["a2"]["uar"] == 1.0
    assert out["chance"] == {"war": pytest.approx(1 / 3), "uar": pytest.approx(1 / 3),
                             "majority_class_war": pytest.approx(1 / 3)}
    assert r1["closest_pair"]["names"] == ["h1", "a1"] and r1["closest_pair"]["cosine"] == pytest.approx(
        np.cos(np.deg2rad(55)), abs=1e-4)


def test_round_names_reuse_the_last_word_and_classes_must_be_covered():
    assert round_names([["a", "b", "c"], ["d"], ["e", "f"]]) == [["a", "d", "e"], ["b", "d", "f"], ["c", "d", "f"]]
    fs = FeatureSet(np.stack([_unit(0)]), np.ones(1, np.int64), np.array([0]), ["happiness", "pain"], ["x"])
    with pytest.raises(ValueError, match="pain"):
        vocabulary_scores(fs, ["happiness", "pain"], Vocabulary("v", {"happiness": ["overjoyed"]}),
                          {"happiness": _unit(0), "pain": _unit(90), "overjoyed": _unit(0)}, 1.0)


def test_clip_frames_are_pooled_like_zero_shot():
    """A two-frame clip: the probabilities of its frames are averaged (one frame votes each way)."""
    classes = ["happiness", "sadness"]
    fs = FeatureSet(np.stack([_unit(0), _unit(100), _unit(170)]), np.array([2, 1]), np.array([0, 1]), classes,
                    ["clip", "still"])
    rows = {"happiness": _unit(0), "sadness": _unit(180), "overjoyed": _unit(0), "gloomy": _unit(180)}
    out = vocabulary_scores(fs, classes, Vocabulary("v", {"happiness": ["overjoyed"], "sadness": ["gloomy"]}),
                            rows, logit_scale=10.0)
    # clip: frame 0 -> happiness with p ~ 1, frame 100 deg -> sadness with p = sigmoid(10 * 2 cos 80) ~ 0.97:
    # the mean favours happiness; the still at 170 deg is sadness
    assert out["rounds"][0]["per_class_recall"] == {"happiness": 1.0, "sadness": 1.0}


# ---------------------------------------------------------------------------------- end to end, tiny model

@pytest.fixture
def faces(tmp_path):
    from conftest import write_random_face_folder

    return write_random_face_folder(tmp_path / "faces", seed=7)


def _args(faces, model_dir, tmp_path, *extra):
    parser = argparse.ArgumentParser(prog="emocap")
    eval_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(
        ["eval", "--benchmark", "imagefolder", "--root", str(faces), "--model", str(model_dir), "--out",
         str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"), "--no-progress", *extra])


def test_cli_vocabulary_run_on_the_tiny_model(faces, tmp_path, tiny_model_dir, capsys):
    from emocap import ZeroShotClassifier
    from emocap.metrics import classification_metrics

    # a plain zero-shot run first: the vocabulary run must reuse its cached image features
    args = _args(faces, tiny_model_dir, tmp_path)
    assert args.func(args) == 0
    plain = json.loads(next((tmp_path / "res").glob("*.json")).read_text())
    capsys.readouterr()

    args = _args(faces, tiny_model_dir, tmp_path, "--vocabulary", "openvocab-report")
    assert args.func(args) == 0
    text = capsys.readouterr().out
    files = sorted((tmp_path / "res").glob("*vocab-openvocab-report*.json"))
    assert len(files) == 1 and str(files[0]) in text
    rec = json.loads(files[0].read_text())
    vocab = load_vocabulary("openvocab-report")
    assert rec["protocol"] == "open-vocabulary" and rec["features_from_cache"]
    assert rec["vocabulary"]["name"] == "openvocab-report" and rec["vocabulary"]["hash"] == vocab.hash
    assert rec["vocabulary"]["purpose"] == "report" and rec["word_prompts"] == "templates"
    from emocap.word_bridge import bridge_identity
    assert rec["word_bridge"] == bridge_identity()  # the list's words are outside the taxonomy: bridged
    assert rec["labels"] == ["anger", "happiness", "sadness"] and rec["n"] == 12  # sorted folder names
    assert len(rec["rounds"]) == 3 and rec["chance"]["uar"] == pytest.approx(1 / 3)
    assert {c: list(w) for c, w in rec["per_word"].items()} == {c: vocab.classes[c] for c in rec["labels"]}
    assert rec["war"] == pytest.approx(np.mean([r["war"] for r in rec["rounds"]]))
    assert rec["uar"] == pytest.approx(np.mean([r["uar"] for r in rec["rounds"]]))
    # the canonical reference is exactly the plain zero-shot run
    assert rec["canonical"]["war"] == plain["war"] and rec["canonical"]["uar"] == plain["uar"]
    assert rec["canonical"]["per_class_recall"] == plain["per_class_recall"]
    for word in ("round 1", "round 3", "mean", "per word", "forlorn", "chance"):
        assert word in text, word

    # every round equals a classifier built on that round's words with the templates only (no descriptions)
    clf = ZeroShotClassifier.from_pretrained(str(tiny_model_dir), labels=rec["labels"])
    files = [p for folder in ("angry", "happy", "sad") for p in sorted((faces / folder).glob("*.png"))]
    feats = clf.encode_images(files)
    y = np.repeat([0, 1, 2], 4)
    templates = clf.prompt_set.without_descriptions()
    assert clf.prompt_set.descriptions  # the model's own prompt set has descriptions for the canonical names
    for r in rec["rounds"]:
        names = [r["names"][c] for c in rec["labels"]]
        probs = clf.probs_from_features(feats, names, templates)
        m = classification_metrics(y, probs, rec["labels"], top_k=())
        assert (r["war"], r["uar"]) == pytest.approx((m["war"], m["uar"])), r["round"]
    # per word: the other classes keep their descriptions (scored as in the plain run), only the word has none
    canon_rows = clf.class_text_features(rec["labels"]).numpy()
    for c, cls in enumerate(rec["labels"]):
        for word, entry in rec["per_word"][cls].items():
            text_rows = canon_rows.copy()
            text_rows[c] = clf.class_text_features([word], templates).numpy()[0]
            logits = clf.model.model.logit_scale.exp().item() * feats @ text_rows.T
            m = classification_metrics(y, logits.argmax(axis=1), rec["labels"], top_k=())
            assert entry["uar"] == pytest.approx(m["uar"]) and entry["recall"] == m["per_class_recall"][cls]
    # with descriptions the canonical rows differ from the templates-only rows (so the check above can fail)
    assert not np.allclose(canon_rows, clf.class_text_features(rec["labels"], templates).numpy())


def test_cli_vocabulary_errors_and_tuning_note(faces, tmp_path, tiny_model_dir, capsys):
    args = _args(faces, tiny_model_dir, tmp_path, "--vocabulary", "no-such-list")
    assert args.func(args) == 2 and "no-such-list" in capsys.readouterr().err
    args = _args(faces, tiny_model_dir, tmp_path, "--vocabulary", "openvocab-tune", "--protocol", "linear-probe")
    assert args.func(args) == 2 and "--protocol linear-probe" in capsys.readouterr().err
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"classes": {"happiness": ["overjoyed"], "sadness": ["gloomy"]}}))
    args = _args(faces, tiny_model_dir, tmp_path, "--vocabulary", str(partial))
    assert args.func(args) == 2 and "anger" in capsys.readouterr().err  # no words for a benchmark class

    args = _args(faces, tiny_model_dir, tmp_path, "--vocabulary", "openvocab-tune")
    assert args.func(args) == 0
    assert "tuning list: for model selection only" in capsys.readouterr().out
    (path,) = (tmp_path / "res").glob("*vocab-openvocab-tune*.json")
    rec = json.loads(path.read_text())
    assert rec["vocabulary"]["purpose"] == "tuning" and len(rec["rounds"]) == 2
    args = _args(faces, tiny_model_dir, tmp_path, "--vocabulary", "openvocab-tune", "--skip-existing")
    assert args.func(args) == 0 and "result exists, skipped" in capsys.readouterr().out

    # build: tuning runs never reach the tables; report runs get their own row per list
    from emocap.eval.tables import load_results

    for name in ("behaviour-phrases", "openvocab-report"):
        args = _args(faces, tiny_model_dir, tmp_path, "--vocabulary", name)
        assert args.func(args) == 0
    records, problems = load_results(tmp_path / "res")
    assert not problems
    assert sorted(r["vocabulary"]["name"] for r in records) == ["behaviour-phrases", "openvocab-report"]
    parser = argparse.ArgumentParser(prog="emocap")
    eval_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "build", str(tmp_path / "res"), "--out", str(tmp_path / "tables")])
    assert args.func(args) == 0
    table = (tmp_path / "tables" / "table.md").read_text()
    assert "vocabulary behaviour-phrases" in table and "vocabulary openvocab-report" in table
    assert "openvocab-tune" not in table
    assert not list((tmp_path / "tables" / "plots").glob("*.png"))  # no confusion matrix: one per round instead
