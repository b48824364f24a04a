"""Tests for emocap.faces (BlazeFace detection through OpenCV, face crops cut at the photo's edges)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from emocap.faces import FaceBox, crop_face, detect_faces


def _inside(face: FaceBox, image: Image.Image) -> bool:
    return 0 <= face.x0 < face.x1 <= image.width and 0 <= face.y0 < face.y1 <= image.height


def test_astronaut_has_one_face(astronaut_image):
    faces = detect_faces(astronaut_image)
    assert len(faces) == 1
    f = faces[0]
    assert _inside(f, astronaut_image)
    w, h = astronaut_image.size
    cx, cy = (f.x0 + f.x1) / 2, (f.y0 + f.y1) / 2
    # the astronaut's face is in the upper middle of the 512x512 portrait
    assert 0.2 * w < cx < 0.7 * w
    assert cy < 0.5 * h
    side = f.x1 - f.x0
    assert 0.1 * w < side < 0.5 * w
    assert f.score > 0
    d = f.to_dict()
    assert d["box"] == [f.x0, f.y0, f.x1, f.y1] and isinstance(d["score"], float)


def test_large_photo_is_downscaled_and_boxes_scaled_back(astronaut_image):
    small = detect_faces(astronaut_image)[0]
    big_image = astronaut_image.resize((2048, 2048), Image.BILINEAR)  # 4x, detected at max_side
    faces = detect_faces(big_image, max_side=512)
    assert len(faces) == 1
    # the largest face at the default max_side
    largest = detect_faces(big_image)[0]
    for big in (faces[0], largest):
        assert _inside(big, big_image)
        # the box is in full-resolution pixels: about 4x the box found at 512 px
        for a, b in zip(big.box, small.box):
            assert abs(a - 4 * b) <= 0.1 * 4 * (small.x1 - small.x0)


def test_plain_gray_image_has_no_face():
    assert detect_faces(Image.new("RGB", (200, 200), (128, 128, 128))) == []
    assert detect_faces(Image.new("RGB", (30, 30), (0, 0, 0))) == []


def test_faces_sorted_largest_first(astronaut_image):
    # two copies of the face at different sizes, side by side on a gray canvas
    f = detect_faces(astronaut_image)[0]
    crop = crop_face(astronaut_image, f, margin=0.5)
    canvas = Image.new("RGB", (900, 500), (128, 128, 128))
    canvas.paste(crop.resize((220, 220)), (20, 150))  # a face about 100 px wide in a 900 px canvas
    canvas.paste(crop.resize((360, 360)), (450, 60))
    faces = detect_faces(canvas)
    assert len(faces) == 2
    areas = [(b.x1 - b.x0) * (b.y1 - b.y0) for b in faces]
    assert areas[0] > areas[1]
    assert faces[0].x0 >= 450 and faces[1].x1 <= 220 + 20


def _expected_crop(face, margin, size):
    side = max(face.x1 - face.x0, face.y1 - face.y0) * (1 + 2 * margin)
    cx, cy = (face.x0 + face.x1) / 2, (face.y0 + face.y1) / 2
    x0, y0 = max(round(cx - side / 2), 0), max(round(cy - side / 2), 0)
    x1, y1 = min(round(cx + side / 2), size[0]), min(round(cy + side / 2), size[1])
    return x1 - x0, y1 - y0


@pytest.mark.parametrize(
    "box, margin",
    [
        ((40, 40, 60, 60), 0.2),  # well inside: square 28 px crop
        ((0, 0, 50, 50), 0.5),  # top-left corner: clipped at 0
        ((80, 70, 100, 100), 0.5),  # bottom-right: clipped at the image size
        ((-10, -10, 110, 90), 0.2),  # larger than the image
    ],
)
def test_crop_face_clips_to_image(box, margin):
    image = Image.new("RGB", (100, 100), (1, 2, 3))
    face = FaceBox(*box, score=1.0)
    crop = crop_face(image, face, margin=margin)
    w, h = crop.size
    assert 0 < w <= image.width and 0 < h <= image.height
    assert crop.size == _expected_crop(face, margin, image.size)
    # only real pixels (a crop outside the image would be padded with black)
    assert set(map(tuple, np.asarray(crop).reshape(-1, 3))) == {(1, 2, 3)}


def test_crop_face_square_inside():
    image = Image.new("RGB", (300, 300))
    crop = crop_face(image, FaceBox(100, 100, 160, 140, 1.0), margin=0.25)
    assert crop.size == (90, 90)  # max(60, 40) * 1.5
