"""Results tables to files (core): CSV, Parquet or JSON lines, chosen by the output file's extension.

Used by ``emocap classify --out`` and ``emocap analyze --out`` (rows from :func:`emocap.analysis.iter_rows`, written
as they come, so memory stays flat for long videos and big folders) and by anyone holding the DataFrame that
:func:`emocap.analyze` returns (:func:`write_table`). Parquet needs pyarrow (``pip install 'emocap[parquet]'``);
CSV and JSON lines need nothing beyond the core install. Missing values (no face in a frame, times of images)
are empty cells in CSV and ``null`` in JSON lines.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Dict, List, Sequence

__all__ = ["TABLE_FORMATS", "table_format", "TableWriter", "write_table", "read_table"]

TABLE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
PARQUET_ROWS_PER_GROUP = 4096


def table_format(path) -> str:
    """``csv``, ``parquet`` or ``jsonl`` from ``path``'s extension; ValueError naming the file otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise ValueError(f"{path}: unknown table format {suffix or '(no extension)'!r}; use one of "
                         f"{', '.join(sorted(TABLE_FORMATS))}")
    return TABLE_FORMATS[suffix]


def _plain(value):
    """A cell as a JSON/CSV value: NaN and pandas' NA become None, numpy scalars plain Python."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        if value != value:  # pandas.NA and friends
            return None
    except TypeError:
        return None
    return value


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as e:
        raise ImportError(f"writing Parquet needs pyarrow ({e}); pip install 'emocap[parquet]', or write .csv or "
                          ".jsonl") from None
    return pyarrow


class TableWriter:
    """Writes rows (dicts) with fixed ``columns`` to ``path`` as they come; a context manager. Missing keys are
    empty cells. The format comes from the extension (:func:`table_format`), checked before anything is written."""

    def __init__(self, path, columns: Sequence[str]):
        self.path = Path(path)
        self.format = table_format(self.path)
        self.columns = list(columns)
        self.rows_written = 0
        self._pending: List[Dict] = []
        self._parquet = None
        if self.format == "parquet":
            self._pa = _pyarrow()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.format == "parquet":
            self._file = open(self.path, "wb")
        else:
            self._file = open(self.path, "w", newline="", encoding="utf-8")
        if self.format == "csv":
            self._csv = csv.writer(self._file)
            self._csv.writerow(self.columns)

    def write(self, row: Dict) -> None:
        values = [_plain(row.get(c)) for c in self.columns]
        if self.format == "csv":
            self._csv.writerow(["" if v is None else v for v in values])
        elif self.format == "jsonl":
            self._file.write(json.dumps(dict(zip(self.columns, values))) + "\n")
        else:
            self._pending.append(dict(zip(self.columns, values)))
            if len(self._pending) >= PARQUET_ROWS_PER_GROUP:
                self._flush_parquet()
        self.rows_written += 1

    def _flush_parquet(self) -> None:
        if not self._pending and self._parquet is not None:
            return
        schema = _parquet_schema(self._pa, self.columns)
        if self._parquet is None:
            self._parquet = self._pa.parquet.ParquetWriter(self._file, schema)
        self._parquet.write_table(self._pa.Table.from_pylist(self._pending, schema=schema))
        self._pending = []

    def close(self) -> None:
        if self.format == "parquet":
            self._flush_parquet()
            self._parquet.close()
        self._file.close()

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


TEXT_COLUMNS = ("source", "kind", "top_label", "eyes")
INTEGER_COLUMNS = ("frame", "face_id", "landmarks")
BOOLEAN_COLUMNS = ("mouth_open", "teeth_visible")


def _parquet_schema(pa, columns: Sequence[str]):
    """The Parquet column types, fixed by name (rows arrive in groups, and a group may have no face at all):
    text, integers and booleans by name, everything else (boxes, scores, times, AUs) float64; all nullable."""
    def kind(name: str):
        if name in TEXT_COLUMNS:
            return pa.string()
        if name in INTEGER_COLUMNS:
            return pa.int64()
        return pa.bool_() if name in BOOLEAN_COLUMNS else pa.float64()

    return pa.schema([pa.field(name, kind(name)) for name in columns])


def write_table(frame, path) -> Path:
    """Write a DataFrame from :func:`emocap.analyze` to ``path`` (CSV, Parquet or JSON lines by extension)."""
    with TableWriter(path, list(frame.columns)) as writer:
        for row in frame.to_dict(orient="records"):
            writer.write(row)
    return Path(path)


def read_table(path):
    """A table file written here, back as a pandas DataFrame (``face_id`` a nullable integer)."""
    import pandas as pd

    kind = table_format(path)
    if kind == "csv":
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    elif kind == "jsonl":
        frame = pd.read_json(path, lines=True)
    else:
        _pyarrow()
        frame = pd.read_parquet(path)
    if "face_id" in frame:
        frame["face_id"] = frame["face_id"].astype("Int64")
    if "top_label" in frame:
        frame["top_label"] = frame["top_label"].fillna("").astype(str)
    return frame
