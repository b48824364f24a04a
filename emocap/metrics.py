"""Classification metrics (core): WAR/UAR and the rest, used by eval's result records and by training's validation.

Flow: benchmark loader -> classifier probabilities -> :func:`classification_metrics` -> result record
(``emocap.eval.zeroshot``) -> table builder; training validates with :func:`war_uar`.

Metrics reported:

* ``war`` / ``acc1``: weighted average recall, i.e. plain accuracy over all samples;
* ``uar`` / ``mean_per_class_recall``: unweighted average recall, the mean of the per-class recalls over the
  classes that occur in ``y_true`` (a class with no test sample has no recall and is left out of the mean);
* ``macro_f1``: mean F1 over the classes that occur in ``y_true`` (same class set as UAR);
* ``per_class_recall``: class name -> recall, ``None`` for classes without test samples;
* ``per_class_support``: class name -> number of test samples;
* ``confusion_matrix``: rows are true classes, columns predicted classes, in class order;
* ``acc{k}``: top-k accuracy for k in ``top_k`` (only with probabilities, and only for k < number of classes);
* ``ece``: expected calibration error of the top-1 confidence over 15 equal-width bins (only with probabilities);
  ``reliability``: the per-bin counts, accuracies and mean confidences behind it (the reliability diagram).

With soft labels (annotator vote distributions), :func:`soft_label_metrics` adds ``soft_accuracy`` (the expected
agreement of the prediction with a random annotator: the vote share of the predicted class), ``soft_top1`` (the
prediction is one of the most-voted classes), ``soft_kl`` (mean KL(votes || predicted distribution), nats) and
``soft_js`` (mean Jensen-Shannon divergence, nats). :func:`group_metrics` gives WAR/UAR per value of a
per-sample attribute (group annotations, face attributes). :func:`chance_levels` gives what guessing scores
(``1/C`` WAR and UAR for a uniform guess; the WAR of always answering the largest class).

All rates are fractions in [0, 1]. The keys ``acc1`` and ``mean_per_class_recall`` match CLIP_benchmark's.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = [
    "war_uar", "classification_metrics", "expected_calibration_error", "reliability_bins", "top_k_accuracy", "format_summary",
    "soft_label_metrics", "group_metrics", "chance_levels", "ECE_BINS",
]

ECE_BINS = 15


def war_uar(pred: np.ndarray, targets: np.ndarray) -> Dict[str, float]:
    """Accuracy (WAR) and mean per-class recall over the classes present in ``targets`` (UAR), for predicted and
    true class indices (the quick pair training validates with; :func:`classification_metrics` gives the rest)."""
    pred, targets = np.asarray(pred), np.asarray(targets)
    recalls = [float((pred[targets == c] == c).mean()) for c in np.unique(targets)]
    return {"war": float((pred == targets).mean()), "uar": float(np.mean(recalls))}


def _check_probabilities(probs: np.ndarray, n_classes: int) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != n_classes:
        raise ValueError(f"probabilities must have shape [N, {n_classes}], got {probs.shape}")
    if not np.all(np.isfinite(probs)):
        raise ValueError("probabilities contain NaN or infinite values")
    if np.any(probs < -1e-6) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("probability rows must be non-negative and sum to 1 (got logits? apply a softmax first)")
    return probs


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Fraction of samples whose true class is among the ``k`` highest scores.

    Ties are broken towards the lower class index, as ``argmax`` does, so ``k=1`` equals plain accuracy.
    """
    y_true = np.asarray(y_true)
    order = np.argsort(-np.asarray(probs), axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(order == y_true[:, None], axis=1)))


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE of the top-1 prediction (Guo et al. 2017): sum over bins of |B|/N * |accuracy(B) - confidence(B)|.

    Bin ``i`` holds confidences in ``(i/n_bins, (i+1)/n_bins]`` (the bins of :func:`reliability_bins`).
    """
    return _ece_from_bins(reliability_bins(y_true, probs, n_bins))


def _ece_from_bins(rel: Dict[str, list]) -> float:
    n = sum(rel["count"])
    return float(sum(c / n * abs(acc - conf)
                     for c, acc, conf in zip(rel["count"], rel["accuracy"], rel["confidence"]) if c))


def classification_metrics(
    y_true: Sequence[int],
    predictions,
    class_names: Sequence[str],
    top_k: Sequence[int] = (2, 3, 5),
) -> Dict[str, object]:
    """Compute the benchmark metrics for one run.

    Args:
        y_true: true class indices, shape [N], each in ``[0, len(class_names))``.
        predictions: predicted class indices of shape [N], or class probabilities of shape [N, C]
            (rows summing to 1). Top-k accuracy and ECE need probabilities and are ``None`` otherwise.
        class_names: the C class names, in index order.
        top_k: the k values for top-k accuracy (``acc1`` is always reported); k >= C is skipped.

    Returns:
        A JSON-ready dict (plain Python numbers and lists); see the module docstring for the keys.
    """
    names = [str(c) for c in class_names]
    n_classes = len(names)
    if n_classes == 0:
        raise ValueError("class_names is empty")
    y_true = np.asarray(y_true)
    if y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(f"y_true must be a non-empty 1-D array of class indices, got shape {y_true.shape}")
    if not np.issubdtype(y_true.dtype, np.integer):
        raise ValueError(f"y_true must hold integer class indices, got dtype {y_true.dtype}")
    if y_true.min() < 0 or y_true.max() >= n_classes:
        raise ValueError(f"y_true holds class indices outside [0, {n_classes})")

    predictions = np.asarray(predictions)
    probs: Optional[np.ndarray] = None
    if predictions.ndim == 2:
        probs = _check_probabilities(predictions, n_classes)
        y_pred = probs.argmax(axis=1)
    elif predictions.ndim == 1:
        if not np.issubdtype(predictions.dtype, np.integer):
            raise ValueError("1-D predictions must be integer class indices")
        y_pred = predictions
        if len(y_pred) and (y_pred.min() < 0 or y_pred.max() >= n_classes):
            raise ValueError(f"predictions hold class indices outside [0, {n_classes})")
    else:
        raise ValueError(f"predictions must be [N] class indices or [N, C] probabilities, got {predictions.shape}")
    if len(y_pred) != len(y_true):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")

    all_labels = list(range(n_classes))
    present = sorted(int(c) for c in np.unique(y_true))
    # everything derives from the confusion matrix (numpy; equal to scikit-learn's accuracy_score, recall_score,
    # f1_score and confusion_matrix, checked in the tests; importing sklearn.metrics costs ~2 s per command)
    cm = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    hits = np.diag(cm).astype(np.float64)
    recalls = np.divide(hits, support, out=np.zeros(n_classes), where=support > 0)
    precisions = np.divide(hits, predicted, out=np.zeros(n_classes), where=predicted > 0)
    f1s = np.divide(2 * precisions * recalls, precisions + recalls, out=np.zeros(n_classes),
                    where=(precisions + recalls) > 0)
    war = float(hits.sum() / len(y_true))
    uar = float(np.mean([recalls[c] for c in present]))
    macro_f1 = float(np.mean([f1s[c] for c in present]))

    result: Dict[str, object] = {
        "n": int(len(y_true)),
        "n_classes": n_classes,
        "acc1": war,
        "mean_per_class_recall": uar,
        "war": war,
        "uar": uar,
        "macro_f1": macro_f1,
        "per_class_recall": {
            names[c]: (float(recalls[c]) if support[c] > 0 else None) for c in all_labels
        },
        "per_class_support": {names[c]: int(support[c]) for c in all_labels},
        "confusion_matrix": [[int(v) for v in row] for row in cm],
        "ece": None,
    }
    if probs is not None:
        for k in sorted(set(int(k) for k in top_k)):
            if 1 < k < n_classes:
                result[f"acc{k}"] = top_k_accuracy(y_true, probs, k)
        result["reliability"] = reliability_bins(y_true, probs)
        result["ece"] = _ece_from_bins(result["reliability"])
    return result


def chance_levels(y_true: Sequence[int], n_classes: int) -> Dict[str, float]:
    """What guessing scores on these labels: ``war`` and ``uar`` of a uniform random guess over the ``n_classes``
    classes (both ``1/C`` in expectation) and ``majority_class_war``, the WAR of always answering the largest class
    (whose UAR is ``1/C`` over the classes present)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    if n_classes < 1 or len(y_true) == 0:
        raise ValueError("chance levels need at least one class and one label")
    return {"war": 1.0 / n_classes, "uar": 1.0 / n_classes,
            "majority_class_war": float(np.bincount(y_true, minlength=n_classes).max() / len(y_true))}


