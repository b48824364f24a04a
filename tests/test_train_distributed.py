"""Scale: two gloo processes on CPU give the one-process loss and gradients; feature-cache accumulation gives the
full batch's gradients."""

from __future__ import annotations

import os
import socket

import open_clip
import pytest
import torch
from safetensors.torch import load_file, save_file

from emocap.train.config import load_config
from emocap.train.forward import ContrastiveForward
from emocap.train.objective import BatchExtras
from emocap.train.prompt_learning import SoftPrompts
from emocap.train.step import StepBatch, step_gradients

BATCH = 8
CLASSES = 4

# every term at once: global/local/region/summary, cross-modal mining, soft prompts with patch scores, mixup
OVERRIDES = [
    "data.train_shards=/x", "loss.local=0.5", "loss.local_region=0.5", "loss.summary=0.25", "loss.class_prompts=0",
    "loss.positive_mining=cross_modal", "loss.mining_text_threshold=0.0", "loss.mining_image_threshold=0.5",
    "prompt.weight=1.0", "prompt.align_weight=0.5", "prompt.prototype_weight=0.5", "prompt.patch_weight=0.5",
]


def _model(seed=0):
    torch.manual_seed(seed)
    # a tiny ViT (LayerNorm, no batch norm): features of a sample do not depend on the rest of the batch
    clip = open_clip.model.CLIP(
        embed_dim=16, vision_cfg={"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        text_cfg={"context_length": 12, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
    )
    tok = open_clip.tokenizer.SimpleTokenizer(context_length=12)
    prompts = SoftPrompts(clip, tok, ["neutral", "happiness", "sadness", "anger"], n_ctx=2, seed=seed)
    return ContrastiveForward(clip, prompts)


def _batch(with_mixup=True):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(BATCH, 3, 16, 16, generator=g)
    texts = {k: torch.randint(1, 400, (BATCH, 6), generator=g) for k in ("global", "local", "summary")}
    for t in texts.values():
        t[:, -1] = 49407  # end of text
    soft = torch.softmax(torch.randn(BATCH, CLASSES, generator=g) * 2, dim=1)
    partner = lam = None
    if with_mixup:  # partners within each half (rank-local), as the loop draws them
        half = BATCH // 2
        partner = torch.cat([torch.randperm(half, generator=g), torch.randperm(half, generator=g)])
        lam = 0.5 + 0.5 * torch.rand(BATCH, generator=g)
    weights = torch.rand(BATCH, generator=g) + 0.5
    hard = torch.nn.functional.normalize(torch.randn(CLASSES, 16, generator=g), dim=1)
    protos = torch.nn.functional.normalize(torch.randn(CLASSES, 16, generator=g), dim=1)
    return images, texts, soft, partner, lam, weights, hard, protos


def _step_batch(rows: slice, partner_offset: int, with_mixup=True):
    images, texts, soft, partner, lam, weights, hard, protos = _batch(with_mixup)
    extras = BatchExtras(
        soft_labels=soft[rows], raw_soft_labels=soft[rows], sample_weights=weights[rows],
        mix_partner=None if partner is None else partner[rows] + partner_offset,
        mix_lambda=None if lam is None else lam[rows], hard_prompts=hard, prototypes=protos,
    )
    return StepBatch(images[rows], {k: v[rows] for k, v in texts.items()}, extras, with_tokens=True)


def _close(a, b):
    """Equal up to float32 summation order: max difference within 1e-5 of the tensor's largest entry."""
    return (a - b).abs().max().item() <= 1e-5 * a.abs().max().item() + 1e-7


def _grads(module):
    return {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        cfg = load_config("tiny", OVERRIDES)
        forward = torch.nn.parallel.DistributedDataParallel(_model())
        half = BATCH // world
        # partners are rank-local indices; step_gradients shifts them by the rank's offset
        batch = _step_batch(slice(rank * half, (rank + 1) * half), partner_offset=-rank * half)
        loss, stats = step_gradients(forward, batch, cfg, rank=rank, world=world)
        result = {f"grad.{k}": v for k, v in _grads(forward.module).items()}
        result["loss"] = loss.reshape(1)
        result["positives"] = torch.tensor([stats["positives"]])
        save_file(result, os.path.join(out_dir, f"rank{rank}.safetensors"))
    finally:
        torch.distributed.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process_on_the_whole_batch(tmp_path):
    cfg = load_config("tiny", OVERRIDES)
    single = _model()
    loss, stats = step_gradients(single, _step_batch(slice(0, BATCH), 0), cfg)
    expected = _grads(single)
    assert stats["positives"] > 0  # mining found positives, so the gathered masks are exercised

    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        got = load_file(str(tmp_path / f"rank{rank}.safetensors"))
        assert got["loss"].item() == pytest.approx(loss.item(), rel=1e-5)
        assert got["positives"].item() == pytest.approx(stats["positives"], rel=1e-6)
        names = {k[5:] for k in got if k.startswith("grad.")}
        assert names == set(expected) and "soft_prompts.ctx" in names and "clip.visual.conv1.weight" in names
        for name in names:  # DDP averaged the ranks' gradients: the one-process gradient of the full-batch loss
            assert _close(expected[name], got[f"grad.{name}"]), name


@pytest.mark.parametrize("with_mixup", [False, True])
def test_feature_cache_accumulation_gives_full_batch_gradients(with_mixup):
    cfg = load_config("tiny", OVERRIDES)
    full = _model()
    loss, _ = step_gradients(full, _step_batch(slice(0, BATCH), 0, with_mixup), cfg)
    accumulated = _model()
    loss_acc, _ = step_gradients(accumulated, _step_batch(slice(0, BATCH), 0, with_mixup), cfg, accum_steps=4)
    assert loss_acc.item() == pytest.approx(loss.item(), rel=1e-6)
    a, b = _grads(full), _grads(accumulated)
    assert a.keys() == b.keys()
    for name in a:
        assert _close(a[name], b[name]), name
