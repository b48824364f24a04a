"""The word bridge (emocap/word_bridge.py): labels outside the taxonomy drawn toward the emotions they mean."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from emocap import word_bridge as wb
from emocap.sentence_encoder import SentenceEncoderUnavailable


def _bridge_with(keywords):
    """A bridge with a stand-in sentence encoder: every emotion has an axis; a taxonomy name lies on its emotion's
    axis, a label holding a keyword of ``keywords`` (emotion -> word) on that emotion's axis, any other text on an
    axis of its own; all share a small common part. Closeness is then 1.0 for a match and 0.04 otherwise."""
    bridge = wb.WordBridge(encoder=lambda texts: None)
    emotion_of_name = {name: e for name, e in bridge._names}
    n = len(bridge.emotions)

    def encode(texts):
        out = np.zeros((len(texts), n + 2), dtype=np.float32)
        for row, text in enumerate(texts):
            inner = text[len(wb.BRIDGE_TEMPLATE.format("")):]
            hits = [bridge.emotions.index(e) for e, k in keywords.items() if k in inner]
            axis = emotion_of_name.get(inner, hits[0] if hits else n)
            out[row, axis], out[row, -1] = 0.98, 0.2
        return out / np.linalg.norm(out, axis=1, keepdims=True)
    bridge._encoder = encode
    return bridge


def test_the_anchors_are_every_name_of_every_taxonomy_emotion():
    from emocap import taxonomy

    names = taxonomy.names_by_emotion()
    assert {"happiness", "happy", "joy", "smiling"} <= set(names["happiness"]) and "anxiety" in names
    bridge = wb.WordBridge(encoder=lambda texts: None)
    assert bridge.emotions == list(names)
    assert sorted(n for n, _ in bridge._names) == sorted(n for ns in names.values() for n in ns)


def test_needs_bridge_is_exactly_outside_the_taxonomy():
    assert not wb.needs_bridge("happiness") and not wb.needs_bridge("  Joyful ") and not wb.needs_bridge("grossed out")
    assert wb.needs_bridge("elated") and wb.needs_bridge("happily surprised") and wb.needs_bridge("pain")


def test_shares_follow_the_gate_and_the_temperature():
    close = np.array([[0.60, 0.10], [0.75, 0.10], [0.85, 0.10], [0.85, 0.84]])
    share, weights = wb.WordBridge.shares(close, close)
    assert share == pytest.approx([0.0, 0.5 * (1 - wb.OWN_SHARE), 1 - wb.OWN_SHARE, 1 - wb.OWN_SHARE])
    assert weights.sum(axis=1) == pytest.approx(np.ones(4))
    assert weights[2, 0] > 0.999  # 0.75 apart at temperature 0.02: all weight on the closest emotion
    assert weights[3, 0] / weights[3, 1] == pytest.approx(np.exp(0.01 / wb.TEMPERATURE))  # 0.01 apart
    # the share follows the gate's closeness, the weights the other one
    share, weights = wb.WordBridge.shares(np.array([[0.2, 0.1]]), np.array([[0.1, 0.9]]))
    assert share == pytest.approx([0.0]) and weights[0, 1] > 0.999


def test_blend_moves_a_word_toward_its_emotion_and_leaves_unrelated_labels_alone():
    bridge = _bridge_with({"happiness": "glee", "anger": "wrath"})
    emotions = bridge.emotions
    rng = np.random.default_rng(0)
    emo = rng.normal(size=(len(emotions), 16)).astype(np.float32)
    emo /= np.linalg.norm(emo, axis=1, keepdims=True)
    own = rng.normal(size=(2, 16)).astype(np.float32)
    own /= np.linalg.norm(own, axis=1, keepdims=True)
    close = bridge.closeness(["full of glee", "a pale forehead"])
    assert close.shape == (2, len(emotions))
    assert close[0].argmax() == emotions.index("happiness") and close[0].max() > wb.GATE_HIGH
    assert close[1].max() < wb.GATE_LOW
    out = bridge.blend(["full of glee", "a pale forehead"], own, emo)
    assert np.linalg.norm(out, axis=1) == pytest.approx([1, 1])
    happy = emo[emotions.index("happiness")]
    assert out[0] @ happy > own[0] @ happy + 0.3  # pulled toward happiness
    assert out[1] == pytest.approx(own[1])  # far from every emotion name: the own tower's reading, unchanged


def test_describing_labels_after_bridging_them_encodes_nothing_again():
    bridge = _bridge_with({"happiness": "glee"})
    encode, calls = bridge._encoder, []
    bridge._encoder = lambda texts: calls.append(list(texts)) or encode(texts)
    first = bridge.plan(["full of glee", "a pale forehead"])
    assert len(calls) == 2  # the names once, then the two labels
    again = bridge.plan(["a pale forehead", "full of glee"])
    told = bridge.describe(["full of glee"])
    assert len(calls) == 2 and told[0]["toward"][0][0] == "happiness"
    assert again[0] == pytest.approx(first[0][::-1]) and again[1] == pytest.approx(first[1][::-1])
    bridge.plan(["full of glee", "glee all over"])
    assert calls[-1] == [wb.BRIDGE_TEMPLATE.format("glee all over")]  # only the new label


def test_bridge_features_touches_only_non_taxonomy_rows_in_torch_and_numpy():
    bridge = _bridge_with({"happiness": "glee"})
    labels = ["anger", "full of glee", "sadness"]
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(3, 8)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    emo = np.eye(len(bridge.emotions), 8, dtype=np.float32)
    asked = []

    def emotion_features(emotions):
        asked.append(list(emotions))
        return emo

    out = wb.bridge_features(bridge, labels, feats, emotion_features)
    assert asked == [bridge.emotions]
    assert out[0] == pytest.approx(feats[0]) and out[2] == pytest.approx(feats[2])
    assert not np.allclose(out[1], feats[1])
    tens = wb.bridge_features(bridge, labels, torch.from_numpy(feats), lambda e: torch.from_numpy(emo))
    assert isinstance(tens, torch.Tensor) and tens.dtype == torch.float32
    assert tens.numpy() == pytest.approx(out)
    # all labels in the taxonomy, or no bridge: the very same object back, nothing computed
    same = torch.from_numpy(feats)
    assert wb.bridge_features(bridge, ["anger", "joy"], same, emotion_features) is same
    assert wb.bridge_features(None, labels, same, emotion_features) is same
    assert len(asked) == 1


def test_name_vectors_are_shared_only_on_the_shared_encoder():
    assert wb.WordBridge()._name_vectors is wb.WordBridge()._name_vectors  # a classifier per label set: encoded once
    own = wb.WordBridge(encoder=lambda texts: np.eye(len(texts), 4, dtype=np.float32))
    assert own._name_vectors is not wb.WordBridge()._name_vectors


def test_a_missing_sentence_encoder_warns_and_keeps_the_own_features():
    def missing(texts):
        raise SentenceEncoderUnavailable("the all-MiniLM-L6-v2 sentence encoder is not installed")

    bridge = wb.WordBridge(encoder=missing)
    feats = np.eye(2, 4, dtype=np.float32)
    emo = lambda e: np.random.default_rng(0).normal(size=(len(e), 4)).astype(np.float32)  # noqa: E731
    with pytest.warns(wb.WordBridgeUnavailableWarning, match="'full of glee'.*own text tower alone.*not installed"):
        out = wb.bridge_features(bridge, ["full of glee", "anger"], feats, emo)
    assert out is feats
    # a word WordNet links is still bridged without the encoder; only the other label keeps its own reading
    feats = np.eye(3, 4, dtype=np.float32)
    with pytest.warns(wb.WordBridgeUnavailableWarning, match="WordNet does not link \\('full of glee'\\)"):
        out = wb.bridge_features(bridge, ["wrathful", "full of glee", "anger"], feats, emo)
    assert np.isfinite(out).all() and not np.allclose(out[0], feats[0]) and np.allclose(out[1:], feats[1:])


# ----------------------------------------------------------------------- the real encoder and the default model

@pytest.fixture(scope="module")
def default_pair():
    from emocap import ZeroShotClassifier

    return ZeroShotClassifier.from_pretrained(), ZeroShotClassifier.from_pretrained(word_bridge=False)


def test_taxonomy_labels_score_exactly_as_without_the_bridge(default_pair):
    on, off = default_pair
    labels = ["neutral", "joy", "furious", "grossed out"]
    assert torch.equal(on.class_text_features(labels), off.class_text_features(labels))
    assert on.bridge_id == wb.bridge_identity() and off.bridge_id == "off"
    assert on.bridge_id.startswith(wb.BRIDGE_ID + "@") and not on.bridge_id.endswith("@unavailable")


def test_an_unknown_emotion_word_moves_toward_its_class_with_minilm(default_pair):
    on, off = default_pair
    # "stoked" is in no word list of emocap/data/vocabularies, not in the taxonomy and not in WordNet's table (so
    # the default's text tower was not taught it either): the sentence encoder's path
    from emocap.word_lexicon import link_label

    assert link_label("stoked") is None
    labels = ["neutral", "happiness", "sadness", "anger"]
    classes = off.class_text_features(labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = off.class_text_features(["stoked", "boredom"])
        after = on.class_text_features(["stoked", "boredom"])
    assert (after[0] @ classes[1]).item() > (before[0] @ classes[1]).item() + 0.05
    close = on.word_bridge.closeness(["stoked"])[0]
    assert on.word_bridge.emotions[int(close.argmax())] == "happiness" and close.max() > wb.GATE_HIGH


def test_on_a_smiling_face_the_unknown_happy_word_wins_only_with_the_bridge(default_pair):
    from emocap import ZeroShotClassifier

    face = Path(__file__).resolve().parents[1] / "examples" / "astronaut_face.png"  # a broad smile
    # none in the taxonomy or a word list; "giddy" and "bummed" not in WordNet's table, so not taught to the tower
    labels = ["giddy", "bummed", "seeing red"]
    tops = []
    for bridge in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = ZeroShotClassifier.from_pretrained(labels=labels, word_bridge=bridge)
            tops.append(clf.predict([face])[0][0]["label"])
    assert tops[0] == "giddy" and tops[1] != "giddy"


def test_a_facial_action_phrase_keeps_the_own_towers_reading(default_pair):
    on, off = default_pair
    phrase = ["the chin pushed up and the lips pressed into a line"]  # in no word list; no emotion word
    assert on.word_bridge.closeness(phrase).max() < wb.GATE_LOW
    assert torch.allclose(on.class_text_features(phrase), off.class_text_features(phrase))


def test_the_encoder_loads_offline_from_the_wheel_through_safetensors():
    from emocap.sentence_encoder import SentenceEncoder, sentence_model_dir

    folder = sentence_model_dir()
    assert (folder / "model.safetensors").is_file()
    enc = SentenceEncoder()
    vecs = enc.encode(["a happy face", "a", "a face that looks joyful and very very pleased"])
    assert vecs.shape == (3, 384) and np.linalg.norm(vecs, axis=1) == pytest.approx(np.ones(3), abs=1e-5)
    # batched in length order, returned in input order
    assert vecs[1] == pytest.approx(enc.encode_batch(["a"])[0], abs=1e-5)
    with pytest.raises(SentenceEncoderUnavailable, match="no model.safetensors"):
        sentence_model_dir(str(folder.parent / "nowhere"))


def test_eval_keys_and_records_name_the_bridge_only_where_it_acts():
    from emocap.eval.run_spec import RunSpec

    on, off = RunSpec(benchmark="ferplus"), RunSpec(benchmark="ferplus", no_word_bridge=True)
    canonical = ["neutral", "happiness"]
    assert on.text_key("fp", canonical) == off.text_key("fp", canonical)  # a canonical cache stays valid
    assert on.text_key("fp", ["neutral", "elated"]) != off.text_key("fp", ["neutral", "elated"])
    assert on.word_bridge_id == wb.bridge_identity() and off.word_bridge_id == "off"
    # the identity names the installed encoder's weights: other weights, other keys
    from emocap.sentence_encoder import sentence_model_dir, weights_fingerprint
    from emocap.word_lexicon import lexicon_id
    assert wb.bridge_identity() == f"{wb.BRIDGE_ID}@{weights_fingerprint(sentence_model_dir())}+{lexicon_id()}"


def test_bridged_labels_and_the_classify_note(default_pair, capsys):
    from emocap.cli import main

    on, off = default_pair
    told = on.bridged_labels(["happiness", "a forced smile", "raised eyebrows and a wide open mouth"])
    assert [b["label"] for b in told] == ["a forced smile", "raised eyebrows and a wide open mouth"]
    assert told[0]["toward"][0][0] == "happiness" and told[0]["share"] == pytest.approx(1 - wb.OWN_SHARE)
    assert told[1]["share"] == 0.0  # a facial-action phrase keeps the own tower's reading
    assert off.bridged_labels(["a forced smile"]) == [] and on.bridged_labels(["joy", "rage"]) == []
    face = str(Path(__file__).resolve().parents[1] / "examples" / "astronaut_face.png")
    assert main(["classify", face, "--labels", "a forced smile", "neutral", "--json"]) == 0
    err = capsys.readouterr().err
    assert "note: labels outside the taxonomy" in err and "'a forced smile' -> happiness" in err
    assert main(["classify", face, "--labels", "a forced smile", "neutral", "--json", "-q"]) == 0
    assert "note:" not in capsys.readouterr().err


def test_a_descriptions_only_prompt_set_bridges_toward_the_emotions_it_describes(tiny_model):
    from emocap import ZeroShotClassifier

    prompts = {"descriptions": {"a forced smile": ["the lip corners are pulled up while the eyes stay still."],
                                "anger": ["the brows are lowered and drawn together."],
                                "happiness": ["the cheeks are raised and the lip corners pulled up."]}}
    clf = ZeroShotClassifier(tiny_model, labels=["a forced smile", "anger"], prompts=prompts, device="cpu")
    feats = clf.class_text_features()
    assert torch.isfinite(feats).all()
    told = clf.bridged_labels()
    assert [b["label"] for b in told] == ["a forced smile"]
    assert told[0]["toward"][0][0] == "happiness" and {e for e, _ in told[0]["toward"]} <= {"happiness", "anger"}
    off = ZeroShotClassifier(tiny_model, labels=["a forced smile", "anger"], prompts=prompts, device="cpu",
                             word_bridge=False)
    assert torch.equal(feats[1], off.class_text_features()[1]) and not torch.allclose(feats[0], off.class_text_features()[0])