def reliability_bins(y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> Dict[str, list]:
    """Per equal-width confidence bin: ``count``, ``accuracy`` and mean ``confidence`` (None for empty bins)."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    out: Dict[str, list] = {"edges": [i / n_bins for i in range(n_bins + 1)], "count": [], "accuracy": [],
                            "confidence": []}
    for b in range(n_bins):
        in_bin = bins == b
        n = int(in_bin.sum())
        out["count"].append(n)
        out["accuracy"].append(float(correct[in_bin].mean()) if n else None)
        out["confidence"].append(float(confidence[in_bin].mean()) if n else None)
    return out


def soft_label_metrics(soft_labels: np.ndarray, probs: np.ndarray, eps: float = 1e-8) -> Dict[str, float]:
    """Agreement of predicted distributions with annotator vote distributions (rows of ``soft_labels``).

    Rows of ``soft_labels`` are normalised to sum to 1; rows without any vote (all zero or NaN) are ignored.
    """
    soft = np.asarray(soft_labels, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    if soft.shape != probs.shape:
        raise ValueError(f"soft labels of shape {soft.shape} for probabilities of shape {probs.shape}")
    total = np.nansum(soft, axis=1)
    ok = np.isfinite(soft).all(axis=1) & (total > 0)
    if not ok.any():
        raise ValueError("no soft label row has a vote")
    soft, probs = soft[ok] / total[ok, None], np.clip(probs[ok], eps, 1.0)
    pred = probs.argmax(axis=1)
    rows = np.arange(len(pred))
    kl = np.where(soft > 0, soft * (np.log(np.clip(soft, eps, None)) - np.log(probs)), 0.0).sum(axis=1)
    mid = 0.5 * (soft + probs)

    def _kl(p, q):
        return np.where(p > 0, p * (np.log(np.clip(p, eps, None)) - np.log(np.clip(q, eps, None))), 0.0).sum(axis=1)

    return {
        "soft_n": int(ok.sum()),
        "soft_accuracy": float(soft[rows, pred].mean()),
        "soft_top1": float((soft[rows, pred] >= soft.max(axis=1) - 1e-12).mean()),
        "soft_kl": float(kl.mean()),
        "soft_js": float((0.5 * _kl(soft, mid) + 0.5 * _kl(probs, mid)).mean()),
    }


def group_metrics(y_true: np.ndarray, probs: np.ndarray, values: Sequence, class_names: Sequence[str],
                  min_count: int = 1) -> Dict[str, Dict[str, object]]:
    """WAR, UAR and count per value of one per-sample attribute (samples whose value is None are left out)."""
    y_true = np.asarray(y_true)
    values = np.asarray([None if v is None else str(v) for v in values], dtype=object)
    out: Dict[str, Dict[str, object]] = {}
    for value in sorted({v for v in values if v is not None}):
        mask = values == value
        if mask.sum() < min_count:
            continue
        m = classification_metrics(y_true[mask], np.asarray(probs)[mask], class_names, top_k=())
        out[value] = {"n": m["n"], "war": m["war"], "uar": m["uar"], "macro_f1": m["macro_f1"]}
    return out


def format_summary(metrics: Dict[str, object]) -> List[str]:
    """Short human-readable lines (percentages) for a metrics dict."""
    lines = [
        f"WAR (acc1)   {100 * metrics['war']:.2f}%",
        f"UAR          {100 * metrics['uar']:.2f}%",
        f"macro F1     {100 * metrics['macro_f1']:.2f}%",
    ]
    if metrics.get("ece") is not None:
        lines.append(f"ECE          {100 * metrics['ece']:.2f}%")
    if metrics.get("soft_accuracy") is not None:
        lines.append(f"soft acc     {100 * metrics['soft_accuracy']:.2f}%  (vote share of the predicted class; "
                     f"KL {metrics['soft_kl']:.3f})")
    return lines
