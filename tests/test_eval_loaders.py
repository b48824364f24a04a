"""Benchmark loaders on tiny fixtures written in each dataset's official layout (images made with PIL / OpenCV).

Each registry entry gets: its fixed class list (native order), the native-id -> class mapping, split selection,
the problems reported for broken rows / missing files, and the FileNotFoundError for a wrong root. Video sets
are checked with frame folders and with a tiny MJPG .avi, and end to end through ``evaluate`` (mean pooling).
"""

import csv
import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from emocap import taxonomy
from emocap.eval.loaders.posed import subject_folds
from emocap.eval.registry import BENCHMARKS, get_benchmark
from emocap.eval.samples import ClipFrames, load_clips, load_samples, pool_frame_probs
from emocap.readers.frames import uniform_indices
from emocap.eval.zeroshot import evaluate
from emocap.ferplus import EMOTIONS

RED, BLUE = (220, 10, 10), (10, 10, 220)
COVERED = {  # registry names with a loader test in this file (ferplus, imagefolder: test_eval_benchmarks.py)
    "rafdb", "rafdb-compound", "affectnet7", "affectnet8", "ferplus-soft", "fer2013", "sfew", "caer-s", "expw",
    "ckplus", "jaffe", "kdef", "dfew", "ferv39k", "mafw", "afew", "csv", "webdataset", "hf",
}


