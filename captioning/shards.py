"""Caption shards: samples -> face analysis -> facts -> captions -> webdataset shards, resumable.

Last step of the caption flow (evidence -> facts -> writer -> **shards**). Samples are assigned to shards by
position (``index // shard_size``), so every run makes the same shards. A shard is written to ``<name>.tmp``
and renamed when complete, together with a ``<name>.json`` sidecar (count, skipped samples, writer counts); on
restart, complete shards are kept and incomplete ones redone, so an interrupted run resumes without losing or
duplicating samples and ends with the same bytes as an uninterrupted one (tar members carry a fixed mtime; the
rest-face reference is saved at full precision). The settings that shape the shards (sample list, shard size,
writer, face analysis, dedup) are recorded in ``settings.json`` (``run_settings.py``): a rerun into the same folder
with other settings is refused instead of mixing two runs' shards.

Scale: ``workers`` processes on one machine each write whole shards; ``num_parts``/``part`` (or the ``RANK`` /
``WORLD_SIZE`` that ``accelerate launch`` and ``torchrun`` set) give each process or machine the shards
``i % num_parts == part``. Everything a process needs to agree with the others (shard assignment, duplicate
images, the rest-face reference for AU estimates) is computed deterministically from the sample list.

Each sample in a shard: ``<key>.png`` (the original image bytes, or the aligned face crop when faces are detected
in full photos), ``<key>.txt`` (the global caption, which open_clip's own webdataset loader reads) and
``<key>.json`` (captions, facts, face analysis, provenance); the format is core's ``emocap.caption_records``.
Sample keys must be unique (also ignoring case): colliding keys are refused, never merged.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import Image
from tqdm.auto import tqdm

from emocap.caption_records import make_record

from .facts import facts_from_distribution
from .run_settings import check_settings, run_settings
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


def prepare_sample(sample: Sample, analyzer=None, duplicate_of: Optional[str] = None):
    """Evidence and facts of one sample: ``(prepared, None)`` or ``(None, skip reason)``."""
    if sample.skip_reason:
        return None, sample.skip_reason
    if duplicate_of:
        return None, f"duplicate image of {duplicate_of}"
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
    face, estimates, image_ext = None, None, sample.image_ext
    if analyzer is not None:
        from emocap.face_analysis import NoFaceFound

        try:
            analysis = analyzer.analyze(data, sample.landmarks, identity=sample.identity)
        except NoFaceFound as e:
            return None, str(e)
        except ValueError as e:
            return None, f"face analysis failed ({e})"
        estimates, basis = analysis.aus, analysis.reference_basis  # the numbers emocap.analyze_face reports
        face = analysis.to_dict(basis)
        if estimates is not None:
            face["au_estimates"] = {str(k): v for k, v in estimates.items()}
        if analysis.crop_png is not None:
            data, image_ext, size = analysis.crop_png, "png", (analyzer.crop_size, analyzer.crop_size)
    try:
        facts = facts_from_distribution(
            sample.distribution, votes=sample.votes, agreement=sample.agreement, estimates=estimates,
            annotated_aus=sample.aus, face={k: v for k, v in (face or {}).items() if k in (
                "eyes", "eye_openness", "mouth_open", "teeth_visible", "head_pose")} or None,
            valence=sample.valence, arousal=sample.arousal,
        )
    except (KeyError, ValueError) as e:
        return None, f"bad label evidence ({e})"
    return {"sample": sample, "data": data, "ext": image_ext, "size": size, "facts": facts, "face": face}, None


def _record(prep: dict, captions: Dict[str, object]) -> Dict[str, bytes]:
    sample, facts = prep["sample"], prep["facts"]
    return make_record(
        key=sample.key, image_ext=prep["ext"], image=prep["data"],
        source={**sample.extra, "path": sample.source_file}, image_size=prep["size"],
        label=facts.dominant, soft_label=facts.distribution, captions=captions, facts=facts.to_dict(),
        face=prep["face"], identity=sample.identity,
    )


def caption_sample(sample: Sample, writer, analyzer=None, duplicate_of: Optional[str] = None):
    """The webdataset record for one sample, or (None, reason) when it must be skipped."""
    prep, reason = prepare_sample(sample, analyzer, duplicate_of)
    if prep is None:
        return None, reason
    captions = writer.write_many([(prep["facts"], sample.key, prep["data"])])[0]
    return _record(prep, captions), None


def _write_shard(path: Path, samples: Sequence[Sample], writer, analyzer, duplicates: Dict[str, str], tick) -> Dict[str, object]:
    import webdataset as wds

    tmp = path.with_name(path.name + ".tmp")
    skipped: List[Dict[str, str]] = []
    writers: Dict[str, int] = {}
    fallbacks: List[Dict[str, str]] = []
    count = 0
    batch = max(1, getattr(writer, "concurrency", 1)) * 4
    try:
        with open(tmp, "wb") as stream:
            sink = wds.TarWriter(stream, mtime=0)
            try:
                for start in range(0, len(samples), batch):
                    preps = []
                    for sample in samples[start:start + batch]:
                        prep, reason = prepare_sample(sample, analyzer, duplicates.get(sample.key))
                        if prep is None:
                            skipped.append({"key": sample.key, "file": sample.source_file, "reason": reason})
                            tick(1)
                        else:
                            preps.append(prep)
                    captions = writer.write_many([(p["facts"], p["sample"].key, p["data"]) for p in preps])
                    for prep, caps in zip(preps, captions):
                        sink.write(_record(prep, caps))
                        writers[str(caps.get("writer"))] = writers.get(str(caps.get("writer")), 0) + 1
                        if caps.get("fallback_reason"):
                            fallbacks.append({"key": prep["sample"].key, "reason": str(caps["fallback_reason"])})
                        count += 1
                        tick(1)
            finally:
                sink.close()
    except BaseException:
        tmp.unlink(missing_ok=True)  # an interrupted shard is redone from scratch on the next run
        raise
    meta = {"shard": path.name, "count": count, "skipped": skipped, "writers": writers, "fallbacks": fallbacks}
    side = path.with_suffix(".json")
    side_tmp = side.with_name(side.name + ".tmp")
    side_tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    os.replace(side_tmp, side)  # the sidecar marks the shard as complete
    return meta


def find_duplicates(samples: Sequence[Sample], progress: bool = False) -> Dict[str, str]:
    """key -> key of the first sample with byte-identical image data (sha256), in sample order."""
    first: Dict[str, str] = {}
    dup: Dict[str, str] = {}
    for s in tqdm(samples, desc="dedup (image hashes)", unit="img", disable=not progress, leave=False):
        if s.skip_reason:
            continue
        try:
            digest = hashlib.sha256(s.read_bytes()).hexdigest()
        except OSError:
            continue  # reported when the shard is written
        if digest in first and first[digest] != s.key:
            dup[s.key] = first[digest]
        else:
            first[digest] = s.key
    return dup


def parts_from_env(num_parts: Optional[int], part: Optional[int]) -> Tuple[int, int]:
    """(num_parts, part): explicit values, else WORLD_SIZE / RANK (accelerate launch, torchrun), else (1, 0)."""
    if num_parts is None:
        num_parts = int(os.environ.get("WORLD_SIZE", "1"))
        part = int(os.environ.get("RANK", "0")) if part is None else part
    part = 0 if part is None else part
    if num_parts < 1 or not 0 <= part < num_parts:
        raise ValueError(f"--part must be in 0..{num_parts - 1} (got {part}) and --num-parts at least 1")
    return num_parts, part


def _prepare_reference(analyzer, samples: Sequence[Sample], out: Path, progress: bool) -> None:
    from emocap.face_analysis import NoFaceFound, build_reference, load_reference

    ref_file = out / "reference.json"
    if ref_file.is_file():
        data = json.loads(ref_file.read_text(encoding="utf-8"))
        if data.get("backend") == analyzer.name:
            load_reference(analyzer, data)
            return
    try:
        data = build_reference(analyzer, samples, progress=progress)
    except NoFaceFound as e:  # no usable face at all: every sample will say so when it is analysed
        print(f"warning: {e}; no AU estimates in this run", file=sys.stderr)
        return
    tmp = ref_file.with_name(f"reference.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, ref_file)


# State handed to forked worker processes (samples hold closures that cannot be pickled).
_JOB: Dict[str, object] = {}


def _worker_init() -> None:
    """Workers leave Ctrl-C to the parent, which stops them (one message, no traceback per worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _worker_shard(index: int) -> Dict[str, object]:
    job = _JOB
    samples, size = job["samples"], job["shard_size"]
    counter = job["counter"]

    def tick(n: int) -> None:
        with counter.get_lock():
            counter.value += n

    path = Path(job["out"]) / SHARD_PATTERN.format(prefix=job["prefix"], index=index)
    return _write_shard(path, samples[index * size:(index + 1) * size], job["writer"], job["analyzer"], job["duplicates"], tick)


def check_unique_keys(samples: Sequence[Sample]) -> None:
    """Refuse sample keys that collide (also ignoring case, as on macOS/Windows file systems): two inputs must
    never merge into one sample. Readers make keys unique with ``emocap.safe_paths.unique_keys``."""
    seen: Dict[str, Sample] = {}
    clashes = []
    for s in samples:
        other = seen.setdefault(s.key.lower(), s)
        if other is not s:
            clashes.append(f"{other.source_file} and {s.source_file} (key {s.key!r})")
    if clashes:
        more = f" and {len(clashes) - 3} more" if len(clashes) > 3 else ""
        raise ValueError(f"{len(clashes)} sample key collision(s): " + "; ".join(clashes[:3]) + more
                         + ": keys must be unique (emocap.safe_paths.unique_keys)")


def _chunk(samples: Sequence[Sample], index: int, shard_size: int) -> Sequence[Sample]:
    return samples[index * shard_size:(index + 1) * shard_size]


def _shard_path(out: Path, prefix: str, index: int) -> Path:
    return out / SHARD_PATTERN.format(prefix=prefix, index=index)


def _clear_stale(out: Path, prefix: str, todo: Sequence[int]) -> None:
    """Remove the leftovers of this process's own interrupted shards."""
    for i in todo:
        name = SHARD_PATTERN.format(prefix=prefix, index=i)
        for stale in out.glob(name + "*.tmp"):
            stale.unlink()
        (out / (name[:-4] + ".json.tmp")).unlink(missing_ok=True)


def _run_parallel(pending: Sequence[int], workers: int, bar, job: Dict[str, object]) -> None:
    """Write the ``pending`` shards in forked worker processes; Ctrl-C stops them (their shards stay unfinished,
    to be redone on the next run) and re-raises KeyboardInterrupt here."""
    ctx = mp.get_context("fork")
    counter = ctx.Value("l", 0)
    _JOB.update(job, counter=counter)
    pool = ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=ctx, initializer=_worker_init)
    try:
        futures = {pool.submit(_worker_shard, i) for i in pending}
        seen = 0
        while futures:
            finished, futures = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
            for f in finished:
                f.result()  # re-raise a worker's error
            now = counter.value
            bar.update(now - seen)
            seen = now
    except BaseException:
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()  # an interrupted shard is redone from scratch on the next run
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        _JOB.clear()


