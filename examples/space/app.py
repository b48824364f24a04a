"""The emocap demo as a Hugging Face Space (Gradio SDK): the same page as ``emocap demo``.

Copy this folder (app.py, requirements.txt, README.md) into a Space repository. ``EMOCAP_MODEL`` picks the model
(``hf-hub:org/repo``; default: the model embedded in the package).
"""

import os

from emocap.demo import build_demo

demo = build_demo(os.environ.get("EMOCAP_MODEL") or None)

if __name__ == "__main__":
    demo.launch()
