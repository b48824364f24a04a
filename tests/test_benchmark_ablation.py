"""The training ablation script's bookkeeping: which result belongs to which (row, seed), and the across-seed table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_ablation.py"


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("train_ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(results: Path, run: str, war: float, uar: float) -> None:
    name = f"runs-ablation-{run}-final__ferplus__test__zeroshot__0123456789abcdef.json"
    (results / name).write_text(json.dumps({"war": war, "uar": uar, "macro_f1": 0.0}))


def test_results_are_matched_to_their_own_seed(ablation, tmp_path):
    _record(tmp_path, "0-default-recipe", 0.5, 0.25)
    _record(tmp_path, "0-default-recipe-seed1", 0.4, 0.3)
    _record(tmp_path, "6-default-prompts-seed2", 0.6, 0.35)
    assert ablation._result(tmp_path, "0-default-recipe")["war"] == 0.5
    assert ablation._result(tmp_path, "0-default-recipe", 1)["war"] == 0.4
    assert ablation._result(tmp_path, "0-default-recipe", 2) is None
    assert ablation._result(tmp_path, "6-default-prompts") is None
    assert ablation._result(tmp_path, "6-default-prompts", 2)["uar"] == 0.35


def test_seed_table_gives_mean_and_sample_sd_in_percent(ablation, tmp_path):
    for seed, (war, uar) in enumerate([(0.50, 0.20), (0.40, 0.30), (0.60, 0.25)]):
        _record(tmp_path, ablation._run_name("4-prompts", seed), war, uar)
    _record(tmp_path, "2-local-summary", 0.45, 0.28)  # one seed only: no row in the table
    table = ablation._seed_table(tmp_path, ablation.ROWS, [0, 1, 2])
    rows = [line for line in table.splitlines() if line.startswith("| +") or line.startswith("| (")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[0] == ablation.LABELS["4-prompts"]
    assert cells[1:4] == ["50.00 / 20.00", "40.00 / 30.00", "60.00 / 25.00"]
    assert cells[4] == "50.00 (10.00)"  # sample sd of 50, 40, 60
    assert cells[5] == "25.00 (5.00)"
