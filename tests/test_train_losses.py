"""Training losses and scores against hand computations on tiny tensors (loops over plain Python floats)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from emocap.train.image_tokens import region_scores, topk_patch_scores
from emocap.train.losses import (
    batch_zscores, guided_positive_mask, guided_soft_targets, mined_positives, mix_targets, soft_target_nce, symmetric_nce,
)
from emocap.train.objective import BatchExtras, compute_objective
from emocap.train.config import load_config
from emocap.train.prompt_learning import prompt_alignment_loss, prompt_class_scores
from emocap.train.step import apply_mixup, mixup_pairs


def _logsumexp(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def _cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_symmetric_nce_with_soft_targets_by_hand():
    logits = [[2.0, 0.5, -1.0], [0.0, 1.0, 0.3], [1.5, -0.5, 0.2]]
    targets = [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.2, 0.0, 0.8]]

    def ce(rows, tgts):
        total = 0.0
        for row, t in zip(rows, tgts):
            z = _logsumexp(row)
            s = sum(t)
            total += -sum(ti / s * (li - z) for ti, li in zip(t, row))
        return total / len(rows)

    cols = [list(c) for c in zip(*logits)]
    tcols = [list(c) for c in zip(*targets)]
    expected = 0.5 * (ce(logits, targets) + ce(cols, tcols))
    got = symmetric_nce(torch.tensor(logits), torch.tensor(targets))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # identity targets: the plain cross-entropy of the diagonal
    plain = 0.5 * (ce(logits, [[1, 0, 0], [0, 1, 0], [0, 0, 1]]) + ce(cols, [[1, 0, 0], [0, 1, 0], [0, 0, 1]]))
    assert symmetric_nce(torch.tensor(logits)).item() == pytest.approx(plain, rel=1e-6)
    assert soft_target_nce(torch.tensor(logits), torch.tensor(targets)).item() == pytest.approx(ce(logits, targets), rel=1e-6)


def test_guided_positive_mask_needs_both_modalities():
    # texts 0 and 1 near-identical; images 0 and 1 near-identical; texts 1 and 2 identical but images differ
    txt = F.normalize(torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.99, 0.1]]), dim=1)
    img = F.normalize(torch.tensor([[0.0, 1.0], [0.1, 0.99], [1.0, 0.0]]), dim=1)
    mask = guided_positive_mask(txt, img, text_threshold=0.9, image_threshold=0.9)
    assert mask.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    assert mined_positives(mask) == pytest.approx(2 / 3)
    strict = guided_positive_mask(txt, img, text_threshold=0.999, image_threshold=0.9)
    assert strict.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]] and mined_positives(strict) == 0.0


def test_relative_guided_mask_thresholds_batch_zscores_by_hand():
    # 4 samples whose embeddings are all alike (raw cosines > 0.9, as early in training from scratch)
    txt = F.normalize(torch.tensor([[1.0, 0.00], [1.0, 0.02], [1.0, 0.30], [1.0, 0.45]]), dim=1)
    img = F.normalize(torch.tensor([[1.0, 0.00], [1.0, 0.03], [1.0, 0.40], [1.0, 0.20]]), dim=1)
    # raw thresholds mine (nearly) the whole batch ...
    assert guided_positive_mask(txt, img, 0.9, 0.8).sum().item() == 16
    # ... batch z-scores pick the pairs that stand out in both modalities
    def z(feats):
        sims = [[_cos(a, b) for b in feats.tolist()] for a in feats.tolist()]
        off = [sims[i][j] for i in range(4) for j in range(4) if i != j]
        mean = sum(off) / len(off)
        std = math.sqrt(sum((x - mean) ** 2 for x in off) / (len(off) - 1))
        return [[(x - mean) / std for x in row] for row in sims]
    zt, zi = z(txt), z(img)
    expected = [[1.0 if i == j or (zt[i][j] >= 0.5 and zi[i][j] >= 0.5) else 0.0 for j in range(4)] for i in range(4)]
    got = guided_positive_mask(txt, img, 0.5, 0.5, relative=True)
    assert got.tolist() == expected
    assert expected[0][1] == 1.0 and sum(map(sum, expected)) < 16  # the near-duplicate pair, not the batch
    assert batch_zscores(torch.ones(1, 1)).tolist() == [[0.0]]


def test_guided_soft_targets_by_hand():
    txt = [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]
    img = [[1.0, 0.0], [0.6, 0.8], [0.6, 0.8]]
    t = 0.5
    got = guided_soft_targets(torch.tensor(txt), torch.tensor(img), temperature=t)
    for i in range(3):
        sims = [min(_cos(txt[i], txt[j]), _cos(img[i], img[j])) / t for j in range(3)]
        z = _logsumexp(sims)
        for j in range(3):
            assert got[i, j].item() == pytest.approx(math.exp(sims[j] - z), rel=1e-5)


def test_mix_targets_by_hand():
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    partner = torch.tensor([2, 0, 2])
    lam = torch.tensor([0.75, 0.5, 1.0])
    got = mix_targets(mask, partner, lam, 3)
    expected = [[0.75 * 0.5, 0.75 * 0.5, 0.25], [0.5 * 0.5 + 0.5 * 0.5, 0.5 * 0.5 + 0.5 * 0.5, 0.0], [0.0, 0.0, 1.0]]
    assert torch.allclose(got, torch.tensor(expected))
    identity = mix_targets(None, partner, lam, 3)
    assert torch.allclose(identity, torch.tensor([[0.75, 0, 0.25], [0.5, 0.5, 0], [0, 0, 1.0]]))


def test_mixup_pairs_and_images():
    g = torch.Generator().manual_seed(0)
    partner, lam = mixup_pairs(64, prob=0.5, alpha=0.4, generator=g)
    assert sorted(partner.tolist()) == list(range(64))
    assert (lam >= 0.5).all() and (lam <= 1).all() and 10 < int((lam < 1).sum()) < 54
    assert mixup_pairs(8, 0.0, 0.4, g) == (None, None)
    images = torch.tensor([[0.0], [1.0]]).view(2, 1, 1, 1)
    soft = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mixed, mixed_soft = apply_mixup(images, soft, torch.tensor([1, 0]), torch.tensor([0.7, 1.0]))
    assert mixed.flatten().tolist() == pytest.approx([0.3, 1.0])
    assert mixed_soft.tolist() == [pytest.approx([0.7, 0.3]), pytest.approx([0.0, 1.0])]


def test_region_scores_by_hand():
    tokens = [[[1.0, 0.0], [0.0, 1.0]], [[0.6, 0.8], [0.8, -0.6]]]  # 2 images x 2 unit tokens
    texts = [[1.0, 0.0], [0.6, 0.8]]
    tau = 0.5
    got = region_scores(torch.tensor(tokens), torch.tensor(texts), tau)
    for i in range(2):
        for j in range(2):
            sims = [sum(a * b for a, b in zip(tok, texts[j])) / tau for tok in tokens[i]]
            z = _logsumexp(sims)
            w = [math.exp(s - z) for s in sims]
            pooled = [sum(w[n] * tokens[i][n][d] for n in range(2)) for d in range(2)]
            assert got[i, j].item() == pytest.approx(_cos(pooled, texts[j]), rel=1e-5)


def test_topk_patch_and_prompt_scores_by_hand():
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]])
    prompts = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # class 0 token cosines: 1, 0, 0.6 -> top-2 mean 0.8; class 1: 0, 1, 0.8 -> 0.9
    assert topk_patch_scores(tokens, prompts, 2).tolist()[0] == pytest.approx([0.8, 0.9])
    assert topk_patch_scores(tokens, prompts, 10).tolist()[0] == pytest.approx([1.6 / 3, 1.8 / 3])
    image = torch.tensor([[0.6, 0.8]])
    scores = prompt_class_scores(image, tokens, prompts, patch_weight=0.5, topk=2)
    assert scores.tolist()[0] == pytest.approx([0.6 + 0.4, 0.8 + 0.45])
    assert prompt_class_scores(image, None, prompts, 0.5, 2).tolist()[0] == pytest.approx([0.6, 0.8])


def test_prompt_alignment_loss_by_hand():
    soft = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    hard = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    scale = 3.0
    expected = 0.0
    for c in range(2):
        row = [scale * float(soft[c] @ hard[k]) for k in range(2)]
        expected += -(row[c] - _logsumexp(row))
    assert prompt_alignment_loss(soft, hard, torch.tensor(scale)).item() == pytest.approx(expected / 2, rel=1e-6)


def test_objective_sums_weighted_terms_and_counts_mined_positives():
    cfg = load_config("tiny", ["data.train_shards=/x", "loss.local=0.5", "loss.summary=0.25", "loss.class_prompts=0",
                               "loss.positive_mining=label"])
    g = torch.Generator().manual_seed(0)
    feats = {k: F.normalize(torch.randn(4, 8, generator=g), dim=1) for k in ("image", "text:global", "text:local", "text:summary")}
    feats["logit_scale"] = torch.tensor(5.0)
    soft = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.2, 0.8]])
    total, stats = compute_objective(feats, BatchExtras(soft_labels=soft, raw_soft_labels=soft), cfg)
    mask = torch.tensor([[1.0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]])
    img = feats["image"]
    expected = sum(w * symmetric_nce(5.0 * img @ feats[f"text:{n}"].T, mask) for n, w in (("global", 1.0), ("local", 0.5), ("summary", 0.25)))
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert stats["positives"] == pytest.approx(1.0) and stats["local"] == pytest.approx(
        0.5 * symmetric_nce(5.0 * img @ feats["text:local"].T, mask).item(), rel=1e-5)
    # during loss.mining_warmup_steps the targets are the plain identity
    plain, stats = compute_objective(feats, BatchExtras(soft_labels=soft, raw_soft_labels=soft, mining=False), cfg)
    expected = sum(w * symmetric_nce(5.0 * img @ feats[f"text:{n}"].T) for n, w in (("global", 1.0), ("local", 0.5), ("summary", 0.25)))
    assert plain.item() == pytest.approx(expected.item(), rel=1e-6) and stats["positives"] == 0.0
