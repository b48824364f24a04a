"""A run's logs: ``log.csv`` (one row per logged step, skipped step and validation) and TensorBoard scalars.

Written by the trainer (:mod:`emocap.train.trainer`) on the main process; other processes get a log that
writes nothing. A resumed run appends to the same ``log.csv``.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Callable, Dict, Optional

COLUMNS = ["time", "epoch", "step", "loss", "lr", "samples_per_s", "positives", "val_war", "val_uar", "terms"]


class RunLog:
    """CSV rows and optional TensorBoard scalars of one run (``enabled=False``: a log that writes nothing)."""

    def __init__(self, run_folder: Path, enabled: bool, tensorboard: bool, report: Callable[[str], None] = print):
        self.file = None
        self.writer = None
        self.tb = None
        if not enabled:
            return
        path = Path(run_folder) / "log.csv"
        new = not path.exists()
        self.file = open(path, "a", newline="")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(COLUMNS)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(run_folder) / "tensorboard"))
            except ImportError:  # tensorboard is an optional extra
                report("tensorboard is not installed (pip install tensorboard): CSV log only")

    def _row(self, *values) -> None:
        if self.writer:
            self.writer.writerow([round(time.time(), 1), *values])
            self.file.flush()

    def skipped_step(self, epoch: int, step: int) -> None:
        self._row(epoch, step, "nan", "", "", "", "", "", "skipped: non-finite loss")

    def step(self, epoch: int, step: int, loss: float, lr: float, rate: float, stats: Dict[str, float]) -> None:
        terms = {k: round(v, 4) for k, v in stats.items() if k != "positives"}
        self._row(epoch, step, round(loss, 5), lr, round(rate, 1), round(stats["positives"], 2), "", "", json.dumps(terms))
        if self.tb:
            self.tb.add_scalar("train/loss", loss, step)
            self.tb.add_scalar("train/lr", lr, step)
            self.tb.add_scalar("train/samples_per_s", rate, step)
            self.tb.add_scalar("train/mined_positives", stats["positives"], step)
            for k, v in terms.items():
                self.tb.add_scalar(f"loss/{k}", v, step)

    def validation(self, epoch: int, step: int, metrics: Dict[str, float], photos: Optional[Dict[str, float]] = None
                   ) -> None:
        """A validation row; the photo set's WAR/UAR (when validated) go in the ``terms`` column."""
        terms = json.dumps({"photos_war": round(photos["war"], 5), "photos_uar": round(photos["uar"], 5)}) if photos else ""
        self._row(epoch, step, "", "", "", "", round(metrics["war"], 5), round(metrics["uar"], 5), terms)
        if self.tb:
            self.tb.add_scalar("val/war", metrics["war"], step)
            self.tb.add_scalar("val/uar", metrics["uar"], step)
            if photos:
                self.tb.add_scalar("val/photos_war", photos["war"], step)
                self.tb.add_scalar("val/photos_uar", photos["uar"], step)

    def close(self) -> None:
        if self.file:
            self.file.close()
            self.file = self.writer = None
        if self.tb:
            self.tb.close()
            self.tb = None
