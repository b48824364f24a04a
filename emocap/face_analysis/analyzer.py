"""Face analysis: image bytes -> (detect, align, crop) -> landmarks -> AU intensities and face states.

Core, behind the analysis extra (dlib): the evidence side of the caption flow (image -> **analysis** -> facts ->
writer -> shards), the public ``emocap.analyze_face`` (``api.py``) and eval's face slices (``emocap eval --slices
face``) all use it. ``FaceAnalyzer`` ties a landmark backend (``landmarks.py``) to the geometry
(``action_units.py``); :meth:`FaceAnalyzer.analyze` is the one path from an image to AU estimates:

- pre-aligned crops (``detect=False``, e.g. FER+) skip detection: the whole image is the face box;
- a caller's face box (``box=``, any detector) skips detection and is aligned and cropped like a detected face;
- full photos (``detect=True``): the largest detected face is aligned (eyes level) and cropped, and that crop is
  what the shard stores;
- a dataset's own landmarks win over the backend's, its own AU codes over the estimates (``emocap.captioning.facts``).

AU intensities need a rest-face reference. ``build_reference`` picks it deterministically from the sample list
(neutral-labelled faces where there are enough, else all faces, evenly spaced), so every process of a split job
computes the same one without talking to the others; a dataset with fewer than 30 readable faces uses the bundled
reference (``emocap/data/au_reference_dlib68.json``: 2000 neutral FER+ train faces). Per-identity references come
from an identity's own neutral-labelled images (or all of its images) where a dataset names identities.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .action_units import FaceReading, Reference, au_intensities, read_face
from .landmarks import LandmarkBackend, make_backend

MIN_NEUTRAL_FACES = 30
MIN_REFERENCE_FACES = 30  # fewer readable faces than this: use the bundled reference
IDENTITY_MIN_IMAGES = 3


class NoFaceFound(ValueError):
    """The detector found no face, or the landmarks do not fit one."""


def decode_rgb(data: bytes) -> np.ndarray:
    """Image bytes -> upright uint8 RGB array (raises ValueError on unreadable data)."""
    from emocap.images import load_image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return np.asarray(load_image(im))
    except Exception as e:
        raise ValueError(f"unreadable image ({e})") from None


def align_face(rgb: np.ndarray, pts: np.ndarray, size: int = 224) -> Tuple[np.ndarray, np.ndarray]:
    """Rotate, scale and crop so the eyes are level at 38% height, 0.36 * size apart; returns (crop, points)."""
    import cv2

    right_eye = pts[36:42].mean(axis=0)
    left_eye = pts[42:48].mean(axis=0)
    d = left_eye - right_eye
    angle = np.degrees(np.arctan2(d[1], d[0]))
    scale = (0.36 * size) / max(float(np.hypot(*d)), 1e-6)
    centre = (right_eye + left_eye) / 2.0
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), float(scale))
    m[0, 2] += size / 2.0 - centre[0]
    m[1, 2] += 0.38 * size - centre[1]
    crop = cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    moved = np.c_[pts, np.ones(len(pts))] @ m.T
    return crop, moved.astype(np.float32)


def _plausible(pts: np.ndarray, box: Tuple[int, int, int, int]) -> bool:
    """Landmarks that fit a face in ``box``: inside it (with slack), eyes apart, eyes above the mouth."""
    x0, y0, x1, y1 = box
    side = float(max(x1 - x0, y1 - y0))
    iod = float(np.hypot(*(pts[42:48].mean(axis=0) - pts[36:42].mean(axis=0))))
    eyes_y = pts[36:48, 1].mean()
    mouth_y = pts[48:68, 1].mean()
    slack = 0.25 * side
    inside = (pts[:, 0] > x0 - slack).all() and (pts[:, 0] < x1 + slack).all() and \
        (pts[:, 1] > y0 - slack).all() and (pts[:, 1] < y1 + slack).all()
    return bool(inside and iod > 0.12 * side and mouth_y > eyes_y)


def _clip_box(box: Sequence[float], w: int, h: int) -> Tuple[int, int, int, int]:
    """A caller's face box as integer pixels inside the image; ValueError when nothing of it is inside."""
    if len(box) != 4:
        raise ValueError(f"a face box is (x0, y0, x1, y1), got {len(box)} values")
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ValueError(f"face box {list(box)} lies outside the {w}x{h} image or is empty")
    return x0, y0, x1, y1


