"""Metrics, each a few lines of numpy.

The classification metrics are scikit-learn's ``accuracy_score`` and ``f1_score(average="macro",
zero_division=0)`` (the tests check them against scikit-learn on random labelings), written out
because the training loop scores validation F1 every epoch and importing ``sklearn.metrics`` costs
~0.6 s in each of the workflow's hundred training processes.
"""

from __future__ import annotations

import numpy as np


def _labels(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {y_true.shape} vs {y_pred.shape}")
    if not len(y_true):
        raise ValueError("no labels to score: y_true and y_pred are empty")
    return y_true, y_pred


def accuracy(y_true, y_pred) -> float:
    y_true, y_pred = _labels(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def macro_f1(y_true, y_pred, *, classes=None) -> float:
    """Macro F1 over the classes present in truth or prediction (scikit-learn's default labels);
    per class 2 TP / (2 TP + FP + FN), which is 0 for a class never predicted right.

    ``classes``: average only over those of them present in truth or prediction (every cell still
    counts: a cell of another class predicted as one of them is its false positive); NaN when none is.
    """
    y_true, y_pred = _labels(y_true, y_pred)
    present, codes = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    t, p = codes[: len(y_true)], codes[len(y_true) :]
    tp = np.bincount(t[t == p], minlength=len(present))
    # 2 TP + FP + FN = (times predicted) + (times true)
    denom = np.bincount(p, minlength=len(present)) + np.bincount(t, minlength=len(present))
    f1 = 2 * tp / denom
    if classes is not None:
        f1 = f1[np.isin(present, np.asarray(list(classes)).astype(str))]
    return float(np.mean(f1)) if f1.size else float("nan")


def binary_f1(y_true, y_pred) -> float:
    """F1 of the positive class of two boolean arrays (scikit-learn's ``f1_score`` with
    ``zero_division=0``): 2 TP / (2 TP + FP + FN), 0 when there is no positive on either side."""
    t, p = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {t.shape} vs {p.shape}")
    denom = int(t.sum() + p.sum())
    return 2 * int((t & p).sum()) / denom if denom else 0.0


def mse(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    return float(np.mean((y_true - y_pred) ** 2))


def pearson(y_true, y_pred) -> float:
    """Pearson r; NaN when either side is constant (undefined, e.g. the 'none' imputation control)."""
    a, b = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def annotation_metrics(y_true, y_pred, *, train_classes=None) -> dict[str, float]:
    """``accuracy``, ``macro_f1`` and, given the training classes, ``macro_f1_seen``: macro F1 over
    the training classes only (test cell types absent from training, which no model can predict,
    are left out of the average; equal to ``macro_f1`` when there are none)."""
    out = {"accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred)}
    if train_classes is not None:
        out["macro_f1_seen"] = macro_f1(y_true, y_pred, classes=train_classes)
    return out


def rare_classes(train_labels, *, share: float = 0.05) -> np.ndarray:
    """Classes that make up less than ``share`` of the training cells (MAM's rare cell types)."""
    labels, counts = np.unique(np.asarray(train_labels).astype(str), return_counts=True)
    return labels[counts < share * counts.sum()]


def rare_f1(y_true, y_pred, rare) -> float:
    """Macro F1 over the ``rare`` classes that occur in ``y_true`` (each 2 TP / (2 TP + FP + FN));
    NaN when none does (no rare class to score)."""
    y_true, y_pred = _labels(y_true, y_pred)
    present = [c for c in np.asarray(rare).astype(str) if (y_true == c).any()]
    if not present:
        return float("nan")
    return float(
        np.mean(
            [2 * np.sum((y_true == c) & (y_pred == c)) / (np.sum(y_true == c) + np.sum(y_pred == c)) for c in present]
        )
    )