def _img(path, value=128, size=8, colour=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    if colour is not None:
        Image.new("RGB", (size, size), colour).save(path)
    else:
        Image.fromarray(np.full((size, size), value, dtype=np.uint8), mode="L").save(path)
    return path


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _load(name, root, split=None, **options):
    assert name in COVERED
    return get_benchmark(name).load(root, split, **options)


def _labels(data, key=lambda s: s.source.rsplit("/", 1)[-1]):
    """{source name: class name}."""
    return {key(s): data.classes[s.label] for s in data.samples}


def _problem(data, source_part, reason_part):
    hits = [(s, r) for s, r in data.problems if source_part in s and reason_part in r]
    assert hits, f"no problem with {source_part!r} / {reason_part!r} in {data.problems}"


def _wrong_root(name, tmp_path, expected_part, **options):
    wrong = tmp_path / "not_the_dataset"
    wrong.mkdir(exist_ok=True)
    with pytest.raises(FileNotFoundError, match=expected_part):
        get_benchmark(name).load(wrong, **options)


# ---------------------------------------------------------------------------------------------------- RAF-DB

def _rafdb(root, sub, lines, images):
    base = root / sub
    _write(base / "EmoLabel" / "list_patition_label.txt", "\n".join(lines) + "\n")
    for name in images:
        stem = name.rsplit(".", 1)[0]
        _img(base / "Image" / "aligned" / f"{stem}_aligned.jpg", 100)
        _img(base / "Image" / "original" / name, 120)
    return root


def test_rafdb_ids_split_and_problems(tmp_path):
    root = _rafdb(tmp_path / "raf", "basic", [
        "train_00001.jpg 1", "test_0001.jpg 4", "test_0002.jpg 7", "test_0003.jpg 9", "test_0004.jpg",
        "test_0005.jpg 2", "valid_0001.jpg 1",
    ], ["train_00001.jpg", "test_0001.jpg", "test_0002.jpg", "test_0003.jpg"])
    data = _load("rafdb", root)
    assert data.classes == ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
    assert _labels(data) == {"test_0001_aligned.jpg": "happiness", "test_0002_aligned.jpg": "neutral"}
    assert data.samples[0].label == 3  # native id 4 -> index 3 (happiness)
    _problem(data, "list_patition_label.txt:4", "unknown label '9'")
    _problem(data, "list_patition_label.txt:5", "expected 'image_name label'")
    _problem(data, "test_0005_aligned.jpg", "not found")
    _problem(data, "list_patition_label.txt:7", "train_ or test_")
    assert data.info["n_kept"] == 2 and data.info["n_other_split"] == 1
    images, labels, _, problems = load_samples(data.samples)
    assert len(images) == 2 and images[0].mode == "RGB" and not problems
    train = _load("rafdb", root / "basic", "train", aligned="false")  # root may be basic/ itself
    assert _labels(train) == {"train_00001.jpg": "surprise"} and train.info["aligned"] is False
    _wrong_root("rafdb", tmp_path, "EmoLabel/list_patition_label.txt")


def test_rafdb_compound_keeps_compound_names(tmp_path):
    root = _rafdb(tmp_path / "raf", "compound", ["test_0001.jpg 1", "test_0002.jpg 11", "test_0003.jpg 12"],
                  ["test_0001.jpg", "test_0002.jpg", "test_0003.jpg"])
    data = _load("rafdb-compound", root)
    assert len(data.classes) == 11 and data.classes[0] == "happily surprised"
    assert _labels(data) == {"test_0001_aligned.jpg": "happily surprised",
                             "test_0002_aligned.jpg": "disgustedly surprised"}
    assert all(taxonomy.canonical_or_none(c) is None for c in data.classes)
    _problem(data, "list_patition_label.txt:3", "unknown label '12'")
    _wrong_root("rafdb-compound", tmp_path, "list_patition_label.txt")


# -------------------------------------------------------------------------------------------------- AffectNet

def _affectnet_csv(root):
    rows = [
        "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal",
        "1/a.jpg,2,2,10,12,,1,0.5,0.2",     # happiness
        "1/b.jpg,0,0,8,8,,7,0.1,0.1",       # contempt: kept in 8, excluded in 7
        "1/c.jpg,0,0,8,8,,9,0,0",           # Uncertain: excluded
        "1/d.jpg,0,0,8,8,,abc,0,0",         # malformed id
        "1/missing.jpg,0,0,8,8,,2,0,0",     # image missing
        "1/e.jpg,0,0",                      # short row
    ]
    _write(root / "Manually_Annotated_file_lists" / "validation.csv", "\n".join(rows) + "\n")
    for name in "abcde":
        _img(root / "Manually_Annotated_Images" / "1" / f"{name}.jpg", 90, size=16)
    return root


def test_affectnet_csv_layout_7_and_8(tmp_path):
    root = _affectnet_csv(tmp_path / "affectnet")
    d8 = _load("affectnet8", root)
    assert d8.classes == ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt"]
    assert _labels(d8) == {"a.jpg": "happiness", "b.jpg": "contempt"}
    assert d8.info["excluded_by_protocol"] == {"9 Uncertain (not an emotion)": 1}
    _problem(d8, "validation.csv:5", "unknown label 'abc'")
    _problem(d8, "missing.jpg", "not found")
    _problem(d8, "validation.csv:7", "expected 9 columns")
    d7 = _load("affectnet7", root, "test", crop=True)
    assert d7.classes == d8.classes[:7] and _labels(d7) == {"a.jpg": "happiness"}
    assert d7.info["n_excluded_by_protocol"] == 2
    assert d7.samples[0].load().size == (10, 12)  # crop of the csv face box
    _wrong_root("affectnet8", tmp_path, "validation.csv")


def test_affectnet_npy_layout(tmp_path):
    base = tmp_path / "an" / "val_set"
    for n in (0, 1, 2, 4):
        _img(base / "images" / f"{n}.jpg", 50 + n)
    (base / "annotations").mkdir(parents=True)
    np.save(base / "annotations" / "0_exp.npy", np.array("3"))   # string id, as in the re-distribution
    np.save(base / "annotations" / "1_exp.npy", np.array(6))     # int id
    np.save(base / "annotations" / "3_exp.npy", np.array("0"))   # no image 3.jpg
    np.save(base / "annotations" / "4_exp.npy", np.array("10"))  # No-Face: excluded
    (base / "annotations" / "5_exp.npy").write_bytes(b"garbage")
    data = _load("affectnet7", tmp_path / "an")
    assert _labels(data) == {"0.jpg": "surprise", "1.jpg": "anger"}
    assert data.info["excluded_by_protocol"] == {"10 No-Face (not an emotion)": 1}
    _problem(data, "3.jpg", "not found")
    _problem(data, "2.jpg", "no annotation 2_exp.npy")
    _problem(data, "5_exp.npy", "cannot read the expression id")


# ------------------------------------------------------------------------------------------- FER+ soft votes

def test_ferplus_soft_keeps_every_image_with_an_emotion_vote(tmp_path, ferplus_writer, ferplus_rows):
    ferplus_writer(rows=ferplus_rows + ["fer0000009.png,(0,0,48,48),1,2"])
    soft = _load("ferplus-soft", tmp_path)
    hard = get_benchmark("ferplus").load(tmp_path)
    assert soft.classes == list(EMOTIONS)
    assert len(hard.samples) == 3 and len(soft.samples) == 4  # the unknown/NF-only image is the one left out
    by_name = {s.source.rsplit("/", 1)[-1]: s for s in soft.samples}
    first = by_name["fer0000000.png"]  # no majority, but it has votes: argmax neutral (4 of 10)
    assert soft.classes[first.label] == "neutral"
    assert first.soft_label == pytest.approx((0.4, 0, 0, 0.1, 0.3, 0.2, 0, 0))
    assert soft.classes[by_name["fer0000004.png"].label] == "contempt"
    assert all(abs(sum(s.soft_label) - 1) < 1e-9 for s in soft.samples)
    assert soft.info["n_excluded_by_protocol"] == 1
    _problem(soft, "label.csv:6", "expected 12 fields")
    assert all(s.soft_label is None for s in hard.samples)


# --------------------------------------------------------------------------------------------------- FER2013

def test_fer2013_kaggle_csv(tmp_path):
    px = " ".join(["7"] * 2304)
    rows = [["emotion", "pixels", "Usage"], ["3", px, "PrivateTest"], ["0", px, "PublicTest"],
            ["6", px, "Training"], ["4", "1 2 3", "PrivateTest"], ["9", px, "PrivateTest"], ["5", px, "Oops"]]
    path = tmp_path / "fer" / "fer2013.csv"
    path.parent.mkdir()
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    data = _load("fer2013", tmp_path / "fer")
    assert data.classes == ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
    assert [data.classes[s.label] for s in data.samples] == ["happiness"]
    im = data.samples[0].load()
    assert im.size == (48, 48) and im.mode == "RGB" and im.getpixel((0, 0)) == (7, 7, 7)
    _problem(data, "fer2013.csv:5", "expected 2304 pixel values")
    _problem(data, "fer2013.csv:6", "unknown label '9'")
    _problem(data, "fer2013.csv:7", "Usage 'Oops'")
    assert [data.classes[s.label] for s in _load("fer2013", tmp_path / "fer", "valid").samples] == ["anger"]
    assert [data.classes[s.label] for s in _load("fer2013", tmp_path / "fer", "train").samples] == ["neutral"]
    _wrong_root("fer2013", tmp_path, "fer2013.csv")


def test_fer2013_image_folders_use_native_order(tmp_path):
    root = tmp_path / "fer"
    _img(root / "test" / "happy" / "a.png")
    _img(root / "test" / "neutral" / "b.png")
    _img(root / "test" / "bored" / "c.png")
    _write(root / "test" / "happy" / "notes.txt", "x")
    data = _load("fer2013", root)
    assert _labels(data) == {"a.png": "happiness", "b.png": "neutral"}
    assert {s.source.rsplit("/", 1)[-1]: s.label for s in data.samples} == {"a.png": 3, "b.png": 6}  # not sorted
    _problem(data, "bored", "not a class folder")
    _problem(data, "notes.txt", "not an image")
    _problem(data, "test/sad", "class folder missing")


# ------------------------------------------------------------------------------------- SFEW, CAER-S (folders)

def test_sfew_val_folders_nested(tmp_path):
    base = tmp_path / "sfew" / "Val" / "Val_Aligned_Faces_new" / "Val_Aligned_Faces"
    _img(base / "Happy" / "1.png")
    _img(base / "Neutral" / "2.png")
    _img(base / "Sad" / "3.png")
    data = _load("sfew", tmp_path / "sfew")
    assert data.classes == ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
    assert _labels(data) == {"1.png": "happiness", "2.png": "neutral", "3.png": "sadness"}
    assert [s.label for s in data.samples] == [3, 4, 6]  # native order: ..., Happy, Sad, Surprise, Neutral
    assert "Aligned" in data.info["source"]
    _problem(data, "Angry", "class folder missing")
    with pytest.raises(FileNotFoundError, match="Train"):
        _load("sfew", tmp_path / "sfew", "train")
    _wrong_root("sfew", tmp_path, "Val")


def test_caer_s_test_folders(tmp_path):
    root = tmp_path / "caer"
    _img(root / "test" / "Neutral" / "0001.png")
    _img(root / "test" / "Anger" / "0002.png")
    _img(root / "train" / "Fear" / "0003.png")
    (root / "test" / "Sad").mkdir()
    data = _load("caer-s", root)
    assert data.classes == ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
    assert {s.source.rsplit("/", 1)[-1]: s.label for s in data.samples} == {"0002.png": 0, "0001.png": 4}
    _problem(data, "Disgust", "class folder missing")
    assert _labels(_load("caer-s", root, "train")) == {"0003.png": "fear"}
    _wrong_root("caer-s", tmp_path, "test")


# ------------------------------------------------------------------------------------------------------ ExpW

def test_expw_face_crops_and_split_file(tmp_path):
    root = tmp_path / "expw"
    _img(root / "image" / "origin" / "a.jpg", size=40)
    _img(root / "image" / "origin" / "c.jpg", size=40)
    _write(root / "label" / "label.lst", "\n".join([
        "a.jpg 0 5 6 30 25 80.5 3",    # happiness, box top 5 left 6 right 30 bottom 25
        "a.jpg 1 0 0 10 10 50.0 6",    # neutral, second face of the same image
        "c.jpg 0 0 0 10 10 50.0 8",    # unknown id
        "b.jpg 0 0 0 10 10 50.0 1",    # image missing
        "c.jpg 1 0 0 10",              # malformed
        "c.jpg 2 10 10 5 20 50.0 2",   # empty box
    ]) + "\n")
    data = _load("expw", root)
    assert data.classes == ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
    assert _labels(data) == {"a.jpg#face0": "happiness", "a.jpg#face1": "neutral"}
    assert data.samples[0].load().size == (24, 20)
    _problem(data, "label.lst:3", "unknown label '8'")
    _problem(data, "b.jpg", "not found")
    _problem(data, "label.lst:5", "expected 8 fields")
    _problem(data, "label.lst:6", "empty face box")
    _write(root / "my_split.txt", "a.jpg 1\n")
    part = _load("expw", root, "my_split.txt")
    assert _labels(part) == {"a.jpg#face1": "neutral"} and part.info["n_not_in_split"] == 4
    with pytest.raises(FileNotFoundError, match="no_such_split.txt"):
        _load("expw", root, "no_such_split.txt")
    _wrong_root("expw", tmp_path, "label.lst")


# ------------------------------------------------------------------------------------------- CK+, JAFFE, KDEF

def _ck_sequence(root, subject, seq, n_frames, emotion=None):
    for i in range(1, n_frames + 1):
        _img(root / "cohn-kanade-images" / subject / seq / f"{subject}_{seq}_{i:08d}.png", 10 * i)
    if emotion is not None:
        _write(root / "Emotion" / subject / seq / f"{subject}_{seq}_{n_frames:08d}_emotion.txt", emotion)


def test_ckplus_last_three_frames_subjects_and_folds(tmp_path):
    root = tmp_path / "ck"
    _ck_sequence(root, "S005", "001", 5, "   3.0000000e+00\n")   # disgust
    _ck_sequence(root, "S005", "002", 4)                         # unlabelled: ignored
    _ck_sequence(root, "S010", "002", 2, "5.0\n")                # happiness, only 2 frames
    _ck_sequence(root, "S011", "001", 4, "2\n")                  # contempt
    _ck_sequence(root, "S012", "001", 3, "0\n")                  # neutral id 0: not a class
    _write(root / "Emotion" / "S013" / "001" / "S013_001_00000009_emotion.txt", "7\n")  # no images
    data = _load("ckplus", root)
    assert data.classes == ["anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"]
    names = _labels(data)
    assert names == {"S005_001_00000003.png": "disgust", "S005_001_00000004.png": "disgust",
                     "S005_001_00000005.png": "disgust", "S010_002_00000001.png": "happiness",
                     "S010_002_00000002.png": "happiness", "S011_001_00000002.png": "contempt",
                     "S011_001_00000003.png": "contempt", "S011_001_00000004.png": "contempt"}
    assert {s.subject for s in data.samples} == {"S005", "S010", "S011"}
    _problem(data, "S012_001_00000003_emotion.txt", "unknown label '0'")
    _problem(data, "cohn-kanade-images/S013/001", "not found or empty")
    folds = subject_folds(data, k=3)
    assert sorted(i for f in folds for i in f) == list(range(len(data.samples)))
    for f in folds:  # each subject lies in exactly one fold
        assert len({data.samples[i].subject for i in f}) == 1
    with pytest.raises(ValueError, match="3 subjects cannot fill 10"):
        _load("ckplus", root, "fold1")
    assert len(_load("ckplus", root, last_frames=1).samples) == 3
    _wrong_root("ckplus", tmp_path, "cohn-kanade-images")


def test_jaffe_codes_in_file_names(tmp_path):
    root = tmp_path / "jaffe"
    for name in ("KA.AN1.39.tiff", "KM.HA2.5.tiff", "YM.NE1.10.tiff", "KA.XX1.2.tiff", "weird.tiff"):
        _img(root / "jaffe" / name)
    data = _load("jaffe", root)
    assert data.classes == ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
    assert _labels(data) == {"KA.AN1.39.tiff": "anger", "KM.HA2.5.tiff": "happiness", "YM.NE1.10.tiff": "neutral"}
    assert [s.subject for s in data.samples] == ["KA", "KM", "YM"]
    _problem(data, "KA.XX1.2.tiff", "unknown label 'XX'")
    _problem(data, "weird.tiff", "SUBJECT.CODE")
    _wrong_root("jaffe", tmp_path, ".tiff")


def test_kdef_frontal_default_and_angles(tmp_path):
    root = tmp_path / "kdef"
    for name in ("AF01/AF01AFS.JPG", "AF01/AF01HAHL.JPG", "AM02/AM02NES.JPG", "BM02/BM02SUFR.JPG",
                 "AF01/AF01XXS.JPG", "AF01/ZZZ.JPG"):
        _img(root / "KDEF" / name)
    data = _load("kdef", root)
    assert data.classes == ["fear", "anger", "disgust", "happiness", "neutral", "sadness", "surprise"]
    assert _labels(data) == {"AF01AFS.JPG": "fear", "AM02NES.JPG": "neutral"}
    assert {s.subject for s in data.samples} == {"F01", "M02"} and data.info["n_other_angles"] == 2
    _problem(data, "AF01XXS.JPG", "unknown label 'XX'")
    _problem(data, "ZZZ.JPG", "name is not")
    assert len(_load("kdef", root, angles="all").samples) == 4
    assert _labels(_load("kdef", root, angles="HL,FR")) == {"AF01HAHL.JPG": "happiness", "BM02SUFR.JPG": "surprise"}
    with pytest.raises(ValueError, match="angles"):
        _load("kdef", root, angles="up")
    _wrong_root("kdef", tmp_path, "AF01AFS.JPG")


# ------------------------------------------------------------------------------------------------------ video

class PoolingFake:
    """A classifier deciding per frame by colour (red -> happiness, blue -> sadness); records call sizes."""

    def __init__(self, labels):
        self.labels = list(labels)
        self.model_id = "fake"
        self.prompt_set = None
        self.calls = []

    def predict_proba(self, images, batch_size=64):
        self.calls.append(len(images))
        probs = np.full((len(images), len(self.labels)), 0.0)
        for i, im in enumerate(images):
            r, g, b = np.asarray(im, dtype=np.float64).reshape(-1, 3).mean(axis=0)
            name = "happiness" if r > b else "sadness"
            probs[i, self.labels.index(name)] = 1.0
        return probs


def _frames(folder, colours):
    for i, c in enumerate(colours, start=1):
        _img(folder / f"{i}.jpg", colour=c)


def test_uniform_sampling_and_pooling_helpers():
    assert uniform_indices(10, 4) == [1, 3, 6, 8]
    assert uniform_indices(3, 8) == [0, 1, 2] and uniform_indices(0, 8) == []
    pooled = pool_frame_probs(np.array([[1, 0], [0, 1], [1, 0], [0.2, 0.8]]), [3, 1])
    assert pooled == pytest.approx(np.array([[2 / 3, 1 / 3], [0.2, 0.8]]))
    with pytest.raises(ValueError):
        pool_frame_probs(np.zeros((3, 2)), [2, 2])


@pytest.fixture
def dfew_root(tmp_path):
    root = tmp_path / "dfew"
    ann = root / "EmoLabel_DataSplit" / "test(single-labeled)"
    _write(ann / "set_1.csv", "video_name,label\n1,1\n2,2\n3,9\n4,2\n5\n")
    _write(ann / "set_2.csv", "video_name,label\n6,7\n")
    clips = root / "Clip" / "clip_224x224"
    _frames(clips / "00001", [RED] * 8 + [BLUE] * 2)   # 10 frames, mostly red
    _frames(clips / "00002", [BLUE, BLUE, RED])        # 3 frames: fewer than asked for
    _frames(clips / "00003", [RED])
    _frames(clips / "00006", [RED] * 2)
    return root


def test_dfew_frame_folders_folds_and_problems(dfew_root, tmp_path):
    data = _load("dfew", dfew_root, frames=4)
    assert data.classes == ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]
    assert _labels(data) == {"00001": "happiness", "00002": "sadness"}
    first = data.samples[0]
    assert first.is_clip and [p.rsplit("/", 1)[-1] for p in first.frames] == ["2.jpg", "4.jpg", "7.jpg", "9.jpg"]
    frames = first.load()
    assert isinstance(frames, ClipFrames) and len(frames) == 4 and frames[0].mode == "RGB"
    assert len(data.samples[1].frames) == 3
    assert data.info["frames_per_clip"] == 4 and data.info["n_clips"] == 2
    _problem(data, "set_1.csv:4", "unknown label '9'")
    _problem(data, "00004", "not found")
    _problem(data, "set_1.csv:6", "expected 'video_name,label'")
    assert _labels(_load("dfew", dfew_root, "fold2")) == {"00006": "fear"}
    assert len(_load("dfew", dfew_root).samples[0].frames) == 8  # default 8 frames
    with pytest.raises(ValueError, match="fold1"):
        _load("dfew", dfew_root, "test")
    with pytest.raises(ValueError, match="frames"):
        _load("dfew", dfew_root, frames=0)
    with pytest.raises(ValueError, match="takes frames"):
        _load("dfew", dfew_root, fps=3)
    _wrong_root("dfew", tmp_path, r"set_1\.csv")


