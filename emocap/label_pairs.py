"""Label pairs a model cannot tell apart: close class text features, found in blocks, and the warning text.

Where it sits: :meth:`emocap.classifier.ZeroShotClassifier.class_text_features` calls :func:`close_label_pairs` on
each new label set's features and warns with :func:`indistinguishable_message` (an
:class:`~emocap.taxonomy.IndistinguishableLabelsWarning`). Features are torch tensors on the torch runtime (computed
there, on their device) and numpy arrays on the ONNX
runtime (computed here, without torch); both give the pairs in the same order.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["close_label_pairs", "indistinguishable_message", "MAX_PAIRS_KEPT", "LabelPair"]

MAX_PAIRS_KEPT = 1000  # closest pairs kept per label set (all are counted)
_MAX_PAIRS_SHOWN = 10

LabelPair = Tuple[str, str, float]


def close_label_pairs(features, labels: Sequence[str], threshold: float, block: Optional[int] = None,
                      keep: int = MAX_PAIRS_KEPT) -> Tuple[List[LabelPair], int]:
    """Pairs of ``labels`` whose L2-normalised ``features`` have cosine >= ``threshold``: ``(the closest pairs, at
    most keep of them, most similar first, ties in label order; how many pairs there are in all)``.

    Computed in blocks of rows (about four million similarities each unless ``block`` rows are given) and trimmed
    to ``keep`` as it goes, so time and memory stay small for any number of labels, even when most pairs are
    close (thousands of words a model does not know)."""
    if not isinstance(features, np.ndarray):  # a torch tensor (the torch runtime)
        return _close_label_pairs_torch(features, labels, threshold, block, keep)
    feats = features.astype(np.float32, copy=False)
    n = feats.shape[0]
    block = block or max(1, min(n, (1 << 22) // max(n, 1)))
    total = 0
    vals = np.zeros(0, dtype=np.float32)
    rows = cols = np.zeros(0, dtype=np.int64)
    for s in range(0, n, block):
        sims = feats[s:s + block] @ feats.T
        sims[~np.triu(np.ones(sims.shape, dtype=bool), s + 1)] = -np.inf  # each pair once, never a label with itself
        flat = sims.ravel()
        hit = np.flatnonzero(flat >= threshold)
        if not hit.size:
            continue
        total += int(hit.size)
        vals = np.concatenate([vals, flat[hit]])
        rows = np.concatenate([rows, hit // n + s])
        cols = np.concatenate([cols, hit % n])
        if vals.size > keep:
            vals, rows, cols = _closest(vals, rows, cols, keep)
    vals, rows, cols = _closest(vals, rows, cols, keep)
    pairs = [(labels[a], labels[b], round(x, 4)) for a, b, x in zip(rows.tolist(), cols.tolist(), vals.tolist())]
    return pairs, total


def _closest(vals: np.ndarray, rows: np.ndarray, cols: np.ndarray, keep: int):
    order = np.lexsort((cols, rows, -vals))[:keep]  # most similar first, ties in (row, col) order
    return vals[order], rows[order], cols[order]


def _close_label_pairs_torch(features, labels: Sequence[str], threshold: float, block: Optional[int],
                            keep: int) -> Tuple[list, int]:
    """:func:`close_label_pairs` on torch tensors, on their device (torch is loaded: they are its tensors)."""
    import torch

    feats = features.float()
    n = feats.shape[0]
    block = block or max(1, min(n, (1 << 22) // max(n, 1)))
    total = 0
    vals = torch.zeros(0, device=feats.device)
    rows = cols = torch.zeros(0, dtype=torch.long, device=feats.device)
    for s in range(0, n, block):
        sims = feats[s:s + block] @ feats.T
        upper = torch.ones_like(sims, dtype=torch.bool).triu_(s + 1)  # each pair once, never a label with itself
        sims.masked_fill_(~upper, float("-inf"))
        hits = int((sims >= threshold).sum())
        if not hits:
            continue
        total += hits
        top_vals, flat = sims.flatten().topk(min(keep, hits))
        vals = torch.cat([vals, top_vals])
        rows = torch.cat([rows, flat // n + s])
        cols = torch.cat([cols, flat % n])
        if vals.numel() > keep:
            top = torch.topk(vals, keep).indices
            vals, rows, cols = vals[top], rows[top], cols[top]
    order = torch.argsort(rows * n + cols)  # ties in (row, col) order, then most similar first
    vals, rows, cols = vals[order], rows[order], cols[order]
    order = torch.argsort(vals, descending=True, stable=True)
    pairs = [(labels[a], labels[b], round(x, 4))
             for a, b, x in zip(rows[order].tolist(), cols[order].tolist(), vals[order].tolist())]
    return pairs, total


def indistinguishable_message(pairs: Sequence[LabelPair], threshold: float, total: Optional[int] = None) -> str:
    """One line naming the closest label pairs (at most ten, then a count) and their cosine similarity."""
    total = len(pairs) if total is None else total
    named = pairs[:_MAX_PAIRS_SHOWN]
    shown = ", ".join(f"{a!r} ~ {b!r} ({c:.3f})" for a, b, c in named)
    more = f" and {total - len(named)} more pairs" if total > len(named) else ""
    return (f"the model can hardly tell these labels apart (text feature cosine >= {threshold:g}): {shown}{more}; "
            "their scores will be nearly equal on any image. Use words the model knows or give class descriptions "
            "(prompts; see docs/labels.md)")
