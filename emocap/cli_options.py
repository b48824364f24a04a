"""Options every ``emocap`` command shares: ``-q/--quiet`` and ``-v/--verbose``, defined once here.

Core's CLI (``emocap/cli.py``) and each stage's ``cli.add_parser`` call :func:`add_output_options` on their
parsers; ``emocap.cli.main`` calls :func:`configure_output` once the command line is parsed. Quiet turns off
progress bars and notes (errors and warnings still print); each ``-v`` lowers emocap's log level (INFO, DEBUG).
"""

from __future__ import annotations

import argparse
import logging

__all__ = ["add_output_options", "configure_output"]


def add_output_options(parser: argparse.ArgumentParser, no_progress_alias: bool = False) -> None:
    """Add ``-q/--quiet`` and ``-v/--verbose`` (and, for commands that had it, ``--no-progress`` as a hidden
    alias of ``--quiet``)."""
    group = parser.add_argument_group("output")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bars or notes (errors and warnings still print)")
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help="more detail from emocap's loggers (-v: info, -vv: debug)")
    if no_progress_alias:
        group.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)


def configure_output(args: argparse.Namespace) -> None:
    """Set the ``emocap`` loggers' level from the parsed ``-q`` / ``-v`` (warnings by default)."""
    verbose = int(getattr(args, "verbose", 0) or 0)
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    if getattr(args, "quiet", False) and verbose == 0:
        level = logging.ERROR
    logger = logging.getLogger("emocap")
    logger.setLevel(level)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("emocap: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
