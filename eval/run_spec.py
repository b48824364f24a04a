"""One eval run's identity (:class:`RunSpec`): built once, read by cache keys, records and the text cache.

Where it sits: ``emocap eval`` (:mod:`emocap.eval.cli`) builds one :class:`RunSpec` per ``--benchmark`` from its
arguments (:meth:`RunSpec.from_args`); the library entry points (:func:`emocap.eval.zeroshot.evaluate`,
:func:`emocap.eval.probe.evaluate_probe`) build one from their keyword arguments. Everything that identifies a run
is derived from it in one place:

* :meth:`RunSpec.feature_key`: the image-feature cache key (model fingerprint, benchmark, split, root, loader
  options, limit, view, slices, and the content of the sample list: :mod:`emocap.eval.feature_cache`);
* :meth:`RunSpec.text_key`: the class-text cache key (:mod:`emocap.eval.text_cache`);
* :meth:`RunSpec.header`: the identifying part of a result record, which names the result file
  (:func:`emocap.eval.records.result_filename`) and is what ``--skip-existing`` looks for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from emocap.word_bridge import bridge_identity, needs_bridge

from .feature_cache import CACHE_FORMAT, sample_list_digest

__all__ = ["RunSpec", "rename_classes", "protocol_name", "ZEROSHOT", "TEXT_FORMAT"]

ZEROSHOT = "zeroshot"
TEXT_FORMAT = 1
RENAMED_FROM = "class_names_renamed_from"


def _plain(value: Optional[str]) -> Optional[str]:
    """``--view none`` / ``--slices none`` mean no view / no slices."""
    return None if value in (None, "none") else value


@dataclass(frozen=True)
class RunSpec:
    """What one run evaluates, and how (the CLI's options for one benchmark).

    ``protocol`` is ``zeroshot``, ``linear-probe`` or ``few-shot`` (with ``shots``); ``vocabulary`` turns a
    zero-shot run into the open-vocabulary protocol. ``split`` is resolved (the benchmark's default filled in)
    by :meth:`from_args`; ``options`` are the loader's ``KEY=VALUE`` options as sorted pairs.
    """

    benchmark: str
    root: Optional[str] = None
    split: Optional[str] = None
    model: Optional[str] = None
    pretrained: Optional[str] = None
    protocol: str = ZEROSHOT
    shots: Optional[int] = None
    seeds: Tuple[int, ...] = (0, 1, 2)
    train_split: Optional[str] = None
    val_split: Optional[str] = None
    view: Optional[str] = None
    slices: Optional[str] = None
    prompts: Optional[str] = None
    no_descriptions: bool = False
    no_word_bridge: bool = False
    class_names: Optional[Tuple[str, ...]] = None
    vocabulary: Optional[str] = None
    options: Tuple[Tuple[str, str], ...] = ()
    limit: Optional[int] = None
    batch_size: int = 64
    device: Optional[str] = None
    progress: bool = True

    def __post_init__(self):
        object.__setattr__(self, "view", _plain(self.view))
        object.__setattr__(self, "slices", _plain(self.slices))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "options", tuple(sorted((str(k), v) for k, v in dict(self.options).items())))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")

    @classmethod
    def from_args(cls, args, benchmark: str, root: Optional[str]) -> "RunSpec":
        """The spec of ``emocap eval``'s parsed ``args`` for one benchmark and its root (split resolved)."""
        from .registry import get_benchmark

        options = dict(item.split("=", 1) for item in getattr(args, "option", []) or [] if "=" in item)
        return cls(
            benchmark=benchmark, root=root, split=get_benchmark(benchmark).resolve_split(args.split),
            model=args.model, pretrained=getattr(args, "pretrained", None), protocol=args.protocol,
            shots=args.shots if args.protocol == "few-shot" else None, seeds=tuple(args.seeds),
            train_split=args.train_split, val_split=args.val_split, view=args.view, slices=args.slices,
            prompts=args.prompts, no_descriptions=bool(getattr(args, "no_descriptions", False)),
            no_word_bridge=bool(getattr(args, "no_word_bridge", False)),
            class_names=tuple(args.class_names) if args.class_names else None,
            vocabulary=getattr(args, "vocabulary", None), options=tuple(options.items()), limit=args.limit,
            batch_size=args.batch_size, device=args.device, progress=not args.quiet,
        )

    # ------------------------------------------------------------------------------------------- derived names
    @property
    def protocol_name(self) -> str:
        """The protocol as results record it: ``zeroshot``, ``linear-probe`` or ``few-shot-<k>``."""
        if self.protocol == "few-shot" and self.shots is not None:
            return protocol_name(self.protocol, self.shots)
        return self.protocol

    @property
    def options_dict(self) -> Dict[str, str]:
        return dict(self.options)

    def for_split(self, split: Optional[str], limit: Optional[int] = None) -> "RunSpec":
        """The same run on another split (a probe's train and validation splits: no limit)."""
        return dataclasses.replace(self, split=split, limit=limit)

    def describe(self) -> str:
        """``benchmark/split`` for messages."""
        return f"{self.benchmark}/{self.split or '-'}"

    # ------------------------------------------------------------------------------------------------ cache keys
    def feature_key(self, fingerprint: str, data) -> str:
        """The image-feature cache key of ``data`` (this spec's split, already limited) for a model."""
        info = {k: v for k, v in (data.info or {}).items() if k != RENAMED_FROM}  # names do not change features
        root = self.root
        exists = root is not None and Path(str(root)).exists()
        root_text = str(Path(root).expanduser().resolve()) if exists else str(root)
        payload = {"format": CACHE_FORMAT, "model": fingerprint, "benchmark": self.benchmark, "split": self.split,
                   "root": root_text, "info": info, "limit": self.limit, "view": self.view or "none",
                   "slices": self.slices or "none", "samples": sample_list_digest(data)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def prompts_identity(self) -> Optional[str]:
        """``--prompts`` as it enters a key: a bundled name as is, a file by the hash of its content."""
        if self.prompts and Path(self.prompts).is_file():
            return "file:" + hashlib.sha256(Path(self.prompts).read_bytes()).hexdigest()
        return self.prompts

    def text_key(self, fingerprint: str, labels: Sequence[str]) -> str:
        """The cache key of the class text features this run's classifier scores ``labels`` with."""
        payload = {"format": TEXT_FORMAT, "model": fingerprint, "labels": [str(c) for c in labels],
                   "prompts": self.prompts_identity(), "no_descriptions": bool(self.no_descriptions)}
        if any(needs_bridge(str(c)) for c in labels):  # class names outside the taxonomy: the bridge shapes them
            payload["word_bridge"] = self.word_bridge_id
        return "text-" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]

    @property
    def word_bridge_id(self) -> str:
        """How names outside the taxonomy are encoded (:func:`emocap.word_bridge.bridge_identity`, or ``"off"``)."""
        return "off" if self.no_word_bridge else bridge_identity()

    # ------------------------------------------------------------------------------------------------- records
    def header(self, classifier, data) -> Dict[str, object]:
        """The identifying part of a result record (also what ``--skip-existing`` checks before running)."""
        prompt_set = getattr(classifier, "prompt_set", None)
        header: Dict[str, object] = {
            "model_id": str(classifier.model_id),
            "benchmark": self.benchmark,
            "split": self.split,
            "protocol": self.protocol_name,
            "view": self.view,
            "labels": list(data.classes),
            "prompt_set": getattr(prompt_set, "name", None),
            "prompt_hash": getattr(prompt_set, "hash", None),
            "limit": self.limit,
            "slices": self.slices if self.protocol == ZEROSHOT else None,
            "root": str(self.root) if self.root is not None else None,
            "benchmark_info": data.info,
        }
        if any(needs_bridge(str(c)) for c in data.classes):
            header["word_bridge"] = getattr(classifier, "bridge_id", self.word_bridge_id)
        uses_learned = getattr(classifier, "_uses_learned_prompts", None)
        if prompt_set is not None and uses_learned is not None and uses_learned(list(classifier.labels), prompt_set):
            # the model's learned soft prompts (MPA-FER) score the classes, not the hand prompt set
            ctx = classifier.learned_prompts.ctx.detach().float().cpu().numpy()
            header["prompt_set"] = "learned-prompts"
            header["prompt_hash"] = hashlib.sha256(ctx.tobytes()).hexdigest()[:16]
        if self.protocol != ZEROSHOT:
            header["prompt_set"] = header["prompt_hash"] = None  # probes do not read prompts
        return header


def protocol_name(protocol: str, shots: Optional[int] = None) -> str:
    """``linear-probe`` or ``few-shot-<k>`` (the probe protocols' recorded names)."""
    if protocol == "linear-probe":
        return protocol
    if protocol == "few-shot":
        if not shots or shots < 1:
            raise ValueError(f"few-shot needs a positive number of shots per class, got {shots}")
        return f"few-shot-{shots}"
    raise ValueError(f"unknown probe protocol {protocol!r}; choose linear-probe or few-shot")


def rename_classes(data, names: Optional[Sequence[str]], original: Optional[Sequence[str]] = None) -> Optional[str]:
    """Apply ``--class-names`` to ``data`` in place; returns an error message or None.

    ``original`` (a probe's train and validation splits) is the class list the names were given for: a split
    whose classes differ is left as it is, and the probe reports the mismatch."""
    if not names:
        return None
    expected = list(original) if original is not None else list(data.classes)
    if len(names) != len(expected) or len(set(names)) != len(names):
        return (f"--class-names needs {len(expected)} distinct names, one per class in the order "
                f"{', '.join(expected)}; got {len(names)}")
    if list(data.classes) != expected:
        return None
    data.info = {**data.info, RENAMED_FROM: list(data.classes)}
    data.classes = list(names)
    return None
