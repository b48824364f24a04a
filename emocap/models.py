"""Model factory on top of open_clip: bundled architectures, loading by id, saving in open_clip's hub format.

Where it sits: training builds models here (:func:`create_model`) and saves them (:func:`save_model`); the
classifier and eval load them (:func:`load_model`). A saved model is an open_clip hub folder::

    open_clip_config.json        {"model_cfg": ..., "preprocess_cfg": ..., "emocap": {...emocap's own keys}}
    open_clip_model.safetensors  weights (fp16 or fp32)

    emocap_extra.safetensors     optional: extra tensors (learned prompt vectors), ignored by open_clip

so ``open_clip.create_model_and_transforms("local-dir:<folder>")`` and ``"hf-hub:org/repo"`` load it too.
emocap's keys: ``labels`` (the label set the model was validated on), ``prompts`` (a prompt set dict with its
hash), ``grayscale`` (``true``: emocap converts input to gray before preprocessing; ``"folded"``: a gray model
whose first layer does the conversion, so it takes RGB like any open_clip model and plain open_clip gives the
same scores, see :mod:`emocap.gray_fold`; ``gray_fold`` then records the layer and weights), ``face_crop`` (crop
policy for full photos),
and optionally ``learned_prompts`` (what the ``prompt_ctx`` extra tensor is). A loaded :class:`EmocapModel` keeps
the JSON keys in ``meta`` (plain JSON, always) and the extra tensors in ``extra_tensors``.

Model ids (parsed by :func:`emocap.model_ids.parse_model_id`): ``None`` or ``"default"`` (the embedded model), a
bundled architecture name (random weights, for training only), ``hf-hub:org/repo``, ``local-dir:/path``,
``open_clip:<arch>/<tag>`` or a plain folder path. Weights load through safetensors only; a folder without a
weight file is an error, never a silent random model.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import open_clip
import torch
from safetensors.torch import load_file, save_file

from .gray_fold import FOLDED, GrayFoldError, fold_gray_into_state, gray_fold_record, is_gray_folded
from .learned_prompts import encode_text_embeddings
from .model_files import (CONFIG_NAME, DEFAULT_MODEL_ID, EXTRA_TENSORS_NAME, WEIGHTS_NAME, default_model_dir,
                          local_path)
from .model_ids import ModelId, parse_model_id

__all__ = [
    "EmocapModel", "create_model", "load_model", "save_model", "list_models", "resolve_model_dir",
    "ModelLoadError", "DEFAULT_MODEL_ID", "CONFIG_NAME", "WEIGHTS_NAME", "encode_text_trimmed",
    "load_open_clip_model", "open_clip_hub_id", "ModelId", "parse_model_id", "GrayFoldError",
]

log = logging.getLogger(__name__)

HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.md", "*.txt", "*.model"]


class ModelLoadError(RuntimeError):
    """A model id that cannot be resolved or loaded; the message says which and why."""


def _register_bundled_configs() -> List[str]:
    folder = resources.files("emocap").joinpath("model_configs")
    names = []
    for item in folder.iterdir():
        if item.name.endswith(".json"):
            with resources.as_file(item) as path:
                open_clip.add_model_config(path)
            names.append(item.name[:-5])
    return sorted(names)


BUNDLED_ARCHITECTURES = _register_bundled_configs()


def list_models() -> Dict[str, List[str]]:
    """Bundled architectures (random init, for training) and the embedded pretrained model."""
    return {"pretrained": [DEFAULT_MODEL_ID], "architectures": list(BUNDLED_ARCHITECTURES)}


@dataclass
class EmocapModel:
    """A loaded model: the open_clip module (in eval mode), its transforms, tokenizer and emocap metadata.

    ``meta`` holds the config's ``emocap`` keys (plain JSON); ``extra_tensors`` the tensors saved beside the
    weights (``emocap_extra.safetensors``: learned prompt vectors), by name. ``clip`` is the open_clip module
    (the same object as the ``model`` field, by a name that reads well as ``classifier.model.clip``).
    """

    model: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable
    model_cfg: Dict[str, Any]
    preprocess_cfg: Dict[str, Any]
    meta: Dict[str, Any] = field(default_factory=dict)
    model_id: str = ""
    path: Optional[Path] = None
    extra_tensors: Dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def clip(self) -> torch.nn.Module:
        """The open_clip module (``CLIP`` or ``CustomTextCLIP``)."""
        return self.model

    @clip.setter
    def clip(self, module: torch.nn.Module) -> None:
        self.model = module

    @property
    def device(self) -> torch.device:
        return next(self.clip.parameters()).device

    @property
    def image_size(self) -> int:
        size = self.model_cfg["vision_cfg"]["image_size"]
        return size if isinstance(size, int) else size[0]

    @property
    def grayscale(self) -> bool:
        """Whether emocap converts input to gray before preprocessing (config ``"grayscale": true``). False for a
        gray model with the conversion folded into its first layer (:attr:`gray_folded`): it takes RGB."""
        return bool(self.meta.get("grayscale", False)) and not self.gray_folded

    @property
    def gray_folded(self) -> bool:
        """Whether this is a gray model whose first layer converts RGB to gray (config ``"grayscale": "folded"``)."""
        return is_gray_folded(self.meta)

    @property
    def gray_model(self) -> bool:
        """Whether the model ignores colour, either way (converted by emocap or folded into the model)."""
        return self.grayscale or self.gray_folded


def default_preprocess_cfg(model_cfg: Dict[str, Any]) -> Dict[str, Any]:
    size = model_cfg["vision_cfg"]["image_size"]
    cfg = model_cfg.get("preprocess_cfg", {})
    return {
        "size": size,
        "mode": "RGB",
        "mean": list(cfg.get("mean", (0.5, 0.5, 0.5))),
        "std": list(cfg.get("std", (0.25, 0.25, 0.25))),
        "interpolation": cfg.get("interpolation", "bicubic"),
        "resize_mode": cfg.get("resize_mode", "shortest"),
    }


_EXTRA_TOP_KEYS = {"preprocess_cfg", "custom_text"}  # config keys open_clip reads outside CLIP()


def _known_config_keys() -> Dict[str, set]:
    top = set(inspect.signature(open_clip.model.CLIP.__init__).parameters) - {"self"}
    top |= set(inspect.signature(open_clip.model.CustomTextCLIP.__init__).parameters) - {"self"}
    return {
        "": top | _EXTRA_TOP_KEYS,
        "vision_cfg": {f.name for f in dataclasses.fields(open_clip.model.CLIPVisionCfg)},
        "text_cfg": {f.name for f in dataclasses.fields(open_clip.model.CLIPTextCfg)},
    }


def unknown_model_config_keys(model_cfg: Dict[str, Any]) -> List[str]:
    """Keys of an open_clip model config (``model_cfg``) that open_clip's CLIP would reject, as dotted names."""
    known = _known_config_keys()
    bad = [k for k in model_cfg if k not in known[""]]
    for section in ("vision_cfg", "text_cfg"):
        value = model_cfg.get(section)
        if isinstance(value, dict):
            bad += [f"{section}.{k}" for k in value if k not in known[section]]
    return bad


