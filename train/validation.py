"""Zero-shot validation during training: WAR and UAR on a FER+ split, and on a folder of real photos read through
the face pipeline; images held in memory.

Called by the trainer (:mod:`emocap.train.trainer`) at the end of each epoch when ``data.val_root`` (FER+) and
``data.photo_val_root`` (an ImageFolder of photos, e.g. faces-wild-dev: validation only, never training data) are
set; the language stage (:mod:`emocap.train.language`) uses the FER+ one for model selection.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torchvision import transforms
from tqdm.auto import tqdm

from emocap import taxonomy
from emocap.class_weights import class_text_weights, encoder_for
from emocap.ferplus import EMOTIONS, FerPlusSplit
from emocap.face_predictions import CropPolicy, main_face
from emocap.images import load_image
from emocap.metrics import war_uar
from emocap.readers.imagefolder import read_imagefolder

from .data import _decode, to_model_input


class Validator:
    """Zero-shot accuracy on a FER+ split (majority protocol), images held in memory."""

    columns: Optional[List[int]] = None  # the training labels scored (None: all of them)

    def __init__(self, root: str, split: str, size: int, grayscale: bool, labels: List[str], limit=None):
        data = FerPlusSplit(root, split)
        kept = data.majority()[: limit or None]
        self.images = torch.from_numpy(np.stack([_decode(data.image_bytes(r), size, grayscale) for r, _ in kept]))
        index = {taxonomy.canonical(n): i for i, n in enumerate(labels)}
        self.targets = np.array([index[EMOTIONS[c]] for _, c in kept])
        data.close()

    @torch.inference_mode()
    def __call__(self, model, tokenizer, labels, prompt_set, mean, std, device, soft_prompts=None) -> Dict[str, float]:
        was_training = model.training
        model.eval()
        if soft_prompts is not None:  # what the classifier will use for a model saved with learned prompts
            text = soft_prompts(model)
        else:
            text = class_text_weights(encoder_for(model, tokenizer), [prompt_set.texts_for(label) for label in labels])
        if self.columns is not None:
            text = text[self.columns]
        pred = (self.image_features(model, mean, std, device) @ text.T).argmax(1).cpu().numpy()
        model.train(was_training)
        return war_uar(pred, self.targets)

    @torch.inference_mode()
    def image_features(self, model, mean, std, device=None) -> torch.Tensor:
        """[N, D] normalised image features of the held images, in eval mode (the caller's mode is restored)."""
        was_training = model.training
        model.eval()
        feats = [model.encode_image(to_model_input(self.images[s:s + 256], mean, std).to(device), normalize=True)
                 for s in range(0, len(self.images), 256)]
        model.train(was_training)
        return torch.cat(feats)


def _square(image: Image.Image, size: int, grayscale: bool) -> np.ndarray:
    """A face crop as the model's transform gives it: open_clip's shortest-side resize (bicubic) and centre crop."""
    shortest_side = transforms.Compose([transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
                                        transforms.CenterCrop(size)])
    arr = np.asarray(shortest_side(image.convert("L" if grayscale else "RGB")), dtype=np.uint8)
    return arr[None] if grayscale else arr.transpose(2, 0, 1)


class PhotoValidator(Validator):
    """Zero-shot accuracy on full photos (``root/split/<class>/``), each framed by the face pipeline as
    ``emocap classify`` frames it with no flag (model crop policy ``policy``); scored over ``classes`` only (the
    classes of the folder with enough images), which must all be training labels."""

    def __init__(self, root: str, split: Optional[str], size: int, grayscale: bool, labels: List[str],
                 classes: Sequence[str], policy: Optional[CropPolicy] = None, progress: bool = True):
        index = {taxonomy.canonical(n): i for i, n in enumerate(labels)}
        wanted = [taxonomy.canonical(c) for c in classes]
        missing = [c for c in wanted if c not in index]
        if missing:
            raise ValueError(f"data.photo_val_classes: {missing} are not training labels ({labels})")
        samples, _ = read_imagefolder(root, split)
        labelled = [(s, next(iter(s.distribution))) for s in samples]  # ImageFolder: one class per photo
        kept = [(s, c) for s, c in labelled if c in wanted]
        if not kept:
            raise FileNotFoundError(f"{root}/{split or ''}: no photos in the classes {wanted}")
        policy = policy or CropPolicy()
        images = []
        for sample, _ in tqdm(kept, desc="photo validation: framing faces", disable=not progress, leave=False):
            crop, _ = main_face(load_image(sample.source_file), policy)
            images.append(_square(crop, size, grayscale))
        self.images = torch.from_numpy(np.stack(images))
        self.columns = [index[c] for c in wanted]
        self.targets = np.array([wanted.index(c) for _, c in kept])
