"""``train(cfg)``: the entry point of a training run (CLI, tests and notebooks call it).

Last step of a training run (config -> data -> losses -> **loop**). The language stage goes to
:mod:`emocap.train.language`; everything else to the trainer (:mod:`emocap.train.trainer`), whose steps are
methods of their own: build, resume, one epoch, one update, validate, checkpoint, export. The run folder's layout
and the checkpoint format are described there and in :mod:`emocap.train.checkpoints`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

from .checkpoints import CheckpointError  # noqa: F401  (re-exported: the CLI)
from .config import ConfigError
from .schedule import cosine_with_warmup, epoch_order  # noqa: F401  (re-exported: the language stage, tests)
from .trainer import MAX_CONSECUTIVE_NAN, Trainer, TrainingInterrupted, TrainingStopped  # noqa: F401
from .validation import Validator  # noqa: F401  (re-exported: language stage, benchmarks)


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


def train(cfg: Dict, progress: bool = True) -> Path:
    """Run (or resume) training as configured; returns the folder of the final model (or, when the invocation
    stops early with ``stop_after_steps``, the checkpoint it wrote)."""
    if cfg["language"]["enabled"]:
        from .language import train_language

        return train_language(cfg, progress=progress)
    init_model_id = resolve_init_from(cfg["init_from"]) if cfg.get("init_from") else None
    return Trainer(cfg, progress=progress, init_model_id=init_model_id).build().resume().run()
