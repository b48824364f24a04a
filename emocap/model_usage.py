"""The usage snippets of a model card (:mod:`emocap.model_card`): loading a model with emocap and with plain open_clip.

Kept apart from the card's other sections because tests run these snippets as they are printed (against a
model folder and a hub cache), so what a card tells a user to type is checked code.
"""

from __future__ import annotations

from typing import List

__all__ = ["emocap_usage", "open_clip_usage"]


def emocap_usage(model_ref: str) -> List[str]:
    """Markdown lines: install, the Python API and the command line for ``model_ref``."""
    return [
        "```bash",
        "pip install emocap",
        "```",
        "",
        "```python",
        "from emocap import ZeroShotClassifier",
        "",
        f'clf = ZeroShotClassifier.from_pretrained("{model_ref}")',
        'print(clf.predict("face.jpg", top_k=3))                 # a crop or a photo: [[{"label": ..., "score": ...}]]',
        'print(clf.predict_faces("face.jpg"))                   # every face of a photo: box, score, predictions',
        f'clf = ZeroShotClassifier.from_pretrained("{model_ref}", labels=["joy", "calm", "pain"])  # any labels',
        "```",
        "",
        f"From a shell: `emocap classify face.jpg --model {model_ref}` (photos and face crops alike).",
    ]


def _config_line(model_ref: str) -> str:
    scheme, _, value = model_ref.partition(":")
    if scheme == "hf-hub":
        return f'config_file = hf_hub_download("{value}", "open_clip_config.json")'
    return f'config_file = "{value}/open_clip_config.json"'


def open_clip_usage(model_ref: str, grayscale: bool) -> List[str]:
    """Markdown lines: zero-shot scores with open_clip alone (templates only), with the gray conversion spelled out
    for a gray model that needs it (``grayscale``: config ``"grayscale": true``; a folded model takes RGB)."""
    image_line = ('image = Image.open("face.jpg").convert("L").convert("RGB")  # gray model: the same input as emocap'
                  if grayscale else 'image = Image.open("face.jpg").convert("RGB")')
    hub_import = ["from huggingface_hub import hf_hub_download"] if model_ref.startswith("hf-hub:") else []
    lines = [
        "```python",
        "import json",
        "",
        "import open_clip",
        "import torch",
        *hub_import,
        "from PIL import Image",
        "",
        f'model, _, preprocess = open_clip.create_model_and_transforms("{model_ref}")',
        f'tokenizer = open_clip.get_tokenizer("{model_ref}")',
        "model.eval()  # open_clip returns the model in training mode",
        _config_line(model_ref),
        'with open(config_file) as f:',
        '    emocap_keys = json.load(f)["emocap"]  # labels, prompts, grayscale, face crop margin',
        'labels, templates = emocap_keys["labels"], emocap_keys["prompts"]["templates"]',
        image_line,
        "with torch.no_grad():",
        "    image_features = model.encode_image(preprocess(image).unsqueeze(0))",
        "    image_features = image_features / image_features.norm(dim=-1, keepdim=True)",
        "    class_features = []",
        "    for label in labels:",
        "        text = model.encode_text(tokenizer([t.format(label) for t in templates]))",
        "        text = (text / text.norm(dim=-1, keepdim=True)).mean(0)",
        "        class_features.append(text / text.norm())",
        "    logits = model.logit_scale.exp() * image_features @ torch.stack(class_features).T",
        "    probs = logits.softmax(dim=-1)[0]",
        "print(dict(zip(labels, probs.tolist())))",
        "```",
        "",
        "This uses the prompt templates only; emocap also averages in the class descriptions stored in the config "
        "(`emocap.prompts.descriptions`), so its scores differ somewhat.",
    ]
    if grayscale:
        lines += ["", "The model was trained on gray faces and takes gray input. emocap converts every image to gray "
                      "before the model's transform; the line `convert(\"L\").convert(\"RGB\")` does the same for "
                      "plain open_clip."]
    return lines
