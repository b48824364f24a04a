"""Loaders for the posed (lab) FER benchmarks CK+, JAFFE and KDEF, plus subject-disjoint folds.

Place in the flow: ``emocap.eval.registry`` names ``ckplus``, ``jaffe`` and ``kdef`` with the loaders here;
``Benchmark.load`` imports and calls them and ``emocap.eval.zeroshot.evaluate`` scores the
result. These sets have no official split: zero-shot uses all images, and :func:`subject_folds` makes the
k subject-disjoint folds (10 by default) that the common cross-validation protocol uses, from the ``subject``
each sample records. Native codes are mapped through ``emocap/data/labels.json``; bad files are reported as
problems, a wrong root raises FileNotFoundError naming the expected layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from emocap.images import IMAGE_EXTENSIONS

from ..label_maps import LabelMap, unknown_label
from ..samples import BenchmarkData, BenchmarkSample, Problem
from .common import find_file, image_sample, option_int

__all__ = ["load_ckplus", "load_jaffe", "load_kdef", "subject_folds", "KDEF_ANGLES"]

CKPLUS = LabelMap.bundled("ckplus")
JAFFE = LabelMap.bundled("jaffe")
KDEF = LabelMap.bundled("kdef")
KDEF_ANGLES = ("FL", "HL", "S", "HR", "FR")
CKPLUS_FOLDS = 10


def subject_folds(samples: Union[BenchmarkData, Sequence[BenchmarkSample]], k: int = 10) -> List[List[int]]:
    """``k`` subject-disjoint folds: for each fold, the indices of its test samples (train = all the others).

    Subjects are assigned greedily, largest first, to the fold with the fewest samples so far (ties: the lower
    fold, then the subject id), so the folds are deterministic and about equal in size. Raises ValueError when a
    sample has no subject or there are fewer subjects than folds.
    """
    samples = samples.samples if isinstance(samples, BenchmarkData) else list(samples)
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    by_subject: Dict[str, List[int]] = {}
    for i, s in enumerate(samples):
        if s.subject is None:
            raise ValueError(f"sample {s.source} has no subject id; subject folds need one for every sample")
        by_subject.setdefault(s.subject, []).append(i)
    if len(by_subject) < k:
        raise ValueError(f"{len(by_subject)} subjects cannot fill {k} subject-disjoint folds")
    folds: List[List[int]] = [[] for _ in range(k)]
    for subject in sorted(by_subject, key=lambda s: (-len(by_subject[s]), s)):
        target = min(range(k), key=lambda f: (len(folds[f]), f))
        folds[target].extend(by_subject[subject])
    return [sorted(f) for f in folds]


def _select(split: Optional[str], samples: List[BenchmarkSample], folds: int):
    """All samples, or the test samples of fold ``foldN`` of the subject-disjoint folds."""
    if split in (None, "all"):
        return samples, "all images (no official split)"
    n = int(split[len("fold"):])
    keep = subject_folds(samples, folds)[n - 1]
    return [samples[i] for i in keep], f"test part of subject-disjoint fold {n} of {folds}"


# ------------------------------------------------------------------------------------------------------- CK+

def load_ckplus(root: Path, split: Optional[str], last_frames=3) -> BenchmarkData:
    """CK+: ``cohn-kanade-images/Sxxx/yyy/*.png`` + ``Emotion/Sxxx/yyy/Sxxx_yyy_<frame>_emotion.txt`` (ids 1-7 =
    anger, contempt, disgust, fear, happiness, sadness, surprise).

    Each labelled sequence gives its last ``last_frames`` frames (3: the 981-image protocol); samples record the
    subject (``S005``). Split ``all`` (default) or ``fold1``..``fold10``: the test part of that subject-disjoint
    fold (:func:`subject_folds`).
    """
    last_frames = option_int(last_frames, "last_frames")
    images_dir = find_file("ckplus", [root / "cohn-kanade-images", root / "CK+" / "cohn-kanade-images",
                                      root / "extended-cohn-kanade-images" / "cohn-kanade-images"],
                           "image folder", folder=True)
    emotion_dir = find_file("ckplus", [images_dir.parent / "Emotion", root / "Emotion",
                                       root / "Emotion_labels" / "Emotion"], "Emotion label folder", folder=True)
    samples: List[BenchmarkSample] = []
    problems: List[Problem] = []
    labelled = 0
    for seq_labels in sorted(p for p in emotion_dir.glob("*/*") if p.is_dir()):
        files = sorted(seq_labels.glob("*_emotion.txt"))
        if not files:
            continue  # unlabelled sequence: normal in CK+ (327 of 593 are labelled)
        if len(files) > 1:
            problems.append((str(seq_labels), f"{len(files)} emotion files for one sequence; sequence skipped"))
            continue
        label_file = files[0]
        tokens = label_file.read_text(encoding="utf-8", errors="replace").split()
        if len(tokens) != 1:
            problems.append((str(label_file), f"expected one emotion id, found {tokens[:5]}"))
            continue
        idx = CKPLUS.index(tokens[0])
        if idx is None:
            problems.append((str(label_file), unknown_label(CKPLUS, tokens[0])))
            continue
        subject, sequence = seq_labels.parent.name, seq_labels.name
        seq_dir = images_dir / subject / sequence
        frames = sorted(p for p in seq_dir.glob("*") if p.suffix.lower() in IMAGE_EXTENSIONS) \
            if seq_dir.is_dir() else []
        if not frames:
            problems.append((str(seq_dir), f"image sequence for {label_file} not found or empty"))
            continue
        labelled += 1
        samples.extend(image_sample(f, idx, subject=subject) for f in frames[-last_frames:])
    if not samples and not problems:
        raise FileNotFoundError(f"ckplus: no labelled sequence: expected {emotion_dir}/Sxxx/yyy/*_emotion.txt")
    samples, protocol = _select(split, samples, CKPLUS_FOLDS)
    info = {"protocol": protocol, "frames_per_sequence": last_frames, "n_labelled_sequences": labelled,
            "n_subjects": len({s.subject for s in samples}), "images": str(images_dir),
            "annotation": str(emotion_dir)}
    return BenchmarkData(samples, list(CKPLUS.classes), problems, info)