def test_evaluate_mean_pools_frame_probabilities(dfew_root):
    data = get_benchmark("dfew").load(dfew_root, frames=4)
    clf = PoolingFake(data.classes)
    rec = evaluate(clf, "dfew", dfew_root, batch_size=8, progress=False, data=data)
    # clip 1: frames 2,4,7 red, 9 blue -> happiness (0.75); clip 2: blue, blue, red -> sadness
    assert rec["n"] == 2 and rec["war"] == pytest.approx(1.0)
    assert clf.calls == [7]  # all frames of the chunk in one call
    assert rec["benchmark_info"]["frames_per_clip"] == 4


def test_ferv39k_rows_and_frame_folders(tmp_path):
    root = tmp_path / "ferv"
    _write(root / "4_setups" / "All_scenes" / "test_All.csv",
           "Action/Happy/0001 Happy\nAction/Sad/0002 Sad\nAction/Sad/0003 Bored\nAction/Fear/0004 Fear\nbad\n")
    _write(root / "4_setups" / "All_scenes" / "train_All.csv", "Crime/Angry/0009 Angry\n")
    clips = root / "2_ClipsforFaceCrop"
    _frames(clips / "Action" / "Happy" / "0001", [RED] * 3)
    _frames(clips / "Action" / "Sad" / "0002", [BLUE] * 12)
    _frames(clips / "Crime" / "Angry" / "0009", [RED])
    data = _load("ferv39k", root)
    assert data.classes == ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
    assert _labels(data, key=lambda s: s.source.split("2_ClipsforFaceCrop/")[1]) == {
        "Action/Happy/0001": "happiness", "Action/Sad/0002": "sadness"}
    assert len(data.samples[1].frames) == 8
    _problem(data, "test_All.csv:3", "unknown label 'Bored'")
    _problem(data, "Action/Fear/0004", "not found")
    _problem(data, "test_All.csv:5", "expected 'clip_path label'")
    assert [data.classes[s.label] for s in _load("ferv39k", root, "train").samples] == ["anger"]
    _wrong_root("ferv39k", tmp_path, "test_All.csv")


