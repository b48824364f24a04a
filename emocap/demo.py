"""The web demo (``emocap demo``, and the hub Space ``examples/space/app.py``): a Gradio page over the library.

A photo or a short video goes in with labels typed as free text (default basic-8); out come the faces boxed with
their scores, the facial behaviour closest to each face (:mod:`emocap.explain`) and, for a video, each label's
score over time. All computing is in :mod:`emocap.demo_analysis` (no Gradio there, unit-tested directly); this
module lays out the page and turns results and :class:`~emocap.demo_analysis.DemoInputError` messages into
Markdown. Gradio is the ``demo`` extra (``pip install 'emocap[demo]'``), imported only when a page is built.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple

from .demo_analysis import (DEFAULT_LABELS, MAX_VIDEO_FRAMES, DemoInputError, DemoModel, PhotoAnalysis,
                            VideoAnalysis, analyze_photo, analyze_video)

__all__ = ["build_demo", "launch", "photo_outputs", "video_outputs", "TITLE"]

TITLE = "emocap: zero-shot facial emotion recognition"
INTRO = ("Upload a photo or a short video and type any labels (comma separated). Faces are found, each is "
         "scored against your labels, and the facial behaviour closest to it in the model's embedding is listed "
         "(a similarity read-out, not a cause).")
EXAMPLE_PHOTO = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"  # in a source checkout only
WARNING_MARK = "⚠️"


def _problem(message: str) -> str:
    return f"### {WARNING_MARK} {message}"


def _notes(notes) -> str:
    return "".join(f"\n\n> {WARNING_MARK} {note}" for note in notes)


def photo_markdown(result: PhotoAnalysis, top_k: int = 3) -> str:
    """The faces table (box, detector score, top labels) and each face's closest facial behaviour."""
    n = len(result.faces)
    lines = [f"### {n} face{'s' if n != 1 else ''} found", "",
             "| face | top labels | box (x0, y0, x1, y1) | detector score |", "| --- | --- | --- | --- |"]
    for number, face in enumerate(result.faces, start=1):
        top = ", ".join(f"{p['label']} {p['score']:.3f}" for p in face["predictions"][:top_k])
        lines.append(f"| {number} | {top} | {tuple(face['box'])} | {face['face_score']:.1f} |")
    lines += ["", "#### Closest facial behaviour"]
    for number, face in enumerate(result.faces, start=1):
        sentences = "; ".join(f"{b['sentence']} ({'+'.join(b['aus']) or 'neutral'})" for b in face["behaviour"])
        lines.append(f"- **face {number}** ({face['predictions'][0]['label']}): {sentences}")
    return "\n".join(lines) + _notes(result.notes)


def video_markdown(result: VideoAnalysis) -> str:
    """Frames with a face, the mean score per label over those frames, and the top label per sampled frame."""
    import numpy as np

    seen = ~np.isnan(result.scores[:, 0])
    means = result.scores[seen].mean(axis=0)
    order = np.argsort(-means)
    lines = [f"### Face in {result.frames_with_face} of {len(result.times)} sampled frames", "",
             "Mean score over those frames: " + ", ".join(f"{result.labels[j]} {means[j]:.3f}" for j in order), "",
             "| time (s) | frame | top label |", "| --- | --- | --- |"]
    for t, index, row in zip(result.times, result.frame_indices, result.scores):
        top = "no face" if np.isnan(row[0]) else f"{result.labels[int(np.argmax(row))]} {np.max(row):.3f}"
        lines.append(f"| {t:.2f} | {index} | {top} |")
    return "\n".join(lines) + _notes(result.notes)


def photo_outputs(model: DemoModel, image, labels_text: Optional[str]) -> Tuple[object, str, dict]:
    """What the photo button returns: (annotated image or None, Markdown, JSON-able results). Input problems
    become a message in the Markdown instead of an error."""
    try:
        result = analyze_photo(model, image, labels_text)
    except DemoInputError as e:
        return None, _problem(str(e)), {}
    return result.annotated, photo_markdown(result), {"model": model.model_id, "labels": result.labels,
                                                      "faces": result.faces}