def check_model_config(model_cfg: Dict[str, Any], where: str) -> None:
    """ModelLoadError naming ``where`` (the config file or architecture) and every key open_clip would reject."""
    bad = unknown_model_config_keys(model_cfg)
    if bad:
        raise ModelLoadError(f"{where}: unknown model config key(s) {', '.join(bad)} (open_clip's CLIP does not "
                             "take them; a typo?)")


def _config_source(arch: str) -> str:
    """Where the config of architecture ``arch`` comes from, for messages: a file where there is one."""
    parsed = parse_model_id(arch)
    if parsed.scheme == "local-dir":
        return str(Path(parsed.value) / CONFIG_NAME)
    bundled = resources.files("emocap").joinpath("model_configs", f"{arch}.json")
    return str(bundled) if parsed.scheme == "path" and bundled.is_file() else f"the config of architecture {arch!r}"


def _model_cfg_for_open_clip(model_cfg: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in model_cfg.items() if k != "preprocess_cfg"}


def create_model(arch: str, device: Union[str, torch.device, None] = None, **overrides) -> EmocapModel:
    """A randomly initialised model of a bundled (or any open_clip) architecture, in train mode, for training.

    ``overrides`` replace top-level config keys (``embed_dim``) or nested ones given as dicts
    (``vision_cfg={"image_size": 48}``).
    """
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ModelLoadError(f"unknown architecture {arch!r}; bundled: {', '.join(BUNDLED_ARCHITECTURES)}")
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    check_model_config(cfg, _config_source(arch))
    return build_from_config(cfg, device=device, model_id=arch)


