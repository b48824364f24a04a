"""Reliability of training runs (issue 17): kills and Ctrl-C at seeded points, broken checkpoints, a rerun with
other settings, and config values that used to end in tracebacks or silently wrong runs.

Every kill/interrupt case is compared with an uninterrupted run of the same config: the resumed run must end with
byte-identical weights. Runs are tiny (48 faces, 6 steps, one thread)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import default_sigint
import torch
from safetensors.torch import load_file

from emocap.train.config import ConfigError, load_config
from emocap.train.loop import train

STEPS = ["epochs=1", "batch_size=8", "checkpoint_every=2", "log_every=1", "num_threads=1", "tensorboard=false"]


def _overrides(shards, out, *extra):
    return [f"data.train_shards={shards}", f"out={out}", *STEPS, *extra]


def _train(shards, out, *extra):
    threads = torch.get_num_threads()
    try:
        return train(load_config("tiny", _overrides(shards, out, *extra)), progress=False)
    finally:
        torch.set_num_threads(threads)


def _cli(shards, out, fault: str, *extra):
    """The training CLI in a child process, with the fault hook set; returns the finished process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EMOCAP_TRAIN_FAULT": fault}
    cmd = [sys.executable, "-m", "emocap.cli", "train", "--config", "tiny", "--quiet",
           "--set", *_overrides(shards, out, *extra)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, preexec_fn=default_sigint)


def _assert_same_weights(a: Path, b: Path):
    for name in ("open_clip_model.safetensors",):
        x, y = load_file(str(a / name)), load_file(str(b / name))
        assert x.keys() == y.keys()
        differing = [k for k in x if not torch.equal(x[k], y[k])]
        assert not differing, f"{len(differing)} tensors differ from the uninterrupted run, e.g. {differing[:3]}"


def _newest_checkpoint(run: Path) -> Path:
    return max((p.parent for p in (run / "checkpoints").glob("*/trainer_state.json")), key=lambda p: p.stat().st_mtime_ns)


@pytest.fixture(scope="module")
def reference(tiny_shards, tmp_path_factory):
    """The uninterrupted run's final folder."""
    _, shards = tiny_shards
    return _train(shards, tmp_path_factory.mktemp("reference") / "run")


@pytest.fixture(scope="module")
def stopped(tiny_shards, tmp_path_factory):
    """A run stopped (checkpointed) after 4 of its 6 steps; checkpoints at steps 2 and 4."""
    _, shards = tiny_shards
    run = tmp_path_factory.mktemp("stopped") / "run"
    _train(shards, run, "stop_after_steps=4")
    return run


# seeded random kill points: (point, global step); the first is the case (weights written, state not)
_rng = random.Random(1717)
KILLS = [("checkpoint-files", 4), ("step", _rng.choice([1, 3, 5])),
         (_rng.choice(["checkpoint-committed", "checkpoint-files"]), _rng.choice([2, 4]))]


@pytest.mark.parametrize("point, step", KILLS, ids=[f"{p}@{s}" for p, s in KILLS])
def test_kill_9_then_rerun_ends_with_the_uninterrupted_weights(tiny_shards, tmp_path, reference, point, step):
    _, shards = tiny_shards
    run = tmp_path / "run"
    killed = _cli(shards, run, f"kill:{point}:{step}")
    assert killed.returncode == -9, f"the run was not killed at {point} {step}: {killed.stderr[-2000:]}"
    assert not (run / "final").exists()
    resumed = _train(shards, run)
    _assert_same_weights(reference, resumed)
    # at most the last two checkpoints are kept, each whole (manifest), and no half-written folder remains
    kept = sorted((run / "checkpoints").iterdir())
    assert 1 <= len(kept) <= 2 and all((k / "manifest.json").is_file() for k in kept), kept


def test_ctrl_c_ends_with_one_line_exit_130_and_a_resumable_checkpoint(tiny_shards, tmp_path, reference):
    _, shards = tiny_shards
    run = tmp_path / "run"
    interrupted = _cli(shards, run, "int:step:3")
    assert interrupted.returncode == 130, interrupted.stderr[-2000:]
    lines = interrupted.stderr.strip().splitlines()
    assert len(lines) == 1 and "interrupted at step 3" in lines[0] and "Traceback" not in interrupted.stderr
    assert json.loads((_newest_checkpoint(run) / "trainer_state.json").read_text())["global_step"] == 3
    _assert_same_weights(reference, _train(shards, run))


@pytest.mark.parametrize("broken, how", [("optimizer.bin", "truncate"), ("trainer_state.json", "empty"),
                                         ("scheduler.bin", "empty")])
def test_a_broken_newest_checkpoint_is_reported_and_the_previous_one_resumed(
        tiny_shards, tmp_path, stopped, reference, capsys, broken, how):
    _, shards = tiny_shards
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    newest = _newest_checkpoint(run)
    path = newest / broken
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2] if how == "truncate" else b"")
    capsys.readouterr()
    resumed = _train(shards, run)
    out = capsys.readouterr().out
    reports = [line for line in out.splitlines() if line.startswith("checkpoint ") and "is broken" in line]
    assert len(reports) == 1 and str(newest) in reports[0] and broken in reports[0], out
    assert "at epoch 0 step 2" in out  # the previous checkpoint, and it says so
    _assert_same_weights(reference, resumed)


def test_a_rerun_with_other_settings_is_refused_naming_the_keys(tiny_shards, tmp_path, stopped, reference):
    _, shards = tiny_shards
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    with pytest.raises(ConfigError, match=r"lr .*loss\.local|loss\.local.*lr") as caught:
        _train(shards, run, "lr=2.0e-3", "loss.local=0.25")
    assert "mixup" not in str(caught.value)  # only the keys that differ
    # a rerun with the same settings (log_every and stop_after_steps do not shape the weights) continues
    _assert_same_weights(reference, _train(shards, run, "log_every=3"))


def test_config_values_are_checked_with_the_key_named(tmp_path):
    base = ["data.train_shards=/x"]
    assert load_config("tiny", base + ["lr=1e-3", "min_lr=5E-6"])["lr"] == 1e-3
    yaml_file = tmp_path / "sci.yaml"
    yaml_file.write_text("model: emocap-tiny\nlr: 2e-3\nmin_lr: 1e-6\n")
    cfg = load_config(str(yaml_file), base)
    assert (cfg["lr"], cfg["min_lr"]) == (2e-3, 1e-6)
    with pytest.raises(ConfigError, match=r"'labels'.*ferplus8"):
        load_config("tiny", base + ["labels=nope"])
    for bad, key in [("min_lr=-1", "min_lr"), ("warmup_steps=-5", "warmup_steps"), ("aug.erase_prob=2", "aug.erase_prob"),
                     ("max_steps=0", "max_steps"), ("weight_decay=-0.1", "weight_decay"), ("seed=1.5", "seed")]:
        with pytest.raises(ConfigError, match=f"'{key}'"):
            load_config("tiny", base + [bad])


def test_a_model_config_with_an_unknown_key_names_the_key_and_the_file(tiny_shards, tmp_path):
    from emocap.models import create_model, save_model

    _, shards = tiny_shards
    folder = tmp_path / "arch"
    save_model(create_model("emocap-tiny"), folder)
    config_file = folder / "open_clip_config.json"
    config = json.loads(config_file.read_text())
    config["model_cfg"]["vision_cfg"]["widht"] = 64
    config_file.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"vision_cfg\.widht") as caught:
        _train(shards, tmp_path / "run", f"model=local-dir:{folder}")
    assert str(config_file) in str(caught.value)