def _report(out: Path, prefix: str, metas: List[dict], **fields) -> Dict[str, object]:
    sizes = {m["shard"]: m["count"] for m in metas}
    _write_json(out / "sizes.json", sizes)
    skipped = [s for m in metas for s in m["skipped"]]
    writer_counts: Dict[str, int] = {}
    for m in metas:
        for k, v in m.get("writers", {}).items():
            writer_counts[k] = writer_counts.get(k, 0) + v
    fallbacks = [f for m in metas for f in m.get("fallbacks", [])]
    return {
        "out_dir": str(out),
        "shards": len(metas),
        "shards_expected": fields.pop("shards_expected"),
        "samples_written": sum(sizes.values()),
        "samples_skipped": len(skipped),
        "skipped": skipped,
        "label_file_problems": fields.pop("label_file_problems"),
        "resumed_samples": fields.pop("resumed_samples"),
        "writer": fields.pop("writer"),
        "writer_counts": writer_counts,
        "writer_fallbacks": len(fallbacks),
        "fallbacks": fallbacks,
        **fields,
    }


def build_captions(
    samples: Sequence[Sample],
    out_dir: os.PathLike,
    writer=None,
    shard_size: int = 5000,
    prefix: str = "captions",
    label_problems: Sequence[Tuple[str, str]] = (),
    progress: bool = True,
    shard_indices: Optional[Sequence[int]] = None,
    analyzer=None,
    dedup: bool = True,
    workers: int = 1,
    num_parts: int = 1,
    part: int = 0,
    settings: Optional[Dict[str, object]] = None,
) -> Dict[str, object]:
    """Write (or resume) the shards for ``samples``; returns a report with counts and skipped samples.

    ``analyzer`` (a ``FaceAnalyzer``) adds landmark AU estimates and face states; ``dedup`` skips byte-identical
    images after their first occurrence; ``workers`` processes write shards in parallel; ``num_parts``/``part``
    and ``shard_indices`` restrict the work to some shards (to split one job across processes or machines).
    ``settings``: further options that shape the output (e.g. the CLI's dataset and split), recorded with the
    builder's own in ``settings.json``; a rerun into ``out_dir`` with other settings raises
    :class:`~emocap.captioning.run_settings.SettingsChanged`. Colliding sample keys raise ValueError.
    """
    writer = writer or TemplateWriter(seed=0)
    out = Path(out_dir)
    check_unique_keys(samples)
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out, run_settings(samples, writer, analyzer, shard_size, prefix, dedup, settings))
    n_shards = max(1, -(-len(samples) // shard_size))
    todo = list(range(n_shards)) if shard_indices is None else [i for i in shard_indices if 0 <= i < n_shards]
    todo = [i for i in todo if i % num_parts == part]
    _clear_stale(out, prefix, todo)
    started = time.time()
    done_before, pending = 0, []
    for index in todo:
        path = _shard_path(out, prefix, index)
        if path.is_file() and path.with_suffix(".json").is_file():
            done_before += len(_chunk(samples, index, shard_size))
        else:
            pending.append(index)
    duplicates = find_duplicates(samples, progress) if dedup and pending else {}
    if analyzer is not None and pending:
        _prepare_reference(analyzer, samples, out, progress)
    total = sum(len(_chunk(samples, i, shard_size)) for i in todo)
    with tqdm(total=total, initial=done_before, disable=not progress, unit="img", desc=f"captions -> {out}",
              smoothing=0.05) as bar:
        if workers <= 1 or len(pending) <= 1:
            for index in pending:
                _write_shard(_shard_path(out, prefix, index), _chunk(samples, index, shard_size), writer, analyzer,
                             duplicates, bar.update)
        else:
            _run_parallel(pending, workers, bar, dict(samples=samples, shard_size=shard_size, out=str(out),
                                                      prefix=prefix, writer=writer, analyzer=analyzer,
                                                      duplicates=duplicates))
    metas = [json.loads(_shard_path(out, prefix, i).with_suffix(".json").read_text())
             for i in range(n_shards) if _shard_path(out, prefix, i).with_suffix(".json").is_file()]
    report = _report(
        out, prefix, metas, shards_expected=n_shards if shard_indices is None else None,
        label_file_problems=[{"where": w, "reason": r} for w, r in label_problems], resumed_samples=done_before,
        writer=getattr(writer, "name", "unknown"), face_analysis=getattr(analyzer, "name", None),
        duplicates=len(duplicates), part=[part, num_parts], seconds=round(time.time() - started, 2),
    )
    _write_json(out / ("report.json" if num_parts == 1 else f"report-part{part}.json"), report)
    return report


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)
