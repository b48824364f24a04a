"""Learned soft prompts (CoOp / MPA-FER context vectors): encoding them with the text tower, saving, loading.

Where it sits: ``emocap.train`` learns the context vectors (``train/prompt_learning.py``) and saves them next to
the weights, in ``emocap_extra.safetensors`` under ``prompt_ctx``, with ``"learned_prompts"`` in the config's
``emocap`` keys; :class:`emocap.ZeroShotClassifier` reads them back through :meth:`LearnedPrompts.from_model`
and uses them for the class text features. The tensors travel in ``EmocapModel.extra_tensors``, never in the
JSON metadata.

A soft prompt for class ``c`` is the token sequence ``[SOT] X X ... X <class name> . [EOT]`` whose ``X``
embeddings are replaced by ``n_ctx`` learned vectors (one shared set, or one set per class), then run through
the open_clip text transformer exactly like a tokenised caption (causal mask, end-of-text pooling, projection).
Shared context vectors work for any label name; per-class ones only for the classes they were trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from open_clip.transformer import text_global_pool

PLACEHOLDER = "X"
CTX_KEY = "prompt_ctx"


def encode_text_embeddings(model, embeddings: torch.Tensor, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Text features of an open_clip ``CLIP`` from token embeddings [B, L, W] (``tokens`` [B, L] give EOT pooling).

    The same computation as ``model.encode_text`` after its ``token_embedding`` lookup; ``L`` may be shorter than
    the context length (padding after the longest sequence changes nothing under the causal mask).
    """
    length = tokens.shape[1]
    cast_dtype = model.transformer.get_cast_dtype()
    x = embeddings.to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection
    return F.normalize(x, dim=-1) if normalize else x


def prompt_tokens(tokenizer, class_names: Sequence[str], n_ctx: int) -> torch.Tensor:
    """[C, L] tokens of ``"X X ... X <name>."``, trimmed after the longest prompt; positions 1..n_ctx are the X's."""
    texts = [" ".join([PLACEHOLDER] * n_ctx) + f" {name.replace('_', ' ')}." for name in class_names]
    tokens = tokenizer(texts)
    length = int((tokens != 0).sum(dim=1).max().item())
    return tokens[:, :length]


def encode_soft_prompts(model, tokens: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    """[C, D] normalised features of soft prompts: ``ctx`` is [n_ctx, W] (shared) or [C, n_ctx, W] (per class)."""
    n_ctx = ctx.shape[-2]
    embeds = model.token_embedding(tokens)
    ctx = ctx.to(embeds.dtype)
    if ctx.dim() == 2:
        ctx = ctx.unsqueeze(0).expand(tokens.shape[0], -1, -1)
    embeds = torch.cat([embeds[:, :1], ctx, embeds[:, 1 + n_ctx:]], dim=1)
    return encode_text_embeddings(model, embeds, tokens)


@dataclass
class LearnedPrompts:
    """Context vectors plus the class names they belong to (``classes`` None: shared by every class)."""

    ctx: torch.Tensor
    classes: Optional[List[str]] = None

    @property
    def per_class(self) -> bool:
        return self.ctx.dim() == 3

    def covers(self, labels: Sequence[str]) -> bool:
        """Whether these prompts can score ``labels`` (shared: any names; per class: the trained ones)."""
        from emocap import taxonomy

        if not self.per_class:
            return True
        known = {taxonomy.canonical(c) for c in self.classes or []}
        return all(taxonomy.canonical(label) in known for label in labels)

    def text_features(self, model, tokenizer, labels: Sequence[str]) -> torch.Tensor:
        """[C, D] normalised class features for ``labels`` (must be covered)."""
        from emocap import taxonomy

        ctx = self.ctx.to(next(model.parameters()).device)
        if self.per_class:
            order = [taxonomy.canonical(c) for c in self.classes]
            ctx = ctx[[order.index(taxonomy.canonical(label)) for label in labels]]
        tokens = prompt_tokens(tokenizer, labels, self.ctx.shape[-2]).to(ctx.device)
        return encode_soft_prompts(model, tokens, ctx)

    def meta(self) -> dict:
        return {"n_ctx": int(self.ctx.shape[-2]), "classes": self.classes, "tensor": CTX_KEY}

    @classmethod
    def from_model(cls, model) -> Optional["LearnedPrompts"]:
        """The prompts saved with a loaded :class:`~emocap.models.EmocapModel` (its ``meta`` says what they are,
        its ``extra_tensors`` hold them), or None when it has none."""
        return cls.from_meta(model.meta, model.extra_tensors)

    @classmethod
    def from_meta(cls, meta: dict, tensors: Optional[Dict[str, torch.Tensor]] = None) -> Optional["LearnedPrompts"]:
        """The prompts that ``meta["learned_prompts"]`` describes, read from ``tensors`` (the model's extra tensors),
        or None when ``meta`` lists none. ValueError when it lists them and the tensor is missing."""
        info = meta.get("learned_prompts")
        if not info:
            return None
        key = info.get("tensor", CTX_KEY)
        if key not in (tensors or {}):
            raise ValueError(f"model config lists learned prompts but emocap_extra.safetensors has no {key!r} tensor")
        return cls(ctx=tensors[key].float(), classes=info.get("classes"))