def test_mafw_eleven_classes_per_fold(tmp_path):
    root = tmp_path / "mafw"
    ann = root / "Train & Test Set" / "single" / "no_caption"
    _write(ann / "set_1" / "test.txt", "00025.mp4 anger\n00026.mp4 helplessness\n00027.mp4 boredom\n"
                                       "00028.mp4 fear\n00029.mp4\n")
    _write(ann / "set_3" / "test.txt", "00030.mp4 disappointment\n")
    frames = root / "data" / "frames"
    for name in ("00025", "00026", "00027", "00030"):
        _frames(frames / name, [RED] * 2)
    data = _load("mafw", root)
    assert data.classes == ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise",
                            "contempt", "anxiety", "helplessness", "disappointment"]
    assert _labels(data) == {"00025": "anger", "00026": "helplessness"}
    assert data.samples[1].label == 9
    _problem(data, "test.txt:3", "unknown label 'boredom'")
    _problem(data, "00028", "not found")
    _problem(data, "test.txt:5", "expected 'clip label'")
    assert _labels(_load("mafw", root, "fold3")) == {"00030": "disappointment"}
    _wrong_root("mafw", tmp_path, "set_1/test.txt")


def _write_avi(path, colours, size=32):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (size, size))
    assert writer.isOpened()
    for c in colours:
        writer.write(np.full((size, size, 3), c[::-1], dtype=np.uint8))  # OpenCV frames are BGR
    writer.release()
    return path


