"""Result tables (the ``emocap eval build`` command): merge result JSONs into tables, plots and a model card's
model-index block.

Flow: ``results/*.json`` (one per run, :mod:`emocap.eval.records`) -> :func:`load_results` (malformed files
reported, reruns resolved to the newest, ``--limit`` quick checks and tuning word lists left out) ->
:func:`results_table` (one row per model variant: model, protocol, view, prompt set, word list; one column per
benchmark/split; a mean column) plus the published numbers of other systems as reference rows
(``emocap/data/published_results.json``) -> ``results.csv`` (long form, every metric), ``table_<metric>.csv``
and ``table.md`` (wide), and per run a confusion-matrix and a reliability-diagram PNG -> optionally the
``model-index`` block of a model card.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from emocap.cli_options import add_output_options
from emocap.model_card import BENCHMARK_TITLES, card_records, model_index

__all__ = ["load_results", "results_table", "published_rows", "write_tables", "plot_confusion",
           "plot_reliability", "model_index", "update_model_card", "add_parser", "run_build"]

METRICS = ("war", "uar", "macro_f1", "ece", "soft_accuracy")


def load_results(folder, include_limited: bool = False) -> Tuple[List[dict], List[Tuple[str, str]]]:
    """Result records under ``folder`` (recursively) and ``(file, reason)`` for files that are not results.

    Reruns of the same run (same file stem apart from the timestamp suffix) keep the newest record only.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"results folder {folder} does not exist")
    problems: List[Tuple[str, str]] = []
    newest: Dict[tuple, dict] = {}
    for path in sorted(folder.rglob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            problems.append((str(path), f"not readable JSON ({e})"))
            continue
        if not isinstance(record, dict) or not {"model_id", "benchmark", "war", "uar"} <= set(record):
            problems.append((str(path), "not an emocap result (needs model_id, benchmark, war, uar)"))
            continue
        if record.get("limit") and not include_limited:
            continue
        if (record.get("vocabulary") or {}).get("purpose") == "tuning":
            continue  # a tuning word list is for model selection only, never a reported result
        record["_file"] = str(path)
        names = (record.get("benchmark_info") or {}).get("class_names_renamed_from")
        key = (record["model_id"], record["benchmark"], record.get("split"), record.get("protocol"),
               record.get("view"), record.get("prompt_hash"), tuple(record.get("labels") or ()) if names else None,
               record.get("limit"), (record.get("vocabulary") or {}).get("hash"))
        if key not in newest or str(record.get("timestamp", "")) >= str(newest[key].get("timestamp", "")):
            newest[key] = record
    return list(newest.values()), problems


def _variant(record: dict) -> str:
    """The row name of a record: model, plus protocol / view / prompts / renamed classes when not the default."""
    parts = [str(record["model_id"])]
    if record.get("protocol") and record["protocol"] != "zeroshot":
        parts.append(record["protocol"])
    if record.get("view"):
        parts.append(record["view"])
    if (record.get("benchmark_info") or {}).get("class_names_renamed_from"):
        parts.append("names: " + " ".join(record.get("labels") or []))
    if record.get("vocabulary"):
        parts.append(f"vocabulary {record['vocabulary'].get('name')} {str(record['vocabulary'].get('hash'))[:8]} "
                     "(mean over rounds)")
    if record.get("prompt_set") and record.get("protocol") in ("zeroshot", "open-vocabulary"):
        parts.append(f"prompts {record['prompt_set']} {record.get('prompt_hash', '')[:8]}")
    return " · ".join(parts)


def _column(record: dict) -> str:
    split = record.get("split")
    return f"{record['benchmark']}/{split}" if split else str(record["benchmark"])


def published_rows(benchmarks: Sequence[str]) -> List[dict]:
    """Published zero-shot numbers of other systems on ``benchmarks`` (names as in the registry)."""
    data = json.loads(resources.files("emocap").joinpath("data/published_results.json").read_text(encoding="utf-8"))
    wanted = set(benchmarks)
    return [r for r in data["results"] if r["benchmark"] in wanted]


def results_table(records: Sequence[dict], metric: str = "uar") -> Tuple[List[str], List[str], Dict[Tuple[str, str], float]]:
    """``(rows, columns, cells)``: variant x benchmark/split -> metric in percent (``ece`` and rates alike)."""
    cells: Dict[Tuple[str, str], float] = {}
    for r in records:
        value = r.get(metric)
        if value is None:
            continue
        cells[(_variant(r), _column(r))] = 100.0 * float(value)
    rows = sorted({k[0] for k in cells})
    columns = sorted({k[1] for k in cells})
    return rows, columns, cells


def _fmt(value: Optional[float], approx: bool = False) -> str:
    if value is None:
        return "–"
    return ("≈" if approx else "") + f"{value:.2f}"


def write_tables(records: Sequence[dict], out, metrics: Sequence[str] = ("war", "uar"),
                 reference: bool = True) -> List[Path]:
    """Write ``results.csv`` (long), ``table_<metric>.csv`` (wide) and ``table.md``; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: List[Path] = []
    long_path = out / "results.csv"
    keys = ["model_id", "benchmark", "split", "protocol", "view", "prompt_set", "prompt_hash", "n", "n_skipped",
            *METRICS, "macro_f1_std", "war_std", "uar_std", "timestamp", "_file"]
    with open(long_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for r in sorted(records, key=lambda r: (_variant(r), _column(r))):
            writer.writerow({k: r.get(k) for k in keys})
    written.append(long_path)

    md = ["# emocap results", "",
          "Built by `emocap eval build` from the result files; numbers in percent. Reference rows are published "
          "zero-shot numbers of other systems (≈: read off a chart), for the benchmarks present here; their "
          "test protocols may differ in detail (see each paper).", ""]
    for metric in metrics:
        rows, columns, cells = results_table(records, metric)
        if not rows:
            continue
        wide_path = out / f"table_{metric}.csv"
        with open(wide_path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["model", *columns, "mean"])
            for row in rows:
                values = [cells.get((row, c)) for c in columns]
                present = [v for v in values if v is not None]
                writer.writerow([row, *[("" if v is None else f"{v:.2f}") for v in values],
                                 f"{np.mean(present):.2f}" if present else ""])
        written.append(wide_path)
        md += [f"## {metric.upper()}", "", "| model | " + " | ".join(_title(c) for c in columns) + " | mean |",
               "|---|" + "---|" * (len(columns) + 1)]
        for row in rows:
            values = [cells.get((row, c)) for c in columns]
            present = [v for v in values if v is not None]
            md.append(f"| {row} | " + " | ".join(_fmt(v) for v in values)
                      + f" | {_fmt(float(np.mean(present))) if present else '–'} |")
        if reference and metric in ("war", "uar"):
            # published numbers are on each benchmark's standard test split: only those columns get them
            benches = [c.split("/")[0] if _is_standard_split(c) else None for c in columns]
            refs = published_rows([b for b in benches if b])
            systems = sorted({r["system"] for r in refs if r.get(metric) is not None})
            for system in systems:
                by_bench = {r["benchmark"]: r for r in refs if r["system"] == system and r.get(metric) is not None}
                vals = [by_bench.get(b) for b in benches]
                md.append(f"| *{system}* (published) | "
                          + " | ".join(_fmt(v[metric], v["approximate"]) if v else "–" for v in vals) + " | |")
        md.append("")
    sliced = [r for r in records if r.get("groups")]
    for r in sorted(sliced, key=lambda r: (_variant(r), _column(r))):
        md += [f"## Per group: {_variant(r)} on {_title(_column(r))}", "", "| attribute | group | n | WAR | UAR |",
               "|---|---|---|---|---|"]
        for attribute, groups in sorted(r["groups"].items()):
            for group, m in sorted(groups.items()):
                md.append(f"| {attribute} | {group} | {m['n']} | {100 * m['war']:.2f} | {100 * m['uar']:.2f} |")
        md.append("")
    md_path = out / "table.md"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    written.append(md_path)
    return written


def _is_standard_split(column: str) -> bool:
    """True when the column is its benchmark's default (published test) split."""
    bench, _, split = column.partition("/")
    try:
        from .registry import get_benchmark

        return (split or None) == get_benchmark(bench).default_split
    except (KeyError, ValueError):
        return False


def _title(column: str) -> str:
    bench, _, split = column.partition("/")
    return BENCHMARK_TITLES.get(bench, bench) + (f" ({split})" if split else "")


# ------------------------------------------------------------------------------------------------------ plots

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(record: dict, path) -> Path:
    """Row-normalised confusion matrix (recall per true class) as a PNG."""
    plt = _pyplot()
    cm = np.asarray(record["confusion_matrix"], dtype=np.float64)
    labels = record.get("labels") or [str(i) for i in range(len(cm))]
    norm = cm / np.clip(cm.sum(axis=1, keepdims=True), 1, None)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(labels), 0.8 + 0.6 * len(labels)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{_column(record)}: WAR {100 * record['war']:.1f} UAR {100 * record['uar']:.1f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_reliability(record: dict, path) -> Optional[Path]:
    """Reliability diagram (accuracy vs confidence per bin, with counts) as a PNG; None without the bins."""
    rel = record.get("reliability")
    if not rel:
        return None
    plt = _pyplot()
    edges = np.asarray(rel["edges"])
    centers = (edges[:-1] + edges[1:]) / 2
    acc = np.array([np.nan if a is None else a for a in rel["accuracy"]])
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.bar(centers, np.nan_to_num(acc), width=edges[1] - edges[0], edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ece = record.get("ece")
    ax.set_title(f"{_column(record)}" + (f": ECE {100 * ece:.1f}" if ece is not None else ""), fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


# ------------------------------------------------------------------------------------------------- model card
# (the model-index block itself is core's, emocap.model_card.model_index, shared with `emocap push`)


def update_model_card(card, records: Sequence[dict], name: str) -> Path:
    """Replace (or add) the ``model-index`` key of the card's YAML front matter; the rest is kept as is."""
    import yaml

    card = Path(card)
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    front, body = {}, text
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end < 0:
            raise ValueError(f"{card}: the YAML front matter has no closing '---'")
        front = yaml.safe_load(text[4:end]) or {}
        if not isinstance(front, dict):
            raise ValueError(f"{card}: the YAML front matter is not a mapping")
        body = text[end + 4:].lstrip("\n")
    front["model-index"] = model_index(records, name)
    card.write_text("---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n" + body,
                    encoding="utf-8")
    return card


# ------------------------------------------------------------------------------------------------------- CLI

def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "build",
        help="merge result JSONs into CSV/Markdown tables, plots and a model card's model-index",
        description="Merge the result files of `emocap eval` runs into tables (one row per model variant, one "
                    "column per benchmark, a mean column, published reference rows), a confusion-matrix and a "
                    "reliability PNG per run, and optionally the model-index block of a model card.",
        epilog="example:\n  emocap eval build results/ --out results/tables\n"
               "  emocap eval build results/ --model-card model_cards/emocap-default.md --card-model default",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("results", nargs="+", help="folders with result JSON files")
    p.add_argument("--out", default=None, help="output folder (default: <first results folder>/tables)")
    p.add_argument("--metrics", nargs="+", default=["war", "uar"], choices=list(METRICS),
                   help="metrics to tabulate (default: war uar)")
    p.add_argument("--no-reference", action="store_true", help="leave out the published reference rows")
    p.add_argument("--no-plots", action="store_true", help="do not draw PNG plots")
    p.add_argument("--include-limited", action="store_true", help="include --limit quick-check runs")
    p.add_argument("--model-card", default=None, help="a model card (Markdown) whose model-index block to fill")
    p.add_argument("--card-model", default=None,
                   help="the model id whose results go into the card (default: the only model in the results)")
    add_output_options(p)
    p.set_defaults(eval_func=run_build)
    return p


def run_build(args) -> int:
    records, problems = [], []
    for folder in args.results:
        try:
            found, bad = load_results(folder, include_limited=args.include_limited)
        except FileNotFoundError as e:
            print(f"emocap eval build: error: {e}", file=sys.stderr)
            return 2
        records += found
        problems += bad
    for source, reason in problems:
        print(f"skipped {source}: {reason}", file=sys.stderr)
    if not records:
        print(f"emocap eval build: error: no result files in {', '.join(args.results)}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.results[0]) / "tables"
    paths = write_tables(records, out, metrics=args.metrics, reference=not args.no_reference)
    n_plots = 0
    if not args.no_plots:
        plots = out / "plots"
        plots.mkdir(parents=True, exist_ok=True)
        for r in records:
            if "confusion_matrix" not in r:  # open-vocabulary records: one confusion per round, none drawn
                continue
            stem = Path(r["_file"]).stem
            plot_confusion(r, plots / f"{stem}__confusion.png")
            n_plots += 1 + (plot_reliability(r, plots / f"{stem}__reliability.png") is not None)
    if args.model_card:
        models = sorted({str(r["model_id"]) for r in records})
        model = args.card_model or (models[0] if len(models) == 1 else None)
        if model is None:
            print(f"emocap eval build: error: results hold several models ({', '.join(models)}); "
                  "choose one with --card-model", file=sys.stderr)
            return 2
        chosen = card_records([r for r in records if str(r["model_id"]) == model])
        if not chosen:
            print(f"emocap eval build: error: no results of model {model!r}", file=sys.stderr)
            return 2
        update_model_card(args.model_card, chosen, name=Path(args.model_card).stem)
        paths.append(Path(args.model_card))
    print(f"{len(records)} results -> " + ", ".join(str(p) for p in paths) + (f", {n_plots} plots" if n_plots else ""))
    return 0