@dataclass
class Analysis:
    """The face analysis of one sample: the reading, the aligned crop that replaces a full photo, and the AUs.

    ``reading`` is what captions use (for full photos it is read on the aligned crop); ``image_landmarks`` and
    ``image_size`` place the face in the input image. ``aus`` / ``reference_basis`` are set by
    :meth:`FaceAnalyzer.analyze` (``None`` / ``"none"`` before, or without a reference).
    """

    reading: FaceReading
    crop: Optional[np.ndarray] = None
    image_landmarks: Optional[np.ndarray] = None
    image_size: Optional[Tuple[int, int]] = None
    aus: Optional[Dict[int, float]] = None
    reference_basis: str = "none"

    @property
    def crop_png(self) -> Optional[bytes]:
        """The aligned crop as PNG bytes (full photos), else None."""
        if self.crop is None:
            return None
        buf = io.BytesIO()
        Image.fromarray(self.crop).save(buf, format="PNG")
        return buf.getvalue()

    def to_dict(self, reference_basis: str) -> dict:
        r = self.reading
        out = {
            "landmark_source": r.landmark_source,
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in r.landmarks],
            **r.states(),
            "teeth_fraction": r.teeth[1],
            "reference": reference_basis,
        }
        if r.box is not None:
            out["box"] = [int(v) for v in r.box]
        return out


class FaceAnalyzer:
    """Landmarks + geometry for samples; ``detect=True`` for full photos (detect, align, crop)."""

    def __init__(self, backend: "LandmarkBackend | str" = "dlib", detect: bool = False, crop_size: int = 224):
        self.backend = make_backend(backend) if isinstance(backend, str) else backend
        self.detect = bool(detect)
        self.crop_size = int(crop_size)
        self.reference: Optional[Reference] = None
        self.identity_references: Dict[str, Reference] = {}

    @property
    def name(self) -> str:
        return f"{self.backend.name}{'+detect' if self.detect else ''}"

    def read(self, data: bytes, landmarks: Optional[Sequence[Sequence[float]]] = None,
             box: Optional[Sequence[float]] = None) -> Analysis:
        """Landmarks (the dataset's own when given) and the face reading of one image; raises NoFaceFound."""
        return self.read_rgb(decode_rgb(data), landmarks, box)

    def read_rgb(self, rgb: np.ndarray, landmarks: Optional[Sequence[Sequence[float]]] = None,
                 box: Optional[Sequence[float]] = None) -> Analysis:
        """:meth:`read` on a decoded uint8 RGB array. ``box`` (x0, y0, x1, y1): the face is there, no detection;
        without it a ``detect=True`` analyzer detects the largest face and a ``detect=False`` one reads the whole
        image as the face. Full photos and given boxes are aligned and cropped; the reading is on the crop."""
        h, w = rgb.shape[:2]
        if landmarks is not None:
            pts = np.asarray(landmarks, dtype=np.float32)
            if pts.shape != (68, 2):
                raise ValueError(f"annotated landmarks must be 68 (x, y) points, got shape {pts.shape}")
            return Analysis(read_face(pts, rgb, landmark_source="annotation"), image_landmarks=pts, image_size=(w, h))
        gray = np.asarray(Image.fromarray(rgb).convert("L"))
        if box is None and not self.detect:
            pts = self.backend.landmarks(gray, None)
            if pts is None or not _plausible(pts, (0, 0, w, h)):
                raise NoFaceFound("no face found (the landmark model does not fit a face in this crop)")
            return Analysis(read_face(pts, rgb), image_landmarks=pts, image_size=(w, h))
        if box is None:
            boxes = self.backend.detect(rgb)  # colour, as classify and eval detect: the same boxes
            if not boxes:
                raise NoFaceFound("no face found by the detector")
            box = boxes[0]
        else:
            box = _clip_box(box, w, h)
        pts = self.backend.landmarks(gray, box)
        if pts is None or not _plausible(pts, box):
            raise NoFaceFound("no face found (landmarks do not fit the detected box)")
        crop, crop_pts = align_face(rgb, pts, self.crop_size)
        return Analysis(read_face(crop_pts, crop, box=box), crop=crop, image_landmarks=pts, image_size=(w, h))

    def analyze(self, image: "bytes | np.ndarray", landmarks: Optional[Sequence[Sequence[float]]] = None,
                identity: Optional[str] = None, box: Optional[Sequence[float]] = None) -> Analysis:
        """Reading plus AU intensities (against the identity's or the dataset's reference) of one face.

        The one path from an image to AU estimates: the caption builder and :func:`emocap.face_analysis.analyze_face`
        both call it, so the API reports the numbers captions use. ``image``: encoded bytes or an RGB array.
        """
        if isinstance(image, (bytes, bytearray)):
            analysis = self.read(bytes(image), landmarks, box)
        else:
            analysis = self.read_rgb(np.asarray(image), landmarks, box)
        analysis.aus, analysis.reference_basis = self.aus(analysis.reading, identity)
        return analysis

    def reference_for(self, identity: Optional[str]) -> Optional[Reference]:
        """The identity's rest-face reference, else the dataset's (None before ``build_reference`` found faces)."""
        if identity is not None and identity in self.identity_references:
            return self.identity_references[identity]
        return self.reference

    def aus(self, reading: FaceReading, identity: Optional[str] = None) -> Tuple[Optional[Dict[int, float]], str]:
        """AU intensities of a reading against its identity's (or the dataset's) reference, and that basis.

        Without any reference (no face was readable when it was built) there are no estimates: ``(None, "none")``.
        """
        ref = self.reference_for(identity)
        if ref is None:
            return None, "none"
        return au_intensities(reading.geometry, ref), ref.basis


