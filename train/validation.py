"""Zero-shot validation during training: WAR and UAR on a FER+ split, images held in memory.

Called by the trainer (:mod:`emocap.train.trainer`) at the end of each epoch when ``data.val_root`` is set; the
language stage (:mod:`emocap.train.language`) uses it for model selection.
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import torch

from emocap import taxonomy
from emocap.class_weights import class_text_weights, encoder_for
from emocap.ferplus import EMOTIONS, FerPlusSplit
from emocap.metrics import war_uar

from .data import _decode, to_model_input


class Validator:
    """Zero-shot accuracy on a FER+ split (majority protocol), images held in memory."""

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
