"""The training loop: accelerate-driven, resumable, with zero-shot validation each epoch.

Last step of a training run (config -> data -> losses -> **loop**). One code path for CPU, one GPU or many
(``accelerate launch``). The run folder holds::

    config.yaml               the resolved config
    log.csv                   one row per logged step and per validation
    checkpoints/last/         accelerate state (model, optimiser, scheduler, RNG) + trainer_state.json
    best/  final/             open_clip hub folders that ``emocap`` and ``open_clip`` load

Killing a run and starting the same command again resumes from ``checkpoints/last`` (saved every
``checkpoint_every`` steps and at each epoch end); the epoch's sample order and the augmentation generator are
restored, so the run continues where it stopped.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from emocap import taxonomy
from emocap.ferplus import EMOTIONS, FerPlusSplit
from emocap.class_weights import class_text_weights, encoder_for
from emocap.learned_prompts import LearnedPrompts
from emocap.metrics import war_uar
from emocap.models import create_model, save_model
from emocap.prompts import load_prompt_set

from .config import ConfigError, save_config
from .data import _decode, augment, load_caption_shards, normalise, sample_local, to_model_input
from .forward import ContrastiveForward
from .objective import BatchExtras, needs_tokens
from .prompt_learning import SoftPrompts, class_prototypes, frozen_copy, hard_prompt_features
from .step import StepBatch, apply_mixup, mixup_pairs, step_gradients
from .streaming import stream_batches

MAX_CONSECUTIVE_NAN = 5


class TrainingStopped(RuntimeError):
    """Training could not go on (repeated non-finite losses); the last good checkpoint is kept."""


def cosine_with_warmup(step: int, total_steps: int, warmup: int, floor: float) -> float:
    """Learning-rate factor: linear warmup over ``warmup`` steps, then cosine decay from 1 to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _lr_lambda(cfg, total_steps: int):
    warmup = max(1, int(cfg["warmup_steps"]))
    floor = cfg["min_lr"] / cfg["lr"]
    return lambda step: cosine_with_warmup(step, total_steps, warmup, floor)


class Validator:
    """Zero-shot accuracy on a FER+ split (majority protocol), images held in memory."""

    def __init__(self, root: str, split: str, size: int, grayscale: bool, labels: List[str], limit=None):
        data = FerPlusSplit(root, split)
        kept = data.majority()[: limit or None]
        self.images = torch.from_numpy(np.stack([_decode(data.image_bytes(r), size, grayscale) for r, _ in kept]))
        index = {taxonomy.canonical(n): i for i, n in enumerate(labels)}
        self.targets = np.array([index[EMOTIONS[c]] for _, c in kept])
        data.close()

    @torch.inference_mode()
    def __call__(self, model, tokenizer, labels, prompt_set, mean, std, device, soft_prompts=None) -> Dict[str, float]:
        was_training = model.training
        model.eval()
        if soft_prompts is not None:  # what the classifier will use for a model saved with learned prompts
            text = soft_prompts(model)
        else:
            text = class_text_weights(encoder_for(model, tokenizer), [prompt_set.texts_for(label) for label in labels])
        pred = (self.image_features(model, mean, std, device) @ text.T).argmax(1).cpu().numpy()
        model.train(was_training)
        return war_uar(pred, self.targets)

    @torch.inference_mode()
    def image_features(self, model, mean, std, device=None) -> torch.Tensor:
        """[N, D] normalised image features of the held images, in eval mode (the caller's mode is restored)."""
        was_training = model.training
        model.eval()
        feats = [model.encode_image(to_model_input(self.images[s:s + 256], mean, std).to(device), normalize=True)
                 for s in range(0, len(self.images), 256)]
        model.train(was_training)
        return torch.cat(feats)


def _class_weights(labels: torch.Tensor, n_classes: int, lw_power: float) -> torch.Tensor:
    """Per-class loss weights ``count ** -power`` scaled to mean 1 over samples (power 0: no reweighting)."""
    counts = torch.bincount(labels, minlength=n_classes).float().clamp(min=1)
    w = counts.pow(-float(lw_power))
    return w / (w[labels].mean())


