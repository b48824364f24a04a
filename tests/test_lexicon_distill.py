"""WordNet's emotion words distilled into a model's token embeddings (train/lexicon_distill.py)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from emocap import ZeroShotClassifier
from emocap.models import load_model
from emocap.train import lexicon_distill as ld

WORDS = ["wrathful", "joyous", "terror-stricken"]


def _shards(folder: Path) -> Path:
    """One caption shard: a sample with a .txt caption and a .json with global/local/summary captions."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "captions-000000.tar", "w") as tar:
        for name, data in [("s0.txt", b"a face that looks angry"),
                           ("s0.json", json.dumps({"captions": {"global": "a calm face", "local": ["brows lowered"],
                                                                "summary": "overall sadness"}}).encode())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return folder


def test_caption_texts_and_protected_tokens(tmp_path, tiny_model):
    texts = ld.caption_texts(_shards(tmp_path / "shards"))
    assert texts == sorted(["a face that looks angry", "a calm face", "brows lowered", "overall sadness"])
    ids = ld.protected_tokens(tiny_model.tokenizer, texts)
    assert int(tiny_model.tokenizer(["angry"])[0, 1]) in ids.tolist()
    with pytest.raises(FileNotFoundError, match="no caption shards"):
        ld.caption_texts(tmp_path)


def test_distillation_moves_only_unseen_tokens_and_draws_words_to_their_emotions(tmp_path, tiny_model_dir):
    out = ld.distill(str(tiny_model_dir), _shards(tmp_path / "shards"), tmp_path / "out", epochs=5, lr=1e-2,
                     batch_size=8, progress=False, only=WORDS)
    before, after = load_model(str(tiny_model_dir)), load_model(str(out))
    changed = [k for k, v in before.clip.state_dict().items() if not torch.equal(v, after.clip.state_dict()[k])]
    assert changed == ["token_embedding.weight"]
    rows = (before.clip.token_embedding.weight != after.clip.token_embedding.weight).any(dim=1).nonzero().flatten()
    protected = set(ld.protected_tokens(before.tokenizer, ld.known_texts(tmp_path / "shards")).tolist())
    assert len(rows) > 0 and not protected.intersection(rows.tolist())
    assert json.loads((out / "open_clip_config.json").read_text())["emocap"]["lexicon_distill"]["words"] == 3

    canonical = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]

    def nearest(em):  # the canonical class nearest to each word's class feature (own tower, no bridge)
        clf = ZeroShotClassifier(em, word_bridge=False, device="cpu")
        sims = clf.class_text_features(WORDS) @ clf.class_text_features(canonical).T
        return [canonical[i] for i in sims.argmax(1).tolist()]
    assert nearest(before) != ["anger", "happiness", "fear"]  # a random tower does not know them
    assert nearest(after) == ["anger", "happiness", "fear"]
    assert ZeroShotClassifier(after, word_bridge=False, device="cpu").class_text_features(["anger"]).tolist() == \
        ZeroShotClassifier(before, word_bridge=False, device="cpu").class_text_features(["anger"]).tolist()


def _run(args, env=None):
    return subprocess.run([sys.executable, "-m", "emocap.train.lexicon_distill", *args, "--no-progress"],
                          capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600)


def test_a_killed_run_resumes_to_the_same_weights(tmp_path, tiny_model_dir):
    shards = _shards(tmp_path / "shards")
    common = ["--model", str(tiny_model_dir), "--captions", str(shards), "--epochs", "2", "--batch-size", "8",
              "--lr", "0.03", "--words", *WORDS]
    whole = _run(common + ["--out", str(tmp_path / "whole")])
    assert whole.returncode == 0, whole.stderr
    killed = _run(common + ["--out", str(tmp_path / "killed")], env={"EMOCAP_TRAIN_FAULT": "kill:step:4"})
    assert killed.returncode != 0 and (tmp_path / "killed" / ld.CHECKPOINT_NAME).exists()  # epoch 1 of 3 steps
    assert not (tmp_path / "killed" / "open_clip_model.safetensors").exists()
    resumed = _run(common + ["--out", str(tmp_path / "killed")])
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(str(tmp_path / "whole" / "open_clip_model.safetensors"))
    b = load_file(str(tmp_path / "killed" / "open_clip_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = _run(common[:-4] + ["--words", "joyous", "--out", str(tmp_path / "killed")])
    assert other.returncode == 2 and "other settings" in other.stderr


def test_the_embedded_default_reads_wordnet_words_in_plain_open_clip_as_emocap_does():
    """The shipped default was distilled: plain open_clip, with no bridge, puts WordNet's emotion words near their
    emotions, close to emocap's bridged reading; canonical names are exactly as before the distillation."""
    import open_clip

    from emocap.model_files import default_model_dir

    folder = default_model_dir()
    meta = json.loads((folder / "open_clip_config.json").read_text())["emocap"]
    assert meta["lexicon_distill"]["words"] > 3000
    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    model.eval()
    templates = meta["prompts"]["templates"]

    def plain(label):
        with torch.no_grad():
            feats = model.encode_text(tokenizer([t.format(label) for t in templates]), normalize=True)
        return F.normalize(feats.mean(0), dim=-1)

    emocap = ZeroShotClassifier.from_pretrained()
    canonical = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
    classes = emocap.class_text_features(canonical).float()
    for word, emotion in [("wrathful", "anger"), ("joyous", "happiness"), ("woeful", "sadness"),
                          ("terror-stricken", "fear"), ("aghast", "surprise"), ("serene", "neutral")]:
        own = plain(word)
        assert canonical[int((classes @ own).argmax())] == emotion, word
        assert float(own @ emocap.class_text_features([word])[0].float()) > 0.95, word
    # a word made only of tokens the captions use ("cheer" + "less") could not be taught: plain open_clip reads
    # it as its parts, emocap's bridge still draws it to its WordNet emotion at run time
    assert canonical[int((classes @ plain("cheerless")).argmax())] == "happiness"
    assert canonical[int((classes @ emocap.class_text_features(["cheerless"])[0].float()).argmax())] == "sadness"
    # the canonical names' template features did not move: their tokens were protected
    off = ZeroShotClassifier.from_pretrained(word_bridge=False)
    templates_only = off.class_text_features(["happiness"], prompt_set=off.prompt_set.without_descriptions())
    assert float(plain("happiness") @ templates_only[0].float()) > 0.999