def test_afew_video_files_and_frame_folders(tmp_path):
    root = tmp_path / "afew"
    val = root / "Val_AFEW"
    _write_avi(val / "Happy" / "001.avi", [RED] * 12)
    _frames(val / "Sad" / "002", [BLUE] * 5)
    _write(val / "Angry" / "readme.txt", "x")
    (val / "Angry" / "broken.avi").write_bytes(b"not a video at all")
    data = _load("afew", root, frames=4)
    assert data.classes == ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
    assert _labels(data) == {"broken.avi": "anger", "001.avi": "happiness", "002": "sadness"}
    video = next(s for s in data.samples if s.source.endswith("001.avi"))
    assert video.frames == (video.source,)
    frames = video.load()
    assert len(frames) == 4 and frames[0].size == (32, 32)
    r, g, b = np.asarray(frames[0], dtype=np.float64).reshape(-1, 3).mean(axis=0)
    assert r > 150 and b < 80  # colours survive the BGR round trip
    _problem(data, "readme.txt", "neither a video file nor a frame folder")
    clips, labels, _, problems = load_clips(data.samples)
    assert len(clips) == 2 and [p[0].rsplit("/", 1)[-1] for p in problems] == ["broken.avi"]
    rec = evaluate(PoolingFake(data.classes), "afew", root, progress=False, data=data)
    assert rec["n"] == 2 and rec["war"] == pytest.approx(1.0)
    assert rec["n_skipped"] == len(data.problems) + 1 and rec["skipped"][-1][0].endswith("broken.avi")
    _wrong_root("afew", tmp_path, "Val_AFEW")


