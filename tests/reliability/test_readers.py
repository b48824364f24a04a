"""Reliability of the dataset readers (issue 17): label-file rows never read outside the root, sample keys unique
by construction, ImageFolder classes only the folders that map to an emotion.

Driven through the public entry points (``emocap.captioning.sources.get_source`` and ``emocap.eval.get_benchmark``)
on tiny files written here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from emocap.captioning.sources import get_source
from emocap.eval import get_benchmark


def _png(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8), mode="L").save(path)


@pytest.fixture
def escaping_rows(tmp_path):
    """A root with one good image, a secret beside it (outside the root), and a label file naming all three ways."""
    root = tmp_path / "root"
    _png(root / "ok.png", 10)
    secret = tmp_path / "secret.png"
    _png(secret, 250)
    rows = ["path,label", "ok.png,happy", "../secret.png,sad", f"{secret},angry"]
    labels = root / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return root, labels, secret


def test_caption_labelfile_refuses_rows_outside_the_root(escaping_rows):
    root, labels, secret = escaping_rows
    samples, problems = get_source("labels")(str(root), labels_file=str(labels))
    assert [s.extra["file"] for s in samples] == ["ok.png"]
    assert all(secret.name not in s.source_file for s in samples)
    where = {w: why for w, why in problems}
    assert set(where) == {f"{labels}:3", f"{labels}:4"}       # file:line of each refused row
    assert "'..'" in where[f"{labels}:3"] and "refused" in where[f"{labels}:3"]
    assert "absolute" in where[f"{labels}:4"] and "refused" in where[f"{labels}:4"]


def test_eval_csv_refuses_rows_outside_the_root(escaping_rows):
    root, labels, secret = escaping_rows
    data = get_benchmark("csv").load(root, str(labels))
    assert [s.source for s in data.samples] == [str(root / "ok.png")]
    where = {w: why for w, why in data.problems}
    assert set(where) == {f"{labels}:3", f"{labels}:4"}
    assert "'..'" in where[f"{labels}:3"] and "absolute" in where[f"{labels}:4"]


def test_labelfile_keys_that_would_collide_stay_apart(tmp_path):
    root = tmp_path / "root"
    for i, name in enumerate(["x.y.png", "x_y.png", "plain.png"]):
        _png(root / name, 20 * i)
    labels = root / "labels.csv"
    labels.write_text("path,label\nx.y.png,happy\nx_y.png,sad\nplain.png,angry\n")
    samples, problems = get_source("labels")(str(root), labels_file=str(labels))
    assert problems == []
    keys = [s.key for s in samples]
    assert len(samples) == 3 and len(set(keys)) == 3
    assert keys[2] == "labels_plain"                    # a key that collides with nothing is unchanged
    assert [s.read_bytes() for s in samples[:2]] == [(root / "x.y.png").read_bytes(), (root / "x_y.png").read_bytes()]


def test_imagefolder_same_stem_in_two_subfolders_gives_two_keys(tmp_path):
    root = tmp_path / "faces"
    _png(root / "happy" / "set1" / "1.png", 10)
    _png(root / "happy" / "set2" / "1.png", 10)         # byte-identical to set1/1.png: still its own sample
    _png(root / "happy" / "solo.png", 30)
    samples, problems = get_source("imagefolder")(str(root))
    keys = {s.extra["file"]: s.key for s in samples}
    assert len(samples) == 3 and len(set(keys.values())) == 3
    assert keys["happy/solo.png"] == "faces_happy_solo"  # unchanged where nothing collides


def test_imagefolder_benchmark_ignores_stray_folders(tmp_path):
    root = tmp_path / "faces"
    _png(root / "happy" / "a.png", 200)
    _png(root / "sad" / "b.png", 40)
    _png(root / "weirdo" / "c.png", 90)
    _png(root / "__MACOSX" / "happy" / "._a.png", 1)
    data = get_benchmark("imagefolder").load(root)
    assert data.classes == ["happiness", "sadness"]
    assert len(data.samples) == 2
    ignored = {w.rsplit("/", 1)[-1]: why for w, why in data.problems}
    assert "ignored" in ignored["weirdo"] and "ignored" in ignored["__MACOSX"]
    assert sorted(data.info["ignored_folders"]) == ["__MACOSX", "weirdo"]
