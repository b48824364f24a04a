"""Model cards: the README.md a model folder carries, generated from the model's config and its result JSONs.

Where it sits: after a model exists. Training (``emocap.train`` ``Trainer.export``) writes a card into every
``best/`` and ``final/`` folder; ``emocap push`` (:mod:`emocap.publish`) writes one with the measured results
before uploading; ``emocap eval build --model-card`` fills the ``model-index`` block of a card through
:func:`model_index`. The card is YAML front matter (licence, ``library_name: open_clip``, tags,
``pipeline_tag``, datasets, ``model-index``) and Markdown sections: the model, how to use it with emocap and with
plain open_clip, measured results with the commands that made them, training, terms of the data, limits.

This module reads files only (config JSON, the safetensors header, result JSON); it imports neither torch nor
open_clip. Result records are those ``emocap eval`` writes (one JSON per run, ``emocap.eval.records``).
"""

from __future__ import annotations

import json
import os
import shlex
import struct
import uuid
from math import prod
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import yaml

from .model_files import CONFIG_NAME, EXTRA_TENSORS_NAME, WEIGHTS_NAME
from .model_usage import emocap_usage, open_clip_usage

__all__ = ["CARD_NAME", "BENCHMARK_TITLES", "benchmark_title", "model_index", "card_records", "read_result_files",
           "eval_command", "render_model_card", "write_model_card", "CardError"]

CARD_NAME = "README.md"
TAGS = ["emotion-recognition", "facial-expression-recognition", "zero-shot-image-classification", "clip", "emocap"]
BENCHMARK_TITLES = {
    "ferplus": "FER+", "ferplus-soft": "FER+ soft", "ferplus-compound": "FER+ compound", "rafdb": "RAF-DB",
    "rafdb-compound": "RAF-DB compound",
    "affectnet7": "AffectNet-7", "affectnet8": "AffectNet-8", "fer2013": "FER2013", "sfew": "SFEW", "expw": "ExpW",
    "ckplus": "CK+", "jaffe": "JAFFE", "kdef": "KDEF", "caer-s": "CAER-S", "dfew": "DFEW", "ferv39k": "FERV39k",
    "mafw": "MAFW", "afew": "AFEW",
}
RESULT_KEYS = {"model_id", "benchmark", "war", "uar"}

# What is known about the embedded default model's training data (../shared/data/ferplus/README.md)
DEFAULT_DATASETS = ["ferplus", "fer2013"]
DEFAULT_TERMS = """- **Images: FER2013** (Goodfellow et al., 2013, ICML challenge "Challenges in Representation Learning"):
  48x48 gray faces collected from the web, generally treated as **research use only**. This model was trained on
  them, so it is for research use too, whatever the code's licence.
- **Labels: Microsoft FER+** crowd votes (10 per image), MIT licence. The model was trained on EmoCap-style
  captions written from these votes and from facial action estimates (`emocap caption`).
- The code and the weights' format are emocap's (Apache-2.0); the licence field above is the code's. The data's
  terms come on top of it."""
USER_TERMS = """The licence field above is emocap's (Apache-2.0, the code). The weights were trained on data this card
cannot know: **check the terms of your data** (the training config below names the files used) and say them
here before publishing."""


class CardError(ValueError):
    """A result file or model folder that cannot make a model card (the message names the file)."""


def benchmark_title(benchmark: str) -> str:
    """The display name of a benchmark (``ferplus`` -> ``FER+``); unknown names as they are."""
    return BENCHMARK_TITLES.get(benchmark, benchmark)


# --------------------------------------------------------------------------------------------- result records

