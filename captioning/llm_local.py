"""Local LLM / VLM caption writer through transformers (a model folder or a hub id; safetensors only).

A writer of the caption flow (facts -> **writer** -> shards); the prompt, validation and template fallback are
``model_writer.ModelWriter``'s. A text model (``vision=False``) gets the facts; a vision-language model
(``vision=True``, loaded with ``AutoModelForImageTextToText`` and ``AutoProcessor``) also sees the face image.
Generation is greedy by default, so a rerun writes the same captions. Weights are loaded with
``use_safetensors=True`` and without remote code: nothing is unpickled.
"""

from __future__ import annotations

import io
import threading
from typing import Dict, List, Optional

from .model_writer import ModelWriter


def _plain_prompt(messages: List[Dict[str, str]]) -> str:
    """A prompt for tokenizers without a chat template."""
    lines = [f"{m['role'].upper()}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nASSISTANT: "


class TransformersWriter(ModelWriter):
    """Captions from a local transformers model. ``model``: folder or hub id; ``vision=True`` for a VLM."""

    def __init__(
        self,
        model: str,
        vision: bool = False,
        fallback=None,
        device: Optional[str] = None,
        max_new_tokens: int = 320,
        do_sample: bool = False,
        temperature: float = 0.7,
        dtype: str = "auto",
    ):
        super().__init__(fallback=fallback, concurrency=1, uses_image=vision)
        try:
            import torch
            import transformers
        except ImportError as e:  # pragma: no cover - the llm extra is part of dev
            raise ImportError(f"the {('vlm' if vision else 'llm')} writer needs transformers: pip install 'emocap[llm]' ({e})") from None
        self.name = "vlm" if vision else "llm"
        self.model_id = str(model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        kwargs = dict(use_safetensors=True, trust_remote_code=False)
        if dtype != "auto":
            kwargs["dtype"] = getattr(torch, dtype)
        try:
            if vision:
                self.processor = transformers.AutoProcessor.from_pretrained(self.model_id)
                self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
                self.model = transformers.AutoModelForImageTextToText.from_pretrained(self.model_id, **kwargs)
            else:
                self.processor = None
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.model_id)
                self.model = transformers.AutoModelForCausalLM.from_pretrained(self.model_id, **kwargs)
        except OSError as e:
            raise ValueError(f"cannot load the {self.name} writer model {self.model_id!r}: {e}") from None
        self.model.to(self.device).eval()
        self.max_new_tokens = int(max_new_tokens)
        self.do_sample = bool(do_sample)
        self.temperature = float(temperature)
        self._lock = threading.Lock()

    def _inputs(self, messages: List[Dict[str, str]], image: Optional[bytes]):
        if self.processor is not None and image is not None:
            from PIL import Image

            pil = Image.open(io.BytesIO(image)).convert("RGB")
            chat = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in messages]
            chat[-1]["content"].insert(0, {"type": "image"})
            text = self.processor.apply_chat_template(chat, add_generation_prompt=True)
            return self.processor(images=pil, text=text, return_tensors="pt")
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            text = _plain_prompt(messages)
        return self.tokenizer(text, return_tensors="pt")

    def generate(self, messages: List[Dict[str, str]], image: Optional[bytes] = None) -> str:
        import torch

        inputs = {k: v.to(self.device) for k, v in self._inputs(messages, image).items()}
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        options = dict(max_new_tokens=self.max_new_tokens, do_sample=self.do_sample, pad_token_id=pad)
        if self.do_sample:
            options["temperature"] = self.temperature
        with self._lock, torch.no_grad():
            out = self.model.generate(**inputs, **options)
        new = out[0, inputs["input_ids"].shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=True)
