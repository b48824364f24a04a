"""Any label a user types: validation (one place, used by the classifier and both CLIs), labels the model cannot
tell apart (IndistinguishableLabelsWarning), labels outside the taxonomy, 1,000 labels, and class descriptions
for new labels (``emocap caption prompts``: template writer refuses clearly, model writer describes, cached)."""

from __future__ import annotations

import json
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
from PIL import Image

import emocap
from emocap import IndistinguishableLabelsWarning, taxonomy
from emocap.captioning import class_prompts
from emocap.captioning.class_prompts import (DescriptionCache, UndescribableLabelsError, describe_classes,
                                             facs_descriptions, resolve_labels)
from emocap.captioning.writers import ModelWriter
from emocap.classifier import (INDISTINGUISHABLE_COSINE, ZeroShotClassifier, close_label_pairs,
                               indistinguishable_message)
from emocap.cli import main
from emocap.prompts import load_prompt_set

BASIC8_TEMPLATES = load_prompt_set("basic8").templates


# ---------------------------------------------------------------------------------------------- 1. validation
def test_clean_labels_tidies_whitespace_and_keeps_words():
    assert taxonomy.clean_labels([" joy", "rage\n", "a  forced\tsmile", "Calm"]) == ["joy", "rage", "a forced smile", "Calm"]
    # any script, digits, emoji and punctuation inside a word are labels too
    assert taxonomy.clean_labels(["Freude", "喜び", "😀", "100% happy", "{joy}", "x"]) == [
        "Freude", "喜び", "😀", "100% happy", "{joy}", "x"]
    assert taxonomy.label_set(("a ", " b")) == ["a", "b"]  # label_set is the same check


@pytest.mark.parametrize("bad, what", [("", "is empty"), ("   ", "only whitespace"), ("\t\n", "only whitespace"),
                                       ("?!", "no letter or digit"), ("...", "no letter or digit"),
                                       ("{}", "no letter or digit"), ("- _ -", "no letter or digit")])
def test_empty_or_punctuation_label_names_label_and_position(bad, what):
    with pytest.raises(ValueError) as info:
        taxonomy.clean_labels(["joy", bad, "calm"])
    msg = str(info.value)
    assert "label 2 of 3" in msg and repr(bad) in msg and what in msg


def test_duplicates_after_case_and_whitespace_name_every_duplicate():
    with pytest.raises(ValueError) as info:
        taxonomy.clean_labels(["Joy", "calm", "joy "])
    msg = str(info.value)
    assert "duplicate" in msg and "'Joy' (label 1)" in msg and "'joy ' (label 3)" in msg and "calm" not in msg
    with pytest.raises(ValueError, match=r"'a' \(label 1\) = 'a' \(label 2\)"):  # exact duplicates too
        taxonomy.clean_labels(["a", "a"])
    with pytest.raises(ValueError) as info:
        taxonomy.clean_labels(["happily  surprised", "Sad", "HAPPILY surprised", "sad"])
    assert "(label 1)" in str(info.value) and "(label 3)" in str(info.value) and "(label 4)" in str(info.value)
    # different words are not duplicates, even when the taxonomy maps them to one emotion
    assert taxonomy.clean_labels(["joy", "happiness", "happy-ish"]) == ["joy", "happiness", "happy-ish"]


def test_not_strings_and_no_labels():
    with pytest.raises(TypeError, match="label 2 of 2 is not a string: None"):
        taxonomy.clean_labels(["joy", None])
    with pytest.raises(TypeError, match="not one string"):
        taxonomy.clean_labels("joy")
    with pytest.raises(ValueError, match="at least one"):
        taxonomy.clean_labels([])
    assert taxonomy.clean_labels([1, 2]) == ["1", "2"]


def test_classifier_validates_its_labels_and_labels_passed_later(tiny_model):
    clf = ZeroShotClassifier(tiny_model, labels=[" joy", "rage ", "a  forced smile"], device="cpu")
    assert clf.labels == ["joy", "rage", "a forced smile"]
    with pytest.raises(ValueError, match=r"label 2 of 2 \('\?!'\)"):
        ZeroShotClassifier(tiny_model, labels=["joy", "?!"], device="cpu")
    with pytest.raises(ValueError, match="duplicate"):
        clf.class_text_features(["Joy", "joy "])
    # stripped names are the same labels: same cache entry, same features
    a = clf.class_text_features(["joy ", " rage", "a forced smile"])
    assert torch.equal(a, clf.class_text_features())
    assert len(clf._text_cache) == 1


