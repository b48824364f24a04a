"""Action units, head pose, eyes, mouth and teeth from 68 landmarks (geometry, no learned AU model).

Second part of face analysis (landmarks -> **action units**), core; the caption flow turns its readings into facts.

1. ``face_geometry`` turns 68 points into named distances in a face-normalised frame: the eye line is rotated to
   horizontal, the origin is the midpoint between the eye centres and the unit is the inter-ocular distance, so
   face size, position and roll cancel out.
2. A :class:`Reference` holds robust statistics (median, MAD-based spread) of each distance over faces taken as
   "at rest": an identity's neutral-labelled images where a dataset has identities, else the dataset's
   neutral-labelled faces, else all its faces.
3. ``au_intensities`` reads each AU as the standardised departure of its distances from the reference, mapped to
   0..1 (``z`` of ``Z_START`` spreads = 0, ``Z_FULL`` spreads = 1). AU25 (lips part) is absolute: the inner lips
   are apart or they are not.

Landmark geometry sees shape, not texture: AU6 (cheek raiser), AU9 (nose wrinkler) and AU14 (dimpler) are
proxies (lower-lid lift with a smile; nose shortening with upper-lip lift; one-sided lip-corner pull). The AU
validity tables in ``docs/face_analysis.md`` show how each behaves on real FER+ faces and video.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np

# Distances measured on every face (face-normalised frame, unit = inter-ocular distance; y grows downwards).
FEATURES: Tuple[str, ...] = (
    "brow_inner_height",   # inner brow ends above the eye line
    "brow_outer_height",   # outer brow ends above the eye line
    "brow_gap",            # distance between the inner brow ends
    "eye_opening",         # upper to lower lid
    "lower_lid_drop",      # lower lid below the eye corners (shrinks when the lower lid is pushed up)
    "nose_length",         # eye line to the bottom of the nose
    "nose_to_upper_lip",   # bottom of the nose to the top of the upper lip
    "mouth_width",         # lip corner to lip corner
    "corner_lift",         # lip corners above the middle of the mouth (negative: corners down)
    "corner_asymmetry",    # height difference of the two lip corners
    "lip_thickness",       # red of the upper plus the lower lip
    "lip_gap",             # inner lips apart
    "chin_to_lower_lip",   # bottom of the lower lip to the chin
    "nose_to_chin",        # bottom of the nose to the chin (jaw opening)
)

AUS: Tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26)

# AU -> ((feature, direction, weight), ...): the AU's reading is the weighted mean of direction * z, clipped at 0.
AU_RULES: Dict[int, Tuple[Tuple[str, int, float], ...]] = {
    1: (("brow_inner_height", +1, 1.0),),
    2: (("brow_outer_height", +1, 1.0),),
    4: (("brow_inner_height", -1, 0.8), ("brow_gap", -1, 0.2)),
    5: (("eye_opening", +1, 1.0),),
    6: (("lower_lid_drop", -1, 0.5), ("corner_lift", +1, 0.5)),
    7: (("lower_lid_drop", -1, 0.5), ("eye_opening", -1, 0.5)),
    9: (("nose_length", -1, 0.5), ("nose_to_upper_lip", -1, 0.5)),
    10: (("nose_to_upper_lip", -1, 1.0),),
    12: (("corner_lift", +1, 0.7), ("mouth_width", +1, 0.3)),
    14: (("corner_asymmetry", +1, 1.0),),
    15: (("corner_lift", -1, 1.0),),
    17: (("chin_to_lower_lip", -1, 1.0),),
    20: (("mouth_width", +1, 0.7), ("corner_lift", -1, 0.3)),
    23: (("lip_thickness", -1, 0.6), ("mouth_width", -1, 0.4)),
    26: (("nose_to_chin", +1, 0.5), ("lip_gap", +1, 0.5)),
}
Z_START = 1.0  # spreads from rest where an AU starts to count
Z_FULL = 4.0   # spreads from rest where it reaches full intensity
LIPS_APART = 0.07  # inner-lip gap (inter-ocular units) where AU25 starts
LIPS_WIDE = 0.30   # ... and where it is at full intensity
MOUTH_OPEN_GAP = LIPS_APART + 0.2 * (LIPS_WIDE - LIPS_APART)  # "mouth open" state = AU25 at intensity >= 0.2
MIN_SPREAD = 1e-3


def _rotate_to_eye_line(pts: np.ndarray) -> Tuple[np.ndarray, float, float]:
    """Points in the face frame (eyes level, origin between the eyes, unit inter-ocular), roll (deg), IOD (px)."""
    right_eye = pts[36:42].mean(axis=0)
    left_eye = pts[42:48].mean(axis=0)
    d = left_eye - right_eye
    iod = float(np.hypot(*d))
    if iod < 1e-6:
        raise ValueError("degenerate landmarks: the two eyes coincide")
    angle = float(np.arctan2(d[1], d[0]))
    c, s = np.cos(-angle), np.sin(-angle)
    rot = np.array([[c, -s], [s, c]], dtype=np.float64)
    centre = (right_eye + left_eye) / 2.0
    frame = (pts.astype(np.float64) - centre) @ rot.T / iod
    return frame, float(np.degrees(angle)), iod


def face_geometry(pts: np.ndarray) -> Dict[str, float]:
    """The ``FEATURES`` distances of one face (68 x 2 landmarks in pixels)."""
    p, _, _ = _rotate_to_eye_line(np.asarray(pts, dtype=np.float64))
    y = p[:, 1]
    x = p[:, 0]

    def dist(a: int, b: int) -> float:
        return float(np.hypot(*(p[a] - p[b])))

    eye_opening = (dist(37, 41) + dist(38, 40) + dist(43, 47) + dist(44, 46)) / 4.0
    corners_y = (y[36] + y[39] + y[42] + y[45]) / 4.0
    lower_lid_y = (y[40] + y[41] + y[46] + y[47]) / 4.0
    mouth_mid_y = (y[51] + y[57] + y[62] + y[66]) / 4.0
    return {
        "brow_inner_height": float(-(y[20] + y[21] + y[22] + y[23]) / 4.0),
        "brow_outer_height": float(-(y[17] + y[18] + y[25] + y[26]) / 4.0),
        "brow_gap": float(x[22] - x[21]),
        "eye_opening": eye_opening,
        "lower_lid_drop": float(lower_lid_y - corners_y),
        "nose_length": float(y[33]),
        "nose_to_upper_lip": float(y[51] - y[33]),
        "mouth_width": dist(48, 54),
        "corner_lift": float(mouth_mid_y - (y[48] + y[54]) / 2.0),
        "corner_asymmetry": float(abs(y[48] - y[54])),
        "lip_thickness": float((y[62] - y[51]) + (y[57] - y[66])),
        "lip_gap": float(max(0.0, y[66] - y[62])),
        "chin_to_lower_lip": float(y[8] - y[57]),
        "nose_to_chin": float(y[8] - y[33]),
    }


@dataclass
class Reference:
    """Rest-face statistics of every feature: median and robust spread (1.4826 * MAD), from ``count`` faces."""

    median: Dict[str, float]
    spread: Dict[str, float]
    count: int
    basis: str = "dataset"  # what the faces were: e.g. "dataset neutral-labelled", "identity S010"

    @classmethod
    def from_geometries(cls, geometries: Iterable[Mapping[str, float]], basis: str = "dataset",
                        spread_from: Optional["Reference"] = None) -> "Reference":
        rows = [[g[f] for f in FEATURES] for g in geometries]
        if not rows:
            raise ValueError(f"no faces to build a reference from ({basis})")
        a = np.asarray(rows, dtype=np.float64)
        med = np.median(a, axis=0)
        if spread_from is not None:  # an identity has too few images for its own spread: borrow the dataset's
            spread = np.array([spread_from.spread[f] for f in FEATURES])
        else:
            spread = np.maximum(1.4826 * np.median(np.abs(a - med), axis=0), MIN_SPREAD)
        return cls(
            median={f: float(v) for f, v in zip(FEATURES, med)},
            spread={f: float(v) for f, v in zip(FEATURES, spread)},
            count=len(rows), basis=basis,
        )

    def to_dict(self) -> dict:
        """Full precision (JSON floats round-trip exactly): a caption run resumed from its saved reference.json
        must read the same AU values as the run that built it (rounding here once changed 150 of them)."""
        return {"basis": self.basis, "count": self.count,
                "median": dict(self.median), "spread": dict(self.spread)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Reference":
        missing = [f for f in FEATURES if f not in d.get("median", {}) or f not in d.get("spread", {})]
        if missing:
            raise ValueError(f"reference statistics lack features: {', '.join(missing)}")
        return cls(median=dict(d["median"]), spread=dict(d["spread"]), count=int(d.get("count", 0)),
                   basis=str(d.get("basis", "dataset")))


def _band(z: float) -> float:
    return float(np.clip((z - Z_START) / (Z_FULL - Z_START), 0.0, 1.0))


def au_intensities(geometry: Mapping[str, float], reference: Reference) -> Dict[int, float]:
    """0..1 intensity of every AU in ``AUS`` for one face, against a rest-face reference."""
    z = {f: (geometry[f] - reference.median[f]) / reference.spread[f] for f in FEATURES}
    out: Dict[int, float] = {}
    for au, rule in AU_RULES.items():
        total = sum(w for _, _, w in rule)
        score = sum(w * max(0.0, d * z[f]) for f, d, w in rule) / total
        out[au] = _band(score)
    # A smile widens the mouth too: lip stretching counts only beyond what the lip-corner pull explains.
    out[20] = max(0.0, out[20] - out[12])
    gap = geometry["lip_gap"]
    out[25] = float(np.clip((gap - LIPS_APART) / (LIPS_WIDE - LIPS_APART), 0.0, 1.0)) if gap > LIPS_APART else 0.0
    return {au: round(out[au], 3) for au in AUS}


# A generic 3D face (millimetres; x right, y up, z towards the camera) for head pose from six landmarks.
_MODEL_POINTS = np.array([
    (0.0, 0.0, 0.0),          # 30 nose tip
    (0.0, -63.6, -12.5),      # 8 chin
    (-43.3, 32.7, -26.0),     # 36 right eye outer corner (image left)
    (43.3, 32.7, -26.0),      # 45 left eye outer corner
    (-28.9, -28.9, -24.1),    # 48 right mouth corner
    (28.9, -28.9, -24.1),     # 54 left mouth corner
], dtype=np.float64)
_POSE_IDX = (30, 8, 36, 45, 48, 54)


def eye_line_roll(pts: np.ndarray) -> float:
    """Roll in degrees: the tilt of the line from the right to the left eye centre (positive: clockwise in the image)."""
    return _rotate_to_eye_line(np.asarray(pts, dtype=np.float64))[1]


def head_pose(pts: np.ndarray, image_size: Tuple[int, int]) -> Dict[str, float]:
    """Yaw, pitch, roll in degrees (PnP against a generic 3D face; roll from the eye line)."""
    import cv2

    w, h = image_size
    f = float(max(w, h))
    camera = np.array([[f, 0, w / 2.0], [0, f, h / 2.0], [0, 0, 1]], dtype=np.float64)
    image_points = np.asarray(pts, dtype=np.float64)[list(_POSE_IDX)]
    ok, rvec, _ = cv2.solvePnP(_MODEL_POINTS, image_points, camera, np.zeros(4), flags=cv2.SOLVEPNP_ITERATIVE)
    _, roll, _ = _rotate_to_eye_line(np.asarray(pts, dtype=np.float64))
    if not ok:
        return {"yaw": 0.0, "pitch": 0.0, "roll": round(roll, 1), "ok": False}
    rot, _ = cv2.Rodrigues(rvec)
    # the model's y axis points up while the image's points down: flip before reading angles
    r = rot @ np.diag([1.0, -1.0, -1.0])
    sy = np.hypot(r[0, 0], r[1, 0])
    pitch = np.degrees(np.arctan2(r[2, 1], r[2, 2]))
    yaw = np.degrees(np.arctan2(-r[2, 0], sy))
    pitch = (pitch + 180.0) % 360.0 - 180.0
    if pitch > 90:
        pitch -= 180
    elif pitch < -90:
        pitch += 180
    return {"yaw": round(float(yaw), 1), "pitch": round(float(pitch), 1), "roll": round(roll, 1), "ok": True}


def eye_aspect_ratio(pts: np.ndarray) -> float:
    """Mean eye aspect ratio of both eyes (about 0.3 open, below about 0.15 closed)."""
    p = np.asarray(pts, dtype=np.float64)

    def one(e: List[int]) -> float:
        width = np.hypot(*(p[e[0]] - p[e[3]]))
        return (np.hypot(*(p[e[1]] - p[e[5]])) + np.hypot(*(p[e[2]] - p[e[4]]))) / (2.0 * max(width, 1e-6))

    return float((one(list(range(36, 42))) + one(list(range(42, 48)))) / 2.0)


def teeth_visible(rgb: np.ndarray, pts: np.ndarray, min_fraction: float = 0.25) -> Tuple[bool, float]:
    """Whether teeth show: the share of bright, low-saturation pixels inside the inner-lip polygon.

    "Bright" is relative to the face (above the 75th percentile of the face's own brightness and at least 100),
    so a dark photo's teeth still count while the dark mouth cavity does not.
    """
    import cv2

    img = np.asarray(rgb)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    poly = np.round(np.asarray(pts, dtype=np.float64)[60:68]).astype(np.int32)
    mask = np.zeros(img.shape[:2], dtype=np.uint8)
    cv2.fillPoly(mask, [poly], 1)
    inside = mask.astype(bool)
    if inside.sum() < 4:
        return False, 0.0
    hsv = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2HSV)
    face = np.round(np.asarray(pts, dtype=np.float64)).astype(np.int32)
    x0, y0 = np.clip(face.min(axis=0), 0, None)
    x1, y1 = face.max(axis=0)
    face_v = hsv[y0:y1 + 1, x0:x1 + 1, 2]
    bright = max(100.0, float(np.percentile(face_v, 75))) if face_v.size else 100.0
    v, s = hsv[..., 2][inside], hsv[..., 1][inside]
    frac = float(np.mean((v >= bright) & (s <= 70)))
    return frac >= min_fraction, round(frac, 3)


@dataclass
class FaceReading:
    """Everything the geometry says about one face."""

    landmarks: np.ndarray
    geometry: Dict[str, float]
    pose: Dict[str, float]
    eye_aspect_ratio: float
    lip_gap: float
    teeth: Tuple[bool, float]
    landmark_source: str = "estimate"
    box: Optional[Tuple[int, int, int, int]] = None
    aus: Dict[int, float] = field(default_factory=dict)

    def states(self) -> Dict[str, object]:
        """Plain facts: head pose, eyes open/closed, mouth open, teeth visible."""
        ear = self.eye_aspect_ratio
        eyes = "closed" if ear < 0.13 else ("narrowed" if ear < 0.2 else ("wide open" if ear > 0.38 else "open"))
        return {
            "head_pose": {k: self.pose[k] for k in ("yaw", "pitch", "roll")},
            "eye_openness": round(ear, 3),
            "eyes": eyes,
            "mouth_open": bool(self.lip_gap >= MOUTH_OPEN_GAP),
            "teeth_visible": bool(self.teeth[0]),
        }


def read_face(pts: np.ndarray, rgb: np.ndarray, landmark_source: str = "estimate",
              box: Optional[Tuple[int, int, int, int]] = None) -> FaceReading:
    """Geometry, pose, eyes, mouth and teeth of one face (AUs are added once a reference is known)."""
    pts = np.asarray(pts, dtype=np.float32)
    if pts.shape != (68, 2) or not np.isfinite(pts).all():
        raise ValueError(f"expected 68 finite (x, y) landmarks, got shape {pts.shape}")
    geometry = face_geometry(pts)
    h, w = rgb.shape[:2]
    return FaceReading(
        landmarks=pts, geometry=geometry, pose=head_pose(pts, (w, h)), eye_aspect_ratio=eye_aspect_ratio(pts),
        lip_gap=geometry["lip_gap"], teeth=teeth_visible(rgb, pts), landmark_source=landmark_source, box=box,
    )