def _is_neutral(sample) -> bool:
    dist = sample.distribution or {}
    if not dist:
        return False
    from emocap import taxonomy

    best = max(dist, key=dist.get)
    return taxonomy.canonical_or_none(best) == "neutral" and dist[best] >= 0.5


def _evenly(items: Sequence, n: int) -> List:
    if len(items) <= n:
        return list(items)
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in idx]


def _geometries(analyzer: FaceAnalyzer, samples: Sequence) -> List[Dict[str, float]]:
    out = []
    for s in samples:
        try:
            out.append(analyzer.read(s.read_bytes(), s.landmarks).reading.geometry)
        except (OSError, ValueError):
            continue  # unreadable or faceless images simply do not count toward the reference
    return out


def build_reference(analyzer: FaceAnalyzer, samples: Sequence, max_faces: int = 2000, progress: bool = False) -> dict:
    """Set the analyzer's dataset and identity references from ``samples``; returns them as a JSON-ready dict."""
    usable = [s for s in samples if not s.skip_reason]
    neutral = [s for s in usable if _is_neutral(s)]
    pool, basis = (neutral, "dataset neutral-labelled faces") if len(neutral) >= MIN_NEUTRAL_FACES else (usable, "dataset, all faces")
    chosen = _evenly(pool, max_faces)
    if progress:
        from tqdm.auto import tqdm

        chosen = tqdm(chosen, desc="rest-face reference", unit="img")
    geoms = _geometries(analyzer, chosen)
    if not geoms:
        raise NoFaceFound("no face could be read in any sample chosen for the rest-face reference")
    if len(geoms) < MIN_REFERENCE_FACES:  # too few faces for robust statistics: the bundled FER+ rest faces
        analyzer.reference = bundled_reference()
    else:
        analyzer.reference = Reference.from_geometries(geoms, basis=basis)
    by_identity: Dict[str, List] = {}
    for s in usable:
        if s.identity:
            by_identity.setdefault(s.identity, []).append(s)
    analyzer.identity_references = {}
    for ident, group in sorted(by_identity.items()):
        rest = [s for s in group if _is_neutral(s)]
        basis_i = f"identity {ident}, neutral-labelled images"
        if not rest and len(group) >= IDENTITY_MIN_IMAGES:
            rest, basis_i = group, f"identity {ident}, all images"
        g = _geometries(analyzer, rest[:20])
        if g:
            analyzer.identity_references[ident] = Reference.from_geometries(g, basis=basis_i, spread_from=analyzer.reference)
    return reference_to_dict(analyzer)


def bundled_reference() -> Reference:
    """Rest-face statistics of 2000 neutral-labelled FER+ train faces (dlib 68 points), shipped with emocap."""
    from importlib import resources

    data = json.loads(resources.files("emocap").joinpath("data/au_reference_dlib68.json").read_text(encoding="utf-8"))
    return Reference.from_dict(data)


def reference_to_dict(analyzer: FaceAnalyzer) -> dict:
    return {
        "backend": analyzer.name,
        "dataset": analyzer.reference.to_dict(),
        "identities": {k: v.to_dict() for k, v in analyzer.identity_references.items()},
    }


def load_reference(analyzer: FaceAnalyzer, data: dict) -> None:
    analyzer.reference = Reference.from_dict(data["dataset"])
    analyzer.identity_references = {k: Reference.from_dict(v) for k, v in data.get("identities", {}).items()}
