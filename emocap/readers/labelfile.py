"""Label-file reader (core): images listed in a CSV / TSV / JSON / JSON-lines file, paths under the root.

Used by ``emocap caption --dataset labels`` (:func:`read_labelfile`: a label column or vote columns, plus optional
identity, valence/arousal, AU and landmark columns, :func:`parse_label_row`) and by eval's ``csv`` benchmark
(:func:`read_table` + :func:`listed_image`: configurable path / label columns). Every listed path goes through
:func:`listed_image`, the one rule for label-file rows: it must resolve under the root
(:func:`emocap.safe_paths.resolve_under`); an absolute path, a ``..`` escape or a symlink leading out is refused
as a problem naming the row (``file:line``), never read.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Tuple

from emocap import taxonomy
from emocap.safe_paths import UnsafePathError, resolve_under

from .sample import Problem, ReadResult, Sample, sample_keys

__all__ = ["read_labelfile", "parse_label_row", "label_rows", "read_table", "listed_image",
           "PATH_COLUMNS", "LABEL_COLUMNS", "IDENTITY_COLUMNS"]

PATH_COLUMNS = ("path", "file", "filename", "image", "image_path", "img", "subdirectory/filepath")
LABEL_COLUMNS = ("label", "emotion", "expression", "class", "category")
IDENTITY_COLUMNS = ("identity", "subject", "subject_id", "person", "speaker")
AU_COLUMN = re.compile(r"^au_?0*(\d+)(_r|_c|_intensity)?$", re.I)


def listed_image(base: Path, name: str, where: str) -> Path:
    """The image a label-file row names, resolved under ``base``; :class:`UnsafePathError` naming the row if it
    would be read from outside (absolute path, ``..``, a symlink leading out)."""
    try:
        return resolve_under(base, name, "image path")
    except UnsafePathError as e:
        raise UnsafePathError(f"{e}; row {where} refused (image paths must stay under {base})") from None


def read_table(path: Path) -> Tuple[List[str], List[Tuple[int, Dict[str, str]]]]:
    """A CSV file's header and its rows as ``(line number, row)``; UTF-8 (a BOM is dropped)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        rows = [(reader.line_num, row) for row in reader]
    return header, rows


def label_rows(path: Path) -> Iterator[Tuple[int, Mapping[str, object]]]:
    """(line or item number, row dict) from a CSV, TSV, JSON (list, or {"items": [...]}) or JSON-lines file."""
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


def _label_evidence(row: Mapping[str, object], label_map: Optional[Mapping[str, str]]) -> Dict[str, object]:
    label_col = _pick(row, LABEL_COLUMNS)
    vote_cols = [k for k in row if taxonomy.canonical_or_none(k) is not None and k.lower() not in LABEL_COLUMNS]
    if label_col is not None and str(row[label_col]).strip() != "":
        raw = str(row[label_col]).strip()
        name = label_map.get(raw, raw) if label_map else raw
        canon = taxonomy.canonical_or_none(name)
        if canon is None:
            raise ValueError(f"unknown class {raw!r}")
        return {"distribution": {canon: 1.0}}
    if not vote_cols:
        raise ValueError(f"no label column ({'/'.join(LABEL_COLUMNS)}) and no emotion vote columns")
    votes: Dict[str, float] = {}
    for k in vote_cols:
        v = _number(row[k] if row[k] not in (None, "") else 0, f"vote column {k!r}")
        if v < 0:
            raise ValueError(f"vote column {k!r} is negative ({v:g})")
        votes[taxonomy.canonical(k)] = votes.get(taxonomy.canonical(k), 0.0) + v
    if sum(votes.values()) <= 0:
        raise ValueError("all vote columns are zero")
    total = sum(votes.values())
    return {"distribution": {k: v / total for k, v in votes.items() if v > 0},
            "votes": {k: (int(v) if float(v).is_integer() else v) for k, v in votes.items()}}


def _annotations(row: Mapping[str, object]) -> Dict[str, object]:
    out: Dict[str, object] = {}
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


def parse_label_row(row: Mapping[str, object], label_map: Optional[Mapping[str, str]] = None) -> Dict[str, object]:
    """The evidence of one label-file row; raises ValueError naming the problem."""
    if "__error__" in row:
        raise ValueError(str(row["__error__"]))
    return {**_label_evidence(row, label_map), **_annotations(row)}


def _usable_rows(path: Path, base: Path, mapping) -> Tuple[list, List[Problem]]:
    """(line, relative name, resolved file, evidence) per usable row; bad and unsafe rows as problems."""
    rows, problems, seen = [], [], set()
    for line, row in label_rows(path):
        where = f"{path}:{line}"
        try:
            col = _pick(row, PATH_COLUMNS) if "__error__" not in row else None
            if col is None and "__error__" not in row:
                raise ValueError(f"no image path column ({'/'.join(PATH_COLUMNS)})")
            evidence = parse_label_row(row, mapping)
            rel = str(row[col]).strip()
            file = listed_image(base, rel, where)
        except ValueError as e:  # UnsafePathError is a ValueError: refused rows are problems, never read
            problems.append((where, str(e)))
            continue
        if file in seen:
            problems.append((where, f"image {rel!r} listed twice; the later row is skipped"))
            continue
        seen.add(file)
        rows.append((line, rel, file, evidence))
    return rows, problems


def read_labelfile(root: str, split: Optional[str] = None, labels_file: Optional[str] = None,
                   label_map: Optional[str] = None, **_) -> ReadResult:
    """A CSV / TSV / JSON / JSON-lines label file; image paths relative to ``root`` (and staying under it).

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
    mapping = taxonomy.benchmark_label_map(label_map) if label_map else None
    rows, problems = _usable_rows(path, Path(root), mapping)
    keys = sample_keys([f"{path.stem}_{Path(rel).with_suffix('').as_posix()}" for _, rel, _, _ in rows],
                       [rel for _, rel, _, _ in rows])
    samples = [
        Sample(
            key=key, source_file=str(Path(root) / rel), read_bytes=file.read_bytes,
            image_ext=file.suffix.lstrip(".").lower() or "png",
            distribution=ev["distribution"], votes=ev.get("votes"), identity=ev.get("identity"), aus=ev.get("aus"),
            valence=ev.get("valence"), arousal=ev.get("arousal"), landmarks=ev.get("landmarks"),
            extra={"dataset": "labels", "labels_file": str(path), "line": line, "file": rel},
        )
        for (line, rel, file, ev), key in zip(rows, keys)
    ]
    if not samples and problems:
        raise ValueError(f"{path}: no usable row ({len(problems)} problems, first: {problems[0][0]}: {problems[0][1]})")
    return samples, problems
