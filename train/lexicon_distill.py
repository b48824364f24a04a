"""Teach a trained model's text tower WordNet's emotion words: the word bridge distilled into the token embeddings.

After training (config -> ... -> loop -> **lexicon_distill** -> export). A text tower trained from scratch on
captions knows the caption words only; the word bridge (:mod:`emocap.word_bridge`) fixes that inside emocap, but
plain open_clip has no bridge. This step moves the bridge's WordNet knowledge into the model itself, so that the
saved folder reads "irate" or "gleeful" in plain open_clip as emocap does:

* the words: every word of the WordNet emotion table (:mod:`emocap.word_lexicon`, 3,894 words) that is not a
  taxonomy name, each in every template of the model's prompt set;
* the target of each such prompt: the bridge's reading of the word, the WordNet-weighted mean of the emotions'
  class features (the model's own prompts and descriptions, :meth:`ZeroShotClassifier.class_text_features`);
* what is trained: only the token-embedding rows of tokens that appear in none of the training captions, the
  bundled prompt sets and the taxonomy names (the model never saw them, so they still hold their random start).
  Every other weight stays as it is, so the model's features of captions, prompts, canonical names and images are
  bit for bit unchanged (checked before saving);
* loss: 1 - cosine between the prompt's feature and its target; Adam, fixed seed, one checkpoint per epoch in
  ``OUT/lexicon_checkpoint.pt`` (a killed run resumes from the last finished epoch to the same result).

Usage::

    python -m emocap.train.lexicon_distill --model default --captions data/captions/ferplus-train \\
        --out runs/default-lexicon --fp16

then copy ``OUT/open_clip_model.safetensors`` and ``OUT/open_clip_config.json`` over the release folder (docs/labels.md,
"The word bridge inside the model").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tarfile
import warnings
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Set, Tuple

import torch
import torch.nn.functional as F

from emocap import taxonomy, word_lexicon
from emocap.caption_records import parse_record, split_member_name
from emocap.models import ModelLoadError, load_model, save_model
from emocap.prompts import bundled_prompt_sets, load_prompt_set
from emocap.train.fault_points import fault_point

CHECKPOINT_NAME = "lexicon_checkpoint.pt"


def caption_texts(shard_dir: Path) -> List[str]:
    """Every distinct caption text (global, local, summary and the ``.txt`` caption) of the ``*.tar`` shards."""
    shards = sorted(Path(shard_dir).glob("*.tar"))
    if not shards:
        raise FileNotFoundError(f"{shard_dir}: no caption shards (*.tar); build them with `emocap caption`")
    texts: Set[str] = set()
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar:
                ext = split_member_name(member.name)[1]
                if ext == "txt":
                    texts.add(tar.extractfile(member).read().decode("utf-8"))
                elif ext == "json":
                    record = parse_record(tar.extractfile(member).read(), f"{shard}: member {member.name!r}")
                    caps = record.get("captions", {})
                    texts.update(t for t in [caps.get("global"), caps.get("summary"), *caps.get("local", [])] if t)
    return sorted(texts)


def protected_tokens(tokenizer, texts: Iterable[str]) -> torch.Tensor:
    """Sorted ids of every token ``texts`` use (with the start, end and padding tokens)."""
    texts = list(texts)
    seen: Set[int] = set()
    for start in range(0, len(texts), 2048):
        seen.update(tokenizer(texts[start:start + 2048]).unique().tolist())
    return torch.tensor(sorted(seen))


def known_texts(caption_dir: Path) -> List[str]:
    """What the model was taught or is scored with: captions, bundled prompt sets, taxonomy names."""
    texts = caption_texts(caption_dir)
    for name in bundled_prompt_sets():
        prompts = load_prompt_set(name)
        texts += list(prompts.templates) + [d for ds in prompts.descriptions.values() for d in ds]
    texts += [n for names in taxonomy.names_by_emotion().values() for n in names]
    return texts


def distillation_words() -> Tuple[List[str], List[str], torch.Tensor]:
    """(emotions, words, weights [words, emotions]): the WordNet table's words that are not taxonomy names."""
    emotions = list(taxonomy.names_by_emotion())
    words, weights = [], []
    for word in word_lexicon.table_words():
        link = word_lexicon.lookup(word)
        if taxonomy.canonical_or_none(word) is None and link is not None:
            words.append(word)
            weights.append([link.emotions.get(e, 0.0) for e in emotions])
    return emotions, words, torch.tensor(weights)