# ----------------------------------------------------------------------------------------- csv, wds, hf

def test_csv_path_label(tmp_path):
    root = tmp_path / "mine"
    _img(root / "img" / "a.png")
    _img(root / "img" / "b.png")
    _img(root / "img" / "c.png")
    _write(root / "test.csv", "path,label\nimg/a.png,happy\nimg/b.png,Sad\nimg/c.png,bored\n"
                              "img/missing.png,happy\nimg/a.png,\n")
    data = _load("csv", root)
    assert data.classes == ["happiness", "sadness", "bored"]  # taxonomy order, unknown names after
    assert _labels(data) == {"a.png": "happiness", "b.png": "sadness", "c.png": "bored"}
    _problem(data, "missing.png", "not found")
    _problem(data, "test.csv:6", "empty label")
    fixed = _load("csv", root / "test.csv", labels="sadness,happiness")
    assert fixed.classes == ["sadness", "happiness"] and _labels(fixed)["a.png"] == "happiness"
    _problem(fixed, "test.csv:4", "not one of the classes")
    _write(root / "other.csv", "file,emotion\nimg/a.png,happy\n")
    with pytest.raises(ValueError, match="lacks the column"):
        _load("csv", root, "other")
    assert _labels(_load("csv", root, "other", path_column="file", label_column="emotion")) == {"a.png": "happiness"}
    _wrong_root("csv", tmp_path, "test.csv")


