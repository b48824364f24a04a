"""Tests for emocap.ferplus: label.csv parsing, folder and tar layouts, the majority protocol, soft labels."""

from __future__ import annotations

import csv
import io
import tarfile

import numpy as np
import pytest

from emocap import taxonomy
from emocap.ferplus import (
    EMOTIONS, SPLITS, VOTE_COLUMNS, FerPlusSplit, LabelFileError, majority_label, parse_label_rows, soft_label,
)
from emocap.images import ImageLoadError

# the default rows written by the conftest fixture writer (kept in step with conftest.FERPLUS_ROWS)
FERPLUS_ROWS = [
    'fer0000000.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0',
    'fer0000001.png,"(0, 0, 48, 48)",0,8,2,0,0,0,0,0,0,0',
    'fer0000002.png,"(0, 0, 48, 48)",8,2,0,0,0,0,0,0,0,0',
    'fer0000003.png,"(0, 0, 48, 48)",0,0,0,0,0,0,0,0,7,3',
    'fer0000004.png,"(0, 0, 48, 48)",0,0,0,0,0,0,0,6,4,0',
]


def test_fixture_rows_in_step(ferplus_rows):
    assert ferplus_rows == FERPLUS_ROWS


def _fer_majority(votes):
    """The rule of FER+'s own generate_training_data.py ('majority' mode), written out independently:
    votes of 1 or less are outliers; keep the image only when the peak exceeds half of what is left and the
    peak is an emotion (not unknown / not-a-face)."""
    raw = [0.0 if v <= 1 else float(v) for v in votes]
    total = sum(raw)
    if total == 0:
        return None
    peak = max(raw)
    if not peak > 0.5 * total:
        return None
    idx = raw.index(peak)
    return idx if idx < 8 else None


def test_columns_match_taxonomy():
    assert len(VOTE_COLUMNS) == 10 and VOTE_COLUMNS[8:] == ["unknown", "NF"]
    assert EMOTIONS == taxonomy.label_set("ferplus8")
    assert [taxonomy.canonical(e) for e in EMOTIONS] == EMOTIONS


@pytest.mark.parametrize(
    "votes, expected",
    [
        ([4, 0, 0, 1, 3, 2, 0, 0, 0, 0], None),  # stray 1 dropped: 4 of 9 is not a majority
        ([8, 2, 0, 0, 0, 0, 0, 0, 0, 0], 0),
        ([0, 8, 2, 0, 0, 0, 0, 0, 0, 0], 1),
        ([0, 5, 1, 1, 1, 1, 1, 0, 0, 0], 1),  # five stray single votes: 5 of 5
        ([5, 5, 0, 0, 0, 0, 0, 0, 0, 0], None),  # a tie is not a majority
        ([0, 0, 0, 0, 0, 0, 0, 2, 1, 0], 7),  # contempt 2 of 2 after the stray unknown vote
        ([0, 0, 0, 0, 0, 0, 0, 0, 7, 3], None),  # top class unknown
        ([1, 0, 0, 0, 0, 0, 0, 0, 0, 9], None),  # top class not-a-face
        ([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], None),  # only stray votes
        ([0] * 10, None),
        ([3, 3, 4, 0, 0, 0, 0, 0, 0, 0], None),  # 4 of 10
        ([0, 0, 0, 0, 6, 4, 0, 0, 0, 0], 4),
    ],
)
def test_majority_label_by_hand(votes, expected):
    assert majority_label(votes) == expected
    assert _fer_majority(votes) == expected  # the reference agrees with the hand computation


def test_majority_label_random_against_reference():
    rng = np.random.RandomState(0)
    for _ in range(2000):
        votes = rng.multinomial(10, rng.dirichlet(np.full(10, 0.5))).tolist()
        assert majority_label(votes) == _fer_majority(votes), votes
    # numpy input works too, and the input is not modified
    arr = np.array([4, 0, 0, 1, 3, 2, 0, 0, 0, 0])
    majority_label(arr)
    assert arr[3] == 1


