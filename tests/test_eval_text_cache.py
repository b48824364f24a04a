"""`emocap eval` re-scoring from cached image and text features without loading the model (eval/text_cache.py)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest

from emocap.eval import cli as eval_cli
from emocap.eval.text_cache import CachedScorer


@pytest.fixture
def faces(tmp_path):
    from conftest import write_random_face_folder

    return write_random_face_folder(tmp_path / "faces", seed=3)


def _args(faces, model_dir, tmp_path, *extra, out="res"):
    """Arguments of an `emocap eval` run writing results to tmp_path/<out>, with the cache in tmp_path/cache."""
    parser = argparse.ArgumentParser(prog="emocap")
    eval_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(
        ["eval", "--benchmark", "imagefolder", "--root", str(faces), "--model", str(model_dir), "--out",
         str(tmp_path / out), "--cache-dir", str(tmp_path / "cache"), "--no-progress", *extra])


def _records(tmp_path, out="res"):
    return [json.loads(p.read_text()) for p in sorted((tmp_path / out).glob("*.json"))]


def test_second_run_scores_from_the_caches_without_the_model(faces, tmp_path, tiny_model_dir, monkeypatch, capsys):
    args = _args(faces, tiny_model_dir, tmp_path)
    assert args.func(args) == 0
    first = _records(tmp_path)[0]
    assert len(list((tmp_path / "cache").glob("text-*.npz"))) == 1

    def no_model(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(eval_cli, "build_classifier", no_model)
    args = _args(faces, tiny_model_dir, tmp_path, out="again")
    assert args.func(args) == 0
    assert "model not loaded" in capsys.readouterr().out
    again = _records(tmp_path, "again")[0]
    assert again["text_features_from_cache"] and again["features_from_cache"]
    for key in ("confusion_matrix", "model_id", "prompt_set", "prompt_hash", "labels", "n"):
        assert again[key] == first[key], key
    assert again["war"] == first["war"] and again["uar"] == first["uar"]
    assert again["ece"] == pytest.approx(first["ece"], abs=1e-6)
    # --skip-existing finds the first run's record from the cached scorer's header
    args = _args(faces, tiny_model_dir, tmp_path, "--skip-existing")
    assert args.func(args) == 0 and "result exists, skipped" in capsys.readouterr().out


def test_a_copied_model_scored_from_the_cache_keeps_its_own_id(faces, tmp_path, tiny_model_dir, capsys):
    import shutil

    args = _args(faces, tiny_model_dir, tmp_path)
    assert args.func(args) == 0
    copy = tmp_path / "copy_of_model"
    shutil.copytree(tiny_model_dir, copy)  # same files: the same fingerprint, so both caches hit
    args = _args(faces, copy, tmp_path, out="copy")
    assert args.func(args) == 0
    assert "model not loaded" in capsys.readouterr().out
    (record,) = _records(tmp_path, "copy")
    assert record["model_id"] == str(copy) and record["text_features_from_cache"]
    (path,) = (tmp_path / "copy").glob("*.json")
    assert "copy_of_model" in path.name


def test_other_requests_and_bad_entries_load_the_model(faces, tmp_path, tiny_model_dir, monkeypatch):
    args = _args(faces, tiny_model_dir, tmp_path)
    assert args.func(args) == 0
    loaded = []
    real = eval_cli.build_classifier

    def counting(*a, **k):
        loaded.append(1)
        return real(*a, **k)

    monkeypatch.setattr(eval_cli, "build_classifier", counting)
    for extra in (["--no-descriptions"], ["--class-names", "joy", "rage", "grief"], ["--view", "histeq"]):
        args = _args(faces, tiny_model_dir, tmp_path, *extra, out="other")
        assert args.func(args) == 0
    assert len(loaded) == 3  # another prompt set, other names, another view: each needs the model
    for entry in (tmp_path / "cache").glob("text-*.npz"):
        entry.write_bytes(b"truncated")
    args = _args(faces, tiny_model_dir, tmp_path, out="corrupt")
    assert args.func(args) == 0 and len(loaded) == 4  # an unreadable entry is ignored, never trusted
    assert not _records(tmp_path, "corrupt")[0].get("text_features_from_cache")


def test_cached_scorer_matches_the_classifier_probabilities(tiny_model):
    from emocap import ZeroShotClassifier

    clf = ZeroShotClassifier(tiny_model, labels=["happiness", "sadness", "anger"])
    feats = np.random.RandomState(0).randn(5, clf.class_text_features().shape[1]).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    scorer = CachedScorer(clf.labels, "m", None, "fp", clf.class_text_features().numpy(),
                          float(clf.model.model.logit_scale.detach().exp()))
    np.testing.assert_allclose(scorer.probs_from_features(feats), clf.probs_from_features(feats), atol=1e-5)
    with pytest.raises(RuntimeError, match="--no-cache"):
        scorer.encode_images(["x.png"])


def test_cached_rerun_in_a_fresh_process_imports_neither_torch_nor_open_clip(faces, tmp_path, tiny_model_dir):
    args = _args(faces, tiny_model_dir, tmp_path)
    assert args.func(args) == 0
    code = (
        "import sys\n"
        "from emocap.cli import main\n"
        f"rc = main(['eval', '--benchmark', 'imagefolder', '--root', {str(faces)!r}, '--model', "
        f"{str(tiny_model_dir)!r}, '--out', {str(tmp_path / 'fresh')!r}, '--cache-dir', "
        f"{str(tmp_path / 'cache')!r}, '--no-progress'])\n"
        "assert rc == 0, rc\n"
        "print('torch' in sys.modules, 'open_clip' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "model not loaded" in out.stdout and out.stdout.strip().splitlines()[-1] == "False False"
