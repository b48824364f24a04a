"""Shared pytest fixtures: a tiny saved model, the astronaut photo, a FER+ fixture writer, the real FER+ data.

Everything here is CPU-only and small. Session-scoped fixtures build once per test run; tests must not modify
what they return (copy the model folder first when a test needs to break it).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]

# Tests use tiny models: one intra-op thread is fastest, and with more threads torch's OpenMP pool slows down
# by orders of magnitude when another job (a training run) holds the CPU. Set before torch is imported;
# an OMP_NUM_THREADS from the environment wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# A few label.csv rows in the real FER+ format: name, "(x, y, w, h)", 10 votes in the order
# neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF.
FERPLUS_ROWS: List[str] = [
    'fer0000000.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0',  # stray 1 dropped, 4/9 -> no majority
    'fer0000001.png,"(0, 0, 48, 48)",0,8,2,0,0,0,0,0,0,0',  # happiness 8/10
    'fer0000002.png,"(0, 0, 48, 48)",8,2,0,0,0,0,0,0,0,0',  # neutral 8/10
    'fer0000003.png,"(0, 0, 48, 48)",0,0,0,0,0,0,0,0,7,3',  # top class unknown -> dropped
    'fer0000004.png,"(0, 0, 48, 48)",0,0,0,0,0,0,0,6,4,0',  # contempt 6/10
]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A seeded, randomly initialised ``emocap-tiny`` model saved (fp32) in open_clip's hub format."""
    import torch

    from emocap.models import create_model, save_model

    torch.manual_seed(1234)
    em = create_model("emocap-tiny")
    folder = tmp_path_factory.mktemp("tiny_model")
    save_model(em, folder, meta={"labels": "basic8", "grayscale": False})
    return folder


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """The tiny model loaded with :func:`emocap.models.load_model` (shared; do not modify)."""
    from emocap.models import load_model

    return load_model(str(tiny_model_dir))


@pytest.fixture(scope="session")
def astronaut_array() -> np.ndarray:
    """The public-domain NASA astronaut portrait (Eileen Collins) bundled with scikit-image, HxWx3 uint8."""
    data = pytest.importorskip("skimage.data", reason="scikit-image is needed for the astronaut test photo")
    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def astronaut_image(astronaut_array) -> Image.Image:
    return Image.fromarray(astronaut_array, mode="RGB")