def test_soft_label():
    v = [4, 0, 0, 1, 3, 2, 0, 0, 0, 0]
    s = soft_label(v)
    assert s.shape == (8,)
    assert s.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(s, np.array([4, 0, 0, 1, 3, 2, 0, 0]) / 10)
    s2 = soft_label([0, 3, 0, 0, 0, 0, 0, 0, 5, 2])  # unknown and NF are not emotions
    np.testing.assert_allclose(s2, [0, 1, 0, 0, 0, 0, 0, 0])
    assert soft_label([0, 0, 0, 0, 0, 0, 0, 0, 6, 4]) is None
    rng = np.random.RandomState(1)
    for _ in range(100):
        votes = rng.multinomial(10, np.full(10, 0.1))
        s = soft_label(votes)
        if votes[:8].sum() == 0:
            assert s is None
        else:
            assert s.sum() == pytest.approx(1.0) and np.all(s >= 0)


def _check_fixture_split(split):
    assert split.split == "test"
    assert len(split) == len(FERPLUS_ROWS) and not split.problems
    first = split.records[0]
    assert first.name == "fer0000000.png"
    assert first.box == (0, 0, 48, 48)
    assert first.votes == (4, 0, 0, 1, 3, 2, 0, 0, 0, 0)
    assert first.votes_array.dtype == np.float64 and first.votes_array.sum() == 10
    kept = {r.name: label for r, label in split.majority()}
    assert kept == {"fer0000001.png": 1, "fer0000002.png": 0, "fer0000004.png": 7}
    for r in split:
        im = split.load(r)
        assert im.mode == "RGB" and im.size == (48, 48)
        px = np.asarray(im)
        assert np.array_equal(px[..., 0], px[..., 2])  # grayscale source
        assert len(split.image_bytes(r)) > 0


def test_folder_layout(ferplus_writer, tmp_path):
    ferplus_writer()
    split = FerPlusSplit(tmp_path, "test")
    assert split.source == tmp_path / "FER2013Test"
    _check_fixture_split(split)
    # the split folder itself works as root
    _check_fixture_split(FerPlusSplit(tmp_path / "FER2013Test", "test"))


def test_tar_layout(ferplus_writer, tmp_path):
    tar_path = ferplus_writer(as_tar=True)
    assert tar_path.name == "FER2013Test.tar" and not (tmp_path / "FER2013Test").exists()
    with tarfile.open(tar_path) as tar:
        assert "FER2013Test/label.csv" in tar.getnames()
    split = FerPlusSplit(tmp_path, "test")
    assert split.source == tar_path
    _check_fixture_split(split)
    split.close()
    split_direct = FerPlusSplit(tar_path, "test")
    _check_fixture_split(split_direct)
    split_direct.close()


def test_folder_and_tar_read_the_same(ferplus_writer, tmp_path):
    folder = FerPlusSplit(ferplus_writer(root=tmp_path / "a", seed=3), "test")
    tar = FerPlusSplit(ferplus_writer(root=tmp_path / "b", as_tar=True, seed=3), "test")
    assert folder.records == tar.records
    for r in folder:
        assert folder.image_bytes(r) == tar.image_bytes(r)
    tar.close()


