"""Training: config handling, losses against hand computations, the trimmed text forward, steps and resume."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub import ModelCard
from open_clip.loss import ClipLoss
from safetensors.torch import load_file

from emocap.gray_fold import folded_weight
from emocap.models import create_model, load_model
from emocap.train.config import ConfigError, load_config
from emocap.train.data import DataError, augment
from emocap.train.forward import encode_text_trimmed
from emocap.train.losses import class_prompt_loss, positive_mask, soft_target_nce, symmetric_nce
from emocap.train.loop import train


# ---------------------------------------------------------------- config
def test_config_defaults_file_and_overrides(tmp_path):
    cfg = load_config("tiny", ["data.train_shards=/x", "epochs=3", "loss.local=0.25", "aug.scale=[0.5, 1.0]"])
    assert cfg["model"] == "emocap-tiny" and cfg["epochs"] == 3 and cfg["loss"]["local"] == 0.25
    assert cfg["aug"]["scale"] == [0.5, 1.0] and cfg["lr"] == 1e-3  # from the file; the rest from defaults
    assert load_config("default")["data"]["train_shards"] == "data/captions/ferplus-train"


@pytest.mark.parametrize(
    "override, key",
    [("epochs=0", "epochs"), ("batch_size=-4", "batch_size"), ("loss.local=-1", "loss.local"),
     ("loss.positive_mining=maybe", "loss.positive_mining"), ("nonsense=1", "nonsense"),
     ("loss.bogus=1", "loss.bogus"), ("aug.scale=[0.9, 0.2]", "aug.scale"),
     ("loss.mining_relative=1", "loss.mining_relative")],
)
def test_bad_config_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("tiny", ["data.train_shards=/x", override])


def test_every_shipped_config_validates():
    from pathlib import Path

    import emocap.train.configs as configs

    files = sorted(Path(configs.__file__).parent.rglob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        cfg = load_config(str(path), ["data.train_shards=/x"])  # tiny.yaml leaves the shards to the caller
        assert cfg["model"], path


def test_missing_config_and_shards(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config("nope.yaml")
    with pytest.raises(ConfigError, match="data.train_shards"):
        load_config("tiny")
    cfg = load_config("tiny", [f"data.train_shards={tmp_path / 'missing'}", f"out={tmp_path / 'run'}"])
    with pytest.raises(DataError, match="missing"):
        train(cfg, progress=False)


# ---------------------------------------------------------------- losses
def test_multi_positive_nce_of_a_mask_by_hand():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    expected = 0.0
    for i in range(3):
        logz = math.log(sum(math.exp(v) for v in logits[i].tolist()))
        pos = [j for j in range(3) if mask[i, j] > 0]
        expected += -sum((logits[i, j].item() - logz) / len(pos) for j in pos)
    assert soft_target_nce(logits, mask).item() == pytest.approx(expected / 3, rel=1e-6)


def test_positive_masks():
    soft = torch.tensor([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.0, 0.2, 0.8]])
    assert positive_mask(soft, "none") is None
    assert positive_mask(soft, "label").tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    # soft: cosine(s0, s1) = (0.54 + 0.04) / (|s0| |s1|) ~ 0.89; cosine(s1, s2) ~ 0.11
    assert positive_mask(soft, "soft", threshold=0.5).tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert positive_mask(soft, "soft", threshold=0.95).tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_contrastive_without_mining_is_open_clip_clip_loss_and_identity_mask_too():
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    txt = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    scale = torch.tensor(10.0)
    ours = symmetric_nce(scale * img @ txt.T)
    assert ours.item() == pytest.approx(ClipLoss()(img, txt, scale).item(), rel=1e-6)
    distinct = torch.eye(6)  # every sample its own class: mining finds no extra positives
    mined = symmetric_nce(scale * img @ txt.T, positive_mask(distinct, "label"))
    assert mined.item() == pytest.approx(ours.item(), rel=1e-6)


def test_class_prompt_loss_by_hand():
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    cls = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    soft = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    scale = torch.tensor(2.0)
    logits = 2.0 * img @ cls.T
    lp = torch.log_softmax(logits, 1)
    per = [-lp[0, 0].item(), -(0.5 * lp[1, 1] + 0.5 * lp[1, 2]).item()]
    assert class_prompt_loss(img, cls, scale, soft).item() == pytest.approx(sum(per) / 2, rel=1e-6)
    w = torch.tensor([3.0, 1.0])
    assert class_prompt_loss(img, cls, scale, soft, w).item() == pytest.approx((3 * per[0] + per[1]) / 4, rel=1e-6)


# ---------------------------------------------------------------- forward and augmentation
def test_trimmed_text_encoding_matches_open_clip():
    em = create_model("emocap-tiny")
    em.model.eval()
    tokens = em.tokenizer(["a happy face", "the brows are lowered and drawn together in a frown", "sad"])
    with torch.no_grad():
        full = em.model.encode_text(tokens, normalize=True)
        trimmed = encode_text_trimmed(em.model, tokens)
    assert torch.allclose(full, trimmed, atol=1e-5)


def test_augment_keeps_shape_range_and_is_seeded():
    x = torch.rand(4, 1, 32, 32)
    aug = {"scale": [0.7, 1.0], "rotate": 10.0, "translate": 0.1, "flip": True, "brightness": 0.2,
           "contrast": 0.2, "erase_prob": 0.5}
    a = augment(x, aug, torch.Generator().manual_seed(1))
    b = augment(x, aug, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, augment(x, aug, torch.Generator().manual_seed(2)))


# ---------------------------------------------------------------- training runs
def _tiny_cfg(shards, out, *extra):
    return load_config("tiny", [f"data.train_shards={shards}", f"out={out}", "epochs=2", "batch_size=8",
                                "checkpoint_every=100", "log_every=2", *extra])


def test_training_writes_a_loadable_model_and_validates(tiny_shards, tmp_path):
    root, shards = tiny_shards
    final = train(_tiny_cfg(shards, tmp_path / "run", f"data.val_root={root}"), progress=False)
    em = load_model(str(final))
    assert em.meta["labels"][:2] == ["neutral", "happiness"] and em.meta["prompts"]["hash"]
    assert em.gray_folded and load_model(str(tmp_path / "run" / "best")).gray_folded  # a gray run saves RGB-ready
    assert not em.model.training
    with open(tmp_path / "run" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sum(1 for r in rows if r["val_uar"]) == 2  # one validation per epoch
    step_rows = [r for r in rows if r["loss"]]
    assert step_rows and all(set(json.loads(r["terms"])) == {"global", "local", "summary", "class_prompts"} for r in step_rows)
    assert any((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert (tmp_path / "run" / "config.yaml").is_file() and (tmp_path / "run" / "best").is_dir()
    # best/ and final/ carry a model card with the validation metrics (emocap.model_card)
    for folder in ("best", "final"):
        card = ModelCard.load(tmp_path / "run" / folder / "README.md")
        assert card.data.to_dict()["library_name"] == "open_clip" and "Checked during training" in card.text
    assert em.meta["validation"]["split"] == "valid"  # final/ records the last validation
    assert f"UAR {round(100 * em.meta['validation']['uar'], 2)}" in (final / "README.md").read_text()
    # the weights moved away from initialisation
    init = create_model("emocap-tiny").model.state_dict()
    trained = load_file(str(final / "open_clip_model.safetensors"))
    assert not torch.allclose(trained["visual.conv1.weight"].float(), init["visual.conv1.weight"])


EVERYTHING_ON = ["prompt.weight=1.0", "prompt.align_weight=0.5", "prompt.prototype_weight=0.5",
                 "prompt.prototype_samples=32", "mixup.prob=0.5", "loss.local_region=0.5",
                 "loss.positive_mining=cross_modal", "loss.mining_text_threshold=0.5"]


@pytest.mark.parametrize("extra", [[], EVERYTHING_ON], ids=["default-terms", "prompts-mixup-mining"])
def test_interrupted_run_resumes_to_the_same_weights(tiny_shards, tmp_path, extra):
    _, shards = tiny_shards
    straight = train(_tiny_cfg(shards, tmp_path / "a", *extra), progress=False)
    # 48 samples / batch 8 = 6 steps per epoch; stop in the middle of epoch 1, then rerun the same command
    ckpt = train(_tiny_cfg(shards, tmp_path / "b", "stop_after_steps=4", *extra), progress=False)
    assert (ckpt / "trainer_state.json").is_file() and not (tmp_path / "b" / "final").exists()
    resumed = train(_tiny_cfg(shards, tmp_path / "b", *extra), progress=False)
    a = load_file(str(straight / "open_clip_model.safetensors"))
    b = load_file(str(resumed / "open_clip_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    if extra:  # the learned prompts continue exactly too
        pa, pb = (load_file(str(f / "emocap_extra.safetensors"))["prompt_ctx"] for f in (straight, resumed))
        assert torch.allclose(pa, pb, atol=1e-6)


def test_accelerate_launch_runs_the_whole_loop_in_two_cpu_processes(tiny_shards, tmp_path):
    """The real multi-process path: `accelerate launch --num_processes 2 --cpu` over the training CLI, every term
    on and gradient accumulation, to a final model the classifier loads."""
    import os
    import subprocess
    import sys

    root, shards = tiny_shards
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "emocap.cli", "train", "--config", "tiny",
           "--out", str(out), "--quiet", "--set", f"data.train_shards={shards}", f"data.val_root={root}", "epochs=1",
           "batch_size=8", "accum_steps=2", "log_every=1", "checkpoint_every=100", *EVERYTHING_ON]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_CONFIG_FILE": str(tmp_path / "none.yaml")}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    step_rows = [r for r in rows if r["loss"]]
    # 48 samples / global batch 8 = 6 steps, logged once (by the main process), not once per process
    assert [int(r["step"]) for r in step_rows] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(float(r["loss"])) for r in step_rows)
    assert {"global", "local", "local_region", "summary", "prompt_cls", "prompt_align", "prompt_proto"} <= set(
        json.loads(step_rows[-1]["terms"]))
    assert sum(1 for r in rows if r["val_uar"]) == 1
    em = load_model(str(out / "final"))
    assert em.meta["learned_prompts"]["n_ctx"] > 0


def test_balanced_epoch_order_is_seeded_and_lifts_rare_classes():
    from emocap.train.loop import epoch_order

    labels = torch.tensor([0] * 900 + [1] * 100)
    plain = epoch_order(labels, 2, 0.0, seed=3)
    assert sorted(plain.tolist()) == list(range(1000))
    a = epoch_order(labels, 2, 0.5, seed=3)
    assert torch.equal(a, epoch_order(labels, 2, 0.5, seed=3)) and len(a) == 1000
    share = (labels[a] == 1).float().mean().item()
    # power 0.5: shares go with sqrt(counts): sqrt(100) / (sqrt(900) + sqrt(100)) = 0.25
    assert 0.21 < share < 0.29


def test_init_from_a_trained_model(tiny_shards, tmp_path):
    _, shards = tiny_shards
    first = train(_tiny_cfg(shards, tmp_path / "a", "max_steps=2"), progress=False)
    second = train(_tiny_cfg(shards, tmp_path / "b", f"init_from=local-dir:{first}", "max_steps=1", "lr=1.0e-12"),
                   progress=False)
    a = load_file(str(first / "open_clip_model.safetensors"))
    b = load_file(str(second / "open_clip_model.safetensors"))
    assert torch.allclose(a["visual.conv1.weight"], b["visual.conv1.weight"], atol=1e-6)
    assert torch.allclose(a["token_embedding.weight"], b["token_embedding.weight"], atol=1e-6)
    with pytest.raises(ConfigError, match="init_from"):
        train(_tiny_cfg(shards, tmp_path / "c", f"init_from={first}", "model=emocap-rn-small", "max_steps=1"),
              progress=False)


def test_nan_loss_skips_the_step_and_repeated_nans_stop_with_the_checkpoint_kept(tiny_shards, tmp_path):
    from emocap.train.loop import MAX_CONSECUTIVE_NAN, TrainingStopped

    _, shards = tiny_shards
    final = train(_tiny_cfg(shards, tmp_path / "once", "debug_nan_at_steps=[2]", "max_steps=4", "log_every=1"), progress=False)
    with open(tmp_path / "once" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows if r["loss"] == "nan"] == ["2"] and "non-finite" in rows[2]["terms"]
    assert [r["step"] for r in rows if r["loss"] not in ("", "nan")] == ["1", "2", "3", "4"]  # the run went on
    assert (final / "open_clip_model.safetensors").is_file()

    # from step 3 on every loss is non-finite: the run stops; the checkpoint (3 good steps) stays
    run = tmp_path / "stuck"
    with pytest.raises(TrainingStopped, match=f"{MAX_CONSECUTIVE_NAN} non-finite losses in a row at step 3"):
        train(_tiny_cfg(shards, run, "debug_nan_at_steps=[3, 4, 5, 6, 7, 8]", "checkpoint_every=2"), progress=False)
    kept = max((run / "checkpoints").glob("step*"))  # the newest checkpoint
    assert json.loads((kept / "trainer_state.json").read_text())["global_step"] == 3
    weights = load_file(str(next(kept.glob("*.safetensors"))))
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert not (run / "final").exists()


def test_accumulation_mining_and_locks_run_end_to_end(tiny_shards, tmp_path):
    _, shards = tiny_shards
    final = train(_tiny_cfg(shards, tmp_path / "acc", "accum_steps=2", "loss.positive_mining=cross_modal_soft", "loss.mining_temperature=0.5",
                            "lock.image=true", "max_steps=2", "log_every=1", "grad_checkpointing=true"), progress=False)
    torch.manual_seed(0)  # the run's seed: the same initial weights
    init = create_model("emocap-tiny").model.state_dict()
    trained = load_file(str(final / "open_clip_model.safetensors"))
    # image tower locked: the saved first layer is the initial one with the gray conversion folded in (a gray run)
    assert torch.equal(trained["visual.conv1.weight"], folded_weight(init["visual.conv1.weight"]))
    assert torch.equal(trained["visual.layer1.0.conv1.weight"], init["visual.layer1.0.conv1.weight"])
    assert not torch.equal(trained["token_embedding.weight"], init["token_embedding.weight"])
    with open(tmp_path / "acc" / "log.csv", newline="") as f:
        assert all(float(r["positives"]) > 0 for r in csv.DictReader(f) if r["loss"])  # soft mining: off-diagonal mass
    with pytest.raises(ConfigError, match="accum_steps"):
        load_config("tiny", ["data.train_shards=/x", "batch_size=8", "accum_steps=3"])


def test_wise_ft_interpolates_weights_and_prompts(tmp_path):
    from emocap.models import save_model
    from emocap.train.wise_ft import main as wise_main
    from emocap.train.wise_ft import wise_ft

    folders = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        em = create_model("emocap-tiny")
        ctx = torch.full((4, 32), float(seed))
        folders.append(save_model(em, tmp_path / f"m{seed}", meta={"labels": ["neutral", "happiness"],
                                  "learned_prompts": {"n_ctx": 4, "classes": None, "tensor": "prompt_ctx"}},
                                  extra_tensors={"prompt_ctx": ctx}))
    out = wise_ft(str(folders[0]), f"local-dir:{folders[1]}", str(tmp_path / "mix"), alpha=0.25)
    a, b, mix = (load_file(str(f / "open_clip_model.safetensors")) for f in (*folders, out))
    for key in ("visual.conv1.weight", "token_embedding.weight", "logit_scale"):
        assert torch.allclose(mix[key], 0.75 * a[key] + 0.25 * b[key], atol=1e-6), key
    assert torch.allclose(load_file(str(out / "emocap_extra.safetensors"))["prompt_ctx"], torch.full((4, 32), 0.25))
    loaded = load_model(str(out))
    assert loaded.meta["wise_ft"]["alpha"] == 0.25 and loaded.meta["labels"] == ["neutral", "happiness"]
    with pytest.raises(ValueError, match="alpha"):
        wise_ft(str(folders[0]), str(folders[1]), str(tmp_path / "bad"), alpha=1.5)
    small = save_model(create_model("emocap-rn-small"), tmp_path / "other")
    assert wise_main([str(folders[0]), str(small), str(tmp_path / "bad2")]) == 2  # different architectures


def test_init_from_open_clip_pretrained_names_resolve_to_hub_ids():
    from emocap.train.loop import resolve_init_from

    assert resolve_init_from("open_clip:ViT-B-32/laion2b_s34b_b79k") == "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    assert resolve_init_from("local-dir:/x") == "local-dir:/x" and resolve_init_from("hf-hub:a/b") == "hf-hub:a/b"
    with pytest.raises(ConfigError, match="init_from.*no pretrained tag 'nope'"):
        resolve_init_from("open_clip:RN50/nope")


def test_bf16_mixed_precision_on_cpu_and_fp16_needs_a_gpu(tiny_shards, tmp_path):
    _, shards = tiny_shards
    final = train(_tiny_cfg(shards, tmp_path / "bf16", "precision=bf16", "max_steps=2", "log_every=1"), progress=False)
    with open(tmp_path / "bf16" / "log.csv", newline="") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f) if r["loss"]]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert load_model(str(final)).model.visual.conv1.weight.dtype == torch.float32
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="precision"):
            train(_tiny_cfg(shards, tmp_path / "fp16", "precision=fp16"), progress=False)
    with pytest.raises(ConfigError, match="precision"):
        load_config("tiny", ["data.train_shards=/x", "precision=fp8"])


def test_run_folders_of_older_versions_still_resume(tiny_shards, tmp_path):
    """An older version's layout (one checkpoints/last/, no manifest, 'best_uar' for WAR + UAR) is resumed."""
    import shutil

    from emocap.train.checkpoints import TrainerState

    _, shards = tiny_shards
    straight = train(_tiny_cfg(shards, tmp_path / "a", "max_steps=6"), progress=False)
    run = tmp_path / "b"
    newest = train(_tiny_cfg(shards, run, "max_steps=6", "stop_after_steps=4"), progress=False)
    legacy = run / "checkpoints" / "last"
    newest.rename(legacy)
    for other in (run / "checkpoints").glob("step*"):
        shutil.rmtree(other)
    (legacy / "manifest.json").unlink()
    state = json.loads((legacy / "trainer_state.json").read_text())
    state["best_uar"] = state.pop("best_war_plus_uar")
    (legacy / "trainer_state.json").write_text(json.dumps(state))
    assert TrainerState.from_json(json.dumps({**state, "best_uar": 1.25})).best_war_plus_uar == 1.25
    resumed = train(_tiny_cfg(shards, run, "max_steps=6"), progress=False)
    a = load_file(str(straight / "open_clip_model.safetensors"))
    b = load_file(str(resumed / "open_clip_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not legacy.exists() and len(list((run / "checkpoints").glob("step*"))) == 1  # superseded by the new one
