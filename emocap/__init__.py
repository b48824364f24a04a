"""emocap: vision-language facial emotion representations.

The core library. Stages (``emocap.captioning``, ``emocap.train``, ``emocap.eval``) build on it; it imports none
of them. Public surface: :class:`ZeroShotClassifier`, :func:`analyze` (a results table for images and videos), the model factory (:func:`load_model`, :func:`save_model`,
:func:`list_models`), prompts and the label taxonomy.
"""

__version__ = "0.1.0"

from . import taxonomy  # noqa: E402
from .prompts import PromptSet, load_prompt_set  # noqa: E402
from .taxonomy import IndistinguishableLabelsWarning  # noqa: E402


def __getattr__(name):  # lazy: importing emocap stays cheap, torch loads on first use
    if name in ("ZeroShotClassifier", "analyze"):
        from . import classifier

        return getattr(classifier, name)
    if name == "analyze_face":  # dlib loads on the first analysis, not here
        from .face_analysis import analyze_face

        return analyze_face
    if name in ("load_model", "save_model", "list_models", "create_model", "EmocapModel"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'emocap' has no attribute {name!r}")


__all__ = ["ZeroShotClassifier", "analyze", "analyze_face", "load_model", "save_model", "list_models", "create_model",
           "PromptSet", "load_prompt_set", "taxonomy", "IndistinguishableLabelsWarning", "__version__"]
