"""WordNet's emotion links (emocap/word_lexicon.py) and how the word bridge uses them."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from emocap import taxonomy
from emocap import word_bridge as wb
from emocap import word_lexicon as wl


def _shipped() -> dict:
    return json.loads(resources.files("emocap").joinpath("data", wl.TABLE_NAME).read_text(encoding="utf-8"))


def test_the_shipped_table_was_built_from_todays_taxonomy_and_settings():
    table = _shipped()
    assert table["anchors_hash"] == wl.anchors_hash(), \
        "labels.json changed since the WordNet table was built: rerun `python -m emocap.word_lexicon` (docs/labels.md)"
    assert table["settings"] == {"max_depth": wl.MAX_DEPTH, "decay": wl.DECAY, "off_topics": sorted(wl.OFF_TOPICS)}
    emotions = set(taxonomy.names_by_emotion())
    assert len(table["words"]) > 3000
    for word, (depth, weights) in table["words"].items():
        assert word == wl.normalise(word) and 0 <= depth <= wl.MAX_DEPTH
        assert set(weights) <= emotions and sum(weights.values()) == pytest.approx(1.0, abs=1e-3)
    assert resources.files("emocap").joinpath("data", "WORDNET-LICENSE").read_text().count("Princeton") >= 2


def test_lookup_normalises_case_spaces_and_hyphens():
    assert wl.lookup("  WRATHFUL ") == wl.lookup("wrathful") and wl.lookup("wrathful").emotions == {"anger": 1.0}
    assert wl.lookup("Hit-The-Roof") == wl.lookup("hit the roof") == wl.lookup("hit_the_roof")
    assert wl.lookup("joyous").emotions == {"happiness": 1.0} and wl.lookup("cheerless").emotions == {"sadness": 1.0}
    assert wl.lookup("table") is None and wl.lookup("quux") is None and wl.lookup("a forced smile") is None
    assert wl.lexicon_id().startswith("wordnet30:")


class _Graph(wl.Graph):
    """A toy lexical database: word -> senses, sense -> (topic, neighbours)."""

    def __init__(self, words, senses):
        self._words, self._senses = words, senses

    def senses(self, word):
        return self._words.get(word, [])

    def topic(self, sense):
        return self._senses[sense][0]

    def neighbours(self, sense):
        return self._senses[sense][1]


def test_link_words_takes_the_first_depth_that_reaches_an_anchor_with_sense_and_step_weights():
    graph = _Graph(
        words={"glad": ["glad.a"], "shock": ["shock.n.absorber", "shock.n.feeling"], "beaming": ["beaming.a"],
               "jolly": ["jolly.a", "mirth.n"], "uneasy glee": ["mixed.a"], "rock": ["rock.n"], "far": ["far.a"]},
        senses={"glad.a": ("adj.all", []), "shock.n.absorber": ("noun.artifact", []),
                "shock.n.feeling": ("noun.feeling", []), "beaming.a": ("adj.all", ["glad.a"]),
                "jolly.a": ("adj.all", ["glad.a"]), "mirth.n": ("noun.feeling", ["shock.n.feeling"]),
                "mixed.a": ("adj.all", ["glad.a", "shock.n.feeling"]), "rock.n": ("noun.object", ["shock.n.absorber"]),
                "far.a": ("adj.all", ["x1"]), "x1": ("adj.all", ["x2"]), "x2": ("adj.all", ["x3"]),
                "x3": ("adj.all", ["glad.a"])})
    names = {"happiness": ["glad"], "surprise": ["shock"]}
    links = wl.link_words(graph, ["glad", "Beaming", "jolly", "uneasy glee", "rock", "far", "beaming"], names)
    assert links["glad"] == wl.LexiconLink(0, {"happiness": 1.0})  # shares the anchor sense
    assert links["beaming"] == wl.LexiconLink(1, {"happiness": 1.0})  # one step away; the key is normalised
    # first sense weight 1 -> happiness, second sense weight 1/2 -> surprise, both one step away
    assert links["jolly"].depth == 1
    assert links["jolly"].emotions == pytest.approx({"happiness": 2 / 3, "surprise": 1 / 3}, abs=1e-4)
    assert links["uneasy glee"].emotions == pytest.approx({"happiness": 0.5, "surprise": 0.5})
    assert "rock" not in links  # the artifact sense of "shock" anchors nothing
    assert "far" not in links  # four steps away: past MAX_DEPTH
    assert list(links["jolly"].emotions) == ["happiness", "surprise"]  # heaviest first


def _counting_bridge(lexicon=True):
    calls = []

    def encode(texts):
        calls.append(list(texts))
        return np.full((len(texts), 4), 0.5, dtype=np.float32)
    return wb.WordBridge(encoder=encode, lexicon=lexicon), calls


def test_words_wordnet_links_skip_the_sentence_encoder():
    bridge, calls = _counting_bridge()
    share, weights = bridge.plan(["wrathful", "weepy"])
    assert calls == []  # WordNet decided both: the encoder is never loaded
    anger, sadness = bridge.emotions.index("anger"), bridge.emotions.index("sadness")
    assert share == pytest.approx([wb.LEXICON_SHARE[wl.lookup("wrathful").depth],
                                   wb.LEXICON_SHARE[wl.lookup("weepy").depth]])
    assert weights[0, anger] == pytest.approx(1.0) and weights[1, sadness] == pytest.approx(1.0)
    told = bridge.describe(["wrathful", "full of glee"])
    assert [t["source"] for t in told] == ["wordnet", "encoder"] and len(calls) == 2  # names, then the phrase
    assert "(share 0.80, WordNet)" in wb.bridge_note(told[:1])
    off, calls = _counting_bridge(lexicon=False)
    off.plan(["wrathful"])
    assert len(calls) == 2 and off.describe(["wrathful"])[0]["source"] == "encoder"


def test_a_wordnet_link_outside_the_usable_emotions_falls_back_to_the_encoder():
    bridge, calls = _counting_bridge()
    kept = [bridge.emotions.index("happiness"), bridge.emotions.index("sadness")]
    share, weights = bridge.plan(["wrathful", "joyous"], kept=kept)  # anger cannot be encoded by this prompt set
    assert weights.shape == (2, 2) and weights[1] == pytest.approx([1.0, 0.0])
    assert len(calls) == 2 and calls[1] == [wb.BRIDGE_TEMPLATE.format("wrathful")]


def test_the_builder_refuses_a_folder_that_is_not_wordnet(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not WordNet")
    with pytest.raises(SystemExit):
        wl.main(["--wordnet", str(tmp_path), "--out", str(tmp_path / "links.json")])
    assert "not a WordNet dict folder (no data.adj)" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written


def test_compound_labels_are_composed_from_their_words_and_never_through_a_negation():
    both = wl.link_label("happy and surprised")
    assert both.parts == 2 and both.depth == 0 and both.emotions == {"happiness": 0.5, "surprise": 0.5}
    adverb = wl.link_label("Happily  Surprised")  # a WordNet-linked word and a taxonomy name
    assert adverb.parts == 2 and adverb.emotions == pytest.approx({"happiness": 0.5, "surprise": 0.5})
    assert wl.link_label("slightly sad") == wl.LexiconLink(0, {"sadness": 1.0}, 1)  # one emotion word
    assert wl.link_label("wrathful") == wl.lookup("wrathful")  # a single word: the table's entry
    assert wl.link_label("hit the roof") == wl.lookup("hit the roof")  # a WordNet phrase: whole, not composed
    assert wl.link_label("not happy") is None and wl.link_label("happy but not surprised") is None
    assert wl.link_label("a forced smile") is None  # "forced", "smile": not both linked
    assert wl.link_label("sad and angry and fearful and disgusted") is None  # more than MAX_PARTS
    assert wl.link_label("raised eyebrows and a wide open mouth") is None


def test_the_bridge_gives_compound_labels_their_own_share():
    bridge, calls = _counting_bridge()
    share, weights = bridge.plan(["neutral and sad", "slightly sad"])
    assert calls == [] and share == pytest.approx([wb.LEXICON_COMPOUND_SHARE, wb.LEXICON_SHARE[0]])
    neutral, sad = bridge.emotions.index("neutral"), bridge.emotions.index("sadness")
    assert weights[0, neutral] == pytest.approx(0.5) and weights[0, sad] == pytest.approx(0.5)
