"""Caption-builder inputs: datasets turned into a deterministic list of samples with their evidence.

First step of the caption flow (**evidence** -> facts -> writer -> shards). A source yields :class:`Sample`
objects in a fixed order (so shard assignment is stable across runs and resumes) and a list of problems found
while reading its label files (``(where, reason)``: bad rows are reported and skipped, never fatal). Registry:
``SOURCES`` maps a name to a reader function ``(root, split, **options)``.

This module: FER+ (votes), ImageFolder (class folders) and CSV / JSON / JSON-lines label files (a label or vote
columns per row, plus optional identity, valence/arousal, AU and landmark annotations). ``sources_media.py``:
HF datasets, existing webdataset shards, videos and frame folders.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from emocap import taxonomy
from emocap.ferplus import EMOTIONS, VOTE_COLUMNS, FerPlusSplit
from emocap.images import iter_image_files


@dataclass
class Sample:
    key: str  # unique, stable, webdataset-safe (no dots)
    source_file: str
    read_bytes: Callable[[], bytes]
    image_ext: str
    distribution: Optional[Dict[str, float]] = None
    votes: Optional[Dict[str, int]] = None
    agreement: Optional[float] = None
    skip_reason: Optional[str] = None  # set when the label evidence already rules the sample out
    extra: Dict[str, object] = field(default_factory=dict)
    identity: Optional[str] = None  # subject id where the dataset has several images of one person
    aus: Optional[Dict[int, float]] = None  # annotated AU intensities (0..1); win over estimates
    valence: Optional[float] = None  # annotated, -1..1
    arousal: Optional[float] = None  # annotated, -1..1
    landmarks: Optional[List[List[float]]] = None  # annotated 68 (x, y) points; win over the backend's


def _safe_key(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def ferplus_source(root: str, split: str = "train", **_) -> Tuple[List[Sample], List[Tuple[str, str]]]:
    """FER+ layout: votes -> emotion distribution; agreement counts unknown votes, NF-majority faces are skipped."""
    data = FerPlusSplit(root, split)
    samples = []
    for rec in data.records:
        votes = dict(zip(VOTE_COLUMNS, rec.votes))
        emotion_votes = {e: votes[e] for e in EMOTIONS if votes[e] > 0}
        total_valid = sum(rec.votes[:9])  # everything but NF
        reason = None
        if votes["NF"] >= max(rec.votes[:9]) and votes["NF"] > 0:
            reason = "annotators marked it as not a face (NF majority)"
        elif not emotion_votes:
            reason = "no emotion votes (all unknown / NF)"
        dist = {e: v / sum(emotion_votes.values()) for e, v in emotion_votes.items()} if emotion_votes else None
        agreement = (max(emotion_votes.values()) / total_valid) if emotion_votes and total_valid else None
        samples.append(
            Sample(
                key=_safe_key(f"ferplus_{split}_{Path(rec.name).stem}"),
                source_file=f"{data.source}/{rec.name}",
                read_bytes=(lambda r=rec: data.image_bytes(r)),
                image_ext=Path(rec.name).suffix.lstrip(".").lower() or "png",
                distribution=dist,
                votes=votes,
                agreement=agreement,
                skip_reason=reason,
                extra={"dataset": "ferplus", "split": split, "file": rec.name, "box": list(rec.box)},
            )
        )
    return samples, list(data.problems)


def imagefolder_source(root: str, split: Optional[str] = None, **_) -> Tuple[List[Sample], List[Tuple[str, str]]]:
    """ImageFolder: ``root/<class>/<image>``; class folder names go through the taxonomy."""
    base = Path(root) / split if split else Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: image folder not found")
    classes = sorted(p for p in base.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"{base}: no class sub-folders (expected {base}/<class name>/<images>)")
    samples, problems = [], []
    for folder in classes:
        canon = taxonomy.canonical_or_none(folder.name)
        files = list(iter_image_files(folder))
        if canon is None:
            problems.append((str(folder), f"class folder {folder.name!r} is not a known emotion; its {len(files)} images are skipped"))
            continue
        for f in files:
            samples.append(
                Sample(
                    key=_safe_key(f"{base.name}_{folder.name}_{f.stem}"),
                    source_file=str(f),
                    read_bytes=f.read_bytes,
                    image_ext=f.suffix.lstrip(".").lower(),
                    distribution={canon: 1.0},
                    extra={"dataset": "imagefolder", "class_folder": folder.name, "file": str(f.relative_to(base))},
                )
            )
    return samples, problems


PATH_COLUMNS = ("path", "file", "filename", "image", "image_path", "img", "subdirectory/filepath")
LABEL_COLUMNS = ("label", "emotion", "expression", "class", "category")
IDENTITY_COLUMNS = ("identity", "subject", "subject_id", "person", "speaker")
AU_COLUMN = re.compile(r"^au_?0*(\d+)(_r|_c|_intensity)?$", re.I)


def _rows(path: Path) -> Iterator[Tuple[int, Mapping[str, object]]]:
    """(line or item number, row dict) from a CSV, JSON (list, or {"items": [...]}) or JSON-lines file."""
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8-sig")
    if suffix == ".csv" or suffix == ".tsv":
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        for i, row in enumerate(reader, start=2):
            yield i, {(k or "").strip(): v for k, v in row.items()}
    elif suffix == ".jsonl":
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    yield i, json.loads(line)
                except json.JSONDecodeError as e:
                    yield i, {"__error__": f"not valid JSON ({e.msg})"}
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        items = data.get("items", data.get("annotations")) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ValueError(f"{path}: expected a list of objects or {{\"items\": [...]}}")
        for i, item in enumerate(items, start=1):
            yield i, item if isinstance(item, dict) else {"__error__": "item is not an object"}
    else:
        raise ValueError(f"{path}: label files must be .csv, .tsv, .json or .jsonl")


def _pick(row: Mapping[str, object], names: Tuple[str, ...]) -> Optional[str]:
    lower = {k.lower(): k for k in row}
    return next((lower[n] for n in names if n in lower), None)


def _number(value, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is not a number: {value!r}") from None
    if v != v:
        raise ValueError(f"{what} is not a number: {value!r}")
    return v


def parse_label_row(row: Mapping[str, object], label_map: Optional[Mapping[str, str]] = None) -> Dict[str, object]:
    """The evidence of one label-file row; raises ValueError naming the problem."""
    if "__error__" in row:
        raise ValueError(str(row["__error__"]))
    label_col = _pick(row, LABEL_COLUMNS)
    vote_cols = [k for k in row if taxonomy.canonical_or_none(k) is not None and k.lower() not in LABEL_COLUMNS]
    out: Dict[str, object] = {}
    if label_col is not None and str(row[label_col]).strip() != "":
        raw = str(row[label_col]).strip()
        name = label_map.get(raw, raw) if label_map else raw
        canon = taxonomy.canonical_or_none(name)
        if canon is None:
            raise ValueError(f"unknown class {raw!r}")
        out["distribution"] = {canon: 1.0}
    elif vote_cols:
        votes = {}
        for k in vote_cols:
            v = _number(row[k] if row[k] not in (None, "") else 0, f"vote column {k!r}")
            if v < 0:
                raise ValueError(f"vote column {k!r} is negative ({v:g})")
            votes[taxonomy.canonical(k)] = votes.get(taxonomy.canonical(k), 0.0) + v
        if sum(votes.values()) <= 0:
            raise ValueError("all vote columns are zero")
        total = sum(votes.values())
        out["distribution"] = {k: v / total for k, v in votes.items() if v > 0}
        out["votes"] = {k: (int(v) if float(v).is_integer() else v) for k, v in votes.items()}
    else:
        raise ValueError(f"no label column ({'/'.join(LABEL_COLUMNS)}) and no emotion vote columns")
    ident = _pick(row, IDENTITY_COLUMNS)
    if ident is not None and str(row[ident]).strip():
        out["identity"] = str(row[ident]).strip()
    for k in ("valence", "arousal"):
        col = _pick(row, (k,))
        if col is not None and str(row[col]).strip() != "":
            v = _number(row[col], k)
            if not -1.0 <= v <= 1.0:
                raise ValueError(f"{k} {v:g} is outside -1..1")
            out[k] = v
    aus = {}
    for k, v in row.items():
        m = AU_COLUMN.match(str(k).strip())
        if m and v not in (None, ""):
            aus[int(m.group(1))] = _number(v, f"column {k!r}")
    if aus:
        scale = 5.0 if max(aus.values()) > 1.0 else 1.0  # FACS intensity 0..5 (DISFA, BP4D) or 0..1 / presence
        out["aus"] = {au: max(0.0, min(1.0, v / scale)) for au, v in aus.items()}
    lm = _pick(row, ("landmarks",))
    if lm is not None and row[lm] not in (None, ""):
        pts = json.loads(row[lm]) if isinstance(row[lm], str) else row[lm]
        if not (isinstance(pts, list) and len(pts) == 68 and all(isinstance(p, list) and len(p) == 2 for p in pts)):
            raise ValueError("landmarks must be 68 [x, y] pairs")
        out["landmarks"] = pts
    return out


def labelfile_source(
    root: str, split: Optional[str] = None, labels_file: Optional[str] = None, label_map: Optional[str] = None, **_
) -> Tuple[List[Sample], List[Tuple[str, str]]]:
    """A CSV / TSV / JSON / JSON-lines label file; image paths are relative to ``root`` (or absolute).

    Each row: an image path column (``path``, ``file``, ``image`` ...), and either a ``label`` column (names or
    synonyms; native codes through ``label_map``, a benchmark name of the taxonomy) or one vote / probability
    column per emotion. Optional: ``identity``/``subject``, ``valence``/``arousal`` (-1..1), ``AU12`` ...
    columns (0..1, or 0..5 FACS intensity), ``landmarks`` (68 [x, y] pairs as JSON).
    """
    if not labels_file:
        raise ValueError("the labels dataset needs --labels-file (CSV, TSV, JSON or JSON-lines)")
    path = Path(labels_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: label file not found")
    base = Path(root)
    mapping = taxonomy.benchmark_label_map(label_map) if label_map else None
    samples: List[Sample] = []
    problems: List[Tuple[str, str]] = []
    seen = set()
    for line, row in _rows(path):
        where = f"{path}:{line}"
        try:
            col = _pick(row, PATH_COLUMNS) if "__error__" not in row else None
            if col is None and "__error__" not in row:
                raise ValueError(f"no image path column ({'/'.join(PATH_COLUMNS)})")
            evidence = parse_label_row(row, mapping)
        except ValueError as e:
            problems.append((where, str(e)))
            continue
        rel = str(row[col]).strip()
        file = Path(rel) if Path(rel).is_absolute() else base / rel
        key = _safe_key(f"{path.stem}_{Path(rel).with_suffix('').as_posix()}")
        if key in seen:
            problems.append((where, f"image {rel!r} listed twice; the later row is skipped"))
            continue
        seen.add(key)
        samples.append(
            Sample(
                key=key, source_file=str(file), read_bytes=file.read_bytes,
                image_ext=file.suffix.lstrip(".").lower() or "png",
                distribution=evidence["distribution"], votes=evidence.get("votes"),
                identity=evidence.get("identity"), aus=evidence.get("aus"), valence=evidence.get("valence"),
                arousal=evidence.get("arousal"), landmarks=evidence.get("landmarks"),
                extra={"dataset": "labels", "labels_file": str(path), "line": line, "file": rel},
            )
        )
    if not samples and problems:
        raise ValueError(f"{path}: no usable row ({len(problems)} problems, first: {problems[0][0]}: {problems[0][1]})")
    return samples, problems


SOURCES: Dict[str, Callable[..., Tuple[List[Sample], List[Tuple[str, str]]]]] = {
    "ferplus": ferplus_source,
    "imagefolder": imagefolder_source,
    "labels": labelfile_source,
}


def get_source(name: str) -> Callable[..., Tuple[List[Sample], List[Tuple[str, str]]]]:
    """A source reader by name (the media sources load lazily: they need datasets / webdataset / OpenCV)."""
    if name in SOURCES:
        return SOURCES[name]
    from . import sources_media

    if name in sources_media.MEDIA_SOURCES:
        return sources_media.MEDIA_SOURCES[name]
    raise ValueError(f"unknown dataset layout {name!r}; choose from {', '.join(source_names())}")


def source_names() -> List[str]:
    return sorted([*SOURCES, "hf", "webdataset", "video"])