def epoch_order(labels: torch.Tensor, n_classes: int, balance_power: float, seed: int) -> torch.Tensor:
    """The sample order of one epoch (deterministic in ``seed``, so a resumed run continues it exactly).

    ``balance_power`` 0 is a plain permutation; p > 0 draws samples with replacement with probability
    proportional to ``count(class) ** -p`` (p = 0.5: class shares go with the square root of their counts).
    """
    gen = torch.Generator().manual_seed(seed)
    if not balance_power:
        return torch.randperm(len(labels), generator=gen)
    counts = torch.bincount(labels, minlength=n_classes).float().clamp(min=1)
    weights = counts.pow(-float(balance_power))[labels]
    return torch.multinomial(weights, len(labels), replacement=True, generator=gen)


def resolve_init_from(model_id: str) -> str:
    """``open_clip:<arch>/<pretrained tag>`` -> the ``hf-hub:`` id of those weights; other model ids unchanged.

    open_clip's pretrained registry names the hub repo of each (architecture, tag); the weights then load through
    :func:`emocap.models.load_model` (safetensors only, never unpickled).
    """
    from emocap.model_ids import parse_model_id

    if parse_model_id(model_id).scheme != "open_clip":
        return model_id
    from emocap.models import ModelLoadError, open_clip_hub_id

    try:
        return str(open_clip_hub_id(model_id))
    except ModelLoadError as e:
        raise ConfigError(f"config key 'init_from': {e} (the form is open_clip:<arch>/<tag>)") from None


def _prepare_model(cfg: Dict):
    """The model to train: architecture, optional init weights, locks and gradient checkpointing."""
    em = create_model(cfg["model"])
    source = None
    if cfg.get("init_from"):
        # start from trained weights (a model id: folder, local-dir:, hf-hub:); the architecture must match
        from emocap.models import load_model

        source = load_model(resolve_init_from(cfg["init_from"]))
        try:
            missing, unexpected = em.model.load_state_dict(source.model.state_dict(), strict=False)
        except RuntimeError:  # shape mismatch
            missing, unexpected = ["<shapes differ>"], []
        if [k for k in missing if not k.endswith("attn_mask")] or unexpected:
            raise ConfigError(f"config key 'init_from': {cfg['init_from']} does not match architecture {cfg['model']!r}")
    model = em.model
    lock = cfg["lock"]
    if cfg["prompt"]["only"]:
        for p in model.parameters():
            p.requires_grad_(False)
    else:
        if lock["image"]:
            model.lock_image_tower(unlocked_groups=int(lock["image_unlocked_groups"]))
        if lock["text"]:
            model.lock_text_tower(unlocked_layers=int(lock["text_unlocked_layers"]))
    if cfg["grad_checkpointing"]:
        model.set_grad_checkpointing(True)
    return em, ((source.meta, source.extra_tensors) if source is not None else ({}, {}))


def _optimizer(cfg: Dict, modules: List[torch.nn.Module]):
    named = [(n, p) for m in modules for n, p in m.named_parameters() if p.requires_grad]
    if not named:
        raise ConfigError("nothing to train: every parameter is locked (check lock.* and prompt.only)")
    decay = [p for n, p in named if p.ndim >= 2 and "embedding" not in n and not n.endswith("ctx")]
    no_decay = [p for n, p in named if not (p.ndim >= 2 and "embedding" not in n and not n.endswith("ctx"))]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"]
    )


