"""Linear probe / few-shot, soft-label and per-group metrics, `emocap eval build`, explanations, eval CLI flags."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from emocap import ZeroShotClassifier
from emocap.eval import cli as eval_cli
from emocap.eval.tables import load_results, model_index, update_model_card, write_tables
from emocap.eval.explain import explain, region_sentences
from emocap.metrics import group_metrics, reliability_bins, soft_label_metrics
from emocap.eval.probe import evaluate_probe, few_shot_indices, fit_probe

COLOURS = {"happy": (230, 40, 40), "sad": (40, 40, 230), "angry": (40, 200, 40)}


@pytest.fixture
def split_folders(tmp_path):
    """root/{train,test}/<class>/*.png: solid colours with noise, easy for a probe on any reasonable features."""
    rng = np.random.RandomState(1)
    root = tmp_path / "faces"
    for split, n in (("train", 8), ("test", 4)):
        for cls, colour in COLOURS.items():
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                arr = np.clip(np.array(colour) + rng.randint(-20, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(root / split / cls / f"{i}.png")
    return root


def test_soft_label_metrics_by_hand():
    soft = np.array([[0.6, 0.4, 0.0], [0.0, 0.5, 0.5], [np.nan, np.nan, np.nan]])
    probs = np.array([[0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]])
    m = soft_label_metrics(soft, probs)
    assert m["soft_n"] == 2  # the row without votes is ignored
    assert m["soft_accuracy"] == pytest.approx((0.4 + 0.5) / 2)
    assert m["soft_top1"] == pytest.approx(0.5)  # row 2's prediction ties the most-voted classes
    kl0 = 0.6 * np.log(0.6 / 0.2) + 0.4 * np.log(0.4 / 0.7)
    kl1 = 0.5 * np.log(0.5 / 0.1) + 0.5 * np.log(0.5 / 0.8)
    assert m["soft_kl"] == pytest.approx((kl0 + kl1) / 2, rel=1e-6)
    assert 0 < m["soft_js"] < np.log(2)


def test_group_metrics_and_reliability_bins():
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3]])
    g = group_metrics(y, probs, ["f", "f", "m", None], ["a", "b"])
    assert g == {"f": {"n": 2, "war": 0.5, "uar": 0.5, "macro_f1": pytest.approx(2 / 3)},  # class a only: P 1, R 1/2
                 "m": {"n": 1, "war": 1.0, "uar": 1.0, "macro_f1": 1.0}}
    rel = reliability_bins(y, probs, n_bins=5)
    assert sum(rel["count"]) == 4 and rel["count"][4] == 1 and rel["accuracy"][4] == 1.0  # 0.9 -> last bin


def test_fit_probe_chooses_C_on_validation_and_few_shot_draws_k_per_class():
    rng = np.random.RandomState(0)
    centers = np.eye(3) * 4
    y = np.repeat([0, 1, 2], 30)
    x = centers[y] + rng.randn(90, 3)
    model, C, scores = fit_probe(x[:60], y[:60] if False else y[::1][:60], x[60:], y[60:])
    assert set(scores) == {0.01, 0.1, 1.0, 10.0, 100.0} and C in scores
    idx = few_shot_indices(y, 4, seed=3)
    assert np.bincount(y[idx]).tolist() == [4, 4, 4]
    assert not np.array_equal(idx, few_shot_indices(y, 4, seed=4))
    with pytest.raises(ValueError, match="two classes"):
        fit_probe(x[:5], np.zeros(5, int))


def test_linear_probe_and_few_shot_end_to_end(tiny_model, split_folders, tmp_path):
    clf = ZeroShotClassifier(tiny_model, labels=["happiness", "sadness", "anger"], device="cpu")
    rec = evaluate_probe(clf, "imagefolder", split_folders, protocol="linear-probe", split="test",
                         train_split="train", progress=False)
    assert rec["protocol"] == "linear-probe" and rec["n"] == 12 and rec["probe"]["n_train"] == 24
    assert rec["war"] >= 0.9  # colours are linearly separable in any non-degenerate feature space
    assert rec["prompt_hash"] is None
    few = evaluate_probe(clf, "imagefolder", split_folders, protocol="few-shot", shots=2, seeds=(0, 1),
                         split="test", train_split="train", progress=False)
    assert few["protocol"] == "few-shot-2" and few["probe"]["n_fit"] == [6, 6]
    assert len(few["per_seed"]) == 2 and "war_std" in few
    assert np.sum(few["confusion_matrix"]) == 24  # summed over the two seeds
    with pytest.raises(ValueError, match="no train split"):
        evaluate_probe(clf, "imagefolder", split_folders / "test", progress=False)


def _result(model, bench, war, uar, **extra):
    rec = {"model_id": model, "benchmark": bench, "split": "test", "protocol": "zeroshot", "war": war, "uar": uar,
           "macro_f1": uar, "ece": 0.1, "labels": ["a", "b"], "confusion_matrix": [[3, 1], [0, 4]],
           "reliability": reliability_bins(np.array([0, 1]), np.array([[0.8, 0.2], [0.3, 0.7]])),
           "prompt_set": "p", "prompt_hash": "abc", "timestamp": "2026-01-01T00:00:00+00:00"}
    rec.update(extra)
    return rec


def test_build_tables_plots_and_model_card(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "a.json").write_text(json.dumps(_result("m1", "ferplus", 0.8, 0.6)))
    (results / "a_old.json").write_text(json.dumps(_result("m1", "ferplus", 0.1, 0.1, timestamp="2025-01-01")))
    (results / "b.json").write_text(json.dumps(_result("m1", "rafdb", 0.5, 0.4, view="upper-face")))
    (results / "c.json").write_text(json.dumps(_result("m2", "ferplus", 0.7, 0.5, limit=10)))
    (results / "bad.json").write_text("{not json")
    records, problems = load_results(results)
    assert len(records) == 2 and [p[0] for p in problems] == [str(results / "bad.json")]
    assert {r["war"] for r in records} == {0.8, 0.5}  # newest rerun kept, --limit run left out
    paths = write_tables(records, tmp_path / "tables")
    md = (tmp_path / "tables" / "table.md").read_text()
    assert "| m1 · prompts p abc | 80.00 | – | 80.00 |" in md and "| m1 · upper-face · prompts p abc | – |" in md
    assert "*CLIP ViT-B/16* (published)" in md and "45.14" in md  # FER+ WAR reference row
    assert (tmp_path / "tables" / "table_uar.csv").read_text().splitlines()[0] == "model,ferplus/test,rafdb/test,mean"
    card = tmp_path / "card.md"
    card.write_text("---\nlicense: other\n---\n\n# card body\n")
    update_model_card(card, records, "m1")
    text = card.read_text()
    assert text.startswith("---\nlicense: other\nmodel-index:") and text.endswith("# card body\n")
    assert model_index(records, "m1")[0]["results"][0]["metrics"][0] == {"type": "accuracy", "name": "WAR",
                                                                          "value": 80.0}
    parser = argparse.ArgumentParser(prog="emocap")
    eval_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "build", str(results), "--out", str(tmp_path / "t2")])
    assert args.func(args) == 0
    assert len(list((tmp_path / "t2" / "plots").glob("*.png"))) == 4
    assert "bad.json" in capsys.readouterr().err
    args = parser.parse_args(["eval", "build", str(tmp_path / "nowhere")])
    assert args.func(args) == 2


def test_explain_ranks_region_sentences_and_descriptions(tiny_model):
    clf = ZeroShotClassifier(tiny_model, labels=["happiness", "sadness"], prompts="basic8", device="cpu")
    out = explain(clf, Image.new("RGB", (40, 40), (120, 90, 60)), top_k=4)
    sims = [r["similarity"] for r in out["regions"]]
    assert len(sims) == 4 and sims == sorted(sims, reverse=True)
    assert {r["sentence"] for r in out["regions"]} <= {b["sentence"] for b in region_sentences()}
    assert {d["label"] for d in out["descriptions"]} <= {"happiness", "sadness"} and out["descriptions"]
    assert sum(p["score"] for p in out["predictions"]) == pytest.approx(1.0, abs=1e-4)


def test_cli_skip_existing_and_root_count(split_folders, tmp_path, tiny_model_dir, capsys):
    parser = argparse.ArgumentParser(prog="emocap")
    eval_cli.add_parser(parser.add_subparsers(dest="command"))
    base = ["eval", "--benchmark", "imagefolder", "--root", str(split_folders / "test"), "--model",
            str(tiny_model_dir), "--out", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"),
            "--no-progress"]
    args = parser.parse_args(base)
    assert args.func(args) == 0
    args = parser.parse_args(base + ["--skip-existing"])
    assert args.func(args) == 0
    assert "result exists, skipped" in capsys.readouterr().out
    assert len(list((tmp_path / "res").glob("*.json"))) == 1
    args = parser.parse_args(base + ["--view", "histeq"])
    assert args.func(args) == 0 and len(list((tmp_path / "res").glob("*histeq*.json"))) == 1
    args = parser.parse_args(["eval", "--benchmark", "imagefolder", "ferplus", "--root", "a", "b", "c"])
    assert args.func(args) == 2 and "one --root per --benchmark" in capsys.readouterr().err


def test_csv_group_annotations_give_per_group_metrics(tmp_path):
    from emocap.eval.zeroshot import evaluate

    class ByColour:  # happiness for red images, sadness otherwise
        labels = ["happiness", "sadness"]
        model_id = "colour-rule"
        prompt_set = None

        def predict_proba(self, images, batch_size=64):
            red = np.array([np.asarray(im)[..., 0].mean() > 128 for im in images], dtype=float)
            return np.stack([red, 1 - red], axis=1)

    rows = ["path,label,gender"]
    for i, (colour, label, gender) in enumerate([((230, 0, 0), "happy", "f"), ((0, 0, 230), "sad", "f"),
                                                  ((230, 0, 0), "sad", "m"), ((0, 0, 230), "sad", "")]):
        Image.new("RGB", (8, 8), colour).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,{label},{gender}")
    (tmp_path / "test.csv").write_text("\n".join(rows) + "\n")
    from emocap.eval.registry import get_benchmark

    data = get_benchmark("csv").load(tmp_path, "test", labels="happiness,sadness", group_columns="gender")
    rec = evaluate(ByColour(), "csv", tmp_path, data=data, progress=False)
    assert rec["war"] == 0.75
    assert rec["groups"]["gender"] == {"f": {"n": 2, "war": 1.0, "uar": 1.0, "macro_f1": 1.0},
                                       "m": {"n": 1, "war": 0.0, "uar": 0.0, "macro_f1": 0.0}}
    with pytest.raises(ValueError, match="lacks the column"):
        get_benchmark("csv").load(tmp_path, "test", group_columns="age")


def test_cli_probe_reads_the_test_split_once_and_keeps_class_names(split_folders, tmp_path, tiny_model_dir,
                                                                  monkeypatch):
    """Issue 15: a probe run loads each split once (the test split is the CLI's own) and records --class-names."""
    import dataclasses

    from emocap.eval import registry as benchmarks

    real = benchmarks.BENCHMARKS["imagefolder"]
    loaded = []

    def counting(root, split, **options):
        loaded.append(split)
        return real.loader_function()(root, split, **options)

    monkeypatch.setitem(benchmarks.BENCHMARKS, "imagefolder", dataclasses.replace(real, loader=counting))
    parser = argparse.ArgumentParser(prog="emocap")
    eval_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "--benchmark", "imagefolder", "--root", str(split_folders), "--split", "test",
                              "--train-split", "train", "--protocol", "linear-probe", "--model", str(tiny_model_dir),
                              "--class-names", "rage", "joy", "grief", "--out", str(tmp_path / "res"),
                              "--no-cache", "--no-progress"])
    assert args.func(args) == 0
    assert sorted(loaded) == ["test", "train"]
    (path,) = (tmp_path / "res").glob("*.json")
    record = json.loads(path.read_text())
    assert record["labels"] == ["rage", "joy", "grief"] and set(record["per_class_recall"]) == {"rage", "joy", "grief"}
    assert record["benchmark_info"]["class_names_renamed_from"] == ["anger", "happiness", "sadness"]
    assert "__names-" in path.name
