"""The OpenVINO path behind ``ZeroShotClassifier(..., runtime="openvino")``: an ONNX export's towers on OpenVINO's CPU plugin.

Where it sits: the same export folder as ``runtime="onnx"`` (written by :mod:`emocap.onnx_export`, checked by
:mod:`emocap.onnx_files`) -> :meth:`OpenVinoTowers.load` checks the manifest exactly as :class:`OnnxTowers` does and
compiles each tower's ``.onnx`` file with OpenVINO on first use (read directly, no conversion step) -> the classifier
runs through the same numpy :class:`emocap.onnx_runtime.OnnxRuntime` (tokenizer, preprocessing, class weights and
scores are the ONNX path's own); only the two tower calls differ. Nothing here imports torch.

Settings (measured in docs/speed.md, ``benchmarks/openvino_speed.py``): fp32 inference precision (so the numbers
equal ONNX Runtime's on CPUs that would otherwise run bf16), the LATENCY hint (one stream over every thread), and
as many threads as the ONNX path uses (``OMP_NUM_THREADS``, else OpenVINO's default). openvino is imported here
only (the ``openvino`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

import numpy as np

from .onnx_files import OnnxExportError, check_manifest, read_manifest
from .onnx_runtime import OnnxTowers, _default_threads

__all__ = ["OpenVinoTowers"]


class _CompiledTower:
    """One tower compiled for OpenVINO's CPU plugin, behind the ``run(None, feeds)`` call of an ONNX Runtime session."""

    def __init__(self, compiled):
        self._request = compiled.create_infer_request()

    def run(self, _output_names, feeds: Dict[str, np.ndarray]) -> list:
        (inputs,) = feeds.values()
        return [self._request.infer({0: inputs})[0]]  # OpenVINO copies the output out of the request


class OpenVinoTowers(OnnxTowers):
    """The image and text towers of one ONNX export folder, compiled with OpenVINO, each on first use."""

    def _session(self, tower: str):
        if tower not in self._sessions:
            import openvino as ov

            compiled = ov.Core().compile_model(str(self._paths[tower]), "CPU", self._options)
            self._sessions[tower] = _CompiledTower(compiled)
        return self._sessions[tower]

    @classmethod
    def load(cls, folder: Union[str, Path], threads: int = 0) -> "OpenVinoTowers":
        """Open export ``folder`` for OpenVINO. ``threads``: inference threads (0: as the ONNX path picks them).
        OnnxExportError (or StaleExportError) says what is wrong with the folder or that openvino is missing."""
        folder = Path(str(folder)[len("local-dir:"):] if str(folder).startswith("local-dir:") else folder)
        if not folder.is_dir():
            raise OnnxExportError(f"ONNX export folder {folder} does not exist (emocap export onnx MODEL --out DIR)")
        manifest = read_manifest(folder)
        paths = check_manifest(folder, manifest)
        try:
            import openvino  # noqa: F401
        except ImportError as e:
            raise OnnxExportError(f"runtime openvino needs openvino ({e}); pip install 'emocap[openvino]'") from None
        options = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads or _default_threads():
            options["INFERENCE_NUM_THREADS"] = threads or _default_threads()
        return cls(folder, manifest, paths, options)
