"""Resumable checkpoints of a training run: atomic, verified, the last two kept.

Part of the trainer's checkpoint and resume steps (:mod:`emocap.train.trainer`). A checkpoint is a folder
``<out>/checkpoints/step<global step>_epoch<epoch>_pos<position in the epoch>/`` holding accelerate's state (model,
optimiser, scheduler, RNG), the augmentation generators, the prototypes, ``trainer_state.json`` and
``manifest.json`` (size and sha256 of every other file). It is written under ``checkpoints/.incomplete-<name>``,
every file and the folder are fsynced, and only then is it renamed into place, so a folder without the
``.incomplete-`` prefix is always whole. Resume takes the newest folder whose manifest checks out and says which;
a broken one (missing, empty or truncated file, bad hash) is reported in one line and skipped. A run folder
written by an older emocap (``checkpoints/last/``, no manifest) is still resumed, after the newer ones.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from emocap.file_hashes import file_sha256

STATE_FILE = "trainer_state.json"
MANIFEST_FILE = "manifest.json"
LEGACY_FOLDER = "last"  # the one checkpoint of older versions
INCOMPLETE_PREFIX = ".incomplete-"
KEEP = 2


class CheckpointError(RuntimeError):
    """A checkpoint that passed its checks could still not be loaded; the message names it."""


@dataclasses.dataclass
class TrainerState:
    """Where a run is: saved with every checkpoint as ``trainer_state.json``."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_war_plus_uar: float = -1.0  # the best validation score so far (WAR + UAR, plus the photos' when validated)
    consecutive_nan: int = 0
    skipped_nan: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "TrainerState":
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if "best_uar" in data:  # older versions named WAR + UAR "best_uar"
            data.setdefault("best_war_plus_uar", data.pop("best_uar"))
        known = {f.name for f in dataclasses.fields(cls)}
        missing = {"epoch", "step_in_epoch", "global_step"} - set(data)
        if missing:
            raise ValueError(f"missing {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def position(self) -> Tuple[int, int, int]:
        return (self.global_step, self.epoch, self.step_in_epoch)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_name(state: TrainerState) -> str:
    return f"step{state.global_step:08d}_epoch{state.epoch:04d}_pos{state.step_in_epoch:06d}"


class CheckpointStore:
    """The ``checkpoints/`` folder of one run: temp folders to write into, commit, prune, find the resumable one."""

    def __init__(self, run_folder: Path, report: Callable[[str], None] = print):
        self.root = Path(run_folder) / "checkpoints"
        self.report = report

    def incomplete_folder(self, state: TrainerState) -> Path:
        """The temp folder a checkpoint of ``state`` is written into (the same name on every process)."""
        return self.root / f"{INCOMPLETE_PREFIX}{checkpoint_name(state)}"

    def clear_incomplete(self, report: bool = False) -> None:
        """Remove the leftovers of saves that were killed before their commit (``report``: say so)."""
        for folder in sorted(self.root.glob(f"{INCOMPLETE_PREFIX}*")):
            if report:
                self.report(f"removing {folder}: a checkpoint whose save was interrupted")
            shutil.rmtree(folder, ignore_errors=True)

    def commit(self, incomplete: Path, state: TrainerState, fault: Callable[[str], None] = lambda point: None) -> Path:
        """Write the state and manifest into ``incomplete``, fsync it all, rename it into place, keep the last two."""
        (incomplete / STATE_FILE).write_text(state.to_json())
        files = {}
        for path in sorted(p for p in incomplete.iterdir() if p.is_file() and p.name != MANIFEST_FILE):
            _fsync(path)
            files[path.name] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
        fault("checkpoint-files")
        manifest = {"format": 1, **dataclasses.asdict(state), "files": files}
        (incomplete / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
        _fsync(incomplete / MANIFEST_FILE)
        _fsync(incomplete)
        final = self.root / checkpoint_name(state)
        if final.exists():  # the same position saved again: replace it
            shutil.rmtree(final)
        os.rename(incomplete, final)
        _fsync(self.root)
        fault("checkpoint-committed")
        self._prune()
        return final

    def _complete(self) -> List[Tuple[Tuple[int, int, int], Path]]:
        found = []
        for folder in self.root.glob("step*_epoch*_pos*"):
            try:
                g, e, p = (int(part[len(prefix):]) for part, prefix in
                           zip(folder.name.split("_"), ("step", "epoch", "pos")))
            except ValueError:
                continue
            found.append(((g, e, p), folder))
        return sorted(found, reverse=True)

    def _prune(self) -> None:
        for _, folder in self._complete()[KEEP:]:
            shutil.rmtree(folder, ignore_errors=True)
        legacy = self.root / LEGACY_FOLDER
        if legacy.is_dir():  # superseded by a verified checkpoint of this version
            shutil.rmtree(legacy, ignore_errors=True)

    def exists(self) -> bool:
        """Whether the run folder holds any checkpoint (whole or not)."""
        return bool(self._complete()) or (self.root / LEGACY_FOLDER / STATE_FILE).is_file()

    def find_resumable(self) -> Optional[Tuple[Path, TrainerState]]:
        """The newest checkpoint that checks out, and its state; each broken one is reported in one line."""
        candidates = [folder for _, folder in self._complete()]
        if (self.root / LEGACY_FOLDER / STATE_FILE).is_file():
            candidates.append(self.root / LEGACY_FOLDER)
        for folder in candidates:
            try:
                state = verify_checkpoint(folder)
            except ValueError as e:
                self.report(f"checkpoint {folder} is broken ({e}); skipped")
                continue
            return folder, state
        return None


def verify_checkpoint(folder: Path) -> TrainerState:
    """The state of a whole checkpoint folder; ``ValueError`` saying what is wrong otherwise."""
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        if folder.name != LEGACY_FOLDER:
            raise ValueError(f"no {MANIFEST_FILE}")
        for path in folder.iterdir():  # an older version's checkpoint: no hashes to check, only emptiness
            if path.is_file() and path.stat().st_size == 0:
                raise ValueError(f"{path.name} is empty")
    else:
        try:
            manifest = json.loads(manifest_path.read_text())
            files = manifest["files"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"unreadable {MANIFEST_FILE}: {e}") from None
        for name, expected in sorted(files.items()):
            path = folder / name
            if not path.is_file():
                raise ValueError(f"{name} is missing")
            if path.stat().st_size != expected["bytes"]:
                raise ValueError(f"{name} has {path.stat().st_size} bytes, the manifest says {expected['bytes']}")
            if file_sha256(path) != expected["sha256"]:
                raise ValueError(f"{name} does not match its sha256 in the manifest")
    try:
        return TrainerState.from_json((folder / STATE_FILE).read_text())
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"unreadable {STATE_FILE}: {e}") from None