@pytest.fixture(scope="session")
def astronaut_path(astronaut_image, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    astronaut_image.save(path)
    return path


@pytest.fixture(scope="session")
def gray_image_path(tmp_path_factory) -> Path:
    """A plain mid-gray 128x128 PNG (no face in it)."""
    path = tmp_path_factory.mktemp("plain") / "plain_gray.png"
    Image.new("L", (128, 128), 128).save(path)
    return path


def write_ferplus_split(
    root: Path,
    split_folder: str = "FER2013Test",
    rows: Optional[Sequence[str]] = None,
    as_tar: bool = False,
    images: bool = True,
    seed: int = 0,
) -> Path:
    """Write a FER+ split in the real layout under ``root``: ``<split_folder>/ferNNNNNNN.png`` + ``label.csv``.

    ``rows`` are raw label.csv lines (default :data:`FERPLUS_ROWS`); an image is written for every row whose
    first field ends in ``.png``. With ``as_tar`` the folder is packed into ``<split_folder>.tar`` (with the
    folder as the member prefix, like the real archives) and removed. Returns the folder or tar path.
    """
    import shutil

    rows = list(FERPLUS_ROWS if rows is None else rows)
    root = Path(root)
    folder = root / split_folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "label.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    if images:
        rng = np.random.RandomState(seed)
        for row in rows:
            name = row.split(",", 1)[0].strip()
            if name.endswith(".png"):
                Image.fromarray(rng.randint(0, 256, (48, 48), dtype=np.uint8), mode="L").save(folder / name)
    if not as_tar:
        return folder
    tar_path = root / f"{split_folder}.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(folder, arcname=split_folder)
    shutil.rmtree(folder)
    return tar_path


@pytest.fixture
def ferplus_rows() -> List[str]:
    """The default label.csv rows of the FER+ fixture (a copy; see :data:`FERPLUS_ROWS`)."""
    return list(FERPLUS_ROWS)


@pytest.fixture
def ferplus_writer(tmp_path) -> Callable[..., Path]:
    """``ferplus_writer(rows=None, as_tar=False, split_folder="FER2013Test", root=tmp_path)`` -> split path."""

    def _write(rows=None, as_tar=False, split_folder="FER2013Test", root=None, **kw) -> Path:
        return write_ferplus_split(Path(root) if root else tmp_path, split_folder, rows, as_tar=as_tar, **kw)

    return _write


def ferplus_data_dir() -> Optional[Path]:
    """The shared real FER+ folder: ``$EMOCAP_FERPLUS``, else ``<repo>/../shared/data/ferplus``; None if absent."""
    candidates = [os.environ.get("EMOCAP_FERPLUS"), str(REPO_ROOT.parent / "shared" / "data" / "ferplus")]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def ferplus_dir() -> Path:
    """Path to the real FER+ data; skips the test with a clear message when it is not there."""
    path = ferplus_data_dir()
    if path is None:
        pytest.skip(
            "real FER+ data not found: set EMOCAP_FERPLUS to the folder holding FER2013{Train,Valid,Test}(.tar) "
            f"or place it at {REPO_ROOT.parent / 'shared' / 'data' / 'ferplus'}"
        )
    return path


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory):
    """48 tiny FER+-format train faces (16 in valid) in four classes with clear majorities, captioned into
    shards of 20: ``(FER+ root, shard folder)``, for training tests."""
    from emocap.captioning.shards import build_captions
    from emocap.captioning.sources import ferplus_source

    root = tmp_path_factory.mktemp("fer")
    rows = []
    for i in range(48):
        votes = [0] * 10
        votes[i % 4] = 7  # four classes, clear majorities
        votes[(i + 1) % 4] = 3
        rows.append(f'fer{i:07d}.png,"(0, 0, 48, 48)",' + ",".join(map(str, votes)))
    write_ferplus_split(root, "FER2013Train", rows)
    write_ferplus_split(root, "FER2013Valid", rows[:16], seed=1)
    samples, _ = ferplus_source(str(root), "train")
    out = root / "shards"
    build_captions(samples, out, shard_size=20, progress=False)
    return root, out


def write_random_face_folder(root: Path, seed: int, classes=("happy", "sad", "angry"), per_class: int = 4) -> Path:
    """An ImageFolder of random 36x36 colour images, ``per_class`` per class folder (seeded), for eval CLI tests."""
    rng = np.random.RandomState(seed)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.randint(0, 256, (36, 36, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


MEDIA = REPO_ROOT.parent / "shared" / "data" / "media"


def media_file(name: str) -> Path:
    """A file of the shared real-media folder (photos and videos); skips naming the expected path when absent."""
    path = MEDIA / name
    if not path.is_file():
        pytest.skip(f"shared media not found: expected {path} (see ../shared/data/media/README.md)")
    return path


def faces_wild_dev() -> Path:
    """The shared faces-wild-dev folder (real photos with labels.csv); skips naming the expected path when absent."""
    folder = REPO_ROOT.parent / "shared" / "data" / "faces-wild-dev"
    if not (folder / "labels.csv").is_file():
        pytest.skip(f"shared data not found: expected {folder}/labels.csv (see ../shared/data/README.md)")
    return folder


def default_sigint() -> None:
    """``preexec_fn`` for child processes that a test interrupts with SIGINT: a test run started in the background
    (``nohup``, ``cmd &`` in a script, some CI runners) inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt; the child gets the default disposition back, as in a terminal."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def fake_hub_cache(folder: Path, cache: Path, repo: str, revision: str = "0" * 40) -> str:
    """``folder``'s files laid out as huggingface_hub's cache holds a downloaded ``repo`` (for offline loads)."""
    import shutil

    base = cache / ("models--" + repo.replace("/", "--"))
    snapshot = base / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for f in folder.iterdir():
        shutil.copy(f, snapshot / f.name)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(revision)
    return repo
