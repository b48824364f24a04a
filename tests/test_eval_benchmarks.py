"""emocap.eval.registry: the registry, the imagefolder loader and the FER+ loader on tiny fixtures."""

import re
import tarfile

import numpy as np
import pytest
from PIL import Image

from emocap.eval.registry import BENCHMARKS, Benchmark, get_benchmark, register_benchmark
from emocap.eval.samples import BenchmarkData, load_samples
from emocap.ferplus import EMOTIONS


def _png(path, value=128, size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, dtype=np.uint8), mode="L").save(path)


# ---------------------------------------------------------------------------------------------------- registry

def test_registry_is_a_dict_of_benchmarks_with_labels_and_splits():
    assert {"ferplus", "imagefolder"} <= set(BENCHMARKS)
    fer = get_benchmark("ferplus")
    assert isinstance(fer, Benchmark)
    assert list(fer.labels) == list(EMOTIONS) and len(fer.labels) == 8
    assert fer.default_split == "test"
    assert get_benchmark("imagefolder").labels is None
    assert get_benchmark(fer) is fer


def test_unknown_benchmark_and_split_are_clear_errors(tmp_path):
    with pytest.raises(KeyError, match="ferplus"):
        get_benchmark("affectnet-typo")
    with pytest.raises(ValueError, match="splits"):
        get_benchmark("ferplus").load(tmp_path, "validation")
    with pytest.raises(KeyError, match="already registered"):
        register_benchmark(get_benchmark("ferplus"))


def test_a_new_benchmark_is_registered_as_data(tmp_path):
    def loader(root, split):
        return BenchmarkData([], ["x"], [("somewhere", "why")])

    b = register_benchmark(Benchmark("tiny-test", loader, default_split=None, labels=("x",)))
    try:
        data = get_benchmark("tiny-test").load(tmp_path)
        assert data.classes == ["x"] and data.problems == [("somewhere", "why")]
    finally:
        del BENCHMARKS[b.name]


# ------------------------------------------------------------------------------------------------- imagefolder

@pytest.fixture
def folder_root(tmp_path):
    root = tmp_path / "faces"
    _png(root / "happy" / "h1.png", 200)
    _png(root / "happy" / "h2.png", 201)
    (root / "happy" / "notes.txt").write_text("not an image")
    _png(root / "joy" / "j1.png", 202)                 # synonym of happiness: merged with "happy"
    _png(root / "rage" / "r1.png", 50)                 # "rage" is a taxonomy synonym of anger
    (root / "rage" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    _png(root / "confused" / "c1.png", 90)             # unknown to the taxonomy: not a class, listed as ignored
    (root / "sad").mkdir()                              # an emotion folder without images
    return root


def test_imagefolder_maps_folder_names_and_reports_problems(folder_root):
    data = get_benchmark("imagefolder").load(folder_root)
    # classes in sorted folder order: (confused ignored), happy, joy -> merged, rage, (sad empty: dropped)
    assert data.classes == ["happiness", "anger"]
    by_source = {s.source.split("faces/")[1]: s.label for s in data.samples}
    assert by_source == {
        "happy/h1.png": 0, "happy/h2.png": 0, "joy/j1.png": 0, "rage/broken.png": 1, "rage/r1.png": 1,
    }
    reasons = {src.split("faces/")[1]: why for src, why in data.problems}
    assert "not a known emotion" in reasons["confused"] and "ignored" in reasons["confused"]
    assert data.info["ignored_folders"] == ["confused"]
    assert "holds no image files" in reasons["sad"]
    assert "not an image" in reasons["happy/notes.txt"]
    assert "merged" in reasons["joy"]


def test_imagefolder_corrupt_file_is_skipped_and_reported(folder_root):
    data = get_benchmark("imagefolder").load(folder_root)
    images, labels, sources, problems = load_samples(data.samples)
    assert len(images) == len(labels) == len(sources) == 4
    assert all(im.mode == "RGB" for im in images)
    assert [p[0].endswith("rage/broken.png") for p in problems] == [True]
    assert problems[0][1]  # a reason is given
    assert not any(s.endswith("broken.png") for s in sources)
    # labels stay aligned with the images that did load
    assert labels[sources.index(str(folder_root / "rage" / "r1.png"))] == 1


def test_imagefolder_split_subfolder(tmp_path):
    _png(tmp_path / "test" / "sad" / "a.png")
    _png(tmp_path / "test" / "neutral" / "b.png")
    data = get_benchmark("imagefolder").load(tmp_path, "test")
    assert data.classes == ["neutral", "sadness"]
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "val"))):
        get_benchmark("imagefolder").load(tmp_path, "val")


