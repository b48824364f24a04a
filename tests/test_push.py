"""``emocap push``: the dry run writes exactly the upload (model files + a generated card), which loads three ways
(emocap ``local-dir:``, plain open_clip ``local-dir:``, emocap ``hf-hub:`` from an offline hub cache); the card
parses with huggingface_hub's ``ModelCard`` and its model-index numbers equal the result JSONs; the real upload
goes through ``HfApi`` (recorded here, never on the network) and fails with one line when the hub is unreachable.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import open_clip
import pytest
from conftest import fake_hub_cache
import torch
from huggingface_hub import ModelCard

from emocap import ZeroShotClassifier
from emocap.cli import main
from emocap.model_card import card_records, model_index, read_result_files, write_model_card
from emocap.models import CONFIG_NAME, WEIGHTS_NAME
from emocap.publish import PublishError, stage_upload

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = REPO_ROOT / "model_cards" / "results" / "emocap-default"
REQUIRED_TAGS = {"emotion-recognition", "facial-expression-recognition", "zero-shot-image-classification", "clip",
                 "emocap"}


def _result(model_id="tiny", benchmark="ferplus", split="test", war=0.61234, uar=0.45678, f1=0.4321, **extra):
    return {"model_id": model_id, "benchmark": benchmark, "split": split, "protocol": "zeroshot", "view": None,
            "labels": ["neutral", "happiness"], "prompt_set": "basic8", "prompt_hash": "abc", "limit": None,
            "slices": None, "root": "/data/ferplus", "n": 100, "war": war, "uar": uar, "macro_f1": f1, "ece": 0.1,
            "timestamp": "2026-01-01T00:00:00+00:00", **extra}


@pytest.fixture
def result_files(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    records = [_result(), _result(split="valid", war=0.7, uar=0.55, f1=0.5)]
    for i, r in enumerate(records):
        (folder / f"r{i}.json").write_text(json.dumps(r))
    return sorted(folder.glob("*.json"))


def _check_index_equals_results(card_data: dict, records) -> None:
    """The card's model-index, as huggingface_hub parses it, has one result per run (none merged) and its numbers
    are the result files' numbers."""
    chosen = card_records(records)
    parsed = card_data["model-index"][0]["results"]
    assert parsed == model_index(chosen, card_data["model-index"][0]["name"])[0]["results"]
    got = sorted(tuple(m["value"] for m in r["metrics"][:3]) for r in parsed)
    expected = sorted((round(100 * r["war"], 2), round(100 * r["uar"], 2), round(100 * r["macro_f1"], 2))
                      for r in chosen)
    assert got == expected and len(parsed) == len(chosen)


def _python_blocks(text: str):
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _offline_hub(monkeypatch, cache: Path) -> None:
    import huggingface_hub.constants as hc

    for name, value in (("HF_HUB_OFFLINE", "1"), ("HF_HUB_CACHE", str(cache)), ("HF_HOME", str(cache.parent))):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))