def build_from_config(
    model_cfg: Dict[str, Any], device=None, model_id: str = "", meta: Optional[dict] = None,
    preprocess_cfg: Optional[dict] = None,
) -> EmocapModel:
    model_cfg = dict(model_cfg)
    pp = dict(preprocess_cfg or default_preprocess_cfg(model_cfg))
    clean = _model_cfg_for_open_clip(model_cfg)
    model = open_clip.model.CLIP(**clean) if "custom_text" not in clean else open_clip.model.CustomTextCLIP(**clean)
    # open_clip stores preprocessing on the visual module; keep it consistent with our config
    model.visual.image_mean = tuple(pp["mean"])
    model.visual.image_std = tuple(pp["std"])
    if device is not None:
        model.to(device)
    pp_obj = open_clip.transform.PreprocessCfg(**{k: v for k, v in pp.items() if k in open_clip.transform._PREPROCESS_KEYS})
    preprocess = open_clip.transform.image_transform_v2(pp_obj, is_train=False)
    ctx = clean.get("text_cfg", {}).get("context_length", 77)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=ctx)
    return EmocapModel(model, preprocess, tokenizer, model_cfg, pp, dict(meta or {}), model_id)


def save_model(
    em: EmocapModel, folder: Union[str, os.PathLike], *, meta: Optional[dict] = None, fp16: bool = False,
    extra_tensors: Optional[Dict[str, torch.Tensor]] = None, fold_gray: bool = False,
) -> Path:
    """Write ``em`` as an open_clip hub folder plus emocap's keys; returns the folder.

    ``meta`` (plain JSON) is merged over ``em.meta``. ``fp16`` halves the file (used for the embedded model).
    ``extra_tensors`` (default: ``em.extra_tensors``; ``{}`` for none) go to ``emocap_extra.safetensors``
    beside the weights, which open_clip ignores on load. ``fold_gray`` (for a gray model) writes the first layer
    with the gray conversion folded in and ``"grayscale": "folded"``, so the folder takes RGB and plain open_clip
    gives emocap's scores (:mod:`emocap.gray_fold`; GrayFoldError for a tower or preprocessing it cannot fold).
    ``em`` itself is not changed.
    """
    folder = Path(folder)
    merged_meta = {**em.meta, **(meta or {})}
    state = {k: v.detach().to("cpu").contiguous() for k, v in em.clip.state_dict().items()}
    if fold_gray:
        if not merged_meta.get("grayscale"):
            raise GrayFoldError(f"fold_gray for {folder}: the model's emocap keys say grayscale "
                                f"{merged_meta.get('grayscale', False)!r}; only a gray model's conversion can be folded")
        state = fold_gray_into_state(em.clip, state, em.preprocess_cfg)
        merged_meta.update(grayscale=FOLDED, gray_fold=gray_fold_record())
    config = {
        "model_cfg": _model_cfg_for_open_clip(em.model_cfg),
        "preprocess_cfg": em.preprocess_cfg,
        "emocap": merged_meta,
    }
    config_text = _config_json(config, merged_meta)
    folder.mkdir(parents=True, exist_ok=True)
    if fp16:
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    tmp_weights = folder / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp_weights), metadata={"format": "pt", "producer": "emocap"})
    os.replace(tmp_weights, folder / WEIGHTS_NAME)
    tensors = em.extra_tensors if extra_tensors is None else extra_tensors
    if tensors:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(folder / EXTRA_TENSORS_NAME))
    (folder / CONFIG_NAME).write_text(config_text, encoding="utf-8")
    return folder


def _config_json(config: Dict[str, Any], meta: Dict[str, Any]) -> str:
    """The config file's text; a TypeError naming the key when the metadata is not plain JSON."""
    try:
        return json.dumps(config, indent=2)
    except TypeError as e:
        bad = [k for k, v in meta.items() if not _is_json(v)]
        raise TypeError(f"model metadata must be plain JSON; key(s) {bad} hold other values ({e}). "
                        "Tensors go in extra_tensors, not in meta") from None


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


def resolve_model_dir(model_id: Union[str, ModelId, None], cache_dir: Optional[str] = None) -> Path:
    """Turn a model id into a local folder holding ``open_clip_config.json`` and safetensors weights."""
    parsed = parse_model_id(model_id)
    if parsed.scheme == "default":
        folder = default_model_dir()
        if not (folder / WEIGHTS_NAME).is_file():
            raise ModelLoadError(
                f"the embedded default model is missing from {folder} (no {WEIGHTS_NAME}); "
                "reinstall emocap or train it with `emocap train --config default`"
            )
        return folder
    if parsed.scheme == "hf-hub":
        return _hub_snapshot(parsed.value, cache_dir)
    if parsed.scheme == "open_clip":
        raise ModelLoadError(f"{parsed} names open_clip weights, not a model folder; load it with load_model")
    folder = local_path(parsed)
    if not folder.is_dir():
        if parsed.scheme == "path" and parsed.value in BUNDLED_ARCHITECTURES:
            raise ModelLoadError(
                f"{parsed.value!r} is an architecture without trained weights; use create_model({parsed.value!r}) "
                "to train one, or give a trained model id (default, hf-hub:org/repo, local-dir:/path)"
            )
        raise ModelLoadError(f"model {str(parsed)!r} not found: not a bundled name, hf-hub: id or existing folder")
    return folder


