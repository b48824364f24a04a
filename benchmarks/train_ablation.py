"""Training ablation on FER+: train each row of train/configs/ablation/, evaluate it with `emocap eval` on FER+
test, and write the table (docs/training.md shows the one measured here).

Rows (each adds one thing to the row before): global only; + local (whole-image and region-aware) and summary;
+ cross-modal guided positive mining; + MPA-FER prompt alignment (joint); + MIDAS soft-label mixup; a reference
row with the default model's own loss terms (``0-default-recipe``: label mining and the class-prompt term); and a
side row, the reference + joint prompt alignment (``6-default-prompts``). All rows share one step budget
(``max_steps`` in the configs: 400 steps of batch 128, about 1.9 epochs), well below the 13-epoch default recipe.
``--seeds 0 1 2`` trains each row once per seed and adds a table of the spread over seeds.

Usage (from the repo root, after `emocap caption --root ../shared/data/ferplus --split train
--out data/captions/ferplus-train`)::

    python benchmarks/train_ablation.py --ferplus ../shared/data/ferplus            # all rows, then the table
    python benchmarks/train_ablation.py --rows 1-global 2-local-summary --table-only
    python benchmarks/train_ablation.py --rows 0-default-recipe 6-default-prompts --seeds 0 1 2

A finished row (``runs/ablation/<row>/final`` and its result JSON present) is not trained or evaluated again;
an interrupted row resumes from its checkpoint. Before each training run the script waits while the file
``--quiet-file`` exists (a shared machine's "do not start heavy work now" signal).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "train" / "configs" / "ablation"
ROWS = ["1-global", "2-local-summary", "3-mining", "4-prompts", "5-mixup", "0-default-recipe", "6-default-prompts"]
LABELS = {
    "1-global": "global only",
    "2-local-summary": "+ local (whole-image + region-aware) and summary",
    "3-mining": "+ cross-modal guided positive mining",
    "0-default-recipe": "(reference) the default recipe's terms: row 2 without the region score, + label mining and the class-prompt term",
    "4-prompts": "+ MPA-FER prompt alignment (joint)",
    "5-mixup": "+ soft-label mixup (MIDAS)",
    "6-default-prompts": "(side row) the reference row + MPA-FER prompt alignment (joint)",
}


def _wait_quiet(quiet_file: str) -> None:
    while quiet_file and Path(quiet_file).exists():
        print(f"waiting: {quiet_file} exists", flush=True)
        time.sleep(30)


def _run_name(row: str, seed: int) -> str:
    """Run folder name of one (row, seed): seed 0 is the config's own seed and keeps the row's name."""
    return row if seed == 0 else f"{row}-seed{seed}"


def _result(results: Path, row: str, seed: int = 0):
    pattern = f"*-{_run_name(row, seed)}-final__ferplus__test__*.json"
    files = sorted(results.glob(pattern)) if results.is_dir() else []
    return json.loads(files[-1].read_text()) if files else None


def _log_summary(run: Path):
    """(wall seconds of the logged steps, first to last log row; mined positives per sample at the last logged
    step) from the run's ``log.csv``."""
    import csv

    with open(run / "log.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["loss"] not in ("", "nan")]
    seconds = float(rows[-1]["time"]) - float(rows[0]["time"]) if len(rows) > 1 else float("nan")
    positives = [r["positives"] for r in rows if r.get("positives") not in (None, "", "nan")]
    return seconds, float(positives[-1]) if positives else float("nan")


def _seed_table(results: Path, rows, seeds) -> str:
    """WAR and UAR per seed and their mean and sample standard deviation, for the rows with more than one seed."""
    import statistics

    head = " | ".join(f"seed {s} WAR / UAR" for s in seeds)
    lines = [f"| row | {head} | mean WAR (sd) | mean UAR (sd) |", "|---|" + "---|" * (len(seeds) + 2)]
    for row in rows:
        got = {s: _result(results, row, s) for s in seeds}
        done = [r for r in got.values() if r is not None]
        if len(done) < 2:
            continue
        cells = " | ".join(f"{100 * got[s]['war']:.2f} / {100 * got[s]['uar']:.2f}" if got[s] else "not run"
                           for s in seeds)
        war = [100 * r["war"] for r in done]
        uar = [100 * r["uar"] for r in done]
        lines.append(f"| {LABELS[row]} | {cells} | {statistics.mean(war):.2f} ({statistics.stdev(war):.2f}) | "
                     f"{statistics.mean(uar):.2f} ({statistics.stdev(uar):.2f}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ferplus", default="../shared/data/ferplus", help="FER+ root (FER2013Test/ + labels)")
    p.add_argument("--rows", nargs="+", default=ROWS, choices=ROWS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0],
                   help="training seeds per row; seed 0 is the config's own run, seed s > 0 runs as <row>-seed<s>")
    p.add_argument("--runs", default="runs/ablation", help="run folders (the configs' out)")
    p.add_argument("--results", default="results/ablation", help="result JSON folder")
    p.add_argument("--table-only", action="store_true", help="only build the table from existing results")
    p.add_argument("--quiet-file", default="/tmp/emocap-quiet")
    p.add_argument("--nice", type=int, default=10)
    args = p.parse_args(argv)
    results = Path(args.results)
    emocap = [sys.executable, "-m", "emocap.cli"]
    jobs = [(row, seed) for seed in args.seeds for row in args.rows]
    for row, seed in jobs if not args.table_only else []:
        run = Path(args.runs) / _run_name(row, seed)
        if not (run / "final" / "open_clip_model.safetensors").is_file():
            _wait_quiet(args.quiet_file)
            cmd = ["nice", "-n", str(args.nice), *emocap, "train", "--config", str(CONFIGS / f"{row}.yaml"),
                   "--out", str(run), "--quiet"] + (["--set", f"seed={seed}"] if seed else [])
            print("+", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
        if _result(results, row, seed) is None:
            _wait_quiet(args.quiet_file)
            cmd = [*emocap, "eval", "--root", args.ferplus, "--model", str(run / "final"), "--out", str(results),
                   "--no-progress"]
            print("+", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
    lines = ["| row | config | FER+ test WAR | UAR | macro F1 | positives / sample (last step) | training s (logged steps) |",
             "|---|---|---|---|---|---|---|"]
    for row in ROWS:
        r = _result(results, row)
        run = Path(args.runs) / row
        if r is None:
            lines.append(f"| {LABELS[row]} | `{row}.yaml` | not run | | | | |")
            continue
        secs, mined = _log_summary(run) if (run / "log.csv").is_file() else (float("nan"), float("nan"))
        lines.append(f"| {LABELS[row]} | `{row}.yaml` | {r['war']:.4f} | {r['uar']:.4f} | {r['macro_f1']:.4f} | "
                     f"{mined:.1f} | {secs:.0f} |")
    table = "\n".join(lines)
    seeds = sorted({0, *args.seeds})
    if len(seeds) > 1:
        table += "\n\nAcross seeds (FER+ test, %):\n\n" + _seed_table(results, ROWS, seeds)
    print(table)
    results.mkdir(parents=True, exist_ok=True)
    (results / "ablation_table.md").write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