def read_result_files(paths: Iterable[Union[str, Path]]) -> List[dict]:
    """Result records from JSON files and folders (``*.json`` below them), in the order given.

    A file that is not an emocap result raises :class:`CardError` naming it: a card never silently drops a
    result it was asked to show. Records of ``--limit`` quick checks and tuning word lists are left out, as in
    ``emocap eval build``."""
    files: List[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(path.rglob("*.json"))
        elif path.is_file():
            files.append(path)
        else:
            raise CardError(f"result file {path} does not exist")
    records = []
    for path in files:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise CardError(f"result file {path}: not readable JSON ({e})") from None
        if not isinstance(record, dict) or not RESULT_KEYS <= set(record):
            raise CardError(f"result file {path}: not an emocap eval result (needs {', '.join(sorted(RESULT_KEYS))})")
        if record.get("limit") or (record.get("vocabulary") or {}).get("purpose") == "tuning":
            continue
        records.append(dict(record, _file=str(path)))
    return records


def card_records(records: Sequence[dict]) -> List[dict]:
    """The records a ``model-index`` reports: standard label names and label sets (no renamed classes, no
    open-vocabulary word lists, whose numbers are not comparable with the benchmark's), one per run: of records
    of the same run (model, benchmark, split, protocol, view, prompts; a ``--slices`` rerun is the same run),
    the newest is kept, in the order of the first."""
    newest: Dict[tuple, dict] = {}
    for r in records:
        if r.get("vocabulary") or (r.get("benchmark_info") or {}).get("class_names_renamed_from"):
            continue
        key = (str(r["model_id"]), r["benchmark"], r.get("split"), r.get("protocol"), r.get("view"),
               r.get("prompt_hash"), r.get("limit"))
        if key not in newest or str(r.get("timestamp", "")) >= str(newest[key].get("timestamp", "")):
            newest[key] = r
    return list(newest.values())


def _percent(value: Any) -> float:
    return round(100 * float(value), 2)


def _column(record: dict) -> str:
    """``benchmark/split`` (or the benchmark alone): the order of the model-index entries."""
    split = record.get("split")
    return f"{record['benchmark']}/{split}" if split else str(record["benchmark"])


def _main_prompt_set(records: Sequence[dict]) -> Optional[str]:
    """The prompt set most zero-shot records used (the model's own, normally)."""
    names = [r.get("prompt_set") for r in records if (r.get("protocol") or "zeroshot") == "zeroshot"]
    names = [n for n in names if n]
    return max(sorted(set(names)), key=names.count) if names else None


def _dataset_config(record: dict, main_prompts: Optional[str]) -> Optional[str]:
    """What sets a run apart on the same benchmark split: image view, probe protocol, another prompt set. The hub
    keys a model-index result by task type, dataset type, config and split and merges results with equal keys,
    so every run must differ there."""
    protocol = record.get("protocol") or "zeroshot"
    parts = [str(record["view"])] if record.get("view") else []
    if protocol != "zeroshot":
        parts.append(protocol)
    elif record.get("prompt_set") and record["prompt_set"] != main_prompts:
        parts.append(f"prompts {record['prompt_set']}")
    return ", ".join(parts) or None


def model_index(records: Sequence[dict], name: str) -> List[dict]:
    """A Hugging Face ``model-index`` list for ``records`` (numbers in percent, rounded to 2 decimals); one result
    per run, told apart by the dataset's ``config`` (:func:`_dataset_config`)."""
    main_prompts = _main_prompt_set(records)
    results = []
    for r in sorted(records, key=_column):
        protocol = r.get("protocol") or "zeroshot"
        prompts = f" (prompts {r['prompt_set']})" if r.get("prompt_set") else ""
        task = ({"type": "zero-shot-image-classification", "name": f"Zero-shot facial expression recognition{prompts}"}
                if protocol == "zeroshot" else
                {"type": "image-classification", "name": f"Facial expression recognition ({protocol})"})
        dataset = {"name": benchmark_title(str(r["benchmark"])), "type": str(r["benchmark"])}
        if r.get("split"):
            dataset["split"] = str(r["split"])
        config = _dataset_config(r, main_prompts)
        if config:
            dataset["config"] = config
        metrics = [{"type": "accuracy", "name": "WAR", "value": _percent(r["war"])},
                   {"type": "recall", "name": "UAR", "value": _percent(r["uar"])},
                   {"type": "f1", "name": "macro F1", "value": _percent(r["macro_f1"])}]
        if r.get("ece") is not None:
            metrics.append({"type": "ece", "name": "ECE", "value": _percent(r["ece"])})
        results.append({"task": task, "dataset": dataset, "metrics": metrics})
    return [{"name": name, "results": results}]


def eval_command(record: dict, default_prompts: Optional[str] = None) -> str:
    """The ``emocap eval`` command that made ``record``: its own ``command`` field when it has one, else rebuilt
    from the fields that identify the run (model, benchmark, root, split, protocol, view, prompts, names)."""
    if record.get("command"):
        return str(record["command"])
    args = ["emocap", "eval"]
    if str(record.get("model_id", "default")) != "default":
        args += ["--model", str(record["model_id"])]
    if record["benchmark"] != "ferplus":
        args += ["--benchmark", str(record["benchmark"])]
    args += ["--root", str(record.get("root") or "DATA")]
    if record.get("split") and record.get("split") != "test":
        args += ["--split", str(record["split"])]
    protocol = str(record.get("protocol") or "zeroshot")
    if protocol.startswith("few-shot-"):
        args += ["--protocol", "few-shot", "--shots", protocol[len("few-shot-"):]]
    elif protocol not in ("zeroshot", "open-vocabulary"):
        args += ["--protocol", protocol]
    if record.get("view"):
        args += ["--view", str(record["view"])]
    if record.get("slices"):
        args += ["--slices", str(record["slices"])]
    prompts = str(record.get("prompt_set") or "")
    base = prompts[: -len("-templates")] if prompts.endswith("-templates") else prompts
    if base and base not in (default_prompts, "learned-prompts"):
        args += ["--prompts", base]
    if prompts.endswith("-templates"):
        args.append("--no-descriptions")
    if (record.get("benchmark_info") or {}).get("class_names_renamed_from"):
        args += ["--class-names", *map(str, record.get("labels") or [])]
    if record.get("vocabulary"):
        args += ["--vocabulary", str(record["vocabulary"].get("name"))]
    return shlex.join(args)


# ------------------------------------------------------------------------------------------------ the model

def _tensor_shapes(weights: Path) -> Dict[str, Dict[str, Any]]:
    """The tensor entries of a safetensors file's JSON header (read without loading a tensor)."""
    with open(weights, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return {k: v for k, v in header.items() if k != "__metadata__"}


def _labels_text(labels: Any) -> str:
    """The model's labels: a label set name (``basic8``) or a list of names."""
    if isinstance(labels, str):
        return f"label set `{labels}`"
    return ", ".join(f"`{x}`" for x in labels or []) or "given by the user"


def _architecture(config: dict, folder: Optional[Path]) -> List[str]:
    """Table rows describing the towers, the input and the files."""
    cfg, meta = config.get("model_cfg", {}), config.get("emocap", {})
    vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if isinstance(vision.get("layers"), list):
        image = f"CLIP ModifiedResNet (layers {'-'.join(map(str, vision['layers']))}, width {vision.get('width')})"
    else:
        image = (f"ViT (patch {vision.get('patch_size')}, {vision.get('layers')} layers, width {vision.get('width')})"
                 if vision.get("patch_size") else (vision.get("timm_model_name") or "open_clip image tower"))
    text_tower = (f"{text.get('layers')}-layer transformer, width {text.get('width')}, context "
                  f"{text.get('context_length', 77)}" if text.get("layers") else
                  (text.get("hf_model_name") or "open_clip text tower"))
    gray, folded = meta.get("grayscale") is True, meta.get("grayscale") == "folded"
    rows = [("architecture", f"`{meta.get('architecture', 'open_clip CLIP')}`: image tower {image}, "
                             f"{vision.get('image_size')} px input; text tower {text_tower}; "
                             f"embedding {cfg.get('embed_dim')}"),
            ("input", "a face crop, converted to gray (the model was trained on gray faces)" if gray else
             "a face crop (RGB); the model converts it to gray in its first layer (trained on gray faces)" if folded
             else "a face crop (RGB)"),
            ("labels", _labels_text(meta.get("labels"))),
            ("prompts", f"`{(meta.get('prompts') or {}).get('name', 'default')}` (templates and class descriptions, "
                        f"stored in `{CONFIG_NAME}`)")]
    if meta.get("face_crop"):
        crop = meta["face_crop"]
        rows.append(("face crops", f"margin {crop.get('margin')} around faces found by emocap's face pipeline, "
                                   f"eyes {'levelled' if crop.get('align', True) else 'as found'}; images up to "
                                   f"{crop.get('crop_max_side', 128)} px are taken as face crops (docs/faces.md)"))
    if meta.get("learned_prompts"):
        rows.append(("learned prompts", f"soft prompts in `{EXTRA_TENSORS_NAME}` (emocap uses them for the "
                                        "training labels; open_clip ignores the file)"))
    weights = folder / WEIGHTS_NAME if folder is not None else None
    if weights is not None and weights.is_file():
        shapes = _tensor_shapes(weights)
        n = sum(prod(v["shape"]) for v in shapes.values())
        dtypes = sorted({v["dtype"] for v in shapes.values()})
        rows.append(("weights", f"`{WEIGHTS_NAME}`: {n / 1e6:.1f} M parameters, {'/'.join(dtypes)}, "
                                f"{weights.stat().st_size / 1e6:.1f} MB"))
    return ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]


# ----------------------------------------------------------------------------------------------- sections

def _front_matter(config: dict, records: Sequence[dict], name: str, datasets: Sequence[str],
                  license_id: str) -> str:
    front: Dict[str, Any] = {"license": license_id, "library_name": "open_clip",
                             "pipeline_tag": "zero-shot-image-classification", "tags": list(TAGS)}
    if datasets:
        front["datasets"] = list(datasets)
    front["metrics"] = ["accuracy", "recall", "f1"]
    chosen = card_records(records)
    if chosen:
        front["model-index"] = model_index(chosen, name)
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n"


def _results_section(config: dict, records: Sequence[dict]) -> List[str]:
    meta = config.get("emocap", {})
    lines = ["## Results", ""]
    validation = meta.get("validation")
    if validation:
        lines += [f"Checked during training (zero-shot, split `{validation.get('split', 'valid')}` of the training "
                  f"config's `val_root`, the model-selection split): WAR {_percent(validation['war'])}, UAR "
                  f"{_percent(validation['uar'])}.", ""]
    if not records:
        lines += ["No benchmark results yet: measure them with `emocap eval --model <this folder> --root DATA`, then "
                  "publish with `emocap push <folder> org/repo --results results/*.json`.", ""]
        return lines
    default_prompts = (meta.get("prompts") or {}).get("name")
    lines += ["Measured with `emocap eval`; numbers in percent (WAR: accuracy over images, UAR: mean recall over "
              "classes). Each row is one result file; the command is the one that made it (the paths are those of "
              "the machine it ran on). The `model-index` above holds the same numbers, except runs with renamed "
              "classes or word lists.", "",
              "| benchmark | split | protocol | prompts | images | WAR | UAR | macro F1 | command |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (str(r["benchmark"]), str(r.get("split")), str(r.get("protocol")),
                                            str(r.get("view") or ""), str(r.get("prompt_set") or ""))):
        bench = benchmark_title(str(r["benchmark"])) + (f", view {r['view']}" if r.get("view") else "")
        if (r.get("benchmark_info") or {}).get("class_names_renamed_from"):
            bench += ", classes renamed"
        if r.get("slices"):
            bench += f", per-{r['slices']} slices"
        f1 = f"{_percent(r['macro_f1']):.2f}" if r.get("macro_f1") is not None else "–"
        lines.append(f"| {bench} | {r.get('split') or ''} | {r.get('protocol') or 'zeroshot'} | "
                     f"{r.get('prompt_set') or '–'} | {r.get('n', '')} | {_percent(r['war']):.2f} | "
                     f"{_percent(r['uar']):.2f} | {f1} | `{eval_command(r, default_prompts)}` |")
    return lines + [""]


