"""Tests for emocap.taxonomy and emocap/data/labels.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import emocap
from emocap import taxonomy
from emocap.taxonomy import UnknownLabelError

CANONICAL8 = {"neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"}
LABELS_JSON = Path(emocap.__file__).parent / "data" / "labels.json"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("happy", "happiness"), ("happiness", "happiness"), ("joy", "happiness"),
        ("angry", "anger"), ("anger", "anger"), ("rage", "anger"), ("furious", "anger"),
        ("sad", "sadness"), ("sorrow", "sadness"),
        ("surprised", "surprise"), ("astonished", "surprise"),
        ("afraid", "fear"), ("scared", "fear"), ("fearful", "fear"),
        ("disgusted", "disgust"), ("contemptuous", "contempt"), ("scorn", "contempt"),
        ("calm", "neutral"), ("neutral", "neutral"),
    ],
)
def test_synonyms_map_to_canonical(name, expected):
    assert taxonomy.canonical(name) == expected
    assert taxonomy.canonical_or_none(name) == expected


@pytest.mark.parametrize(
    "name, expected",
    [
        ("HAPPY", "happiness"), ("  Joy  ", "happiness"), ("Anger", "anger"),
        ("no_emotion", "neutral"), ("no-emotion", "neutral"), ("No  Emotion", "neutral"),
        ("grossed_out", "disgust"), ("Let-Down", "disappointment"),
    ],
)
def test_case_whitespace_and_separators(name, expected):
    assert taxonomy.canonical(name) == expected


@pytest.mark.parametrize("code", ["SU", "af", "HA", "NE"])
def test_native_letter_codes_need_a_benchmark_map(code):
    # codes are benchmark data, not synonyms ("AN" would otherwise swallow the English word "an")
    assert taxonomy.canonical_or_none(code) is None
    maps = {**taxonomy.benchmark_label_map("jaffe"), **taxonomy.benchmark_label_map("kdef")}
    assert taxonomy.map_labels([code.upper()], maps)[0] in taxonomy.BASIC7


def test_numeric_codes_are_not_global_synonyms():
    # "3" means happiness in FER2013 but surprise in AffectNet: it must not resolve without a benchmark map
    assert taxonomy.canonical_or_none("3") is None


@pytest.mark.parametrize("bad", ["quux", "happy-ish", "", "4"])
def test_unknown_label_raises_with_name(bad):
    with pytest.raises(UnknownLabelError) as info:
        taxonomy.canonical(bad)
    assert repr(bad) in str(info.value)
    assert isinstance(info.value, KeyError)
    assert taxonomy.canonical_or_none(bad) is None


def test_label_sets():
    basic7 = taxonomy.label_set("basic7")
    basic8 = taxonomy.label_set("basic8")
    assert len(basic7) == 7 and len(set(basic7)) == 7
    assert basic8 == basic7 + ["contempt"]
    assert set(basic8) == CANONICAL8
    assert taxonomy.BASIC7 == basic7 and taxonomy.BASIC8 == basic8
    # returned lists are copies: mutating one does not change the next call
    basic7.append("x")
    assert len(taxonomy.label_set("basic7")) == 7


def test_label_set_custom_and_errors():
    assert taxonomy.label_set(["joy", "rage", "quux"]) == ["joy", "rage", "quux"]
    assert taxonomy.label_set(("a", "b")) == ["a", "b"]
    with pytest.raises(KeyError, match="nope"):
        taxonomy.label_set("nope")
    with pytest.raises(ValueError):
        taxonomy.label_set([])
    with pytest.raises(ValueError, match="duplicate"):
        taxonomy.label_set(["a", "a"])


def test_all_bundled_label_sets_are_canonical():
    data = json.loads(LABELS_JSON.read_text(encoding="utf-8"))
    for name, labels in data["label_sets"].items():
        assert [taxonomy.canonical(x) for x in labels] == labels, name


def test_every_benchmark_map_maps_to_canonical_names():
    data = json.loads(LABELS_JSON.read_text(encoding="utf-8"))
    emotions = set(data["emotions"])
    assert set(taxonomy.benchmark_names()) == set(data["benchmarks"])
    for bench in taxonomy.benchmark_names():
        mapping = taxonomy.benchmark_label_map(bench)
        assert mapping, bench
        for native, canon in mapping.items():
            assert canon in emotions, (bench, native, canon)
            assert taxonomy.canonical(canon) == canon
        # a native map names each emotion at most once
        assert len(set(mapping.values())) == len(mapping), bench


@pytest.mark.parametrize(
    "bench, native, expected",
    [
        ("fer2013", "0", "anger"), ("fer2013", "3", "happiness"), ("fer2013", "6", "neutral"),
        ("rafdb", "1", "surprise"), ("rafdb", "4", "happiness"), ("rafdb", "7", "neutral"),
        ("affectnet", "0", "neutral"), ("affectnet", "7", "contempt"),
        ("ckplus", "2", "contempt"), ("kdef", "AF", "fear"), ("jaffe", "SU", "surprise"),
    ],
)
def test_benchmark_label_values(bench, native, expected):
    assert taxonomy.benchmark_label_map(bench)[native] == expected


def test_benchmark_sizes():
    assert len(taxonomy.benchmark_label_map("fer2013")) == 7
    assert len(taxonomy.benchmark_label_map("rafdb")) == 7
    assert len(taxonomy.benchmark_label_map("affectnet")) == 8
    assert set(taxonomy.benchmark_label_map("ferplus").values()) == CANONICAL8


def test_unknown_benchmark():
    with pytest.raises(KeyError, match="nosuchbench"):
        taxonomy.benchmark_label_map("nosuchbench")


def test_map_labels():
    fer = taxonomy.benchmark_label_map("fer2013")
    assert taxonomy.map_labels(["0", "3", 6], fer) == ["anger", "happiness", "neutral"]
    # names not in the mapping go through the synonym table
    assert taxonomy.map_labels(["joy", "Rage"], fer) == ["happiness", "anger"]
    assert taxonomy.map_labels(["happy", "SAD"]) == ["happiness", "sadness"]
    assert taxonomy.map_labels([]) == []
    with pytest.raises(UnknownLabelError, match="'9'"):
        taxonomy.map_labels(["9"], fer)


def test_synonyms_and_display_name():
    syn = taxonomy.synonyms("joy")
    assert syn[0] == "happiness" and "happy" in syn
    assert all(len(s) > 2 for s in syn)
    assert taxonomy.display_name("rage") == "angry"
    assert taxonomy.display_name("rage", form="noun") == "anger"
    with pytest.raises(ValueError):
        taxonomy.display_name("rage", form="verb")


def test_no_synonym_maps_to_two_emotions():
    data = json.loads(LABELS_JSON.read_text(encoding="utf-8"))
    seen = {}
    for canon, entry in data["emotions"].items():
        for s in [canon] + entry["synonyms"]:
            key = " ".join(s.lower().replace("_", " ").replace("-", " ").split())
            assert seen.setdefault(key, canon) == canon, f"{s!r} is listed under {seen[key]} and {canon}"