def test_one_thousand_labels_are_encoded_in_batches(tiny_model, monkeypatch):
    labels = [f"label number {i}" for i in range(1000)]
    # the text tower's batching alone (the word bridge's sentence encoder batches on its own: tests/test_word_bridge.py)
    clf = ZeroShotClassifier(tiny_model, labels=labels, prompts=["a photo of {}."], device="cpu", word_bridge=False)
    batches = []
    original = tiny_model.tokenizer

    def counting(texts, *a, **k):
        batches.append(len(texts))
        return original(texts, *a, **k)

    monkeypatch.setattr(tiny_model, "tokenizer", counting)
    feats = clf.class_text_features()
    assert feats.shape[0] == 1000 and torch.isfinite(feats).all()
    assert batches == [256, 256, 256, 232]  # 1,000 prompts, at most 256 per forward pass
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(1000))
    # batching does not mix labels up: a label alone gets the feature it got among 1,000
    for i in (0, 257, 999):
        alone = clf.class_text_features([labels[i]])
        torch.testing.assert_close(alone[0], feats[i], atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------- 2. indistinguishable labels
def test_close_label_pairs_each_pair_once_across_blocks():
    v = torch.nn.functional.normalize(torch.tensor(
        [[1.0, 0, 0], [1.0, 0.01, 0], [0, 1.0, 0], [0, 1.0, 0.3], [0, 0, 1.0]]), dim=1)
    labels = ["a", "b", "c", "d", "e"]
    for block in (1, 2, 1024):
        pairs, total = close_label_pairs(v, labels, 0.9, block=block)
        assert [(x, y) for x, y, _ in pairs] == [("a", "b"), ("c", "d")] and total == 2, block
        assert pairs[0][2] == pytest.approx(0.99995, abs=1e-4) and pairs[1][2] == pytest.approx(0.9578, abs=1e-3)
    assert close_label_pairs(v, labels, 1.01) == ([], 0)
    # everything close: all pairs counted, only the closest kept, in a fixed order
    same = torch.ones(50, 4) + 0.05 * torch.arange(50.0)[:, None] * torch.eye(4)[0]
    same[49] = same[48]  # the one identical pair
    same = torch.nn.functional.normalize(same, dim=1)
    names = [f"w{i}" for i in range(50)]
    pairs, total = close_label_pairs(same, names, 0.5, block=7, keep=5)
    assert total == 50 * 49 // 2 and len(pairs) == 5
    assert pairs[0][:2] == ("w48", "w49") and pairs[0][2] == pytest.approx(1.0, abs=1e-5)
    assert [p[2] for p in pairs] == sorted((p[2] for p in pairs), reverse=True)
    assert pairs == close_label_pairs(same, names, 0.5, block=1024, keep=5)[0]
    many = [(f"l{i}", f"m{i}", 0.99) for i in range(13)]
    msg = indistinguishable_message(many, 0.98)
    assert "\n" not in msg and "'l9' ~ 'm9' (0.990)" in msg and "'l10'" not in msg and "and 3 more pairs" in msg
    assert "and 990 more pairs" in indistinguishable_message(many, 0.98, total=1000)
    assert "more pairs" not in indistinguishable_message(many[:2], 0.98)


def _identical_pair_prompts():
    # "grin" and "beam" get the very same prompt, so their class features are identical (cosine 1)
    return {"name": "pairs", "descriptions": {"grin": ["the mouth smiles widely."], "beam": ["the mouth smiles widely."],
                                               "scowl": ["the brows are lowered and drawn together."]}}


def test_warning_names_the_pairs_once_per_label_set_and_is_cached(tiny_model, monkeypatch):
    clf = ZeroShotClassifier(tiny_model, labels=["grin", "beam", "scowl"], prompts=_identical_pair_prompts(), device="cpu")
    clf.indistinguishable_cosine = 0.9999  # random weights: only the identical pair is that close
    with pytest.warns(IndistinguishableLabelsWarning) as record:
        feats = clf.class_text_features()
    assert len(record) == 1
    msg = str(record[0].message)
    assert "'grin' ~ 'beam' (1.000)" in msg and "scowl" not in msg and "\n" not in msg
    assert clf.indistinguishable_pairs() == [("grin", "beam", pytest.approx(1.0, abs=1e-4))]
    # cached with the features: no second warning, no re-encoding, the pairs come from the cache
    calls = []
    monkeypatch.setattr(clf, "encode_texts", lambda *a, **k: calls.append(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", IndistinguishableLabelsWarning)
        assert torch.equal(clf.class_text_features(), feats)
        clf.predict_proba(Image.new("L", (48, 48), 80))
        assert clf.indistinguishable_pairs()[0][:2] == ("grin", "beam")
    assert not calls
    # another threshold is computed from the cached features, without a warning
    assert len(clf.indistinguishable_pairs(threshold=-1.0)) == 3


@pytest.fixture(scope="module")
def default_clf():
    return ZeroShotClassifier.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def own_clf():
    """The default model's text tower alone, without the word bridge (emocap/word_bridge.py): what the model
    itself makes of words it never learned."""
    return ZeroShotClassifier.from_pretrained(device="cpu", word_bridge=False)


def _pairs_of(clf, labels):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IndistinguishableLabelsWarning)
        pairs = clf.indistinguishable_pairs(labels)
    return pairs, [w for w in caught if issubclass(w.category, IndistinguishableLabelsWarning)]


def test_default_model_threshold_separates_known_names_from_unknown_words(default_clf, own_clf):
    assert INDISTINGUISHABLE_COSINE == default_clf.indistinguishable_cosine == 0.98
    for labels in (taxonomy.BASIC8, default_clf.labels, ["joy", "rage", "calm", "astonishment"],
                   ["happy", "sad", "angry", "surprised", "scared", "disgusted", "contemptuous", "neutral"]):
        pairs, caught = _pairs_of(default_clf, labels)
        assert pairs == [] and caught == [], labels
        # and with a margin: the closest known pair is well under the threshold
        f = default_clf.class_text_features(labels)
        assert (f @ f.T).fill_diagonal_(0).max() < 0.98
    # "boredom" and "confusion" are in no caption and not in WordNet's emotion table, so the own text tower reads
    # them alike; "pain" is in the table (WordNet links it to anger), so the tower was taught it (docs/labels.md)
    pairs, caught = _pairs_of(own_clf, ["pain", "boredom", "confusion"])
    assert {frozenset(p[:2]) for p in pairs} == {frozenset(("boredom", "confusion"))}
    assert all(c >= 0.98 for _, _, c in pairs) and len(caught) == 1
    assert "'boredom' ~ 'confusion'" in str(caught[0].message)


# ------------------------------------------------------------------------------------- 3. unknown labels
UNKNOWN = ["a forced smile", "happily surprised", "pain", "boredom", "sadly angry", "not happy", "Pain in the neck"]


@pytest.mark.parametrize("spec", ["basic8", None])
def test_unknown_labels_get_template_prompts_with_their_own_words_only(spec):
    ps = load_prompt_set(spec)
    every_description = {s for sentences in ps.descriptions.values() for s in sentences}
    assert every_description  # the set has class descriptions: none may leak into an unknown label
    for label in UNKNOWN:
        assert taxonomy.canonical_or_none(label) is None
        texts = ps.texts_for(label)
        assert texts == [t.format(label) for t in ps.templates]
        assert all(label in t for t in texts) and not set(texts) & every_description
    # a known synonym still gets its emotion's descriptions
    assert set(ps.descriptions_for("happiness")) <= set(ps.texts_for("joy"))


def test_description_keys_match_up_to_case_and_whitespace_but_never_another_class():
    ps = load_prompt_set({"templates": ["{}."], "descriptions": {"pain": ["the brows are lowered in a grimace."],
                                                                 "happiness": ["the lip corners are pulled up."]}})
    assert ps.texts_for("Pain") == ["Pain.", "the brows are lowered in a grimace."]
    assert ps.texts_for("  pain ") == ["  pain .", "the brows are lowered in a grimace."]
    assert ps.texts_for("painful") == ["painful."]
    desc_only = load_prompt_set({"name": "d", "descriptions": {"pain": ["the brows are lowered."]}})
    with pytest.raises(ValueError, match="no templates and no descriptions for label 'boredom'"):
        desc_only.texts_for("boredom")


def test_unknown_and_odd_labels_encode_without_raising(tiny_model, default_clf, own_clf):
    odd = UNKNOWN + ["😀", "Freude", "x", "{joy}", "100% happy", "very " * 200 + "long"]
    for clf in (ZeroShotClassifier(tiny_model, labels=odd, device="cpu"), default_clf):
        feats = clf.class_text_features(odd)
        assert feats.shape[0] == len(odd) and torch.isfinite(feats).all()
    # on the default model: its own prompts are templates + basic-8 descriptions; unknown labels get templates only
    # (the text tower's part: the word bridge then mixes in the emotions the label is close to, tests/test_word_bridge.py)
    expected = own_clf.encode_texts([t.format("pain") for t in own_clf.prompt_set.templates]).mean(0)
    torch.testing.assert_close(own_clf.class_text_features(["pain"])[0], expected / expected.norm(),
                               atol=1e-5, rtol=0)


def test_a_descriptions_only_prompt_set_must_cover_the_labels_at_construction(tiny_model):
    with pytest.raises(ValueError, match="no descriptions for label 'scowl'"):
        ZeroShotClassifier(tiny_model, labels=["grin", "scowl"], prompts={"descriptions": {"grin": ["a wide smile."]}},
                           device="cpu")


# ------------------------------------------------------------------------------ 4. caption prompts, new labels
def test_template_writer_refuses_labels_outside_the_taxonomy_clearly():
    with pytest.raises(UndescribableLabelsError) as info:
        describe_classes(["happiness", "pain", "boredom"], None)
    assert info.value.labels == ["pain", "boredom"]
    msg = str(info.value)
    assert "'pain', 'boredom'" in msg and "--writer openai" in msg and "happiness" not in msg.split(":")[0]
    with pytest.raises(UndescribableLabelsError):  # no neutral-face sentences passed off as "pain"
        facs_descriptions("pain")
    assert facs_descriptions("calm") == facs_descriptions("neutral")  # a neutral synonym: the face at rest


def test_caption_prompts_cli_template_writer(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "pb.json"
    assert main(["caption", "prompts", "--labels", "pain", "boredom", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot describe 'pain', 'boredom'" in err and "\n" == err[-1] and not out.exists()
    assert main(["caption", "prompts", "--labels", "joy", " ", "--out", str(out)]) == 2
    assert "label 2 of 2" in capsys.readouterr().err
    # labels it can describe (taxonomy names and compounds of them): a prompt set with its hash
    assert main(["caption", "prompts", "--labels", "happily surprised", " Sadly angry", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert list(data["descriptions"]) == ["happily surprised", "Sadly angry"] and "templates" not in data
    ps = load_prompt_set(str(out))
    assert data["hash"] == ps.hash and data["hash"] in capsys.readouterr().out
    with_templates = tmp_path / "pbt.json"
    assert main(["caption", "prompts", "--labels", "happily surprised", "sadly angry", "--out", str(with_templates),
                 "--templates", "basic8"]) == 0
    data_t = json.loads(with_templates.read_text())
    assert tuple(data_t["templates"]) == BASIC8_TEMPLATES and data_t["hash"] == load_prompt_set(str(with_templates)).hash
    assert data_t["hash"] != data["hash"]
    clf = ZeroShotClassifier.from_pretrained(str(tiny_model_dir), labels=["happily surprised", "sadly angry"],
                                             prompts=str(with_templates), device="cpu")
    assert clf.prompt_set.hash == data_t["hash"]
    assert clf.prompt_set.texts_for("sadly angry")[0] == BASIC8_TEMPLATES[0].format("sadly angry")


LLM_ANSWERS = {
    "pain": {"short": "the brows lower and the eyes squeeze shut",
             "medium": "the brows are lowered and drawn together while the eyes squeeze shut and the upper lip rises",
             "detailed": "the brows are lowered and knit (AU4), the cheeks rise and the lids tighten (AU6, AU7), the "
                         "nose wrinkles (AU9) and the upper lip is raised (AU10) in a grimace"},
    "boredom": {"short": "drooping eyelids and a slack mouth",
                "medium": "the upper eyelids droop half closed, the gaze is unfocused and the mouth hangs slack",
                "detailed": "the upper lids droop (AU43 partial), the brows rest level, the lips are closed and "
                            "slack with no lip-corner pull, and the head tilts to one side"},
    "confusion": {"short": "one brow raised and the other lowered",
                  "medium": "the inner brows are pulled together and one brow is raised while the lips press together",
                  "detailed": "the brows are drawn together and lowered (AU4) with the outer brow raised on one side "
                              "(AU2), the eyes narrow slightly (AU7) and the lips press together (AU24)"},
}


def _level_of(ask: str) -> str:
    return "short" if "at most 12" in ask else ("medium" if "8 to 30" in ask else "detailed")


def _label_of(ask: str) -> str:
    return ask.rsplit("a face showing: ", 1)[1].rstrip(".")


class FakeLLM(ModelWriter):
    """A model writer answering from LLM_ANSWERS (per_level variants), counting its calls."""

    name = "fake-llm"

    def __init__(self, model="m1", answers=None):
        super().__init__()
        self.model = model
        self.answers = answers or {}
        self.calls = []

    def generate(self, messages, image=None):
        ask = messages[-1]["content"]
        label, level = _label_of(ask), _level_of(ask)
        self.calls.append((label, level))
        if label in self.answers:
            return self.answers[label]
        n = int(ask.split()[1])
        base = LLM_ANSWERS[label][level]
        return "Here you go: " + json.dumps([base] + [base + f" variant {k}" for k in range(1, n)])


def test_model_writer_describes_new_labels_and_the_output_classifies(tmp_path, tiny_model_dir, own_clf):
    writer = FakeLLM()
    data = describe_classes(["confusion", "boredom"], writer, per_level=2, name="mine")
    assert len(writer.calls) == 6 and not data["generated_by"]["fallbacks"]
    assert data["levels"]["confusion"]["short"][0] == LLM_ANSWERS["confusion"]["short"]
    path = tmp_path / "mine.json"
    class_prompts.write_descriptions(data, str(path))
    ps = load_prompt_set(str(path))
    assert ps.hash == data["hash"] and ps.texts_for("confusion") == data["descriptions"]["confusion"]
    clf = ZeroShotClassifier.from_pretrained(str(tiny_model_dir), labels=["confusion", "boredom"], prompts=str(path),
                                             device="cpu")
    probs = clf.predict_proba(Image.new("L", (48, 48), 80))
    assert probs.shape == (1, 2)
    # on the default model's text tower the descriptions make the two words distinguishable (their names alone are not)
    assert own_clf.indistinguishable_pairs(["confusion", "boredom"])
    assert own_clf.indistinguishable_pairs(["confusion", "boredom"], ps) == []


def test_model_writer_answers_are_cached_and_changed_inputs_are_asked_again(tmp_path):
    cache = DescriptionCache(tmp_path / "cache")
    first = FakeLLM()
    stats = {}
    a = describe_classes(["pain", "boredom"], first, per_level=2, cache=cache, stats=stats)
    assert len(first.calls) == 6 and stats == {"requests": 6, "cached": 0}
    again = FakeLLM()
    b = describe_classes(["pain", "boredom"], again, per_level=2, cache=cache, stats=stats)
    assert again.calls == [] and stats == {"requests": 0, "cached": 6} and a == b
    added = FakeLLM()
    describe_classes(["pain", "boredom", "confusion"], added, per_level=2, cache=cache)
    assert {label for label, _ in added.calls} == {"confusion"} and len(added.calls) == 3
    for changed, kwargs in ((FakeLLM(), {"per_level": 1}), (FakeLLM(model="m2"), {})):
        describe_classes(["pain"], changed, cache=cache, **{"per_level": 2, **kwargs})
        assert len(changed.calls) == 3, kwargs
    # a cached answer that no longer passes validation (here: tampered to name anger) is asked again
    key, _ = class_prompts.request_key(FakeLLM(), "pain", "short", 2)
    entry = json.loads(cache._path(key).read_text())
    cache._path(key).write_text(json.dumps({**entry, "sentences": ["an angry face", "an angry face again"]}))
    checked = FakeLLM()
    describe_classes(["pain"], checked, per_level=2, cache=cache)
    assert checked.calls == [("pain", "short")]


def test_model_writer_failures_are_not_cached_and_unknown_labels_have_no_facs_fallback(tmp_path):
    cache = DescriptionCache(tmp_path / "cache")
    bad = FakeLLM(answers={"pain": "sorry, I cannot help", "anger": "[\"a happy grin\", \"a happy grin\"]"})
    with pytest.raises(UndescribableLabelsError) as info:
        describe_classes(["boredom", "pain"], bad, per_level=2, cache=cache)
    assert info.value.labels == ["pain"] and "no JSON list" in str(info.value)
    retry = FakeLLM()  # boredom's answers were cached, pain's failures were not
    data = describe_classes(["boredom", "pain"], retry, per_level=2, cache=cache)
    assert {label for label, _ in retry.calls} == {"pain"} and data["descriptions"]["pain"]
    # a label of the taxonomy still falls back to its FACS sentences, recorded
    mixed = describe_classes(["anger"], bad, per_level=2)
    assert mixed["levels"]["anger"] == facs_descriptions("anger", 2)
    assert {f["fallback"] for f in mixed["generated_by"]["fallbacks"]} == {"facs"}


class _Endpoint:
    """A loopback OpenAI-style chat endpoint answering from LLM_ANSWERS; counts requests."""

    def __init__(self):
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests += 1
                ask = body["messages"][-1]["content"]
                label, level = _label_of(ask), _level_of(ask)
                n = int(ask.split()[1])
                base = LLM_ANSWERS[label][level]
                content = json.dumps([base] + [base + f" variant {k}" for k in range(1, n)])
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_caption_prompts_cli_with_an_endpoint_writer_is_cached_and_classify_reads_it(tmp_path, tiny_model_dir,
                                                                                     capsys):
    endpoint = _Endpoint()
    out = tmp_path / "my.json"
    args = ["caption", "prompts", "--labels", "pain", "boredom", "--out", str(out), "--writer", "openai",
            "--writer-model", "m", "--endpoint", endpoint.url, "--retries", "0", "--cache-dir", str(tmp_path / "c")]
    try:
        assert main(args) == 0
        first = out.read_text()
        assert endpoint.requests == 6 and "6 requests, 0 answers from the cache" in capsys.readouterr().out
        assert main(args) == 0
        assert endpoint.requests == 6 and out.read_text() == first  # nothing asked again, same file
        assert "0 requests, 6 answers from the cache" in capsys.readouterr().out
        assert main(args + ["--per-level", "1"]) == 0  # changed input: asked again
        assert endpoint.requests == 12
        assert main(args + ["--per-level", "1", "--no-cache"]) == 0
        assert endpoint.requests == 18
    finally:
        endpoint.close()
    capsys.readouterr()
    img = tmp_path / "face.png"
    Image.new("L", (48, 48), 90).save(img)
    assert main(["classify", str(img), "--model", str(tiny_model_dir), "--labels", "pain", "boredom",
                 "--prompts", str(out), "--json"]) == 0
    preds = json.loads(capsys.readouterr().out.splitlines()[0])["predictions"]
    assert {p["label"] for p in preds} == {"pain", "boredom"}


# --------------------------------------------------------------------------------------- the classify CLI
def test_classify_cli_label_errors(tmp_path, tiny_model_dir, capsys):
    img = tmp_path / "face.png"
    Image.new("L", (48, 48), 90).save(img)
    base = ["classify", str(img), "--model", str(tiny_model_dir), "--labels"]
    assert main(base + ["Joy", "joy "]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emocap classify: error: duplicate labels") and "'Joy' (label 1)" in err and "'joy ' (label 2)" in err
    assert main(base + ["joy", "?!"]) == 2
    assert "label 2 of 2 ('?!')" in capsys.readouterr().err
    assert main(base + ["joy", ""]) == 2
    assert "label 2 of 2 ('') is empty" in capsys.readouterr().err


def test_classify_cli_prints_the_warning_once_on_one_line(tmp_path, tiny_model_dir, capsys):
    prompts = tmp_path / "pairs.json"
    prompts.write_text(json.dumps(_identical_pair_prompts()))
    images = []
    for i in range(3):
        images.append(tmp_path / f"f{i}.png")
        Image.new("L", (48, 48), 60 + 40 * i).save(images[-1])
    code = main(["classify", *map(str, images), "--model", str(tiny_model_dir), "--labels", "grin", "beam", "scowl",
                 "--prompts", str(prompts), "--batch-size", "1"])
    assert code == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if "IndistinguishableLabelsWarning" in line or "warning" in line]
    assert len(lines) == 1 and lines[0].startswith("emocap classify: warning: ") and "'grin' ~ 'beam' (1.000)" in lines[0]
    assert len(captured.out.splitlines()) == 3


def test_classify_cli_no_warning_for_the_default_labels(tmp_path, capsys):
    img = tmp_path / "face.png"
    Image.new("L", (48, 48), 90).save(img)
    assert main(["classify", str(img), "--top-k", "1"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_resolve_labels_uses_the_same_check():
    assert resolve_labels([" pain", "boredom "]) == ["pain", "boredom"]
    assert len(resolve_labels(["rafdb-compound"])) == 11
    with pytest.raises(ValueError, match="duplicate"):
        resolve_labels(["Pain", "pain"])
    assert emocap.IndistinguishableLabelsWarning is IndistinguishableLabelsWarning