def train(cfg: Dict, progress: bool = True) -> Path:
    """Run (or resume) training as configured; returns the folder of the final model."""
    if cfg["language"]["enabled"]:
        from .language import train_language

        return train_language(cfg, progress=progress)
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg["num_threads"]))
    on_gpu = torch.cuda.is_available()
    if cfg["precision"] == "fp16" and not on_gpu:
        raise ConfigError("config key 'precision': fp16 needs a GPU; use bf16 or no on CPU")
    from accelerate.state import AcceleratorState

    # a second run in the same process (notebooks, tests) may use another precision; keep the process group
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(cpu=not on_gpu, mixed_precision=cfg["precision"])
    set_seed(cfg["seed"])
    out = Path(cfg["out"])
    ckpt_dir = out / "checkpoints" / "last"
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")

    labels = [taxonomy.canonical(n) for n in taxonomy.label_set(cfg["labels"])]
    prompt_set = load_prompt_set(cfg["prompts"])
    em, (source_meta, source_tensors) = _prepare_model(cfg)
    model, tokenizer = em.model, em.tokenizer
    size = em.image_size
    mean, std = em.preprocess_cfg["mean"], em.preprocess_cfg["std"]
    dcfg, lw, pc = cfg["data"], cfg["loss"], cfg["prompt"]
    streaming = bool(dcfg["streaming"])
    data = None
    if not streaming:
        data = load_caption_shards(
            dcfg["train_shards"], tokenizer, labels, dcfg["load_size"] or size, dcfg["grayscale"],
            limit=dcfg["train_limit"], progress=progress and accelerator.is_main_process,
        )

    def open_stream(seed: int, batch_size: int):
        return stream_batches(
            dcfg["train_shards"], tokenizer, labels, dcfg["load_size"] or size, dcfg["grayscale"], batch_size,
            rank=accelerator.process_index, world=accelerator.num_processes, workers=dcfg["workers"],
            resampled=dcfg["resampled"], shuffle_buffer=dcfg["shuffle_buffer"], seed=seed,
        )
    validator = None
    if dcfg["val_root"]:
        validator = Validator(dcfg["val_root"], dcfg["val_split"], size, dcfg["grayscale"], labels, dcfg["val_limit"])

    # class prompt texts, tokenised once: per class a [P, L] tensor
    class_tokens = [tokenizer(prompt_set.texts_for(label)) for label in labels]
    prompt_on = any(pc[k] > 0 for k in ("weight", "align_weight", "prototype_weight"))
    soft_prompts = None
    if prompt_on:
        soft_prompts = SoftPrompts(model, tokenizer, labels, n_ctx=pc["n_ctx"], per_class=pc["per_class"],
                                   init=pc["init"], seed=cfg["seed"])
        previous = LearnedPrompts.from_meta(source_meta, source_tensors)  # continue the prompts of the init_from model
        if previous is not None and previous.ctx.shape[-2:] == soft_prompts.ctx.shape[-2:]:
            ctx = previous.ctx
            if previous.per_class:
                if soft_prompts.ctx.dim() == 3 and previous.covers(labels):
                    order = [taxonomy.canonical(c) for c in previous.classes]
                    ctx = ctx[[order.index(label) for label in labels]]
                else:
                    ctx = ctx.mean(0)
            with torch.no_grad():
                soft_prompts.ctx.copy_(ctx.expand_as(soft_prompts.ctx))
    hard_set = load_prompt_set(pc["hard_prompts"]) if pc["hard_prompts"] else prompt_set

    world = accelerator.num_processes
    if cfg["batch_size"] % world:
        raise ConfigError(f"config key 'batch_size' ({cfg['batch_size']}) must divide over {world} processes")
    per_rank = cfg["batch_size"] // world
    if per_rank % cfg["accum_steps"]:
        raise ConfigError(f"config key 'accum_steps' ({cfg['accum_steps']}) must divide the per-process batch ({per_rank})")
    n_samples = int(dcfg["samples_per_epoch"]) if streaming else len(data)
    steps_per_epoch = n_samples // cfg["batch_size"]
    if steps_per_epoch < 1:
        raise ConfigError(f"config key 'batch_size': {cfg['batch_size']} is larger than the training set ({n_samples} samples)")
    total_steps = steps_per_epoch * cfg["epochs"]
    if cfg["max_steps"]:
        total_steps = min(total_steps, int(cfg["max_steps"]))

    if cfg.get("channels_last", True):
        model = model.to(memory_format=torch.channels_last)  # about 25% faster convolutions on CPU
    forward = ContrastiveForward(model, soft_prompts)
    optimizer = _optimizer(cfg, [forward])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, total_steps))
    forward, optimizer, scheduler = accelerator.prepare(forward, optimizer, scheduler)
    class_weights = _class_weights(data.labels, len(labels), lw_power=lw["class_balance"]) if data is not None else None
    aug_gen = torch.Generator().manual_seed(cfg["seed"] * 1000 + accelerator.process_index)

    state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_uar": -1.0, "consecutive_nan": 0, "skipped_nan": 0}
    if (ckpt_dir / "trainer_state.json").is_file():
        accelerator.load_state(str(ckpt_dir))
        state.update(json.loads((ckpt_dir / "trainer_state.json").read_text()))
        aug_gen.set_state(torch.load(ckpt_dir / f"aug_rng_{accelerator.process_index}.pt", weights_only=True))
        accelerator.print(f"resumed from {ckpt_dir} at epoch {state['epoch']} step {state['global_step']}")

    inner = accelerator.unwrap_model(forward)
    unwrapped = inner.clip
    if pc["only"]:
        unwrapped.eval()  # frozen towers: batch-norm statistics stay as trained

    def to_input(images_uint8):
        return to_model_input(images_uint8, mean, std)

    prototypes = None
    frozen = None

    def refresh_prototypes():
        nonlocal prototypes, frozen
        frozen = frozen_copy(unwrapped)
        if data is not None:
            pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg["seed"]))[: pc["prototype_samples"]]
            images, ys = data.images[pick], data.labels[pick]
        else:  # streaming: the first prototype_samples samples of a separate stream
            stream = open_stream(cfg["seed"] + 104729, min(256, pc["prototype_samples"]))
            got = [next(stream) for _ in range(math.ceil(pc["prototype_samples"] / min(256, pc["prototype_samples"])))]
            images, ys = torch.cat([b["images"] for b in got]), torch.cat([b["labels"] for b in got])
        prototypes = class_prototypes(frozen, images, ys, len(labels), to_input).to(accelerator.device)
        frozen = None  # only the prototypes are kept

    prototypes_file = ckpt_dir / "prototypes.safetensors"
    if soft_prompts is not None and pc["prototype_weight"] > 0:
        if prototypes_file.is_file():  # resuming: the frozen copy's prototypes as they were, not the current model's
            prototypes = load_file(str(prototypes_file))["prototypes"].to(accelerator.device)
        else:
            refresh_prototypes()
    hard_cache = None

    def hard_prompts():
        nonlocal hard_cache
        if hard_cache is None or not (pc["only"] or (cfg["lock"]["text"] and not cfg["lock"]["text_unlocked_layers"])):
            hard_cache = hard_prompt_features(unwrapped, tokenizer, labels, hard_set)
        return hard_cache

    log_path = out / "log.csv"
    new_log = not log_path.exists()
    log_file = open(log_path, "a", newline="") if accelerator.is_main_process else None
    log = csv.writer(log_file) if log_file else None
    if log and new_log:
        log.writerow(["time", "epoch", "step", "loss", "lr", "samples_per_s", "positives", "val_war", "val_uar", "terms"])
    tb = None
    if accelerator.is_main_process and cfg["tensorboard"]:
        try:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(out / "tensorboard"))
        except ImportError:  # tensorboard is an optional extra
            accelerator.print("tensorboard is not installed (pip install tensorboard): CSV log only")

    def save_checkpoint():
        accelerator.wait_for_everyone()
        accelerator.save_state(str(ckpt_dir))
        torch.save(aug_gen.get_state(), ckpt_dir / f"aug_rng_{accelerator.process_index}.pt")
        if prototypes is not None and accelerator.is_main_process:
            save_file({"prototypes": prototypes.detach().cpu().contiguous()}, str(prototypes_file))
        if accelerator.is_main_process:
            (ckpt_dir / "trainer_state.json").write_text(json.dumps(state))

    def export(folder: Path, fp16: bool, extra_meta: Optional[dict] = None):
        em.model = unwrapped
        meta = {
            "labels": labels, "prompts": prompt_set.to_dict(), "grayscale": bool(dcfg["grayscale"]),
            "face_crop": {"margin": 0.2}, "architecture": cfg["model"],
            "training": {"config": cfg, "global_step": state["global_step"], "epoch": state["epoch"]},
            **(extra_meta or {}),
        }
        extra = None
        if soft_prompts is not None:
            learned = inner.soft_prompts.learned()
            meta["learned_prompts"] = learned.meta()
            extra = {learned.meta()["tensor"]: learned.ctx}
        save_model(em, folder, meta=meta, fp16=fp16, extra_tensors=extra)

    def raw_batch(idx: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The in-memory path's batch, shaped like a streamed one."""
        raw = {"images": data.images[idx], "soft_labels": data.soft_labels[idx], "labels": data.labels[idx],
               "global": data.global_tokens[idx], "summary": data.summary_tokens[idx]}
        if lw["local"] > 0 or lw["local_region"] > 0:
            raw["local"] = sample_local(data, idx, aug_gen)
        return raw

    def build_batch(raw: Dict[str, torch.Tensor]) -> StepBatch:
        x = augment(raw["images"].float() / 255.0, cfg["aug"], aug_gen)
        soft_raw = raw["soft_labels"]
        partner, lam = mixup_pairs(len(soft_raw), cfg["mixup"]["prob"], cfg["mixup"]["alpha"], aug_gen)
        soft = soft_raw
        if partner is not None:
            x, soft = apply_mixup(x, soft_raw, partner, lam)
        x = normalise(x, mean, std).to(accelerator.device)
        if cfg.get("channels_last", True):
            x = x.contiguous(memory_format=torch.channels_last)
        texts = {"global": raw["global"]}
        if lw["local"] > 0 or lw["local_region"] > 0:
            texts["local"] = raw["local"]
        if lw["summary"] > 0:
            texts["summary"] = raw["summary"]
        if lw["class_prompts"] > 0:
            texts["class"] = torch.stack([t[torch.randint(len(t), (1,), generator=aug_gen).item()] for t in class_tokens])
        dev = accelerator.device
        weights = class_weights[raw["labels"]] if class_weights is not None else torch.ones(len(raw["labels"]))
        extras = BatchExtras(
            soft_labels=soft.to(dev), raw_soft_labels=soft_raw.to(dev), sample_weights=weights.to(dev),
            mix_partner=None if partner is None else partner.to(dev), mix_lambda=None if lam is None else lam.to(dev),
            hard_prompts=hard_prompts() if soft_prompts is not None and pc["align_weight"] > 0 else None,
            prototypes=prototypes, mining=state["global_step"] >= lw["mining_warmup_steps"],
        )
        return StepBatch(x, {n: t.to(dev) for n, t in texts.items()}, extras, with_tokens=needs_tokens(cfg))

    start_step = state["global_step"]
    attempts = 0  # steps tried in this invocation, skipped ones included
    forward.train()
    if pc["only"]:
        unwrapped.eval()
    checkpoint_every = int(cfg.get("checkpoint_every") or 0) or max(1, steps_per_epoch // 4)
    done = state["global_step"] >= total_steps
    with tqdm(total=total_steps, initial=state["global_step"], disable=not (progress and accelerator.is_main_process), unit="step", desc="train") as bar:
        while not done and state["epoch"] < cfg["epochs"]:
            if streaming:  # a fresh stream per (re)start, seeded by the step it starts at
                stream = open_stream(cfg["seed"] + 7919 * state["global_step"], per_rank)
            else:
                order = epoch_order(data.labels, len(labels), dcfg["balance_power"], cfg["seed"] + 7919 * state["epoch"])
            t0, seen = time.time(), 0
            for step in range(state["step_in_epoch"], steps_per_epoch):
                if streaming:
                    raw = next(stream)
                else:
                    batch = order[step * cfg["batch_size"]:(step + 1) * cfg["batch_size"]]
                    raw = raw_batch(batch[accelerator.process_index * per_rank:(accelerator.process_index + 1) * per_rank])
                loss, stats = step_gradients(
                    forward, build_batch(raw), cfg, rank=accelerator.process_index, world=world,
                    accum_steps=cfg["accum_steps"], backward=accelerator.backward,
                    no_sync=lambda: accelerator.no_sync(forward), autocast=accelerator.autocast,
                )
                attempts += 1
                if cfg.get("debug_nan_at_steps") and attempts - 1 in cfg["debug_nan_at_steps"]:
                    loss = torch.tensor(float("nan"))  # tests: simulate a diverging step
                if not torch.isfinite(loss):
                    state["consecutive_nan"] += 1
                    state["skipped_nan"] += 1
                    state["step_in_epoch"] = step + 1  # the batch is used up; the weights stay as they were
                    optimizer.zero_grad(set_to_none=True)
                    accelerator.print(f"step {state['global_step']}: non-finite loss, step skipped")
                    if log:
                        log.writerow([round(time.time(), 1), state["epoch"], state["global_step"], "nan", "", "", "", "", "",
                                      "skipped: non-finite loss"])
                        log_file.flush()
                    if state["consecutive_nan"] >= MAX_CONSECUTIVE_NAN:
                        if log_file:
                            log_file.close()
                        raise TrainingStopped(
                            f"{MAX_CONSECUTIVE_NAN} non-finite losses in a row at step {state['global_step']}; "
                            f"the last good checkpoint is kept in {ckpt_dir}"
                        )
                    continue
                state["consecutive_nan"] = 0
                if cfg["grad_clip"]:
                    accelerator.clip_grad_norm_(forward.parameters(), cfg["grad_clip"])
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    unwrapped.logit_scale.clamp_(0, math.log(100))
                state["global_step"] += 1
                state["step_in_epoch"] = step + 1
                seen += cfg["batch_size"]
                bar.update(1)
                if pc["prototype_every"] and prototypes is not None and state["global_step"] % pc["prototype_every"] == 0:
                    refresh_prototypes()
                if state["global_step"] % cfg["log_every"] == 0 or state["global_step"] == total_steps:
                    rate = seen / max(time.time() - t0, 1e-9)
                    bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", sps=f"{rate:.0f}")
                    terms = {k: round(v, 4) for k, v in stats.items() if k != "positives"}
                    if log:
                        log.writerow([round(time.time(), 1), state["epoch"], state["global_step"], round(loss.item(), 5),
                                      scheduler.get_last_lr()[0], round(rate, 1), round(stats["positives"], 2), "", "",
                                      json.dumps(terms)])
                        log_file.flush()
                    if tb:
                        tb.add_scalar("train/loss", loss.item(), state["global_step"])
                        tb.add_scalar("train/lr", scheduler.get_last_lr()[0], state["global_step"])
                        tb.add_scalar("train/samples_per_s", rate, state["global_step"])
                        tb.add_scalar("train/mined_positives", stats["positives"], state["global_step"])
                        for k, v in terms.items():
                            tb.add_scalar(f"loss/{k}", v, state["global_step"])
                if state["global_step"] >= total_steps:
                    done = True
                    break
                if cfg["stop_after_steps"] and state["global_step"] - start_step >= int(cfg["stop_after_steps"]):
                    save_checkpoint()
                    accelerator.print(f"stopping after {cfg['stop_after_steps']} steps as configured; rerun to resume")
                    if log_file:
                        log_file.close()
                    if tb:
                        tb.close()
                    return ckpt_dir
                if state["global_step"] % checkpoint_every == 0:
                    save_checkpoint()
            if state["step_in_epoch"] >= steps_per_epoch:
                state["epoch"] += 1
                state["step_in_epoch"] = 0
            if validator is not None and accelerator.is_main_process:
                metrics = validator(unwrapped, tokenizer, labels, prompt_set, mean, std, accelerator.device,
                                    soft_prompts=inner.soft_prompts)
                accelerator.print(f"epoch {state['epoch']}: zero-shot {dcfg['val_split']} WAR {metrics['war']:.4f} UAR {metrics['uar']:.4f}")
                log.writerow([round(time.time(), 1), state["epoch"], state["global_step"], "", "", "", "",
                              round(metrics["war"], 5), round(metrics["uar"], 5), ""])
                log_file.flush()
                if tb:
                    tb.add_scalar("val/war", metrics["war"], state["global_step"])
                    tb.add_scalar("val/uar", metrics["uar"], state["global_step"])
                if metrics["uar"] + metrics["war"] > state["best_uar"]:
                    state["best_uar"] = metrics["uar"] + metrics["war"]
                    export(out / "best", fp16=False, extra_meta={"validation": {**metrics, "split": dcfg["val_split"]}})
                if pc["only"]:
                    unwrapped.eval()
            save_checkpoint()
    if accelerator.is_main_process:
        export(out / "final", fp16=cfg["save_fp16"])
        if log_file:
            log_file.close()
        if tb:
            tb.close()
    accelerator.wait_for_everyone()
    return out / "final"
