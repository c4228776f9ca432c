"""The model card's plots (matplotlib, headless): one PNG per figure."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any) -> bytes:
    plt = pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def confusion(matrix: list[list[int]], classes: list[str]) -> bytes:
    plt = pyplot()
    values = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(4 + 0.3 * len(classes), 3.5 + 0.3 * len(classes)))
    ax.imshow(values, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=30)
    ax.set_yticks(range(len(classes)), classes)
    for i in range(len(classes)):
        for j in range(len(classes)):
            colour = "white" if values[i, j] > values.max() / 2 else "black"
            ax.text(j, i, str(values[i, j]), ha="center", va="center", color=colour)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (test split)")
    return png(fig)


def roc_pr(y_true: np.ndarray, scores: np.ndarray, classes: list[str]) -> tuple[bytes, bytes]:
    """ROC and precision-recall curves, one per class (one-vs-rest; one for two classes)."""
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    plt = pyplot()
    scores = np.clip(scores, 0.0, 1.0)  # float32 sums may pass 1 by an ulp
    shown = classes[1:] if len(classes) == 2 else classes
    roc_fig, roc_ax = plt.subplots(figsize=(4.5, 4))
    pr_fig, pr_ax = plt.subplots(figsize=(4.5, 4))
    for cls in shown:
        k = classes.index(cls)
        positive = y_true == cls
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, scores[:, k])
        roc_ax.plot(fpr, tpr, label=f"{cls} (AUC {auc(fpr, tpr):.3f})")
        precision, recall, _ = precision_recall_curve(positive, scores[:, k])
        ap = average_precision_score(positive, scores[:, k])
        pr_ax.plot(recall, precision, label=f"{cls} (AP {ap:.3f})")
    roc_ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    roc_ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC curve")
    pr_ax.set(xlabel="recall", ylabel="precision", title="Precision-recall curve")
    roc_ax.legend(fontsize=8)
    pr_ax.legend(fontsize=8)
    return png(roc_fig), png(pr_fig)


def calibration(y_true: np.ndarray, scores: np.ndarray, classes: list[str]) -> bytes:
    from sklearn.calibration import calibration_curve

    plt = pyplot()
    scores = np.clip(scores, 0.0, 1.0)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    shown = classes[1:] if len(classes) == 2 else classes
    for cls in shown:
        k = classes.index(cls)
        positive = y_true == cls
        if positive.all() or not positive.any():
            continue
        observed, predicted = calibration_curve(positive, scores[:, k], n_bins=10)
        ax.plot(predicted, observed, marker="o", label=cls)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set(xlabel="predicted probability", ylabel="observed frequency", title="Calibration")
    ax.legend(fontsize=8)
    return png(fig)


def regression_fit(y_true: np.ndarray, y_pred: np.ndarray) -> bytes:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    left.scatter(y_true, y_pred, s=8, alpha=0.6)
    low, high = float(np.min(y_true)), float(np.max(y_true))
    left.plot([low, high], [low, high], linestyle="--", color="grey")
    left.set(xlabel="true", ylabel="predicted", title="Predicted against true")
    right.hist(y_pred - y_true, bins=30)
    right.set(xlabel="residual (predicted - true)", title="Residuals")
    return png(fig)


def importance(values: dict[str, float], title: str, top: int = 20) -> bytes:
    plt = pyplot()
    ranked = sorted(values.items(), key=lambda kv: kv[1])[-top:]
    fig, ax = plt.subplots(figsize=(6.5, 0.3 * len(ranked) + 1.2))
    ax.barh([k for k, _ in ranked], [v for _, v in ranked])
    ax.set_xlabel("mean |attribution|")
    ax.set_title(title)
    return png(fig)


def groups(figures: dict[str, dict[str, dict[str, float]]], metric: str) -> bytes:
    """One panel per sensitive column: the metric of each group, with its row count."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(figures), figsize=(4.5 * len(figures), 3.5), squeeze=False)
    for ax, (column, by_group) in zip(axes[0], figures.items(), strict=True):
        names = list(by_group)
        ax.bar(names, [by_group[g].get(metric, np.nan) for g in names])
        for i, g in enumerate(names):
            ax.text(i, 0.02, f"n={int(by_group[g].get('rows', 0))}", ha="center", fontsize=8)
        ax.set(title=f"{metric} by {column}", ylabel=metric)
    return png(fig)
