"""BlazeFace detector (core): the raw face detections behind :mod:`emocap.faces`.

Flow: an RGB array -> letterboxed to the model's square input -> OpenCV's TFLite importer runs MediaPipe's
BlazeFace (``emocap/data/face_detector/``, Apache-2.0) -> anchor decoding -> boxes, scores and six keypoints in
the array's pixel coordinates -> non-maximum suppression. Two models: *short range* (128 px input) for faces that
fill much of the picture and *full range* (192 px input) for smaller faces in wider shots. Which to run, padding,
order and framing are decided by :func:`emocap.faces.detect_faces`; this module only runs one model once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import resources
from typing import List, Sequence, Tuple

import numpy as np

try:  # imported here, in the importing thread: cv2's bootstrap is not safe to run first from worker threads
    import cv2
except ImportError:  # pragma: no cover - opencv is a core dependency
    cv2 = None

__all__ = ["RawDetection", "BlazeFace", "KEYPOINT_NAMES", "model_file"]

# OpenCV's TFLite importer is not safe to run in two threads at once (seen here: a spurious "Unsupported operator
# type RELU" error and a crash when the short- and full-range models loaded together): one import at a time
_IMPORT_LOCK = threading.Lock()

# BlazeFace's keypoints, in its output order ("right"/"left" are the person's own sides)
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear", "left_ear")


@dataclass(frozen=True)
class _Spec:
    file: str
    input_size: int
    strides: Tuple[int, ...]
    anchors_per_cell: Tuple[int, ...]


# MediaPipe's SSD anchor settings for the two models: short range has 16x16x2 + 8x8x6 = 896 anchors (the three
# stride-16 layers share one grid), full range 48x48x1 = 2304; every anchor is a unit square at a cell centre
_SPECS = {
    "short": _Spec("face_detection_short_range.tflite", 128, (8, 16), (2, 6)),
    "full": _Spec("face_detection_full_range.tflite", 192, (4,), (1,)),
}


@dataclass(frozen=True)
class RawDetection:
    """One face from one model run: box (x0, y0, x1, y1) and keypoints (6 x 2) in input-array pixels."""

    box: Tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray


def model_file(kind: str) -> str:
    """Path of the bundled ``.tflite`` file for ``kind`` ("short" or "full")."""
    return str(resources.files("emocap.data.face_detector").joinpath(_SPECS[kind].file))


def _anchor_centres(spec: _Spec) -> np.ndarray:
    centres = []
    for stride, per_cell in zip(spec.strides, spec.anchors_per_cell):
        cells = spec.input_size // stride
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs.ravel() + 0.5) / cells, (ys.ravel() + 0.5) / cells], axis=1)
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


class BlazeFace:
    """One BlazeFace model: one OpenCV network, run by one thread at a time (a lock; letterboxing and decoding
    run in parallel). Networks are not created per thread: worker threads come and go with each batch, and an
    OpenCV network made and freed in short-lived threads costs time for nothing."""

    def __init__(self, kind: str = "short", min_score: float = 0.5, nms_iou: float = 0.3):
        if kind not in _SPECS:
            raise ValueError(f"BlazeFace kind must be one of {sorted(_SPECS)}, got {kind!r}")
        if cv2 is None:  # pragma: no cover - opencv is a core dependency
            raise RuntimeError("face detection needs opencv-python-headless>=4.8")
        self.kind, self.spec = kind, _SPECS[kind]
        self.min_score, self.nms_iou = min_score, nms_iou
        self.anchors = _anchor_centres(self.spec)
        self._lock = threading.Lock()
        self._network = None
        self._outputs: Tuple[str, ...] = ()

    def _forward(self, blob: np.ndarray) -> dict:
        with self._lock:
            if self._network is None:
                with _IMPORT_LOCK:
                    self._network = cv2.dnn.readNetFromTFLite(model_file(self.kind))
                self._outputs = tuple(self._network.getUnconnectedOutLayersNames())
            self._network.setInput(blob)
            return dict(zip(self._outputs, self._network.forward(list(self._outputs))))

    def __call__(self, rgb: np.ndarray) -> List[RawDetection]:
        """Faces in an ``H x W x 3`` uint8 RGB array, best score first."""
        height, width = rgb.shape[:2]
        side = max(height, width)
        top, left = (side - height) // 2, (side - width) // 2
        size = self.spec.input_size
        scale = size / side
        inner_h, inner_w = max(1, round(height * scale)), max(1, round(width * scale))
        canvas = np.zeros((size, size, 3), np.float32)  # letterbox: keeps the aspect, pads with black
        y0, x0 = round(top * scale), round(left * scale)
        resized = cv2.resize(rgb, (inner_w, inner_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        canvas[y0:y0 + inner_h, x0:x0 + inner_w] = resized.astype(np.float32) / 127.5 - 1.0
        outputs = self._forward(np.ascontiguousarray(canvas.transpose(2, 0, 1)[None]))
        regressors = next(v for k, v in outputs.items() if "regress" in k).reshape(-1, 16)
        logits = next(v for k, v in outputs.items() if "class" in k).reshape(-1)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80.0, 80.0)))
        keep = np.flatnonzero(scores >= self.min_score)
        if keep.size == 0:
            return []
        offsets = regressors[keep] / size  # in units of the letterboxed square
        anchors = self.anchors[keep]
        cx, cy = offsets[:, 0] + anchors[:, 0], offsets[:, 1] + anchors[:, 1]
        half_w, half_h = offsets[:, 2] / 2, offsets[:, 3] / 2
        # unit square -> letterbox pixels -> the array's pixels (remove the padding offset)
        to_px = size / scale
        boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1) * to_px
        boxes -= np.array([x0, y0, x0, y0], np.float32) / scale
        keypoints = (offsets[:, 4:].reshape(-1, 6, 2) + anchors[:, None, :]) * to_px
        keypoints -= np.array([x0, y0], np.float32) / scale
        chosen = _nms(boxes, scores[keep], self.nms_iou)
        return [RawDetection(tuple(float(v) for v in boxes[i]), float(scores[keep][i]), keypoints[i]) for i in chosen]


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> Sequence[int]:
    """Indices kept by greedy non-maximum suppression, best score first."""
    rects = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes]
    kept = cv2.dnn.NMSBoxes(rects, [float(s) for s in scores], 0.0, iou)
    order = np.asarray(kept, dtype=int).reshape(-1)
    return sorted(order.tolist(), key=lambda i: -scores[i])
