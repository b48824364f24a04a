"""AU validity: how the landmark AU estimates (``emocap.analyze_face``, the numbers captions use) behave on real faces.

Two measurements, printed as Markdown tables (docs/face_analysis.md) and optionally saved as JSON:

1. **Prototype rates on FER+ test**: up to ``--per-class`` faces per FER+ majority emotion (evenly spaced through
   the split, NF-majority faces left out), each read as a pre-cropped face against the bundled rest-face reference
   (FER+ *train* neutral faces, so no test face is in it). For each emotion: the share of faces where each AU of
   its FACS prototype (``emocap.captioning.facs_knowledge.PROTOTYPE_AUS``) is active (estimate >= 0.2, the
   caption builder's threshold), the same AU's share in neutral faces (the base rate), and the share with at
   least one prototype AU active.
2. **Frame-to-frame agreement on video**: every frame (or the first ``--max-frames``) of a video read with dlib's
   detector; per AU the mean absolute change between consecutive frames with a face, the spread of the AU over
   the clip, the correlation of consecutive frames (lag-1) and how often its active state (>= 0.2) flips between
   consecutive frames; landmark jitter in inter-ocular units.

    OMP_NUM_THREADS=1 python benchmarks/au_validity.py --ferplus ../shared/data/ferplus \\
        --video ../shared/data/media/single_face.mp4 --video ../shared/data/media/WolfgangLanger_Pexels.mp4 \\
        --max-frames 240 --out results/au_validity.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from emocap.captioning.facs_knowledge import PROTOTYPE_AUS
from emocap.face_analysis import NoFaceFound, analyze_face
from emocap.face_analysis.action_units import AUS
from emocap.readers.ferplus import read_ferplus

ACTIVE = 0.2  # the caption builder's ACTIVE_AU_THRESHOLD
EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")


def _evenly(items: List, n: int) -> List:
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def ferplus_rates(root: str, split: str, per_class: int) -> Dict[str, dict]:
    """Per emotion: n, faces read, AU activity rates (all 16 AUs) on up to ``per_class`` faces."""
    samples, _ = read_ferplus(root, split)
    by_class: Dict[str, List] = {e: [] for e in EMOTIONS}
    for s in samples:
        if s.skip_reason or not s.distribution:
            continue
        label = max(s.distribution, key=s.distribution.get)
        if label in by_class:
            by_class[label].append(s)
    out = {}
    for emotion, group in by_class.items():
        active = []
        for s in _evenly(group, per_class):
            try:
                aus = analyze_face(s.read_bytes(), face_crop=True)["aus"]
            except (NoFaceFound, ValueError):
                continue
            active.append([aus[f"AU{au:02d}"] >= ACTIVE for au in AUS])
        a = np.asarray(active, dtype=float).reshape(-1, len(AUS))
        proto = [AUS.index(au) for au in PROTOTYPE_AUS[emotion]]
        out[emotion] = {
            "sampled": min(len(group), per_class), "read": len(active),
            "rates": {f"AU{au}": round(float(a[:, i].mean()) * 100, 1) if len(a) else None for i, au in enumerate(AUS)},
            "any_prototype": round(float(a[:, proto].any(axis=1).mean()) * 100, 1) if proto and len(a) else None,
        }
    return out


def video_agreement(path: str, max_frames: int) -> dict:
    """Frame-to-frame change and lag-1 correlation of the AU estimates of the (largest) face in a video."""
    import cv2

    cap = cv2.VideoCapture(path)
    rows, pts, frames, faceless = [], [], 0, 0
    started = time.time()
    while frames < max_frames:
        ok, bgr = cap.read()
        if not ok:
            break
        frames += 1
        try:
            d = analyze_face(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        except NoFaceFound:
            faceless += 1
            rows.append(None)
            pts.append(None)
            continue
        rows.append([d["aus"][f"AU{au:02d}"] for au in AUS])
        pts.append(np.asarray(d["landmarks"]))
    cap.release()
    pairs = [(rows[i], rows[i + 1], pts[i], pts[i + 1]) for i in range(len(rows) - 1)
             if rows[i] is not None and rows[i + 1] is not None]
    a = np.asarray([p[0] for p in pairs], dtype=float).reshape(-1, len(AUS))
    b = np.asarray([p[1] for p in pairs], dtype=float).reshape(-1, len(AUS))
    allv = np.asarray([r for r in rows if r is not None], dtype=float).reshape(-1, len(AUS))
    per_au = {}
    for i, au in enumerate(AUS):
        corr = float(np.corrcoef(a[:, i], b[:, i])[0, 1]) if len(a) > 2 and a[:, i].std() > 0 and b[:, i].std() > 0 else None
        per_au[f"AU{au}"] = {"mean": round(float(allv[:, i].mean()), 3), "sd": round(float(allv[:, i].std()), 3),
                             "mean_abs_change": round(float(np.abs(b[:, i] - a[:, i]).mean()), 3),
                             "lag1_corr": None if corr is None else round(corr, 2),
                             "flips": round(float(((a[:, i] >= ACTIVE) != (b[:, i] >= ACTIVE)).mean()) * 100, 1),
                             "active_share": round(float((allv[:, i] >= ACTIVE).mean()) * 100, 1)}
    jitter = []
    for _, _, p, q in pairs:
        iod = np.hypot(*(p[42:48].mean(axis=0) - p[36:42].mean(axis=0)))
        jitter.append(float(np.linalg.norm(q - p, axis=1).mean() / iod))
    return {"video": Path(path).name, "frames": frames, "frames_without_face": faceless, "pairs": len(pairs),
            "seconds": round(time.time() - started, 1),
            "mean_abs_change_all_aus": round(float(np.abs(b - a).mean()), 3) if len(a) else None,
            "landmark_jitter_iod": round(float(np.mean(jitter)), 4) if jitter else None, "per_au": per_au}


def markdown(fer: Dict[str, dict], videos: List[dict]) -> str:
    lines = ["| FER+ test emotion | faces | prototype AU: % active (neutral base rate %) | any prototype AU % |",
             "|---|---:|---|---:|"]
    neutral = fer.get("neutral", {}).get("rates", {})
    for emotion, r in fer.items():
        cells = ", ".join(f"AU{au} {r['rates'][f'AU{au}']} ({neutral.get(f'AU{au}')})" for au in PROTOTYPE_AUS[emotion])
        lines.append(f"| {emotion} | {r['read']} | {cells or '-'} | {r['any_prototype'] if r['any_prototype'] is not None else '-'} |")
    lines += ["", "| emotion | " + " | ".join(f"AU{au}" for au in AUS) + " |", "|---|" + "---:|" * len(AUS)]
    for emotion, r in fer.items():
        lines.append(f"| {emotion} | " + " | ".join(str(r["rates"][f"AU{au}"]) for au in AUS) + " |")
    for v in videos:
        lines += ["", f"**{v['video']}**: {v['frames']} frames, {v['frames_without_face']} without a face, "
                      f"{v['pairs']} consecutive pairs; mean |change| over all AUs {v['mean_abs_change_all_aus']}; "
                      f"landmark jitter {v['landmark_jitter_iod']} inter-ocular distances per frame; {v['seconds']} s",
                  "", "| AU | mean | sd over clip | mean abs change frame to frame | lag-1 correlation | % frames active "
                  "| % pairs where active/inactive flips |", "|---|---:|---:|---:|---:|---:|---:|"]
        for au, s in v["per_au"].items():
            lines.append(f"| {au} | {s['mean']} | {s['sd']} | {s['mean_abs_change']} | {s['lag1_corr']} | {s['active_share']} | {s['flips']} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ferplus", help="FER+ root (fer2013.csv + FERPlus labels)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--per-class", type=int, default=150)
    ap.add_argument("--video", action="append", default=[], help="a video with one face (repeatable)")
    ap.add_argument("--max-frames", type=int, default=240)
    ap.add_argument("--out", help="save the numbers as JSON here")
    args = ap.parse_args(argv)
    started = time.time()
    fer = ferplus_rates(args.ferplus, args.split, args.per_class) if args.ferplus else {}
    videos = [video_agreement(v, args.max_frames) for v in args.video]
    print(markdown(fer, videos))
    print(f"\n{time.time() - started:.0f} s")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"ferplus": fer, "videos": videos, "active_threshold": ACTIVE}, indent=1))


if __name__ == "__main__":
    main()
