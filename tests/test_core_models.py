"""Tests for emocap.models: create, save (open_clip hub format), load by id, open_clip interoperability."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from emocap.models import (
    CONFIG_NAME, WEIGHTS_NAME, ModelLoadError, create_model, list_models, load_model, save_model,
)

TEXTS = ["a photo of a happy face.", "anger", "a face that shows surprise."]


@pytest.fixture(scope="module")
def trained_like():
    """A seeded tiny model with its weights perturbed away from the init, so that a random re-init differs."""
    torch.manual_seed(7)
    em = create_model("emocap-tiny")
    with torch.no_grad():
        for p in em.model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    em.model.eval()
    return em


@pytest.fixture(scope="module")
def saved(trained_like, tmp_path_factory):
    root = tmp_path_factory.mktemp("saved_models")
    fp32 = save_model(trained_like, root / "fp32", meta={"labels": ["joy", "rage"], "grayscale": True})
    fp16 = save_model(trained_like, root / "fp16", fp16=True)
    return {"fp32": fp32, "fp16": fp16}


@pytest.fixture(scope="module")
def loaded(saved):
    """Each saved model loaded once: fp32 by plain path and by local-dir:, fp16 by local-dir:."""
    return {
        "path": load_model(str(saved["fp32"])),
        "local-dir:": load_model("local-dir:" + str(saved["fp32"])),
        "fp16": load_model("local-dir:" + str(saved["fp16"])),
    }


def _image_batch(em, n=3):
    rng = np.random.RandomState(0)
    ims = [Image.fromarray(rng.randint(0, 256, (40 + 7 * i, 36, 3), dtype=np.uint8)) for i in range(n)]
    return torch.stack([em.preprocess(im) for im in ims])


@torch.no_grad()
def _features(em, x):
    return em.model.encode_image(x), em.model.encode_text(em.tokenizer(TEXTS))


def test_create_model_is_trainable_and_tiny():
    em = create_model("emocap-tiny")
    assert em.model.training
    assert em.image_size == 32
    assert sum(p.numel() for p in em.model.parameters()) < 5_000_000
    assert "emocap-tiny" in list_models()["architectures"]


def test_create_model_overrides():
    em = create_model("emocap-tiny", embed_dim=16, vision_cfg={"image_size": 48})
    assert em.image_size == 48
    assert em.model_cfg["vision_cfg"]["width"] == 8  # other nested keys kept
    with torch.no_grad():
        f = em.model.eval().encode_image(torch.zeros(1, 3, 48, 48))
    assert f.shape == (1, 16)


def test_unknown_architecture():
    with pytest.raises(ModelLoadError, match="no-such-arch"):
        create_model("no-such-arch")


def test_saved_folder_layout(saved):
    for folder in saved.values():
        assert (folder / WEIGHTS_NAME).is_file()
        cfg = json.loads((folder / CONFIG_NAME).read_text())
        assert {"model_cfg", "preprocess_cfg", "emocap"} <= set(cfg)
        assert cfg["model_cfg"]["embed_dim"] == 32
        assert not list(folder.glob("*.pt")) and not list(folder.glob("*.bin"))
    meta = json.loads((saved["fp32"] / CONFIG_NAME).read_text())["emocap"]
    assert meta == {"labels": ["joy", "rage"], "grayscale": True}
    # fp16 weights take about half the space
    ratio = (saved["fp16"] / WEIGHTS_NAME).stat().st_size / (saved["fp32"] / WEIGHTS_NAME).stat().st_size
    assert 0.45 < ratio < 0.6


@pytest.mark.parametrize("how", ["path", "local-dir:"])
def test_load_fp32_equals_original(trained_like, saved, loaded, how):
    em = loaded[how]
    assert em.path == saved["fp32"]
    assert not em.model.training and not any(m.training for m in em.model.modules())
    assert em.meta["labels"] == ["joy", "rage"] and em.grayscale is True
    assert all(p.dtype == torch.float32 for p in em.model.parameters())
    x = _image_batch(em)
    img_a, txt_a = _features(trained_like, x)
    img_b, txt_b = _features(em, x)
    torch.testing.assert_close(img_b, img_a, rtol=0, atol=1e-6)
    torch.testing.assert_close(txt_b, txt_a, rtol=0, atol=1e-6)
    torch.testing.assert_close(em.model.logit_scale, trained_like.model.logit_scale)


def test_load_config_file_path(saved):
    em = load_model(str(saved["fp32"] / CONFIG_NAME))
    assert em.path == saved["fp32"]


def test_load_fp16(trained_like, loaded):
    em = loaded["fp16"]
    assert not em.model.training
    assert all(p.dtype == torch.float32 for p in em.model.parameters())
    # weights are exactly the fp16-rounded originals
    orig = trained_like.model.state_dict()
    for k, v in em.model.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, orig[k].half().float(), rtol=0, atol=0, msg=k)
    x = _image_batch(em)
    img_a, txt_a = _features(trained_like, x)
    img_b, txt_b = _features(em, x)
    cos_i = torch.nn.functional.cosine_similarity(img_a, img_b)
    cos_t = torch.nn.functional.cosine_similarity(txt_a, txt_b)
    assert cos_i.min() > 0.99 and cos_t.min() > 0.99


def test_plain_open_clip_loads_the_same_model(saved, loaded):
    import open_clip

    em = loaded["path"]
    ref = "local-dir:" + str(saved["fp32"])
    model, _, preprocess = open_clip.create_model_and_transforms(ref)
    tokenizer = open_clip.get_tokenizer(ref)
    model.eval()
    rng = np.random.RandomState(3)
    ims = [Image.fromarray(rng.randint(0, 256, (50, 41, 3), dtype=np.uint8)) for _ in range(2)]
    x_oc = torch.stack([preprocess(im) for im in ims])
    x_em = torch.stack([em.preprocess(im) for im in ims])
    torch.testing.assert_close(x_oc, x_em)
    tok_oc, tok_em = tokenizer(TEXTS), em.tokenizer(TEXTS)
    assert torch.equal(tok_oc, tok_em)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(x_oc), em.model.encode_image(x_em), rtol=0, atol=1e-6)
        torch.testing.assert_close(model.encode_text(tok_oc), em.model.encode_text(tok_em), rtol=0, atol=1e-6)


def test_extra_tensors_round_trip(trained_like, tmp_path):
    prompts = torch.randn(4, 32)
    save_model(trained_like, tmp_path / "m", extra_tensors={"learned_prompts": prompts})
    em = load_model(str(tmp_path / "m"))
    torch.testing.assert_close(em.extra_tensors["learned_prompts"], prompts)
    json.dumps(em.meta)  # the metadata stays plain JSON: tensors never ride in it
    assert "extra_tensors" not in em.meta
    # saving a loaded model again keeps its extra tensors (they are the model's own, like its meta)
    again = load_model(str(save_model(em, tmp_path / "again")))
    torch.testing.assert_close(again.extra_tensors["learned_prompts"], prompts)
    assert not (save_model(em, tmp_path / "none", extra_tensors={}) / "emocap_extra.safetensors").exists()
    with pytest.raises(TypeError, match="plain JSON.*'bad'"):
        save_model(em, tmp_path / "bad", meta={"bad": prompts})


def test_config_without_weights_is_an_error(saved, tmp_path):
    folder = tmp_path / "no_weights"
    folder.mkdir()
    shutil.copy(saved["fp32"] / CONFIG_NAME, folder / CONFIG_NAME)
    with pytest.raises(ModelLoadError) as info:
        load_model(str(folder))
    msg = str(info.value)
    assert str(folder) in msg and "safetensors" in msg
    with pytest.raises(ModelLoadError):
        load_model("local-dir:" + str(folder))


def test_pickled_weights_are_never_loaded(saved, tmp_path, trained_like):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(saved["fp32"] / CONFIG_NAME, folder / CONFIG_NAME)
    torch.save(trained_like.model.state_dict(), folder / "open_clip_pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pickle"):
        load_model(str(folder))


def test_only_extra_tensors_is_not_a_model(saved, tmp_path, trained_like):
    folder = tmp_path / "extra_only"
    save_model(trained_like, folder, extra_tensors={"x": torch.zeros(2)})
    (folder / WEIGHTS_NAME).unlink()
    with pytest.raises(ModelLoadError, match="no safetensors weights"):
        load_model(str(folder))


def test_mismatched_weights(saved, tmp_path):
    folder = tmp_path / "mismatch"
    shutil.copytree(saved["fp32"], folder)
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    cfg["model_cfg"]["embed_dim"] = 16
    (folder / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="do not match"):
        load_model(str(folder))


def test_corrupt_weights_and_config(saved, tmp_path):
    folder = tmp_path / "corrupt"
    shutil.copytree(saved["fp32"], folder)
    data = (folder / WEIGHTS_NAME).read_bytes()
    (folder / WEIGHTS_NAME).write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError, match=WEIGHTS_NAME):
        load_model(str(folder))
    (folder / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ModelLoadError, match="malformed"):
        load_model(str(folder))


def test_folder_without_config(tmp_path):
    (tmp_path / "empty_model").mkdir()
    with pytest.raises(ModelLoadError, match=CONFIG_NAME):
        load_model(str(tmp_path / "empty_model"))


def test_missing_folder(tmp_path):
    missing = tmp_path / "no_such_model"
    for model_id in (str(missing), "local-dir:" + str(missing)):
        with pytest.raises(ModelLoadError) as info:
            load_model(model_id)
        assert "not found" in str(info.value) and "no_such_model" in str(info.value)


def test_architecture_name_without_weights():
    with pytest.raises(ModelLoadError) as info:
        load_model("emocap-tiny")
    msg = str(info.value)
    assert "emocap-tiny" in msg and "without trained weights" in msg and "create_model" in msg


def test_hub_offline_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="hf-hub:nobody/no-such-emocap-model"):
        load_model("hf-hub:nobody/no-such-emocap-model", cache_dir=str(tmp_path))


def test_open_clip_baselines_load_by_architecture_and_pretrained(tmp_path, monkeypatch):
    """Generic open_clip models: a local .safetensors of an architecture; hub tags fail clearly offline."""
    from safetensors.torch import save_file

    from emocap import ZeroShotClassifier
    from emocap.models import ModelLoadError, create_model, load_open_clip_model

    source = create_model("emocap-tiny")
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, str(weights))
    clf = ZeroShotClassifier.from_pretrained("emocap-tiny", pretrained=str(weights), labels=["joy", "calm"],
                                             device="cpu")
    assert clf.model_id == "emocap-tiny/tiny.safetensors" and not clf.model.grayscale
    loaded = load_open_clip_model("emocap-tiny", str(weights))  # (the classifier folds batch norms for speed)
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, source.model.state_dict()[name].float()), name
    assert clf.predict_proba(Image.new("RGB", (50, 50), (10, 200, 30))).shape == (1, 2)
    # a generic open_clip model keeps its own text tower for unknown words unless asked (emocap/word_bridge.py)
    assert clf.bridge_id == "off" and clf.bridged_labels(["elated", "calm"]) == []
    on = ZeroShotClassifier.from_pretrained("emocap-tiny", pretrained=str(weights), labels=["elated", "calm"],
                                            device="cpu", word_bridge=True)
    assert on.bridge_id != "off" and [b["label"] for b in on.bridged_labels()] == ["elated"]
    with pytest.raises(ModelLoadError, match="no pretrained tag 'nope'.*openai"):
        load_open_clip_model("ViT-B-16", "nope")
    with pytest.raises(ModelLoadError, match="no pretrained tag 'nope'"):
        ZeroShotClassifier.from_pretrained("open_clip:ViT-B-16/nope")  # the one-id form, as init_from takes it
    with pytest.raises(ModelLoadError, match="the form is open_clip:"):
        ZeroShotClassifier.from_pretrained("open_clip:ViT-B-16")
    with pytest.raises(ModelLoadError, match="unknown open_clip architecture"):
        load_open_clip_model("ViT-Q-99", "openai")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_open_clip_model("emocap-tiny", str(tmp_path / "missing.safetensors"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="cannot fetch hf-hub:timm/"):
        load_open_clip_model("ViT-B-16", "openai", cache_dir=str(tmp_path / "hub"))


def test_model_ids_are_parsed_in_one_place(tmp_path):
    from emocap.model_files import local_model_dir
    from emocap.model_ids import ModelId, parse_model_id

    cases = {None: ("default", ""), "default": ("default", ""), "hf-hub:org/repo": ("hf-hub", "org/repo"),
             "local-dir:/x/y": ("local-dir", "/x/y"), "open_clip:ViT-B-16/openai": ("open_clip", "ViT-B-16/openai"),
             "runs/best": ("path", "runs/best"), "C:/models/m": ("path", "C:/models/m")}
    for text, (scheme, value) in cases.items():
        parsed = parse_model_id(text)
        assert (parsed.scheme, parsed.value) == (scheme, value)
        assert str(parsed) == (text or "default") and parse_model_id(parsed) is parsed
    assert parse_model_id("open_clip:ViT-B-16/openai").arch_and_tag == ("ViT-B-16", "openai")
    with pytest.raises(ValueError, match="open_clip:<architecture>/<pretrained tag>"):
        parse_model_id("open_clip:ViT-B-16").arch_and_tag
    with pytest.raises(ModelLoadError, match="the form is open_clip"):
        load_model("open_clip:ViT-B-16")
    assert local_model_dir("hf-hub:org/repo") is None and local_model_dir(ModelId("default")) is not None


def test_a_model_folder_with_a_typo_key_names_the_file_and_the_key(tiny_model_dir, tmp_path):
    """Issue 17: a config key open_clip does not take was a TypeError traceback; now one ModelLoadError."""
    import json
    import shutil

    from emocap.models import ModelLoadError, load_model

    folder = tmp_path / "typo"
    shutil.copytree(tiny_model_dir, folder)
    config_file = folder / "open_clip_config.json"
    config = json.loads(config_file.read_text())
    config["model_cfg"]["text_cfg"]["widht"] = config["model_cfg"]["text_cfg"].pop("width")
    config_file.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"text_cfg\.widht") as caught:
        load_model(str(folder))
    assert str(config_file) in str(caught.value)