def test_other_split_names(ferplus_writer, tmp_path):
    ferplus_writer(split_folder="FER2013Valid")
    assert len(FerPlusSplit(tmp_path, "valid")) == len(FERPLUS_ROWS)
    with pytest.raises(FileNotFoundError, match="FER2013Train"):
        FerPlusSplit(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        FerPlusSplit(tmp_path, "dev")
    assert set(SPLITS) == {"train", "valid", "test"}


BAD_ROWS = [
    ('fer0000010.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0', "12 fields"),  # 11 fields
    ('fer0000011.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0,0', "12 fields"),  # 13 fields
    ('fer0000012.png,"(0, 0, 48, 48)",4,x,0,1,3,2,0,0,0,0', "integers"),
    ('fer0000013.png,"(0, 0, 48, 48)",4.5,0,0,1,3,2,0,0,0,0', "integers"),
    ('fer0000014.png,"(0, 0, 48, 48)",0,0,0,0,0,0,0,0,0,0', "zero"),
    ('fer0000015.png,"(0, 0, 48, 48)",-1,0,0,1,3,2,0,0,0,0', "negative"),
    ('fer0000016.png,"(0, 0, 48)",4,0,0,1,3,2,0,0,0,0', "box"),
    (',"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0', "name"),
    ('fer0000001.png,"(0, 0, 48, 48)",0,8,2,0,0,0,0,0,0,0', "duplicate"),
]


def test_malformed_rows_reported_and_skipped(ferplus_writer, tmp_path):
    rows = FERPLUS_ROWS[:2] + [r for r, _ in BAD_ROWS] + ["", FERPLUS_ROWS[2]]
    ferplus_writer(rows=rows)
    split = FerPlusSplit(tmp_path, "test")
    assert [r.name for r in split] == ["fer0000000.png", "fer0000001.png", "fer0000002.png"]
    assert len(split.problems) == len(BAD_ROWS)
    label_csv = f"{tmp_path / 'FER2013Test'}/label.csv"
    for i, ((where, reason), (_, expected)) in enumerate(zip(split.problems, BAD_ROWS)):
        assert where == f"{label_csv}:{i + 3}"  # file:line, 1-based, the two good rows come first
        assert expected in reason, (where, reason)


def test_parse_label_rows_directly():
    text = "\n".join(FERPLUS_ROWS[:1] + ['bad,row'])
    records, problems = parse_label_rows(text, "mem.csv")
    assert len(records) == 1 and problems == [("mem.csv:2", problems[0][1])]
    # the quoted box with commas is one field, exactly as csv reads it
    row = next(csv.reader(io.StringIO(FERPLUS_ROWS[0])))
    assert len(row) == 12 and records[0].votes == tuple(int(x) for x in row[2:])


def test_no_valid_rows(ferplus_writer, tmp_path):
    ferplus_writer(rows=[BAD_ROWS[0][0], BAD_ROWS[4][0]])
    with pytest.raises(LabelFileError, match="no valid rows"):
        FerPlusSplit(tmp_path, "test")


def test_missing_label_csv_in_tar(tmp_path):
    folder = tmp_path / "FER2013Test"
    folder.mkdir()
    (folder / "readme.txt").write_text("x")
    with tarfile.open(tmp_path / "FER2013Test.tar", "w") as tar:
        tar.add(folder, arcname="FER2013Test")
    (folder / "readme.txt").unlink()
    folder.rmdir()
    with pytest.raises(LabelFileError, match="label.csv"):
        FerPlusSplit(tmp_path, "test")


def test_missing_and_corrupt_images(ferplus_writer, tmp_path):
    folder = ferplus_writer()
    (folder / "fer0000001.png").unlink()
    (folder / "fer0000002.png").write_bytes(b"not a png")
    split = FerPlusSplit(tmp_path, "test")
    assert split.load(split.records[0]).size == (48, 48)
    with pytest.raises(ImageLoadError, match="fer0000001.png"):
        split.load(split.records[1])
    with pytest.raises(ImageLoadError, match="fer0000002.png"):
        split.load(split.records[2])


# ------------------------------------------------------------------ the real data


@pytest.mark.parametrize("split_name, expected", [("train", 25045), ("valid", 3191), ("test", 3137)])
def test_real_ferplus_majority_counts(ferplus_dir, split_name, expected):
    split = FerPlusSplit(ferplus_dir, split_name)
    try:
        assert not split.problems, split.problems[:3]
        kept = split.majority()
        assert len(kept) == expected
        # the independent reference rule gives the same label for every image
        assert all(_fer_majority(r.votes) == label for r, label in kept)
        assert sum(_fer_majority(r.votes) is not None for r in split) == expected
        totals = [sum(r.votes) for r in split]  # 10 votes per image (one train row of the real file has 9)
        assert max(totals) == 10 and sum(t == 10 for t in totals) >= len(totals) - 1
        assert {label for _, label in kept} == set(range(8))
        if split_name == "test":
            im = split.load(kept[0][0])
            assert im.size == (48, 48) and im.mode == "RGB"
    finally:
        split.close()


def test_tar_reads_from_many_threads_match_sequential_reads(ferplus_dir):
    # eval decodes batches in threads; without the lock ~1 in 25 reads of the real tar came back garbled
    from concurrent.futures import ThreadPoolExecutor

    split = FerPlusSplit(ferplus_dir, "test")
    try:
        records = list(split.records[:2000])
        sequential = [split.image_bytes(r) for r in records]
        with ThreadPoolExecutor(4) as pool:
            parallel = list(pool.map(split.image_bytes, records))
        assert parallel == sequential
    finally:
        split.close()
