"""Stats report and HF ImageFolder export for finished caption shards.

After the last step of the caption flow (facts -> writer -> **shards** -> report / export). ``caption_stats``
reads the shards' JSON members only and reports caption lengths, vocabulary, distinct captions, class and writer
counts, and the AU picture: the rate of each active AU per emotion (from the facts, with their source) and the
mean landmark-estimated intensity per emotion (``face.au_estimates``), the table that checks the estimates
against the labels. ``write_stats_report`` adds ``stats.md`` and PNG plots (matplotlib).
``export_imagefolder`` writes an HF datasets ImageFolder (images + ``metadata.jsonl``) that
``datasets.load_dataset("imagefolder", data_dir=...)`` reads back with the captions as columns.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from emocap.caption_records import IMAGE_EXTS, parse_record, record_captions, record_image, split_member_name
from emocap.face_analysis.action_units import AUS
from emocap.safe_paths import resolve_under

WORD = re.compile(r"[a-z']+")


def iter_shard_samples(shard_dir: Path, with_images: bool = False) -> Iterator[Tuple[str, dict, Optional[Tuple[str, bytes]]]]:
    """(key, record, (ext, image bytes) or None) for every sample in the folder's shards, in order."""
    for _, key, rec, image in _iter_samples(shard_dir, with_images):
        yield key, rec, image


def _iter_samples(shard_dir: Path, with_images: bool):
    """(shard, key, record, image) for every sample, in order (the shard path names errors and collisions)."""
    shards = sorted(Path(shard_dir).glob("*.tar"))
    if not shards:
        raise FileNotFoundError(f"{shard_dir}: no .tar caption shards")
    for shard in shards:
        with tarfile.open(shard) as tar:
            pending: Dict[str, dict] = {}
            for m in tar:
                if not m.isfile():
                    continue
                key, ext = split_member_name(m.name)
                if ext != "json" and not (with_images and ext in IMAGE_EXTS):
                    continue
                entry = pending.setdefault(key, {})
                entry[ext] = tar.extractfile(m).read()
                if "json" in entry and (not with_images or record_image(entry) is not None):
                    rec = parse_record(entry.pop("json"), f"{shard}: member {m.name!r}")
                    image = record_image(entry)
                    del pending[key]
                    yield shard, key, rec, image


def caption_stats(shard_dir: Path) -> dict:
    """Counts and distributions over every sample of the shards (see the module docstring)."""
    lengths: Dict[str, List[int]] = {"global": [], "local": [], "summary": []}
    vocab: Counter = Counter()
    globals_: set = set()
    classes: Counter = Counter()
    writers: Counter = Counter()
    au_active: Dict[str, Counter] = defaultdict(Counter)
    au_sources: Counter = Counter()
    estimates: Dict[str, List[List[float]]] = defaultdict(list)
    face_states: Dict[str, Counter] = defaultdict(Counter)
    n = 0
    for _, rec, _ in iter_shard_samples(shard_dir):
        n += 1
        label = rec["label"]
        classes[label] += 1
        writers[rec.get("writer", "unknown")] += 1
        caps = rec["captions"]
        for part in ("global", "summary"):
            words = WORD.findall(caps[part].lower())
            lengths[part].append(len(words))
            vocab.update(words)
        for sentence in caps["local"]:
            words = WORD.findall(sentence.lower())
            lengths["local"].append(len(words))
            vocab.update(words)
        globals_.add(caps["global"])
        for au, fact in rec["facts"].get("aus", {}).items():
            au_active[label][int(au)] += 1
            au_sources[fact["source"]] += 1
        face = rec.get("face")
        if face:
            est = face.get("au_estimates", {})
            estimates[label].append([float(est.get(str(a), 0.0)) for a in AUS])
            face_states[label]["mouth_open"] += int(bool(face.get("mouth_open")))
            face_states[label]["teeth_visible"] += int(bool(face.get("teeth_visible")))
            face_states[label]["eyes_closed"] += int(face.get("eyes") == "closed")
    if n == 0:
        raise ValueError(f"{shard_dir}: the shards hold no samples")

    def summary(values: List[int]) -> dict:
        a = np.asarray(values or [0])
        return {"mean": round(float(a.mean()), 2), "median": float(np.median(a)), "min": int(a.min()), "max": int(a.max())}

    order = [c for c, _ in classes.most_common()]
    return {
        "samples": n,
        "classes": dict(classes.most_common()),
        "writers": dict(writers),
        "caption_words": {k: summary(v) for k, v in lengths.items()},
        "local_sentences_per_sample": round(len(lengths["local"]) / n, 2),
        "vocabulary_size": len(vocab),
        "distinct_global_captions": len(globals_),
        "top_words": vocab.most_common(30),
        "au_sources": dict(au_sources),
        "au_active_rate": {c: {f"AU{a}": round(au_active[c][a] / classes[c], 4) for a in AUS} for c in order},
        "au_estimate_mean": {c: {f"AU{a}": round(float(v), 4) for a, v in zip(AUS, np.mean(estimates[c], axis=0))}
                             for c in order if estimates[c]},
        "au_estimate_rate": {c: {f"AU{a}": round(float(v), 4) for a, v in zip(AUS, (np.asarray(estimates[c]) >= 0.2).mean(axis=0))}
                             for c in order if estimates[c]},
        "face_states_rate": {c: {k: round(v / classes[c], 4) for k, v in face_states[c].items()} for c in order if face_states[c]},
        "lengths": lengths,
    }


