"""Training curves and confusion matrices as PNG files.

Figures are built with ``matplotlib.figure.Figure`` and rendered by ``FigureCanvasAgg``
directly: no pyplot, so importing or calling this module never selects a backend or
touches global matplotlib state. Files are written atomically.

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> plot_history({"loss": [2.0, 1.5], "accuracy": [0.3, 0.45]}, out / "curves.png").name
'curves.png'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from torch_cnn._io import atomic_write

DPI = 120


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    FigureCanvasAgg(fig)  # attaches itself to fig: render with Agg, whatever the global backend
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    return Path(path)


def plot_history(
    history: Mapping[str, Sequence[float]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    val_label: str = "validation",
) -> Path:
    """Loss (left) and accuracy (right) per epoch, training and validation, in one PNG.

    ``history`` is a Keras-style history dict (``loss``, ``accuracy``, optionally
    ``val_loss`` and ``val_accuracy``); missing curves are left out. ``title`` (the model
    and the run, say) goes above both panels; ``val_label`` names the ``val_*`` curves
    (e.g. "validation (test split)" when the test split served as validation data).
    """
    fig = Figure(figsize=(10, 4), layout="constrained")
    if title:
        fig.suptitle(title)
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy"), strict=True):
        for key, label in ((metric, "train"), (f"val_{metric}", val_label)):
            values = list(history.get(key, []))
            if values:
                epochs = np.arange(1, len(values) + 1)
                ax.plot(epochs, values, marker="o", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    return _save(fig, path)


def plot_confusion(
    matrix: Any,
    classes: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "confusion matrix",
) -> Path:
    """A confusion matrix (rows: true class, columns: predicted) with counts in the cells.

    ``matrix`` is anything ``np.asarray`` takes (nested lists, a tensor on the CPU, an array)
    of shape ``(len(classes), len(classes))``.
    """
    counts = np.asarray(matrix)
    k = len(classes)
    if counts.shape != (k, k):
        raise ValueError(
            f"plot_confusion expects a ({k}, {k}) matrix for {k} classes; received shape "
            f"{counts.shape}"
        )
    fig = Figure(figsize=(7.5, 6.5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    ticks = np.arange(k)
    ax.set_xticks(ticks, labels=list(classes), rotation=45, ha="right")
    ax.set_yticks(ticks, labels=list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    total = int(counts.sum())
    accuracy = float(np.trace(counts)) / total if total else float("nan")
    ax.set_title(f"{title} (accuracy {accuracy:.4f}, {total} images)")
    threshold = counts.max() / 2 if counts.size else 0
    for i in range(k):
        for j in range(k):
            color = "white" if counts[i, j] > threshold else "black"
            ax.text(j, i, f"{counts[i, j]:g}", ha="center", va="center", color=color, fontsize=8)
    return _save(fig, path)


__all__ = ["plot_confusion", "plot_history"]