def _training_section(config: dict) -> List[str]:
    training = config.get("emocap", {}).get("training")
    if not training:
        return []
    cfg = training.get("config") or {}
    data = cfg.get("data") or {}
    items = [("model", cfg.get("model")), ("started from", cfg.get("init_from")),
             ("training data", data.get("train_shards")),
             ("validation", f"{data.get('val_root')} ({data.get('val_split')})" if data.get("val_root") else None),
             ("epochs", cfg.get("epochs")), ("batch size", cfg.get("batch_size")), ("learning rate", cfg.get("lr")),
             ("steps done", training.get("global_step")), ("epochs done", training.get("epoch"))]
    lines = ["## Training", "", f"Trained with `emocap train`; the whole training config is stored under "
             f"`emocap.training.config` in `{CONFIG_NAME}`.", ""]
    lines += [f"- {k}: `{v}`" for k, v in items if v not in (None, "")]
    return lines + [""]


def _limits_section(config: dict) -> List[str]:
    meta = config.get("emocap", {})
    lines = ["## Limitations", "",
             "- Reads face crops: emocap finds, aligns and crops the faces of full photos first (its face "
             "pipeline); plain open_clip callers must crop faces themselves.",
             "- The text tower knows the words of its training captions; label names far from them are scored "
             "through their sub-word tokens and the class descriptions of the prompt set, and in emocap through "
             "the word bridge, which draws a label toward the taxonomy emotions WordNet links it to or a pretrained "
             "sentence encoder finds it close to (plain open_clip has no bridge). Check new label names on labelled data first "
             "(`emocap eval --class-names`, `--vocabulary`).",
             "- Facial expressions are not felt emotions: the model scores what a face shows, with the biases of its "
             "training data and its annotators. Do not use it to make decisions about people."]
    if meta.get("grayscale") is True:
        lines.append("- Trained on gray faces: colour carries no information for it, and colour images must be "
                     "converted to gray first (emocap does this; see the open_clip section).")
    elif meta.get("grayscale") == "folded":
        lines.append("- Trained on gray faces: colour carries no information for it. The gray conversion is folded "
                     "into the first layer, so plain open_clip and emocap give the same scores on colour photos.")
    return lines + [""]


