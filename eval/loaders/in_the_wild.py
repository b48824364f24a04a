"""Loaders for the in-the-wild still-image FER benchmarks, each reading the dataset's official distribution layout.

Place in the flow: ``emocap.eval.registry`` names ``rafdb``, ``rafdb-compound``, ``affectnet7``, ``affectnet8``,
``fer2013``, ``sfew``, ``caer-s`` and ``expw`` with the loaders here; ``Benchmark.load`` imports and calls them and
hands the :class:`~emocap.eval.samples.BenchmarkData` to ``emocap.eval.zeroshot.evaluate``.

Every loader maps native label ids / folder names to class indices through a :class:`LabelMap` built from
``emocap/data/labels.json`` (native order, never sorted folder order), reports row-level problems (malformed
rows, unknown ids, images listed but missing) and skips them, and raises FileNotFoundError naming the expected
path when the root or the annotation file is wrong. Protocol details go into ``info``.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from emocap.images import IMAGE_EXTENSIONS, ImageLoadError, load_image

from ..label_maps import LabelMap, unknown_label
from ..samples import BenchmarkData, BenchmarkSample, Problem
from .common import class_folders, find_file, image_files, image_sample, option_bool, read_lines

__all__ = [
    "load_rafdb", "load_rafdb_compound", "load_affectnet7", "load_affectnet8", "load_fer2013", "load_sfew",
    "load_caer_s", "load_expw", "load_face_crop", "subfolder",
]

RAFDB = LabelMap.bundled("rafdb")
RAFDB_COMPOUND = LabelMap.bundled("rafdb-compound")
AFFECTNET8 = LabelMap.bundled("affectnet")
AFFECTNET7 = LabelMap.bundled("affectnet", first=7)
AFFECTNET_NON_EMOTION = {8: "None", 9: "Uncertain", 10: "No-Face"}
FER2013 = LabelMap.bundled("fer2013")
FER2013_FOLDERS = LabelMap.bundled("fer2013-folders")
FER2013_USAGE = {"train": "Training", "valid": "PublicTest", "test": "PrivateTest"}
SFEW = LabelMap.bundled("sfew")
CAER_S = LabelMap.bundled("caer-s")
EXPW = LabelMap.bundled("expw")
assert FER2013.classes == FER2013_FOLDERS.classes, "fer2013 csv ids and folder names must give the same classes"


def subfolder(parent: Path, name: str) -> Path:
    """``parent/name``, matching the name case-insensitively when that exact folder is absent (Val vs val)."""
    exact = parent / name
    if exact.is_dir() or not parent.is_dir():
        return exact
    for p in sorted(parent.iterdir()):
        if p.is_dir() and p.name.lower() == name.lower():
            return p
    return exact


def load_face_crop(path: Path, box: Tuple[int, int, int, int], source: str) -> Image.Image:
    """The face box ``(left, top, right, bottom)`` of the image at ``path`` (clipped to the image)."""
    im = load_image(path, source=source)
    w, h = im.size
    left, top, right, bottom = max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])
    if right <= left or bottom <= top:
        raise ImageLoadError(source, f"face box {tuple(box)} lies outside the {w}x{h} image")
    return im.crop((left, top, right, bottom))


def _classes(labels: LabelMap) -> List[str]:
    return list(labels.classes)


# ---------------------------------------------------------------------------------------------------- RAF-DB

def _rafdb(root: Path, split: Optional[str], aligned, bench: str, labels: LabelMap, sub: str) -> BenchmarkData:
    bases = [root, root / sub]
    label_file = find_file(bench, [b / "EmoLabel" / "list_patition_label.txt" for b in bases], "label file")
    base = label_file.parent.parent
    aligned = option_bool(aligned, "aligned")
    image_dir = base / "Image" / ("aligned" if aligned else "original")
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{bench}: image folder not found: expected {image_dir}")
    split = split or "test"
    samples: List[BenchmarkSample] = []
    problems: List[Problem] = []
    other_split = 0
    for lineno, line in read_lines(label_file):
        where = f"{label_file}:{lineno}"
        parts = line.split()
        if len(parts) != 2:
            problems.append((where, f"expected 'image_name label', found {line!r}"))
            continue
        name, value = parts
        prefix = name.split("_", 1)[0]
        if prefix not in ("train", "test"):
            problems.append((where, f"image name {name!r} does not start with train_ or test_"))
            continue
        if prefix != split:
            other_split += 1
            continue
        idx = labels.index(value)
        if idx is None:
            problems.append((where, unknown_label(labels, value)))
            continue
        stem, suffix = Path(name).stem, Path(name).suffix
        path = image_dir / (f"{stem}_aligned{suffix}" if aligned else name)
        if not path.is_file():
            problems.append((str(path), f"image listed in {where} not found"))
            continue
        samples.append(image_sample(path, idx))
    info = {"protocol": f"official {split} split (name prefix {split}_)", "label_file": str(label_file),
            "images": str(image_dir), "aligned": aligned, "n_kept": len(samples), "n_other_split": other_split}
    return BenchmarkData(samples, _classes(labels), problems, info)


def load_rafdb(root: Path, split: Optional[str], aligned=True) -> BenchmarkData:
    """RAF-DB basic: ``[basic/]EmoLabel/list_patition_label.txt`` (``test_0001.jpg 5``, ids 1-7 = surprise, fear,
    disgust, happiness, sadness, anger, neutral) + ``Image/aligned/test_0001_aligned.jpg`` (``aligned=False``:
    ``Image/original/test_0001.jpg``). The split is the ``train_`` / ``test_`` name prefix (test: 3,068)."""
    return _rafdb(root, split, aligned, "rafdb", RAFDB, "basic")


def load_rafdb_compound(root: Path, split: Optional[str], aligned=True) -> BenchmarkData:
    """RAF-DB compound: the same layout (``[compound/]EmoLabel/list_patition_label.txt``) with ids 1-11 =
    happily surprised ... disgustedly surprised; the compound names are the class names (test: 792)."""
    return _rafdb(root, split, aligned, "rafdb-compound", RAFDB_COMPOUND, "compound")


# -------------------------------------------------------------------------------------------------- AffectNet

_AFFECTNET_COLUMNS = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                      "facial_landmarks", "expression", "valence", "arousal"]


def _affectnet_csv(csv_path: Path, image_dir: Path, labels: LabelMap, crop: bool, bench: str):
    samples: List[BenchmarkSample] = []
    problems: List[Problem] = []
    excluded: Dict[str, int] = {}
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    columns = _AFFECTNET_COLUMNS
    start = 0
    if rows and "subDirectory_filePath" in [c.strip() for c in rows[0]]:
        columns, start = [c.strip() for c in rows[0]], 1
    if "expression" not in columns:
        raise ValueError(f"{bench}: {csv_path} has no 'expression' column (header: {', '.join(columns)})")
    col = {name: i for i, name in enumerate(columns)}
    for lineno, row in enumerate(rows[start:], start=start + 1):
        where = f"{csv_path}:{lineno}"
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) <= max(col["expression"], col["subDirectory_filePath"]):
            problems.append((where, f"expected {len(columns)} columns ({', '.join(columns)}), found {len(row)}"))
            continue
        value = row[col["expression"]].strip()
        try:
            expression = int(value)
        except ValueError:
            problems.append((where, unknown_label(labels, value)))
            continue
        idx, problem = _affectnet_index(expression, value, labels, excluded)
        if problem:
            problems.append((where, problem))
        if idx is None:
            continue
        path = image_dir / row[col["subDirectory_filePath"]].strip()
        if not path.is_file():
            problems.append((str(path), f"image listed in {where} not found"))
            continue
        if crop:
            try:
                x, y, w, h = (int(float(row[col[k]])) for k in ("face_x", "face_y", "face_width", "face_height"))
            except (KeyError, IndexError, ValueError):
                problems.append((where, "face box (face_x, face_y, face_width, face_height) missing or not numbers"))
                continue
            load = functools.partial(load_face_crop, path, (x, y, x + w, y + h), str(path))
            samples.append(BenchmarkSample(str(path), load, idx))
        else:
            samples.append(image_sample(path, idx))
    return samples, problems, excluded


def _affectnet_index(expression: int, value: str, labels: "LabelMap", excluded: Dict[str, int]):
    """(class index, None) for an AffectNet expression id; (None, None) when the protocol excludes it (counted in
    ``excluded``); (None, reason) for an unknown id."""
    if expression in AFFECTNET_NON_EMOTION:
        reason = f"{expression} {AFFECTNET_NON_EMOTION[expression]} (not an emotion)"
        excluded[reason] = excluded.get(reason, 0) + 1
        return None, None
    idx = labels.index(expression)
    if idx is None:
        if expression == 7 and len(labels.native) == 7:
            key = "7 Contempt (not in the 7 classes)"
            excluded[key] = excluded.get(key, 0) + 1
            return None, None
        return None, unknown_label(labels, value)
    return idx, None


def _affectnet_npy(set_dir: Path, labels: LabelMap):
    samples: List[BenchmarkSample] = []
    problems: List[Problem] = []
    excluded: Dict[str, int] = {}
    images = {p.stem: p for p in (set_dir / "images").glob("*") if p.suffix.lower() in IMAGE_EXTENSIONS}
    annotated = set()

    def order(p: Path):
        stem = p.name[: -len("_exp.npy")]
        return (0, int(stem), stem) if stem.isdigit() else (1, 0, stem)

    for ann in sorted((set_dir / "annotations").glob("*_exp.npy"), key=order):
        stem = ann.name[: -len("_exp.npy")]
        annotated.add(stem)
        try:
            value = str(np.load(ann, allow_pickle=False).reshape(-1)[0]).strip()
            expression = int(float(value))
        except Exception as e:  # unreadable array, empty, pickled object, not a number
            problems.append((str(ann), f"cannot read the expression id ({type(e).__name__}: {e})"))
            continue
        idx, problem = _affectnet_index(expression, value, labels, excluded)
        if problem:
            problems.append((str(ann), problem))
        if idx is None:
            continue
        if stem not in images:
            problems.append((str(set_dir / "images" / f"{stem}.jpg"), f"image for annotation {ann} not found"))
            continue
        samples.append(image_sample(images[stem], idx))
    for stem in sorted(set(images) - annotated):
        problems.append((str(images[stem]), f"no annotation {stem}_exp.npy; image ignored"))
    return samples, problems, excluded


def _affectnet(root: Path, split: Optional[str], crop, labels: LabelMap, bench: str) -> BenchmarkData:
    train = split == "train"
    csv_name = "training.csv" if train else "validation.csv"
    csv_candidates = [root / csv_name, root / "Manually_Annotated_file_lists" / csv_name]
    set_dir = root / ("train_set" if train else "val_set")
    crop = option_bool(crop, "crop")
    csv_path = next((c for c in csv_candidates if c.is_file()), None)
    if csv_path is not None:
        image_dir = find_file(bench, [root / "Manually_Annotated_Images",
                                      root / "Manually_Annotated" / "Manually_Annotated_Images"],
                              "image folder", folder=True)
        samples, problems, excluded = _affectnet_csv(csv_path, image_dir, labels, crop, bench)
        info = {"layout": "official csv", "annotation": str(csv_path), "images": str(image_dir), "crop": crop}
    elif (set_dir / "annotations").is_dir():
        if not (set_dir / "images").is_dir():
            raise FileNotFoundError(f"{bench}: image folder not found: expected {set_dir / 'images'}")
        samples, problems, excluded = _affectnet_npy(set_dir, labels)
        info = {"layout": "images + <n>_exp.npy", "annotation": str(set_dir / "annotations")}
    else:
        raise FileNotFoundError(f"{bench}: annotation not found: expected {csv_candidates[0]} (or "
                                f"{csv_candidates[1]}, or {set_dir / 'annotations'}/<n>_exp.npy)")
    info.update({"protocol": f"official {'training' if train else 'validation'} set"
                             + ("" if train else " used as test"),
                 "n_kept": len(samples), "n_excluded_by_protocol": sum(excluded.values()),
                 "excluded_by_protocol": excluded})
    return BenchmarkData(samples, _classes(labels), problems, info)


def load_affectnet8(root: Path, split: Optional[str], crop=False) -> BenchmarkData:
    """AffectNet, 8 classes (ids 0-7 = neutral, happiness, sadness, surprise, fear, disgust, anger, contempt).

    Reads ``validation.csv`` (or ``Manually_Annotated_file_lists/validation.csv``; with or without its header
    row) + ``Manually_Annotated_Images/<subDirectory_filePath>``, or the re-distribution ``val_set/images/<n>.jpg``
    + ``val_set/annotations/<n>_exp.npy``. Ids 8-10 (None, Uncertain, No-Face) are excluded by the protocol and
    counted in ``info``. ``crop=True`` crops the csv face box. The validation set (4,000) is the test set.
    """
    return _affectnet(root, split, crop, AFFECTNET8, "affectnet8")


def load_affectnet7(root: Path, split: Optional[str], crop=False) -> BenchmarkData:
    """AffectNet, 7 classes (ids 0-6; contempt, id 7, is excluded by the protocol): see :func:`load_affectnet8`."""
    return _affectnet(root, split, crop, AFFECTNET7, "affectnet7")


# --------------------------------------------------------------------------------------------------- FER2013

def _gray_image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(pixels, mode="L").convert("RGB")


def _fer2013_csv(csv_path: Path, split: str) -> Tuple[List[BenchmarkSample], List[Problem], Dict[str, object]]:
    usage = FER2013_USAGE[split]
    samples: List[BenchmarkSample] = []
    problems: List[Problem] = []
    other = 0
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"fer2013: {csv_path} lacks the column(s) {', '.join(sorted(missing))} "
                             f"(header: {', '.join(reader.fieldnames or [])}); expected emotion,pixels,Usage")
        for row in reader:
            where = f"{csv_path}:{reader.line_num}"
            if (row.get("Usage") or "").strip() != usage:
                if (row.get("Usage") or "").strip() not in FER2013_USAGE.values():
                    problems.append((where, f"Usage {row.get('Usage')!r} is not one of "
                                            f"{', '.join(FER2013_USAGE.values())}"))
                else:
                    other += 1
                continue
            idx = FER2013.index(row.get("emotion") or "")
            if idx is None:
                problems.append((where, unknown_label(FER2013, row.get("emotion"))))
                continue
            try:
                pixels = np.asarray((row.get("pixels") or "").split(), dtype=np.int64)
            except ValueError:
                problems.append((where, "pixels are not all integers"))
                continue
            if pixels.size != 48 * 48 or pixels.min() < 0 or pixels.max() > 255:
                problems.append((where, f"expected 2304 pixel values in 0-255 (48x48), found {pixels.size}"))
                continue
            image = pixels.astype(np.uint8).reshape(48, 48)
            samples.append(BenchmarkSample(where, functools.partial(_gray_image, image), idx))
    info = {"layout": "kaggle csv", "annotation": str(csv_path), "usage": usage, "n_other_usage": other}
    return samples, problems, info


def load_fer2013(root: Path, split: Optional[str]) -> BenchmarkData:
    """FER2013 (ids 0-6 = anger, disgust, fear, happiness, sadness, surprise, neutral), in either layout.

    The Kaggle ``fer2013.csv`` (columns emotion, pixels, Usage; ``test`` = PrivateTest 3,589, ``valid`` =
    PublicTest, ``train`` = Training; 48x48 gray images built in memory), else the image-folder layout
    ``<split>/<angry|disgust|fear|happy|sad|surprise|neutral>/*.png`` (whose ``test`` folder in the common Kaggle
    re-distribution is PublicTest + PrivateTest, 7,178 images: recorded in ``info``).
    """
    split = split or "test"
    csv_candidates = [root / "fer2013.csv", root / "fer2013" / "fer2013.csv"]
    csv_path = next((c for c in csv_candidates if c.is_file()), None)
    if csv_path is not None:
        samples, problems, info = _fer2013_csv(csv_path, split)
    else:
        base = subfolder(root, split)
        if not base.is_dir():
            raise FileNotFoundError(f"fer2013: neither {csv_candidates[0]} nor the image-folder layout "
                                    f"{base}/<{'|'.join(FER2013_FOLDERS.native)}>/ found")
        folders, problems = class_folders("fer2013", base, FER2013_FOLDERS)
        samples = [image_sample(f, idx) for folder, idx in folders for f in image_files(folder, problems)]
        info = {"layout": "image folders", "source": str(base),
                "note": "the folder layout's test/ is usually PublicTest + PrivateTest (7,178), not PrivateTest"}
    info.update({"protocol": f"{split} split", "n_kept": len(samples)})
    return BenchmarkData(samples, _classes(FER2013), problems, info)


# ----------------------------------------------------------------------------------------- class-folder sets

def _class_parent(base: Path, labels: LabelMap, depth: int = 3) -> Path:
    """``base`` if it holds class folders, else the descendant that does (aligned faces preferred)."""
    def holds_classes(p: Path) -> bool:
        return p.is_dir() and sum(labels.index(c.name) is not None for c in p.iterdir() if c.is_dir()) >= 2

    if holds_classes(base):
        return base
    frontier, found = [base], []
    for _ in range(depth):
        frontier = [c for p in frontier for c in sorted(p.iterdir()) if c.is_dir()]
        found.extend(p for p in frontier if holds_classes(p))
        if found:
            break
    if not found:
        return base
    return sorted(found, key=lambda p: ("aligned" not in str(p).lower(), str(p)))[0]


def _folder_benchmark(root: Path, split: str, bench: str, labels: LabelMap, dirs: Dict[str, str],
                      nested: bool = False) -> BenchmarkData:
    base = subfolder(root, dirs[split])
    if not base.is_dir():
        raise FileNotFoundError(f"{bench}: split folder not found: expected {base}/<{'|'.join(labels.native)}>/")
    if nested:
        base = _class_parent(base, labels)
    folders, problems = class_folders(bench, base, labels)
    samples = [image_sample(f, idx) for folder, idx in folders for f in image_files(folder, problems)]
    info = {"protocol": f"{dirs[split]}/ as the {split} split", "source": str(base), "n_kept": len(samples)}
    return BenchmarkData(samples, _classes(labels), problems, info)


def load_sfew(root: Path, split: Optional[str]) -> BenchmarkData:
    """SFEW 2.0: ``Val/<Angry|Disgust|Fear|Happy|Sad|Surprise|Neutral>/`` (test labels are not public, so Val,
    436 images, is the test set); class folders may sit deeper (``Val/Val_Aligned_Faces_new/...``, aligned
    preferred). ``split='train'`` reads ``Train/``."""
    return _folder_benchmark(root, split or "val", "sfew", SFEW, {"val": "Val", "train": "Train"}, nested=True)


def load_caer_s(root: Path, split: Optional[str]) -> BenchmarkData:
    """CAER-S: ``test/<Anger|Disgust|Fear|Happy|Neutral|Sad|Surprise>/*.png`` (``train/`` for ``split='train'``)."""
    return _folder_benchmark(root, split or "test", "caer-s", CAER_S, {"test": "test", "train": "train"})


# ------------------------------------------------------------------------------------------------------ ExpW

def _expw_split(root: Path, split: str) -> Tuple[Path, set]:
    path = Path(split).expanduser()
    candidates = [path] if path.is_absolute() else [root / path, path]
    split_file = find_file("expw", candidates, "split file (one image name, optionally a face id, per line)")
    keys = set()
    for _, line in read_lines(split_file):
        parts = line.split()
        keys.add(parts[0] if len(parts) == 1 else (parts[0], parts[1]))
    return split_file, keys


def load_expw(root: Path, split: Optional[str]) -> BenchmarkData:
    """ExpW: ``label/label.lst`` rows ``image_name face_id top left right bottom confidence expression`` (ids
    0-6 = anger, disgust, fear, happiness, sadness, surprise, neutral) + ``image/origin/<image_name>``; each
    sample is the face box crop. No official split: ``all`` (default) uses every face; any other split is a file
    (relative to the root or the working directory) listing image names, optionally with face ids."""
    label_file = find_file("expw", [root / "label" / "label.lst", root / "label.lst"], "label file")
    image_dir = find_file("expw", [root / "image" / "origin", root / "origin"], "image folder", folder=True)
    split_file, keys = (None, None) if split in (None, "all") else _expw_split(root, split)
    samples: List[BenchmarkSample] = []
    problems: List[Problem] = []
    not_in_split = 0
    seen_missing = set()
    for lineno, line in read_lines(label_file):
        where = f"{label_file}:{lineno}"
        parts = line.split()
        if len(parts) != 8:
            problems.append((where, "expected 8 fields (image_name face_id top left right bottom confidence "
                                    f"expression), found {len(parts)}"))
            continue
        name, face = parts[0], parts[1]
        if keys is not None and name not in keys and (name, face) not in keys:
            not_in_split += 1
            continue
        try:
            top, left, right, bottom = (int(float(x)) for x in parts[2:6])
        except ValueError:
            problems.append((where, f"face box {parts[2:6]} is not numbers"))
            continue
        if right <= left or bottom <= top:
            problems.append((where, f"empty face box (top {top}, left {left}, right {right}, bottom {bottom})"))
            continue
        idx = EXPW.index(parts[7])
        if idx is None:
            problems.append((where, unknown_label(EXPW, parts[7])))
            continue
        path = image_dir / name
        if not path.is_file():
            if name not in seen_missing:
                problems.append((str(path), f"image listed in {where} not found"))
                seen_missing.add(name)
            continue
        source = f"{path}#face{face}"
        crop = functools.partial(load_face_crop, path, (left, top, right, bottom), source)
        samples.append(BenchmarkSample(source, crop, idx))
    info = {"protocol": "all faces (no official split)" if split_file is None else f"faces listed in {split_file}",
            "annotation": str(label_file), "images": str(image_dir), "n_kept": len(samples),
            "n_not_in_split": not_in_split}
    return BenchmarkData(samples, _classes(EXPW), problems, info)

