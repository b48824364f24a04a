"""Settings of a caption run: recorded in ``OUT/settings.json``, checked when a run resumes into the same folder.

Part of the last step of the caption flow (writer -> **shards**): ``shards.build_captions`` calls
:func:`run_settings` and :func:`check_settings` before it writes anything. Recorded: what shapes the shards (a
digest of the sample list with its keys, source files and label evidence, the shard size and name prefix, dedup,
the writer and its seed or model, the face-analysis backend) plus the caller's own options (the CLI adds the
dataset, split and limit). Not recorded: what only splits the work (workers, parts, shard indices), so the parts
of one job agree. A rerun whose settings differ is refused with :class:`SettingsChanged` naming each difference:
mixing two runs' shards in one folder would duplicate or lose samples.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

SETTINGS_FILE = "settings.json"

__all__ = ["SETTINGS_FILE", "SettingsChanged", "run_settings", "check_settings", "samples_digest", "writer_settings"]


class SettingsChanged(ValueError):
    """A rerun into an existing caption folder with settings that differ from the run that started it."""


def samples_digest(samples: Sequence) -> str:
    """sha256 over each sample's key, source file, label evidence and skip reason, in order."""
    h = hashlib.sha256()
    for s in samples:
        evidence = {"key": s.key, "file": s.source_file, "dist": s.distribution, "votes": s.votes,
                    "skip": s.skip_reason, "identity": s.identity, "aus": s.aus, "landmarks": s.landmarks,
                    "valence": s.valence, "arousal": s.arousal}
        h.update(json.dumps(evidence, sort_keys=True, default=str).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def writer_settings(writer) -> Dict[str, object]:
    """The writer's name and what makes its captions: the template seed (its own or its fallback's), the model."""
    fallback = getattr(writer, "fallback", None)
    seed = getattr(writer, "seed", getattr(fallback, "seed", None))
    model = getattr(writer, "model_id", None) or getattr(writer, "model", None)
    return {"name": getattr(writer, "name", type(writer).__name__), "seed": seed,
            "model": model if isinstance(model, str) else None}


def run_settings(samples: Sequence, writer, analyzer, shard_size: int, prefix: str, dedup: bool,
                 extra: Optional[Mapping[str, object]] = None) -> Dict[str, object]:
    """The settings that shape a caption run's shards (see the module docstring)."""
    settings: Dict[str, object] = {
        "samples": len(samples),
        "samples_digest": samples_digest(samples),
        "shard_size": int(shard_size),
        "prefix": prefix,
        "dedup": bool(dedup),
        "writer": writer_settings(writer),
        "face_analysis": getattr(analyzer, "name", None),
    }
    for k, v in (extra or {}).items():
        settings.setdefault(k, v)
    return json.loads(json.dumps(settings, default=str))  # as it reads back from the file


def _differences(old: Mapping[str, object], new: Mapping[str, object]) -> List[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k):
            what = "the sample list (dataset, root, split, labels or --limit)" if k == "samples_digest" else k
            if k == "samples_digest":
                out.append(what)
            else:
                out.append(f"{what}: {json.dumps(new.get(k))} now, {json.dumps(old.get(k))} before")
    return out


def check_settings(out: Path, settings: Mapping[str, object]) -> None:
    """Record ``settings`` in ``out/settings.json``, or, when the file exists, refuse settings that differ."""
    path = Path(out) / SETTINGS_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise SettingsChanged(f"{path}: unreadable ({e}); remove it only if the shards in {out} are from "
                                  "this very command") from None
        diffs = _differences(old, settings)
        if diffs:
            raise SettingsChanged(
                f"{out} holds shards of a run with other settings ({path}): " + "; ".join(diffs)
                + ". Resuming would mix two runs' shards: use another --out, or delete that folder to start over")
        return
    if list(Path(out).glob(f"{settings.get('prefix', '*')}-*.tar")):
        print(f"warning: {out} holds shards but no {SETTINGS_FILE} (an older emocap wrote them): their settings "
              "cannot be checked; this run's are recorded from now on", file=sys.stderr)
    tmp = path.with_name(f"{SETTINGS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(settings, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