def test_dry_run_writes_exactly_the_upload_and_a_parsable_card(tiny_model_dir, result_files, tmp_path, capsys):
    out = tmp_path / "upload"
    assert main(["push", str(tiny_model_dir), "org/tiny-emotions", "--dry-run", str(out),
                 "--results", *map(str, result_files)]) == 0
    assert "3 files" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME, "README.md"])
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        assert (out / name).read_bytes() == (tiny_model_dir / name).read_bytes()
    card = ModelCard.load(out / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "open_clip" and data["pipeline_tag"] == "zero-shot-image-classification"
    assert data["license"] == "apache-2.0" and REQUIRED_TAGS <= set(data["tags"])
    assert data["model-index"][0]["name"] == "tiny-emotions"
    _check_index_equals_results(data, read_result_files(result_files))
    text = card.text
    for needle in ('ZeroShotClassifier.from_pretrained("hf-hub:org/tiny-emotions")',
                   'open_clip.create_model_and_transforms("hf-hub:org/tiny-emotions")',
                   "check the terms of your data", "## Limitations", "| 61.23 | 45.68 | 43.21 |",
                   "`emocap eval --model tiny --root /data/ferplus --split valid --prompts basic8`", "label set `basic8`"):
        assert needle in text, needle
    # a rerun into the same folder is a previous dry run of this model: allowed, same files
    assert main(["push", str(tiny_model_dir), "org/tiny-emotions", "--dry-run", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME, "README.md"])
    assert "model-index" not in ModelCard.load(out / "README.md").data.to_dict()  # no results given this time


def test_dry_run_folder_loads_three_ways(tiny_model_dir, tmp_path, monkeypatch, astronaut_image):
    out = tmp_path / "upload"
    stage_upload(str(tiny_model_dir), out, "org/tiny-emotions")
    labels = ["joy", "calm", "anger"]
    reference = ZeroShotClassifier.from_pretrained(str(tiny_model_dir), labels=labels).predict_proba(astronaut_image)
    # 1. emocap, local-dir:
    local = ZeroShotClassifier.from_pretrained(f"local-dir:{out}", labels=labels).predict_proba(astronaut_image)
    np.testing.assert_allclose(local, reference, atol=1e-6)
    # 2. plain open_clip, local-dir:
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    model.eval()
    x = preprocess(astronaut_image).unsqueeze(0)
    mine = ZeroShotClassifier.from_pretrained(str(tiny_model_dir)).clip
    with torch.no_grad():
        assert torch.allclose(model.encode_image(x), mine.encode_image(x), atol=1e-6)
    # 3. emocap, hf-hub: from the hub client's offline cache
    cache = tmp_path / "hf" / "hub"
    fake_hub_cache(out, cache, "org/tiny-emotions")
    _offline_hub(monkeypatch, cache)
    hub = ZeroShotClassifier.from_pretrained("hf-hub:org/tiny-emotions", labels=labels).predict_proba(astronaut_image)
    np.testing.assert_allclose(hub, reference, atol=1e-6)


def test_card_snippets_run_against_the_hub_cache(tiny_model_dir, tmp_path, monkeypatch, astronaut_image, capsys):
    """The card's Python snippets (emocap and plain open_clip) run as printed, on the published files."""
    folder = tmp_path / "trained"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    config["emocap"].update(labels=["neutral", "happiness", "anger"], grayscale=True,
                            prompts={"name": "mine", "templates": ["a face showing {}.", "{}."]})
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    out = tmp_path / "upload"
    stage_upload(str(folder), out, "org/tiny-emotions")
    cache = tmp_path / "hf" / "hub"
    fake_hub_cache(out, cache, "org/tiny-emotions")
    _offline_hub(monkeypatch, cache)
    work = tmp_path / "work"
    work.mkdir()
    astronaut_image.save(work / "face.jpg")
    monkeypatch.chdir(work)
    blocks = _python_blocks((out / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) == 2
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.strip().splitlines()
    scores = json.loads(printed[-1].replace("'", '"'))  # the open_clip snippet's {label: probability}
    assert list(scores) == ["neutral", "happiness", "anger"]
    assert abs(sum(scores.values()) - 1) < 1e-5


def test_dry_run_refuses_unsafe_output_and_bad_input(tiny_model_dir, tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(PublishError, match="not empty and not a previous dry run"):
        stage_upload(str(tiny_model_dir), busy, "org/x")
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    # a link with an upload name inside the folder is refused, so nothing is written through it
    linked = tmp_path / "linked"
    linked.mkdir()
    outside = tmp_path / "outside.md"
    outside.write_text("keep")
    (linked / "README.md").symlink_to(outside)
    with pytest.raises(PublishError, match="not empty"):
        stage_upload(str(tiny_model_dir), linked, "org/x")
    assert outside.read_text() == "keep"
    # another model's dry run is not this model's
    other = tmp_path / "other"
    other.mkdir()
    (other / CONFIG_NAME).write_text("{}")
    with pytest.raises(PublishError, match="not a previous dry run"):
        stage_upload(str(tiny_model_dir), other, "org/x")
    with pytest.raises(PublishError, match="model folder itself"):
        stage_upload(str(tiny_model_dir), tiny_model_dir, "org/x")
    for bad in ("noslash", "org/", "a/b/c", "org/../x", "-org/x"):
        with pytest.raises(PublishError, match="expected ORG/NAME"):
            stage_upload(str(tiny_model_dir), tmp_path / "new", bad)
    with pytest.raises(PublishError, match="several models"):
        stage_upload(str(tiny_model_dir), tmp_path / "new", "org/x", [_result("a"), _result("b")])
    assert not (tmp_path / "new").exists()
    # on the command line: one error line naming the file, exit code 2
    broken = tmp_path / "broken.json"
    broken.write_text('{"model_id": "x"}')
    assert main(["push", str(tiny_model_dir), "org/x", "--dry-run", str(tmp_path / "o"), "--results",
                 str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(broken) in err and "not an emocap eval result" in err
    assert main(["push", str(tmp_path / "nothing"), "org/x", "--dry-run", str(tmp_path / "o")]) == 2
    assert "not a model folder" in capsys.readouterr().err


class _RecordingApi:
    """Stands in for ``huggingface_hub.HfApi``: records the calls and the files of the uploaded folder."""

    calls: list = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, private=False, exist_ok=False):
        self.calls.append(("create_repo", repo_id, private, exist_ok, self.token))

    def upload_folder(self, repo_id, folder_path, allow_patterns, commit_message):
        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        self.calls.append(("upload_folder", repo_id, files, tuple(allow_patterns)))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()


def test_push_uploads_what_the_dry_run_writes(tiny_model_dir, result_files, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    _RecordingApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", _RecordingApi)
    args = [str(tiny_model_dir), "org/tiny-emotions", "--results", *map(str, result_files)]
    assert main(["push", *args, "--private", "--token", "hf_test"]) == 0
    assert "commit/abc" in capsys.readouterr().out
    (create, upload) = _RecordingApi.calls
    assert create == ("create_repo", "org/tiny-emotions", True, True, "hf_test")
    assert main(["push", *args, "--dry-run", str(tmp_path / "dry")]) == 0
    dry = {p.name: p.read_bytes() for p in (tmp_path / "dry").iterdir()}
    assert upload[1] == "org/tiny-emotions" and upload[2] == dry


def test_unreachable_hub_is_one_error_line(tiny_model_dir, tmp_path, monkeypatch, capsys):
    _offline_hub(monkeypatch, tmp_path / "hf" / "hub")
    assert main(["push", str(tiny_model_dir), "org/tiny-emotions", "--token", "hf_test"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("emocap push: error: upload to hf-hub:org/tiny-emotions failed (")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_default_model_card_from_its_result_files(tmp_path):
    """The embedded model with its real result JSONs; the committed card is this command's output."""
    out = tmp_path / "upload"
    assert main(["push", "default", "emocap/emocap-default", "--dry-run", str(out), "--results", str(DEFAULT_RESULTS),
                 "--notes", str(REPO_ROOT / "model_cards" / "emocap-default.notes.md")]) == 0
    text = (out / "README.md").read_text(encoding="utf-8")
    data = ModelCard.load(out / "README.md").data.to_dict()
    records = read_result_files([DEFAULT_RESULTS])
    assert len(records) == len(list(DEFAULT_RESULTS.glob("*.json")))
    _check_index_equals_results(data, records)
    assert data["datasets"] == ["ferplus", "fer2013"] and "research use only" in text
    assert "| FER+ | test | zeroshot | basic8 | 3137 | 77.65 | 57.29 | 56.95 | `emocap eval --root ../shared/data/ferplus` |" in text
    for committed in (REPO_ROOT / "model_cards" / "emocap-default.md", REPO_ROOT / "emocap" / "default_model" / "README.md"):
        assert committed.read_text(encoding="utf-8") == text, f"{committed} is not the card `emocap push` makes"


def test_trained_folder_card_reports_validation(tiny_model_dir, tmp_path):
    folder = tmp_path / "final"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    config["emocap"]["validation"] = {"war": 0.81234, "uar": 0.5, "split": "valid"}
    config["emocap"]["training"] = {"config": {"model": "emocap-tiny", "epochs": 2, "data": {"train_shards": "s"}},
                                    "global_step": 12, "epoch": 2}
    (folder / CONFIG_NAME).write_text(json.dumps(config))
    card = write_model_card(folder)
    text = card.read_text(encoding="utf-8")
    assert "WAR 81.23, UAR 50.0" in text and "- training data: `s`" in text
    assert f'from_pretrained("local-dir:{folder}")' in text
    assert ModelCard.load(card).data.to_dict()["library_name"] == "open_clip"


def test_dry_run_carries_learned_prompts_and_drops_them_when_gone(tiny_model_dir, tmp_path):
    from safetensors.torch import save_file

    from emocap.models import EXTRA_TENSORS_NAME

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    save_file({"ctx": torch.zeros(4, 8)}, str(folder / EXTRA_TENSORS_NAME))
    out = tmp_path / "upload"
    names = [p.name for p in stage_upload(str(folder), out, "org/x")]
    assert names == [CONFIG_NAME, WEIGHTS_NAME, EXTRA_TENSORS_NAME, "README.md"]
    assert (out / EXTRA_TENSORS_NAME).read_bytes() == (folder / EXTRA_TENSORS_NAME).read_bytes()
    (folder / EXTRA_TENSORS_NAME).unlink()
    stage_upload(str(folder), out, "org/x")
    assert sorted(p.name for p in out.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME, "README.md"])
