"""Tests for emocap.prompts and the bundled prompt files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import emocap
from emocap import taxonomy
from emocap.prompts import DEFAULT_PROMPT_SET, PromptSet, bundled_prompt_sets, load_prompt_set

PROMPT_DIR = Path(emocap.__file__).parent / "data" / "prompts"


def _bundled_json(name, kind):
    return json.loads((PROMPT_DIR / f"{name}_{kind}.json").read_text(encoding="utf-8"))


def test_bundled_set_loads():
    assert "basic8" in bundled_prompt_sets()
    ps = load_prompt_set()
    assert ps.name == DEFAULT_PROMPT_SET == "basic8"
    assert list(ps.templates) == _bundled_json("basic8", "templates")["templates"]
    desc = _bundled_json("basic8", "descriptions")["descriptions"]
    assert {k: list(v) for k, v in ps.descriptions.items()} == desc
    # every basic-8 emotion has descriptions, every template has exactly one placeholder
    for label in taxonomy.BASIC8:
        assert ps.descriptions_for(label), label
    assert all(t.count("{}") == 1 for t in ps.templates)
    assert load_prompt_set("basic8") == ps


def test_hash_is_stable():
    a, b = load_prompt_set("basic8"), load_prompt_set("basic8")
    assert a.hash == b.hash
    assert len(a.hash) == 16 and int(a.hash, 16) >= 0
    # the hash does not depend on dict order or on the name
    rev = PromptSet(a.templates, dict(reversed(list(a.descriptions.items()))), name="other")
    assert rev.hash == a.hash
    # nor on the process (no use of Python's randomised hash())
    code = "from emocap.prompts import load_prompt_set; print(load_prompt_set('basic8').hash)"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == a.hash


def test_hash_changes_with_any_content_change():
    base = load_prompt_set("basic8")
    hashes = {base.hash}
    templates = list(base.templates)
    for i in range(len(templates)):
        changed = templates.copy()
        changed[i] = changed[i].replace("{}", "{} ")  # a one-character change
        hashes.add(PromptSet(tuple(changed), base.descriptions, name=base.name).hash)
    for key in base.descriptions:
        desc = dict(base.descriptions)
        desc[key] = desc[key][:-1] + (desc[key][-1] + "!",)
        hashes.add(PromptSet(base.templates, desc, name=base.name).hash)
    hashes.add(PromptSet(base.templates[:-1], base.descriptions).hash)  # a template removed
    hashes.add(PromptSet(base.templates, {}).hash)  # descriptions removed
    hashes.add(base.without_descriptions().hash)  # descriptions switched off
    expected = 1 + len(templates) + len(base.descriptions) + 3
    assert len(hashes) == expected


def test_texts_for_fills_label_as_given():
    ps = PromptSet(("a photo of {}.", "{}"), {})
    assert ps.texts_for("happy") == ["a photo of happy.", "happy"]
    assert ps.texts_for("Joy Face") == ["a photo of Joy Face.", "Joy Face"]
    assert ps.texts_for("quux") == ["a photo of quux.", "quux"]
    # braces in a label are not format fields
    assert ps.texts_for("{0}") == ["a photo of {0}.", "{0}"]


def test_descriptions_matched_through_taxonomy():
    ps = PromptSet(("a face showing {}.",), {"happiness": ("smiling mouth",), "angry": ("frown",)})
    assert ps.texts_for("happy") == ["a face showing happy.", "smiling mouth"]
    assert ps.texts_for("happiness") == ["a face showing happiness.", "smiling mouth"]
    assert ps.texts_for("joy")[-1] == "smiling mouth"
    assert ps.texts_for("anger") == ["a face showing anger.", "frown"]
    assert ps.texts_for("rage")[-1] == "frown"
    # labels without a matching description get templates only
    assert ps.texts_for("sadness") == ["a face showing sadness."]
    assert ps.texts_for("quux") == ["a face showing quux."]


def test_bundled_descriptions_serve_synonyms():
    ps = load_prompt_set()
    desc = _bundled_json("basic8", "descriptions")["descriptions"]
    texts = ps.texts_for("happy")
    assert texts[: len(ps.templates)] == [t.replace("{}", "happy") for t in ps.templates]
    assert texts[len(ps.templates):] == desc["happiness"]
    assert ps.texts_for("rage")[len(ps.templates):] == desc["anger"]


def test_without_descriptions():
    ps = load_prompt_set()
    bare = ps.without_descriptions()
    assert bare.templates == ps.templates
    assert bare.texts_for("happy") == [t.replace("{}", "happy") for t in ps.templates]
    assert bare.descriptions_for("happiness") == []
    assert bare.hash != ps.hash and bare.name != ps.name


def test_descriptions_only_set():
    ps = PromptSet((), {"happiness": ("a smile",)})
    assert ps.texts_for("happy") == ["a smile"]
    with pytest.raises(ValueError, match="quux"):
        ps.texts_for("quux")


def test_load_from_json_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"templates": ["face: {}", "{} face"], "descriptions": {"sad": ["tears"]}}))
    ps = load_prompt_set(path)
    assert ps.name == "mine"  # the file stem when the file has no name
    assert ps.texts_for("sadness") == ["face: sadness", "sadness face", "tears"]
    assert load_prompt_set(str(path)) == ps


def test_load_from_list_and_dict():
    ps = load_prompt_set(["a {} face", "{}"])
    assert ps.texts_for("joy") == ["a joy face", "joy"]
    assert ps.descriptions == {}
    d = load_prompt_set({"name": "d", "templates": ["{}!"], "descriptions": {"fear": ["wide eyes"]}})
    assert d.name == "d" and d.texts_for("scared") == ["scared!", "wide eyes"]
    assert load_prompt_set(d) is d


def test_add_description_set():
    ps = load_prompt_set(["{}"], descriptions={"happy": ["grin"]})
    assert ps.texts_for("happiness") == ["happiness", "grin"]
    ps2 = load_prompt_set(["{}"], descriptions="basic8")
    assert ps2.descriptions == load_prompt_set("basic8").descriptions


def test_round_trip_dict():
    ps = load_prompt_set()
    back = PromptSet.from_dict(json.loads(json.dumps(ps.to_dict())))
    assert back.hash == ps.hash == ps.to_dict()["hash"]
    assert back.texts_for("happy") == ps.texts_for("happy")


@pytest.mark.parametrize("bad", ["a photo of a face.", "{} and {}", "{0}"])
def test_template_without_single_placeholder(bad, tmp_path):
    with pytest.raises(ValueError, match="placeholder"):
        PromptSet((bad,))
    with pytest.raises(ValueError):
        load_prompt_set([bad])
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"templates": [bad]}))
    with pytest.raises(ValueError):
        load_prompt_set(path)


def test_empty_prompt_set():
    with pytest.raises(ValueError):
        PromptSet(())


def test_malformed_json_names_file(tmp_path):
    path = tmp_path / "broken_prompts.json"
    path.write_text('{"templates": ["a {} face",')
    with pytest.raises(ValueError) as info:
        load_prompt_set(path)
    assert "broken_prompts.json" in str(info.value)


@pytest.mark.parametrize(
    "content",
    [
        '["a {} face"]',  # not an object
        '{"templates": "a {} face"}',  # not a list
        '{"templates": ["{}"], "descriptions": {"happy": "a smile"}}',  # sentences not a list
    ],
)
def test_wrong_structure_names_file(tmp_path, content):
    path = tmp_path / "odd_prompts.json"
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        load_prompt_set(path)
    assert "odd_prompts.json" in str(info.value)


def test_missing_file(tmp_path):
    missing = tmp_path / "no_such_prompts.json"
    with pytest.raises(FileNotFoundError, match="no_such_prompts.json"):
        load_prompt_set(missing)
    with pytest.raises(FileNotFoundError, match="no_such_desc.json"):
        load_prompt_set(["{}"], descriptions=str(tmp_path / "no_such_desc.json"))
