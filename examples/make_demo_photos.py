"""Write the public-domain demo photos (from scikit-image) and the detected face crop into examples/."""

from pathlib import Path

from PIL import Image
from skimage import data

from emocap.faces import crop_face, detect_faces

here = Path(__file__).parent
photo = Image.fromarray(data.astronaut())
photo.save(here / "astronaut.jpg", quality=90)
face = detect_faces(photo)[0]
crop_face(photo, face, margin=0.2).save(here / "astronaut_face.png")
print(f"wrote {here / 'astronaut.jpg'} and {here / 'astronaut_face.png'} (face box {face.box})")
