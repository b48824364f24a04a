"""Result records: metrics of one run plus everything needed to compare runs, written as one JSON per run.

Flow: a protocol (:mod:`emocap.eval.zeroshot`, :mod:`emocap.eval.probe`) turns a
:class:`~emocap.eval.features.FeatureSet` into class probabilities -> :func:`scored_record` (metrics from
:mod:`emocap.metrics`, soft-label and per-group metrics where the data has them, versions, provenance) ->
:func:`write_result` -> ``results/<model>__<benchmark>__<split>__<protocol>[__<view>]__<prompt hash>.json`` ->
``emocap eval build`` (:mod:`emocap.eval.tables`).

File names never collide between runs that differ in model, benchmark, split, protocol, image view, prompt set,
word list (open-vocabulary protocol), renamed class names or sample limit; a rerun of the same run gets a
timestamp suffix instead of overwriting. A result file appears complete or not at all: it is written under a
temporary name, flushed to disk and then linked to its name; names go through :mod:`emocap.safe_paths`, so no
model or benchmark name can place a file outside the output folder.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import re
import sys
import uuid
from importlib import metadata
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

import emocap
from emocap.safe_paths import resolve_under

from .feature_set import FeatureSet
from emocap.metrics import chance_levels, classification_metrics, group_metrics, soft_label_metrics

__all__ = ["scored_record", "result_filename", "write_result", "existing_result", "versions"]


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions() -> Dict[str, Optional[str]]:
    """Versions of the packages that determine a result."""
    return {
        "emocap": emocap.__version__,
        "torch": _version("torch"),
        "open_clip": _version("open_clip_torch"),
        "numpy": np.__version__,
        "scikit-learn": _version("scikit-learn"),
        "python": platform.python_version(),
    }


def scored_record(header: Dict[str, object], fs: FeatureSet, probs: np.ndarray) -> Dict[str, object]:
    """``header`` (model_id, benchmark, split, protocol, ...) + metrics of ``probs`` ([N, C]) against ``fs``.

    Adds soft-label metrics when ``fs`` carries vote distributions and per-group metrics for each group
    attribute except ``subject`` (folds, not groups).
    """
    record = dict(header)
    record.update(classification_metrics(fs.labels, probs, fs.classes))
    record["chance"] = chance_levels(fs.labels, len(fs.classes))
    if fs.soft_labels is not None:
        record.update(soft_label_metrics(fs.soft_labels, probs))
    groups = {name: group_metrics(fs.labels, probs, values, fs.classes)
              for name, values in fs.groups.items() if name != "subject" and any(v is not None for v in values)}
    if groups:
        record["groups"] = groups
    found = fs.groups.get("face_found")
    if found and any(v is not None for v in found):  # the photos protocol (--view faces)
        record["no_face_share"] = round(sum(v == "no" for v in found) / len(found), 4)
    record["n_skipped"] = len(fs.skipped)
    record["skipped"] = [[str(s), str(r)] for s, r in fs.skipped]
    record["features_from_cache"] = fs.from_cache
    record["versions"] = versions()
    record["timestamp"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return record


def _slug(text: str, max_len: int = 60) -> str:
    """A file-name-safe version of ``text`` (model ids can be paths or ``hf-hub:org/repo``)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-._") or "none"
    if len(slug) > max_len:
        slug = slug[-max_len:].lstrip("-._")  # the end of a path names the model best
    return slug


def result_filename(record: Dict[str, object]) -> str:
    """``<model>__<benchmark>__<split>__<protocol>[__<view>]__<prompt hash>[__vocab-<name>-<h>][__names-<h>]``
    ``[__limit<N>].json``."""
    parts = [record.get("model_id"), record.get("benchmark"), record.get("split") or "all", record.get("protocol")]
    if record.get("view"):
        parts.append(record["view"])
    parts.append(record.get("prompt_hash") or "noprompt")
    vocabulary = record.get("vocabulary")
    if vocabulary:
        parts.append(f"vocab-{vocabulary.get('name')}-{str(vocabulary.get('hash'))[:8]}")
    if (record.get("benchmark_info") or {}).get("class_names_renamed_from"):
        names = ",".join(record.get("labels") or [])
        parts.append("names-" + hashlib.sha256(names.encode("utf-8")).hexdigest()[:8])
    if record.get("slices"):
        parts.append(f"slices-{record['slices']}")
    if record.get("limit"):
        parts.append(f"limit{record['limit']}")
    return "__".join(_slug(p) for p in parts) + ".json"


def _result_path(out_dir: Union[str, Path], name: str) -> Path:
    """``out_dir / name``, refused unless it stays inside ``out_dir`` (the one safe-path rule of emocap)."""
    resolve_under(out_dir, name, "result file name")
    return Path(out_dir) / name


def existing_result(record: Dict[str, object], out_dir: Union[str, Path]) -> Optional[Path]:
    """The result file a run with this header already wrote into ``out_dir`` (for ``--skip-existing``), or None.

    A file that is not a complete JSON object (left by a run of an older version killed while writing it) does
    not count: the run is done again and its result is written under a new name."""
    path = _result_path(out_dir, result_filename(record))
    if not path.is_file():
        return None
    try:
        complete = isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        complete = False
    if not complete:
        print(f"emocap eval: {path} is not a complete result file; running again", file=sys.stderr)
        return None
    return path


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _publish(text: str, out: Path, names) -> Path:
    """Write ``text`` to a temporary file in ``out``, flush it to disk, then give it the first free name of
    ``names`` (a hard link never replaces an existing file); a killed run leaves no partial result file."""
    tmp = str(out / f".result-{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:  # default permissions, as a plain result file
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        for name in names:
            path = _result_path(out, name)
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                continue
            except OSError:  # a file system without hard links: exclusive check, then an atomic rename
                if path.exists():
                    continue
                os.replace(tmp, path)
                return path
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    raise FileExistsError(f"could not find a free result file name for {names[0]} in {out}")


def write_result(record: Dict[str, object], out_dir: Union[str, Path]) -> Path:
    """Write ``record`` as JSON into ``out_dir`` and return the path; never overwrites an existing file.

    The name comes from :func:`result_filename`; when it is taken a UTC timestamp suffix is added (and a counter
    when that is taken too). The file appears complete or not at all (:func:`_publish`), so concurrent or killed
    runs cannot leave a clobbered or half-written result.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2, ensure_ascii=False, default=_json_default) + "\n"
    stem = result_filename(record)[: -len(".json")]
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    candidates = [f"{stem}.json", f"{stem}__{stamp}.json"] + [f"{stem}__{stamp}-{i}.json" for i in range(1, 1000)]
    return _publish(text, out, candidates)
