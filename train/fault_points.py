"""A test hook: send this process a signal at a named point of a training run (reliability tests only).

Set ``EMOCAP_TRAIN_FAULT=<signal>:<point>:<global step>``, signal ``kill`` (SIGKILL) or ``int`` (SIGINT, as
Ctrl-C), point one of :data:`POINTS`. ``tests/reliability/test_train_runs.py`` kills runs at seeded points with it
and checks that the rerun resumes to the weights of an uninterrupted run. Unset (always, outside tests) it does
nothing.
"""

from __future__ import annotations

import os
import signal

ENV = "EMOCAP_TRAIN_FAULT"
POINTS = (
    "step",                  # right after the optimiser step that reached the global step
    "checkpoint-files",      # a checkpoint's files are written and fsynced, its manifest is not
    "checkpoint-committed",  # the checkpoint was renamed into place, older ones not yet pruned
)
SIGNALS = {"kill": signal.SIGKILL, "int": signal.SIGINT}


def fault_point(point: str, global_step: int) -> None:
    """Signal this process if ``EMOCAP_TRAIN_FAULT`` names this point and step."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    try:
        sig, where, step = spec.split(":")
        wanted = (SIGNALS[sig], where, int(step))
    except (ValueError, KeyError):
        raise ValueError(f"{ENV}={spec!r}: expected <kill|int>:<{'|'.join(POINTS)}>:<global step>") from None
    if wanted[1:] == (point, global_step):
        os.kill(os.getpid(), wanted[0])
