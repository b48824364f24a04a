"""Building what a run trains: the model (architecture, start weights, locks), its soft prompts and the optimiser.

Part of the trainer's build step (:meth:`emocap.train.trainer.Trainer.build`). A model config with a key that
open_clip does not know is refused here with the key and the file named, before open_clip would fail with a
``TypeError``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch

from emocap import taxonomy
from emocap.learned_prompts import LearnedPrompts
from emocap.models import ModelLoadError, create_model, load_model

from .config import ConfigError
from .prompt_learning import SoftPrompts

def _create(arch: str):
    """A fresh model of architecture ``arch``; its config checked by core (unknown keys named with the file)."""
    try:
        return create_model(arch)
    except (ModelLoadError, OSError, ValueError) as e:  # unknown architecture, bad keys, unreadable config
        raise ConfigError(f"config key 'model': {e}") from None


def _load_start_weights(init_from: str, init_model_id: str):
    try:
        return load_model(init_model_id)
    except ModelLoadError as e:  # e.g. a key of the folder's config that open_clip rejects
        raise ConfigError(f"config key 'init_from': {e}") from None


def prepare_model(cfg: Dict, init_model_id: Optional[str]) -> Tuple[Any, Optional[LearnedPrompts]]:
    """The model to train: architecture, optional start weights (``init_model_id``, the resolved ``init_from``),
    locks and gradient checkpointing. Returns the :class:`emocap.models.EmocapModel` and the start model's learned
    prompts (None without a start model or prompts)."""
    em = _create(cfg["model"])
    source = None
    if init_model_id:
        source = _load_start_weights(cfg["init_from"], init_model_id)
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
    return em, (LearnedPrompts.from_model(source) if source is not None else None)


def prompts_on(cfg: Dict) -> bool:
    """Whether any soft-prompt term is switched on (then the run learns soft prompts)."""
    return any(cfg["prompt"][k] > 0 for k in ("weight", "align_weight", "prototype_weight"))


def build_soft_prompts(cfg: Dict, model, tokenizer, labels: List[str],
                       previous: Optional[LearnedPrompts]) -> Optional[SoftPrompts]:
    """The run's soft prompts (None when every prompt weight is 0), continuing ``previous``, the start model's."""
    pc = cfg["prompt"]
    if not prompts_on(cfg):
        return None
    soft_prompts = SoftPrompts(model, tokenizer, labels, n_ctx=pc["n_ctx"], per_class=pc["per_class"],
                               init=pc["init"], seed=cfg["seed"])
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
    return soft_prompts


def make_optimizer(cfg: Dict, modules: List[torch.nn.Module]) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; no weight decay on biases, norms, embeddings and prompt contexts."""
    named = [(n, p) for m in modules for n, p in m.named_parameters() if p.requires_grad]
    if not named:
        raise ConfigError("nothing to train: every parameter is locked (check lock.* and prompt.only)")

    def decays(name, p):
        return p.ndim >= 2 and "embedding" not in name and not name.endswith("ctx")

    decay = [p for n, p in named if decays(n, p)]
    no_decay = [p for n, p in named if not decays(n, p)]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"]
    )