def render_model_card(config: dict, model_ref: str, records: Sequence[dict] = (), *, name: Optional[str] = None,
                      folder: Union[str, Path, None] = None, default_model: bool = False,
                      datasets: Sequence[str] = (), license_id: str = "apache-2.0", notes: str = "") -> str:
    """The card's text for a model with ``config`` (its ``open_clip_config.json``), loaded as ``model_ref``
    (``hf-hub:org/repo`` or ``local-dir:/path``), with result records ``records``.

    ``folder`` (the model's files) adds the parameter count and file size; ``default_model`` gives the embedded
    model's known training data and terms (otherwise the card asks the publisher to check the terms of their
    data); ``notes`` (Markdown) goes in before the limitations."""
    name = name or model_ref.split(":", 1)[-1].rstrip("/").split("/")[-1]
    meta = config.get("emocap", {})
    datasets = list(datasets) or (DEFAULT_DATASETS if default_model else [])
    lines = [_front_matter(config, records, name, datasets, license_id), f"# {name}", "",
             "A zero-shot facial expression classifier made with [emocap](https://github.com/emocap/emocap): an "
             "open_clip CLIP model that scores a face against label names through text prompts (templates and class "
             "descriptions), so any label names can be scored, not only the ones it was trained with.", "",
             "## Model", "", *_architecture(config, Path(folder) if folder is not None else None), "",
             "## Use with emocap", "", *emocap_usage(model_ref), "",
             "## Use with plain open_clip", "", *open_clip_usage(model_ref, meta.get("grayscale") is True), "",
             *_results_section(config, records), *_training_section(config),
             "## Licence and terms of the training data", "", DEFAULT_TERMS if default_model else USER_TERMS, ""]
    if notes.strip():
        lines += [notes.strip(), ""]
    lines += _limits_section(config)
    return "\n".join(lines)


def write_model_card(folder: Union[str, Path], model_ref: Optional[str] = None, records: Sequence[dict] = (),
                     **options) -> Path:
    """Write the card of the model in ``folder`` as ``folder/README.md`` (atomically: a temporary file, then a
    rename) and return its path. ``model_ref`` defaults to ``local-dir:<folder>``; ``options`` as in
    :func:`render_model_card`."""
    folder = Path(folder)
    config_path = folder / CONFIG_NAME
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CardError(f"{config_path}: cannot read the model config ({e})") from None
    text = render_model_card(config, model_ref or f"local-dir:{folder}", records, folder=folder, **options)
    tmp = folder / f".{CARD_NAME}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, folder / CARD_NAME)
    return folder / CARD_NAME
