"""Metrics. Classification metrics come from scikit-learn; the imputation metrics are two lines each."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score


def accuracy(y_true, y_pred) -> float:
    return float(accuracy_score(np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str)))


def macro_f1(y_true, y_pred) -> float:
    """Macro F1 over the classes present in truth or prediction (scikit-learn's default labels)."""
    return float(f1_score(np.asarray(y_true).astype(str), np.asarray(y_pred).astype(str), average="macro", zero_division=0))


def mse(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    return float(np.mean((y_true - y_pred) ** 2))


def pearson(y_true, y_pred) -> float:
    """Pearson r; NaN when either side is constant (undefined, e.g. the 'none' imputation control)."""
    a, b = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def annotation_metrics(y_true, y_pred) -> dict[str, float]:
    return {"accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred)}
