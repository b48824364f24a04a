"""Building what a run trains: the model (architecture, start weights, locks), its soft prompts and the optimiser.

Part of the trainer's build step (:meth:`emocap.train.trainer.Trainer.build`). A model config with a key that
open_clip does not know is refused here with the key and the file named, before open_clip would fail with a
``TypeError``.
"""

from __future__ import annotations

import dataclasses
import inspect
from importlib import resources
from typing import Any, Dict, List, Optional, Tuple

import open_clip
import torch

from emocap import taxonomy
from emocap.learned_prompts import LearnedPrompts
from emocap.models import ModelLoadError, create_model, load_model

from .config import ConfigError
from .prompt_learning import SoftPrompts

_EXTRA_TOP_KEYS = {"preprocess_cfg", "custom_text"}


def _known_keys() -> Dict[str, set]:
    top = set(inspect.signature(open_clip.model.CLIP.__init__).parameters) - {"self"}
    top |= set(inspect.signature(open_clip.model.CustomTextCLIP.__init__).parameters) - {"self"}
    return {
        "": top | _EXTRA_TOP_KEYS,
        "vision_cfg": {f.name for f in dataclasses.fields(open_clip.model.CLIPVisionCfg)},
        "text_cfg": {f.name for f in dataclasses.fields(open_clip.model.CLIPTextCfg)},
    }


def unknown_model_config_keys(model_cfg: Dict[str, Any]) -> List[str]:
    """Keys of an open_clip model config (``model_cfg``) that open_clip's CLIP would reject, as dotted names."""
    known = _known_keys()
    bad = [k for k in model_cfg if k not in known[""]]
    for section in ("vision_cfg", "text_cfg"):
        value = model_cfg.get(section)
        if isinstance(value, dict):
            bad += [f"{section}.{k}" for k in value if k not in known[section]]
    return bad


def model_config_file(model: str) -> str:
    """Where the config of architecture ``model`` comes from, for error messages."""
    if model.startswith("local-dir:"):
        return f"{model[len('local-dir:'):]}/open_clip_config.json"
    if model.startswith("hf-hub:"):
        return f"open_clip_config.json of {model}"
    bundled = resources.files("emocap").joinpath("model_configs", f"{model}.json")
    return str(bundled) if bundled.is_file() else f"open_clip's config of {model!r}"


def _create(arch: str):
    if arch.startswith("hf-hub:"):  # read (and checked) by open_clip when the model is built
        return _build(arch)
    try:
        model_cfg = open_clip.get_model_config(arch)
    except (OSError, ValueError) as e:  # a missing or unreadable local-dir config
        raise ConfigError(f"config key 'model': cannot read the model config {model_config_file(arch)}: {e}") from None
    if isinstance(model_cfg, dict):
        bad = unknown_model_config_keys(model_cfg)
        if bad:
            raise ConfigError(f"config key 'model': the model config {model_config_file(arch)} has unknown key(s) "
                              f"{', '.join(bad)} (open_clip's CLIP does not take them)")
    return _build(arch)


def _build(arch: str):
    try:
        return create_model(arch)
    except ModelLoadError as e:
        raise ConfigError(f"config key 'model': {e}") from None
    except TypeError as e:
        raise ConfigError(f"config key 'model': the model config {model_config_file(arch)} is not valid: {e}") from None


def _load_start_weights(init_from: str, init_model_id: str):
    try:
        return load_model(init_model_id)
    except TypeError as e:  # open_clip rejected a key of the folder's config
        raise ConfigError(f"config key 'init_from': the model config (open_clip_config.json) of {init_from} is not "
                          f"valid: {e}") from None


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
