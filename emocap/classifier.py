"""Zero-shot facial emotion classifier: images + label names in, scores out.

The library's main entry point (used by ``emocap classify`` and by eval). Labels are turned into text prompts
(templates and class descriptions from a :class:`~emocap.prompts.PromptSet`), encoded once by the text tower and
cached; images are loaded robustly (:mod:`emocap.images`), optionally face-detected and cropped
(:mod:`emocap.faces`), preprocessed with the transforms stored with the model and encoded in batches.
Scores are a softmax over the scaled cosine similarities between image and class text features.

Inputs are checked at the edge: ``batch_size`` and ``top_k`` must be positive; each image is decoded once (in the
worker thread that also preprocesses it); an image under :data:`emocap.images.MIN_FACE_SIDE` px on a side is
classified with a :class:`~emocap.images.SmallImageWarning` naming it; face boxes are always in the coordinates of
the caller's image (its upright, full-size frame, even when a very large file was downscaled to load it).

Labels are any words or phrases (validated by :func:`emocap.taxonomy.clean_labels`). When two labels get class text
features at or above :data:`INDISTINGUISHABLE_COSINE` apart, the model cannot tell them apart and an
:class:`~emocap.taxonomy.IndistinguishableLabelsWarning` names them (once per label set, with the cached features;
:mod:`emocap.label_pairs`).

This module does not import torch: the tensor work runs in a runtime object, :class:`emocap.torch_runtime.TorchRuntime`
(the default; torch tensors on a torch device) or :class:`emocap.onnx_runtime.OnnxRuntime` (``runtime="onnx"``: numpy
and ONNX Runtime, so a process that classifies through an ONNX export never loads torch, torchvision or open_clip).
On the ONNX runtime the methods that return features (:meth:`ZeroShotClassifier.class_text_features`,
:meth:`~ZeroShotClassifier.encode_texts`, :meth:`~ZeroShotClassifier.prepare_image`,
:meth:`~ZeroShotClassifier.encode_prepared`) return numpy arrays where the torch runtime returns tensors.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

from . import taxonomy
from .class_weights import class_text_weights
from .images import (MIN_FACE_SIDE, ImageInput, ImageLoadError, SmallImageWarning, load_image, load_image_with_size,
                     too_small_for_a_face)
from .face_predictions import CropPolicy, NoFaceFoundError, predict_faces
from .label_pairs import MAX_PAIRS_KEPT, LabelPair, close_label_pairs, indistinguishable_message  # noqa: F401
from .prompts import PromptSet, load_prompt_set
from .taxonomy import IndistinguishableLabelsWarning
from .word_bridge import WordBridge, bridge_features, bridge_identity, needs_bridge

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .models import EmocapModel
    from .onnx_runtime import OnnxTowers

__all__ = ["ZeroShotClassifier", "analyze", "NoFaceFoundError", "IndistinguishableLabelsWarning", "INDISTINGUISHABLE_COSINE",
           "SmallImageWarning"]

# Class text features this close (cosine) make two labels score almost the same on every image. Picked on the
# embedded default model (docs/labels.md): the basic-8 names are at most 0.893 apart, the README's joy / rage /
# calm / astonishment at most 0.977 (joy vs rage is still right 92% of the time on FER+ test faces, thanks to
# the class descriptions), while words it never learned (pain, boredom, confusion) sit at 0.992-0.997.
INDISTINGUISHABLE_COSINE = 0.98


class ZeroShotClassifier:
    """Classify facial expressions into any label names, from text prompts.

    Example::

        clf = ZeroShotClassifier.from_pretrained()              # embedded default model, basic-8 labels
        clf.predict(["face.jpg"])                               # [[{"label": "happiness", "score": 0.93}, ...]]
        clf = ZeroShotClassifier.from_pretrained(labels=["joy", "rage", "calm"])
    """

    def __init__(
        self,
        model: "EmocapModel",
        labels: Optional[Sequence[str]] = None,
        prompts: Union[str, PromptSet, dict, Sequence[str], None] = None,
        device=None,
        use_learned_prompts: bool = True,
        optimize: bool = False,
        onnx_towers: Optional["OnnxTowers"] = None,
        word_bridge: Optional[bool] = None,
    ):
        """Wrap a loaded model. ``optimize=True`` (what :meth:`from_pretrained` does, since it owns the model it
        loads) folds batch norms into convolutions and picks channels_last on CPU (:mod:`emocap.inference`);
        it changes the module in place, so it is off for models passed in by the caller. ``onnx_towers``
        (:meth:`from_pretrained` with ``runtime="onnx"``): the towers run in ONNX Runtime on the CPU, the rest
        (preprocessing, prompts, class weights, scores) is unchanged; ``model`` then only gives its config.
        ``word_bridge``: labels outside the taxonomy also draw on WordNet's links and a pretrained sentence
        encoder (:mod:`emocap.word_bridge`); ``False`` encodes them with the model's own text tower alone. ``None`` (the
        default): on for models emocap made (their config carries emocap's metadata), whose text towers know only
        their caption words; off for generic open_clip models, whose text towers learned English."""
        self.model = model
        self.onnx_towers = onnx_towers
        if onnx_towers is not None:
            from .onnx_runtime import OnnxRuntime

            self.runtime = OnnxRuntime(model, onnx_towers)
        else:
            from .torch_runtime import TorchRuntime

            self.runtime = TorchRuntime(model, device, optimize)
        self.device = self.runtime.device
        self.folded_batchnorms, self.channels_last = self.runtime.folded_batchnorms, self.runtime.channels_last
        meta = model.meta
        self.labels: List[str] = taxonomy.label_set(labels if labels is not None else meta.get("labels", "basic8"))
        if prompts is None and meta.get("prompts"):
            self.prompt_set = PromptSet.from_dict(meta["prompts"])
        else:
            self.prompt_set = load_prompt_set(prompts)
        # soft prompts learned in training (MPA-FER) replace the hand prompts when the model has them, the
        # caller kept the model's own prompts and the prompts cover the labels asked for
        self.learned_prompts = self.runtime.learned_prompts() if (use_learned_prompts and prompts is None) else None
        if not self._uses_learned_prompts(self.labels, self.prompt_set):
            for label in self.labels:  # a prompt set without templates must describe every label: say so now
                self.prompt_set.texts_for(label)
        self._text_cache: Dict[tuple, object] = {}  # torch tensors or numpy arrays, as the runtime gives them
        self._close_pairs: Dict[tuple, List[LabelPair]] = {}  # same keys as _text_cache, computed with it
        self.indistinguishable_cosine = INDISTINGUISHABLE_COSINE
        self.decode_workers = min(4, os.cpu_count() or 1)
        self.crop_policy = CropPolicy.from_meta(meta)  # face margin and when an image is already a face crop
        if word_bridge is None:
            word_bridge = bool(meta)
        self.word_bridge = WordBridge() if word_bridge else None

    @classmethod
    def from_pretrained(
        cls,
        model_id: Optional[str] = None,
        labels: Optional[Sequence[str]] = None,
        prompts: Union[str, PromptSet, dict, Sequence[str], None] = None,
        device=None,
        pretrained: Optional[str] = None,
        runtime: str = "torch",
        word_bridge: Optional[bool] = None,
    ) -> "ZeroShotClassifier":
        """Load a model (``None``: the embedded default; ``hf-hub:org/repo``; ``local-dir:/path``; a folder).

        ``labels`` may be any names (canonical, synonyms or new words); ``prompts`` a bundled prompt set name, a
        JSON file, a list of templates or a PromptSet (default: the prompts saved with the model).
        ``pretrained``: with an open_clip architecture name as ``model_id`` (``"ViT-B-16"``), an open_clip
        pretrained tag (``"openai"``) or a local ``.safetensors`` file: generic CLIP baselines.
        ``runtime``: ``"torch"``, or ``"onnx"`` with ``model_id`` an ONNX export folder (written by
        ``emocap export onnx``; needs onnxruntime): the towers run in ONNX Runtime on the CPU (docs/speed.md).
        ``word_bridge``: as in the constructor (default: on for emocap's models, off for generic open_clip ones).
        """
        if runtime != "torch":
            return cls._from_onnx(model_id, runtime, labels, prompts, device, pretrained, word_bridge)
        from .models import load_model

        return cls(load_model(model_id, pretrained=pretrained), labels=labels, prompts=prompts, device=device,
                   optimize=True, word_bridge=word_bridge)

    @classmethod
    def _from_onnx(cls, folder, runtime: str, labels, prompts, device, pretrained,
                   word_bridge: Optional[bool] = None) -> "ZeroShotClassifier":
        from .onnx_runtime import RUNTIMES, OnnxTowers

        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        if folder is None or pretrained or (device is not None and str(device).split(":")[0] != "cpu"):
            raise ValueError(f"runtime {runtime!r} runs an ONNX export folder on the CPU: give its folder as the "
                             "model (emocap export onnx MODEL --out DIR), no pretrained tag, no GPU device")
        towers = OnnxTowers.load(folder)
        return cls(towers.exported_model(str(folder)), labels=labels, prompts=prompts, onnx_towers=towers,
                   word_bridge=word_bridge)

    @property
    def model_id(self) -> str:
        return self.model.model_id

    @property
    def clip(self) -> "torch.nn.Module":
        """The open_clip module that encodes images and texts (``self.model`` is the loaded EmocapModel)."""
        return self.model.clip

    # ------------------------------------------------------------------ text side
    def class_text_features(self, labels: Optional[Sequence[str]] = None, prompt_set: Optional[PromptSet] = None):
        """[C, D] L2-normalised class embeddings (mean of the normalised prompt embeddings), cached: a torch tensor
        on the model's device, or a numpy array on the ONNX runtime.

        ``labels`` other than the classifier's own are checked like them (:func:`emocap.taxonomy.clean_labels`).
        Computing the features of a label set also finds the label pairs the model cannot tell apart and warns
        once (:class:`IndistinguishableLabelsWarning`); :meth:`indistinguishable_pairs` returns them.
        """
        labels = taxonomy.label_set(labels) if labels is not None else self.labels
        prompt_set = prompt_set or self.prompt_set
        key = (tuple(labels), prompt_set.hash)
        if key in self._text_cache:
            return self._text_cache[key]
        with self.runtime.inference():
            feats = self._own_class_features(labels, prompt_set)
            # labels outside the taxonomy: mixed with the taxonomy emotions they are close to, as the model scores
            # those emotions with its own prompts (emocap.word_bridge)
            feats = bridge_features(self.word_bridge, labels, feats,
                                    lambda emotions: self._own_class_features(emotions, self.prompt_set),
                                    usable=self._can_encode)
            self._text_cache[key] = feats
            pairs, total = close_label_pairs(feats, labels, self.indistinguishable_cosine)
        self._close_pairs[key] = pairs
        if pairs:
            message = indistinguishable_message(pairs, self.indistinguishable_cosine, total)
            warnings.warn(IndistinguishableLabelsWarning(message), stacklevel=2)  # the caller
        return feats

    def _own_class_features(self, labels: Sequence[str], prompt_set: PromptSet):
        """Class features from the model's text side alone: learned prompts, an ONNX export's stored features, or
        the prompt set's texts through the text tower."""
        if self._uses_learned_prompts(labels, prompt_set):
            return self.runtime.learned_text_features(self.learned_prompts, labels)
        if (stored := self.runtime.stored_class_features(labels, prompt_set)) is not None:
            return stored  # an ONNX export's own labels and prompts, computed at export by this runtime
        return class_text_weights(self.encode_texts, [prompt_set.texts_for(label) for label in labels])

    def bridged_labels(self, labels: Optional[Sequence[str]] = None) -> List[dict]:
        """What the word bridge does to the labels outside the taxonomy (default: the classifier's labels): one
        ``{"label", "share", "toward": [(emotion, weight), ...], "source"}`` per such label
        (:meth:`emocap.word_bridge.WordBridge.describe`); empty without a bridge or when all are taxonomy names."""
        labels = taxonomy.label_set(labels) if labels is not None else self.labels
        outside = [label for label in labels if needs_bridge(label)]
        if self.word_bridge is None or not outside:
            return []
        kept = [i for i, e in enumerate(self.word_bridge.emotions) if self._can_encode(e)]
        return self.word_bridge.describe(outside, kept=kept) if kept else []

    def _can_encode(self, label: str) -> bool:
        """Whether the classifier's own prompts can encode ``label`` (a descriptions-only set may not)."""
        if self._uses_learned_prompts([label], self.prompt_set):
            return True
        try:
            self.prompt_set.texts_for(label)
        except ValueError:
            return False
        return True

    @property
    def bridge_id(self) -> str:
        """How labels outside the taxonomy are encoded: the bridge's settings and encoder weights
        (:func:`emocap.word_bridge.bridge_identity`), or ``"off"``."""
        return bridge_identity() if self.word_bridge is not None else "off"

    def indistinguishable_pairs(self, labels: Optional[Sequence[str]] = None, prompt_set: Optional[PromptSet] = None,
                                threshold: Optional[float] = None) -> List[LabelPair]:
        """``[(label_a, label_b, cosine), ...]``, most similar first: label pairs whose class text features are at
        least ``threshold`` (default :attr:`indistinguishable_cosine`) alike, the closest :data:`MAX_PAIRS_KEPT`
        of them. From the cache when already known."""
        feats = self.class_text_features(labels, prompt_set)
        labels = taxonomy.label_set(labels) if labels is not None else self.labels
        key = (tuple(labels), (prompt_set or self.prompt_set).hash)
        if threshold is None and key in self._close_pairs:
            return list(self._close_pairs[key])
        return close_label_pairs(feats, labels, self.indistinguishable_cosine if threshold is None else threshold)[0]

    def encode_texts(self, texts: Sequence[str], batch_size: int = 256):
        """[N, D] L2-normalised text features, in batches (torch: on padding-trimmed tokens; ONNX: full rows)."""
        return self.runtime.encode_texts(texts, batch_size)

    def _uses_learned_prompts(self, labels: Sequence[str], prompt_set: PromptSet) -> bool:
        lp = self.learned_prompts
        return lp is not None and prompt_set is self.prompt_set and lp.covers(labels)

    @property
    def text_features(self):
        return self.class_text_features()

    # ------------------------------------------------------------------ image side
    def _prepare(self, image: Image.Image):
        if self.model.grayscale:
            # an unfolded gray model: resize the one-channel image; the transform's mode conversion makes it RGB
            # afterwards (same values). A folded one (gray_folded) takes RGB and converts in its first layer.
            image = image.convert("L")
        return self.runtime.preprocess(image)

    def prepare_image(self, image: ImageInput):
        """One input loaded (decoded only if it is not already an image) and preprocessed for the image tower, as
        :meth:`encode_images` does for each image; callers that decode in their own threads (eval) use this with
        :meth:`encode_prepared`."""
        return self._prepare(load_image(image))

    def encode_prepared(self, batch: list):
        """[n, D] normalised features of inputs from :meth:`prepare_image` (a tensor, or an array on ONNX)."""
        return self._encode_tensors(batch)

    def _encode_tensors(self, batch: list):
        return self.runtime.encode_prepared(batch)

    def encode_images(self, images: Sequence[ImageInput], batch_size: int = 64) -> np.ndarray:
        """[N, D] L2-normalised image features. Raises ImageLoadError naming the first bad input.

        Each batch is decoded and preprocessed by a small thread pool (PIL releases the GIL while decoding), each
        image once, then encoded. Decoding deliberately does not overlap the encoder: torch's intra-op threads use
        every core, and on small CPUs oversubscribing them costs more than the overlap saves (measured in
        benchmarks/speed.py). Only one batch of decoded images is held at a time, so memory stays flat for any
        number of files.
        """
        return self._encode(self._as_list(images), _positive("batch_size", batch_size), "raise")[0]

    def _encode(self, images: Sequence[ImageInput], batch_size: int, on_error: str, names: bool = True
                ) -> Tuple[np.ndarray, Dict[int, ImageLoadError]]:
        """Features of the images that load, in order, and ``{index: ImageLoadError}`` for those that do not
        (``on_error="raise"``: the first one is raised). ``names``: warn about small inputs by their name."""
        out, errors = [], {}
        with _Mapper(self.decode_workers, len(images)) as mapper:
            for s in range(0, len(images), batch_size):
                jobs = list(enumerate(images[s:s + batch_size], start=s))
                batch = []
                for (i, item), done in zip(jobs, mapper.map(self._decode_and_prepare, jobs)):
                    if isinstance(done, ImageLoadError):
                        if on_error == "raise":
                            raise done
                        errors[i] = done
                        continue
                    tensor, original = done
                    if names and too_small_for_a_face(original):
                        _warn_small(_input_name(item, i), original)
                    batch.append(tensor)
                if batch:
                    out.append(self.runtime.to_numpy(self._encode_tensors(batch)))
        if not out:
            return np.zeros((0, self.text_features.shape[1]), dtype=np.float32), errors
        return np.concatenate(out), errors

    def _decode_and_prepare(self, job: Tuple[int, ImageInput]):
        """(preprocessed tensor, original size) of one input, or its ImageLoadError (worker threads call this)."""
        index, item = job
        try:
            image, original = load_image_with_size(item, _input_name(item, index))
        except ImageLoadError as e:
            return e
        return self._prepare(image), original

    def probs_from_features(self, features: np.ndarray, labels=None, prompt_set=None) -> np.ndarray:
        """Softmax over scaled cosine similarities for precomputed image features."""
        return self.runtime.probs(features, self.class_text_features(labels, prompt_set))

    def predict_proba(self, images: Union[ImageInput, Sequence[ImageInput]], batch_size: int = 64) -> np.ndarray:
        """[N, C] class probabilities in the order of :attr:`labels`."""
        return self.probs_from_features(self.encode_images(images, batch_size=batch_size))

    def predict(
        self,
        images: Union[ImageInput, Sequence[ImageInput]],
        top_k: Optional[int] = None,
        batch_size: int = 64,
        detect_faces: Optional[bool] = None,
        margin: Optional[float] = None,
        no_face: str = "empty",
        on_error: str = "raise",
    ) -> List:
        """Per image, ``[{"label", "score"}, ...]`` sorted by score (the transformers zero-shot pipeline shape).

        ``detect_faces`` decides the framing. ``None`` (the default): the model's crop policy and the image decide
        (:func:`emocap.faces.decide_framing`): an image no larger than the policy's ``crop_max_side`` is already
        a face crop and is scored whole; a larger one is a photo, searched for faces, and scored on its largest
        face (an empty list when it has none, with a :class:`~emocap.face_predictions.NoFaceFoundWarning`).
        ``False``: every image is scored whole. ``True``: every image is searched and the result per image is a
        list of faces, largest first, each ``{"box": [x0, y0, x1, y1], "face_score", "landmarks", "crop_size",
        "framing", "predictions": [...]}`` in the input's own pixels (see :meth:`predict_faces`).

        ``margin`` overrides the model's face margin. A photo without a face gets an empty list, or with
        ``no_face="raise"`` raises :class:`NoFaceFoundError` naming it. An input that cannot be loaded raises its
        :class:`~emocap.images.ImageLoadError`, or with ``on_error="return"`` the error takes its place in the
        results (as ``asyncio.gather(return_exceptions=True)`` does). ``top_k`` (None: all labels) and
        ``batch_size`` must be positive integers.
        """
        if detect_faces is None or detect_faces:
            per_image = self.predict_faces(images, top_k, batch_size, "auto" if detect_faces is None else "detect",
                                           margin, no_face, on_error)
            if detect_faces:
                return per_image
            return [found if isinstance(found, ImageLoadError) else (found[0]["predictions"] if found else [])
                    for found in per_image]
        self._check_options(top_k, batch_size, no_face, on_error)
        images = self._as_list(images)
        feats, errors = self._encode(images, batch_size, on_error)
        ranked = iter([self.ranked(p, top_k) for p in self.probs_from_features(feats)])
        return [errors[i] if i in errors else next(ranked) for i in range(len(images))]

    def predict_faces(self, images: Union[ImageInput, Sequence[ImageInput]], top_k: Optional[int] = None,
                      batch_size: int = 64, framing: str = "auto", margin: Optional[float] = None,
                      no_face: str = "empty", on_error: str = "raise") -> List:
        """Per image a list of faces, largest first (equal sizes left to right), each a dict: ``box`` (x0, y0,
        x1, y1 in the input's pixels), ``face_score`` (the detector's; None for a whole image), ``landmarks``
        (eyes, nose tip, mouth centre, ears: name -> [x, y]; None for a whole image), ``crop_size`` (side of the
        square the model saw, in input pixels), ``framing`` ("detected" or "whole image") and ``predictions``.

        ``framing``: ``"auto"`` (the model's crop policy decides per image), ``"detect"`` (always search) or
        ``"whole"`` (always the whole image). Photos are loaded and searched in parallel threads and all crops
        are classified in batches. Errors as in :meth:`predict`.
        """
        self._check_options(top_k, batch_size, no_face, on_error)
        margin = self.crop_policy.margin if margin is None else margin
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
            raise ValueError(f"margin must be a number >= 0 (a fraction of the face box side), got {margin!r}")
        images = self._as_list(images)
        names = [_input_name(item, i) for i, item in enumerate(images)]
        with _Mapper(self.decode_workers, len(images)) as mapper:  # OpenCV and PIL release the GIL while they work
            return predict_faces(self, images, names, framing, float(margin), top_k, batch_size, no_face,
                                 on_error, mapper)

    def encode_crops(self, crops: Sequence[Image.Image], batch_size: int) -> np.ndarray:
        """[N, D] features of face crops already in memory (no small-image warnings: the crop size is the face's)."""
        return self._encode(list(crops), batch_size, "raise", names=False)[0]

    @staticmethod
    def warn_small(name: str, size: Tuple[int, int]) -> None:
        _warn_small(name, size)

    @staticmethod
    def _check_options(top_k, batch_size, no_face: str, on_error: str) -> None:
        if top_k is not None:
            _positive("top_k", top_k)
        _positive("batch_size", batch_size)
        if on_error not in ("raise", "return"):
            raise ValueError(f"on_error must be 'raise' or 'return', got {on_error!r}")
        if no_face not in ("raise", "empty"):
            raise ValueError(f"no_face must be 'raise' or 'empty', got {no_face!r}")

    def analyze(self, inputs, fps: Optional[float] = None, every: Optional[int] = None, smooth: Optional[float] = None,
                framing: str = "auto", face_analysis: bool = False, batch_size: int = 64, errors: str = "raise"):
        """A pandas DataFrame with one row per face per image or sampled video frame (faces tracked across a
        video's frames, optional score smoothing; ``framing`` of images as in :meth:`predict_faces`; columns and
        options in :mod:`emocap.analysis`)."""
        from .analysis import analyze_table

        return analyze_table(self, self._as_list(inputs), fps=fps, every=every, smooth=smooth,
                             framing=framing, face_analysis=face_analysis, batch_size=batch_size,
                             errors=errors)

    def ranked(self, probs: np.ndarray, top_k: Optional[int]) -> List[dict]:
        """``[{"label", "score"}, ...]`` for one row of probabilities, best first, at most ``top_k``."""
        order = np.argsort(-probs)[: top_k or len(self.labels)]
        return [{"label": self.labels[j], "score": float(probs[j])} for j in order]

    @staticmethod
    def _as_list(images) -> list:
        if isinstance(images, (str, Image.Image, np.ndarray)) or hasattr(images, "__fspath__"):
            return [images]
        return list(images)


def _positive(name: str, value) -> int:
    """``value`` if it is an integer >= 1, else a ValueError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _input_name(item, index: int) -> str:
    """How messages name an input: its path, or its position and type."""
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    return f"image {index} ({type(item).__name__})"


def _warn_small(name: str, size: Tuple[int, int]) -> None:
    warnings.warn(SmallImageWarning(
        f"{name}: image is {size[0]}x{size[1]} px, under {MIN_FACE_SIDE} px on a side: too small to hold a face; "
        "its scores mean little"), stacklevel=4)


class _Mapper:
    """``map`` over a thread pool of up to ``workers`` threads (none for a single item); a context manager."""

    def __init__(self, workers: int, n_items: int):
        workers = max(1, min(workers, n_items))
        self._pool = ThreadPoolExecutor(workers) if workers > 1 else None

    def map(self, fn, items):
        return self._pool.map(fn, items) if self._pool is not None else map(fn, items)

    def __enter__(self) -> "_Mapper":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self._pool is not None:  # on an error or Ctrl-C, queued items are dropped instead of run
            self._pool.shutdown(cancel_futures=exc_type is not None)


def analyze(inputs, labels: Optional[Sequence[str]] = None, model: Optional[str] = None, prompts=None, device=None,
            **options):
    """``ZeroShotClassifier.from_pretrained(model, labels, prompts, device).analyze(inputs, **options)``: images,
    folders and videos in, a pandas DataFrame out (``emocap.analyze``; see :meth:`ZeroShotClassifier.analyze`)."""
    return ZeroShotClassifier.from_pretrained(model, labels=labels, prompts=prompts, device=device).analyze(
        inputs, **options)