def distill(model_id: str, caption_dir: Path, out: Path, epochs: int = 3, lr: float = 3e-3, batch_size: int = 512,
            seed: int = 0, fp16: bool = False, progress: bool = True, only: Optional[Sequence[str]] = None) -> Path:
    """Run the distillation (module docstring) and write the model folder to ``out``; ``only``: these table words
    instead of all (a quick trial or a test)."""
    from emocap import ZeroShotClassifier

    em = load_model(model_id)
    clf = ZeroShotClassifier(em, word_bridge=False, device="cpu")
    model, tokenizer = em.clip, em.tokenizer
    templates = list(clf.prompt_set.templates)
    emotions, words, weights = distillation_words()
    if only is not None:
        keep = [i for i, w in enumerate(words) if w in {word_lexicon.normalise(o) for o in only}]
        if not keep:
            raise ValueError(f"none of {list(only)[:5]} is a distillable word of the WordNet table")
        words, weights = [words[i] for i in keep], weights[keep]
    with torch.no_grad(), warnings.catch_warnings():
        # the emotions FER+ lacks (anxiety, helplessness, disappointment) are alike in a FER+ model: no news here
        warnings.simplefilter("ignore", taxonomy.IndistinguishableLabelsWarning)
        targets_by_emotion = clf.class_text_features(emotions).float()
    protected = protected_tokens(tokenizer, known_texts(caption_dir))
    settings = {"model": model_id, "epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
                "words": len(words), "words_hash": hashlib.sha256("\n".join(words).encode()).hexdigest()[:12],
                "templates": templates, "table": word_lexicon.lexicon_id(), "protected_tokens": len(protected)}
    out.mkdir(parents=True, exist_ok=True)
    embedding = model.token_embedding.weight
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for p in model.parameters():
        p.requires_grad_(False)
    embedding.requires_grad_(True)
    trainable = torch.ones(embedding.shape[0], 1)
    trainable[protected] = 0.0
    optimizer = torch.optim.Adam([embedding], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    checkpoint = out / CHECKPOINT_NAME
    first_epoch = _resume(checkpoint, settings, embedding, optimizer, generator)
    model.eval()
    pairs = [(w, t) for w in range(len(words)) for t in range(len(templates))]
    step = first_epoch * ((len(pairs) + batch_size - 1) // batch_size)
    bar = _progress(progress, total=(epochs - first_epoch) * ((len(pairs) + batch_size - 1) // batch_size))
    for epoch in range(first_epoch, epochs):
        order = torch.randperm(len(pairs), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = [pairs[i] for i in order[start:start + batch_size].tolist()]
            texts = [templates[t].format(words[w]) for w, t in batch]
            feats = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)
            target = F.normalize(weights[[w for w, _ in batch]] @ targets_by_emotion, dim=-1)
            loss = (1.0 - (feats * target).sum(-1)).mean()
            optimizer.zero_grad()
            loss.backward()
            embedding.grad *= trainable
            optimizer.step()
            step += 1
            fault_point("step", step)
            total += loss.item() * len(batch)
            bar.update(1)
        bar.set_postfix(epoch=epoch, loss=f"{total / len(pairs):.4f}")
        tmp = checkpoint.with_name(CHECKPOINT_NAME + ".tmp")
        torch.save({"settings": json.dumps(settings, sort_keys=True), "epoch": epoch,
                    "embedding": embedding.detach().clone(), "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(), "loss": total / len(pairs)}, tmp)
        os.replace(tmp, checkpoint)  # a kill before this line resumes from the previous epoch's checkpoint
        fault_point("checkpoint-committed", step)
    bar.close()
    embedding.requires_grad_(False)
    _check_unchanged(model.state_dict(), before, protected)
    loss = torch.load(checkpoint, weights_only=True)["loss"] if checkpoint.exists() else None
    meta = {"lexicon_distill": {**settings, "final_loss": loss}}
    return save_model(em, out, meta=meta, fp16=fp16)


def _resume(checkpoint: Path, settings: dict, embedding: torch.Tensor, optimizer, generator) -> int:
    """The first epoch still to run: 0, or the one after the checkpoint's (whose state is loaded into
    ``embedding``, ``optimizer`` and ``generator``); a checkpoint of other settings is refused."""
    if not checkpoint.exists():
        return 0
    state = torch.load(checkpoint, weights_only=True)
    if state["settings"] != json.dumps(settings, sort_keys=True):
        raise ValueError(f"{checkpoint} was written with other settings; remove it or use another --out")
    with torch.no_grad():
        embedding.copy_(state["embedding"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    return state["epoch"] + 1


def _check_unchanged(after: dict, before: dict, protected: torch.Tensor) -> None:
    for key, value in after.items():
        if key == "token_embedding.weight":
            if not torch.equal(value[protected], before[key][protected]):
                raise RuntimeError("a protected token's embedding changed")
        elif not torch.equal(value, before[key]):
            raise RuntimeError(f"{key} changed; only unseen tokens' embeddings may")


def _progress(enabled: bool, total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc="distilling WordNet words", unit="batch", disable=not enabled, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m emocap.train.lexicon_distill", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="model id (folder, local-dir:, default)")
    p.add_argument("--captions", type=Path, required=True, help="the model's training caption shards (*.tar)")
    p.add_argument("--out", type=Path, required=True, help="folder for the model (and the resumable checkpoint)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fp16", action="store_true", help="write fp16 weights (as the embedded default ships)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--words", nargs="+", default=None, help="only these words of the table (a quick trial)")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0:
        p.error("--epochs and --batch-size must be positive integers and --lr positive")
    try:
        folder = distill(args.model, args.captions, args.out, args.epochs, args.lr, args.batch_size, args.seed,
                         args.fp16, not args.no_progress, args.words)
    except (FileNotFoundError, ValueError, ModelLoadError) as e:
        print(f"lexicon_distill: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
