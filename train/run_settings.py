"""The settings that shape a run's output, and the check that a resumed run uses the same ones.

Part of the trainer's resume step (:mod:`emocap.train.trainer`): the run folder's ``config.yaml`` records the
settings a run started with; a rerun into a folder that holds checkpoints must have the same ones (apart from
the keys below, which change how a run is watched or split into invocations, never its weights), or it is refused
with the differing keys named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import yaml

from .config import ConfigError

# keys that never change the weights a run ends with
NOT_SHAPING = {"out", "num_threads", "log_every", "tensorboard", "debug_nan_at_steps", "stop_after_steps",
               "checkpoint_every"}


def _flat(cfg: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differing_settings(recorded: Dict[str, Any], cfg: Dict[str, Any]) -> List[str]:
    """Dotted keys whose values differ between a recorded config and this one (non-shaping keys left out)."""
    old, new = _flat(recorded), _flat(cfg)
    return sorted(k for k in set(old) | set(new) if k not in NOT_SHAPING and old.get(k, "<unset>") != new.get(k, "<unset>"))


def check_same_settings(cfg: Dict[str, Any], run_folder: Path) -> None:
    """Refuse to resume the run in ``run_folder`` with settings other than those it was started with."""
    recorded_path = Path(run_folder) / "config.yaml"
    if not recorded_path.is_file():
        return
    try:
        recorded = yaml.safe_load(recorded_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{recorded_path}: the run's recorded settings are not valid YAML ({e}); "
                          "use a new run folder (out=...)") from None
    if not isinstance(recorded, dict):
        raise ConfigError(f"{recorded_path}: the run's recorded settings are not a mapping; use a new run folder (out=...)")
    differ = differing_settings(recorded, cfg)
    if differ:
        shown = ", ".join(f"{k} ({_flat(recorded).get(k, '<unset>')!r} -> {_flat(cfg).get(k, '<unset>')!r})" for k in differ[:8])
        more = f" and {len(differ) - 8} more" if len(differ) > 8 else ""
        raise ConfigError(f"{run_folder} holds checkpoints of a run with other settings: {shown}{more}. "
                          "Rerun with the same settings to resume, or choose a new run folder (out=...)")
