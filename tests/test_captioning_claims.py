"""Captions say only what the evidence gives: intensity only from graded labels, support only from prototype AUs."""

from __future__ import annotations

import json
import re
import tarfile

import pytest

from conftest import faces_wild_dev
from emocap.captioning.facs_knowledge import PROTOTYPE_AUS
from emocap.captioning.facts import facts_from_distribution, is_graded
from emocap.captioning.model_writer import facts_for_prompt
from emocap.captioning.shards import build_captions
from emocap.captioning.sources import labelfile_source
from emocap.captioning.templates import INTENSITY_PHRASES, TemplateWriter
from emocap.face_analysis import FaceAnalyzer

EMOTION_INTENSITY = re.compile(r"\b(" + "|".join(sorted({p.split(" ", 1)[1].replace(", ", "|").replace(",", "")
                                                           for v in INTENSITY_PHRASES.values() for p in v})) + r")\b")
ANY_INTENSITY = re.compile(EMOTION_INTENSITY.pattern[:-3] + r"|high|moderate|slight|low|intense)\b")
CAUSAL = re.compile(r"point|indicat|shown by|read as|expresses|suggest|because|typical of \w+\.", re.I)


def _texts(facts, n=40):
    return [TemplateWriter(seed=s).write(facts, f"k{s}") for s in range(n)]


def test_intensity_words_are_recognised():
    assert EMOTION_INTENSITY.search("a high-intensity expression of calm")
    assert EMOTION_INTENSITY.search("a mild sad facial expression") and not EMOTION_INTENSITY.search("a sad face")


def test_a_single_hard_label_gets_no_intensity_word():
    assert not is_graded({"neutral": 1.0}, None) and is_graded({"neutral": 1.0}, {"neutral": 10})
    assert is_graded({"happiness": 0.8, "surprise": 0.2}, None)
    prior_only = facts_from_distribution({"neutral": 1.0})
    assert prior_only.intensity is None and prior_only.sources["intensity"].startswith("none")
    for emotion in PROTOTYPE_AUS:  # labels only, no face analysis: the AUs are priors, no band or intensity at all
        for caps in _texts(facts_from_distribution({emotion: 1.0}), 20):
            text = " ".join([caps["global"], caps["summary"], *caps["local"]])
            assert not ANY_INTENSITY.search(text), text
    measured = facts_from_distribution({"happiness": 1.0}, estimates={12: 0.9, 6: 0.6, 25: 0.3})
    for caps in _texts(measured):
        assert not EMOTION_INTENSITY.search(caps["global"] + " " + caps["summary"]), caps
    assert facts_for_prompt(measured)["intensity"] is None


def test_graded_votes_still_give_intensity():
    facts = facts_from_distribution({"happiness": 0.9, "neutral": 0.1}, votes={"happiness": 9, "neutral": 1})
    assert facts.intensity == "high"
    assert any(EMOTION_INTENSITY.search(c["global"]) for c in _texts(facts))


def test_summary_without_prototype_evidence_makes_no_claim():
    facts = facts_from_distribution({"happiness": 1.0}, estimates={26: 0.6, 25: 0.5, 12: 0.0, 6: 0.0, 4: 0.0})
    assert facts.prototype_seen == [] and facts.prototype_unseen == [6, 12]
    for caps in _texts(facts):
        assert not CAUSAL.search(caps["summary"]), caps["summary"]
        assert "jaw drop" in caps["summary"] and "smiling" not in caps["global"]
    neutral = facts_from_distribution({"neutral": 1.0}, estimates={26: 0.6, 1: 0.0})
    for caps in _texts(neutral):
        assert not CAUSAL.search(caps["summary"]) and "jaw drop" in caps["summary"], caps["summary"]
    quiet = facts_from_distribution({"sadness": 1.0}, estimates={1: 0.0, 4: 0.0, 15: 0.0})
    assert all(not CAUSAL.search(c["summary"]) for c in _texts(quiet))


def test_the_label_is_named_by_its_own_name():
    """Synonyms vary the wording ("an irritated face"), but "The label is ..." states the label itself."""
    for emotion, estimates in (("anger", {26: 0.6, 25: 0.5}), ("sadness", {1: 0.0, 4: 0.0, 15: 0.0}),
                               ("fear", {})):
        facts = facts_from_distribution({emotion: 1.0}, estimates=estimates or None)
        stated = [re.match(r"The label is (\w+)", c["summary"]) for c in _texts(facts)]
        assert any(stated), emotion
        assert all(m.group(1) == emotion for m in stated if m), [m.group(0) for m in stated if m]


def test_summary_with_prototype_evidence_says_so():
    facts = facts_from_distribution({"happiness": 1.0}, estimates={12: 0.7, 6: 0.4, 26: 0.5})
    assert facts.prototype_seen == [6, 12]
    for caps in _texts(facts):
        head = caps["summary"].split(". ")[0] + "."
        assert CAUSAL.search(head) and "lip corner puller" in head and "jaw drop" not in head, caps["summary"]


def test_real_photos_with_hard_labels(tmp_path):
    wild = faces_wild_dev()
    samples, _ = labelfile_source(str(wild), None, labels_file=str(wild / "labels.csv"))
    chosen = [s for s in samples if s.key.endswith(("Abdel_Nasser_Assidi_0001", "AJ_Cook_0001", "Jude_Law_0002",
                                                    "Amanda_Coetzer_0001"))]
    assert len(chosen) == 4 and all(s.votes is None for s in chosen)
    build_captions(chosen, tmp_path, analyzer=FaceAnalyzer("dlib", detect=True), progress=False)
    with tarfile.open(next(tmp_path.glob("*.tar"))) as tar:
        recs = [json.loads(tar.extractfile(m).read()) for m in tar.getmembers() if m.name.endswith(".json")]
    assert len(recs) == 4
    for rec in recs:
        caps, facts = rec["captions"], rec["facts"]
        assert facts["intensity"] is None
        assert not EMOTION_INTENSITY.search(caps["global"] + " " + caps["summary"]), caps
        if facts["aus"] and not facts["prototype_seen"]:
            assert not CAUSAL.search(caps["summary"]), caps["summary"]
    assert any(r["facts"]["aus"] and not r["facts"]["prototype_seen"] for r in recs)  # a face that lacks its prototype


@pytest.mark.parametrize("emotion", ["anger", "sadness"])
def test_prior_aus_are_said_to_be_expected(emotion):
    facts = facts_from_distribution({emotion: 1.0})
    for caps in _texts(facts, 10):
        assert all("expected" in s or "not measured" in s for s in caps["local"]), caps["local"]