def au_table_markdown(stats: dict, key: str = "au_estimate_rate", aus: Tuple[int, ...] = AUS, percent: bool = True) -> str:
    """A class x AU Markdown table of ``stats[key]`` (rates in percent)."""
    table = stats.get(key) or {}
    if not table:
        return f"(no {key} in these shards)\n"
    head = "| emotion | n | " + " | ".join(f"AU{a}" for a in aus) + " |\n"
    head += "|---|---:|" + "---:|" * len(aus) + "\n"
    rows = []
    for c, vals in table.items():
        cells = [f"{vals[f'AU{a}'] * 100:.1f}" if percent else f"{vals[f'AU{a}']:.3f}" for a in aus]
        rows.append(f"| {c} | {stats['classes'][c]} | " + " | ".join(cells) + " |")
    return head + "\n".join(rows) + "\n"


def write_stats_report(shard_dir: Path, out_dir: Optional[Path] = None) -> dict:
    """stats.json, stats.md and PNG plots (caption lengths, classes, AU rates per class) in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = caption_stats(shard_dir)
    out = Path(out_dir or Path(shard_dir) / "stats")
    out.mkdir(parents=True, exist_ok=True)
    lengths = stats.pop("lengths")
    (out / "stats.json").write_text(json.dumps(stats, indent=1), encoding="utf-8")

    fig, ax = plt.subplots(figsize=(7, 4))
    for part, values in lengths.items():
        if values:
            ax.hist(values, bins=range(0, max(values) + 2), alpha=0.5, label=part)
    ax.set_xlabel("words"), ax.set_ylabel("captions"), ax.set_title("caption length"), ax.legend()
    fig.tight_layout(), fig.savefig(out / "caption_lengths.png", dpi=100), plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(list(stats["classes"]), list(stats["classes"].values()))
    ax.set_ylabel("samples"), ax.set_title("classes (dominant emotion)")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout(), fig.savefig(out / "classes.png", dpi=100), plt.close(fig)

    plots = ["caption_lengths.png", "classes.png"]
    for key, title in (("au_active_rate", "active AUs in the facts (any source)"),
                       ("au_estimate_rate", "landmark AU estimates >= 0.2")):
        table = stats.get(key)
        if not table:
            continue
        classes = list(table)
        grid = np.array([[table[c][f"AU{a}"] for a in AUS] for c in classes])
        fig, ax = plt.subplots(figsize=(10, 0.5 * len(classes) + 1.5))
        im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=max(0.01, float(grid.max())), aspect="auto")
        ax.set_xticks(range(len(AUS)), [f"AU{a}" for a in AUS], rotation=45)
        ax.set_yticks(range(len(classes)), classes)
        ax.set_title(title)
        fig.colorbar(im, ax=ax, label="rate")
        fig.tight_layout(), fig.savefig(out / f"{key}.png", dpi=100), plt.close(fig)
        plots.append(f"{key}.png")

    lines = [f"# Caption stats: {shard_dir}", "", f"- samples: {stats['samples']}",
             f"- writers: {stats['writers']}", f"- vocabulary: {stats['vocabulary_size']} words; "
             f"distinct global captions: {stats['distinct_global_captions']}",
             f"- words per caption (mean): global {stats['caption_words']['global']['mean']}, local "
             f"{stats['caption_words']['local']['mean']}, summary {stats['caption_words']['summary']['mean']}; "
             f"local sentences per sample {stats['local_sentences_per_sample']}",
             f"- AU facts by source: {stats['au_sources']}", "", "## Classes", "",
             "| emotion | samples |", "|---|---:|", *[f"| {c} | {v} |" for c, v in stats["classes"].items()], "",
             "## Landmark AU estimates: share of faces with intensity >= 0.2 (%)", "",
             au_table_markdown(stats, "au_estimate_rate"),
             "## Landmark AU estimates: mean intensity (0..1)", "",
             au_table_markdown(stats, "au_estimate_mean", percent=False),
             "## Active AUs in the facts, any source (%)", "", au_table_markdown(stats, "au_active_rate"),
             "## Plots", "", *[f"![{p}]({p})" for p in plots], ""]
    (out / "stats.md").write_text("\n".join(lines), encoding="utf-8")
    stats["files"] = ["stats.json", "stats.md", *plots]
    stats["out_dir"] = str(out)
    return stats


def _export_name(folder: Path, shard: Path, key: str, ext: str, taken: Dict[str, str],
                 renamed: List[str]) -> Tuple[str, Path]:
    """The file name (relative to ``folder``) of one exported image: refused when it would land outside
    ``folder``; a name another sample already took (two shards with one key, names equal but for case) gets a
    short hash of its shard and key, so no export overwrites another."""
    name = f"{key}.{ext}"
    target = resolve_under(folder, name, what=f"{shard}: image member")
    if name.lower() in taken:
        digest = hashlib.sha1(f"{shard.name}/{key}".encode("utf-8", "surrogatepass")).hexdigest()[:8]
        new = f"{key}-{digest}.{ext}"
        if new.lower() in taken:
            raise ValueError(f"{shard}: image member {name!r} collides with {taken[name.lower()]} even after renaming")
        renamed.append(f"{shard}: {name} (also in {taken[name.lower()]}) -> {new}")
        name, target = new, resolve_under(folder, new, what=f"{shard}: image member")
    taken[name.lower()] = f"{shard.name}/{key}"
    return name, target


def export_imagefolder(shard_dir: Path, out_dir: Path, split: str = "train",
                       renamed: Optional[List[str]] = None) -> int:
    """Write ``out_dir/<split>/<key>.<ext>`` and ``out_dir/<split>/metadata.jsonl``; returns the image count.

    Every file stays under ``out_dir/<split>``: a member named with an absolute path or ``..`` raises
    :class:`~emocap.safe_paths.UnsafePathError` naming the shard and member. Keys that would collide are given a
    suffix (listed in ``renamed``) instead of overwriting each other, so the count is the number of files written."""
    folder = Path(out_dir) / split
    folder.mkdir(parents=True, exist_ok=True)
    renamed = [] if renamed is None else renamed
    taken: Dict[str, str] = {}
    n = 0
    tmp = folder / "metadata.jsonl.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as meta:
            for shard, key, rec, image in _iter_samples(shard_dir, with_images=True):
                if image is None:
                    continue
                ext, data = image
                name, target = _export_name(folder, shard, key, ext, taken, renamed)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                meta.write(json.dumps(_metadata_row(name, rec), ensure_ascii=False) + "\n")
                n += 1
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(folder / "metadata.jsonl")
    return n


def _metadata_row(name: str, rec: dict) -> dict:
    facts = rec["facts"]
    captions = record_captions(rec)
    return {
        "file_name": name,
        "label": rec["label"],
        "caption": captions["global"],
        "local": list(captions["local"]),
        "summary": captions["summary"],
        "active_aus": [f"AU{a}" for a in sorted(facts.get("aus", {}), key=int)],
        "soft_label": json.dumps(rec.get("soft_label", {}), sort_keys=True),
        "writer": rec.get("writer", "unknown"),
    }
