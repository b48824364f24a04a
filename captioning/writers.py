"""Caption writer registry: a writer by kind (templates, llm, vlm, openai) for ``emocap caption``.

Third step of the caption flow (evidence -> facts -> **writer** -> shards). The writers themselves live in
``templates.py`` (offline, seeded), ``llm_local.py`` (transformers LLM/VLM) and ``endpoint.py`` (OpenAI-compatible
chat endpoint); the model writers share ``model_writer.ModelWriter`` (prompt, validation, template fallback),
whose names this module also exports. Adding a writer: a class with ``name``, ``write`` and ``write_many``, and a
branch in :func:`make_writer`.
"""

from __future__ import annotations

from typing import Optional

from .model_writer import (  # noqa: F401  (the model writers' shared API, importable from here too)
    MAX_GLOBAL_CHARS, MAX_LOCAL_CHARS, MAX_LOCAL_SENTENCES, MAX_SUMMARY_CHARS, SYSTEM_PROMPT, ModelWriter,
    WriterError, build_messages, emotions_named, facts_for_prompt, first_json, parse_captions, validate_captions,
)
from .templates import TemplateWriter


def make_writer(kind: str, seed: int = 0, model: Optional[str] = None, **options) -> object:
    """A writer by kind: ``templates``, ``llm`` / ``vlm`` (transformers, ``model`` = path or id) or ``openai``."""
    fallback = TemplateWriter(seed=seed)
    if kind == "templates":
        return fallback
    if kind in ("llm", "vlm"):
        from .llm_local import TransformersWriter

        if not model:
            raise ValueError(f"--writer {kind} needs --writer-model (a local folder or a hub id)")
        return TransformersWriter(model, vision=(kind == "vlm"), fallback=fallback, **options)
    if kind == "openai":
        from .endpoint import OpenAIChatWriter

        if not model:
            raise ValueError("--writer openai needs --writer-model (the endpoint's model name)")
        return OpenAIChatWriter(model=model, fallback=fallback, **options)
    raise ValueError(f"unknown writer {kind!r}; choose from templates, llm, vlm, openai")
