"""Hub round trip without a network: a model placed in a hub cache loads by ``hf-hub:`` id offline, in emocap and
in plain open_clip, and ``push_to_hub`` uploads exactly the model files."""

from __future__ import annotations


import open_clip
import pytest
from conftest import fake_hub_cache
import torch

from emocap import ZeroShotClassifier
from emocap.hub import push_to_hub
from emocap.models import ModelLoadError, load_model


def test_hf_hub_id_loads_from_cache_offline(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    repo = fake_hub_cache(tiny_model_dir, tmp_path, "emocap-test/tiny")
    em = load_model(f"hf-hub:{repo}", cache_dir=str(tmp_path))
    local = load_model(str(tiny_model_dir))
    x = torch.rand(2, 3, local.image_size, local.image_size)
    with torch.no_grad():
        assert torch.allclose(em.model.encode_image(x), local.model.encode_image(x))
    clf = ZeroShotClassifier.from_pretrained(f"hf-hub:{repo}", labels=["joy", "calm"])
    assert clf.predict_proba(torch.rand(16, 16).numpy()).shape == (1, 2)
    # plain open_clip resolves the same hub id from the same cache
    model, _, _ = open_clip.create_model_and_transforms(f"hf-hub:{repo}", cache_dir=str(tmp_path))
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.encode_image(x), local.model.encode_image(x), atol=1e-6)


class _RecordingApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, private=False, exist_ok=False):
        self.calls.append(("create_repo", repo_id, private, exist_ok))

    def upload_folder(self, repo_id, folder_path, allow_patterns, commit_message):
        self.calls.append(("upload_folder", repo_id, folder_path, tuple(allow_patterns)))
        return "https://example.invalid/commit/1"


def test_push_to_hub_uploads_model_files_only(tiny_model_dir, tmp_path):
    api = _RecordingApi()
    url = push_to_hub(tiny_model_dir, "org/emotion-model", api=api)
    assert url.endswith("/commit/1")
    assert api.calls[0] == ("create_repo", "org/emotion-model", False, True)
    kind, repo, folder, patterns = api.calls[1]
    assert folder == str(tiny_model_dir) and "*.safetensors" in patterns and not any(p.endswith(".bin") for p in patterns)
    with pytest.raises(ModelLoadError, match="missing open_clip_model.safetensors"):
        (tmp_path / "open_clip_config.json").write_text("{}")
        push_to_hub(tmp_path, "org/x", api=api)
