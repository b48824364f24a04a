"""Model ids, parsed once: the one place that reads a model id's scheme (as open_clip's ``parse_model_name`` does).

Where it sits: at the bottom of the model flow, with no torch or open_clip import. :mod:`emocap.model_files`
(finding a local model's folder), :mod:`emocap.models` (loading) and training's ``init_from`` call
:func:`parse_model_id` and branch on :attr:`ModelId.scheme`; nobody else looks at a prefix.

The forms::

    None, "default"               scheme "default"     the embedded model
    "hf-hub:org/repo"             scheme "hf-hub"      value "org/repo"
    "local-dir:/path"             scheme "local-dir"   value "/path"
    "open_clip:<arch>/<tag>"      scheme "open_clip"   value "<arch>/<tag>" (arch and tag as properties)
    anything else                 scheme "path"        value: the text (a folder, or a bundled architecture name)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple, Union

__all__ = ["ModelId", "parse_model_id", "DEFAULT_MODEL_ID", "SCHEMES"]

DEFAULT_MODEL_ID = "default"
SCHEMES = ("hf-hub", "local-dir", "open_clip")  # the prefixes written as "<scheme>:<value>"


@dataclass(frozen=True)
class ModelId:
    """A parsed model id: ``scheme`` (default, hf-hub, local-dir, open_clip or path) and ``value`` (what follows
    the prefix). ``str(model_id)`` gives the canonical text back (``"default"`` for the embedded model)."""

    scheme: str
    value: str = ""

    def __str__(self) -> str:
        if self.scheme == "default":
            return DEFAULT_MODEL_ID
        if self.scheme == "path":
            return self.value
        return f"{self.scheme}:{self.value}"

    @property
    def is_local(self) -> bool:
        """A folder on this machine (the embedded model, ``local-dir:`` or a plain path)."""
        return self.scheme in ("default", "local-dir", "path")

    @property
    def arch_and_tag(self) -> Tuple[str, str]:
        """``(architecture, pretrained tag)`` of an ``open_clip:`` id; ValueError when either part is missing."""
        arch, _, tag = self.value.partition("/")
        if self.scheme != "open_clip" or not arch or not tag:
            raise ValueError(f"model id {str(self)!r}: the form is open_clip:<architecture>/<pretrained tag>")
        return arch, tag


def parse_model_id(model_id: Union[str, ModelId, None]) -> ModelId:
    """Parse ``model_id`` (see the module docstring); a :class:`ModelId` is returned as it is."""
    if isinstance(model_id, ModelId):
        return model_id
    if model_id is None or model_id == DEFAULT_MODEL_ID:
        return ModelId("default")
    text = str(model_id)
    scheme, sep, value = text.partition(":")
    if sep and scheme in SCHEMES:
        return ModelId(scheme, value)
    return ModelId("path", text)

