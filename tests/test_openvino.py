"""``runtime="openvino"``: an ONNX export's towers on OpenVINO's CPU plugin give ONNX Runtime's numbers, without torch.

Skipped where the openvino extra is not installed (pip install 'emocap[openvino]').
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino", reason="the openvino extra (pip install 'emocap[openvino]') is not installed")
pytest.importorskip("onnxruntime", reason="the onnx extra (pip install 'emocap[onnx]') is not installed")
pytest.importorskip("tokenizers", reason="the onnx extra (pip install 'emocap[onnx]') is not installed")

from emocap.classifier import ZeroShotClassifier
from emocap.images import load_image
from emocap.onnx_export import export_onnx
from emocap.onnx_files import OnnxExportError
from emocap.openvino_runtime import OpenVinoTowers

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
WILD = DATA / "faces-wild-dev" / "images"
PHOTO = DATA / "media" / "single_face.jpg"
HEAVY = ("torch", "torchvision", "open_clip", "onnxruntime")


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (../shared/data next to the repository)")
    return path


@pytest.fixture(scope="module")
def default_export(tmp_path_factory) -> Path:
    return export_onnx(None, tmp_path_factory.mktemp("openvino") / "emocap-default-onnx")


@pytest.fixture(scope="module")
def wild_images():
    files = sorted(_need(WILD).glob("*/*"))
    return [load_image(f) for f in files[:: max(1, len(files) // 24)][:24]]


def test_openvino_scores_equal_onnx_runtime(default_export, wild_images):
    onnx_clf = ZeroShotClassifier.from_pretrained(str(default_export), runtime="onnx")
    ov_clf = ZeroShotClassifier.from_pretrained(str(default_export), runtime="openvino")
    assert isinstance(ov_clf.runtime.towers, OpenVinoTowers)
    for batch_size in (1, 64):
        a = onnx_clf.predict_proba(wild_images, batch_size=batch_size)
        b = ov_clf.predict_proba(wild_images, batch_size=batch_size)
        assert a.shape == b.shape == (len(wild_images), 8)
        assert np.abs(a - b).max() < 1e-4
        assert (a.argmax(1) == b.argmax(1)).all()
    features_a, features_b = onnx_clf.encode_images(wild_images), ov_clf.encode_images(wild_images)
    assert np.abs(features_a - features_b).max() < 1e-4
    labels = ["joy", "rage", "calm", "astonishment"]  # not the stored class features: the text tower runs
    texts_a = ZeroShotClassifier.from_pretrained(str(default_export), labels=labels, runtime="onnx")
    texts_b = ZeroShotClassifier.from_pretrained(str(default_export), labels=labels, runtime="openvino")
    assert np.abs(texts_a.class_text_features() - texts_b.class_text_features()).max() < 1e-4
    assert np.abs(texts_a.predict_proba(wild_images) - texts_b.predict_proba(wild_images)).max() < 1e-4


def test_openvino_classify_imports_no_torch(default_export):
    """A fresh process classifying a photo through the API and the CLI loads neither torch nor onnxruntime."""
    photo = _need(PHOTO)
    code = (
        "import json, sys\n"
        "from emocap.classifier import ZeroShotClassifier\n"
        "from emocap.cli import main\n"
        f"clf = ZeroShotClassifier.from_pretrained({str(default_export)!r}, runtime='openvino')\n"
        f"faces = clf.predict([{str(photo)!r}], detect_faces=True)[0]\n"
        f"code = main(['classify', '--runtime', 'openvino', '--model', {str(default_export)!r}, {str(photo)!r}, '-q'])\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(json.dumps({'heavy': heavy, 'faces': len(faces), 'top': faces[0]['predictions'][0]['label'],"
        " 'code': code}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["faces"] == 1 and report["top"] == "happiness" and report["code"] == 0


def test_openvino_refuses_what_onnx_refuses(default_export, tmp_path):
    with pytest.raises(OnnxExportError, match="does not exist"):
        ZeroShotClassifier.from_pretrained(str(tmp_path / "missing"), runtime="openvino")
    with pytest.raises(ValueError, match="no GPU device"):
        ZeroShotClassifier.from_pretrained(str(default_export), runtime="openvino", device="cuda")
