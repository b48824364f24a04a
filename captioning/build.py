"""Caption dataset build: samples -> facts -> captions -> webdataset shards, resumable.

Last step of the caption flow (evidence -> facts -> writer -> **shards**). Samples are assigned to shards by
position (``index // shard_size``), so every run makes the same shards. A shard is written to ``<name>.tmp``
and renamed when complete, together with a ``<name>.json`` sidecar (count and skipped samples); on restart,
complete shards are kept and incomplete ones redone, so an interrupted run resumes without losing or
duplicating samples and ends with the same bytes as an uninterrupted one (tar members carry a fixed mtime).

Each sample in a shard: ``<key>.png`` (the original image bytes, not re-encoded), ``<key>.txt`` (the global
caption, which open_clip's own webdataset loader reads) and ``<key>.json`` (captions, facts, provenance).
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import Image
from tqdm.auto import tqdm

from .facts import facts_from_distribution
from .sources import Sample
from .templates import TemplateWriter

SHARD_PATTERN = "{prefix}-{index:06d}.tar"


def _check_image(data: bytes, where: str) -> Tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.size
    except Exception as e:
        raise ValueError(f"{where}: unreadable image ({e})") from None


def caption_sample(sample: Sample, writer) -> Tuple[Dict[str, bytes], Optional[str]]:
    """The webdataset record for one sample, or (None, reason) when it must be skipped."""
    if sample.skip_reason:
        return None, sample.skip_reason
    if not sample.distribution:
        return None, "no emotion label"
    try:
        data = sample.read_bytes()
    except OSError as e:
        return None, f"cannot read image ({e})"
    try:
        size = _check_image(data, sample.source_file)
    except ValueError as e:
        return None, str(e).split(": ", 1)[-1]
    facts = facts_from_distribution(sample.distribution, votes=sample.votes, agreement=sample.agreement)
    captions = writer.write(facts, sample.key)
    record = {
        "key": sample.key,
        "source": {**sample.extra, "path": sample.source_file},
        "image_size": list(size),
        "label": facts.dominant,
        "soft_label": facts.distribution,
        "captions": {k: captions[k] for k in ("global", "local", "summary")},
        "writer": captions.get("writer", getattr(writer, "name", "unknown")),
        "facts": facts.to_dict(),
    }
    return {
        "__key__": sample.key,
        sample.image_ext: data,
        "txt": captions["global"].encode("utf-8"),
        "json": json.dumps(record, ensure_ascii=False, sort_keys=True).encode("utf-8"),
    }, None


def _write_shard(path: Path, samples: Sequence[Sample], writer, bar) -> Dict[str, object]:
    import webdataset as wds

    tmp = path.with_name(path.name + ".tmp")
    skipped: List[Dict[str, str]] = []
    count = 0
    try:
        with open(tmp, "wb") as stream:
            sink = wds.TarWriter(stream, mtime=0)
            try:
                for sample in samples:
                    record, reason = caption_sample(sample, writer)
                    if record is None:
                        skipped.append({"key": sample.key, "file": sample.source_file, "reason": reason})
                    else:
                        sink.write(record)
                        count += 1
                    bar.update(1)
            finally:
                sink.close()
    except BaseException:
        tmp.unlink(missing_ok=True)  # an interrupted shard is redone from scratch on the next run
        raise
    meta = {"shard": path.name, "count": count, "skipped": skipped}
    side = path.with_suffix(".json")
    side_tmp = side.with_name(side.name + ".tmp")
    side_tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    os.replace(side_tmp, side)  # the sidecar marks the shard as complete
    return meta


def build_captions(
    samples: Sequence[Sample],
    out_dir: os.PathLike,
    writer=None,
    shard_size: int = 5000,
    prefix: str = "captions",
    label_problems: Sequence[Tuple[str, str]] = (),
    progress: bool = True,
    shard_indices: Optional[Sequence[int]] = None,
) -> Dict[str, object]:
    """Write (or resume) the shards for ``samples``; returns a report with counts and skipped samples.

    ``shard_indices`` restricts the work to some shards (to split one job across processes or machines).
    """
    writer = writer or TemplateWriter(seed=0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.tmp"):
        stale.unlink()
    n_shards = max(1, -(-len(samples) // shard_size))
    todo = range(n_shards) if shard_indices is None else [i for i in shard_indices if 0 <= i < n_shards]
    started = time.time()
    done_before = 0
    with tqdm(total=len(samples), disable=not progress, unit="img", desc=f"captions -> {out}") as bar:
        for index in todo:
            path = out / SHARD_PATTERN.format(prefix=prefix, index=index)
            chunk = samples[index * shard_size:(index + 1) * shard_size]
            if path.is_file() and path.with_suffix(".json").is_file():
                done_before += len(chunk)
                bar.update(len(chunk))
                continue
            _write_shard(path, chunk, writer, bar)
    metas = [json.loads(p.read_text()) for p in sorted(out.glob(f"{prefix}-*.json"))]
    sizes = {m["shard"]: m["count"] for m in metas}
    (out / "sizes.json").write_text(json.dumps(sizes, indent=1), encoding="utf-8")
    skipped = [s for m in metas for s in m["skipped"]]
    report = {
        "out_dir": str(out),
        "shards": len(metas),
        "samples_written": sum(sizes.values()),
        "samples_skipped": len(skipped),
        "skipped": skipped,
        "label_file_problems": [{"where": w, "reason": r} for w, r in label_problems],
        "resumed_samples": done_before,
        "writer": getattr(writer, "name", "unknown"),
        "seconds": round(time.time() - started, 2),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report