def _tar_add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _png_bytes(colour):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


def test_webdataset_shards(tmp_path):
    root = tmp_path / "shards"
    root.mkdir()
    with tarfile.open(root / "captions-000000.tar", "w") as tar:
        _tar_add(tar, "k1.png", _png_bytes(RED))
        _tar_add(tar, "k1.json", json.dumps({"label": "happiness",
                                             "soft_label": {"happiness": 0.75, "sadness": 0.25}}).encode())
        _tar_add(tar, "k2.png", _png_bytes(BLUE))
        _tar_add(tar, "k2.json", json.dumps({"label": "sad"}).encode())
        _tar_add(tar, "k3.png", _png_bytes(BLUE))                  # no label
        _tar_add(tar, "k4.json", b"{}")                             # no image
        _tar_add(tar, "k5.png", b"\x89PNG broken")
        _tar_add(tar, "k5.json", json.dumps({"label": "happiness"}).encode())
    (root / "captions-000000.json").write_text("{}")  # the caption builder's sidecar: not a shard
    with tarfile.open(root / "captions-000001.tar", "w") as tar:
        _tar_add(tar, "k6.jpg", _png_bytes(RED))
        _tar_add(tar, "k6.cls", b"0")
    data = _load("webdataset", root, labels="basic7")
    assert data.classes == taxonomy.label_set("basic7")
    assert _labels(data) == {"k1.png": "happiness", "k2.png": "sadness", "k5.png": "happiness", "k6.jpg": "happiness"}
    k1 = data.samples[0]
    assert k1.soft_label[data.classes.index("happiness")] == pytest.approx(0.75)
    _problem(data, "k3", "no label")
    _problem(data, "k4", "no image member")
    images, _, _, problems = load_samples(data.samples)
    assert len(images) == 3 and problems[0][0].endswith("k5.png")
    data.close()
    auto = _load("webdataset", root / "captions-000000.tar")  # one shard; classes from the labels found
    assert auto.classes == ["happiness", "sadness"]
    auto.close()
    with pytest.raises(FileNotFoundError, match="nosplit"):
        _load("webdataset", root, "nosplit")
    _wrong_root("webdataset", tmp_path, r"\*\.tar")


