"""emocap.eval: the evaluation stage (benchmark registry -> zero-shot protocol -> metrics -> result JSON).

Sits after training in the flow: it loads any model through :class:`emocap.ZeroShotClassifier`, reads benchmarks
in their official layouts (:mod:`.registry` names the loaders of :mod:`.loaders`), scores them (:mod:`.zeroshot`,
:mod:`emocap.metrics`) and writes one result file per run for the table builder. ``emocap eval`` (:mod:`.cli`) is the command-line entry point.
Imports emocap core only; core never imports this package.
"""

from .registry import BENCHMARKS, Benchmark, get_benchmark, register_benchmark
from .samples import BenchmarkData, BenchmarkSample
from emocap.metrics import classification_metrics
from .zeroshot import evaluate, write_result

__all__ = ["BENCHMARKS", "Benchmark", "BenchmarkData", "BenchmarkSample", "get_benchmark", "register_benchmark",
           "classification_metrics", "evaluate", "write_result"]
