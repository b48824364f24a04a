"""The ONNX runtime without torch: no torch/torchvision/open_clip in the process, and the same numbers as torch.

The torch-free pieces (emocap/onnx_tokenizer.py, emocap/onnx_preprocess.py, emocap/label_pairs.py, the numpy
OnnxRuntime) are checked against open_clip's tokenizer, its torchvision transform and the torch runtime, on the
embedded default model and real photos (faces-wild-dev, FER+ test crops, the media photos).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="the onnx extra (pip install 'emocap[onnx]') is not installed")
pytest.importorskip("tokenizers", reason="the onnx extra (pip install 'emocap[onnx]') is not installed")

from emocap.classifier import ZeroShotClassifier, close_label_pairs
from emocap.images import load_image
from emocap.models import load_model
from emocap.onnx_export import export_onnx
from emocap.onnx_files import MANIFEST_NAME, OnnxExportError
from emocap.onnx_preprocess import ImageTransform
from emocap.onnx_tokenizer import TOKENIZER_FILE, ClipTokenizer, clean_text

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
WILD = DATA / "faces-wild-dev" / "images"
PHOTO = DATA / "media" / "single_face.jpg"
HEAVY = ("torch", "torchvision", "open_clip")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (../shared/data next to the repository)")
    return path


@pytest.fixture(scope="module")
def default_onnx(tmp_path_factory) -> Path:
    return export_onnx(None, tmp_path_factory.mktemp("light") / "emocap-default-onnx")


@pytest.fixture(scope="module")
def default_model():
    return load_model(None)


@pytest.fixture(scope="module")
def wild_images():
    files = sorted(_need(WILD).glob("*/*"))
    return [load_image(f) for f in files[:: max(1, len(files) // 24)][:24]]


@pytest.fixture(scope="module")
def ferplus_crops(ferplus_dir):
    from emocap.ferplus import FerPlusSplit
    from emocap.images import image_from_bytes

    split = FerPlusSplit(str(ferplus_dir), "test")
    try:
        return [image_from_bytes(lambda r=r: split.image_bytes(r), r.name) for r in split.records[:40:5]]
    finally:
        split.close()


def test_onnx_classify_imports_no_torch(default_onnx):
    """A fresh process that classifies a photo through the API and the CLI never loads torch, torchvision, open_clip."""
    photo = _need(PHOTO)
    code = (
        "import json, sys\n"
        "from emocap.classifier import ZeroShotClassifier\n"
        "from emocap.cli import main\n"
        f"clf = ZeroShotClassifier.from_pretrained({str(default_onnx)!r}, runtime='onnx')\n"
        f"faces = clf.predict([{str(photo)!r}], detect_faces=True)[0]\n"
        f"probs = clf.predict_proba([{str(photo)!r}])\n"
        # words outside the taxonomy that WordNet links: bridged from the table, still without torch
        f"words = ZeroShotClassifier.from_pretrained({str(default_onnx)!r}, runtime='onnx',\n"
        "    labels=['irate', 'joyous', 'serene'])\n"
        f"bridged = [b['source'] for b in words.bridged_labels()]\n"
        f"word_top = words.predict([{str(photo)!r}], detect_faces=True)[0][0]['predictions'][0]['label']\n"
        f"code = main(['classify', '--runtime', 'onnx', '--model', {str(default_onnx)!r}, {str(photo)!r}, '-q'])\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(json.dumps({'heavy': heavy, 'faces': len(faces), 'top': faces[0]['predictions'][0]['label'],"
        " 'shape': list(probs.shape), 'code': code, 'bridged': bridged, 'word_top': word_top}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["faces"] == 1 and report["top"] == "happiness" and report["code"] == 0
    assert report["shape"] == [1, 8]
    assert report["bridged"] == ["wordnet"] * 3 and report["word_top"] == "joyous"


def test_light_path_agrees_with_torch_on_real_photos(default_onnx, wild_images, ferplus_crops):
    torch_clf = ZeroShotClassifier.from_pretrained(device="cpu")
    onnx_clf = ZeroShotClassifier.from_pretrained(str(default_onnx), runtime="onnx")
    assert isinstance(onnx_clf.runtime.preprocess(wild_images[0]), np.ndarray)
    for images in (wild_images, ferplus_crops):
        a, b = torch_clf.predict_proba(images), onnx_clf.predict_proba(images)
        assert a.shape == b.shape == (len(images), 8)
        assert np.abs(a - b).max() < 1e-4
    photo = [_need(PHOTO), DATA / "media" / "multi_face.jpg"]
    faces_t, faces_o = torch_clf.predict_faces(photo), onnx_clf.predict_faces(photo)
    assert [[f["box"] for f in fs] for fs in faces_t] == [[f["box"] for f in fs] for fs in faces_o]
    for ft, fo in zip(sum(faces_t, []), sum(faces_o, [])):
        assert [p["label"] for p in ft["predictions"]] == [p["label"] for p in fo["predictions"]]
        assert max(abs(p["score"] - q["score"]) for p, q in zip(ft["predictions"], fo["predictions"])) < 1e-4
    labels = ["joy", "rage", "calm", "astonishment"]  # other labels: the text tower through the light tokenizer
    a = ZeroShotClassifier.from_pretrained(labels=labels, device="cpu").predict_proba(wild_images)
    b = ZeroShotClassifier.from_pretrained(str(default_onnx), labels=labels, runtime="onnx").predict_proba(wild_images)
    assert np.abs(a - b).max() < 1e-4


def test_transform_matches_the_torch_transform(default_model, wild_images, ferplus_crops):
    light = ImageTransform.from_config(default_model.preprocess_cfg)
    worst = 0.0
    for image in wild_images + ferplus_crops:
        for variant in (image, image.convert("L"), image.crop((3, 5, 47, 50)), image.resize((97, 61)),
                        image.resize((20, 33))):
            a, b = default_model.preprocess(variant).numpy(), light(variant)
            assert a.shape == b.shape == (3, 64, 64)
            worst = max(worst, float(np.abs(a - b).max()))
    assert worst < 1e-6  # measured: 0 (the same float32 operations)
    squash = ImageTransform(32, [0.4] * 3, [0.3] * 3, "bilinear", "squash")
    assert squash(wild_images[0]).shape == (3, 32, 32)


def _strings():
    rng = random.Random(3)
    words = ["happiness", "Surprise!!", "don't", "they'll", "it's", "(frown)", "x2", "3.14", "co-operate", "e-mail"]
    return ["", "a photo of a face.", "  Many   spaces\tand\nlines  ", "Hello, World!? ...;:", "café naïve résumé",
            "😀 smiling 😢", "½ ² ﬁ Ⅻ", "“curly” ‘quotes’ — dash", "&amp; &lt;b&gt; &#39;", "ＦＵＬＬＷＩＤＴＨ",
            "Ã©tÃ© mojibake", "a\x07b\x1b[31mred", "日本語 中文 한국어 עברית العربية", "<start_of_text> hi <end_of_text>!",
            "I'M SHOUTING", "a " * 100, "supercalifragilistic" * 20,
            " ".join(rng.choice(words) for _ in range(200))]


def test_tokenizer_ids_equal_open_clip(default_onnx, default_model):
    manifest = json.loads((default_onnx / MANIFEST_NAME).read_text())
    light = ClipTokenizer.load(default_onnx, manifest["tokenizer"])
    texts = _strings()
    prompts = ZeroShotClassifier.from_pretrained(str(default_onnx), runtime="onnx").prompt_set
    texts += [t for label in ("happiness", "contempt", "pain", "joy") for t in prompts.texts_for(label)]
    expected = default_model.tokenizer(texts).numpy()
    got = light(texts)
    assert got.dtype == np.int64 and got.shape == expected.shape == (len(texts), 64)
    assert (got == expected).all()
    assert got[texts.index("a " * 100), -1] == light.eot_token_id  # truncated, end of text last


def test_plain_ascii_skips_ftfy_safely():
    """clean_text skips ftfy for printable ASCII without '&': ftfy leaves such text unchanged."""
    import ftfy

    rng = random.Random(5)
    alphabet = [chr(c) for c in range(32, 127) if chr(c) != "&"]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert ftfy.fix_text(text) == text
        assert clean_text(text) == " ".join(text.split()).lower()


def test_label_pairs_numpy_equal_torch():
    rng = np.random.RandomState(0)
    base = rng.randn(6, 16).astype(np.float32)
    feats = np.repeat(base, 20, axis=0) + 0.05 * rng.randn(120, 16).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    labels = [f"l{i}" for i in range(len(feats))]
    for block, keep in ((None, 1000), (7, 25), (1, 5)):
        a = close_label_pairs(torch.from_numpy(feats), labels, 0.9, block=block, keep=keep)
        b = close_label_pairs(feats, labels, 0.9, block=block, keep=keep)
        assert b[1] == a[1] > 0 and b[0] == a[0]


def test_stored_class_features_serve_the_models_own_labels(default_onnx, tmp_path):
    """The export stores its own labels' class features, as the runtime computes them: scoring those labels opens
    no text session and loads no tokenizer; other labels or prompts go through the text tower."""
    clf = ZeroShotClassifier.from_pretrained(str(default_onnx), runtime="onnx")
    stored = clf.class_text_features()
    assert "text" not in clf.onnx_towers._sessions and "tokenizer" not in clf.model.__dict__
    live = ZeroShotClassifier.from_pretrained(str(default_onnx), runtime="onnx", prompts=clf.prompt_set.to_dict())
    assert live.prompt_set.hash == clf.prompt_set.hash  # same prompts: served from the store too
    other = ZeroShotClassifier.from_pretrained(str(default_onnx), labels=list(reversed(clf.labels)), runtime="onnx")
    assert np.abs(other.class_text_features()[::-1] - stored).max() < 1e-6  # computed live, same numbers
    assert "text" in other.onnx_towers._sessions
    import shutil

    changed = tmp_path / "changed-onnx"
    shutil.copytree(default_onnx, changed)
    (changed / "class_features.json").write_text('{"features": [[0.0]]}')
    with pytest.raises(OnnxExportError, match="class_features.json: missing, or its sha256 differs"):
        ZeroShotClassifier.from_pretrained(str(changed), runtime="onnx").class_text_features()


def test_old_export_without_tokenizer_is_refused(default_onnx, tmp_path):
    import shutil

    old = tmp_path / "old-onnx"
    shutil.copytree(default_onnx, old)
    manifest = json.loads((old / MANIFEST_NAME).read_text())
    del manifest["tokenizer"]
    (old / MANIFEST_NAME).write_text(json.dumps(manifest))
    (old / TOKENIZER_FILE).unlink()
    with pytest.raises(OnnxExportError, match="no tokenizer.*export again: emocap export onnx"):
        ZeroShotClassifier.from_pretrained(str(old), runtime="onnx")