def test_hf_local_imagefolder(tmp_path):
    pytest.importorskip("datasets")
    root = tmp_path / "hfdata"
    _img(root / "test" / "sad" / "a.png", colour=BLUE)
    _img(root / "test" / "happy" / "b.png", colour=RED)
    _img(root / "test" / "angry" / "c.png", colour=RED)
    cache = str(tmp_path / "hf_cache")
    data = _load("hf", root, builder="imagefolder", cache_dir=cache)
    assert data.classes == ["happiness", "sadness", "anger"]  # taxonomy order, not the folders' sorted order
    colours = {data.classes[s.label]: s.load().getpixel((0, 0)) for s in data.samples}
    assert colours["sadness"] == BLUE and colours["happiness"] == RED and colours["anger"] == RED
    assert data.info["label_names"] == ["angry", "happy", "sad"]
    with pytest.raises(ValueError, match="has splits test"):
        _load("hf", root, "validation", builder="imagefolder", cache_dir=cache)
    with pytest.raises(ValueError, match="no column"):
        _load("hf", root, image_column="img", builder="imagefolder", cache_dir=cache)
    _wrong_root("hf", tmp_path, "not_the_dataset", cache_dir=cache)


# ------------------------------------------------------------------------------------------------ coverage

def test_every_registered_benchmark_has_a_loader_test():
    # ferplus, imagefolder: test_eval_benchmarks.py; ferplus-compound: test_eval_compound.py
    assert set(BENCHMARKS) == COVERED | {"ferplus", "imagefolder", "ferplus-compound"}