def _hub_snapshot(repo: str, cache_dir: Optional[str]) -> Path:
    """The local snapshot of a Hugging Face hub repo (model files only), downloaded when needed."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, allow_patterns=HUB_ALLOW_PATTERNS, cache_dir=cache_dir))
    except Exception as e:  # offline, missing repo, auth
        raise ModelLoadError(
            f"cannot fetch hf-hub:{repo} from the Hugging Face hub ({type(e).__name__}: {e}). "
            "Offline? Download it once with network access, or set HF_HUB_OFFLINE=1 to use the local cache."
        ) from None


def open_clip_hub_repo(arch: str, tag: str) -> str:
    """The Hugging Face hub repo that open_clip's pretrained registry names for ``(arch, tag)``.

    Raises ModelLoadError for an unknown tag, or for weights published only as a pickled checkpoint URL.
    """
    pcfg = open_clip.get_pretrained_cfg(arch, tag) if tag else {}
    if not pcfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise ModelLoadError(f"open_clip has no pretrained tag {tag!r} for {arch}; tags: {tags}")
    repo = (pcfg.get("hf_hub") or "").strip("/")
    if not repo:
        raise ModelLoadError(f"{arch}/{tag} is only published as a pickled checkpoint URL; emocap loads "
                             "safetensors from the Hugging Face hub only (convert it to an open_clip hub folder)")
    return repo


def open_clip_hub_id(model_id: Union[str, ModelId]) -> ModelId:
    """The ``hf-hub`` id of an ``open_clip:<arch>/<tag>`` id's weights (ModelLoadError for a malformed id or tag)."""
    try:
        arch, tag = parse_model_id(model_id).arch_and_tag
    except ValueError as e:
        raise ModelLoadError(str(e)) from None
    return ModelId("hf-hub", open_clip_hub_repo(arch, tag))


def load_open_clip_model(
    arch: str, pretrained: str, device: Union[str, torch.device, None] = None, cache_dir: Optional[str] = None
) -> EmocapModel:
    """Any open_clip architecture with open_clip's pretrained weights (baselines such as ``ViT-B-16`` + ``openai``).

    ``pretrained`` is an open_clip pretrained tag (its weights come from the tag's Hugging Face hub repo, as
    safetensors only), a local ``.safetensors`` file of the architecture, or ``random`` (random weights, for
    timing only; never implied). The model has no emocap keys: RGB input, the bundled prompts.
    """
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ModelLoadError(f"unknown open_clip architecture {arch!r} (see open_clip.list_models())")
    pp_cfg = {k: v for k, v in (cfg.get("preprocess_cfg") or {}).items()}
    state = None
    model_id = f"{arch}/{pretrained}"
    if pretrained == "random":
        pass
    elif pretrained.endswith(".safetensors"):
        if not Path(pretrained).is_file():
            raise ModelLoadError(f"weights file {pretrained} does not exist")
        state = load_file(pretrained, device="cpu")
        model_id = f"{arch}/{Path(pretrained).name}"
    else:
        pcfg = open_clip.get_pretrained_cfg(arch, pretrained)
        repo = open_clip_hub_repo(arch, pretrained)
        folder = _hub_snapshot(repo, cache_dir)
        if (folder / CONFIG_NAME).is_file():
            return _load_folder(folder, model_id, device)
        files = [f for f in (folder / WEIGHTS_NAME, folder / "model.safetensors") if f.is_file()]
        if not files:
            raise ModelLoadError(f"hf-hub:{repo} has no safetensors weights; emocap never unpickles downloads")
        state = load_file(str(files[0]), device="cpu")
        pp_cfg.update({k: pcfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if pcfg.get(k)})
    pp = default_preprocess_cfg({**cfg, "preprocess_cfg": {"mean": (0.48145466, 0.4578275, 0.40821073),
                                                           "std": (0.26862954, 0.26130258, 0.27577711),
                                                           **pp_cfg}})
    em = build_from_config(cfg, model_id=model_id, preprocess_cfg=pp)
    if state is not None:
        try:
            em.clip.load_state_dict(state, strict=True)
        except RuntimeError as e:
            detail = "; ".join(line.strip() for line in str(e).splitlines()[1:4])
            raise ModelLoadError(f"{model_id}: weights do not match the {arch} config ({detail})") from None
    em.clip.float().eval()
    if device is not None:
        em.clip.to(device)
    return em


