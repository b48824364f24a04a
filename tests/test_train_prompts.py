"""MPA-FER soft prompts: encoding, training them (jointly and as a frozen-tower stage), and the classifier using them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from emocap import ZeroShotClassifier
from emocap.learned_prompts import LearnedPrompts, encode_soft_prompts, prompt_tokens
from emocap.models import create_model, load_model
from emocap.train.config import ConfigError, load_config
from emocap.train.image_tokens import encode_image_with_tokens
from emocap.train.loop import train
from emocap.train.prompt_learning import SoftPrompts

from test_train import _tiny_cfg  # tiny_shards: the shared fixture in conftest.py


def test_soft_prompt_with_word_embeddings_equals_the_tokenised_text():
    em = create_model("emocap-tiny")
    em.model.eval()
    tok = em.tokenizer
    ctx_ids = tok(["a face showing"])[0][1:4]
    ctx = em.model.token_embedding(ctx_ids).detach()
    with torch.no_grad():
        soft = encode_soft_prompts(em.model, prompt_tokens(tok, ["happiness", "sadness"], 3), ctx)
        plain = em.model.encode_text(tok(["a face showing happiness.", "a face showing sadness."]), normalize=True)
    assert torch.allclose(soft, plain, atol=1e-5)
    module = SoftPrompts(em.model, tok, ["happiness", "sadness"], n_ctx=3, init="a face showing")
    with torch.no_grad():
        assert torch.allclose(module(em.model), plain, atol=1e-5)
    per_class = SoftPrompts(em.model, tok, ["happiness", "sadness"], n_ctx=3, per_class=True, init="a face showing")
    assert per_class.ctx.shape == (2, 3, ctx.shape[1])
    lp = per_class.learned()
    assert lp.covers(["sadness", "happiness"]) and not lp.covers(["anger"])
    assert LearnedPrompts(ctx=ctx).covers(["any new word"])


def test_image_tokens_pool_like_encode_image():
    em = create_model("emocap-tiny")
    em.model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        pooled, tokens = encode_image_with_tokens(em.model, x)
        assert torch.allclose(pooled, em.model.encode_image(x, normalize=True), atol=1e-5)
    assert tokens.shape == (2, 1, 32)  # 32 px / 32 = one cell for the tiny ResNet


def test_prompt_training_saves_prompts_and_the_classifier_uses_them(tiny_shards, tmp_path):
    _, shards = tiny_shards
    joint = train(_tiny_cfg(shards, tmp_path / "joint", "prompt.weight=1.0", "prompt.align_weight=0.5",
                            "prompt.prototype_weight=0.5", "prompt.prototype_samples=32", "mixup.prob=0.5",
                            "loss.local_region=0.5", "max_steps=3"), progress=False)
    extra = load_file(str(joint / "emocap_extra.safetensors"))
    assert extra["prompt_ctx"].shape == (4, 32)
    em = load_model(str(joint))
    assert em.meta["learned_prompts"]["n_ctx"] == 4
    clf = ZeroShotClassifier(em)
    assert clf.learned_prompts is not None
    labels = clf.labels
    expected = LearnedPrompts(ctx=extra["prompt_ctx"]).text_features(em.model, em.tokenizer, labels)
    assert torch.allclose(clf.class_text_features(), expected, atol=1e-6)
    image = Image.fromarray(np.full((40, 40), 128, dtype=np.uint8))
    assert len(clf.predict([image])[0]) == len(labels)
    # eval result files say that learned prompts scored the classes (not the hand prompt set's hash)
    from emocap.eval.registry import get_benchmark
    from emocap.eval.samples import BenchmarkData
    from emocap.eval.zeroshot import run_header

    header = run_header(clf, get_benchmark("imagefolder"), None, BenchmarkData([], list(labels)))
    assert header["prompt_set"] == "learned-prompts" and header["prompt_hash"] != clf.prompt_set.hash
    # an fp16 release export keeps the prompts
    from emocap.train.export import export_model

    release = export_model(str(joint), str(tmp_path / "release"))
    assert torch.allclose(load_file(str(release / "emocap_extra.safetensors"))["prompt_ctx"], extra["prompt_ctx"])
    assert ZeroShotClassifier(load_model(str(release))).learned_prompts is not None
    # asking for other prompts, or switching learned prompts off, goes back to the hand prompts
    hand = ZeroShotClassifier(em, use_learned_prompts=False)
    assert hand.learned_prompts is None and not torch.allclose(hand.class_text_features(), expected, atol=1e-3)
    # a release without the learned prompts: the same towers, scored with the hand prompts
    towers = export_model(str(joint), str(tmp_path / "towers"), learned_prompts=False)
    assert not (towers / "emocap_extra.safetensors").exists()
    plain = ZeroShotClassifier(load_model(str(towers)))
    assert plain.learned_prompts is None and "learned_prompts" not in plain.model.meta
    assert torch.allclose(plain.class_text_features(), hand.class_text_features(), atol=2e-2)

    # the prompt stage after contrastive training: towers frozen, only the context vectors move
    stage = train(_tiny_cfg(shards, tmp_path / "stage", f"init_from={joint}", "prompt.only=true", "prompt.weight=1.0",
                            "prompt.align_weight=0.5", "prompt.per_class=true", "max_steps=2", "lr=0.05"), progress=False)
    before = load_file(str(joint / "open_clip_model.safetensors"))
    after = load_file(str(stage / "open_clip_model.safetensors"))
    for key in before:
        assert torch.equal(before[key], after[key]), key
    ctx = load_file(str(stage / "emocap_extra.safetensors"))["prompt_ctx"]
    assert ctx.shape == (len(labels), 4, 32)
    # the stage started from the joint run's shared prompts (copied to every class) and moved them
    start = extra["prompt_ctx"].expand(len(labels), -1, -1)
    assert not torch.allclose(ctx, start) and (ctx - start).abs().max() < 0.15  # two Adam steps of lr 0.05


def test_prompt_config_errors():
    with pytest.raises(ConfigError, match="prompt.only"):
        load_config("tiny", ["data.train_shards=/x", "prompt.only=true"])
    with pytest.raises(ConfigError, match="prompt.n_ctx"):
        load_config("tiny", ["data.train_shards=/x", "prompt.n_ctx=0"])
    with pytest.raises(ConfigError, match="mixup.prob"):
        load_config("tiny", ["data.train_shards=/x", "mixup.prob=1.5"])
