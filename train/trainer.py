"""The trainer: a run's steps, each a method of its own (build, resume, one epoch, one update, validate,
checkpoint, export).

Last step of a training run (config -> data -> losses -> **trainer**), called through
:func:`emocap.train.loop.train`. One code path for CPU, one GPU or many (``accelerate launch``). The run folder
(``out``) holds::

    config.yaml          the resolved config: the settings a resumed run must match (run_settings.py)
    log.csv              one row per logged step, skipped step and validation (run_log.py)
    tensorboard/         the same scalars
    checkpoints/         the last two whole checkpoints, step<N>_epoch<E>_pos<P>/ (checkpoints.py)
    best/  final/        open_clip hub folders that ``emocap`` and ``open_clip`` load

Starting the same command again resumes from the newest whole checkpoint; the epoch's sample order and the
augmentation generator are restored, so the run ends with the weights an uninterrupted run ends with.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from pathlib import Path
from typing import Dict, Optional

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from emocap import taxonomy
from emocap.model_card import write_model_card
from emocap.face_predictions import CropPolicy
from emocap.gray_fold import gray_fold_problem
from emocap.models import save_model
from emocap.prompts import load_prompt_set

from .batches import BatchMaker
from .checkpoints import CheckpointError, CheckpointStore, TrainerState, checkpoint_name
from .config import ConfigError, save_config
from .data import load_caption_shards, to_model_input
from .fault_points import fault_point
from .forward import ContrastiveForward
from .model_setup import build_soft_prompts, make_optimizer, prepare_model
from .prompt_learning import class_prototypes, frozen_copy, hard_prompt_features
from .run_log import RunLog
from .run_settings import check_same_settings
from .schedule import class_loss_weights, epoch_order, lr_factor_schedule
from .step import step_gradients
from .streaming import stream_batches
from .validation import PhotoValidator, Validator

MAX_CONSECUTIVE_NAN = 5
PROTOTYPES_FILE = "prototypes.safetensors"


class TrainingStopped(RuntimeError):
    """Training could not go on (repeated non-finite losses); the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C (SIGINT) ended the run at a step boundary, after a resumable checkpoint was written."""


class Trainer:
    """One training run. ``Trainer(cfg).build()``, then :meth:`resume` and :meth:`run` (what ``train`` does)."""

    def __init__(self, cfg: Dict, progress: bool = True, init_model_id: Optional[str] = None):
        self.cfg = cfg
        self.progress = progress
        self.init_model_id = init_model_id
        self.out = Path(cfg["out"])
        self.state = TrainerState()
        self.prototypes: Optional[torch.Tensor] = None
        self.checkpoint: Optional[Path] = None  # the newest checkpoint this run wrote or resumed from
        self._hard_cache: Optional[torch.Tensor] = None
        self._interrupt = False
        self.last_validation: Optional[dict] = None  # the newest validation metrics, for final/'s model card

    # ------------------------------------------------------------------ build
    def build(self) -> "Trainer":
        """Accelerator, model, data, validation set, prompts, optimiser and schedule, in the order that fixes
        the random initialisation (the seed is set first)."""
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.utils import set_seed

        cfg = self.cfg
        if cfg.get("num_threads"):
            torch.set_num_threads(int(cfg["num_threads"]))
        on_gpu = torch.cuda.is_available()
        if cfg["precision"] == "fp16" and not on_gpu:
            raise ConfigError("config key 'precision': fp16 needs a GPU; use bf16 or no on CPU")
        # a second run in the same process (notebooks, tests) may use another precision; keep the process group
        AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = acc = Accelerator(cpu=not on_gpu, mixed_precision=cfg["precision"])
        set_seed(cfg["seed"])
        self.store = CheckpointStore(self.out, report=acc.print)
        if self.store.exists():
            check_same_settings(cfg, self.out)
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out / "config.yaml")
        self._build_model_and_data()
        self._build_sizes()
        self._build_optimisation()
        self.log = RunLog(self.out, enabled=acc.is_main_process, tensorboard=cfg["tensorboard"], report=acc.print)
        return self

    def _build_model_and_data(self) -> None:
        cfg, acc, dcfg = self.cfg, self.accelerator, self.cfg["data"]
        self.labels = [taxonomy.canonical(n) for n in taxonomy.label_set(cfg["labels"])]
        self.prompt_set = load_prompt_set(cfg["prompts"])
        self.em, start_prompts = prepare_model(cfg, self.init_model_id)
        self.tokenizer = self.em.tokenizer
        self.size = self.em.image_size
        self.mean, self.std = self.em.preprocess_cfg["mean"], self.em.preprocess_cfg["std"]
        self.streaming = bool(dcfg["streaming"])
        self.data = None
        if not self.streaming:
            self.data = load_caption_shards(
                dcfg["train_shards"], self.tokenizer, self.labels, dcfg["load_size"] or self.size, dcfg["grayscale"],
                limit=dcfg["train_limit"], progress=self.progress and acc.is_main_process,
            )
        self.validator = None
        if dcfg["val_root"]:
            self.validator = Validator(dcfg["val_root"], dcfg["val_split"], self.size, dcfg["grayscale"], self.labels,
                                       dcfg["val_limit"])
        self.photo_validator = None
        if dcfg["photo_val_root"] and acc.is_main_process:
            self.photo_validator = PhotoValidator(
                dcfg["photo_val_root"], dcfg["photo_val_split"], self.size, dcfg["grayscale"], self.labels,
                dcfg["photo_val_classes"] or self.labels, CropPolicy(), progress=self.progress)
        # class prompt texts, tokenised once: per class a [P, L] tensor
        self.class_tokens = [self.tokenizer(self.prompt_set.texts_for(label)) for label in self.labels]
        self.soft_prompts = build_soft_prompts(cfg, self.em.model, self.tokenizer, self.labels, start_prompts)
        pc = cfg["prompt"]
        self.hard_set = load_prompt_set(pc["hard_prompts"]) if pc["hard_prompts"] else self.prompt_set

    def _build_sizes(self) -> None:
        cfg = self.cfg
        self.world = self.accelerator.num_processes
        if cfg["batch_size"] % self.world:
            raise ConfigError(f"config key 'batch_size' ({cfg['batch_size']}) must divide over {self.world} processes")
        self.per_rank = cfg["batch_size"] // self.world
        if self.per_rank % cfg["accum_steps"]:
            raise ConfigError(f"config key 'accum_steps' ({cfg['accum_steps']}) must divide the per-process batch "
                              f"({self.per_rank})")
        n_samples = int(cfg["data"]["samples_per_epoch"]) if self.streaming else len(self.data)
        self.steps_per_epoch = n_samples // cfg["batch_size"]
        if self.steps_per_epoch < 1:
            raise ConfigError(f"config key 'batch_size': {cfg['batch_size']} is larger than the training set "
                              f"({n_samples} samples)")
        self.total_steps = self.steps_per_epoch * cfg["epochs"]
        if cfg["max_steps"]:
            self.total_steps = min(self.total_steps, int(cfg["max_steps"]))
        self.checkpoint_every = int(cfg.get("checkpoint_every") or 0) or max(1, self.steps_per_epoch // 4)

    def _build_optimisation(self) -> None:
        cfg, acc = self.cfg, self.accelerator
        model = self.em.model
        if cfg.get("channels_last", True):
            model = model.to(memory_format=torch.channels_last)  # about 25% faster convolutions on CPU
        forward = ContrastiveForward(model, self.soft_prompts)
        optimizer = make_optimizer(cfg, [forward])
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor_schedule(cfg, self.total_steps))
        self.forward, self.optimizer, self.scheduler = acc.prepare(forward, optimizer, scheduler)
        class_weights = None
        if self.data is not None:
            class_weights = class_loss_weights(self.data.labels, len(self.labels), cfg["loss"]["class_balance"])
        self.aug_gen = torch.Generator().manual_seed(cfg["seed"] * 1000 + acc.process_index)
        self.batches = BatchMaker(cfg, self.data, self.class_tokens, class_weights, self.mean, self.std, acc.device,
                                  self.aug_gen)
        self.inner = acc.unwrap_model(self.forward)
        self.clip = self.inner.clip

    def open_stream(self, seed: int, batch_size: int):
        """A webdataset stream of this rank's share of the training shards (streaming mode)."""
        dcfg, acc = self.cfg["data"], self.accelerator
        return stream_batches(
            dcfg["train_shards"], self.tokenizer, self.labels, dcfg["load_size"] or self.size, dcfg["grayscale"],
            batch_size, rank=acc.process_index, world=acc.num_processes, workers=dcfg["workers"],
            resampled=dcfg["resampled"], shuffle_buffer=dcfg["shuffle_buffer"], seed=seed,
        )

    # ------------------------------------------------------------------ resume
    def resume(self) -> "Trainer":
        """Load the newest whole checkpoint of the run folder (if any) and say which; then the prototypes."""
        acc = self.accelerator
        if acc.is_main_process:
            self.store.clear_incomplete(report=True)
        acc.wait_for_everyone()
        found = self.store.find_resumable()
        if found is not None:
            folder, self.state = found
            try:
                acc.load_state(str(folder))
                self.aug_gen.set_state(torch.load(folder / f"aug_rng_{acc.process_index}.pt", weights_only=True))
            except (OSError, RuntimeError, ValueError, KeyError, EOFError) as e:  # e.g. an old, unhashed checkpoint
                raise CheckpointError(f"checkpoint {folder} could not be loaded ({type(e).__name__}: {e}); move it "
                                      "out of the run folder to resume from an older one") from None
            self.checkpoint = folder
            acc.print(f"resumed from {folder} at epoch {self.state.epoch} step {self.state.global_step}")
        if self.cfg["prompt"]["only"]:
            self.clip.eval()  # frozen towers: batch-norm statistics stay as trained
        if self.soft_prompts is not None and self.cfg["prompt"]["prototype_weight"] > 0:
            saved = self.checkpoint / PROTOTYPES_FILE if self.checkpoint is not None else None
            if saved is not None and saved.is_file():  # the frozen copy's prototypes as they were
                self.prototypes = load_file(str(saved))["prototypes"].to(acc.device)
            else:
                self.refresh_prototypes()
        return self

    def refresh_prototypes(self) -> None:
        """Class prototypes of a frozen copy of the current image encoder."""
        cfg, pc, data = self.cfg, self.cfg["prompt"], self.data
        frozen = frozen_copy(self.clip)
        if data is not None:
            pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(cfg["seed"]))[: pc["prototype_samples"]]
            images, ys = data.images[pick], data.labels[pick]
        else:  # streaming: the first prototype_samples samples of a separate stream
            chunk = min(256, pc["prototype_samples"])
            stream = self.open_stream(cfg["seed"] + 104729, chunk)
            got = [next(stream) for _ in range(math.ceil(pc["prototype_samples"] / chunk))]
            images, ys = torch.cat([b["images"] for b in got]), torch.cat([b["labels"] for b in got])
        self.prototypes = class_prototypes(frozen, images, ys, len(self.labels),
                                           lambda x: to_model_input(x, self.mean, self.std)).to(self.accelerator.device)

    def hard_prompts(self) -> torch.Tensor:
        """Text features of the class descriptions (cached while the text tower cannot change)."""
        cfg = self.cfg
        text_frozen = cfg["prompt"]["only"] or (cfg["lock"]["text"] and not cfg["lock"]["text_unlocked_layers"])
        if self._hard_cache is None or not text_frozen:
            self._hard_cache = hard_prompt_features(self.clip, self.tokenizer, self.labels, self.hard_set)
        return self._hard_cache

    # ------------------------------------------------------------------ run
    def run(self) -> Path:
        """Train to the end (or to ``stop_after_steps``, or Ctrl-C); returns final/ (or the checkpoint)."""
        self.start_step = self.state.global_step
        self.attempts = 0  # steps tried in this invocation, skipped ones included
        self.forward.train()
        if self.cfg["prompt"]["only"]:
            self.clip.eval()
        self.done = self.state.global_step >= self.total_steps
        previous_handler = self._catch_sigint()
        try:
            with tqdm(total=self.total_steps, initial=self.state.global_step, unit="step", desc="train",
                      disable=not (self.progress and self.accelerator.is_main_process)) as bar:
                while not self.done and self.state.epoch < self.cfg["epochs"]:
                    stopped_at = self.train_one_epoch(bar)
                    if stopped_at is not None:
                        return stopped_at
                    self.end_epoch()
            return self.finish()
        finally:
            self.log.close()
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)

    def _catch_sigint(self):
        """Ctrl-C asks the run to stop at the next step boundary (a second Ctrl-C stops it at once)."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_sigint(signum, frame):
            self._interrupt = True
            signal.signal(signal.SIGINT, signal.default_int_handler)

        return signal.signal(signal.SIGINT, on_sigint)

    def _interrupt_requested(self) -> bool:
        if self.world == 1:
            return self._interrupt
        flag = torch.tensor([1.0 if self._interrupt else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)  # every rank stops at the same step

    def train_one_epoch(self, bar) -> Optional[Path]:
        """The rest of the current epoch. Returns the checkpoint folder when the invocation ends early
        (``stop_after_steps``); raises :class:`TrainingInterrupted` after a checkpoint on Ctrl-C."""
        cfg, acc, state = self.cfg, self.accelerator, self.state
        if self.streaming:  # a fresh stream per (re)start, seeded by the step it starts at
            stream = self.open_stream(cfg["seed"] + 7919 * state.global_step, self.per_rank)
        else:
            order = epoch_order(self.data.labels, len(self.labels), cfg["data"]["balance_power"],
                                cfg["seed"] + 7919 * state.epoch)
        self._t0, self._seen = time.time(), 0
        for step in range(state.step_in_epoch, self.steps_per_epoch):
            if self.streaming:
                raw = next(stream)
            else:
                batch = order[step * cfg["batch_size"]:(step + 1) * cfg["batch_size"]]
                rank = acc.process_index
                raw = self.batches.from_memory(batch[rank * self.per_rank:(rank + 1) * self.per_rank])
            if not self.train_step(raw, step, bar):
                continue  # a skipped (non-finite) step
            if state.global_step >= self.total_steps:
                self.done = True
                break
            if cfg["stop_after_steps"] and state.global_step - self.start_step >= int(cfg["stop_after_steps"]):
                folder = self.save_checkpoint()
                acc.print(f"stopping after {cfg['stop_after_steps']} steps as configured; rerun to resume")
                return folder
            if self._interrupt_requested():
                folder = self.save_checkpoint()
                raise TrainingInterrupted(f"interrupted at step {state.global_step}; checkpoint {folder} written, "
                                          "rerun the same command to resume")
            if state.global_step % self.checkpoint_every == 0:
                self.save_checkpoint()
        return None

    def train_step(self, raw: Dict[str, torch.Tensor], step: int, bar) -> bool:
        """One optimisation step on ``raw`` (position ``step`` of the epoch); False if it was skipped."""
        cfg, acc, state, pc = self.cfg, self.accelerator, self.state, self.cfg["prompt"]
        hard = self.hard_prompts() if self.soft_prompts is not None and pc["align_weight"] > 0 else None
        mining = state.global_step >= cfg["loss"]["mining_warmup_steps"]
        loss, stats = step_gradients(
            self.forward, self.batches.step_batch(raw, hard, self.prototypes, mining), cfg, rank=acc.process_index,
            world=self.world, accum_steps=cfg["accum_steps"], backward=acc.backward,
            no_sync=lambda: acc.no_sync(self.forward), autocast=acc.autocast,
        )
        self.attempts += 1
        if cfg.get("debug_nan_at_steps") and self.attempts - 1 in cfg["debug_nan_at_steps"]:
            loss = torch.tensor(float("nan"))  # tests: simulate a diverging step
        if not torch.isfinite(loss):
            self._skip_step(step)
            return False
        state.consecutive_nan = 0
        if cfg["grad_clip"]:
            acc.clip_grad_norm_(self.forward.parameters(), cfg["grad_clip"])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.clip.logit_scale.clamp_(0, math.log(100))
        state.global_step += 1
        state.step_in_epoch = step + 1
        self._seen += cfg["batch_size"]
        bar.update(1)
        fault_point("step", state.global_step)
        if pc["prototype_every"] and self.prototypes is not None and state.global_step % pc["prototype_every"] == 0:
            self.refresh_prototypes()
        if state.global_step % cfg["log_every"] == 0 or state.global_step == self.total_steps:
            rate = self._seen / max(time.time() - self._t0, 1e-9)
            lr = self.scheduler.get_last_lr()[0]
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.2e}", sps=f"{rate:.0f}")
            self.log.step(state.epoch, state.global_step, loss.item(), lr, rate, stats)
        return True

    def _skip_step(self, step: int) -> None:
        """A non-finite loss: the batch is used up, the weights stay; too many in a row stop the run."""
        state = self.state
        state.consecutive_nan += 1
        state.skipped_nan += 1
        state.step_in_epoch = step + 1
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.print(f"step {state.global_step}: non-finite loss, step skipped")
        self.log.skipped_step(state.epoch, state.global_step)
        if state.consecutive_nan >= MAX_CONSECUTIVE_NAN:
            raise TrainingStopped(f"{MAX_CONSECUTIVE_NAN} non-finite losses in a row at step {state.global_step}; "
                                  f"the last good checkpoint is kept in {self.checkpoint or self.store.root}")

    def end_epoch(self) -> None:
        """Close the epoch: count it when complete, validate (main process) and checkpoint."""
        state = self.state
        if state.step_in_epoch >= self.steps_per_epoch:
            state.epoch += 1
            state.step_in_epoch = 0
        if self.validator is not None and self.accelerator.is_main_process:
            self.validate()
        self.save_checkpoint()

    def validate(self) -> Dict[str, float]:
        """Zero-shot WAR/UAR on the validation split (and on the validation photos when set); a new best (the sum of
        the WARs and UARs) is exported to best/."""
        state, dcfg = self.state, self.cfg["data"]
        args = (self.clip, self.tokenizer, self.labels, self.prompt_set, self.mean, self.std, self.accelerator.device)
        metrics = self.validator(*args, soft_prompts=self.inner.soft_prompts)
        line = f"epoch {state.epoch}: zero-shot {dcfg['val_split']} WAR {metrics['war']:.4f} UAR {metrics['uar']:.4f}"
        photos = None
        if self.photo_validator is not None:
            photos = self.photo_validator(*args, soft_prompts=self.inner.soft_prompts)
            line += f"; photos WAR {photos['war']:.4f} UAR {photos['uar']:.4f}"
        self.accelerator.print(line)
        self.log.validation(state.epoch, state.global_step, metrics, photos)
        self.last_validation = {**metrics, "split": dcfg["val_split"]}
        if photos is not None:
            self.last_validation["photos"] = {**photos, "root": str(dcfg["photo_val_root"])}
        score = metrics["uar"] + metrics["war"] + (photos["war"] + photos["uar"] if photos else 0.0)
        if score > state.best_war_plus_uar:
            state.best_war_plus_uar = score
            self.export(self.out / "best", fp16=False, extra_meta={"validation": self.last_validation})
        if self.cfg["prompt"]["only"]:
            self.clip.eval()
        return metrics

    # ------------------------------------------------------------------ checkpoint, export
    def save_checkpoint(self) -> Path:
        """Write a whole, verified checkpoint of the current state (atomic: temp folder, fsync, rename)."""
        acc, state = self.accelerator, self.state
        folder = self.store.incomplete_folder(state)
        acc.wait_for_everyone()
        if acc.is_main_process:
            self.store.clear_incomplete()
        acc.wait_for_everyone()
        acc.save_state(str(folder))
        torch.save(self.aug_gen.get_state(), folder / f"aug_rng_{acc.process_index}.pt")
        if self.prototypes is not None and acc.is_main_process:
            save_file({"prototypes": self.prototypes.detach().cpu().contiguous()}, str(folder / PROTOTYPES_FILE))
        acc.wait_for_everyone()
        if acc.is_main_process:
            self.store.commit(folder, state, fault=lambda point: fault_point(point, state.global_step))
        acc.wait_for_everyone()
        self.checkpoint = self.store.root / checkpoint_name(state)
        return self.checkpoint

    def export(self, folder: Path, fp16: bool, extra_meta: Optional[dict] = None) -> None:
        """Save the current model (and learned prompts) as an open_clip hub folder."""
        cfg, em = self.cfg, self.em
        em.model = self.clip
        meta = {
            "labels": self.labels, "prompts": self.prompt_set.to_dict(), "grayscale": bool(cfg["data"]["grayscale"]),
            "face_crop": CropPolicy().to_meta(), "architecture": cfg["model"],
            "training": {"config": cfg, "global_step": self.state.global_step, "epoch": self.state.epoch},
            **(extra_meta or {}),
        }
        extra = {}
        if self.soft_prompts is not None:
            learned = self.inner.soft_prompts.learned()
            meta["learned_prompts"] = learned.meta()
            extra = {learned.meta()["tensor"]: learned.ctx}
        save_model(em, folder, meta=meta, fp16=fp16, extra_tensors=extra)
        write_model_card(folder)  # README.md: config, validation metrics, usage, terms, limits (emocap push adds results)
        # a gray run's folder takes RGB: the gray conversion is folded into the saved first layer (the training
        # module is not changed), so plain open_clip gives emocap's scores on colour photos (emocap.gray_fold)
        problem = gray_fold_problem(em.clip, em.preprocess_cfg) if meta["grayscale"] else None
        if problem:
            self.accelerator.print(f"{folder}: saved with \"grayscale\": true (emocap converts to gray, plain "
                                   f"open_clip will not): {problem}")
        fold = meta["grayscale"] and problem is None
        save_model(em, folder, meta=meta, fp16=fp16, extra_tensors=extra, fold_gray=fold)

    def finish(self) -> Path:
        """Export final/ (main process) once every process is done."""
        if self.accelerator.is_main_process:
            last = {"validation": self.last_validation} if self.last_validation else None
            self.export(self.out / "final", fp16=self.cfg["save_fp16"], extra_meta=last)
        self.accelerator.wait_for_everyone()
        return self.out / "final"