def load_model(
    model_id: Union[str, ModelId, None] = None, device: Union[str, torch.device, None] = None,
    cache_dir: Optional[str] = None, pretrained: Optional[str] = None,
) -> EmocapModel:
    """Load a trained model in ``eval()`` mode. See the module docstring for accepted ids.

    With ``pretrained``, ``model_id`` is an open_clip architecture name (see :func:`load_open_clip_model`);
    ``open_clip:<arch>/<tag>`` is the same as one id.
    """
    if pretrained:
        return load_open_clip_model(str(model_id), pretrained, device=device, cache_dir=cache_dir)
    parsed = parse_model_id(model_id)
    if parsed.scheme == "open_clip":
        try:
            arch, tag = parsed.arch_and_tag
        except ValueError as e:
            raise ModelLoadError(str(e)) from None
        return load_open_clip_model(arch, tag, device=device, cache_dir=cache_dir)
    folder = resolve_model_dir(parsed, cache_dir=cache_dir)
    return _load_folder(folder, str(model_id) if model_id else DEFAULT_MODEL_ID, device)


def read_model_config(folder: Path) -> Dict[str, Any]:
    """A model folder's ``open_clip_config.json`` as a dict; ModelLoadError naming the folder when missing or bad."""
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise ModelLoadError(f"{folder}: no {CONFIG_NAME}; not an open_clip/emocap model folder")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["model_cfg"]
    except (json.JSONDecodeError, KeyError) as e:
        raise ModelLoadError(f"{config_path}: malformed config ({e})") from None
    return config


def _weights_file(folder: Path) -> Path:
    weights = sorted(folder.glob("*.safetensors"))
    weights = [w for w in weights if w.name == WEIGHTS_NAME] or [
        w for w in weights if w.name.startswith("open_clip") or w.name == "model.safetensors"
    ]
    if not weights:
        found = ", ".join(p.name for p in folder.iterdir())
        raise ModelLoadError(
            f"{folder}: no safetensors weights ({WEIGHTS_NAME}); found: {found or 'nothing'}. "
            "emocap never loads pickled weights and never falls back to a random model."
        )
    return weights[0]


def _load_folder(folder: Path, model_id: str, device) -> EmocapModel:
    """A model folder (open_clip config + safetensors weights [+ extra tensors]) loaded in ``eval()`` mode."""
    config = read_model_config(folder)
    weights = _weights_file(folder)
    check_model_config(config["model_cfg"], str(folder / CONFIG_NAME))
    em = build_from_config(
        config["model_cfg"], model_id=model_id, meta=config.get("emocap", {}),
        preprocess_cfg=config.get("preprocess_cfg") or None,
    )
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as e:  # truncated or not a safetensors file
        raise ModelLoadError(f"{weights}: cannot read safetensors weights ({type(e).__name__}: {e})") from None
    try:
        missing, unexpected = em.clip.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatch between the weights and the config
        detail = "; ".join(line.strip() for line in str(e).splitlines()[1:4])
        raise ModelLoadError(f"{weights}: weights do not match the config ({detail})") from None
    missing = [k for k in missing if not k.endswith("attn_mask")]
    if missing or unexpected:
        raise ModelLoadError(
            f"{weights}: weights do not match the config (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    extra = folder / EXTRA_TENSORS_NAME
    if extra.is_file():
        try:
            em.extra_tensors = load_file(str(extra), device="cpu")
        except Exception as e:  # truncated or not a safetensors file
            raise ModelLoadError(f"{extra}: cannot read safetensors tensors ({type(e).__name__}: {e})") from None
    em.clip.float().eval()
    if device is not None:
        em.clip.to(device)
    em.path = folder
    return em


def encode_text_trimmed(model, text: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(text, normalize=True)`` for an open_clip ``CLIP`` with a causal mask, on trimmed tokens.

    With open_clip's causal text mask and end-of-text pooling, token columns after the longest text never
    influence the pooled feature, so dropping them gives the same features at a fraction of the cost (prompts and
    captions are 10-40 tokens, contexts 64-77). Used by the classifier and by training.
    """
    if not hasattr(model, "token_embedding") or getattr(model, "attn_mask", None) is None:
        return model.encode_text(text, normalize=True)  # other text towers: no trimming
    length = int((text != 0).sum(dim=1).max().item())
    text = text[:, : max(length, 1)]
    return encode_text_embeddings(model, model.token_embedding(text), text)
