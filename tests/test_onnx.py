"""The ONNX runtime: ``emocap export onnx`` and ``ZeroShotClassifier(..., runtime="onnx")`` on the tiny test model
(random weights: the towers must agree with torch, not be accurate)."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("onnxruntime", reason="the onnx extra (pip install 'emocap[onnx]') is not installed")

import emocap
from emocap.classifier import ZeroShotClassifier
from emocap.cli import main
from emocap.model_files import WEIGHTS_NAME, default_model_dir
from emocap.models import create_model, save_model
from emocap.onnx_export import export_onnx
from emocap.onnx_files import MANIFEST_NAME, OnnxExportError, StaleExportError


@pytest.fixture(scope="module")
def onnx_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return export_onnx(str(tiny_model_dir), tmp_path_factory.mktemp("export") / "tiny-onnx")


@pytest.fixture(scope="module")
def images():
    rng = np.random.RandomState(7)
    return [Image.fromarray(rng.randint(0, 256, (40 + 6 * i, 36 + 3 * i, 3), dtype=np.uint8)) for i in range(5)]


@pytest.fixture(scope="module")
def torch_clf(tiny_model_dir):
    return ZeroShotClassifier.from_pretrained(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="module")
def onnx_clf(onnx_dir):
    return ZeroShotClassifier.from_pretrained(str(onnx_dir), runtime="onnx")


def test_export_writes_towers_config_and_manifest(onnx_dir, tiny_model_dir):
    manifest = json.loads((onnx_dir / MANIFEST_NAME).read_text())
    for name in ("image.onnx", "text.onnx", "open_clip_config.json"):
        assert (onnx_dir / name).is_file(), name
    assert manifest["source"]["path"] == str(tiny_model_dir.resolve())
    assert set(manifest["source"]["files"]) == {"open_clip_config.json", WEIGHTS_NAME}
    assert manifest["towers"]["image"]["shape"] == [3, 32, 32]
    assert not any(p.name.startswith(".") for p in onnx_dir.parent.iterdir())  # no staging folder left


def test_features_match_torch(torch_clf, onnx_clf, images):
    assert np.abs(torch_clf.encode_images(images) - onnx_clf.encode_images(images)).max() < 1e-4
    assert isinstance(onnx_clf.text_features, np.ndarray)  # the ONNX runtime's features are numpy arrays
    assert np.allclose(torch_clf.text_features.numpy(), onnx_clf.text_features, atol=1e-4)
    texts = ["a face.", "a photo of a face showing quiet, barely visible contempt and a little boredom."]
    assert np.allclose(torch_clf.encode_texts(texts).numpy(), onnx_clf.encode_texts(texts), atol=1e-4)
    assert onnx_clf.onnx_towers.logit_scale == pytest.approx(float(torch_clf.clip.logit_scale.detach().exp()))


def test_predictions_identical(torch_clf, onnx_clf, images):
    for batch_size in (1, 3):
        expected = torch_clf.predict(images, batch_size=batch_size)
        got = onnx_clf.predict(images, batch_size=batch_size)
        assert [[p["label"] for p in ranked] for ranked in got] == [[p["label"] for p in ranked] for ranked in expected]
        assert np.allclose([[p["score"] for p in r] for r in got], [[p["score"] for p in r] for r in expected],
                           atol=1e-5)


def test_other_labels_go_through_the_onnx_text_tower(tiny_model_dir, onnx_dir, images):
    labels = ["joy", "rage", "calm"]
    a = ZeroShotClassifier.from_pretrained(str(tiny_model_dir), labels=labels, device="cpu").predict_proba(images)
    b = ZeroShotClassifier.from_pretrained(str(onnx_dir), labels=labels, runtime="onnx").predict_proba(images)
    assert b.shape == (len(images), 3) and np.abs(a - b).max() < 1e-5


def test_labels_outside_the_taxonomy_are_bridged_the_same_on_both_runtimes(tiny_model_dir, onnx_dir, images):
    labels = ["elated", "a forced smile", "rage"]  # two outside the taxonomy: the word bridge acts on them
    t = ZeroShotClassifier.from_pretrained(str(tiny_model_dir), labels=labels, device="cpu")
    o = ZeroShotClassifier.from_pretrained(str(onnx_dir), labels=labels, runtime="onnx")
    assert o.bridge_id == t.bridge_id != "off"
    assert isinstance(o.class_text_features(), np.ndarray)
    assert np.allclose(t.class_text_features().numpy(), o.class_text_features(), atol=1e-4)
    assert np.abs(t.predict_proba(images) - o.predict_proba(images)).max() < 1e-5
    plain = ZeroShotClassifier.from_pretrained(str(onnx_dir), labels=labels, runtime="onnx", word_bridge=False)
    assert not np.allclose(plain.class_text_features()[:2], o.class_text_features()[:2], atol=1e-3)


def test_stale_export_refused(tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    out = export_onnx(str(model), tmp_path / "model-onnx")
    ZeroShotClassifier.from_pretrained(str(out), runtime="onnx")  # fresh: loads
    torch.manual_seed(99)
    save_model(create_model("emocap-tiny"), model, meta={"labels": "basic8", "grayscale": False})  # retrained
    with pytest.raises(StaleExportError, match=WEIGHTS_NAME):
        ZeroShotClassifier.from_pretrained(str(out), runtime="onnx")


def test_changed_onnx_file_and_missing_manifest_refused(onnx_dir, tiny_model_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(onnx_dir, copy)
    data = bytearray((copy / "image.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "image.onnx").write_bytes(bytes(data))
    with pytest.raises(OnnxExportError, match="image.onnx: sha256 differs"):
        ZeroShotClassifier.from_pretrained(str(copy), runtime="onnx")
    with pytest.raises(OnnxExportError, match="export it first"):
        ZeroShotClassifier.from_pretrained(str(tiny_model_dir), runtime="onnx")  # a model folder, not an export


def test_export_never_writes_into_the_package_or_over_other_folders(tiny_model_dir, tmp_path):
    target = default_model_dir() / "onnx"
    with pytest.raises(OnnxExportError, match="inside the installed emocap package"):
        export_onnx(str(tiny_model_dir), target)
    assert not target.exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(OnnxExportError, match="not an emocap ONNX export"):
        export_onnx(str(tiny_model_dir), tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_cli_export_then_classify_with_onnx(tiny_model_dir, tmp_path, images, capsys):
    paths = []
    for i, image in enumerate(images[:3]):
        paths.append(str(tmp_path / f"face{i}.png"))
        image.save(paths[-1])
    out = tmp_path / "cli-onnx"
    assert main(["export", "onnx", str(tiny_model_dir), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    results = {}
    for runtime, model in (("torch", tiny_model_dir), ("onnx", out)):
        assert main(["classify", *paths, "--runtime", runtime, "--model", str(model), "--json", "--device", "cpu"]) == 0
        results[runtime] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [[p["label"] for p in r["predictions"]] for r in results["onnx"]] == \
        [[p["label"] for p in r["predictions"]] for r in results["torch"]]
    assert main(["classify", paths[0], "--runtime", "onnx"]) == 2  # no --model
    assert "--model ONNX_DIR" in capsys.readouterr().err


def test_light_install_does_not_import_onnx():
    """Only the ONNX modules import onnx/onnxruntime/tokenizers, and only inside functions (the light install lacks
    them)."""
    package = Path(emocap.__file__).parent
    for path in package.rglob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in ("onnx", "onnxruntime", "tokenizers") for n in names), path


def test_default_out_dir_is_named_after_the_model(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", "onnx", str(tiny_model_dir)]) == 0
    out = tmp_path / f"{tiny_model_dir.name}-onnx"
    assert (out / MANIFEST_NAME).is_file()
    assert main(["export", "onnx", str(tiny_model_dir)]) == 0  # a second export replaces the first
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
