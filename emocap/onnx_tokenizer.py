"""open_clip's CLIP text tokenizer without torch or open_clip, for the ONNX runtime.

Where it sits: ``emocap export onnx`` (:mod:`emocap.onnx_export`) writes the model tokenizer's vocabulary and merges
into the export folder as ``tokenizer.json`` (Hugging Face ``tokenizers`` format) and its settings into the manifest
(:func:`write_tokenizer`); ``ZeroShotClassifier(..., runtime="onnx")`` loads it back here (:meth:`ClipTokenizer.load`)
and tokenises prompts to the same ids as ``open_clip.tokenizer.SimpleTokenizer``, so the text tower gets the same
input as on the torch path.

How the ids stay identical: the text is cleaned as open_clip cleans it (ftfy, HTML entities twice, whitespace,
lower case), split into words with open_clip's own pattern (recorded at export, through the same ``regex``
module), and only then handed to ``tokenizers`` as pre-tokenised words: byte-level mapping and the BPE merges
(with ``</w>`` ending each word) run there, in Rust. The start/end-of-text words are added tokens with the
vocabulary's ids. Rows are ``[SOT] ids [EOT]`` padded with 0, truncated to the context length with EOT last.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import List, Sequence, Union

import numpy as np

from .file_hashes import file_sha256
from .onnx_files import OnnxExportError

__all__ = ["ClipTokenizer", "write_tokenizer", "clean_text", "TOKENIZER_FILE", "TokenizerFileError"]

TOKENIZER_FILE = "tokenizer.json"
# printable ASCII without "&": ftfy.fix_text leaves such text unchanged (tests/test_onnx_light.py checks it), so
# prompts, which are all like this, skip importing ftfy
_PLAIN_ASCII = re.compile(r"[ -%'-~]*\Z")


class TokenizerFileError(OnnxExportError):
    """A tokenizer file or manifest entry that cannot be used; the message names it and what to do."""


def clean_text(text: str) -> str:
    """open_clip's ``_clean_lower``: ftfy's fixes, HTML entities undone twice, whitespace runs to one space, lower
    case."""
    if not _PLAIN_ASCII.match(text):
        import ftfy  # an open_clip dependency, so installed with emocap

        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).lower()


class ClipTokenizer:
    """Texts -> ``[N, context_length]`` int64 token ids, as open_clip's ``SimpleTokenizer`` gives them."""

    def __init__(self, bpe, word_pattern: str, ignore_case: bool, sot_id: int, eot_id: int, context_length: int):
        import regex  # \p{L}/\p{N} classes, as open_clip splits; an open_clip dependency

        self._bpe = bpe
        self._words = regex.compile(word_pattern, regex.IGNORECASE if ignore_case else 0)
        self.sot_token_id, self.eot_token_id = int(sot_id), int(eot_id)
        self.context_length = int(context_length)

    @classmethod
    def load(cls, folder: Union[str, Path], spec: dict) -> "ClipTokenizer":
        """The tokenizer that manifest entry ``spec`` (from :func:`write_tokenizer`) describes, from ``folder``."""
        path = Path(folder) / spec["file"]
        if not path.is_file():
            raise TokenizerFileError(f"{path}: missing (listed in the export's manifest); export the model again")
        if file_sha256(path) != spec["sha256"]:
            raise TokenizerFileError(f"{path}: sha256 differs from the manifest (changed or truncated); export again")
        try:
            from tokenizers import Tokenizer
        except ImportError as e:
            raise TokenizerFileError(f"runtime onnx needs the tokenizers package ({e}); pip install 'emocap[onnx]'"
                                     ) from None
        return cls(Tokenizer.from_file(str(path)), spec["word_pattern"], spec["ignore_case"], spec["sot_id"],
                   spec["eot_id"], spec["context_length"])

    def encode(self, text: str) -> List[int]:
        """The BPE ids of one text, without start/end of text."""
        return self._encode_many([text])[0]

    def _encode_many(self, texts: Sequence[str]) -> List[List[int]]:
        words = [self._words.findall(clean_text(text)) for text in texts]
        found = self._bpe.encode_batch(words, is_pretokenized=True, add_special_tokens=False)
        return [list(encoding.ids) for encoding in found]

    def __call__(self, texts: Union[str, Sequence[str]], context_length: int = 0) -> np.ndarray:
        """``[N, context_length]`` int64 rows ``[SOT] ids [EOT] 0 ...``; a text too long is cut with EOT last."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        length = context_length or self.context_length
        rows = np.zeros((len(texts), length), dtype=np.int64)
        for i, ids in enumerate(self._encode_many(texts)):
            ids = [self.sot_token_id] + ids + [self.eot_token_id]
            if len(ids) > length:
                ids = ids[:length]
                ids[-1] = self.eot_token_id
            rows[i, :len(ids)] = ids
        return rows


def write_tokenizer(open_clip_tokenizer, folder: Path) -> dict:
    """Write ``tokenizer.json`` for an open_clip ``SimpleTokenizer`` into ``folder``; its manifest entry.

    Export time only (the caller has open_clip); needs the ``tokenizers`` package. A tokenizer that is not a plain
    lower-casing ``SimpleTokenizer`` (another cleaning, a reduction mask, another class) is refused."""
    tok = open_clip_tokenizer
    clean = getattr(getattr(tok, "clean_fn", None), "__name__", None)
    if not hasattr(tok, "bpe_ranks") or clean != "_clean_lower" or getattr(tok, "reduction_fn", None) is not None:
        raise TokenizerFileError(f"{type(tok).__name__} (cleaning {clean}) is not open_clip's lower-casing "
                                 "SimpleTokenizer; the ONNX runtime cannot reproduce it")
    try:
        from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    except ImportError as e:
        raise TokenizerFileError(f"exporting to ONNX needs the tokenizers package ({e}); pip install 'emocap[onnx]'"
                                 ) from None
    merges = sorted(tok.bpe_ranks, key=tok.bpe_ranks.get)
    bpe = Tokenizer(models.BPE(vocab=dict(tok.encoder), merges=merges, end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    specials = [tok.decoder[i] for i in tok.all_special_ids]
    bpe.add_special_tokens([AddedToken(s, normalized=False) for s in specials])
    if [bpe.token_to_id(s) for s in specials] != list(tok.all_special_ids):
        raise TokenizerFileError("the special tokens did not keep their vocabulary ids")
    path = Path(folder) / TOKENIZER_FILE
    bpe.save(str(path))
    import regex

    return {"file": TOKENIZER_FILE, "sha256": file_sha256(path), "word_pattern": tok.pat.pattern,
            "ignore_case": bool(tok.pat.flags & regex.IGNORECASE), "sot_id": int(tok.sot_token_id),
            "eot_id": int(tok.eot_token_id), "context_length": int(tok.context_length)}