# ----------------------------------------------------------------------------------------------------- JAFFE

def load_jaffe(root: Path, split: Optional[str]) -> BenchmarkData:
    """JAFFE: ``*.tiff`` named ``KA.AN1.39.tiff`` (subject ``KA``, code ``AN`` in AN DI FE HA NE SA SU), anywhere
    under the root. All 213 images are the test set (no official split); samples record the subject."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".tiff", ".tif"))
    if not files:
        raise FileNotFoundError(f"jaffe: no .tiff images under {root} (expected files like {root}/KA.AN1.39.tiff)")
    samples: List[BenchmarkSample] = []
    problems: List[Problem] = []
    for f in files:
        parts = f.name.split(".")
        if len(parts) < 3 or len(parts[1]) < 2:
            problems.append((str(f), "name is not SUBJECT.CODE<n>.<id>.tiff (e.g. KA.AN1.39.tiff)"))
            continue
        code = parts[1][:2].upper()
        idx = JAFFE.index(code)
        if idx is None:
            problems.append((str(f), unknown_label(JAFFE, code)))
            continue
        samples.append(image_sample(f, idx, subject=parts[0]))
    info = {"protocol": "all images (no official split)", "source": str(root),
            "n_subjects": len({s.subject for s in samples})}
    return BenchmarkData(samples, list(JAFFE.classes), problems, info)


# ------------------------------------------------------------------------------------------------------ KDEF

def _angles(value) -> tuple:
    if isinstance(value, str):
        value = KDEF_ANGLES if value.strip().lower() == "all" else [v for v in value.replace(",", " ").split()]
    angles = tuple(str(v).strip().upper() for v in value)
    bad = [a for a in angles if a not in KDEF_ANGLES]
    if bad or not angles:
        raise ValueError(f"option angles must be 'all' or some of {', '.join(KDEF_ANGLES)}; got {value!r}")
    return angles


def load_kdef(root: Path, split: Optional[str], angles="S") -> BenchmarkData:
    """KDEF: ``KDEF/AF01/AF01AFS.JPG``: session (A/B), gender, id, then the emotion code (stem chars 5-6: AF AN DI
    HA NE SA SU) and the angle (chars 7-8: FL HL S HR FR). Frontal only (``S``, 980 images) by default;
    ``angles='all'`` or e.g. ``'S,HL,HR'`` for others. Samples record the subject (``F01``)."""
    angles = _angles(angles)
    base = root / "KDEF" if (root / "KDEF").is_dir() else root
    files = sorted(p for p in base.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        raise FileNotFoundError(f"kdef: no images under {base} (expected {root}/KDEF/AF01/AF01AFS.JPG)")
    samples: List[BenchmarkSample] = []
    problems: List[Problem] = []
    other_angle = 0
    for f in files:
        stem = f.stem.upper()
        session, gender, number, code, angle = stem[:1], stem[1:2], stem[2:4], stem[4:6], stem[6:]
        if session not in ("A", "B") or gender not in ("F", "M") or not number.isdigit() or angle not in KDEF_ANGLES:
            problems.append((str(f), "name is not <A|B><F|M><nn><emotion><angle>.JPG (e.g. AF01AFS.JPG)"))
            continue
        idx = KDEF.index(code)
        if idx is None:
            problems.append((str(f), unknown_label(KDEF, code)))
            continue
        if angle not in angles:
            other_angle += 1
            continue
        samples.append(image_sample(f, idx, subject=gender + number))
    info = {"protocol": "all images (no official split)", "angles": list(angles), "n_other_angles": other_angle,
            "source": str(base), "n_subjects": len({s.subject for s in samples})}
    return BenchmarkData(samples, list(KDEF.classes), problems, info)