def video_outputs(model: DemoModel, video_path, labels_text: Optional[str], frames) -> Tuple[object, str, dict]:
    """What the video button returns: (timeline plot or None, Markdown, JSON-able timeline)."""
    try:
        result = analyze_video(model, video_path, labels_text, frames=16 if frames is None else int(frames))
    except DemoInputError as e:
        return None, _problem(str(e)), {}
    rows = [{"time_s": round(t, 3), "frame": i, "scores": None if row[0] != row[0] else
             {label: float(s) for label, s in zip(result.labels, row)}}
            for t, i, row in zip(result.times, result.frame_indices, result.scores)]
    return result.plot, video_markdown(result), {"model": model.model_id, "labels": result.labels, "frames": rows}


def _photo_tab(gr, model: DemoModel) -> None:
    with gr.Row():
        with gr.Column():
            photo = gr.Image(type="pil", label="Photo", elem_id="photo-input")
            labels = gr.Textbox(value=DEFAULT_LABELS, label="Labels (comma separated)", elem_id="photo-labels")
            button = gr.Button("Analyze photo", variant="primary", elem_id="photo-submit")
        with gr.Column():
            boxed = gr.Image(type="pil", label="Faces", interactive=False, elem_id="photo-faces")
    report = gr.Markdown(elem_id="photo-results")
    raw = gr.JSON(label="Results (JSON)", open=False)
    button.click(lambda image, text: photo_outputs(model, image, text), [photo, labels], [boxed, report, raw])
    if EXAMPLE_PHOTO.is_file():
        gr.Examples([[str(EXAMPLE_PHOTO), DEFAULT_LABELS]], [photo, labels], cache_examples=False)


def _video_tab(gr, model: DemoModel) -> None:
    with gr.Row():
        with gr.Column():
            video = gr.Video(label="Short video", sources=["upload"], elem_id="video-input")
            labels = gr.Textbox(value=DEFAULT_LABELS, label="Labels (comma separated)", elem_id="video-labels")
            frames = gr.Slider(2, MAX_VIDEO_FRAMES, value=16, step=1, label="Frames to sample")
            button = gr.Button("Analyze video", variant="primary", elem_id="video-submit")
        with gr.Column():
            plot = gr.Image(type="pil", label="Scores over time", interactive=False, elem_id="video-timeline")
    report = gr.Markdown(elem_id="video-results")
    raw = gr.JSON(label="Timeline (JSON)", open=False)
    button.click(lambda path, text, k: video_outputs(model, path, text, k), [video, labels, frames],
                 [plot, report, raw])


def build_demo(model_id: Optional[str] = None, device=None, model: Optional[DemoModel] = None):
    """The Gradio Blocks page; the model is loaded here, once (``model_id``: as for ``emocap classify --model``)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no usage reports from a research tool
    try:
        import gradio as gr
    except ImportError as e:
        raise ImportError(f"the demo needs Gradio ({e}); install it with: pip install 'emocap[demo]'") from None
    model = model or DemoModel(model_id, device=device)
    with gr.Blocks(title=TITLE) as page:
        gr.Markdown(f"# {TITLE}\n{INTRO}\n\nModel: `{model.model_id}`")
        with gr.Tab("Photo"):
            _photo_tab(gr, model)
        with gr.Tab("Video"):
            _video_tab(gr, model)
    return page


def launch(model_id: Optional[str] = None, port: Optional[int] = None, share: bool = False,
           host: Optional[str] = None, device=None, **launch_options):
    """Build the page and serve it (``port`` None: Gradio's default, 7860 or the next free one)."""
    page = build_demo(model_id, device=device)
    return page.launch(server_name=host, server_port=port, share=share, **launch_options)