def test_imagefolder_empty_or_missing_root_names_the_path(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "stray.png").write_bytes(b"")  # files directly in the root are not class folders
    with pytest.raises(ValueError, match=re.escape(str(empty))):
        get_benchmark("imagefolder").load(empty)
    only_empty_classes = tmp_path / "hollow"
    (only_empty_classes / "happy").mkdir(parents=True)
    with pytest.raises(ValueError, match=re.escape(str(only_empty_classes))):
        get_benchmark("imagefolder").load(only_empty_classes)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nowhere"))):
        get_benchmark("imagefolder").load(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------------------- FER+

LABEL_CSV = "\n".join([
    'fer0000001.png,"(0, 0, 48, 48)",0,9,1,0,0,0,0,0,0,0',   # happiness
    'fer0000002.png,"(0, 0, 48, 48)",8,0,0,1,0,0,0,0,1,0',   # neutral
    'fer0000003.png,"(0, 0, 48, 48)",3,0,0,3,0,0,0,0,4,0',   # top vote "unknown": dropped by the protocol
    'fer0000004.png,"(0, 0, 48, 48)",0,0,0,10,0,0,0,0,0,0',  # sadness, but the image file is corrupt
    'fer0000005.png,"(0, 0, 48, 48)",1,2,3',                   # malformed: too few fields
]) + "\n"


@pytest.fixture
def ferplus_root(tmp_path):
    split = tmp_path / "FER2013Test"
    for i, value in [(1, 220), (2, 120), (3, 30)]:
        _png(split / f"fer000000{i}.png", value, size=48)
    (split / "fer0000004.png").write_bytes(b"garbage, not a png")
    (split / "label.csv").write_text(LABEL_CSV)
    return tmp_path


def _check_ferplus(data):
    assert data.classes == list(EMOTIONS)
    assert [(s.source.rsplit("/", 1)[1], s.label) for s in data.samples] == [
        ("fer0000001.png", EMOTIONS.index("happiness")),
        ("fer0000002.png", EMOTIONS.index("neutral")),
        ("fer0000004.png", EMOTIONS.index("sadness")),
    ]
    assert len(data.problems) == 1
    where, why = data.problems[0]
    assert where.endswith("label.csv:5") and "12 fields" in why
    assert data.info["n_label_rows"] == 4 and data.info["n_excluded_by_protocol"] == 1
    images, labels, sources, problems = load_samples(data.samples)
    assert labels == [EMOTIONS.index("happiness"), EMOTIONS.index("neutral")]
    assert images[0].size == (48, 48) and images[0].mode == "RGB"
    assert images[0].getpixel((0, 0)) == (220, 220, 220)
    assert len(problems) == 1 and problems[0][0].endswith("fer0000004.png")


def test_ferplus_folder_layout(ferplus_root):
    data = get_benchmark("ferplus").load(ferplus_root)  # default split: test
    try:
        _check_ferplus(data)
    finally:
        data.close()


def test_ferplus_tar_layout(ferplus_root, tmp_path_factory):
    tar_root = tmp_path_factory.mktemp("tarred")
    with tarfile.open(tar_root / "FER2013Test.tar", "w") as tar:
        tar.add(ferplus_root / "FER2013Test", arcname="FER2013Test")
    data = get_benchmark("ferplus").load(tar_root, "test")
    try:
        _check_ferplus(data)
    finally:
        data.close()


def test_ferplus_missing_split_is_a_clear_error(ferplus_root):
    with pytest.raises(FileNotFoundError, match="FER2013Valid"):
        get_benchmark("ferplus").load(ferplus_root, "valid")


def test_imagefolder_needs_two_classes_and_points_at_a_split_folder(tmp_path):
    """Issue 14: a root holding ``test/<class>/`` became a 1-class benchmark scoring 100%."""
    from PIL import Image

    from emocap.eval.registry import get_benchmark

    for folder in ("test/happiness", "test/sadness", "happiness"):
        (tmp_path / folder).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / folder / "a.png")
    with pytest.raises(ValueError, match=r"only one class \(happiness\).*add --split test"):
        get_benchmark("imagefolder").load(tmp_path)
    data = get_benchmark("imagefolder").load(tmp_path, "test")
    assert data.classes == ["happiness", "sadness"]
