"""FER+ compound benchmark (`ferplus-compound`, eval/compound.py): the two-emotion vote-split rule and its runs."""

from __future__ import annotations

import argparse
import json

import pytest

from emocap.eval import cli as eval_cli
from emocap.eval.loaders.compound import compound_pair, pair_name
from emocap.eval.registry import get_benchmark

#            neu hap sur sad ang dis fea con unk NF
RULE_CASES = [
    ((0, 5, 4, 0, 0, 0, 0, 0, 1, 0), (1, 2)),  # 9 of 9 emotion votes on happiness + surprise
    ((0, 4, 3, 0, 0, 0, 0, 0, 3, 0), (1, 2)),  # unknown votes are not emotion votes: 7 of 7
    ((0, 0, 0, 0, 0, 0, 0, 0, 7, 3), None),    # no emotion vote at all
    ((0, 7, 2, 1, 0, 0, 0, 0, 0, 0), None),    # the second emotion has only 2 votes
    ((2, 4, 3, 1, 0, 0, 0, 0, 0, 0), (1, 2)),  # exactly 70% (7 of 10) is enough
    ((2, 4, 3, 1, 1, 0, 0, 0, 0, 0), None),    # 7 of 11 emotion votes: under 70%
    ((3, 4, 0, 3, 0, 0, 0, 0, 0, 0), None),    # second place shared by neutral and sadness: no single pair
    ((0, 0, 0, 3, 3, 0, 0, 0, 0, 4), (3, 4)),  # a tie for first is fine (unordered pair); NF ignored
    ((0, 3, 0, 0, 0, 0, 0, 6, 1, 0), (1, 7)),  # indices in column order whatever the vote order
    ((0, 0, 0, 0, 0, 5, 4, 1, 0, 0), (5, 6)),  # 9 of 10
]


@pytest.mark.parametrize("votes, pair", RULE_CASES)
def test_compound_pair_rule(votes, pair):
    assert compound_pair(votes) == pair


def test_compound_pair_thresholds_and_names():
    assert compound_pair((0, 5, 2, 0, 0, 0, 0, 0, 0, 0), min_votes=2) == (1, 2)
    assert compound_pair((2, 4, 3, 1, 0, 0, 0, 0, 0, 0), min_share=0.71) is None
    assert pair_name((1, 2)) == "happy and surprised"
    assert pair_name((3, 4)) == "sad and angry"
    assert pair_name((0, 7)) == "neutral and contemptuous"
    assert pair_name((1, 2), "{b} but {a}") == "surprised but happy"


def _row(i, votes):
    return f'fer{i:07d}.png,"(0, 0, 48, 48)",' + ",".join(str(v) for v in votes)


HAPPY_SURPRISED = (0, 5, 4, 0, 0, 0, 0, 0, 1, 0)
SAD_ANGRY = (0, 0, 0, 5, 4, 0, 0, 0, 0, 0)
NEUTRAL_CONTEMPT = (6, 0, 0, 0, 0, 0, 0, 4, 0, 0)
CLEAR = (0, 10, 0, 0, 0, 0, 0, 0, 0, 0)
NO_PAIR = (0, 7, 2, 1, 0, 0, 0, 0, 0, 0)


@pytest.fixture
def compound_root(ferplus_writer, tmp_path):
    """FER2013Test with 3 happy+surprised, 2 sad+angry, 1 neutral+contempt and 2 images that are not splits."""
    votes = [HAPPY_SURPRISED, SAD_ANGRY, HAPPY_SURPRISED, CLEAR, NEUTRAL_CONTEMPT, SAD_ANGRY, HAPPY_SURPRISED,
             NO_PAIR]
    ferplus_writer(rows=[_row(i, v) for i, v in enumerate(votes)] + ["broken row"])
    return tmp_path


def test_loader_keeps_pairs_with_enough_images(compound_root):
    bench = get_benchmark("ferplus-compound")
    data = bench.load(compound_root, "test", min_images="2")  # CLI options arrive as strings
    try:
        assert data.classes == ["happy and surprised", "sad and angry"]  # column order of the pairs
        assert [s.label for s in data.samples] == [0, 1, 0, 1, 0]
        assert [s.source.rsplit("/", 1)[1] for s in data.samples] == [
            "fer0000000.png", "fer0000001.png", "fer0000002.png", "fer0000005.png", "fer0000006.png"]
        assert data.info["pairs"] == {"happy and surprised": 3, "sad and angry": 2}
        assert data.info["pairs_dropped"] == {"neutral and contemptuous": 1}
        assert data.info["n_label_rows"] == 8 and data.info["n_excluded_by_protocol"] == 3
        assert data.info["rule"] == {"min_votes": 3, "min_share": 0.7, "min_images": 2, "phrase": "{a} and {b}"}
        assert len(data.problems) == 1  # the malformed row
        assert data.samples[0].load().size == (48, 48)
    finally:
        data.close()
    data = bench.load(compound_root, "test", min_images="3", phrase="{a} with {b}")
    assert data.classes == ["happy with surprised"] and len(data.samples) == 3
    data.close()
    with pytest.raises(ValueError, match="no emotion pair"):
        bench.load(compound_root, "test")  # the default 10 images per pair: none here
    with pytest.raises(ValueError, match="phrase"):
        bench.load(compound_root, "test", phrase="{a} only")


def test_cli_compound_run_on_the_tiny_model(compound_root, tiny_model_dir, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="emocap")
    eval_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "--benchmark", "ferplus-compound", "--root", str(compound_root), "--model",
                              str(tiny_model_dir), "--out", str(tmp_path / "res"), "--cache-dir",
                              str(tmp_path / "cache"), "--no-progress", "--option", "min_images=2"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    (path,) = (tmp_path / "res").glob("*.json")
    rec = json.loads(path.read_text())
    assert rec["benchmark"] == "ferplus-compound" and rec["labels"] == ["happy and surprised", "sad and angry"]
    assert rec["n"] == 5 and rec["per_class_support"] == {"happy and surprised": 3, "sad and angry": 2}
    assert rec["chance"] == {"war": 0.5, "uar": 0.5, "majority_class_war": pytest.approx(0.6)}
    assert rec["benchmark_info"]["options"] == {"min_images": "2"}
    assert "chance       UAR 50.00% (1/2)" in text and "happy and surprised" in text and "n     3" in text


def test_probe_refuses_splits_with_different_pairs(ferplus_writer, tmp_path, tiny_model_dir):
    from emocap import ZeroShotClassifier
    from emocap.eval.probe import evaluate_probe

    ferplus_writer(rows=[_row(i, v) for i, v in enumerate([HAPPY_SURPRISED, SAD_ANGRY])])
    ferplus_writer(rows=[_row(i, v) for i, v in enumerate([HAPPY_SURPRISED, HAPPY_SURPRISED])],
                   split_folder="FER2013Train")
    clf = ZeroShotClassifier.from_pretrained(str(tiny_model_dir))
    with pytest.raises(ValueError, match="same classes"):
        evaluate_probe(clf, "ferplus-compound", tmp_path, val_split="", progress=False,
                       options={"min_images": "1"})
